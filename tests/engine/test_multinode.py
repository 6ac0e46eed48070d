"""Training on several machines: two ``torchrun`` agents (``--nnodes 2``, a c10d rendezvous on
127.0.0.1, gloo) train exactly as one machine with two processes does.

Each agent is given its own ``--out`` folder, as two machines without shared storage would be:
only the process of global rank 0 writes, so exactly one of the two folders is created (which one
is the rendezvous' choice: c10d ignores ``--node-rank``).
"""

from __future__ import annotations

import json
import os
import re
import socket
import subprocess
import sys
from pathlib import Path

import pytest

from cumx_cli.engine.config import ModelConfig, TrainConfig
from cumx_cli.engine.training.loop import fit

#: Seconds a launch may take before the test gives up (it takes about 20 s on 2 quiet cores).
TIMEOUT = 300
TRAIN = ["--hidden-size", "8", "--nb-layers", "1", "--seq-dur", "1", "--samples-per-track", "4",
         "--batch-size", "2", "--epochs", "1", "--device", "cpu"]
#: What two launches must agree on, per epoch (not the time it took).
COMPARED = ("epoch", "train_loss", "valid_loss", "valid_sdr", "mixture_sdr", "lr", "best")


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


def _torchrun(*args: str) -> list[str]:
    return [sys.executable, "-m", "torch.distributed.run", *args]


def _train(data: Path, out: Path) -> list[str]:
    return ["-m", "cumx_cli", "train", "--musdb", str(data), "--out", str(out), *TRAIN]


def _run_all(commands: list[list[str]], logs: list[Path], env: dict[str, str]) -> None:
    """Run the commands at once; fail with their logs if one fails or they outlast TIMEOUT."""
    procs = []
    for cmd, log in zip(commands, logs, strict=True):
        with log.open("w") as f:
            procs.append(subprocess.Popen(cmd, env=env, stdout=f, stderr=subprocess.STDOUT))
    try:
        for proc in procs:
            proc.wait(timeout=TIMEOUT)
    except subprocess.TimeoutExpired:
        for proc in procs:
            proc.kill()
            proc.wait()
        pytest.fail(f"the launch did not finish in {TIMEOUT} s:\n{_tails(logs)}")
    codes = [proc.returncode for proc in procs]
    assert codes == [0] * len(procs), f"exit codes {codes}:\n{_tails(logs)}"


def _tails(logs: list[Path]) -> str:
    return "\n".join(f"--- {log.name}\n{log.read_text()[-3000:]}" for log in logs)


def _metrics(run: Path) -> list[dict[str, object]]:
    lines = (run / "metrics.jsonl").read_text().splitlines()
    return [{k: json.loads(line)[k] for k in COMPARED} for line in lines]


def _epoch_lines(log: Path) -> list[str]:
    """The per-epoch summary a process printed, without its time."""
    return [re.sub(r", \d+ s$", "", line) for line in log.read_text().splitlines()
            if line.startswith("epoch ")]


@pytest.mark.slow
def test_two_nodes_train_as_one_node_with_two_processes(synthetic_musdb: Path,
                                                        tmp_path: Path) -> None:
    env = {**os.environ, "OMP_NUM_THREADS": "1", "CUMX_CACHE_DIR": str(tmp_path / "cache")}
    env.pop("CUMX_DEVICE", None)
    one = tmp_path / "one"
    _run_all([_torchrun("--standalone", "--nnodes", "1", "--nproc-per-node", "2",
                        *_train(synthetic_musdb, one))], [tmp_path / "one.log"], env)

    rendezvous = f"127.0.0.1:{_free_port()}"
    outs = [tmp_path / "node0", tmp_path / "node1"]
    logs = [tmp_path / "node0.log", tmp_path / "node1.log"]
    _run_all([_torchrun("--nnodes", "2", "--nproc-per-node", "1", "--node-rank", str(node),
                        "--rdzv-backend", "c10d", "--rdzv-endpoint", rendezvous,
                        "--rdzv-id", "cumx-test", *_train(synthetic_musdb, outs[node]))
              for node in (0, 1)], logs, env)

    written = [out for out in outs if out.exists()]
    assert len(written) == 1, f"run folders written: {written} (only global rank 0 writes)"
    assert _metrics(written[0]) == _metrics(one)
    assert sorted(p.name for p in written[0].iterdir()) == sorted(p.name for p in one.iterdir())
    # Every process reports rank 0's validation, not NaN for the ranks that did not validate.
    reports = [_epoch_lines(log) for log in logs]
    assert len(reports[0]) == 1 and reports[0] == reports[1], reports
    assert "nan" not in reports[0][0]

    # The comparison can fail: one process, which trains on every example itself, differs.
    config = TrainConfig(model=ModelConfig(hidden_size=8, num_layers=1), seq_seconds=1.0,
                         samples_per_track=4, batch_size=2, epochs=1, device="cpu")
    fit(config, synthetic_musdb, tmp_path / "single", cache_dir=tmp_path / "cache")
    assert _metrics(tmp_path / "single")[0]["train_loss"] != _metrics(one)[0]["train_loss"]
