"""Every command against the bad-input corpus (``tests/corpus.py``).

For each (command, case): the exit status (0 for awkward but legal input, 1 for a failed input,
track, file or download, 2 for usage errors), exactly one ``error:`` line on stderr that names the
offending file or folder and no traceback, and nothing half-written: no final output for what
failed and no hidden scratch (``.*.part``, ``.*.raw``), partial download (``*.part``) or lock file.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

from tests.cli.helpers import (
    SOURCES,
    TINY,
    cumx,
    error_lines,
    files_under,
    json_lines,
    leftovers,
    show,
    stem_paths,
)
from tests.corpus import (
    AUDIO,
    BY_ID,
    CHECKPOINTS,
    DATASETS,
    OUTPUTS,
    RATE,
    READS_ANY_FILE,
    SECONDS,
    TEST_TRACK,
    TRAIN_TRACK,
    Case,
    restore_permissions,
    six_channel_downmix,
    write_dataset,
)
from tests.fake_zenodo import ASTEROID, XUMX_FILE, FakeZenodo
from tests.synthetic_musdb import estimates

#: What the readers say about each failing audio case under its own file name (the file's path
#: is checked separately).
AUDIO_PROBLEM = {
    "empty": "the file is empty",
    "truncated": "the file is truncated",
    "text-as-mp3": "not a readable audio or video file",
    # noise.flac: nothing in random bytes says what they are, so FFmpeg takes the suffix's
    # demuxer, which finds no frames (see EVAL_PROBLEM for the same bytes as a .wav)
    "random-bytes": "contains no audio samples (an empty stream, or not really a flac file)",
    "garbled-mp3": "decoding failed",
    "zero-frames": "contains no audio samples",
    "nan": "contains NaN or infinite samples",
    "inf": "contains NaN or infinite samples",
    "neg-inf": "contains NaN or infinite samples",
    # root reads a mode-000 file: the case is a dangling link there
    "unreadable": "no such file" if READS_ANY_FILE else "permission denied",
    "missing": "no such file",
    "video-no-audio": "has no audio stream (only video)",
    "truncated-m4a": "(the file is truncated or corrupt: Invalid data found when processing input)",
    "m4a-without-index": "not a readable audio or video file (unknown format, truncated or corrupt)",
    "m4a-corrupt-index": "not a readable audio or video file (unknown format, truncated or corrupt)",
    "subtitles-only": "has no audio stream (only subtitle)",
    "data-only": "has no audio stream (only data)",
    # FFmpeg's MP4 demuxer drops a track without samples: no stream is left at all
    "empty-audio-track": "has no audio stream",
    "fairplay-m4a": "the audio is encrypted (DRM-protected) and cannot be decoded",
    "cenc-m4a": "the audio is encrypted (DRM-protected) and cannot be decoded",
}
#: The valid cases that FFmpeg decodes, all encoded with exactly ``SECONDS * RATE`` samples
#: (stereo, or 5.1 downmixed); the others' length, rate and channels are their WAV header's.
ENCODED_LENGTH = {"aac-m4a", "surround-m4a", "video-mp4"}
#: The valid cases ``separate`` warns about: downmixed to stereo.
DOWNMIX_WARNING = ("6-channel audio downmixed to stereo (FFmpeg's default matrix: centre and "
                   "surrounds at -3 dB, LFE dropped)")
DOWNMIXED = {"six-channels", "surround-m4a"}
CHECKPOINT_PROBLEM = {
    "text-checkpoint": "not a PyTorch checkpoint",
    "random-bytes-checkpoint": "not a PyTorch checkpoint",
    "unrelated-tensors": "unrecognised checkpoint",
    "audio-as-checkpoint": "this is an audio file (WAV), not a model checkpoint",
}
DISK_FULL = os.strerror(28)  # ENOSPC: "No space left on device"


@pytest.fixture(autouse=True)
def _env(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> Iterator[None]:
    """Run in tmp_path (relative paths keep messages short), with no weights settings from the
    environment; afterwards make read-only folders removable."""
    monkeypatch.chdir(tmp_path)
    for var in ("CUMX_OFFLINE", "CUMX_WEIGHTS_MIRROR", "CUMX_ZENODO_URL", "CUMX_HTTP_TIMEOUT"):
        monkeypatch.delenv(var, raising=False)
    yield
    restore_permissions(tmp_path)


def scratch(root: Path) -> list[Path]:
    """Every temporary file that must never outlive a command below ``root``."""
    if not root.exists():
        return []
    return sorted({*leftovers(root), *root.rglob("*.part"), *root.rglob("*.lock"),
                   *root.rglob(".*.tmp")})


def the_error(result, *mentions: object) -> str:  # type: ignore[no-untyped-def]
    """The run's one ``error:`` line, which names every one of ``mentions``."""
    assert "Traceback" not in result.output, show(result)
    lines = error_lines(result)
    assert len(lines) == 1, show(result)
    line = lines[0]
    assert "unexpected" not in line, show(result)
    for text in mentions:
        assert str(text) in line, f"{text!r} not in the error line\n{show(result)}"
    return line


