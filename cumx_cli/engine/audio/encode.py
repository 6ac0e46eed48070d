"""Writing the lossy formats, block by block: MP3, AAC in MP4 (``m4a``), Opus in Ogg (``opus``)
and Vorbis in Ogg (``ogg``).

:class:`EncodedWriter` has :class:`~cumx_cli.engine.audio.io.AudioWriter`'s interface: samples
go to a hidden temporary file (:func:`~cumx_cli.engine.files.temp_path`) that :meth:`commit`
renames into place, and anything else (an error, :meth:`abort`) removes it. Memory stays flat
whatever the length: each block is encoded as it comes (PyAV's encoder cuts the codec's frames
of 1152, 1024 or 960 samples and keeps the rest for the next block).

Codecs. MP3 (LAME), AAC (FFmpeg's own encoder) and Opus (libopus) are encoded by FFmpeg through
PyAV. Vorbis is encoded by libvorbis through libsndfile: PyAV's FFmpeg has no libvorbis, only
FFmpeg's experimental Vorbis encoder, which spends about 340 kbps for less quality than
libvorbis at 190, and whose files do not decode to the length written (a 1000-sample file
decodes to nothing).

Length. The encoder delay and the padding are recorded in the container, so a decoder that
honours them gives back exactly the samples written:

- MP3: the LAME/Info header (delay and padding); FFmpeg and libmpg123 decode the exact length.
- Ogg Vorbis and Ogg Opus: the pre-skip (Opus) and the last page's granule position. libvorbis
  and libopus decode the exact length; FFmpeg does too, except for Vorbis files shorter than
  about 0.3 s (their audio fits the first Ogg pages), where its demuxer is off by up to a
  Vorbis block (a few hundred samples).
- M4A: an edit list that skips the priming and ends at the last sample written, in a movie
  time scale equal to the sample rate so that it is exact (FFmpeg's default of 1/1000 s is not).
  This is how Apple's own encoder marks gapless AAC, for decoders that trim both ends. FFmpeg
  (the ffmpeg tool, PyAV and the players built on it) trims only the priming and keeps the end
  padding: up to 1023 samples (23 ms) of near-silence past the end; the duration it reports
  (ffprobe's) is the exact one.

Opus codes 48 kHz audio only: other rates are resampled to 48 kHz here (as ``ffmpeg -i x.wav
x.opus`` does), and the file holds ``round(frames * 48000 / sample_rate)`` samples at 48 kHz, the
same duration to within half a 48 kHz sample. ``output_rate`` says which rate a writer stores.

Samples are clamped to [-1, 1] before encoding, as for every integer format: a decoder gives
float samples back, but a player converting them to integers would clip there anyway, and a
stem that does not fit is better clipped once, here, than differently by each player. (A lossy
codec can still overshoot full scale a little at decode time.) NaN samples are encoded as
silence (FFmpeg's AAC encoder refuses NaN).

Tags (:data:`TAG_KEYS`: title, artist, album) go where each container keeps them: ID3v2 frames
(MP3), iTunes atoms ``©nam``/``©ART``/``©alb`` (M4A), Vorbis comments (Ogg Vorbis and Opus).
:func:`stem_tags` derives a stem's tags from the input's (:func:`read_tags`).

FFmpeg's log stays silent: PyAV installs a log callback that drops FFmpeg's messages unless an
application asks for them (``av.logging.set_level``); this module leaves that setting alone and
reports every failure itself, as one :class:`~cumx_cli.engine.errors.AudioIOError` line naming
the file.
"""

from __future__ import annotations

import contextlib
import errno
import os
from collections.abc import Mapping
from dataclasses import dataclass
from fractions import Fraction
from pathlib import Path
from typing import BinaryIO, Literal, Protocol, cast

import av
import numpy as np
import soundfile as sf
import torch
from av.audio.stream import AudioStream

