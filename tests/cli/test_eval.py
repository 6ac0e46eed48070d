"""``cumx eval`` end to end through the CLI: outputs, resuming, published scores, exit codes."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

from cumx_cli.engine.weights import resolver
from cumx_cli.engine.weights.formats.cumx import save_model
from tests.cli.helpers import cumx, show
from tests.conftest import random_model, tiny_config
from tests.synthetic_musdb import RATE, SOURCES, estimates, write_musdb


@pytest.fixture(autouse=True)
def _cwd_and_state(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.chdir(tmp_path)


@pytest.fixture
def musdb(tmp_path: Path) -> Path:
    root = tmp_path / "musdb"
    stems = write_musdb(root, {"A - One": 1.5, "B - Two": 1.1})
    for n, (track, by_source) in enumerate(stems.items()):
        est = estimates(np.stack([by_source[s].T for s in SOURCES]), seed=n)
        for j, src in enumerate(SOURCES):
            path = tmp_path / "est" / track / f"{src}.wav"
            path.parent.mkdir(parents=True, exist_ok=True)
            sf.write(path, np.clip(est[j].T, -1, 1), RATE, subtype="FLOAT")
    return root


def test_help() -> None:
    result = cumx("eval", "--help")
    assert result.exit_code == 0
    for option in ("--musdb", "--estimates", "--backend", "--force", "--tracks", "--niter"):
        assert option in result.stdout


@pytest.mark.slow
def test_estimates_are_scored_reported_and_resumed(musdb: Path) -> None:
    result = cumx("eval", "--musdb", musdb, "--estimates", "est", "--out", "scores")
    assert result.exit_code == 0, show(result)
    out = Path("scores")
    for track in ("A - One", "B - Two"):
        data = json.loads((out / "test" / f"{track}.json").read_text())
        assert [t["name"] for t in data["targets"]] == list(SOURCES)
    assert "median over frames, then median over 2 track(s)" in result.stdout
    assert all(src in result.stdout for src in (*SOURCES, "avg"))
    assert "published" not in result.stdout
    assert (out / "summary.txt").read_text() == result.stdout
    assert (out / "scores.csv").read_text().startswith("track,source,SDR,SIR,ISR,SAR")
    assert "scored A - One" in result.stderr

    again = cumx("eval", "--musdb", musdb, "--estimates", "est", "--out", "scores")
    assert again.exit_code == 0, show(again)
    assert "skipped A - One" in again.stderr and again.stdout == result.stdout

    forced = cumx("eval", "--musdb", musdb, "--estimates", "est", "--out", "scores", "--force",
                  "--tracks", "B - Two")
    assert forced.exit_code == 0, show(forced)
    assert "scored B - Two" in forced.stderr and "A - One" not in forced.stderr


def test_model_is_run_and_published_scores_shown(musdb: Path, tmp_path: Path,
                                                 monkeypatch: pytest.MonkeyPatch) -> None:
    calls = []
    checkpoint = tmp_path / "as-if-cached.pt"
    save_model(random_model(tiny_config()), checkpoint)

    def fake_resolve(spec: str, settings=None, events=None):  # type: ignore[no-untyped-def]
        calls.append(spec)
        return checkpoint  # the published name, as if downloaded into the cache

    monkeypatch.setattr(resolver, "resolve_path", fake_resolve)
    result = cumx("eval", "--musdb", musdb, "--model", "xumx", "--out", "scores",
                  "--tracks", "B - Two", "--chunk", "1", "--overlap", "0.25")
    assert result.exit_code == 0, show(result)
    assert calls == ["xumx"]
    # xumx's published scores are on MUSDB18 (compressed); this folder is the wav layout
    assert "published (xumx) not shown: published on MUSDB18 (compressed); this is MUSDB18-HQ" \
        in result.stdout and "| published" not in result.stdout
    assert Path("scores/test/B - Two.json").exists()


def test_a_real_checkpoint_without_published_scores(musdb: Path, tiny_model_path: Path) -> None:
    result = cumx("eval", "--musdb", musdb, "-m", tiny_model_path, "--out", "scores",
                  "--tracks", "B - Two", "--device", "cpu")
    assert result.exit_code == 0, show(result)
    assert "published" not in result.stdout


@pytest.mark.parametrize("args", [[], ["--model", "x.pt", "--estimates", "est"]])
def test_model_xor_estimates(musdb: Path, args: list[str]) -> None:
    result = cumx("eval", "--musdb", musdb, *args)
    assert result.exit_code == 2, show(result)
    assert "either --model M" in result.stderr


def test_a_missing_stem_fails_that_track_only(musdb: Path) -> None:
    Path("est/A - One/vocals.wav").unlink()
    result = cumx("eval", "--musdb", musdb, "--estimates", "est", "--out", "scores")
    assert result.exit_code == 1, show(result)
    lines = [line for line in result.stderr.splitlines() if "error:" in line]
    assert any("track 'A - One': estimate" in line and "vocals.wav is missing" in line
               for line in lines), show(result)
    assert "1 of 2 track(s) failed" in result.stderr
    assert Path("scores/test/B - Two.json").exists()
    assert not Path("scores/test/A - One.json").exists()


def test_unknown_track_and_missing_subset(musdb: Path) -> None:
    result = cumx("eval", "--musdb", musdb, "--estimates", "est", "--tracks", "Nope")
    assert result.exit_code == 1 and "Nope" in result.stderr
    result = cumx("eval", "--musdb", musdb, "--estimates", "est", "--subset", "train")
    assert result.exit_code == 1 and "no 'train' folder" in result.stderr


@pytest.mark.slow
def test_museval_backend_agrees_with_fast(musdb: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """museval's own code, loaded without ffmpeg on PATH (its package import needs it)."""
    monkeypatch.setenv("PATH", "/nonexistent")
    args = ("eval", "--musdb", musdb, "--estimates", "est", "--tracks", "B - Two")
    assert cumx(*args, "--out", "fast").exit_code == 0
    result = cumx(*args, "--out", "slow", "--backend", "museval")
    assert result.exit_code == 0, show(result)
    fast = json.loads(Path("fast/test/B - Two.json").read_text())
    slow = json.loads(Path("slow/test/B - Two.json").read_text())
    for t_fast, t_slow in zip(fast["targets"], slow["targets"], strict=True):
        for f_fast, f_slow in zip(t_fast["frames"], t_slow["frames"], strict=True):
            for m, v in f_slow["metrics"].items():
                assert f_fast["metrics"][m] == pytest.approx(v, abs=2e-5, nan_ok=True)


