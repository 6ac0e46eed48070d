"""Plain helpers of the CLI tests: run ``cumx`` in process, read what it printed and wrote.

Fixtures live in ``tests/cli/conftest.py``; this module holds functions and constants only, so
that test modules share them without importing one another.
"""

from __future__ import annotations

import json
from pathlib import Path

from typer.testing import CliRunner, Result

from cumx_cli.app import app

#: The sources of the tiny random model, in the order its stems are reported.
SOURCES = ("bass", "drums", "vocals", "other")
#: The keys of every ``separate --json`` line.
JSON_KEYS = {"input", "outputs", "seconds", "status", "error"}
#: ``train`` options for a model and a run small enough for a test.
TINY = ["--hidden-size", "8", "--nb-layers", "1", "--seq-dur", "1", "--samples-per-track", "2",
        "--batch-size", "2", "--device", "cpu"]


def cumx(*args: object) -> Result:
    return CliRunner().invoke(app, [str(a) for a in args])


def show(result: Result) -> str:
    """Everything the command printed, for assertion messages."""
    return f"exit {result.exit_code}\n--- stdout\n{result.stdout}--- stderr\n{result.stderr}"


def error_lines(result: Result) -> list[str]:
    return [line for line in result.stderr.splitlines() if line.startswith("error:")]


def json_lines(result: Result) -> list[dict]:
    """The ``--json`` objects on stdout, each checked to have exactly :data:`JSON_KEYS`."""
    objs = [json.loads(line) for line in result.stdout.splitlines()]
    for obj in objs:
        assert isinstance(obj, dict) and set(obj) == JSON_KEYS, obj
    return objs


def stem_paths(out: Path, track: str, ext: str = "wav",
               sources: tuple[str, ...] = SOURCES) -> dict[str, Path]:
    return {s: out / track / f"{s}.{ext}" for s in sources}


def files_under(root: Path) -> set[str]:
    """Every file below ``root`` (hidden ones included), as relative posix paths."""
    return {p.relative_to(root).as_posix() for p in root.rglob("*") if p.is_file()}


def leftovers(root: Path) -> list[Path]:
    """Hidden scratch/temporary files that must never survive a run."""
    if not root.exists():
        return []
    return sorted([*root.rglob(".*.part"), *root.rglob(".*.raw")])