def no_errors(result) -> None:  # type: ignore[no-untyped-def]
    assert result.exit_code == 0, show(result)
    assert error_lines(result) == [] and "Traceback" not in result.output, show(result)


def ids(cases: list[Case]) -> list[object]:
    return [pytest.param(case, id=case.id) for case in cases]


def run_on(case: Case, path: Path, *args: object):  # -> typer.testing.Result
    """Run cumx with ``args``, under the case's simulated condition of ``path`` if it has one."""
    with pytest.MonkeyPatch.context() as patch:
        if case.simulate is not None:
            case.simulate(patch, path)
        return cumx(*args)


# -- separate ----------------------------------------------------------------------------------


def warning_lines(result) -> list[str]:  # type: ignore[no-untyped-def]
    return [line for line in result.stderr.splitlines() if line.startswith("warning:")]


def input_format(case: Case, src: Path) -> tuple[int, int, int]:
    """(rate, channels, frames) that the stems of a valid case must have: stereo at most."""
    if case.id in ENCODED_LENGTH:
        return RATE, 2, int(SECONDS * RATE)
    info = sf.info(src)
    return info.samplerate, min(info.channels, 2), info.frames


@pytest.mark.parametrize("case", ids(AUDIO))
def test_separate_audio(model: str, case: Case) -> None:
    src = case.build(Path("in"))
    out = Path("out")
    result = cumx("separate", src, "-o", out, "-m", model)
    if case.valid:
        no_errors(result)
        expected = [f"warning: {src}: {DOWNMIX_WARNING}"] if case.id in DOWNMIXED else []
        assert warning_lines(result) == expected, show(result)
        for path in stem_paths(out, src.stem).values():
            got = sf.info(path)
            assert (got.samplerate, got.channels, got.frames) == input_format(case, src)
            assert np.isfinite(sf.read(path)[0]).all()
        assert files_under(out) == {f"{src.stem}/{s}.wav" for s in SOURCES}
        return
    assert result.exit_code == 1, show(result)
    the_error(result, src, AUDIO_PROBLEM[case.id])
    assert warning_lines(result) == [], show(result)
    assert not out.exists()  # not even an empty track folder


def test_six_channels_are_separated_as_their_stereo_downmix(model: str) -> None:
    """The stems of a 6-channel WAV are those of its downmix as documented, computed here with
    numpy and written as a float WAV (to within float32 rounding of the two matrix products)."""
    six = BY_ID["six-channels"].build(Path("in"))
    data, _ = sf.read(six, dtype="float64")
    sf.write("in/stereo.wav", six_channel_downmix(data), RATE, subtype="FLOAT")
    for src in (six, Path("in/stereo.wav")):
        no_errors(cumx("separate", src, "-o", "out", "-m", model, "--dtype", "float32",
                       "--clip", "none"))
    for source in SOURCES:
        got = sf.read(f"out/sixch/{source}.wav", dtype="float64")[0]
        want = sf.read(f"out/stereo/{source}.wav", dtype="float64")[0]
        assert got.shape == want.shape == (int(SECONDS * RATE), 2)
        assert snr_db(got, want) > 100, (source, snr_db(got, want))


def snr_db(estimate: np.ndarray, reference: np.ndarray) -> float:
    err = np.sum((estimate - reference) ** 2)
    return float(10 * np.log10(np.sum(reference**2) / err)) if err else float("inf")


