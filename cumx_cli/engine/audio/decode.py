"""Reading what FFmpeg reads (through PyAV): AAC and ALAC ``.m4a``, Opus, WMA, AC-3, Matroska, and
the first audio stream of a video (``.mp4``, ``.mkv``, ``.webm``, ``.mov``, ...).

The functions mirror :mod:`cumx_cli.engine.audio.io` (``probe``, ``read_blocks``,
``read_excerpt``, ``read_audio``: the same shapes, dtype and one-line :class:`AudioIOError`
messages starting with the path), so that module can hand a file here when libsndfile cannot
read it. Decoding is streamed packet by packet, and only the chosen audio stream is demuxed
(every other stream is discarded in the demuxer), so memory stays flat for a two-hour concert
video.

Length. The samples are those FFmpeg's decoder gives, which already drops what the container
says to drop at the start (the MP4 edit list's encoder priming, Opus pre-skip, the LAME header
of an MP3, Matroska's CodecDelay) and at the end where the demuxer trims the last packet (Ogg
granule positions, Matroska DiscardPadding, LAME padding). One more rule makes an MP4 exact:
when the stream's time base is one sample (MP4, MOV, Ogg) and the last packet's duration is
shorter than its decoded frame, the frame is cut to that duration; ``ffmpeg -i`` keeps that
padding (up to one frame, 1023 samples for AAC). Formats that record no delay or padding (ADTS
``.aac``, raw ``.ac3``, WMA, AAC in Matroska or fragmented MP4) give what the decoder gives:
encoder priming and padding included. The container's declared duration is only an estimate,
so :func:`probe` decodes the stream once to count its samples (about 0.1 s of CPU per minute
of AAC) and finds any decoding error before the work starts.

Channels. Mono stays mono. A stream with more than two channels is downmixed to stereo with
libswresample's default matrix, which for float output is not normalised (peaks can exceed
1)::

    left  = FL + 0.7071 FC + 0.7071 (BL or SL) + 0.7071 SL (7.1) + 0.5 BC (6.1)
    right = FR + 0.7071 FC + 0.7071 (BR or SR) + 0.7071 SR (7.1) + 0.5 BC (6.1)

with the LFE channel dropped (ITU-R BS.775 Lo/Ro, -3 dB centre and surrounds): what
``ffmpeg -i IN -ac 2 -c:a pcm_f32le OUT.wav`` gives. A layout with unspecified order is read as
FFmpeg's default layout for its channel count (3 channels are 2.1: the third one is dropped).
:attr:`FFmpegAudioInfo.downmixed_from` says when this happened, so the caller can warn.
"""

from __future__ import annotations

import contextlib
from collections.abc import Generator, Iterator
from dataclasses import dataclass
from fractions import Fraction
from pathlib import Path

import av
import av.logging
import numpy as np
import torch
from av.audio.frame import AudioFrame
from av.audio.resampler import AudioResampler
from av.audio.stream import AudioStream
from av.container import InputContainer
from av.stream import Discard

from cumx_cli.engine.audio.io import AudioInfo, check_file
from cumx_cli.engine.errors import AudioIOError

_BLOCK_FRAMES = 1 << 18
# Decoded and dropped before an excerpt after a seek, so the decoder's state (AAC's overlap, the
# MP3 bit reservoir, Opus's 80 ms of convergence) is what a decode from the start would have.
_PREROLL_SECONDS = 0.5
# FairPlay-protected iTunes tracks: the sample entry names no decodable codec.
_DRM_TAGS = frozenset({"drms", "drmi", "p608"})


@dataclass(frozen=True)
class FFmpegAudioInfo(AudioInfo):
    """What :func:`probe` found: an :class:`~cumx_cli.engine.audio.io.AudioInfo`, plus where
    the samples come from.

    ``channels`` is what the blocks have (1 or 2); ``source_channels`` is the most channels
    any part of the stream has (more than 2 means the blocks are a downmix).
    """

    decoder: str = "ffmpeg"
    stream: int = 0
    codec: str = ""
    source_channels: int = 0
    source_layout: str = ""

    @property
    def downmixed_from(self) -> int | None:
        """The file's channel count where it was downmixed to stereo, else None."""
        return self.source_channels if self.source_channels > 2 else None


