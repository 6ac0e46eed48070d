"""``cumx separate`` end to end, through the CLI (CliRunner in process; subprocess where the
real process matters): output layout and formats, options, exit codes and failed writes. The
bad-input corpus (``tests/corpus.py``) is run against it in ``tests/cli/test_corpus.py``."""

from __future__ import annotations

import os
import pickle
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
import torch

from cumx_cli.engine.audio import io as audio_io
from cumx_cli.engine.errors import AudioIOError
from tests.cli.helpers import SOURCES, cumx, error_lines, files_under, json_lines, leftovers, show, stem_paths
from tests.conftest import FIXTURES, RATE, music


@pytest.fixture(autouse=True)
def _cwd(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    """Run every test in its tmp_path (relative paths keep messages short)."""
    monkeypatch.chdir(tmp_path)


def write_wav(path: Path, data: np.ndarray, rate: int = RATE, subtype: str = "PCM_16",
              **kwargs: object) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    sf.write(path, data, rate, subtype=subtype, **kwargs)
    return path


# -- output layout and formats --------------------------------------------------------------


def test_writes_four_stems_with_input_rate_channels_and_length(model: str, song: Path) -> None:
    result = cumx("separate", "in/song.wav", "-o", "out", "-m", model)
    assert result.exit_code == 0, show(result)
    assert files_under(Path("out")) == {f"song/{s}.wav" for s in SOURCES}
    for path in stem_paths(Path("out"), "song").values():
        info = sf.info(path)
        assert (info.samplerate, info.channels, info.frames) == (RATE, 2, sf.info(song).frames)
        assert info.subtype == "PCM_16"
    assert "Traceback" not in result.output


def test_default_output_folder_is_separated_in_cwd(model: str, song: Path, tmp_path: Path) -> None:
    result = cumx("separate", "in/song.wav", "-m", model)
    assert result.exit_code == 0, show(result)
    assert files_under(tmp_path / "separated") == {f"song/{s}.wav" for s in SOURCES}


def test_mono_input_gives_mono_stems(model: str) -> None:
    src = write_wav(Path("in/mono.wav"), music(2.0, channels=1)[:, 0])
    result = cumx("separate", src, "-o", "out", "-m", model)
    assert result.exit_code == 0, show(result)
    for path in stem_paths(Path("out"), "mono").values():
        info = sf.info(path)
        assert (info.channels, info.samplerate, info.frames) == (1, RATE, sf.info(src).frames)


def test_48k_flac_input_gives_48k_stems(model: str) -> None:
    src = write_wav(Path("in/hi.flac"), music(2.0, rate=48000), rate=48000)
    result = cumx("separate", src, "-o", "out", "-m", model)
    assert result.exit_code == 0, show(result)
    assert files_under(Path("out")) == {f"hi/{s}.wav" for s in SOURCES}
    for path in stem_paths(Path("out"), "hi").values():
        info = sf.info(path)
        assert (info.samplerate, info.channels, info.frames) == (48000, 2, 96000)


def test_sample_rate_option_resamples_output(model: str, song: Path) -> None:
    result = cumx("separate", song, "-o", "out", "-m", model, "--sample-rate", "22050")
    assert result.exit_code == 0, show(result)
    expected = sf.info(song).frames * 22050 / RATE
    for path in stem_paths(Path("out"), "song").values():
        info = sf.info(path)
        assert info.samplerate == 22050
        assert abs(info.frames - expected) <= 1, (info.frames, expected)


@pytest.mark.parametrize(("args", "ext", "container", "subtype"), [
    (("--format", "flac"), "flac", "FLAC", "PCM_16"),
    (("--format", "mp3"), "mp3", "MP3", "MPEG_LAYER_III"),
    (("--dtype", "int24"), "wav", "WAV", "PCM_24"),
    (("--dtype", "float32"), "wav", "WAV", "FLOAT"),
    (("--format", "flac", "--dtype", "int24"), "flac", "FLAC", "PCM_24"),
], ids=["flac", "mp3", "int24", "float32", "flac-int24"])
def test_format_and_dtype(model: str, song: Path, args: tuple[str, ...], ext: str,
                          container: str, subtype: str) -> None:
    result = cumx("separate", song, "-o", "out", "-m", model, *args)
    assert result.exit_code == 0, show(result)
    assert files_under(Path("out")) == {f"song/{s}.{ext}" for s in SOURCES}
    for path in stem_paths(Path("out"), "song", ext).values():
        info = sf.info(path)
        assert (info.format, info.subtype, info.samplerate, info.channels) == (container, subtype, RATE, 2)


def test_flac_float32_is_a_usage_error(model: str, song: Path) -> None:
    result = cumx("separate", song, "-o", "out", "-m", model, "--dtype", "float32", "--format", "flac")
    assert len(result.stderr.strip().splitlines()) == 1, show(result)
    assert "float32" in result.stderr
    assert not Path("out").exists()
    assert result.exit_code == 2, show(result)


# -- folders -----------------------------------------------------------------------------


def test_folder_input_is_searched_recursively_keeping_sub_paths(model: str) -> None:
    write_wav(Path("in/a/x.wav"), music(1.0))
    write_wav(Path("in/b.flac"), music(1.0, seed=1))
    write_wav(Path("in/a/deep/y.ogg"), music(1.0, seed=2), subtype="VORBIS", format="OGG")
    Path("in/notes.txt").write_text("not audio\n")
    Path("in/a/cover.jpg").write_bytes(b"\xff\xd8\xff\xe0 not really a jpeg")
    result = cumx("separate", "in", "-o", "out", "-m", model, "--json")
    assert result.exit_code == 0, show(result)
    assert files_under(Path("out")) == {f"{t}/{s}.wav" for t in ("a/x", "b", "a/deep/y")
                                        for s in SOURCES}
    objs = json_lines(result)
    assert sorted(o["input"] for o in objs) == sorted(
        str(Path(p)) for p in ("in/a/x.wav", "in/b.flac", "in/a/deep/y.ogg"))
    assert all(o["status"] == "ok" for o in objs)


def test_a_folder_separated_into_itself_twice_skips_its_own_outputs(model: str) -> None:
    """``cumx separate .`` twice: the second run (with --skip-existing, then without) takes the
    real tracks again and never ``separated/``'s stems or hidden scratch files."""
    write_wav(Path("a.wav"), music(1.0))
    write_wav(Path("sub/b.wav"), music(1.0, seed=1))
    first = cumx("separate", ".", "-m", model, "--json")
    assert first.exit_code == 0, show(first)
    stems = {f"{t}/{s}.wav" for t in ("a", "sub/b") for s in SOURCES}
    assert files_under(Path("separated")) == stems
    Path(".a.wav.123.raw").write_bytes(b"scratch")  # a killed run's scratch, and a hidden folder
    write_wav(Path(".cache/c.wav"), music(1.0, seed=2))
    inputs = {str(Path("a.wav")), str(Path("sub/b.wav"))}
    for flags, status in ((["--skip-existing"], "skipped"), ([], "ok")):
        again = cumx("separate", ".", "-m", model, "--json", *flags)
        assert again.exit_code == 0, show(again)
        objs = json_lines(again)
        assert {o["input"] for o in objs} == inputs and {o["status"] for o in objs} == {status}
        assert files_under(Path("separated")) == stems  # no separated/separated
    # -o given as another spelling of a folder inside the input folder: still skipped
    third = cumx("separate", ".", "-m", model, "--json", "-o", "sub/../separated")
    assert {o["input"] for o in json_lines(third)} == inputs, show(third)


def test_folder_without_audio_is_a_usage_error(model: str) -> None:
    Path("in").mkdir()
    Path("in/readme.md").write_text("# nothing\n")
    result = cumx("separate", "in", "-o", "out", "-m", model)
    assert result.exit_code == 2, show(result)
    assert len(error_lines(result)) == 1 and not Path("out").exists()


# -- --filename, --stems -----------------------------------------------------------------------


def test_filename_template(model: str, song: Path) -> None:
    result = cumx("separate", song, "-o", "out", "-m", model, "--filename", "{source}-{track}.{ext}")
    assert result.exit_code == 0, show(result)
    assert files_under(Path("out")) == {f"{s}-song.wav" for s in SOURCES}


@pytest.mark.parametrize(("template", "mentions"), [
    ("{track}.{ext}", "{source}"),
    ("{track}/{source}-{bogus}.{ext}", "bogus"),
    ("{track}/{source}.{ext", "{track}/{source}.{ext"),
], ids=["no-source", "unknown-field", "malformed"])
def test_bad_filename_template_is_a_usage_error(model: str, song: Path, template: str,
                                                mentions: str) -> None:
    result = cumx("separate", song, "-o", "out", "-m", model, "--filename", template)
    assert result.exit_code == 2, show(result)
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and mentions in lines[0], show(result)
    assert not Path("out").exists()


def test_stems_writes_only_the_chosen_sources(model: str, song: Path) -> None:
    result = cumx("separate", song, "-o", "out", "-m", model, "--stems", "vocals,drums", "--json")
    assert result.exit_code == 0, show(result)
    assert files_under(Path("out")) == {"song/vocals.wav", "song/drums.wav"}
    (obj,) = json_lines(result)
    assert set(obj["outputs"]) == {"vocals", "drums"}


def test_unknown_stem_is_a_usage_error(model: str, song: Path) -> None:
    result = cumx("separate", song, "-o", "out", "-m", model, "--stems", "vocals,kazoo")
    assert result.exit_code == 2, show(result)
    (line,) = error_lines(result)
    assert "kazoo" in line
    assert not leftovers(Path("out")) and not any(Path("out").rglob("*.wav"))


# -- --skip-existing, --json ---------------------------------------------------------------------


def test_skip_existing_leaves_files_alone(model: str, song: Path) -> None:
    first = cumx("separate", song, "-o", "out", "-m", model, "--json")
    assert first.exit_code == 0, show(first)
    assert [o["status"] for o in json_lines(first)] == ["ok"]
    paths = stem_paths(Path("out"), "song")
    before = {s: (p.stat().st_mtime_ns, p.stat().st_ino) for s, p in paths.items()}

    second = cumx("separate", song, "-o", "out", "-m", model, "--json", "--skip-existing")
    assert second.exit_code == 0, show(second)
    (obj,) = json_lines(second)
    assert obj["status"] == "skipped" and obj["error"] is None
    assert obj["outputs"] == {s: str(p) for s, p in paths.items()}
    assert {s: (p.stat().st_mtime_ns, p.stat().st_ino) for s, p in paths.items()} == before

    # without the flag, the stems are written again
    third = cumx("separate", song, "-o", "out", "-m", model, "--json")
    assert [o["status"] for o in json_lines(third)] == ["ok"]
    assert {s: (p.stat().st_mtime_ns, p.stat().st_ino) for s, p in paths.items()} != before


def test_json_is_one_object_per_input(model: str, song: Path) -> None:
    result = cumx("separate", song, "nowhere.wav", "-o", "out", "-m", model, "--json")
    assert result.exit_code == 1, show(result)
    ok, bad = json_lines(result)
    assert ok["input"] == str(song) and ok["status"] == "ok" and ok["error"] is None
    assert ok["outputs"] == {s: str(p) for s, p in stem_paths(Path("out"), "song").items()}
    assert all(Path(p).is_file() for p in ok["outputs"].values())
    assert isinstance(ok["seconds"], float) and ok["seconds"] >= 0
    assert bad["input"] == "nowhere.wav" and bad["status"] == "error" and bad["outputs"] == {}
    assert "nowhere.wav" in bad["error"]


# -- exit codes -------------------------------------------------------------------------------


@pytest.mark.parametrize("args", [
    ("--niter", "-1"),
    ("--overlap", "40"),
    ("--chunk", "30", "--overlap", "30"),
    ("--chunk", "0"),
    ("--batch-size", "-2"),
    ("--format", "aiff"),
    ("--sample-rate", "0"),
    ("--stems", ","),
    ("--wiener-window", "-1"),
    ("--no-such-option",),
], ids=["niter", "overlap>chunk", "overlap=chunk", "chunk0", "batch", "format", "rate0",
        "stems-empty", "wiener-window", "unknown-option"])
def test_usage_errors_exit_2_and_write_nothing(model: str, song: Path, args: tuple[str, ...]) -> None:
    result = cumx("separate", song, "-o", "out", "-m", model, *args)
    assert result.exit_code == 2, show(result)
    assert "Traceback" not in result.output
    assert result.stdout == ""
    assert not Path("out").exists()


@pytest.mark.parametrize(("args", "message"), [
    (("--chunk", "0"), "--chunk must be positive, got 0.0"),
    (("--chunk", "5", "--overlap", "5"), "--overlap must be at least 0 and shorter than the chunk"),
])
def test_inference_option_errors_name_the_flag(model: str, song: Path, args: tuple[str, ...],
                                               message: str) -> None:
    result = cumx("separate", song, "-o", "out", "-m", model, *args)
    assert result.exit_code == 2 and message in result.output, show(result)


def test_wiener_window_follows_the_family_and_the_flag(song: Path) -> None:
    """The Open-Unmix fixture (nfft 512, hop 128) gives the 3 s song 1034 frames: its default
    300-frame windows and one window for the whole chunk give different stems."""
    folder = FIXTURES / "peers" / "umx"
    runs = {}
    for name, extra in (("default", ()), ("300", ("--wiener-window", "300")),
                        ("whole", ("--wiener-window", "0"))):
        result = cumx("separate", song, "-o", name, "-m", folder, "--dtype", "float32",
                      "--clip", "none", *extra)
        assert result.exit_code == 0, show(result)
        runs[name] = sf.read(Path(name) / "song" / "vocals.wav")[0]
    np.testing.assert_array_equal(runs["default"], runs["300"])
    assert np.abs(runs["default"] - runs["whole"]).max() > 1e-4


def test_never_overwrites_an_input(model: str, song: Path) -> None:
    victim = Path("in/vocals.wav")
    victim.write_bytes(song.read_bytes())
    original = victim.read_bytes()
    result = cumx("separate", victim, "-o", "in", "-m", model, "--filename", "{source}.{ext}")
    assert result.exit_code == 1, show(result)
    (line,) = error_lines(result)
    assert "overwrite" in line and "vocals.wav" in line
    assert victim.read_bytes() == original
    assert files_under(Path("in")) == {"song.wav", "vocals.wav"}


def test_two_inputs_with_the_same_outputs(model: str) -> None:
    write_wav(Path("in/a/song.wav"), music(1.0))
    write_wav(Path("in/b/song.wav"), music(1.0, seed=3))
    result = cumx("separate", "in/a/song.wav", "in/b/song.wav", "-o", "out", "-m", model, "--json")
    assert result.exit_code == 1, show(result)
    assert [o["status"] for o in json_lines(result)] == ["ok", "error"]
    assert files_under(Path("out")) == {f"song/{s}.wav" for s in SOURCES}


# -- failed writes (bad input files, folders and checkpoints: tests/cli/test_corpus.py) -------


def test_failed_encoding_leaves_no_partial_files(model: str, song: Path,
                                                 monkeypatch: pytest.MonkeyPatch) -> None:
    real_write = audio_io.AudioWriter.write_frames
    calls = []

    def flaky_write(self: audio_io.AudioWriter, frames: torch.Tensor) -> None:
        calls.append(self.final)
        if len(calls) == 2:
            assert self.tmp.exists()  # the temporary file is there while encoding
            raise AudioIOError(f"{self.final}: writing failed (disk full, simulated)")
        real_write(self, frames)

    monkeypatch.setattr(audio_io.AudioWriter, "write_frames", flaky_write)
    result = cumx("separate", song, "-o", "out", "-m", model, "--json")
    assert result.exit_code == 1, show(result)
    assert len(calls) == 2
    (obj,) = json_lines(result)
    assert obj["status"] == "error" and "simulated" in obj["error"]
    (line,) = error_lines(result)
    assert "simulated" in line and "Traceback" not in result.output
    paths = stem_paths(Path("out"), "song")
    assert calls[1] in paths.values()
    # the stem finished before the failure is removed too: a failed track leaves no stems
    assert not any(p.exists() for p in paths.values()), files_under(Path("out"))
    assert leftovers(Path("out")) == []


# -- --model and --verbose -------------------------------------------------------------------


def test_corrupt_checkpoint_traceback_only_with_verbose(song: Path) -> None:
    Path("broken.pt").write_bytes(b"PK\x03\x04" + bytes(range(256)) * 4)
    quiet = cumx("separate", song, "-o", "out", "-m", "broken.pt")
    assert quiet.exit_code == 1, show(quiet)
    assert "Traceback" not in quiet.output
    assert quiet.stderr.strip().splitlines() == error_lines(quiet) and len(error_lines(quiet)) == 1
    assert "broken.pt" in quiet.stderr and "not a PyTorch checkpoint" in quiet.stderr

    loud = cumx("separate", song, "-o", "out", "-m", "broken.pt", "--verbose")
    assert loud.exit_code == 1, show(loud)
    assert "Traceback (most recent call last)" in loud.stderr
    assert error_lines(loud)[-1] == error_lines(quiet)[0]
    assert not Path("out").exists()


def test_root_verbose_flag_also_shows_tracebacks(song: Path) -> None:
    Path("broken.pt").write_bytes(b"PK\x03\x04" + bytes(300))
    result = cumx("-v", "separate", song, "-o", "out", "-m", "broken.pt")
    assert result.exit_code == 1, show(result)
    assert "Traceback (most recent call last)" in result.stderr


@pytest.mark.parametrize("args", [("-q", "separate"), ("separate", "-q")], ids=["root", "alias"])
def test_quiet_prints_nothing_on_success(model: str, song: Path, args: tuple[str, ...]) -> None:
    """``cumx -q separate``; ``separate -q`` is the hidden per-command alias (one release)."""
    assert "done" in cumx("separate", song, "-o", "out", "-m", model).stderr
    result = cumx(*args, song, "-o", "out", "-m", model)
    assert result.exit_code == 0, show(result)
    assert result.stderr == "" and result.stdout == ""


def test_flags_do_not_outlive_their_invocation(song: Path) -> None:
    """-v/-q live in the invocation's context: a verbose run leaves the next one quiet."""
    Path("broken.pt").write_bytes(b"PK\x03\x04" + bytes(300))
    loud = cumx("-v", "-q", "separate", song, "-o", "out", "-m", "broken.pt")
    assert "Traceback (most recent call last)" in loud.stderr, show(loud)
    plain = cumx("separate", song, "-o", "out", "-m", "broken.pt")
    assert plain.exit_code == 1 and "Traceback" not in plain.stderr, show(plain)


@pytest.mark.parametrize(("spec", "mentions"), [
    ("missing.pt", "missing.pt"),
    ("no/such/folder", "no/such/folder"),
    ("xumx", "cumx download-weights xumx"),
], ids=["missing-file", "missing-folder", "default-name-offline"])
def test_model_not_available(song: Path, spec: str, mentions: str,
                             monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("CUMX_OFFLINE", "1")  # the default model is downloaded on first use otherwise
    args = ("separate", song, "-o", "out") + (("-m", spec) if spec != "xumx" else ())
    result = cumx(*args)
    assert result.exit_code == 1, show(result)
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and mentions in lines[0] and lines[0].startswith("error:"), show(result)
    assert not Path("out").exists()


@pytest.mark.parametrize("text", [
    pytest.param("these are my notes, not a model\n", id="t-opcode"),
    pytest.param("not a checkpoint\n", id="n-opcode"),
    pytest.param("# README\n", id="hash"),
    pytest.param('{"sources": ["vocals"]}\n', id="json"),
])
def test_text_file_as_checkpoint(song: Path, text: str) -> None:
    Path("notes.pt").write_text(text)
    result = cumx("separate", song, "-o", "out", "-m", "notes.pt")
    assert result.exit_code == 1, show(result)
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, show(result)
    assert "notes.pt" in lines[0] and "not a PyTorch checkpoint" in lines[0], show(result)
    assert "refused" not in lines[0] and "unexpected" not in lines[0]


class _Payload:
    """Unpickling this runs a shell command (the classic pickle exploit)."""

    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self) -> tuple[object, tuple[str]]:
        return os.system, (f"touch '{self.marker}'",)


@pytest.mark.filterwarnings("ignore::UserWarning")
@pytest.mark.parametrize("writer", ["pickle", "torch"])
def test_code_executing_pickle_is_refused(song: Path, tmp_path: Path, writer: str) -> None:
    marker = tmp_path / "PWNED"
    with open("evil.pt", "wb") as f:
        if writer == "pickle":
            pickle.dump({"x": _Payload(marker)}, f)
        else:
            torch.save({"state_dict": {"x": _Payload(marker)}}, f)
    result = cumx("separate", song, "-o", "out", "-m", "evil.pt")
    assert result.exit_code == 1, show(result)
    (line,) = error_lines(result)
    assert "refused" in line and "evil.pt" in line
    assert "Traceback" not in result.output
    assert not marker.exists()
    assert not Path("out").exists()


# -- --shard ----------------------------------------------------------------------------------


def test_shards_split_the_inputs_exactly_once(model: str, tmp_path: Path) -> None:
    folder = Path("many")
    folder.mkdir()
    for i in range(5):
        sf.write(folder / f"t{i}.wav", music(0.3, seed=i), RATE)
    seen = []
    for k in (1, 2):
        result = cumx("separate", folder, "-o", "out", "-m", model, "--json", "--shard", f"{k}/2")
        assert result.exit_code == 0, show(result)
        seen.append(sorted(Path(o["input"]).name for o in json_lines(result)))
    assert seen == [["t0.wav", "t2.wav", "t4.wav"], ["t1.wav", "t3.wav"]]


@pytest.mark.parametrize("value", ["3/2", "0/4", "a/b", "1-2"])
def test_bad_shard_is_a_usage_error(model: str, song: Path, value: str) -> None:
    result = cumx("separate", song, "-o", "out", "-m", model, "--shard", value)
    assert result.exit_code == 2, show(result)
    assert "--shard" in result.stderr


# -- edge inputs that must work (more than the corpus's), and a full disk while writing ---------


@pytest.mark.parametrize(("name", "frames", "rate", "channels"), [
    ("one sample.wav", 1, 44100, 2),
    ("eight kHz.wav", 8000, 8000, 1),
    ("hi-res 192k.flac", 96000, 192000, 2),
    ("ünïcødé – 曲.wav", 22050, 44100, 2),
])
def test_edge_inputs_are_separated(model: str, name: str, frames: int, rate: int, channels: int) -> None:
    path = Path("in dir") / name
    path.parent.mkdir()
    data = music(frames / rate + 0.01, channels=channels, rate=rate)[:frames]
    sf.write(path, data, rate, subtype="PCM_24")
    result = cumx("separate", path, "-o", "out put", "-m", model, "--json")
    assert result.exit_code == 0, show(result)
    (obj,) = json_lines(result)
    assert obj["status"] == "ok" and len(obj["outputs"]) == 4
    for stem in obj["outputs"].values():
        info = sf.info(stem)
        assert (info.frames, info.samplerate, info.channels) == (frames, rate, channels)
        assert np.isfinite(sf.read(stem)[0]).all()


def test_full_disk_while_writing(model: str, song: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """ENOSPC from the raw scratch writes: one line, nothing left behind, next input goes on."""
    import errno

    from cumx_cli.engine.inference.scratch import FileScratch

    real = FileScratch.append
    calls = {"n": 0}

    def full(self: FileScratch, stems: torch.Tensor) -> None:
        calls["n"] += 1
        if calls["n"] == 2:
            raise OSError(errno.ENOSPC, "No space left on device")
        real(self, stems)

    monkeypatch.setattr(FileScratch, "append", full)
    first = Path("first.wav")
    sf.write(first, music(1.0), RATE)
    result = cumx("separate", first, song, "-o", "out", "-m", model, "--scratch-memory", "0",
                  "--chunk", "0.4", "--overlap", "0.1")
    assert result.exit_code == 1, show(result)
    lines = error_lines(result)
    assert "No space left" in lines[0] and "first" in lines[0], show(result)
    assert files_under(Path("out")) == {f"song/{s}.wav" for s in SOURCES}
    assert leftovers(Path("out")) == []


def test_memory_and_file_scratch_write_identical_stems(model: str,
                                                      monkeypatch: pytest.MonkeyPatch) -> None:
    """Stems held in memory and stems spilled to raw scratch files encode to the same samples,
    for int16 and float32, with and without a rescale, and with resampling on the way out.

    The network is replaced by a fixed gain per source: two runs of a real model may differ in
    the last float bit (reductions depend on buffer alignment), which is not what is tested.
    Samples are compared, not file bytes: libsndfile writes a timestamp into float WAV headers
    (the PEAK chunk), so two writes in different seconds differ in bytes."""
    from cumx_cli.engine.inference.separator import Separator

    def fixed_gains(self: Separator, waveforms: torch.Tensor) -> torch.Tensor:
        gains = torch.tensor([0.3 + 0.4 * j for j in range(len(self.sources))])
        return waveforms[:, None].float() * gains[None, :, None, None]

    monkeypatch.setattr(Separator, "process", fixed_gains)
    loud = Path("loud.wav")
    sf.write(loud, 3.0 * music(2.0), RATE, subtype="FLOAT")  # stems exceed full scale: rescaled
    for extra in ([], ["--dtype", "float32"], ["--sample-rate", "22050"], ["--clip", "clamp"]):
        outs = {}
        for mib in ("0", "64"):
            out = Path(f"out_{mib}_{len(extra)}_{''.join(extra)}")
            result = cumx("separate", loud, "-o", out, "-m", model, "--chunk", "0.5",
                          "--overlap", "0.1", "--scratch-memory", mib, *extra)
            assert result.exit_code == 0, show(result)
            assert leftovers(out) == []
            outs[mib] = {p.name: (sf.info(p).subtype, *sf.read(p, dtype="float64"))
                         for p in sorted((out / "loud").iterdir())}
        assert outs["0"].keys() == outs["64"].keys() == {f"{s}.wav" for s in SOURCES}
        for name, (subtype, samples, rate) in outs["0"].items():
            assert (subtype, rate) == (outs["64"][name][0], outs["64"][name][2]), (extra, name)
            np.testing.assert_array_equal(samples, outs["64"][name][1], err_msg=f"{extra} {name}")


def test_scratch_memory_must_not_be_negative(model: str, song: Path) -> None:
    result = cumx("separate", song, "-m", model, "--scratch-memory", "-1")
    assert result.exit_code == 2, show(result)
    assert "--scratch-memory" in result.output


def test_parent_and_name_fields_give_the_estimates_layout(model: str) -> None:
    for track in ("A - One", "B - Two"):
        folder = Path("musdb/test") / track
        folder.mkdir(parents=True)
        sf.write(folder / "mixture.wav", music(0.3), RATE)
    result = cumx("separate", "musdb/test", "-o", "est", "-m", model, "--filename",
                  "{parent}/{source}.{ext}")
    assert result.exit_code == 0, show(result)
    assert files_under(Path("est")) == {f"{t}/{s}.wav" for t in ("A - One", "B - Two") for s in SOURCES}
    result = cumx("separate", "musdb/test/A - One/mixture.wav", "-o", "flat", "-m", model,
                  "--filename", "{name}_{source}.{ext}")
    assert result.exit_code == 0, show(result)
    assert files_under(Path("flat")) == {f"mixture_{s}.wav" for s in SOURCES}