def test_scores_of_something_else_are_not_reused(musdb: Path, tiny_model_path: Path) -> None:
    # the run: estimates scored into an --out, then a model into the same --out
    args = ("eval", "--musdb", musdb, "--out", "ev", "--tracks", "B - Two")
    first = cumx(*args, "--estimates", "est")
    assert first.exit_code == 0, show(first)
    model = (*args, "-m", tiny_model_path, "--device", "cpu", "--chunk", "1", "--overlap", "0.25")
    result = cumx(*model)
    assert result.exit_code == 0, show(result)
    assert "scored B - Two" in result.stderr and "scored already" not in result.stderr
    assert "1 track(s) scored again: their score files in ev were made by something else" \
        in result.stderr
    assert result.stdout != first.stdout
    record = json.loads(Path("ev/test/B - Two.json").read_text())["cumx_record"]
    assert record["model"] == str(tiny_model_path) and len(record["sha256"]["tiny.pt"]) == 64
    assert record["inference"]["chunk_seconds"] == 1.0 and record["eval"]["backend"] == "fast"
    again = cumx(*model)  # the same model and options: reused
    assert again.exit_code == 0, show(again)
    assert "skipped B - Two" in again.stderr and "scored again" not in again.stderr
    assert again.stdout == result.stdout
    other = cumx(*model[:-2], "--overlap", "0.5")  # an option that changes the stems
    assert other.exit_code == 0, show(other)
    assert "1 track(s) scored again" in other.stderr