@contextlib.contextmanager
def _quiet_ffmpeg() -> Iterator[None]:
    """Keep FFmpeg's log lines ("Invalid data found...", "partial file") off stderr while a call
    runs: cumx reports each problem itself, in one line. PyAV discards them by default; this
    restores whatever level someone else set."""
    level = av.logging.get_level()
    if level is None:
        yield
        return
    av.logging.set_level(None)
    try:
        yield
    finally:
        av.logging.set_level(level)


def _why(exc: Exception) -> str:
    """FFmpeg's reason without PyAV's "[Errno N]" and function name."""
    if isinstance(exc, av.FFmpegError) and exc.strerror:
        return exc.strerror
    return str(exc)


@contextlib.contextmanager
def _open(path: Path) -> Iterator[InputContainer]:
    """Open a file as a local file only: ``file:`` stops FFmpeg reading a name such as
    ``a:b.m4a`` as a protocol, and the whitelist stops a playlist reaching the network."""
    check_file(path)
    try:
        with _quiet_ffmpeg():
            container = av.open(f"file:{path.absolute()}", options={"protocol_whitelist": "file"},
                                metadata_errors="replace")
    except (av.FFmpegError, UnicodeDecodeError) as exc:
        raise AudioIOError(f"{path}: not a readable audio or video file (unknown format, "
                           "truncated or corrupt)") from exc
    try:
        yield container
    finally:
        with _quiet_ffmpeg():
            container.close()


def _select(container: InputContainer, path: Path, stream: int) -> AudioStream:
    """The ``stream``-th audio stream (0: the first); every other stream is discarded unread."""
    audio = container.streams.audio
    if not audio:
        kinds = sorted({s.type for s in container.streams})
        found = f" (only {' and '.join(kinds)})" if kinds else ""
        raise AudioIOError(f"{path}: has no audio stream{found}")
    if not 0 <= stream < len(audio):
        raise AudioIOError(f"{path}: has {len(audio)} audio stream{'s' * (len(audio) > 1)}; "
                           f"there is no stream {stream} (streams count from 0)")
    chosen = audio[stream]
    for other in container.streams:
        if other.index != chosen.index:
            other.discard = Discard.all
    if _codec_tag(chosen) in _DRM_TAGS:
        raise AudioIOError(f"{path}: the audio is encrypted (DRM-protected) and cannot be decoded")
    try:
        name = chosen.codec_context.name
    except (AttributeError, av.FFmpegError) as exc:
        raise AudioIOError(f"{path}: FFmpeg has no decoder for its audio stream") from exc
    if not name:
        raise AudioIOError(f"{path}: FFmpeg has no decoder for its audio stream")
    return chosen


def _codec_tag(stream: AudioStream) -> str:
    """The sample entry's four-character code; "" where it is not text (WAV's 16-bit tags)."""
    try:
        return stream.codec_tag
    except UnicodeDecodeError:
        return ""


def _kept(frame: AudioFrame) -> int:
    """Samples of the stream's last frame to keep: its packet's duration where that is exact
    (a one-sample time base) and shorter than the frame, i.e. the MP4's trailing padding."""
    if (frame.time_base == Fraction(1, frame.sample_rate)
            and 0 < frame.duration < frame.samples):
        return int(frame.duration)
    return int(frame.samples)


Decoded = Generator[tuple[AudioFrame, int], None, None]


