"""The README tour's slowest examples: the training demo and the development block.

They run in a sandbox of their own (tests/readme_tour.py), in a module of their own, so that
pytest-xdist (``-n 2``, one module per worker) runs them beside the rest of the tour.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.readme_tour import FOUR, ROOT, block, make_sandbox, run_block, stems

#: Minutes long: scheduled before the other modules (tests/conftest.py).
SCHEDULE_FIRST = True


@pytest.fixture(scope="module")
def sandbox(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Path, dict[str, str]]]:
    with make_sandbox(tmp_path_factory.mktemp("tour-training")) as made:
        yield made


@pytest.mark.slow
def test_training_without_musdb(sandbox: tuple[Path, dict[str, str]]) -> None:
    root, env = sandbox
    run_block(block("cumx train --synthetic-data"), root, env)
    metrics = [json.loads(line) for line in (root / "demo-run" / "metrics.jsonl").read_text().splitlines()]
    epochs = int(re.search(r"--epochs (\d+)", block("cumx train --synthetic-data")).group(1))
    assert len(metrics) == epochs
    assert stems(root / "demo-stems" / "mixture") == FOUR
    summary = json.loads((root / "demo-eval" / "summary.json").read_text())
    assert summary  # scores for the synthetic test tracks
    assert (root / "demo-eval" / "summary.txt").is_file()


@pytest.mark.slow
def test_development_block(sandbox: tuple[Path, dict[str, str]]) -> None:
    """The install, test and lint lines are .ci/run's own steps (checked above); the benchmarks
    run here with the quick flags the README shows."""
    root, env = sandbox
    text = block('pip install -e ".[dev]"\n')
    lines = [line for line in text.splitlines() if line.strip()]
    assert lines[0] == 'pip install -e ".[dev]"' and lines[1].startswith("python -m pytest -q")
    assert lines[2].startswith('python -m pytest -q -m "not slow"')
    assert lines[3].startswith("ruff check . && mypy")
    ci = (ROOT / ".ci" / "run").read_text()
    assert "ruff check ." in ci and "\nmypy" in ci
    benchmarks = lines[4:]
    assert all(line.startswith("python benchmarks/") for line in benchmarks)
    out = run_block("\n".join(benchmarks), root, env)
    assert "speed: 0.25 min stereo" in out and "chunk" in out
    assert "speed-up:" in out and "NaN frames in the same places: True" in out
    assert "ratio m4a / wav" in out and "stems identical: True" in out
