"""The ``cumx`` entry points: --version, --help, ``python -m cumx_cli``."""

from __future__ import annotations

import subprocess
import sys

import pytest
from typer.testing import CliRunner

from cumx_cli import __version__
from cumx_cli.app import app


def test_version() -> None:
    result = CliRunner().invoke(app, ["--version"])
    assert result.exit_code == 0, result.output
    assert result.stdout == f"cumx {__version__}\n"


@pytest.mark.parametrize("args", [["--help"], ["-h"]])
def test_help(args: list[str]) -> None:
    result = CliRunner().invoke(app, args)
    assert result.exit_code == 0, result.output
    assert "separate" in result.stdout and "--version" in result.stdout


def test_separate_help_lists_the_options() -> None:
    result = CliRunner().invoke(app, ["separate", "--help"])
    assert result.exit_code == 0, result.output
    for option in ("--output", "--model", "--filename", "--stems", "--format", "--dtype",
                   "--sample-rate", "--skip-existing", "--json"):
        assert option in result.stdout, option


def test_verbose_and_quiet_are_root_flags() -> None:
    """``cumx -v COMMAND`` / ``cumx -q COMMAND``; the per-command spellings still parse but are
    hidden aliases (kept for one release)."""
    root = CliRunner().invoke(app, ["--help"])
    assert "--verbose" in root.stdout and "--quiet" in root.stdout, root.output
    for command in ("separate", "eval", "train"):
        result = CliRunner().invoke(app, [command, "--help"])
        assert result.exit_code == 0, result.output
        assert "--verbose" not in result.stdout and "--quiet" not in result.stdout, command


def test_python_dash_m() -> None:
    proc = subprocess.run([sys.executable, "-m", "cumx_cli", "--version"],
                          capture_output=True, text=True, timeout=60)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout == f"cumx {__version__}\n"
    assert proc.stderr == ""
