"""benchmarks/gpu_check.py: its table on the CPU with tiny sizes (CI has no GPU), its time
budget, and the rule that picks the CUDA defaults from its rows."""

from __future__ import annotations

import importlib.util
import json
import re
import sys
from pathlib import Path
from types import ModuleType

import pytest

ROOT = Path(__file__).resolve().parents[1]
HEADERS = ["check", "input", "chunk (s)", "batch", "RTF file", "RTF in memory", "samples/s",
           "peak GPU MiB", "wall (s)", "status"]
KEYS = ["check", "input", "chunk_seconds", "batch", "rtf_file", "rtf_memory",
        "samples_per_second", "peak_gpu_mib", "seconds", "status"]
#: The quick check's rows: (check, input, chunk, batch), in the order they run.
QUICK_ROWS = [
    ("gpu tests", f"pytest -m gpu {ROOT / 'tests/engine/test_cuda.py'}", None, None),
    ("train fp32", "2 x 1 s", None, 2), ("train bf16", "2 x 1 s", None, 2),
    ("bsseval (fast)", "1 s, 4 sources, 32 taps", None, None),
    # (chunk, batch) by priority: 2 s / 2, then 2 s / 1 and 1.5 s / 2, then 1.5 s / 1
    ("separate", "3 s", 2.0, 2), ("separate", "5 s", 2.0, 2),
    ("separate", "3 s", 2.0, 1), ("separate", "5 s", 2.0, 1),
    ("separate", "3 s", 1.5, 2), ("separate", "5 s", 1.5, 2),
    ("separate", "3 s", 1.5, 1), ("separate", "5 s", 1.5, 1),
]


