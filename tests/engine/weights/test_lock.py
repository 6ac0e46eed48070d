"""The per-file lock: two processes downloading the same file fetch it once."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

from cumx_cli.engine.weights.cache import WeightsSettings
from tests.engine.weights.helpers import cache_files
from tests.fake_zenodo import ASTEROID, XUMX_FILE, Behaviour, FakeZenodo

_CHILD = """
import sys
from pathlib import Path
from cumx_cli.engine.weights.cache import WeightsSettings
from cumx_cli.engine.weights.download import ensure_weights
from cumx_cli.engine.weights.registry import get_spec
(r,) = ensure_weights(get_spec("xumx"), WeightsSettings(cache_dir=Path(sys.argv[1]), zenodo_url=sys.argv[2]))
print(r.status)
"""


def test_two_processes_download_the_same_file_once(server: FakeZenodo, settings: WeightsSettings) -> None:
    server.behaviour[XUMX_FILE] = Behaviour(delay_per_block=0.004)  # ~1.2 s for the file
    env = {**os.environ, "PYTHONPATH": str(Path(__file__).resolve().parents[2])}
    procs = [subprocess.Popen([sys.executable, "-c", _CHILD, str(settings.cache_root), server.url],
                              stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env)
             for _ in range(2)]
    outputs = [p.communicate(timeout=120) for p in procs]
    assert [p.returncode for p in procs] == [0, 0], outputs
    assert sorted(out.strip() for out, _ in outputs) == ["cached", "downloaded"]
    assert server.file_requests(XUMX_FILE) == [None]
    path = settings.root / "xumx" / XUMX_FILE
    assert path.read_bytes() == ASTEROID
    assert cache_files(settings.root) == [f"xumx/{XUMX_FILE}", f"xumx/{XUMX_FILE}.sha256"]