#: The audio cases that ``separate`` must refuse.
FAILING_AUDIO = [case for case in AUDIO if not case.valid]


def a_bad_input(case: Case, song: Path, out: Path) -> tuple[Path, str]:
    """``case`` as one input of ``separate -o out``, and what its error line must name.

    An audio case is the input itself. An output case is the folder of a good input's stems,
    ``out/<track>``, which cannot be written (for root, a file stands where that folder goes)."""
    if case.kind == "audio":
        src = case.build(Path("in"))
        return src, str(src)
    track = case.build(out, "locked").relative_to(out).parts[0]
    src = Path("in") / f"{track}.wav"
    shutil.copyfile(song, src)
    return src, str(out / track)


@pytest.mark.parametrize("case", ids([*FAILING_AUDIO, BY_ID["unwritable-output"]]))
def test_separate_bad_input_fails_alone(model: str, song: Path, case: Case) -> None:
    """A bad input before a good one: one error line for it, and the good one is separated."""
    out = Path("out")
    bad, names = a_bad_input(case, song, out)
    result = cumx("separate", bad, song, "-o", out, "-m", model, "--json")
    assert result.exit_code == 1, show(result)
    assert "Traceback" not in result.output, show(result)
    mentions = [line for line in result.stderr.splitlines() if names in line]
    assert len(mentions) == 1 and mentions[0].startswith("error:"), show(result)
    assert error_lines(result) == [mentions[0], "error: 1 of 2 input(s) failed"], show(result)
    if case.kind == "audio":
        assert AUDIO_PROBLEM[case.id] in mentions[0], show(result)

    first, second = json_lines(result)
    assert (first["input"], first["status"], first["outputs"]) == (str(bad), "error", {})
    assert names in first["error"]
    assert (second["input"], second["status"]) == (str(song), "ok")

    for path in stem_paths(out, song.stem).values():
        assert sf.info(path).frames == sf.info(song).frames
    assert not any(p.exists() for p in stem_paths(out, bad.stem).values())
    assert scratch(Path(".")) == []


@pytest.mark.slow
def test_separate_in_a_real_process_prints_one_line_per_bad_input(model: str, song: Path) -> None:
    """Native decoders (libmpg123 on ``garbled-mp3``) write to file descriptor 2 directly, which
    CliRunner cannot see: a real process's stderr holds only cumx's lines, one per bad input and
    the summary, and the good input after them is separated."""
    bad = [case.build(Path("in")) for case in FAILING_AUDIO]
    proc = subprocess.run(
        [sys.executable, "-m", "cumx_cli", "separate", *map(str, bad), str(song),
         "-o", "out", "-m", model, "-q"],
        capture_output=True, text=True, timeout=120)
    assert proc.returncode == 1, proc.stderr
    lines = proc.stderr.splitlines()
    assert len(lines) == len(bad) + 1, proc.stderr
    for case, path, line in zip(FAILING_AUDIO, bad, lines[:-1], strict=True):
        assert line.startswith(f"error: {path}") and AUDIO_PROBLEM[case.id] in line, proc.stderr
    assert lines[-1] == f"error: {len(bad)} of {len(bad) + 1} input(s) failed"
    assert proc.stdout == ""
    assert files_under(Path("out")) == {f"song/{s}.wav" for s in SOURCES}


@pytest.mark.parametrize("case", ids(CHECKPOINTS))
def test_separate_checkpoint(song: Path, case: Case) -> None:
    ckpt = case.build(Path("models"))
    result = cumx("separate", song, "-o", "out", "-m", ckpt)
    assert result.exit_code == 1, show(result)
    the_error(result, ckpt, CHECKPOINT_PROBLEM[case.id])
    assert not Path("out").exists()


@pytest.mark.parametrize("case", ids(OUTPUTS))
def test_separate_output(model: str, song: Path, case: Case) -> None:
    out = case.build(Path("."))
    result = run_on(case, out, "separate", song, "-o", out, "-m", model)
    assert result.exit_code == 1, show(result)
    # an unwritable folder is found before the model loads; a full disk when a stem is written
    line = the_error(result, out / song.stem if case.simulate else f"{out}: cannot")
    if case.simulate is not None:
        assert DISK_FULL in line, show(result)
    assert list(out.iterdir()) == [] if out.is_dir() else not out.exists()
    assert scratch(Path(".")) == []


