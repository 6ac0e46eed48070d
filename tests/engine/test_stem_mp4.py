"""MUSDB18's ``.stem.mp4`` read directly (PyAV, no ffmpeg program): the five streams in musdb's
order, the samples musdb decodes, and the dataset layer that training and evaluation share.

:func:`write_stem_mp4` and :func:`write_stem_root` (files encoded here, with PyAV) are also used
by ``tests/cli/test_eval_stems.py``.
"""

from __future__ import annotations

import importlib.util
import shutil
import sys
from collections.abc import Sequence
from fractions import Fraction
from pathlib import Path

import av
import numpy as np
import pytest
import torch

from cumx_cli.engine.audio.io import count_audio_streams, read_audio
from cumx_cli.engine.data.musdb import STEM_STREAMS, find_tracks, load_tracks
from cumx_cli.engine.errors import DatasetError
from tests.synthetic_musdb import sources as coloured_noise

RATE = 44100
#: musdb's source order in a stems file, after the mixture (stream 0).
STEMS = STEM_STREAMS[1:]
FOUR = ("vocals", "drums", "bass", "other")
BLOCK = 4096
#: The samples of a "1 s" track (:func:`stem_sources` rounds down to whole AAC frames).
ONE_SECOND = RATE // 1024 * 1024


def write_stem_mp4(path: Path, streams: Sequence[np.ndarray], rate: int = RATE) -> None:
    """Mux one AAC stream per array ((channel, time) float32, stereo), in the order given, into
    one MP4, as MUSDB18 lays them out (mixture, drums, bass, other, vocals). Noise
    substitution is off, so an excerpt read after a seek equals the slice of the whole."""
    path.parent.mkdir(parents=True, exist_ok=True)
    with av.open(str(path), "w", format="mp4") as out:
        out_streams = []
        for _ in streams:
            stream = out.add_stream("aac", rate=rate, layout="stereo")
            stream.bit_rate = 256_000
            stream.codec_context.options = {"aac_pns": "0"}
            out_streams.append(stream)
        length = streams[0].shape[-1]
        for begin in range(0, length, BLOCK):  # interleaved, block by block
            for stream, data in zip(out_streams, streams, strict=True):
                block = np.ascontiguousarray(data[:, begin:begin + BLOCK].T, dtype=np.float32)
                frame = av.AudioFrame.from_ndarray(block.reshape(1, -1), format="flt",
                                                   layout="stereo")
                frame.sample_rate, frame.pts, frame.time_base = rate, begin, Fraction(1, rate)
                out.mux(stream.encode(frame))
        for stream in out_streams:
            out.mux(stream.encode(None))


def stem_sources(seconds: float, seed: int = 0) -> dict[str, np.ndarray]:
    """Four coloured-noise stems and their sum, the mixture (peak 0.8): source -> (channel,
    time) float32. The length is a whole number of AAC frames (1024 samples), as MUSDB18's
    are: the ffmpeg program that musdb runs keeps a last frame's padding, which cumx drops."""
    frames = int(seconds * RATE) // 1024 * 1024
    stems = coloured_noise(4, 2, frames, seed=seed)
    stems = (stems * 0.8 / np.abs(stems.sum(axis=0)).max()).astype(np.float32)
    out = dict(zip(STEMS, stems, strict=True))
    return {"mixture": stems.sum(axis=0), **out}


def write_stem_root(root: Path, tracks: dict[str, float], subset: str = "test",
                    seed: int = 0) -> dict[str, dict[str, np.ndarray]]:
    """``root/subset/<name>.stem.mp4`` of each track (name -> seconds); the signals encoded."""
    written = {}
    for n, (name, seconds) in enumerate(tracks.items()):
        signals = stem_sources(seconds, seed=seed + n)
        write_stem_mp4(root / subset / f"{name}.stem.mp4", [signals[s] for s in STEM_STREAMS])
        written[name] = signals
    return written


def example_stem() -> Path:
    """The 6 s MUSDB18 excerpt that stempeg ships (skips where stempeg is not installed). Found
    without importing stempeg, which refuses to load where the ffmpeg program is missing."""
    spec = importlib.util.find_spec("stempeg")
    if spec is None or not spec.submodule_search_locations:
        pytest.skip("stempeg (which ships a MUSDB18 excerpt) is not installed")
    folder = Path(next(iter(spec.submodule_search_locations))) / "data"
    path = folder / "The Easton Ellises - Falcon 69.stem.mp4"
    if not path.is_file():
        pytest.skip(f"{path}: not in this stempeg")
    return path