def test_a_copied_reference_is_refused_and_the_others_scored(musdb: Path) -> None:
    shutil.copyfile(musdb / "test" / "A - One" / "bass.wav", "est/A - One/bass.wav")
    result = cumx("eval", "--musdb", musdb, "--estimates", "est", "--out", "scores")
    assert result.exit_code == 1, show(result)
    lines = [line for line in result.stderr.splitlines() if "error:" in line]
    assert any("est/A - One/bass.wav is identical to the reference" in line
               for line in lines), show(result)
    assert Path("scores/test/B - Two.json").exists()
    assert not Path("scores/test/A - One.json").exists()


def _shifted_copy(source: Path, dest: Path, lag: int) -> None:
    """Every estimate under ``source``, ``lag`` samples late (zeros first, the end cut)."""
    for path in source.rglob("*.wav"):
        data, rate = sf.read(path, dtype="float32", always_2d=True)
        late = np.zeros_like(data)
        late[lag:] = data[:-lag]
        target = dest / path.relative_to(source)
        target.parent.mkdir(parents=True, exist_ok=True)
        sf.write(target, late, rate, subtype="FLOAT")


def test_shifted_estimates_get_one_warning_per_track_and_unchanged_scores(
        musdb: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    _shifted_copy(Path("est"), Path("late"), 1024)
    args = ("eval", "--musdb", musdb, "--estimates", "late")
    result = cumx(*args, "--out", "checked")
    assert result.exit_code == 0, show(result)
    warnings = [line for line in result.stderr.splitlines() if line.startswith("warning:")]
    assert len(warnings) == 2, show(result)
    for line, track in zip(warnings, ("A - One", "B - Two"), strict=True):
        assert line.startswith(f"warning: track '{track}': the estimates "), line
        assert "by 1024 samples (23.2 ms); BSSEval and the global SDR score this as separation " \
               "error: check the tool that wrote them" in line
    assert "global SDR (MDX 2021" in result.stdout

    again = cumx(*args, "--out", "checked")  # reused scores: the stored lag is told again
    assert again.exit_code == 0 and "skipped A - One" in again.stderr, show(again)
    assert [line for line in again.stderr.splitlines() if line.startswith("warning:")] == warnings

    from cumx_cli.engine.evaluation import runner

    monkeypatch.setattr(runner, "detect_lag", lambda *_, **__: None)  # the same, unchecked
    unchecked = cumx(*args, "--out", "unchecked")
    assert unchecked.exit_code == 0 and "warning:" not in unchecked.stderr, show(unchecked)
    assert unchecked.stdout == result.stdout
    for track in ("A - One", "B - Two"):
        checked = json.loads(Path(f"checked/test/{track}.json").read_text())
        plain = json.loads(Path(f"unchecked/test/{track}.json").read_text())
        assert checked["targets"] == plain["targets"]
        assert checked["cumx_global_sdr"] == plain["cumx_global_sdr"]
        assert checked["cumx_lag"]["samples"] == 1024 and "cumx_lag" not in plain


def test_aligned_estimates_get_no_warning_and_a_global_sdr(musdb: Path) -> None:
    result = cumx("eval", "--musdb", musdb, "--estimates", "est", "--out", "scores")
    assert result.exit_code == 0, show(result)
    assert "warning:" not in result.stderr, show(result)
    lines = result.stdout.splitlines()
    assert lines[0].startswith("BSSEval v4")  # the headline
    assert any(line.startswith("global SDR (MDX 2021 / demucs nSDR") and "over 2 track(s)" in line
               for line in lines), result.stdout
    rows = Path("scores/scores.csv").read_text().splitlines()
    assert rows[0] == "track,source,SDR,SIR,ISR,SAR,global_SDR"
    assert any(row.startswith("(mean over tracks),avg,,,,,") for row in rows)
    data = json.loads(Path("scores/test/A - One.json").read_text())
    assert set(data["cumx_global_sdr"]) == set(SOURCES)
    summary = json.loads(Path("scores/summary.json").read_text())
    assert summary["dataset"] == "MUSDB18-HQ" and summary["global_sdr"]["num_tracks"] == 2