@pytest.mark.parametrize("fmt", ["mp3", "ogg", "opus", "m4a"])
def test_separate_lossy_output_on_a_full_disk(model: str, song: Path, fmt: str) -> None:
    """The lossy writers (PyAV's muxers into a file object, libsndfile for Vorbis) meet the full
    disk too: one line with the OS's reason, and nothing left."""
    case = BY_ID["full-output"]
    out = case.build(Path("."))
    result = run_on(case, out, "separate", song, "-o", out, "-m", model, "--format", fmt)
    assert result.exit_code == 1, show(result)
    # the first stem written is the first source's
    assert the_error(result) == f"error: {out / song.stem / SOURCES[0]}.{fmt}: writing failed " \
        f"({DISK_FULL})", show(result)
    assert list(out.iterdir()) == []
    assert scratch(Path(".")) == []


# -- eval --------------------------------------------------------------------------------------


def eval_data(root: Path = Path("musdb"), est: Path = Path("est"),
              track: str = TEST_TRACK) -> tuple[Path, Path]:
    """A one-track test set and good estimates of it: ``est/<track>/<source>.wav``."""
    stems = write_dataset(root, test_tracks=(track,))
    refs = np.stack([stems[track][s].T for s in ("vocals", "drums", "bass", "other")])
    for j, source in enumerate(("vocals", "drums", "bass", "other")):
        path = est / track / f"{source}.wav"
        path.parent.mkdir(parents=True, exist_ok=True)
        sf.write(path, np.clip(estimates(refs)[j].T, -1, 1), RATE, subtype="FLOAT")
    return root, est


#: What ``eval --estimates`` says when the audio case is an estimate (its vocals.wav).
EVAL_PROBLEM = {
    **AUDIO_PROBLEM,
    # the random bytes as vocals.wav: the WAV demuxer, chosen by the suffix, refuses them
    "random-bytes": "not a readable audio or video file (unknown format, truncated or corrupt)",
    "unreadable": "is missing" if READS_ANY_FILE else "permission denied",
    "missing": "is missing",
    "one-sample": "has 1 samples",
    "8khz": "is at 8000 Hz",
    "192khz": "is at 192000 Hz",
}
#: The audio cases that ``eval`` scores as an estimate: the reference's rate and length, read
#: as stereo (the six-channel ones as their downmix, without a word: see the test below).
EVAL_SCORES = {"six-channels", "aac-m4a", "surround-m4a", "video-mp4"}


def track_scores(folder: Path, track: str = TEST_TRACK) -> dict[str, list[float]]:
    """source -> the per-frame SDR, SIR, ISR and SAR values of one track's score file."""
    report = json.loads((folder / "test" / f"{track}.json").read_text())
    return {target["name"]: [frame["metrics"][m] for frame in target["frames"]
                             for m in ("SDR", "SIR", "ISR", "SAR")]
            for target in report["targets"]}


@pytest.mark.parametrize("case", [
    pytest.param(case, id=case.id, marks=[pytest.mark.slow] if case.id in EVAL_SCORES else [])
    for case in AUDIO])  # scoring takes 4-10 s on 2 cores
def test_eval_estimate(case: Case) -> None:
    if case.id == "unicode-spaces":  # a track named with unicode and spaces, in folders with spaces
        track = Path(case.filename).stem
        musdb, est = eval_data(Path("data set"), Path("my estimates"), track)
        result = cumx("eval", "--musdb", musdb, "--estimates", est, "--out", "eval out")
        no_errors(result)
        assert files_under(Path("eval out")) >= {f"test/{track}.json", "summary.txt", "scores.csv"}
        return
    musdb, est = eval_data()
    stem = est / TEST_TRACK / "vocals.wav"
    stem.unlink()
    case.build(stem.parent, stem.name)
    result = cumx("eval", "--musdb", musdb, "--estimates", est, "--out", "scores")
    if case.id in EVAL_SCORES:
        no_errors(result)
        assert set(track_scores(Path("scores"))) == {"vocals", "drums", "bass", "other"}
        return
    assert result.exit_code == 1, show(result)
    the_error(result, stem, EVAL_PROBLEM[case.id])
    assert not Path("scores").exists()