@pytest.fixture(scope="module")
def gpu_check() -> ModuleType:
    spec = importlib.util.spec_from_file_location("gpu_check", ROOT / "benchmarks" / "gpu_check.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules["gpu_check"] = module  # dataclasses look their module up
    spec.loader.exec_module(module)
    return module


def _run(gpu_check: ModuleType, tmp_path: Path, *extra: str) -> tuple[int, str, dict]:  # type: ignore[type-arg]
    code = gpu_check.main(["--device", "cpu", "--quick", "--tests",
                           str(ROOT / "tests" / "engine" / "test_cuda.py"),
                           "--out", str(tmp_path / "t.md"), "--json", str(tmp_path / "t.json"),
                           *extra])
    return code, (tmp_path / "t.md").read_text(), json.loads((tmp_path / "t.json").read_text())


def _table(markdown: str) -> list[list[str]]:
    lines = [line for line in markdown.splitlines() if line.startswith("|")]
    return [[cell.strip() for cell in line.strip("|").split("|")] for line in lines]


@pytest.mark.slow
def test_the_quick_check_fills_every_row_on_the_cpu(gpu_check: ModuleType, tmp_path: Path,
                                                     capsys: pytest.CaptureFixture[str]) -> None:
    code, markdown, data = _run(gpu_check, tmp_path)
    assert code == 0, markdown
    assert capsys.readouterr().out == markdown  # printed and written: the same table
    assert data["columns"] == KEYS
    rows = data["rows"]
    assert [(r["check"], r["input"], r["chunk_seconds"], r["batch"]) for r in rows] == QUICK_ROWS
    table = _table(markdown)
    assert table[0] == HEADERS and set(table[1]) == {"---"}
    assert all(len(line) == len(HEADERS) for line in table) and len(table) == 2 + len(rows)

    tests, fp32, bf16, bsseval, *separate = rows
    assert re.fullmatch(r"\d+ skipped", tests["status"])  # marked gpu, skipped without CUDA
    assert fp32["samples_per_second"] > 0 and fp32["status"].startswith("ok: 1 steps, loss ")
    assert bf16["status"] == "skipped: bf16 autocast needs CUDA (cumx train --amp bf16)"
    assert bsseval["rtf_memory"] > 0 and bsseval["status"].startswith("ok: median SDR ")
    for row in separate:
        assert row["status"] == "ok" and row["rtf_file"] > 0 and row["rtf_memory"] > 0
        assert row["peak_gpu_mib"] is None and row["audio_seconds"] == float(row["input"][0])
        line = table[2 + rows.index(row)]
        assert line[4] == f"{row['rtf_file']:.4f}" and line[7] == ""  # no GPU memory on the CPU
    assert not any("suggested CUDA default" in note for note in data["notes"])


def test_a_spent_budget_skips_every_row_with_a_note(gpu_check: ModuleType, tmp_path: Path) -> None:
    code, markdown, data = _run(gpu_check, tmp_path, "--budget", "0")
    assert code == 0
    statuses = [r["status"] for r in data["rows"]]
    assert len(statuses) == len(QUICK_ROWS)
    budget = [s for s in statuses if "budget" in s]
    assert len(budget) == len(QUICK_ROWS) - 1  # all but bf16 on the CPU, skipped for that
    assert all(s.startswith("skipped: about ") and s.endswith(" s would pass the 0 s budget "
                                                              "(0 s left)") for s in budget)
    assert all(r["seconds"] is None for r in data["rows"])
    assert "skipped: about 0 s would pass the 0 s budget (0 s left)" in markdown


def test_cuda_on_a_machine_without_it_is_one_line_and_exit_2(
        gpu_check: ModuleType, capsys: pytest.CaptureFixture[str],
        monkeypatch: pytest.MonkeyPatch) -> None:
    import torch

    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    with pytest.raises(SystemExit) as exit_info:
        gpu_check.main(["--device", "cuda", "--quick"])
    assert exit_info.value.code == 2
    err = capsys.readouterr().err.splitlines()
    assert err[-1] == ("gpu_check.py: error: --device cuda was asked for, but CUDA is not "
                       "available here; use --device cpu")


def _row(gpu_check: ModuleType, input_: str, seconds: float, chunk: float, batch: int,
         rtf: float, peak: float) -> object:
    return gpu_check.Row("separate", input_, chunk_seconds=chunk, batch=batch, rtf_file=rtf,
                         peak_gpu_mib=peak, audio_seconds=seconds)


def test_the_default_rule_fastest_that_fits_then_least_memory_then_longer_chunk(
        gpu_check: ModuleType) -> None:
    def suggest(*rows: tuple[float, int, float, float], cap: float = 4096.0) -> object:
        made = [_row(gpu_check, "20 min", 1200.0, *r) for r in rows]
        made.append(_row(gpu_check, "3 min", 180.0, 60.0, 1, 0.001, 10.0))  # shorter: ignored
        return gpu_check.suggest_default(made, cap)

    # batch 16 is fastest but needs more than the cap; of the two that fit, 30 s / 4 is faster
    assert suggest((30, 1, 0.020, 900), (30, 4, 0.010, 2500), (30, 16, 0.008, 9000)) == (30, 4)
    # within 5 % of the fastest counts as as fast: then the one that needs less memory
    assert suggest((30, 4, 0.0100, 2500), (30, 1, 0.0104, 900)) == (30, 1)
    assert suggest((30, 4, 0.0100, 2500), (30, 1, 0.0106, 900)) == (30, 4)
    # the same memory: the longer chunk (closer to whole-track separation)
    assert suggest((30, 2, 0.0100, 1000), (60, 1, 0.0100, 1000)) == (60, 1)
    assert suggest((30, 4, 0.01, 5000), cap=4096.0) is None
    assert gpu_check.suggest_default([]) is None


def test_the_pytest_summary_is_read_from_its_last_line(gpu_check: ModuleType) -> None:
    assert gpu_check._pytest_summary("x\n== 1 failed, 5 passed, 2 skipped in 3.1s ==\n", 1) == \
        "1 failed, 5 passed, 2 skipped"
    assert gpu_check._pytest_summary("", 4) == "pytest exit code 4"
