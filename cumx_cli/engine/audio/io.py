"""Reading and writing audio files: libsndfile (WAV, FLAC, OGG, MP3, AIFF) where it reads the
file, FFmpeg through PyAV (:mod:`.decode`) for everything else.

Reading is streamed in blocks and validated on the way (channel count, NaN/infinite samples,
truncation), so a file of any length is never held in memory at once. Writing goes to a hidden
temporary file in the destination folder that is renamed to the final name only when complete,
so a killed run never leaves a half-written file at a final path.
"""

from __future__ import annotations

import contextlib
import os
import re
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from types import ModuleType
from typing import Literal

import numpy as np
import soundfile as sf
import torch

from cumx_cli.engine.audio.formats import AUDIO_SUFFIXES as AUDIO_SUFFIXES  # re-exported
from cumx_cli.engine.errors import AudioIOError, ConfigError
from cumx_cli.engine.files import disk_full_reason, temp_path

OutputFormat = Literal["wav", "flac", "mp3"]
SampleType = Literal["int16", "int24", "float32"]


_SUBTYPES: dict[tuple[str, str], str] = {
    ("wav", "int16"): "PCM_16",
    ("wav", "int24"): "PCM_24",
    ("wav", "float32"): "FLOAT",
    ("flac", "int16"): "PCM_16",
    ("flac", "int24"): "PCM_24",
}
_CONTAINERS = {"wav": "WAV", "flac": "FLAC", "mp3": "MP3"}
#: libsndfile's ``SFC_SET_ADD_PEAK_CHUNK`` (sndfile.h); soundfile has no public call for it.
_SFC_SET_ADD_PEAK_CHUNK = 0x1050
_SHOULD_BE = re.compile(r"^data\s*:\s*\d+\s*\(should be", re.MULTILINE)


@dataclass(frozen=True)
class AudioInfo:
    """What a file holds, read from its header."""

    path: Path
    sample_rate: int
    channels: int
    frames: int
    #: Who decodes it: ``"sndfile"`` (libsndfile) or ``"ffmpeg"`` (PyAV, :mod:`.decode`).
    decoder: str = "sndfile"

    @property
    def seconds(self) -> float:
        return self.frames / self.sample_rate


def check_file(path: Path) -> None:
    """Fail with one line if ``path`` is missing, a folder, unreadable or empty."""
    if not path.exists():
        raise AudioIOError(f"{path}: no such file")
    if path.is_dir():
        raise AudioIOError(f"{path}: is a folder, not an audio file")
    if not os.access(path, os.R_OK):
        raise AudioIOError(f"{path}: permission denied (the file is not readable)")
    if path.stat().st_size == 0:
        raise AudioIOError(f"{path}: the file is empty")


def _sndfile(path: Path) -> sf.SoundFile | None:
    """The file opened with libsndfile, or None when libsndfile does not read its format."""
    try:
        with _quiet_native_stderr():
            return sf.SoundFile(str(path))
    except (sf.LibsndfileError, RuntimeError, TypeError):
        return None


def _open(path: Path) -> sf.SoundFile:
    check_file(path)
    f = _sndfile(path)
    if f is None:
        raise AudioIOError(f"{path}: not a readable audio file (unknown format, or corrupt)")
    return f


@contextlib.contextmanager
def _quiet_native_stderr() -> Iterator[None]:
    """Silence what the C decoders print straight to file descriptor 2 (libmpg123's "Note: ..."
    lines on a damaged MP3): cumx reports each problem itself, in one line."""
    try:
        saved = os.dup(2)
    except OSError:
        yield
        return
    try:
        devnull = os.open(os.devnull, os.O_WRONLY)
        try:
            os.dup2(devnull, 2)
        finally:
            os.close(devnull)
        yield
    finally:
        os.dup2(saved, 2)
        os.close(saved)


def probe(path: Path, *, stream: int = 0) -> AudioInfo:
    """Read and validate a file's header; which library decodes it is chosen here, by content.

    libsndfile reads what it recognises (WAV, FLAC, OGG, MP3, AIFF: exact, and fast to seek)
    with one or two channels; FFmpeg, through PyAV (:mod:`.decode`), reads everything else: AAC
    and ALAC ``.m4a``, video files, WMA, a ``.mp3`` that is really AAC, a WAV that libsndfile
    refuses, and files of more than two channels, which it downmixes to stereo (the returned
    :class:`~cumx_cli.engine.audio.decode.FFmpegAudioInfo` says so in ``downmixed_from``).
    ``stream`` picks an audio stream other than the first (a MUSDB18 ``.stem.mp4`` holds five):
    FFmpeg reads those, and the returned info remembers it, so :func:`read_blocks` reads it.

    Raises:
        AudioIOError: missing, unreadable, empty, undecodable, truncated, no samples, no audio
            stream, no such stream (named, one line).
    """
    path = Path(path)
    check_file(path)
    f = None if stream else _sndfile(path)
    if f is None:
        return _ffmpeg().probe(path, stream=stream)
    with f:
        info = AudioInfo(path=path, sample_rate=int(f.samplerate), channels=int(f.channels),
                         frames=int(f.frames))
        if f.format in ("WAV", "WAVEX", "RF64") and _SHOULD_BE.search(f.extra_info or ""):
            raise AudioIOError(f"{path}: the file is truncated (its header promises more audio "
                               "than the file holds)")
    if info.channels > 2:
        return _ffmpeg().probe(path)  # downmixed to stereo, as FFmpeg does
    if info.frames <= 0:
        raise AudioIOError(f"{path}: contains no audio samples")
    return info