def _decoded(container: InputContainer, stream: AudioStream, path: Path, *,
             from_start: bool = True) -> Decoded:
    """Decode ``stream`` packet by packet: yields ``(frame, samples to keep)``.

    The last frame is held back until the end, to cut it to its packet's duration. From the
    start, a stream with fewer packets than its index lists (an MP4 cut at a packet boundary,
    which FFmpeg reads as a clean end) is truncated. The index is the demuxer's, after the edit
    list dropped what it skips (``stream.frames`` counts those too); formats without one build
    it while reading.
    """
    demuxer = container.demux(stream)
    held: AudioFrame | None = None
    packets = 0
    seconds = 0.0
    while True:
        with _quiet_ffmpeg():
            try:
                packet = next(demuxer)
                if packet.size:
                    if packets == 0 and packet.has_sidedata("encryption_info"):
                        raise AudioIOError(f"{path}: the audio is encrypted (DRM-protected) and "
                                           "cannot be decoded")
                    packets += 1
                frames = packet.decode()
            except StopIteration:
                break
            except av.FFmpegError as exc:
                raise _undecodable(path, stream, seconds, held is None, exc) from exc
        for frame in frames:
            if frame.sample_rate <= 0:
                raise AudioIOError(f"{path}: decoding gave audio without a sample rate after "
                                   f"{seconds:.1f} s (the file is corrupt)")
            if held is not None:
                yield held, int(held.samples)
            held = frame
            seconds += frame.samples / frame.sample_rate
    listed = len(stream.index_entries)
    if from_start and 0 < packets < listed:
        raise AudioIOError(f"{path}: the file is truncated (its index lists {listed} packets, "
                           f"only {packets} could be read)")
    if held is not None:
        yield held, _kept(held)


def _undecodable(path: Path, stream: AudioStream, seconds: float, nothing_yet: bool,
                 exc: Exception) -> AudioIOError:
    if nothing_yet:
        return AudioIOError(f"{path}: its {stream.codec_context.name} audio cannot be decoded "
                            f"({_why(exc)}: the file is corrupt, or DRM-protected)")
    return AudioIOError(f"{path}: decoding failed after {seconds:.1f} s (the file is truncated "
                        f"or corrupt: {_why(exc)})")


class _Converter:
    """Frames of any sample format and layout to float32 samples at one channel count.

    Planar float with the right channel count (AAC, Opus, MP3, AC-3, WMA) is read in place;
    anything else goes through libswresample at the frame's own rate: only the sample format
    changes, plus the channel matrix where the count differs (the downmix of the module
    docstring).
    """

    def __init__(self, channels: int) -> None:
        self.channels = channels
        self._resamplers: dict[tuple[str, str, int], AudioResampler] = {}

    def __call__(self, frame: AudioFrame, path: Path) -> list[np.ndarray]:
        """One (time,) float32 array per output channel, views of the frame's planes where
        possible: copy them before the frame goes."""
        if frame.format.name == "fltp" and frame.layout.nb_channels == self.channels:
            return _planes(frame)
        key = (frame.format.name, frame.layout.name, frame.sample_rate)
        resampler = self._resamplers.get(key)
        if resampler is None:
            same = frame.layout.nb_channels == self.channels
            resampler = AudioResampler(format="fltp", rate=frame.sample_rate,
                                       layout=frame.layout.name if same else _LAYOUTS[self.channels])
            self._resamplers[key] = resampler
        try:
            with _quiet_ffmpeg():
                out = [_planes(converted) for converted in resampler.resample(frame)]
        except (av.FFmpegError, ValueError) as exc:
            raise AudioIOError(f"{path}: cannot convert its {frame.layout.name} "
                               f"{frame.format.name} audio ({_why(exc)})") from exc
        planes = out[0] if len(out) == 1 else [np.concatenate(c) for c in zip(*out, strict=True)]
        if not planes or planes[0].shape[0] != frame.samples:  # same rate: sample for sample
            raise AudioIOError(f"{path}: converting its {frame.layout.name} {frame.format.name} "
                               f"audio did not give {frame.samples} samples")
        return planes


def _planes(frame: AudioFrame) -> list[np.ndarray]:
    """The channels of a planar float frame, as views (a plane's buffer may be padded; PyAV
    also lists one plane too many above eight channels)."""
    count = frame.layout.nb_channels
    return [np.frombuffer(memoryview(plane), dtype=np.float32, count=frame.samples)
            for plane in frame.planes[:count]]


_LAYOUTS = {1: "mono", 2: "stereo"}


def _output_channels(frame: AudioFrame) -> int:
    return 1 if frame.layout.nb_channels == 1 else 2


