"""Kill safety: SIGKILL mid-run leaves no partial file at a final path and a rerun removes its
scratch; SIGTERM and SIGHUP stop a run as Ctrl-C does, with nothing left behind; training
resumes."""

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
import typer

from cumx_cli.console import Terminated, guard, termination_signals
from cumx_cli.engine.data.synth import generate_synthetic_musdb
from cumx_cli.engine.files import host_token
from cumx_cli.engine.weights.resolver import load_model
from tests.cli.helpers import cumx, show
from tests.conftest import RATE, music

pytestmark = pytest.mark.skipif(not hasattr(signal, "SIGKILL"), reason="needs POSIX signals")


#: The signals handled like Ctrl-C, with the exit status each gives (128 + the signal number).
TERMINATION = [pytest.param(getattr(signal, name), 128 + getattr(signal, name), id=name)
               for name in ("SIGTERM", "SIGHUP") if hasattr(signal, name)]


def _start(*args: str, cwd: Path) -> subprocess.Popen[bytes]:
    env = {**os.environ, "CUMX_CACHE_DIR": str(cwd / "cache")}
    return subprocess.Popen([sys.executable, "-m", "cumx_cli", *args], cwd=cwd, env=env,
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)


def _finish(proc: subprocess.Popen[bytes], timeout: float = 120.0) -> tuple[int, str]:
    """The exit status and stderr of a signalled run, once it has cleaned up and ended."""
    _, err = proc.communicate(timeout=timeout)
    return proc.returncode, err.decode()


def _assert_one_error_line(stderr: str, signum: int) -> None:
    errors = [line for line in stderr.splitlines() if line.startswith("error:")]
    assert errors == [f"error: terminated ({signal.Signals(signum).name})"], stderr
    assert "Traceback" not in stderr, stderr


def _wait_for(predicate, proc: subprocess.Popen[bytes], timeout: float = 120.0) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        if proc.poll() is not None:
            raise AssertionError(f"finished before the kill: {proc.stderr.read().decode()[-2000:]}")
        if time.monotonic() > deadline:
            proc.kill()
            raise AssertionError("timed out waiting for the run to start working")
        time.sleep(0.02)


@pytest.mark.slow
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
    assert hidden == [], hidden  # the rerun removed the killed run's scratch


@pytest.mark.slow
@pytest.mark.parametrize(("signum", "status"), TERMINATION)
def test_terminated_separation_cleans_up(tmp_path: Path, tiny_model_path: Path, signum: int,
                                         status: int) -> None:
    """SIGTERM/SIGHUP while stems go to scratch files: exit 128 + signum, one error line, and
    the track folder holds neither scratch nor a stem."""
    sf.write(tmp_path / "long.wav", music(40.0), RATE, subtype="PCM_16")
    proc = _start("separate", "long.wav", "-m", str(tiny_model_path), "-o", "out", "--chunk", "2",
                  "--scratch-memory", "0", cwd=tmp_path)
    track = tmp_path / "out" / "long"
    _wait_for(lambda: track.is_dir() and any(p.suffix == ".raw" for p in track.iterdir()), proc)
    proc.send_signal(signum)
    code, stderr = _finish(proc)
    assert code == status, stderr
    _assert_one_error_line(stderr, signum)
    left = sorted(p.name for p in track.iterdir()) if track.exists() else []
    assert left == [], left  # no scratch, no .part, no stem


@pytest.mark.slow
def test_a_second_signal_during_cleanup_changes_nothing(tmp_path: Path,
                                                        tiny_model_path: Path) -> None:
    """A burst of SIGTERMs (a scheduler warning repeatedly): the first one counts, the rest
    are ignored while the run cleans up."""
    sf.write(tmp_path / "long.wav", music(40.0), RATE, subtype="PCM_16")
    proc = _start("separate", "long.wav", "-m", str(tiny_model_path), "-o", "out", "--chunk", "2",
                  "--scratch-memory", "0", cwd=tmp_path)
    track = tmp_path / "out" / "long"
    _wait_for(lambda: track.is_dir() and any(p.suffix == ".raw" for p in track.iterdir()), proc)
    for _ in range(20):
        if proc.poll() is not None:
            break
        proc.send_signal(signal.SIGTERM)
    code, stderr = _finish(proc)
    assert code == 128 + signal.SIGTERM, stderr
    _assert_one_error_line(stderr, signal.SIGTERM)
    assert not track.exists() or list(track.iterdir()) == []


@pytest.mark.slow
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


