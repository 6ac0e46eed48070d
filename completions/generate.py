"""Regenerate the shell completion scripts from the Typer app: python completions/generate.py

The scripts ask ``cumx`` itself for completions at run time (``_CUMX_COMPLETE``), so they follow
new commands and options; tests/cli/test_completions.py fails when a checked-in file differs from
what the app generates now.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

SHELLS = {"bash": "cumx.bash", "zsh": "cumx.zsh", "fish": "cumx.fish"}
HERE = Path(__file__).resolve().parent


def script(shell: str) -> str:
    """What ``cumx --show-completion SHELL`` prints (run in a fresh process, as a user would)."""
    env = {**os.environ, "_TYPER_COMPLETE_TEST_DISABLE_SHELL_DETECTION": "1"}
    code = "from cumx_cli.app import app; app(prog_name='cumx')"
    result = subprocess.run([sys.executable, "-c", code, "--show-completion", shell], env=env,
                            capture_output=True, text=True, timeout=120)
    if result.returncode != 0:
        raise RuntimeError(f"cumx --show-completion {shell} failed: {result.stderr}")
    return result.stdout


def main() -> None:
    for shell, name in SHELLS.items():
        (HERE / name).write_text(script(shell))
        print(f"wrote completions/{name}")


if __name__ == "__main__":
    main()
