"""The checked-in completion scripts are what the app generates now, and they work."""

from __future__ import annotations

import importlib.util
import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
_spec = importlib.util.spec_from_file_location("gen_completions", ROOT / "completions" / "generate.py")
gen = importlib.util.module_from_spec(_spec)  # type: ignore[arg-type]
_spec.loader.exec_module(gen)  # type: ignore[union-attr]


@pytest.mark.parametrize("shell", sorted(gen.SHELLS))
def test_completion_scripts_are_current(shell: str) -> None:
    checked_in = (ROOT / "completions" / gen.SHELLS[shell]).read_text()
    assert checked_in == gen.script(shell), (
        f"completions/{gen.SHELLS[shell]} is stale: run python completions/generate.py")
    assert "_CUMX_COMPLETE" in checked_in


def _complete(words: str, cword: int) -> list[str]:
    env = {**os.environ, "_CUMX_COMPLETE": "complete_bash", "COMP_WORDS": words,
           "COMP_CWORD": str(cword)}
    out = subprocess.run([sys.executable, "-c", "from cumx_cli.app import app; app(prog_name='cumx')"],
                         env=env, capture_output=True, text=True, timeout=60)
    return out.stdout.split()


def test_the_app_completes_commands_and_options() -> None:
    assert "separate" in _complete("cumx sep", 1)
    assert {"train", "download-weights"} <= set(_complete("cumx ", 1))
    assert "--skip-existing" in _complete("cumx separate --ski", 2)
