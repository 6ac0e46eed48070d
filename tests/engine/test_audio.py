"""Audio I/O: streamed exact resampling, round trips, validation, atomic writes."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
import torch

from cumx_cli.engine.audio.io import AudioWriter, probe, read_audio, read_blocks, write_audio
from cumx_cli.engine.audio.resample import StreamResampler, resample, resampled_length
from cumx_cli.engine.errors import AudioIOError
from tests.conftest import music


@pytest.mark.parametrize(("orig", "new"), [(48000, 44100), (44100, 48000), (8000, 44100),
                                           (192000, 44100), (22050, 44100), (44100, 44100)])
@pytest.mark.parametrize("length", [1, 999, 70_001])
def test_streamed_resampling_equals_whole_signal(orig: int, new: int, length: int) -> None:
    x = torch.randn(2, length)
    expected = resample(x, orig, new)
    assert expected.shape[-1] == resampled_length(length, orig, new)
    rng = np.random.default_rng(length)
    stream, parts, pos = StreamResampler(orig, new), [], 0
    while pos < length:
        step = int(rng.integers(1, 30_000))
        parts.append(stream.push(x[:, pos : pos + step]))
        pos += step
    parts.append(stream.push(x[:, :0], final=True))
    torch.testing.assert_close(torch.cat(parts, dim=-1), expected, rtol=0, atol=0)


@pytest.mark.parametrize(("fmt", "dtype", "tol"), [("wav", "int16", 1 / 32768), ("wav", "int24", 1e-6),
                                                   ("wav", "float32", 0), ("flac", "int16", 1 / 32768),
                                                   ("flac", "int24", 1e-6)])
@pytest.mark.parametrize("channels", [1, 2])
def test_write_read_round_trip(tmp_path: Path, fmt: str, dtype: str, tol: float, channels: int) -> None:
    x = torch.from_numpy(music(0.5, channels=channels).T.copy())
    path = tmp_path / f"a.{fmt}"
    write_audio(path, x, 44100, fmt, dtype)  # type: ignore[arg-type]
    y, rate = read_audio(path)
    assert rate == 44100 and y.shape == x.shape
    assert (y - x).abs().max() <= tol
    assert sf.info(str(path)).subtype == {"int16": "PCM_16", "int24": "PCM_24", "float32": "FLOAT"}[dtype]


def test_integer_output_is_clamped_not_wrapped(tmp_path: Path) -> None:
    x = torch.tensor([[0.5, 1.7, -3.0, 0.1]])
    write_audio(tmp_path / "c.wav", x, 8000, "wav", "int16")
    y, _ = read_audio(tmp_path / "c.wav")
    assert y[0, 1] > 0.99 and y[0, 2] <= -0.99


def test_float_wav_has_no_timestamped_peak_chunk(tmp_path: Path) -> None:
    """libsndfile's PEAK chunk holds the wall-clock second of the write, so two writes of the same
    stems differed by a byte whenever a second boundary fell between them (a data-set generator's
    "same seed, same files" test failed that way under load). Without it the bytes are the
    samples' alone: a header of RIFF, fmt, fact and data chunks, then the float samples."""
    frames = music(0.5)
    write_audio(tmp_path / "a.wav", torch.from_numpy(frames.T), 44100)
    raw = (tmp_path / "a.wav").read_bytes()
    assert b"PEAK" not in raw
    assert raw[-frames.size * 4:] == frames.astype("<f4").tobytes()
    assert torch.equal(read_audio(tmp_path / "a.wav")[0], torch.from_numpy(frames.T))


def test_int16_conversion_is_libsndfiles_and_the_same_in_every_container(tmp_path: Path) -> None:
    """Our vectorised float -> int16 equals libsndfile's own WAV conversion sample for sample,
    including values on and next to the rounding boundaries, and FLAC stores the same codes."""
    rng = np.random.default_rng(3)
    steps = np.arange(-40_000, 40_000) / 32768.0
    x = np.concatenate([rng.uniform(-1, 1, 50_000), steps, steps + 0.5 / 32768, [1.0, -1.0, 0.0]])
    x = np.stack([x, -x], axis=1).astype(np.float32).clip(-1, 1)
    sf.write(tmp_path / "libsndfile.wav", x, 44100, subtype="PCM_16")
    expected, _ = sf.read(tmp_path / "libsndfile.wav", dtype="int16")
    for fmt in ("wav", "flac"):
        write_audio(tmp_path / f"ours.{fmt}", torch.from_numpy(x.T.copy()), 44100, fmt, "int16")
        got, _ = sf.read(tmp_path / f"ours.{fmt}", dtype="int16")
        np.testing.assert_array_equal(got, expected)