from cumx_cli.engine.audio.formats import DEFAULT_BITRATES
from cumx_cli.engine.audio.io import _write_failure as _sndfile_write_failure
from cumx_cli.engine.errors import AudioIOError, ConfigError
from cumx_cli.engine.files import disk_full_reason, temp_path
from cumx_cli.engine.shapes import check_shape

EncodedFormat = Literal["mp3", "ogg", "opus", "m4a"]
#: The formats of this module, in the order the help lists them.
ENCODED_FORMATS: tuple[EncodedFormat, ...] = ("mp3", "ogg", "opus", "m4a")
#: The tags copied from an input to its stems, as FFmpeg and libsndfile name them.
TAG_KEYS = ("title", "artist", "album")
#: The only rate Opus codes (decoders always give 48 kHz back).
OPUS_RATE = 48000


@dataclass(frozen=True)
class Codec:
    """What one ``--format`` writes, and the bitrates it takes.

    ``default_kbps``: MP3 320, the most MP3 holds (demucs' default too): stems are material to
    mix again, so they get the transparent end of each codec, not the streaming one. AAC 256,
    the iTunes Plus / Apple Music rate. Opus 160, where listening tests find it transparent
    for music (and YouTube's best Opus stream). Vorbis 192 (quality 6), one step above its
    transparency threshold of about quality 5.

    ``min_kbps``-``max_kbps`` is the range ``--bitrate`` accepts (for stereo).
    ``max_kbps_per_channel``, when set, caps a mono stream (libopus refuses more than 256 kbps
    a channel); the cap is applied silently, since a mono stem above it sounds no different.
    """

    codec: str  # what users call it, in messages
    encoder: str  # the FFmpeg encoder; "libvorbis" is libsndfile's
    muxer: str  # the FFmpeg muxer
    default_kbps: int
    min_kbps: int
    max_kbps: int
    max_kbps_per_channel: int | None = None


CODECS: Mapping[str, Codec] = {
    # LAME takes the nearest standard MP3 bitrate (…, 192, 224, 256, 320).
    "mp3": Codec("MP3", "libmp3lame", "mp3", default_kbps=DEFAULT_BITRATES["mp3"], min_kbps=32,
                 max_kbps=320),
    # Vorbis is always VBR: the bitrate picks the libvorbis quality whose nominal bitrate
    # (44.1 kHz stereo) it is; the actual rate follows the music.
    "ogg": Codec("Vorbis", "libvorbis", "ogg", default_kbps=DEFAULT_BITRATES["ogg"], min_kbps=64,
                 max_kbps=500),
    "opus": Codec("Opus", "libopus", "opus", default_kbps=DEFAULT_BITRATES["opus"], min_kbps=6,
                  max_kbps=510,
                  max_kbps_per_channel=256),
    # FFmpeg's AAC encoder spends at most about 190 kbps a channel at 44.1 kHz, whatever is asked.
    "m4a": Codec("AAC", "aac", "ipod", default_kbps=DEFAULT_BITRATES["m4a"], min_kbps=32,
                 max_kbps=512),
}

#: The rates libvorbis is given: the one soundfile bundles crashes the process (SIGSEGV)
#: above 200 kHz.
_VORBIS_RATES = (8000, 192000)
#: libvorbis' nominal bitrates (kbps, 44.1 kHz stereo) of qualities 0, 1, ..., 10.
_VORBIS_NOMINAL_KBPS = (64, 80, 96, 112, 128, 160, 192, 224, 256, 320, 500)


def check_bitrate(fmt: str, kbps: int | None) -> int | None:
    """The bitrate (kbps) to write ``fmt`` with: ``kbps``, or the codec's default when None.
    None for a lossless format (given no bitrate).

    Raises:
        ConfigError: (field ``bitrate``) a bitrate for a lossless format, or out of the codec's
            range.
    """
    if fmt in CODECS:
        return _lossy_bitrate(fmt, kbps)
    if kbps is None:
        return None
    raise ConfigError(f"bitrate applies to the lossy formats ({', '.join(ENCODED_FORMATS)}), "
                      f"not to {fmt}", field="bitrate")


