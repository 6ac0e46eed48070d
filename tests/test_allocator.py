"""The ``cumx`` process's glibc settings: big buffers of worker threads come from the main heap
and are reused, instead of a fresh mmap (and a page fault per 4 KB) every time."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest

pytestmark = pytest.mark.skipif(not sys.platform.startswith("linux"), reason="glibc only")

# A 100 MB tensor made on a worker thread, as the network's masks and eval's read-ahead are:
# prints whether its memory lies in the process's main heap ([heap] in /proc/self/maps).
PROBE = """
import sys, threading
import cumx_cli.app
if sys.argv[1] == "tuned":
    cumx_cli.app._tune_allocator()
import torch
kept = []
worker = threading.Thread(target=lambda: kept.append(torch.empty(100 << 18)))
worker.start()
worker.join()
heap = next(line for line in open("/proc/self/maps") if line.rstrip().endswith("[heap]"))
low, high = (int(x, 16) for x in heap.split()[0].split("-"))
print("in main heap:", low <= kept[0].data_ptr() < high)
"""


def _probe(mode: str, **env: str) -> str:
    proc = subprocess.run([sys.executable, "-c", PROBE, mode], capture_output=True, text=True,
                          timeout=120, env={**os.environ, **env})
    assert proc.returncode == 0, proc.stderr
    return proc.stdout.strip()


def test_a_worker_threads_big_buffer_comes_from_the_main_heap(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("MALLOC_ARENA_MAX", raising=False)
    assert _probe("tuned") == "in main heap: True"
    assert _probe("plain") == "in main heap: False"  # glibc's default: its own arena, an mmap


def test_the_users_arena_setting_wins(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("MALLOC_ARENA_MAX", raising=False)
    assert _probe("tuned", MALLOC_ARENA_MAX="8") == "in main heap: False"