def _ffmpeg() -> ModuleType:
    """:mod:`.decode`, imported when first needed (PyAV takes about 0.1 s to import)."""
    from cumx_cli.engine.audio import decode

    return decode


def read_blocks(info: AudioInfo, block_frames: int = 1 << 18) -> Iterator[torch.Tensor]:
    """Yield the file's samples in blocks, checking for NaN/inf and truncation.

    Shapes:
        yields: (channel, time) float32
    """
    if info.decoder == "ffmpeg":
        yield from _ffmpeg().read_blocks(info, block_frames)
        return
    read = 0
    with _open(info.path) as f:
        while read < info.frames:
            try:
                with _quiet_native_stderr():
                    data = f.read(min(block_frames, info.frames - read), dtype="float32",
                                  always_2d=True)
            except (sf.LibsndfileError, RuntimeError) as exc:
                raise AudioIOError(f"{info.path}: decoding failed after {read / info.sample_rate:.1f} s "
                                   f"(the file is probably truncated or corrupt: {exc})") from exc
            if data.shape[0] == 0:
                raise AudioIOError(
                    f"{info.path}: the file is truncated (header promises {info.frames} samples, "
                    f"only {read} could be decoded)"
                )
            if not np.isfinite(data).all():
                bad = int(np.argmax(~np.isfinite(data).all(axis=1)))
                raise AudioIOError(f"{info.path}: contains NaN or infinite samples "
                                   f"(first at {(read + bad) / info.sample_rate:.3f} s)")
            read += data.shape[0]
            yield torch.from_numpy(np.ascontiguousarray(data.T))


def read_excerpt(path: Path, start: int, frames: int, *, stream: int = 0) -> torch.Tensor:
    """``frames`` samples of a file from sample ``start``, seeking (only those are decoded), and
    zero-padded at the end where the file is shorter. For datasets read excerpt by excerpt: the
    caller checks the samples (:func:`probe` checked the header). ``stream``: as in :func:`probe`.

    Raises:
        AudioIOError: the file cannot be decoded.

    Shapes:
        returns: (channel, frames) float32
    """
    f = None if stream else _sndfile(Path(path))
    if f is None or f.channels > 2:
        if f is not None:
            f.close()
        return _ffmpeg().read_excerpt(Path(path), start, frames, stream=stream)
    try:
        with f, _quiet_native_stderr():
            f.seek(min(start, f.frames))
            array = f.read(frames, dtype="float32", always_2d=True)
    except (sf.LibsndfileError, RuntimeError) as exc:
        raise AudioIOError(f"{path}: cannot read ({exc})") from exc
    if array.shape[0] < frames:
        array = np.pad(array, ((0, frames - array.shape[0]), (0, 0)))
    return torch.from_numpy(np.ascontiguousarray(array.T))


def read_audio(path: Path, *, stream: int = 0) -> tuple[torch.Tensor, int]:
    """Read a whole file (its ``stream``-th audio stream). Returns ``(waveform (channel, time)
    float32, sample_rate)``."""
    info = probe(Path(path), stream=stream)
    return torch.cat(list(read_blocks(info)), dim=-1), info.sample_rate


def count_audio_streams(path: Path) -> int:
    """How many audio streams a file holds (5 in a MUSDB18 ``.stem.mp4``), without decoding.

    Raises:
        AudioIOError: missing, unreadable, empty, or not a media file.
    """
    path = Path(path)
    check_file(path)
    return int(_ffmpeg().count_audio_streams(path))


def subtype_for(fmt: OutputFormat, dtype: SampleType) -> str:
    """libsndfile subtype for a format and sample type; MP3 ignores the sample type."""
    if fmt == "mp3":
        return "MPEG_LAYER_III"
    try:
        return _SUBTYPES[(fmt, dtype)]
    except KeyError:
        raise ConfigError(f"--format {fmt} cannot store {dtype} samples; use --dtype int16 or "
                          "int24") from None