def _rate_changed(path: Path, rate: int, frame: AudioFrame, seconds: float) -> AudioIOError:
    return AudioIOError(f"{path}: the sample rate changes mid-stream ({rate} Hz to "
                        f"{frame.sample_rate} Hz at {seconds:.1f} s); convert it first, e.g. "
                        f"ffmpeg -i IN -ar {rate} OUT.wav")


def probe(path: Path, *, stream: int = 0) -> FFmpegAudioInfo:
    """Open a file, pick its ``stream``-th audio stream and decode it once to count its samples.

    The rate and the channels are those of the first decoded frame (an HE-AAC header may
    announce half the rate). Decoding errors, truncation and a changing sample rate are found
    here, before any work starts.

    Args:
        path: any file FFmpeg opens (by content: a ``.mp3`` that holds AAC is read as AAC).
        stream: which audio stream, counting from 0 (a ``.stem.mp4`` holds mixture, drums,
            bass, other, vocals).

    Raises:
        AudioIOError: missing, unreadable, empty, not media, no audio stream, no such stream,
            encrypted, undecodable, truncated or corrupt, no samples, or a rate change.
    """
    path = Path(path)
    with _open(path) as container:
        chosen = _select(container, path, stream)
        frames = 0
        rate = 0
        channels = 0
        most = 0
        layout = ""
        for frame, kept in _decoded(container, chosen, path):
            if not rate:
                rate = int(frame.sample_rate)
                channels = _output_channels(frame)
            elif frame.sample_rate != rate:
                raise _rate_changed(path, rate, frame, frames / rate)
            if frame.layout.nb_channels > most:
                most = frame.layout.nb_channels
                layout = frame.layout.name
            frames += kept
        codec = chosen.codec_context.name
        kind = container.format.name.split(",")[0]
    if frames <= 0:  # FFmpeg goes by the suffix when the content says nothing: random bytes too
        raise AudioIOError(f"{path}: contains no audio samples (an empty stream, or not really "
                           f"a {kind} file)")
    return FFmpegAudioInfo(path=path, sample_rate=rate, channels=channels, frames=frames,
                           stream=stream, codec=codec, source_channels=most, source_layout=layout)


def read_blocks(info: FFmpegAudioInfo, block_frames: int = _BLOCK_FRAMES) -> Iterator[torch.Tensor]:
    """Yield the stream's samples in blocks of ``block_frames`` (the last one shorter): exactly
    ``info.frames`` in all, checked for NaN/inf and for the file changing since :func:`probe`.

    Shapes:
        yields: (channel, time) float32
    """
    path = info.path
    if block_frames < 1:
        raise ValueError(f"block_frames must be at least 1, not {block_frames}")
    convert = _Converter(info.channels)
    block = np.empty((info.channels, min(block_frames, info.frames)), dtype=np.float32)
    filled = 0
    done = 0
    with _open(path) as container:
        chosen = _select(container, path, info.stream)
        for frame, kept in _decoded(container, chosen, path):
            if frame.sample_rate != info.sample_rate:
                raise _rate_changed(path, info.sample_rate, frame, done / info.sample_rate)
            planes = convert(frame, path)
            begin = 0
            end = min(kept, info.frames - done - filled)
            while begin < end:
                take = min(end - begin, block.shape[1] - filled)
                for row, plane in zip(block, planes, strict=True):
                    row[filled:filled + take] = plane[begin:begin + take]
                begin += take
                filled += take
                if filled == block.shape[1]:
                    yield _checked(block, path, done, info.sample_rate)
                    done += filled
                    filled = 0
                    block = np.empty((info.channels, min(block_frames, info.frames - done)),
                                     dtype=np.float32)
            if done == info.frames:
                return
    raise AudioIOError(f"{path}: the file changed or is truncated (probing found {info.frames} "
                       f"samples, only {done + filled} could be decoded)")


def _checked(block: np.ndarray, path: Path, offset: int, sample_rate: int) -> torch.Tensor:
    finite = np.isfinite(block).all(axis=0)
    if not finite.all():
        bad = int(np.argmax(~finite))
        raise AudioIOError(f"{path}: contains NaN or infinite samples "
                           f"(first at {(offset + bad) / sample_rate:.3f} s)")
    return torch.from_numpy(block)