def _lossy_bitrate(fmt: str, kbps: int | None) -> int:
    codec = CODECS[fmt]
    if kbps is None:
        return codec.default_kbps
    if not codec.min_kbps <= kbps <= codec.max_kbps:
        raise ConfigError(f"bitrate {kbps} kbps is out of range for {fmt} ({codec.codec}): "
                          f"{codec.min_kbps}-{codec.max_kbps} kbps", field="bitrate")
    return kbps


def output_rate(fmt: EncodedFormat, sample_rate: int) -> int:
    """The rate a file of ``fmt`` stores ``sample_rate`` audio at: 48000 for Opus (resampled),
    else ``sample_rate``."""
    return OPUS_RATE if fmt == "opus" else sample_rate


def missing_encoder(fmt: EncodedFormat) -> str | None:
    """Why ``fmt`` cannot be written by this installation (one phrase), or None if it can."""
    codec = CODECS[fmt]
    if codec.encoder == "libvorbis":
        if "VORBIS" in sf.available_subtypes("OGG"):
            return None
        return "this libsndfile has no Vorbis encoder"
    try:
        av.Codec(codec.encoder, "w")
    except (av.error.FFmpegError, ValueError):
        return f"this PyAV build has no {codec.codec} encoder ({codec.encoder})"
    return None


def stem_tags(tags: Mapping[str, str], source: str, track: str) -> dict[str, str]:
    """A stem's tags from its input's: artist and album as they are, the title with the source
    added (``Song (vocals)``), so that a player lists a track's stems apart. An input without a
    title gives its track name (the file name) instead."""
    out = {key: tags[key] for key in ("artist", "album") if tags.get(key)}
    out["title"] = f"{tags.get('title') or track} ({source})"
    return out


def read_tags(path: Path) -> dict[str, str]:
    """The :data:`TAG_KEYS` tags of an audio file (WAV INFO, FLAC and Ogg Vorbis comments, ID3,
    MP4 atoms, ...), read by FFmpeg; those it does not hold are left out. Never raises: a file
    whose tags cannot be read has none."""
    found: dict[str, str] = {}
    try:
        # The tags come with the container's header; a minimal probe skips FFmpeg's stream
        # analysis, which decodes packets (17 ms of every 30 s or 3-minute WAV; 0.5 ms now).
        with av.open(str(path), options={"probesize": "32", "analyzeduration": "0"}) as container:
            dicts = [container.metadata, *(s.metadata for s in container.streams.audio[:1])]
    except (av.error.FFmpegError, OSError, ValueError, UnicodeDecodeError):
        return found
    for metadata in dicts:
        for key, value in metadata.items():
            key = key.lower()
            if key in TAG_KEYS and key not in found and value.strip():
                found[key] = value.strip()
    return found


class _Encoder(Protocol):
    """One codec library's side of :class:`EncodedWriter`; it raises :class:`AudioIOError`."""

    def encode(self, planar: np.ndarray) -> None:
        """Encode samples. Shapes: planar (channel, time) float32, C-contiguous."""

    def finish(self) -> None:
        """Flush the encoder and close the file."""

    def discard(self) -> None:
        """Close everything, ignoring errors (the file is removed next)."""