def needs_musdb() -> object:
    """The musdb package, where it and the ffmpeg and ffprobe programs it runs are there."""
    if shutil.which("ffmpeg") is None or shutil.which("ffprobe") is None:
        pytest.skip("musdb decodes with the ffmpeg and ffprobe programs, which are not on PATH")
    return pytest.importorskip("musdb")


def on_16_bits(x: torch.Tensor) -> bool:
    return bool(torch.equal(x * 32768, torch.round(x * 32768)))


@pytest.fixture
def root(tmp_path: Path) -> Path:
    write_stem_root(tmp_path / "musdb", {"B - Two": 1.2, "A - One": 1.0})
    return tmp_path / "musdb"


def test_tracks_are_named_as_musdb_names_them_and_read_from_their_streams(root: Path) -> None:
    (root / "test" / "._A - One.stem.mp4").write_bytes(b"macOS metadata")  # not a track
    (root / "test" / "notes").mkdir()  # a folder that is not a track folder: ignored
    tracks = find_tracks(root, "test")
    assert [t.name for t in tracks] == ["A - One", "B - Two"]
    a = tracks[0]
    file = root / "test" / "A - One.stem.mp4"
    assert (a.subset, a.stem_file, a.folder) == ("test", file, root / "test")
    assert count_audio_streams(file) == 5
    for k, source in enumerate(STEM_STREAMS):
        assert a.stem_path(source) == file and a.stream(source) == k
        info = a.probe(source)
        assert (info.sample_rate, info.channels, info.frames) == (RATE, 2, ONE_SECOND)
        whole = a.read(source, info)
        decoded = read_audio(file, stream=k)[0]  # the float decode, rounded to 16 bits
        assert on_16_bits(whole)
        torch.testing.assert_close(whole, decoded, rtol=0, atol=0.5 / 32768)
    assert a.describe("vocals") == f"{file} (stream 4, vocals)"
    with pytest.raises(DatasetError, match="holds mixture, drums, bass, other, vocals, not 'piano'"):
        a.probe("piano")


def test_the_mixture_is_its_own_stream_not_the_sum_of_the_decoded_stems(root: Path) -> None:
    (track,) = find_tracks(root, "test", ["A - One"])
    mixture = track.read("mixture")
    total = sum(track.read(s) for s in STEMS)
    assert isinstance(total, torch.Tensor)
    # AAC coded each stream on its own (noise codes poorly): alike, but not equal
    snr = 10 * torch.log10(mixture.square().sum() / (mixture - total).square().sum())
    assert 3 < float(snr) < 40


def test_an_excerpt_is_the_slice_of_the_whole_track(root: Path) -> None:
    (track,) = load_tracks(root, "test", FOUR)[:1]
    assert (track.name, track.rate, track.frames) == ("A - One", RATE, ONE_SECOND)
    assert set(track.files) == {"mixture", *FOUR} and len(set(track.files.values())) == 1
    for source, start in [("vocals", 30_000), ("bass", 0), ("mixture", 20_000)]:
        whole = track.read(source)
        excerpt = track.read(source, start, 5000)
        torch.testing.assert_close(excerpt, whole[:, start:start + 5000], rtol=0, atol=0)
    tail = track.read("drums", ONE_SECOND - 100, 300)  # past the end: silence
    assert tail.shape == (2, 300) and not tail[:, 100:].any()