@pytest.mark.slow
def test_a_six_channel_estimate_is_scored_as_its_stereo_downmix() -> None:
    """The same scores as the downmix computed here (numpy, the documented matrix) given as a
    stereo float estimate; eval says nothing about the downmix (separate warns, eval does not)."""
    musdb, est = eval_data()
    stem = est / TEST_TRACK / "vocals.wav"
    stereo, _ = sf.read(stem, dtype="float32")
    sf.write(stem, np.tile(stereo, (1, 3)), RATE, subtype="FLOAT")
    six = cumx("eval", "--musdb", musdb, "--estimates", est, "--out", "six")
    no_errors(six)
    sf.write(stem, six_channel_downmix(np.tile(stereo, (1, 3))), RATE, subtype="FLOAT")
    no_errors(cumx("eval", "--musdb", musdb, "--estimates", est, "--out", "two"))
    got, want = track_scores(Path("six")), track_scores(Path("two"))
    assert set(got) == set(want) == {"vocals", "drums", "bass", "other"}
    for source in want:
        np.testing.assert_allclose(got[source], want[source], rtol=0, atol=1e-3, err_msg=source)
    assert warning_lines(six) == []


@pytest.mark.parametrize("case", [
    pytest.param(case, id=case.id, marks=[pytest.mark.slow] if case.valid else [])
    for case in DATASETS])  # a valid one is scored twice
def test_eval_dataset(model: str, case: Case) -> None:
    musdb = case.build(Path("."))
    _, est = eval_data(Path("twin"), Path("est"))  # the same tracks: estimates that fit them
    if case.id == "six-channel-stem":
        eval_against_a_downmixed_reference(musdb, est)
        return
    if case.id == "missing-stem":  # the reference is missing
        args = ["--estimates", est]
        mentions = [musdb / "test" / TEST_TRACK / "vocals.wav", "is missing"]
    elif case.id == "nan-stem":  # the reference holds a NaN
        args = ["--estimates", est]
        mentions = [musdb / "test" / TEST_TRACK / "vocals.wav", AUDIO_PROBLEM["nan"]]
    else:  # the mixture is unreadable, which only separating needs
        args = ["--model", model, "--device", "cpu"]
        mentions = [musdb / "test" / TEST_TRACK / "mixture.wav",
                    AUDIO_PROBLEM[case.id.removesuffix("-mixture")]]
    result = cumx("eval", "--musdb", musdb, *args, "--out", "scores")
    assert result.exit_code == 1, show(result)
    the_error(result, *mentions)
    assert not Path("scores").exists()


def eval_against_a_downmixed_reference(musdb: Path, est: Path) -> None:
    """A six-channel reference stem is scored as its stereo downmix: the scores equal those
    against the downmix computed here and stored as a stereo float WAV."""
    no_errors(cumx("eval", "--musdb", musdb, "--estimates", est, "--out", "six"))
    ref = musdb / "test" / TEST_TRACK / "vocals.wav"
    sf.write(ref, six_channel_downmix(sf.read(ref, dtype="float64")[0]), RATE, subtype="FLOAT")
    no_errors(cumx("eval", "--musdb", musdb, "--estimates", est, "--out", "two"))
    got, want = track_scores(Path("six")), track_scores(Path("two"))
    for source in ("vocals", "drums", "bass", "other"):
        np.testing.assert_allclose(got[source], want[source], rtol=0, atol=1e-3, err_msg=source)


@pytest.mark.parametrize("case", ids(CHECKPOINTS))
def test_eval_checkpoint(case: Case) -> None:
    musdb, _ = eval_data()
    ckpt = case.build(Path("models"))
    result = cumx("eval", "--musdb", musdb, "--model", ckpt, "--out", "scores")
    assert result.exit_code == 1, show(result)
    the_error(result, ckpt, CHECKPOINT_PROBLEM[case.id])
    assert not Path("scores").exists()