class EncodedWriter:
    """Write an MP3, M4A, Opus or Ogg Vorbis file block by block to a temporary name;
    :meth:`commit` flushes the encoder and renames the file into place.

    Args:
        final: the file to write.
        sample_rate: the rate of the samples given (Opus stores 48 kHz: see :func:`output_rate`).
        channels: 1 or 2.
        fmt: one of :data:`ENCODED_FORMATS`.
        bitrate: kbps, checked by :func:`check_bitrate`; None for the codec's default.
        tags: container tags; keys outside :data:`TAG_KEYS` are ignored.

    Raises:
        ConfigError: a bitrate out of range.
        AudioIOError: the folder is not writable, the encoder is missing from this build, or
            the codec does not take ``sample_rate``.

    Use as a context manager: leaving it without :meth:`commit` (an error) deletes the
    temporary file.
    """

    def __init__(self, final: Path, sample_rate: int, channels: int, fmt: EncodedFormat, *,
                 bitrate: int | None = None, tags: Mapping[str, str] | None = None) -> None:
        self.final = final
        self.tmp = temp_path(final)
        self.fmt = fmt
        self.sample_rate = sample_rate
        self.channels = channels
        self.output_rate = output_rate(fmt, sample_rate)
        kbps = _lossy_bitrate(fmt, bitrate)
        codec = CODECS[fmt]
        if codec.max_kbps_per_channel is not None:
            kbps = min(kbps, codec.max_kbps_per_channel * channels)
        self.bitrate = kbps
        if channels not in (1, 2):
            raise AudioIOError(f"{final}: cumx writes mono or stereo, not {channels} channels")
        missing = missing_encoder(fmt)
        if missing is not None:
            raise AudioIOError(f"{final}: cannot write {fmt}: {missing}; use --format flac")
        kept = {key: str(value) for key, value in (tags or {}).items() if key in TAG_KEYS and value}
        self._done = False
        self._encoder: _Encoder = (
            _SndfileVorbis(final, self.tmp, sample_rate, channels, kbps, kept) if fmt == "ogg"
            else _PyAVEncoder(final, self.tmp, codec, sample_rate, self.output_rate, channels,
                              kbps, kept)
        )

    def write(self, block: torch.Tensor) -> None:
        """Append samples. Shapes: block (channel, time) float."""
        check_shape(block, ("channel", "time"), channel=self.channels)
        data = block.detach().to("cpu", torch.float32).clamp(-1.0, 1.0).nan_to_num_(0.0)
        if data.shape[1]:
            self._encoder.encode(np.ascontiguousarray(data.numpy()))

    def write_frames(self, frames: torch.Tensor) -> None:
        """Append samples given frame by frame. Shapes: frames (time, channel) float."""
        self.write(frames.T)

    def commit(self) -> None:
        """Flush the encoder, close the file and rename it to :attr:`final`."""
        try:
            self._encoder.finish()
        except AudioIOError:
            self.abort()
            raise
        self._done = True
        try:
            os.replace(self.tmp, self.final)
        except OSError as exc:
            self.tmp.unlink(missing_ok=True)
            raise AudioIOError(f"{self.final}: cannot move the finished file into place "
                               f"({exc.strerror or exc})") from exc

    def abort(self) -> None:
        """Stop and delete the temporary file (nothing appears at :attr:`final`)."""
        if not self._done:
            self._done = True
            self._encoder.discard()
        with contextlib.suppress(OSError):  # e.g. the folder went away
            self.tmp.unlink(missing_ok=True)

    def __enter__(self) -> EncodedWriter:
        return self

    def __exit__(self, exc_type: object, *_: object) -> None:
        if exc_type is not None or not self._done:
            self.abort()


def _open_target(final: Path, tmp: Path) -> BinaryIO:
    """Create the temporary file (and the folder of ``final``)."""
    try:
        final.parent.mkdir(parents=True, exist_ok=True)
        return open(tmp, "wb")  # noqa: SIM115 - closed by the encoder
    except OSError as exc:
        raise AudioIOError(f"{final.parent}: cannot write there ({exc.strerror or exc})") from exc


def _reason(exc: BaseException, path: Path) -> str:
    """Why an encoder or muxer call failed, in a few words."""
    strerror = getattr(exc, "strerror", None)
    if isinstance(strerror, str) and strerror:
        return strerror
    return disk_full_reason(path) or str(exc) or type(exc).__name__