def test_training_reads_stem_files_without_ffmpeg_or_musdb(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    root = tmp_path / "musdb"
    write_stem_root(root, {"T1": 1.0, "T2": 1.0, "V1": 1.0}, subset="train")
    (root / "split.json").write_text('{"valid": ["V1"]}')
    monkeypatch.setenv("PATH", str(tmp_path / "empty"))  # no ffmpeg, no ffprobe
    monkeypatch.setitem(sys.modules, "musdb", None)  # importing musdb would fail
    train = load_tracks(root, "train", ("bass", "vocals"))
    valid = load_tracks(root, "valid", ("bass", "vocals"))
    assert [t.name for t in train] == ["T1", "T2"] and [t.name for t in valid] == ["V1"]
    assert on_16_bits(train[1].read("vocals", 1000, 2000))


def test_stem_file_errors_name_the_file_and_the_fix(tmp_path: Path, root: Path) -> None:
    with pytest.raises(DatasetError, match="holds drums, bass, other, vocals, not piano"):
        load_tracks(root, "test", ("bass", "piano"))
    short = tmp_path / "short" / "test" / "X.stem.mp4"
    signals = stem_sources(0.5)
    write_stem_mp4(short, [signals["mixture"], signals["drums"]])
    with pytest.raises(DatasetError, match=r"X\.stem\.mp4: has 2 audio streams; a MUSDB18 "
                                           r"\.stem\.mp4 holds 5 \(mixture, drums"):
        load_tracks(tmp_path / "short", "test", FOUR)
    bad = tmp_path / "bad" / "test" / "Y.stem.mp4"
    bad.parent.mkdir(parents=True)
    bad.write_bytes(b"not an mp4")
    with pytest.raises(DatasetError, match=r"Y\.stem\.mp4: not a readable audio or video file"):
        load_tracks(tmp_path / "bad", "test", ("drums",))
    hq = root / "test" / "C - Three"
    hq.mkdir()
    for name in ("mixture.wav", "vocals.wav"):
        (hq / name).write_bytes(b"")
    with pytest.raises(DatasetError, match=r"holds both \.stem\.mp4 files and track folders "
                                           r"\(C - Three/\.\.\.\); keep MUSDB18 and MUSDB18-HQ"):
        find_tracks(root, "test")


def test_the_musdb_example_is_read_without_ffmpeg(tmp_path: Path,
                                                 monkeypatch: pytest.MonkeyPatch) -> None:
    root = tmp_path / "musdb"
    (root / "test").mkdir(parents=True)
    shutil.copy(example_stem(), root / "test")
    monkeypatch.setenv("PATH", str(tmp_path / "empty"))
    (track,) = find_tracks(root, "test")
    assert track.name == "The Easton Ellises - Falcon 69"
    mixture = track.read("mixture")
    assert mixture.shape == (2, 268_288) and on_16_bits(mixture)
    assert float(mixture.max()) == 32767 / 32768  # decoded at 1.024 and clipped, as musdb does
    assert {track.probe(s).frames for s in STEM_STREAMS} == {268_288}


def _musdb_and_ours(root: Path) -> dict[str, dict[str, tuple[np.ndarray, np.ndarray]]]:
    """Each test track's streams as musdb decodes them and as cumx does, (time, channel)."""
    musdb = needs_musdb()
    db = musdb.DB(root=str(root), subsets="test", is_wav=False)  # type: ignore[attr-defined]
    ours = {t.name: t for t in find_tracks(root, "test")}
    out = {}
    for track in db.tracks:
        theirs = {"mixture": track.audio, **{s: track.sources[s].audio for s in STEMS}}
        out[track.name] = {s: (theirs[s], ours[track.name].read(s).numpy().T.astype(np.float64))
                           for s in STEM_STREAMS}
    return out


@pytest.mark.slow
def test_the_samples_are_those_musdb_decodes(tmp_path: Path) -> None:
    """musdb decodes with ffmpeg to 16 bits (``s16le``): cumx gives the same samples, bar the
    last bit of a few whose float decode lies within ~1e-7 of a rounding boundary (FFmpeg's
    AAC decoders in PyAV and in the system's ffmpeg differ by that much)."""
    needs_musdb()
    root = tmp_path / "musdb"
    (root / "test").mkdir(parents=True)
    shutil.copy(example_stem(), root / "test")
    write_stem_root(root, {"Synth - Noise": 2.0})
    decoded = _musdb_and_ours(root)
    assert set(decoded) == {"The Easton Ellises - Falcon 69", "Synth - Noise"}
    for name, streams in decoded.items():
        for source, (theirs, ours) in streams.items():
            assert theirs.shape == ours.shape, (name, source)
            differ = np.abs(theirs - ours)
            assert differ.max() <= 1 / 32768, (name, source, differ.max())
            assert np.count_nonzero(differ) < 1e-3 * differ.size, (name, source)
    # the example's mixture decodes above full scale (1.024): musdb clips it, and so does cumx
    theirs, ours = decoded["The Easton Ellises - Falcon 69"]["mixture"]
    assert theirs.max() == ours.max() == 32767 / 32768
