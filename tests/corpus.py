"""The bad-input corpus: every command is run against it (``tests/cli/test_corpus.py``).

Each :class:`Case` is a named builder that writes one bad (or awkward but legal) thing under a
folder it is given and returns the path to hand to a command: audio files, checkpoints, dataset
folders, output folders and cache folders. Audio is 44.1 kHz stereo, :data:`SECONDS` long (the
length of every dataset track, so that an audio case can also stand in for a stem), unless the
case is about the rate, the length or the channels.

Audio that libsndfile does not read (M4A, MP4, Matroska, MPEG-TS) is encoded here with PyAV,
whose wheels bundle FFmpeg: CI has no ffmpeg binary. Each such builder names its container
format, so that the file's content is the same whatever name the caller gives it (``eval``
tests store every audio case as ``vocals.wav``, and FFmpeg goes by the content).

The builders are plain data: what each command must do with each case is decided by the tests.
"""

from __future__ import annotations

import errno
import hashlib
import io
import json
import os
import tempfile
from collections.abc import Callable
from dataclasses import dataclass
from fractions import Fraction
from pathlib import Path
from typing import Literal

import av
import numpy as np
import pytest
import soundfile as sf
import torch
from av.container import OutputContainer
from av.video.stream import VideoStream

from tests.conftest import RATE, music
from tests.synthetic_musdb import write_musdb

#: The length of the audio cases and of every dataset track.
SECONDS = 1.5
#: The tracks of :func:`write_dataset`: to train on, to validate on (split.json), to test on.
TRAIN_TRACK, VALID_TRACK, TEST_TRACK = "Alpha - Train", "Beta - Valid", "Gamma - Test"

Kind = Literal["audio", "checkpoint", "dataset", "output", "cache"]


def _permissions_ignored() -> tuple[bool, bool]:
    """Whether this process reads a mode-000 file and writes into a read-only folder anyway.

    Tried rather than inferred from the user id: root is stopped by file modes like anyone else
    without CAP_DAC_OVERRIDE / CAP_DAC_READ_SEARCH (some containers drop them).
    """
    with tempfile.TemporaryDirectory() as tmp:
        locked, secret = Path(tmp) / "locked", Path(tmp) / "secret"
        secret.write_text("x")
        secret.chmod(0)
        locked.mkdir(mode=0o500)
        try:
            (locked / "probe").touch()
            writes = True
        except PermissionError:
            writes = False
        finally:
            locked.chmod(0o700)
        return os.access(secret, os.R_OK), writes


#: Root reads and writes whatever the modes say: where chmod cannot make a file unreadable or a
#: folder unwritable, the builders use something root cannot get through either (a dangling
#: link, a regular file where a folder should be).
READS_ANY_FILE, WRITES_ANYWHERE = _permissions_ignored()


@dataclass(frozen=True)
class Case:
    """One entry of the corpus.

    ``make(path)`` writes the bad thing at ``path`` (the caller may choose the name, e.g.
    ``vocals.wav`` or ``last.pt``) and returns the path to give the command, which is ``path``
    except where root needs a detour (see :data:`WRITES_ANYWHERE`). ``valid`` marks audio (or a
    data set) that every reader must accept; ``simulate`` is applied with a pytest monkeypatch for conditions
    that files alone cannot make (a full disk).
    """

    id: str
    kind: Kind
    filename: str
    make: Callable[[Path], Path]
    valid: bool = False
    simulate: Callable[[pytest.MonkeyPatch, Path], None] | None = None

    def build(self, folder: Path, name: str | None = None) -> Path:
        """Write the case under ``folder`` (as ``name``, or its own file name)."""
        path = folder / (name or self.filename)
        path.parent.mkdir(parents=True, exist_ok=True)
        return self.make(path)

    def __str__(self) -> str:
        return self.id


# -- audio -------------------------------------------------------------------------------------