class AudioWriter:
    """Write a file block by block to a temporary name; :meth:`commit` renames it into place.
    ``tags`` (title, artist, album) go where the format keeps them (WAV INFO, FLAC comments).

    Integer formats are always clamped to [-1, 1] before encoding: libsndfile would otherwise
    wrap out-of-range floats around. Float WAV files get no PEAK chunk: libsndfile stamps it
    with the wall-clock second, so the same samples written a second apart differed in a byte;
    without it the same stems are the same file (checksums, ``make``). Use as a context
    manager: leaving it without :meth:`commit` (an error) deletes the temporary file.
    """

    def __init__(self, final: Path, sample_rate: int, channels: int, fmt: OutputFormat,
                 dtype: SampleType, tags: Mapping[str, str] | None = None) -> None:
        self.final = final
        self.tmp = temp_path(final)
        self.clamp = fmt == "mp3" or dtype != "float32"
        self.int16 = subtype_for(fmt, dtype) == "PCM_16"
        try:
            final.parent.mkdir(parents=True, exist_ok=True)
            self._file = sf.SoundFile(str(self.tmp), "w", samplerate=sample_rate, channels=channels,
                                      subtype=subtype_for(fmt, dtype), format=_CONTAINERS[fmt])
            if fmt == "wav":
                _no_peak_chunk(self._file)
            for key in ("title", "artist", "album"):  # WAV INFO chunk, FLAC Vorbis comments
                if tags and tags.get(key):
                    setattr(self._file, key, tags[key])
        except OSError as exc:
            raise AudioIOError(f"{final.parent}: cannot write there ({exc.strerror or exc})") from exc
        except (sf.LibsndfileError, RuntimeError, ValueError) as exc:
            self.tmp.unlink(missing_ok=True)
            raise AudioIOError(f"{final}: cannot create a {fmt} file at {sample_rate} Hz "
                               f"({exc}); try --format flac or --sample-rate 44100") from exc

    def write(self, block: torch.Tensor) -> None:
        """Append samples. Shapes: block (channel, time) float."""
        self.write_frames(block.T)

    def write_frames(self, frames: torch.Tensor) -> None:
        """Append samples given frame by frame. Shapes: frames (time, channel) float.

        16-bit output is converted here, as ``floor(x * 32768)`` clamped to the int16 range:
        exactly what libsndfile 1.2 does for WAV, but vectorised, and the same for every
        container (libsndfile's FLAC writer would round differently).
        """
        data = frames.detach().to(torch.float32)
        if self.int16:  # the clamp to the int16 range is the clamp to [-1, 1], one pass fewer
            data = data.mul(32768.0).floor_().clamp_(-32768.0, 32767.0).to(torch.int16)
        elif self.clamp:
            data = data.clamp(-1.0, 1.0)
        try:
            self._file.write(data.contiguous().numpy())
        except (sf.LibsndfileError, RuntimeError, OSError) as exc:
            raise AudioIOError(f"{self.final}: writing failed ({_write_failure(exc, self.tmp)})"
                               ) from exc

    def commit(self) -> None:
        self._file.close()
        try:
            os.replace(self.tmp, self.final)
        except OSError as exc:
            raise AudioIOError(f"{self.final}: cannot move the finished file into place "
                               f"({exc.strerror or exc})") from exc

    def abort(self) -> None:
        if not self._file.closed:
            try:
                self._file.close()
            except (sf.LibsndfileError, RuntimeError, OSError):
                pass
        self.tmp.unlink(missing_ok=True)

    def __enter__(self) -> AudioWriter:
        return self

    def __exit__(self, exc_type: object, *_: object) -> None:
        if exc_type is not None or not self._file.closed:
            self.abort()


def _no_peak_chunk(file: sf.SoundFile) -> None:
    """Ask libsndfile not to write a PEAK chunk (before any sample is written). Through
    soundfile's cffi handle, as its own compression-level setter does; where a soundfile version
    lacks that handle the file keeps its chunk, which only costs reproducibility."""
    snd, handle = getattr(sf, "_snd", None), getattr(file, "_file", None)
    if snd is not None and handle is not None:
        snd.sf_command(handle, _SFC_SET_ADD_PEAK_CHUNK, sf._ffi.NULL, 0)


def _write_failure(exc: Exception, path: Path) -> str:
    """Why a write failed. libsndfile reports every failed ``write(2)`` as "System error."
    (``SF_ERR_SYSTEM``); the C ``errno`` it left (read through soundfile's cffi handle), or else a
    full file system, says which."""
    if isinstance(exc, OSError):
        return exc.strerror or str(exc)
    if getattr(exc, "code", None) == 2:  # SF_ERR_SYSTEM
        code = getattr(getattr(sf, "_ffi", None), "errno", 0)
        if isinstance(code, int) and code > 0:
            return os.strerror(code)
        return disk_full_reason(path) or str(exc)
    return str(exc)


def write_audio(path: Path, waveform: torch.Tensor, sample_rate: int, fmt: OutputFormat = "wav",
                dtype: SampleType = "float32") -> None:
    """Write a whole waveform (channel, time) atomically."""
    with AudioWriter(Path(path), sample_rate, waveform.shape[0], fmt, dtype) as w:
        w.write(waveform)
        w.commit()
