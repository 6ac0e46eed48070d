"""Kill safety: SIGKILL mid-run leaves no partial file at a final path, and training resumes."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import soundfile as sf

from cumx_cli.engine.data.synth import generate_synthetic_musdb
from cumx_cli.engine.weights.resolver import load_model
from tests.conftest import RATE, music

pytestmark = [pytest.mark.skipif(not hasattr(signal, "SIGKILL"), reason="needs SIGKILL"),
              pytest.mark.slow]


def _start(*args: str, cwd: Path) -> subprocess.Popen[bytes]:
    env = {**os.environ, "CUMX_CACHE_DIR": str(cwd / "cache")}
    return subprocess.Popen([sys.executable, "-m", "cumx_cli", *args], cwd=cwd, env=env,
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)


def _wait_for(predicate, proc: subprocess.Popen[bytes], timeout: float = 120.0) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        if proc.poll() is not None:
            raise AssertionError(f"finished before the kill: {proc.stderr.read().decode()[-2000:]}")
        if time.monotonic() > deadline:
            proc.kill()
            raise AssertionError("timed out waiting for the run to start working")
        time.sleep(0.02)


@pytest.mark.parametrize(("scratch", "fmt", "working"), [
    ("0", "wav", (".raw",)),  # killed while stems go to scratch files
    ("384", "mp3", (".part",)),  # stems held in memory: killed while encoding (slow for mp3)
])
def test_killed_separation_leaves_no_partial_stem(tmp_path: Path, tiny_model_path: Path,
                                                  scratch: str, fmt: str,
                                                  working: tuple[str, ...]) -> None:
    sf.write(tmp_path / "long.wav", music(40.0), RATE, subtype="PCM_16")
    proc = _start("separate", "long.wav", "-m", str(tiny_model_path), "-o", "out", "--chunk", "2",
                  "--scratch-memory", scratch, "--format", fmt, "-q", cwd=tmp_path)
    track = tmp_path / "out" / "long"
    _wait_for(lambda: track.is_dir() and any(p.suffix in working for p in track.iterdir()), proc)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    finals = [p for p in track.iterdir() if not p.name.startswith(".")]
    assert finals == [], finals  # nothing at a final path; only hidden scratch files may remain
    # a rerun completes normally next to the leftovers
    again = _start("separate", "long.wav", "-m", str(tiny_model_path), "-o", "out", "-q", cwd=tmp_path)
    assert again.wait(timeout=300) == 0, again.stderr.read().decode()
    assert sorted(p.name for p in track.glob("*.wav")) == ["bass.wav", "drums.wav", "other.wav", "vocals.wav"]
    assert sf.info(str(track / "vocals.wav")).frames == 40 * RATE
    hidden = [p.name for p in track.iterdir() if p.name.startswith(".")]
    assert all(f".{proc.pid}." in name for name in hidden), hidden  # only the killed run's


def test_killed_training_resumes(tmp_path: Path) -> None:
    generate_synthetic_musdb(tmp_path / "data", num_train=2, num_valid=1, num_test=0, seconds=3.0)
    args = ["--hidden-size", "8", "--nb-layers", "1", "--seq-dur", "1", "--samples-per-track", "8",
            "--batch-size", "2", "--device", "cpu"]
    proc = _start("train", "--musdb", "data", "--out", "run", "--epochs", "50", *args, cwd=tmp_path)
    metrics = tmp_path / "run" / "metrics.jsonl"
    _wait_for(lambda: metrics.is_file() and metrics.read_text().count("\n") >= 1, proc)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    done = len(metrics.read_text().splitlines())
    model = load_model(tmp_path / "run" / "last.pt")  # loadable, whatever the kill interrupted
    assert model.config.hidden_size == 8
    resumed = _start("train", "--resume", "run", "--musdb", "data", "--epochs", str(done + 1), cwd=tmp_path)
    assert resumed.wait(timeout=300) == 0, resumed.stderr.read().decode()[-2000:]
    epochs = [json.loads(x)["epoch"] for x in metrics.read_text().splitlines()]
    assert epochs[-1] == done + 1