class _PyAVEncoder:
    """MP3, AAC and Opus through PyAV, into a file object of ours: the muxer's writes go through
    Python's ``open``, so a full disk is reported with the OS's errno (and can be simulated)."""

    _errors = (av.error.FFmpegError, OSError, ValueError)

    def __init__(self, final: Path, tmp: Path, codec: Codec, in_rate: int, out_rate: int,
                 channels: int, kbps: int, tags: Mapping[str, str]) -> None:
        self.final, self.tmp = final, tmp
        self.in_rate, self.out_rate = in_rate, out_rate
        self.channels = channels
        self.layout = "mono" if channels == 1 else "stereo"
        self._in = 0  # samples given, at in_rate
        self._out = 0  # samples encoded, at out_rate
        self._check_rate(codec, out_rate)
        self._file = _open_target(final, tmp)
        try:
            # The edit list is in the movie time scale: the sample rate makes it exact.
            options = {"movie_timescale": str(out_rate)} if codec.muxer == "ipod" else {}
            self._container = av.open(self._file, "w", format=codec.muxer, options=options)
            self._stream = cast(AudioStream, self._container.add_stream(
                codec.encoder, rate=out_rate, layout=self.layout))
            self._stream.codec_context.format = _float_format(codec.encoder)
            self._stream.codec_context.bit_rate = kbps * 1000
            self._container.metadata.update(tags)
            self._stream.metadata.update(tags)  # where the Ogg muxer reads its comments
            self._resampler = (av.AudioResampler(format="fltp", layout=self.layout, rate=out_rate)
                               if out_rate != in_rate else None)
        except self._errors as exc:
            self.discard()
            tmp.unlink(missing_ok=True)
            raise AudioIOError(f"{final}: cannot create a {codec.codec} file at {out_rate} Hz "
                               f"({_reason(exc, tmp)})") from exc

    def _check_rate(self, codec: Codec, rate: int) -> None:
        rates = av.Codec(codec.encoder, "w").audio_rates
        if rates and rate not in rates:
            listed = ", ".join(str(r) for r in sorted(rates))
            raise AudioIOError(f"{self.final}: {codec.codec} cannot store {rate} Hz audio (it "
                               f"takes {listed} Hz); use --sample-rate 44100 or --format flac")

    def encode(self, planar: np.ndarray) -> None:
        try:
            frame = self._frame(planar, self.in_rate, self._in)
            self._in += planar.shape[1]
            frames = self._resampler.resample(frame) if self._resampler else [frame]
            for frame in frames:
                self._send(frame)
        except self._errors as exc:
            raise AudioIOError(f"{self.final}: writing failed ({_reason(exc, self.tmp)})") from exc

    def finish(self) -> None:
        try:
            if self._resampler is not None:
                self._send_tail(self._resampler.resample(None))
            for packet in self._stream.encode(None):
                self._container.mux(packet)
            self._container.close()
            self._file.close()
        except self._errors as exc:
            self.discard()
            raise AudioIOError(f"{self.final}: writing failed ({_reason(exc, self.tmp)})") from exc

    def discard(self) -> None:
        for close in (getattr(self, "_container", None), self._file):
            if close is not None:
                with contextlib.suppress(Exception):  # the file goes next, whatever went wrong
                    close.close()

    def _frame(self, planar: np.ndarray, rate: int, pts: int) -> av.AudioFrame:
        frame = av.AudioFrame.from_ndarray(planar, format="fltp", layout=self.layout)
        frame.sample_rate = rate
        frame.time_base = Fraction(1, rate)
        frame.pts = pts
        return frame

    def _send(self, frame: av.AudioFrame) -> None:
        frame.pts = self._out
        frame.time_base = Fraction(1, self.out_rate)
        self._out += frame.samples
        for packet in self._stream.encode(frame):
            self._container.mux(packet)

    def _send_tail(self, frames: list[av.AudioFrame]) -> None:
        """The resampler's last samples, cut or zero-padded so that the file holds exactly
        ``round(given * out_rate / in_rate)`` samples (swresample's flush rounds up), whatever
        this build's resampler does at the end."""
        target = (2 * self._in * self.out_rate + self.in_rate) // (2 * self.in_rate)
        left = target - self._out
        if left <= 0:
            return
        tail = [f.to_ndarray() for f in frames]
        data = np.concatenate(tail, axis=1) if tail else np.zeros((self.channels, 0), np.float32)
        data = data[:, :left]
        if data.shape[1] < left:
            data = np.pad(data, ((0, 0), (0, left - data.shape[1])))
        self._send(self._frame(np.ascontiguousarray(data, dtype=np.float32), self.out_rate,
                               self._out))