@pytest.mark.slow
def test_terminated_training_keeps_a_loadable_checkpoint(tmp_path: Path) -> None:
    generate_synthetic_musdb(tmp_path / "data", num_train=2, num_valid=1, num_test=0, seconds=3.0)
    args = ["--hidden-size", "8", "--nb-layers", "1", "--seq-dur", "1", "--samples-per-track", "8",
            "--batch-size", "2", "--device", "cpu"]
    proc = _start("train", "--musdb", "data", "--out", "run", "--epochs", "50", *args, cwd=tmp_path)
    metrics = tmp_path / "run" / "metrics.jsonl"
    _wait_for(lambda: metrics.is_file() and metrics.read_text().count("\n") >= 1, proc)
    proc.send_signal(signal.SIGTERM)
    code, stderr = _finish(proc)
    assert code == 128 + signal.SIGTERM, stderr
    _assert_one_error_line(stderr, signal.SIGTERM)
    model = load_model(tmp_path / "run" / "last.pt")
    assert model.config.hidden_size == 8
    assert list((tmp_path / "run").glob(".*")) == []  # no checkpoint's temporary file


# -- the handlers themselves, in this process (fast) ------------------------------------------


def _signal_self(signum: int, timeout: float = 10.0) -> None:
    """Send ``signum`` to this process and wait for its Python handler to run (it raises)."""
    os.kill(os.getpid(), signum)
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        time.sleep(0.01)  # the handler runs here, in the main thread
    raise AssertionError(f"no exception from signal {signum}")


@pytest.mark.parametrize(("signum", "status"), TERMINATION)
def test_guard_maps_a_termination_signal_to_its_exit_status(signum: int, status: int,
                                                            capsys: pytest.CaptureFixture[str]
                                                            ) -> None:
    @guard
    def command(ctx: typer.Context | None = None) -> None:
        raise Terminated(signum)

    with pytest.raises(typer.Exit) as exit_info:
        command()
    assert exit_info.value.exit_code == status
    assert capsys.readouterr().err.splitlines() == [
        f"error: terminated ({signal.Signals(signum).name})"]


def test_the_handlers_raise_once_then_ignore_and_are_restored() -> None:
    before = signal.getsignal(signal.SIGTERM)
    with pytest.raises(SystemExit) as exit_info, termination_signals():
        try:
            _signal_self(signal.SIGTERM)
        except Terminated as exc:
            assert exc.signum == signal.SIGTERM and isinstance(exc, KeyboardInterrupt)
            assert signal.getsignal(signal.SIGTERM) == signal.SIG_IGN  # during the cleanup
            os.kill(os.getpid(), signal.SIGTERM)  # a second one: ignored
        sys.exit(143)  # what guard's typer.Exit becomes
    assert exit_info.value.code == 143
    assert signal.getsignal(signal.SIGTERM) == before


def test_a_signal_outside_a_command_still_exits_with_its_status(
        capsys: pytest.CaptureFixture[str]) -> None:
    """While click parses the arguments it turns a KeyboardInterrupt into "Aborted!" and exit
    1; after the command returned, the exception would escape: both exit 143."""
    with pytest.raises(SystemExit) as exit_info, termination_signals():
        try:
            _signal_self(signal.SIGTERM)
        except KeyboardInterrupt:
            sys.exit(1)
    assert exit_info.value.code == 143
    with pytest.raises(SystemExit) as exit_info, termination_signals():
        _signal_self(signal.SIGTERM)
    assert exit_info.value.code == 143
    assert capsys.readouterr().err.splitlines() == ["error: terminated (SIGTERM)"]


def test_a_run_removes_only_the_leftovers_of_this_hosts_ended_processes(
        tmp_path: Path, model: str) -> None:
    """A killed run's scratch is removed by the next run writing into the track's folder; a
    running process's, and another machine's (a shared output folder), stay."""
    ended = subprocess.Popen([sys.executable, "-c", "pass"])
    ended.wait()
    track = tmp_path / "out" / "song"
    track.mkdir(parents=True)
    stale = {f".bass.wav.{host_token()}.{ended.pid}.raw", f".vocals.wav.{host_token()}.{ended.pid}.part"}
    kept = {f".bass.wav.{host_token()}.{os.getpid()}.raw", f".bass.wav.node99.{ended.pid}.raw"}
    for name in stale | kept:
        (track / name).write_bytes(b"scratch")
    sf.write(tmp_path / "song.wav", music(1.0), RATE, subtype="PCM_16")
    result = cumx("separate", tmp_path / "song.wav", "-m", model, "-o", tmp_path / "out")
    assert result.exit_code == 0, show(result)
    assert {p.name for p in track.iterdir() if p.name.startswith(".")} == kept