@pytest.mark.parametrize("case", ids(OUTPUTS))
def test_eval_output(case: Case) -> None:
    musdb, est = eval_data()
    out = case.build(Path("."))
    result = run_on(case, out, "eval", "--musdb", musdb, "--estimates", est, "--out", out)
    assert result.exit_code == 1, show(result)
    line = the_error(result, out)
    if case.simulate is not None:
        assert DISK_FULL in line, show(result)
    assert files_under(out) == set() if out.is_dir() else not out.exists()
    assert scratch(Path(".")) == []


# -- train -------------------------------------------------------------------------------------


def train(*args: object):  # -> typer.testing.Result
    return cumx("train", *args, "--epochs", "1", *TINY)


@pytest.mark.parametrize("case", ids([c for c in DATASETS if not c.valid]))
def test_train_dataset(case: Case) -> None:
    musdb = case.build(Path("."))
    result = train("--musdb", musdb, "--out", "run")
    assert result.exit_code == 1, show(result)
    track = musdb / "train" / TRAIN_TRACK
    if case.id == "missing-stem":
        the_error(result, track, "missing vocals.wav")
    elif case.id == "nan-stem":  # found when an excerpt of it is read
        the_error(result, track / "vocals.wav", AUDIO_PROBLEM["nan"])
    else:
        the_error(result, track / "mixture.wav", AUDIO_PROBLEM[case.id.removesuffix("-mixture")])
    assert not Path("run").exists()


@pytest.mark.slow
@pytest.mark.parametrize("case", ids([c for c in DATASETS if c.valid]))
def test_train_accepts_dataset(case: Case) -> None:
    """A six-channel stem is read as its stereo downmix, excerpt by excerpt: one epoch runs."""
    musdb = case.build(Path("."))
    result = train("--musdb", musdb, "--out", "run")
    no_errors(result)
    assert {"last.pt", "best.pt"} <= files_under(Path("run")), show(result)


@pytest.mark.parametrize("case", ids(CHECKPOINTS))
def test_train_resume_checkpoint(case: Case) -> None:
    last = case.build(Path("run"), "last.pt")
    before = last.read_bytes()
    result = cumx("train", "--resume", "run")
    assert result.exit_code == 1, show(result)
    problem = "not a cumx training checkpoint" if case.id == "unrelated-tensors" else \
        CHECKPOINT_PROBLEM[case.id]
    the_error(result, last, problem)
    assert files_under(Path("run")) == {"last.pt"} and last.read_bytes() == before


@pytest.mark.parametrize("case", ids(OUTPUTS))
def test_train_output(case: Case) -> None:
    write_dataset(Path("musdb"))
    out = case.build(Path(".")) / "run"
    result = run_on(case, out.parent, "train", "--musdb", "musdb", "--out", out, "--epochs", "1",
                    *TINY)
    assert result.exit_code == 1, show(result)
    line = the_error(result, out)
    if case.simulate is not None:
        assert DISK_FULL in line, show(result)
    assert not out.exists() or files_under(out) == set()
    assert scratch(Path(".")) == []


# -- download-weights --------------------------------------------------------------------------


@pytest.mark.parametrize("case", ids([BY_ID["unwritable-cache"], BY_ID["full-cache"]]))
def test_download_into_a_bad_cache(server: FakeZenodo, case: Case) -> None:
    cache = case.build(Path("."))
    result = run_on(case, cache, "download-weights", "xumx", "--cache-dir", cache)
    assert result.exit_code == 1, show(result)
    line = the_error(result, cache)
    if case.simulate is not None:
        assert "no space left" in line, show(result)
    assert not cache.exists() or files_under(cache) == set()
    assert scratch(Path(".")) == []


def test_download_repairs_a_corrupt_cached_file(server: FakeZenodo) -> None:
    cache = BY_ID["corrupt-cache"].build(Path("."))
    result = cumx("download-weights", "xumx", "--cache-dir", cache)
    no_errors(result)
    assert result.stdout.endswith("\tdownloaded\n")
    assert (cache / "weights" / "xumx" / XUMX_FILE).read_bytes() == ASTEROID
    assert files_under(cache) == {f"weights/xumx/{XUMX_FILE}", f"weights/xumx/{XUMX_FILE}.sha256"}