def _float_format(encoder: str) -> str:
    """The encoder's float sample format (PyAV would otherwise pick s16 for libopus and s32p
    for LAME, quantising before the encoder)."""
    formats = [f.name for f in av.Codec(encoder, "w").audio_formats or ()]
    return next((f for f in ("fltp", "flt") if f in formats), formats[0])


class _SndfileVorbis:
    """Ogg Vorbis through libsndfile's libvorbis, VBR at the quality of the asked bitrate."""

    def __init__(self, final: Path, tmp: Path, rate: int, channels: int, kbps: int,
                 tags: Mapping[str, str]) -> None:
        self.final, self.tmp = final, tmp
        low, high = _VORBIS_RATES
        if not low <= rate <= high:
            raise AudioIOError(f"{final}: Vorbis cannot store {rate} Hz audio (it takes {low}-"
                               f"{high} Hz); use --sample-rate 44100 or --format flac")
        try:
            final.parent.mkdir(parents=True, exist_ok=True)
            # libsndfile's "compression level" is 1 - quality / 10 for Vorbis.
            self._file = sf.SoundFile(str(tmp), "w", samplerate=rate, channels=channels,
                                      format="OGG", subtype="VORBIS",
                                      compression_level=1.0 - vorbis_quality(kbps) / 10)
        except OSError as exc:
            raise AudioIOError(f"{final.parent}: cannot write there ({exc.strerror or exc})") from exc
        except (sf.LibsndfileError, RuntimeError, ValueError) as exc:
            tmp.unlink(missing_ok=True)
            if not os.access(final.parent, os.W_OK | os.X_OK):
                raise AudioIOError(f"{final.parent}: cannot write there "
                                   f"({os.strerror(errno.EACCES)})") from exc
            raise AudioIOError(f"{final}: cannot create a Vorbis file at {rate} Hz ({exc}); try "
                               "--sample-rate 44100 or --format flac") from exc
        for key, value in tags.items():  # Vorbis comments, written with the header
            setattr(self._file, key, value)

    def encode(self, planar: np.ndarray) -> None:
        try:
            self._file.write(planar.T)
        except (sf.LibsndfileError, RuntimeError, OSError) as exc:
            raise AudioIOError(f"{self.final}: writing failed "
                               f"({_sndfile_write_failure(exc, self.tmp)})") from exc

    def finish(self) -> None:
        try:
            self._file.close()
        except (sf.LibsndfileError, RuntimeError, OSError) as exc:
            raise AudioIOError(f"{self.final}: writing failed "
                               f"({_sndfile_write_failure(exc, self.tmp)})") from exc

    def discard(self) -> None:
        with contextlib.suppress(Exception):
            self._file.close()


def vorbis_quality(kbps: int) -> float:
    """The libvorbis quality (0-10) whose nominal 44.1 kHz stereo bitrate is ``kbps``,
    interpolated between libvorbis' table (quality 6: 192 kbps)."""
    return float(np.interp(kbps, _VORBIS_NOMINAL_KBPS, np.arange(len(_VORBIS_NOMINAL_KBPS))))