def test_blocks_cover_the_file(tmp_path: Path) -> None:
    data = music(1.0)
    sf.write(tmp_path / "b.wav", data, 44100, subtype="FLOAT")
    blocks = list(read_blocks(probe(tmp_path / "b.wav"), block_frames=10_000))
    assert len(blocks) == 5
    np.testing.assert_array_equal(torch.cat(blocks, -1).numpy(), data.T)


def _expect(path: Path, match: str) -> None:
    with pytest.raises(AudioIOError, match=match):
        info = probe(path)
        for _ in read_blocks(info):
            pass


def test_bad_files(tmp_path: Path) -> None:
    _expect(tmp_path / "missing.wav", "no such file")
    (tmp_path / "empty.wav").write_bytes(b"")
    _expect(tmp_path / "empty.wav", "the file is empty")
    (tmp_path / "text.mp3").write_text("not audio at all\n" * 20)
    _expect(tmp_path / "text.mp3", "not a readable audio or video file")
    sf.write(tmp_path / "zero.wav", np.zeros((0, 2), np.float32), 44100)
    _expect(tmp_path / "zero.wav", "no audio samples")
    bad = music(0.2)
    bad[1234, 1] = np.nan
    sf.write(tmp_path / "nan.wav", bad, 44100, subtype="FLOAT")
    _expect(tmp_path / "nan.wav", "NaN or infinite")
    bad[1234, 1] = np.inf
    sf.write(tmp_path / "inf.wav", bad, 44100, subtype="FLOAT")
    _expect(tmp_path / "inf.wav", "NaN or infinite")
    sf.write(tmp_path / "full.wav", music(1.0), 44100, subtype="PCM_16")
    raw = (tmp_path / "full.wav").read_bytes()
    (tmp_path / "cut.wav").write_bytes(raw[: len(raw) // 2])
    _expect(tmp_path / "cut.wav", "truncated")
    sf.write(tmp_path / "full.flac", music(1.0), 44100)
    raw = (tmp_path / "full.flac").read_bytes()
    (tmp_path / "cut.flac").write_bytes(raw[: len(raw) // 2])
    _expect(tmp_path / "cut.flac", "truncated|corrupt")


def test_writer_leaves_nothing_when_not_committed(tmp_path: Path) -> None:
    final = tmp_path / "out" / "stem.wav"
    with pytest.raises(RuntimeError), AudioWriter(final, 44100, 2, "wav", "int16") as writer:
        writer.write(torch.zeros(2, 100))
        raise RuntimeError("killed")
    assert not final.exists() and not list(final.parent.iterdir())


def test_writer_into_a_file_path_fails_cleanly(tmp_path: Path) -> None:
    (tmp_path / "file").write_text("x")
    with pytest.raises(AudioIOError, match="cannot write there"):
        AudioWriter(tmp_path / "file" / "stem.wav", 44100, 2, "wav", "int16")


def test_more_than_two_channels_are_downmixed_by_ffmpeg(tmp_path: Path) -> None:
    """libsndfile reads the 6-channel WAV; it goes to FFmpeg, which downmixes it to stereo."""
    six = np.zeros((1000, 6), np.float32)
    six[:, 0], six[:, 2] = 0.5, 0.25  # front left, centre
    sf.write(tmp_path / "six.wav", six, 44100, subtype="FLOAT")
    info = probe(tmp_path / "six.wav")
    assert (info.decoder, info.channels, info.frames, getattr(info, "downmixed_from", None)) == \
        ("ffmpeg", 2, 1000, 6)
    left, right = torch.cat(list(read_blocks(info)), dim=-1)
    assert torch.allclose(left, torch.full_like(left, 0.5 + 0.25 * 0.5**0.5), atol=1e-6)
    assert torch.allclose(right, torch.full_like(right, 0.25 * 0.5**0.5), atol=1e-6)


def test_torchaudio_is_imported_only_to_resample(tmp_path: Path) -> None:
    """Separating a file at the model's rate never loads torchaudio (its import is about
    20 ms of every start); the first resampling does."""
    probe = (
        "import sys, torch\n"
        "from cumx_cli.engine.inference import pipeline\n"
        "from cumx_cli.engine.audio.resample import StreamResampler, resample\n"
        "StreamResampler(44100, 44100).push(torch.ones(2, 100), final=True)\n"
        "print('torchaudio' in sys.modules)\n"
        "resample(torch.ones(2, 480), 48000, 44100)\n"
        "print('torchaudio' in sys.modules)\n"
    )
    done = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True,
                          check=True, cwd=tmp_path)
    assert done.stdout.split() == ["False", "True"]