@pytest.mark.parametrize("command", ["download-weights", "separate"])
def test_offline_with_a_corrupt_cached_file(server: FakeZenodo, song: Path, command: str) -> None:
    cache = BY_ID["corrupt-cache"].build(Path("."))
    before = files_under(cache)
    args = ["xumx"] if command == "download-weights" else [song, "-o", "out"]
    result = cumx(command, *args, "--cache-dir", cache, "--offline")
    assert result.exit_code == 1, show(result)
    the_error(result, cache / "weights" / "xumx" / XUMX_FILE, "corrupt",
              "cumx download-weights xumx --force")
    assert files_under(cache) == before and server.requests == []
    assert not Path("out").exists()


@pytest.mark.parametrize(("args", "code", "mentions"), [
    (["xumz"], 2, ["unknown model", "'xumz'", "did you mean 'xumx'"]),
    (["xumx", "--offline"], 1, ["cumx download-weights xumx", "cache/weights/xumx"]),
    ([], 2, ["--all"]),
], ids=["unknown-name", "offline-nothing-cached", "no-name"])
def test_download_usage(server: FakeZenodo, args: list[str], code: int,
                        mentions: list[str]) -> None:
    result = cumx("download-weights", *args, "--cache-dir", "cache")
    assert result.exit_code == code, show(result)
    the_error(result, *mentions)
    assert not Path("cache").exists() and server.requests == []


# -- a real full file system -------------------------------------------------------------------
#
# The cases above simulate a full disk by making Python-level writes fail. These run the same
# commands on a real one, where the reason comes from below Python: libsndfile, torch's zip
# writer, PIL and the kernel. They need root and the right to mount a tmpfs (skipped elsewhere).

FREE_KIB = 16


@pytest.fixture
def full_disk(tmp_path: Path) -> Iterator[Path]:
    """A 1 MiB tmpfs mounted under ``tmp_path`` with only :data:`FREE_KIB` KiB left free."""
    import shutil
    import subprocess

    mount = tmp_path / "full disk"
    mount.mkdir()
    if shutil.which("mount") is None or subprocess.run(
            ["mount", "-t", "tmpfs", "-o", "size=1m", "tmpfs", str(mount)],
            capture_output=True).returncode != 0:
        pytest.skip("cannot mount a tmpfs here (needs root and CAP_SYS_ADMIN)")
    try:
        (mount / "filler").write_bytes(b"\0" * ((1024 - FREE_KIB) * 1024))
        yield mount
    finally:
        subprocess.run(["umount", "-l", str(mount)], capture_output=True)


def on_full_disk(mount: Path) -> set[str]:
    """What the commands left on the full file system (the filler excepted): nothing."""
    return {str(p.relative_to(mount)) for p in mount.rglob("*")} - {"filler"}


def test_separate_on_a_real_full_disk(model: str, song: Path, full_disk: Path) -> None:
    result = cumx("separate", song, "-o", full_disk / "out", "-m", model)
    assert result.exit_code == 1, show(result)
    the_error(result, full_disk / "out" / "song", DISK_FULL)
    assert on_full_disk(full_disk) == set()


def test_train_on_a_real_full_disk(full_disk: Path) -> None:
    write_dataset(Path("musdb"))
    result = train("--musdb", "musdb", "--out", full_disk / "run")
    assert result.exit_code == 1, show(result)
    the_error(result, full_disk / "run", DISK_FULL)
    assert on_full_disk(full_disk) == set()


def test_eval_on_a_real_full_disk(full_disk: Path) -> None:
    musdb, est = eval_data()
    result = cumx("eval", "--musdb", musdb, "--estimates", est, "--out", full_disk / "scores")
    assert result.exit_code == 1, show(result)
    the_error(result, full_disk / "scores", DISK_FULL)
    assert scratch(full_disk) == []  # what was written before the disk filled is complete


def test_download_on_a_real_full_disk(server: FakeZenodo, full_disk: Path) -> None:
    result = cumx("download-weights", "xumx", "--cache-dir", full_disk / "cache")
    assert result.exit_code == 1, show(result)
    # the free space is checked against the published size before the file is fetched
    the_error(result, full_disk / "cache", "2.4 MB needed but only 0.0 MB free")
    assert on_full_disk(full_disk) == set()