def write_audio(path: Path, data: np.ndarray, rate: int = RATE, subtype: str = "PCM_16") -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    sf.write(path, data, rate, subtype=subtype, format="WAV")
    return path


def _good(path: Path, rate: int = RATE, seconds: float = SECONDS) -> Path:
    return write_audio(path, music(seconds, rate=rate), rate)


def _empty(path: Path) -> Path:
    path.write_bytes(b"")
    return path


def _truncated(path: Path) -> Path:
    """A valid 16-bit WAV cut in half: the header promises twice what the file holds."""
    data = _good(path).read_bytes()
    path.write_bytes(data[: len(data) // 2])
    return path


def _text(path: Path) -> Path:
    path.write_text("this is a text file, not an mp3\n" * 20)
    return path


def _garbled_mp3(path: Path) -> Path:
    """An MP3 with 4000 random bytes a third of the way in: the decoder (libmpg123) gives up
    resyncing there, and writes its own complaints to file descriptor 2."""
    sf.write(path, music(SECONDS), RATE, format="MP3", subtype="MPEG_LAYER_III")
    data = bytearray(path.read_bytes())
    data[len(data) // 3 : len(data) // 3 + 4000] = np.random.default_rng(0).bytes(4000)
    path.write_bytes(bytes(data))
    return path


def _random_bytes(path: Path) -> Path:
    path.write_bytes(np.random.default_rng(0).bytes(20_000))
    return path


def _zero_frames(path: Path) -> Path:
    return write_audio(path, np.zeros((0, 2), np.float32))


def _one_sample(path: Path) -> Path:
    return write_audio(path, music(0.01)[:1])


def _with_value(value: float) -> Callable[[Path], Path]:
    def make(path: Path) -> Path:
        data = music(SECONDS)
        data[int(0.75 * RATE), 1] = value
        return write_audio(path, data, subtype="FLOAT")

    return make


def _six_channels(path: Path) -> Path:
    """A 16-bit WAV of six channels (the stereo pair three times), which FFmpeg reads as 5.1."""
    return write_audio(path, np.tile(music(SECONDS), (1, 3)))


def _unreadable(path: Path) -> Path:
    """Mode 000; for root, who reads it anyway, a dangling symbolic link instead."""
    if READS_ANY_FILE:
        path.symlink_to(path.with_name("gone.wav"))
    else:
        _good(path).chmod(0)
    return path


def _missing(path: Path) -> Path:
    return path


# -- audio through FFmpeg (PyAV) -----------------------------------------------------------------

#: The AAC bitrate of the m4a cases, per stereo pair.
AAC_KBPS = 128


def _pcm_frame(data: np.ndarray, layout: str, rate: int = RATE) -> av.AudioFrame:
    """All of ``data`` (time, channel) float32 as one interleaved frame at pts 0."""
    frame = av.AudioFrame.from_ndarray(np.ascontiguousarray(data, np.float32).reshape(1, -1),
                                       format="flt", layout=layout)
    frame.sample_rate, frame.pts, frame.time_base = rate, 0, Fraction(1, rate)
    return frame


def _add_video(container: OutputContainer) -> VideoStream:
    video = container.add_stream("mpeg4", rate=25)
    video.width, video.height, video.pix_fmt = 64, 48, "yuv420p"
    return video


def _mux_video(container: OutputContainer, video: VideoStream) -> None:
    """Three grey 64x48 frames."""
    for i in range(3):
        image = np.full((48, 64, 3), 60 * i, dtype=np.uint8)
        container.mux(video.encode(av.VideoFrame.from_ndarray(image, format="rgb24")))
    container.mux(video.encode(None))


def write_aac(path: Path, *, layout: str = "stereo", video: bool = False,
              **container_options: str) -> Path:
    """:data:`SECONDS` of :func:`~tests.conftest.music` as AAC in MP4, after three video frames
    when ``video`` (5.1: the stereo pair three times). The edit list records the encoder's
    priming and the last packet's duration its padding, so it decodes to exactly
    ``SECONDS * RATE`` samples."""
    channels = av.AudioLayout(layout).nb_channels
    data = np.tile(music(SECONDS), (1, 3))[:, :channels]
    with av.open(str(path), "w", format="mp4", options=container_options) as out:
        picture = _add_video(out) if video else None
        stream = out.add_stream("aac", rate=RATE, layout=layout)
        stream.bit_rate = AAC_KBPS * 1000 * max(1, channels // 2)
        if picture is not None:
            _mux_video(out, picture)
        out.mux(stream.encode(_pcm_frame(data, layout)))
        out.mux(stream.encode(None))
    return path


def _video_only(path: Path) -> Path:
    """An MP4 with a video track and no audio track."""
    with av.open(str(path), "w", format="mp4") as out:
        _mux_video(out, _add_video(out))
    return path


def _truncated_m4a(path: Path) -> Path:
    """An AAC m4a with its index first (``faststart``), cut in half inside the audio data."""
    data = write_aac(path, movflags="faststart").read_bytes()
    path.write_bytes(data[: len(data) // 2])
    return path


def _m4a_without_index(path: Path) -> Path:
    """An AAC m4a with its index (``moov``) at the end, as encoders write it, cut in half: the
    audio data is there, the index that says where its packets are is gone."""
    data = write_aac(path).read_bytes()
    path.write_bytes(data[: len(data) // 2])
    return path


def _m4a_corrupt_index(path: Path) -> Path:
    """An AAC m4a whose sample-size table (``stsz``, in the index) is overwritten with random
    bytes, its box header included."""
    data = bytearray(write_aac(path).read_bytes())
    at = data.rfind(b"stsz") - 4
    data[at : at + 64] = np.random.default_rng(0).bytes(64)
    path.write_bytes(bytes(data))
    return path


def _subtitles_only(path: Path) -> Path:
    """A Matroska file holding one ASS subtitle stream. (Matroska and MP4 refuse a bare data
    stream; MPEG-TS takes one, see :func:`_data_only`.)"""
    with av.open(str(path), "w", format="matroska") as out:
        stream = out.add_stream("ass")
        for i in range(3):
            packet = av.Packet(b"0,0,Default,,0,0,0,,la la la")
            packet.stream = stream
            packet.pts = packet.dts = i * 1000
            packet.duration, packet.time_base = 500, Fraction(1, 1000)
            out.mux(packet)
    return path


def _data_only(path: Path) -> Path:
    """An MPEG-TS file holding one data stream (telemetry, as a drone's camera writes it)."""
    with av.open(str(path), "w", format="mpegts") as out:
        stream = out.add_data_stream()
        for i in range(5):
            packet = av.Packet(b"telemetry")
            packet.stream = stream
            packet.pts = packet.dts = i * 90_000
            packet.time_base = Fraction(1, 90_000)
            out.mux(packet)
    return path


def _empty_audio_track(path: Path) -> Path:
    """An m4a whose AAC track has no packets (the header written, nothing muxed). FFmpeg's MP4
    demuxer drops a track without samples, so it finds no audio stream at all."""
    with av.open(str(path), "w", format="ipod") as out:
        out.add_stream("aac", rate=RATE, layout="stereo")
        out.start_encoding()
    return path


def _fairplay_m4a(path: Path) -> Path:
    """An iTunes-protected (FairPlay) track as FFmpeg sees one: the sample entry is ``drms``
    instead of ``mp4a`` (a valid m4a with that four-character code replaced)."""
    path.write_bytes(write_aac(path).read_bytes().replace(b"mp4a", b"drms"))
    return path


def _cenc_m4a(path: Path) -> Path:
    """Common Encryption (AES-CTR), as a DRM-protected download is: every packet carries
    ``encryption_info`` side data."""
    return write_aac(path, encryption_scheme="cenc-aes-ctr",
                     encryption_key="00112233445566778899aabbccddeeff",
                     encryption_kid="a7e61c373e219033c21091fa607bf3b8")


AUDIO: list[Case] = [
    Case("empty", "audio", "empty.wav", _empty),
    Case("truncated", "audio", "truncated.wav", _truncated),
    Case("text-as-mp3", "audio", "notes.mp3", _text),
    Case("random-bytes", "audio", "noise.flac", _random_bytes),
    Case("garbled-mp3", "audio", "garbled.mp3", _garbled_mp3),
    Case("zero-frames", "audio", "noframes.wav", _zero_frames),
    Case("one-sample", "audio", "one sample.wav", _one_sample, valid=True),
    Case("nan", "audio", "hasnan.wav", _with_value(float("nan"))),
    Case("inf", "audio", "hasinf.wav", _with_value(float("inf"))),
    Case("neg-inf", "audio", "hasneginf.wav", _with_value(float("-inf"))),
    # read by FFmpeg and downmixed to stereo (with a warning)
    Case("six-channels", "audio", "sixch.wav", _six_channels, valid=True),
    Case("8khz", "audio", "rate 8k.wav", lambda p: _good(p, rate=8000), valid=True),
    Case("192khz", "audio", "rate 192k.wav", lambda p: _good(p, rate=192000), valid=True),
    Case("unicode-spaces", "audio", "dir with spaces/ü ñ 声 song 01.wav", _good, valid=True),
    Case("unreadable", "audio", "locked.wav", _unreadable),
    Case("missing", "audio", "missing.wav", _missing),
    # through FFmpeg
    Case("aac-m4a", "audio", "song.m4a", write_aac, valid=True),
    Case("surround-m4a", "audio", "film 5.1.m4a", lambda p: write_aac(p, layout="5.1"),
         valid=True),
    Case("video-mp4", "audio", "concert.mp4", lambda p: write_aac(p, video=True), valid=True),
    Case("video-no-audio", "audio", "silent film.mp4", _video_only),
    Case("truncated-m4a", "audio", "half.m4a", _truncated_m4a),
    Case("m4a-without-index", "audio", "noindex.m4a", _m4a_without_index),
    Case("m4a-corrupt-index", "audio", "badindex.m4a", _m4a_corrupt_index),
    Case("subtitles-only", "audio", "subtitles.mkv", _subtitles_only),
    Case("data-only", "audio", "telemetry.ts", _data_only),
    Case("empty-audio-track", "audio", "nothing.m4a", _empty_audio_track),
    Case("fairplay-m4a", "audio", "purchased.m4a", _fairplay_m4a),
    Case("cenc-m4a", "audio", "rented.m4a", _cenc_m4a),
]


# -- checkpoints -------------------------------------------------------------------------------


def _text_checkpoint(path: Path) -> Path:
    path.write_text("these are my notes, not a model\n")
    return path


def _unrelated_tensors(path: Path) -> Path:
    torch.save({"weight": torch.zeros(4, 3), "bias": torch.ones(4)}, path)
    return path


CHECKPOINTS: list[Case] = [
    Case("text-checkpoint", "checkpoint", "model.pt", _text_checkpoint),
    Case("random-bytes-checkpoint", "checkpoint", "model.pth", _random_bytes),
    Case("unrelated-tensors", "checkpoint", "model.pt", _unrelated_tensors),
    Case("audio-as-checkpoint", "checkpoint", "song.wav", _good),  # the song given as -m
]


# -- datasets ----------------------------------------------------------------------------------


def write_dataset(root: Path, test_tracks: tuple[str, ...] = (TEST_TRACK,)
                  ) -> dict[str, dict[str, np.ndarray]]:
    """A complete MUSDB18-HQ-layout folder: ``ROOT/{train,test}/<track>/{mixture,vocals,drums,
    bass,other}.wav`` (16-bit stereo, :data:`SECONDS` each) and ``split.json`` naming the
    validation track. Returns the test tracks' stems (source -> (time, channel))."""
    write_musdb(root, {TRAIN_TRACK: SECONDS, VALID_TRACK: SECONDS}, subset="train")
    stems = write_musdb(root, dict.fromkeys(test_tracks, SECONDS), subset="test")
    (root / "split.json").write_text(json.dumps({"valid": [VALID_TRACK]}) + "\n")
    return stems


def _missing_stem(root: Path) -> Path:
    """``vocals.wav`` is missing from the first training track and from the test track."""
    write_dataset(root)
    (root / "train" / TRAIN_TRACK / "vocals.wav").unlink()
    (root / "test" / TEST_TRACK / "vocals.wav").unlink()
    return root


def _bad_mixture(make: Callable[[Path], Path]) -> Callable[[Path], Path]:
    def build(root: Path) -> Path:
        write_dataset(root)
        for track in (root / "train" / TRAIN_TRACK, root / "test" / TEST_TRACK):
            make(track / "mixture.wav")
        return root

    return build


def _nan_stem(root: Path) -> Path:
    """``vocals.wav`` of the first training track and of the test track holds a NaN."""
    write_dataset(root)
    for track in (root / "train" / TRAIN_TRACK, root / "test" / TEST_TRACK):
        _with_value(float("nan"))(track / "vocals.wav")
    return root


def six_channel_downmix(data: np.ndarray) -> np.ndarray:
    """What FFmpeg makes of six channels (read as 5.1: FL FR FC LFE BL BR), as the README and
    ``cumx_cli/engine/audio/decode.py`` document it: each side is front + 0.7071 centre +
    0.7071 back, the LFE dropped. Shapes: (time, 6) -> (time, 2), float64."""
    half = np.sqrt(0.5)
    matrix = np.array([[1, 0, half, 0, half, 0], [0, 1, half, 0, 0, half]])
    return np.asarray(data, np.float64) @ matrix.T


def _six_channel_stem(root: Path) -> Path:
    """``vocals.wav`` of the first training track and of the test track has six channels: its
    stereo pair three times, 16-bit (read as the stereo downmix)."""
    write_dataset(root)
    for track in (root / "train" / TRAIN_TRACK, root / "test" / TEST_TRACK):
        stereo, _ = sf.read(track / "vocals.wav", dtype="int16")
        sf.write(track / "vocals.wav", np.tile(stereo, (1, 3)), RATE, subtype="PCM_16")
    return root


DATASETS: list[Case] = [
    Case("missing-stem", "dataset", "musdb", _missing_stem),
    Case("nan-stem", "dataset", "musdb", _nan_stem),
    Case("six-channel-stem", "dataset", "musdb", _six_channel_stem, valid=True),
    Case("truncated-mixture", "dataset", "musdb", _bad_mixture(_truncated)),
    Case("empty-mixture", "dataset", "musdb", _bad_mixture(_empty)),
]


# -- output and cache folders ------------------------------------------------------------------


def _unwritable(path: Path) -> Path:
    """A read-only folder; for root, who writes anyway, a path below a regular file."""
    if WRITES_ANYWHERE:
        blocker = path.with_name(f"{path.name}-is-a-file")
        blocker.write_text("a file, not a folder\n")
        return blocker / path.name
    path.mkdir(mode=0o500)
    return path


def _full_folder(path: Path) -> Path:
    path.mkdir()
    return path


def _enospc() -> OSError:
    return OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))


def fill_up(monkeypatch: pytest.MonkeyPatch, folder: Path) -> None:
    """Make every write of file data below ``folder`` fail as on a full disk (ENOSPC).

    Creating files and folders still works, as on a real full disk; writing bytes does not:
    audio through soundfile (WAV, FLAC, Ogg Vorbis), text and binary files through ``open``
    (``Path.write_text``, downloads' partial files, and the MP3, Opus and M4A stems, which PyAV
    muxes into a file object that cumx opens), and ``torch.save``.
    """
    root = Path(os.path.abspath(folder))

    def below(name: object) -> bool:
        if not isinstance(name, (str, bytes, os.PathLike)):
            return False
        path = Path(os.path.abspath(os.fsdecode(name)))
        return path == root or root in path.parents

    real_sf_write = sf.SoundFile.write

    def sf_write(self: sf.SoundFile, data: object) -> None:
        if below(self.name):
            raise _enospc()
        real_sf_write(self, data)

    class _FullFile(io.RawIOBase):
        """A file opened for writing on the full disk: writes fail, everything else delegates.

        It seeks as the real file does (``RawIOBase`` would say it cannot, and PyAV's MP4
        muxer refuses an unseekable file before writing anything, which no full disk does).
        """

        def __init__(self, file: io.IOBase) -> None:
            self._file = file

        def write(self, data: object) -> int:
            raise _enospc()

        def writelines(self, lines: object) -> None:
            raise _enospc()

        def __getattr__(self, name: str) -> object:
            return getattr(self._file, name)

        def close(self) -> None:
            self._file.close()
            super().close()

        def writable(self) -> bool:
            return True

        def seekable(self) -> bool:
            return self._file.seekable()

        def seek(self, offset: int, whence: int = os.SEEK_SET) -> int:
            return self._file.seek(offset, whence)

        def tell(self) -> int:
            return self._file.tell()

    real_open = io.open

    def open_(file: object, mode: str = "r", *args: object, **kwargs: object) -> object:
        handle = real_open(file, mode, *args, **kwargs)  # type: ignore[call-overload]
        if below(file) and any(c in mode for c in "wax+"):
            return _FullFile(handle)
        return handle

    real_save = torch.save

    def save(obj: object, f: object, *args: object, **kwargs: object) -> None:
        if below(f):
            raise _enospc()
        real_save(obj, f, *args, **kwargs)  # type: ignore[arg-type]

    monkeypatch.setattr(sf.SoundFile, "write", sf_write)
    monkeypatch.setattr(io, "open", open_)
    monkeypatch.setattr("builtins.open", open_)
    monkeypatch.setattr(torch, "save", save)


OUTPUTS: list[Case] = [
    Case("unwritable-output", "output", "out", _unwritable),
    Case("full-output", "output", "out", _full_folder, simulate=fill_up),
]


def _corrupt_cache(path: Path) -> Path:
    """A cache (root) whose default model (``xumx``) was recorded as verified, and whose bytes
    have changed since: random bytes beside the sha256 of other ones."""
    from cumx_cli.engine.weights.registry import DEFAULT_MODEL, get_spec

    spec = get_spec(DEFAULT_MODEL)
    (path / "weights" / spec.name).mkdir(parents=True)
    file = _random_bytes(path / "weights" / spec.name / spec.files[0])
    sidecar = file.with_name(file.name + ".sha256")
    sidecar.write_text(f"{hashlib.sha256(b'the verified bytes').hexdigest()}  {file.name}\n")
    return path


CACHES: list[Case] = [
    Case("unwritable-cache", "cache", "cache", _unwritable),
    Case("full-cache", "cache", "cache", _full_folder, simulate=fill_up),
    Case("corrupt-cache", "cache", "cache", _corrupt_cache),
]

CORPUS: list[Case] = [*AUDIO, *CHECKPOINTS, *DATASETS, *OUTPUTS, *CACHES]
BY_ID: dict[str, Case] = {case.id: case for case in CORPUS}
assert len(BY_ID) == len(CORPUS), "case ids must be unique"


def restore_permissions(root: Path) -> None:
    """Make everything below ``root`` writable again (for cleanup after read-only cases)."""
    for path in [root, *root.rglob("*")]:
        if path.is_dir() and not path.is_symlink():
            path.chmod(0o700)