def read_excerpt(path: Path, start: int, frames: int, *, stream: int = 0) -> torch.Tensor:
    """``frames`` samples from sample ``start``, zero-padded where the stream is shorter.

    Where the time base counts samples (MP4, MOV, Ogg) this seeks to ``start`` less half a
    second and decodes from there: the samples equal those of a decode from the start (for
    lossless codecs, AAC and Opus alike), except in the bands AAC codes as noise (PNS), whose
    generator restarts at the seek (about 100 dB below the signal). Elsewhere it decodes from
    the start and drops what comes before ``start``. The channel count is that of the stream's
    first frame, as in :func:`probe`.

    Raises:
        AudioIOError: as :func:`probe`, for the part decoded.

    Shapes:
        returns: (channel, frames) float32
    """
    path = Path(path)
    with _open(path) as container:
        chosen = _select(container, path, stream)
        decoded = _decoded(container, chosen, path)
        first = next(decoded, None)
        if first is None:
            raise AudioIOError(f"{path}: contains no audio samples")
        frame = first[0]
        rate = int(frame.sample_rate)
        out = np.zeros((_output_channels(frame), max(frames, 0)), dtype=np.float32)
        preroll = int(_PREROLL_SECONDS * rate)
        if start <= preroll or frame.pts is None or chosen.time_base != Fraction(1, rate):
            _fill(_chain(first, decoded), out, start, 0, path)
            return torch.from_numpy(out)
        decoded.close()
        if _fill_after_seek(container, chosen, path, out, start, frame.pts, start - preroll):
            return torch.from_numpy(out)
    with _open(path) as container:  # the seek overshot: decode from the start after all
        _fill(_decoded(container, _select(container, path, stream), path), out, start, 0, path)
    return torch.from_numpy(out)


def _fill_after_seek(container: InputContainer, stream: AudioStream, path: Path, out: np.ndarray,
                     start: int, origin: int, target: int) -> bool:
    """Seek to ``target`` samples and fill ``out`` from ``start``; False where the seek landed
    after ``start`` or gave no timestamp, so the caller decodes from the start instead."""
    try:
        with _quiet_ffmpeg():
            container.seek(origin + target, stream=stream, backward=True)
    except av.FFmpegError:
        return False
    decoded = _decoded(container, stream, path, from_start=False)
    for frame, kept in decoded:
        if frame.pts is None:
            continue
        position = int(frame.pts) - origin
        if position > start:
            return False
        _fill(_chain((frame, kept), decoded), out, start, position, path)
        return True
    return False


def _chain(first: tuple[AudioFrame, int],
           rest: Iterator[tuple[AudioFrame, int]]) -> Iterator[tuple[AudioFrame, int]]:
    yield first
    yield from rest


def _fill(decoded: Iterator[tuple[AudioFrame, int]], out: np.ndarray, start: int, position: int,
          path: Path) -> None:
    """Copy the decoded samples that fall in ``[start, start + out.shape[1])``, the first frame
    being at sample ``position``."""
    convert = _Converter(out.shape[0])
    rate = 0
    end = start + out.shape[1]
    for frame, kept in decoded:
        if not rate:
            rate = int(frame.sample_rate)
        elif frame.sample_rate != rate:
            raise _rate_changed(path, rate, frame, position / rate)
        if position + kept > start:
            lo = max(start - position, 0)
            hi = min(kept, end - position)
            for row, plane in zip(out, convert(frame, path), strict=True):
                row[position + lo - start:position + hi - start] = plane[lo:hi]
        position += kept
        if position >= end:
            return


def read_audio(path: Path, *, stream: int = 0) -> tuple[torch.Tensor, int]:
    """Read a whole stream. Returns ``(waveform (channel, time) float32, sample_rate)``."""
    info = probe(Path(path), stream=stream)
    return torch.cat(list(read_blocks(info)), dim=-1), info.sample_rate


def count_audio_streams(path: Path) -> int:
    """How many audio streams a file holds (5 in a MUSDB ``.stem.mp4``), without decoding."""
    path = Path(path)
    with _open(path) as container:
        return len(container.streams.audio)
