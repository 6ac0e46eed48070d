"""Thread settings of the ``cumx`` command: set when unset, the user's value wins, and torch's
OpenMP runtime (read once, when torch is imported) sees them."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest

from cumx_cli.threads import tune_threads

# Run the console entry (``cumx --version``) and only then import torch, as a command does; libgomp
# reads its environment when torch loads it, and OMP_DISPLAY_ENV makes it print what it read.
ENTRY_THEN_TORCH = """
import atexit, sys
import cumx_cli.app
print("torch imported by the entry:", "torch" in sys.modules)
atexit.register(__import__, "torch")
sys.argv = ["cumx", "--version"]
cumx_cli.app.main()
"""


def test_sets_active_wait_policy_with_short_spins_when_unset(
        monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("OMP_WAIT_POLICY", raising=False)
    monkeypatch.delenv("GOMP_SPINCOUNT", raising=False)
    tune_threads()
    assert os.environ["OMP_WAIT_POLICY"] == "ACTIVE"
    assert os.environ["GOMP_SPINCOUNT"] == "30000"


@pytest.mark.parametrize("value", ["ACTIVE", "passive"])
def test_user_wait_policy_wins(monkeypatch: pytest.MonkeyPatch, value: str) -> None:
    monkeypatch.setenv("OMP_WAIT_POLICY", value)
    tune_threads()
    assert os.environ["OMP_WAIT_POLICY"] == value


def test_user_spin_count_wins(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("OMP_WAIT_POLICY", raising=False)
    monkeypatch.setenv("GOMP_SPINCOUNT", "10000")
    tune_threads()
    assert "OMP_WAIT_POLICY" not in os.environ and os.environ["GOMP_SPINCOUNT"] == "10000"


def test_leaves_thread_count_to_the_user(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("OMP_NUM_THREADS", raising=False)
    monkeypatch.delenv("OMP_WAIT_POLICY", raising=False)
    monkeypatch.delenv("GOMP_SPINCOUNT", raising=False)
    tune_threads()
    assert "OMP_NUM_THREADS" not in os.environ


def _openmp_seen_by_torch(extra: dict[str, str]) -> tuple[str, str]:
    """(stdout, libgomp's GOMP_SPINCOUNT line) of the entry followed by ``import torch``."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("OMP_", "GOMP_"))}
    env.update(extra, OMP_DISPLAY_ENV="VERBOSE")
    proc = subprocess.run([sys.executable, "-c", ENTRY_THEN_TORCH], env=env, capture_output=True,
                          text=True, timeout=120, check=True)
    lines = [line.strip() for line in proc.stderr.splitlines() if "GOMP_SPINCOUNT" in line]
    if not lines:
        pytest.skip("torch's OpenMP runtime is not libgomp (no GOMP_SPINCOUNT in OMP_DISPLAY_ENV)")
    return proc.stdout, lines[0]


def test_console_entry_applies_settings_before_torch_loads_openmp() -> None:
    stdout, spincount = _openmp_seen_by_torch({})
    assert "torch imported by the entry: False" in stdout
    assert spincount == "GOMP_SPINCOUNT = '30000'"  # libgomp's default is 300000


def test_console_entry_keeps_the_users_wait_policy() -> None:
    _, spincount = _openmp_seen_by_torch({"OMP_WAIT_POLICY": "PASSIVE"})
    assert spincount == "GOMP_SPINCOUNT = '0'"  # PASSIVE: waiting threads sleep at once
