"""The separator's two overlapping stages: the network in a worker thread, everything else on
the calling thread; the same numbers, bounded memory, failures and interruptions as before."""

from __future__ import annotations

import threading
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
import torch

from cumx_cli.engine.config import InferenceConfig
from cumx_cli.engine.errors import AudioIOError, CumxError
from cumx_cli.engine.inference.chunking import ChunkPlan, OverlapAdd
from cumx_cli.engine.inference.inputs import InputFile
from cumx_cli.engine.inference.outputs import OutputSpec
from cumx_cli.engine.inference.pipeline import TrackResult, separate_files
from cumx_cli.engine.inference.separator import Separator
from tests.conftest import RATE, music, random_model, tiny_config

CONFIG = InferenceConfig(chunk_seconds=0.6, overlap_seconds=0.1)


def waves(count: int = 2, seconds: float = 2.0) -> torch.Tensor:
    return torch.from_numpy(np.stack([music(seconds, seed=k + 1).T for k in range(count)]))


class Recorder:
    """A track job that records what happens to it, and on which thread."""

    def __init__(self, waveform: torch.Tensor, plan: ChunkPlan, log: list[tuple[str, int, int]],
                 fail_at: int | None = None, raise_at: int | None = None) -> None:
        self.waveform, self.plan, self.log = waveform, plan, log
        self.failed = False
        self.ola = OverlapAdd(plan)
        self.outputs: list[torch.Tensor] = []
        self.threads: set[str] = set()
        self.fail_at, self.raise_at = fail_at, raise_at
        self.error: CumxError | None = None

    def read_chunk(self, index: int) -> torch.Tensor:
        self.threads.add(threading.current_thread().name)
        self.log.append(("read", id(self), index))
        start = self.plan.starts[index]
        return self.waveform[..., start : start + self.plan.size]

    def add_output(self, index: int, output: torch.Tensor) -> None:
        self.threads.add(threading.current_thread().name)
        self.log.append(("out", id(self), index))
        if index == self.raise_at:
            raise KeyboardInterrupt
        if index == self.fail_at:
            raise AudioIOError("disk full")
        self.outputs.append(self.ola.add(output))

    def fail(self, error: CumxError) -> None:
        self.threads.add(threading.current_thread().name)
        self.failed, self.error = True, error


@pytest.mark.parametrize("batch_size", [1, 3])
def test_overlap_gives_exactly_the_sequential_numbers(batch_size: int) -> None:
    model = random_model(tiny_config())
    x = waves()
    config = InferenceConfig(chunk_seconds=0.6, overlap_seconds=0.1, batch_size=batch_size)
    on = Separator(model, config, overlap=True).separate(x)
    off = Separator(model, config, overlap=False).separate(x)
    assert torch.equal(on, off)


def test_network_runs_in_a_worker_and_the_tracks_only_on_the_calling_thread() -> None:
    model = random_model(tiny_config())
    sep = Separator(model, CONFIG)
    forward_threads: set[str] = set()
    model.register_forward_hook(lambda *_: forward_threads.add(threading.current_thread().name))
    log: list[tuple[str, int, int]] = []
    jobs = [Recorder(w, sep.plan(w.shape[-1]), log) for w in waves()]
    sep.run(jobs)
    assert forward_threads and all(name.startswith("cumx-network") for name in forward_threads)
    for job in jobs:
        assert job.threads == {threading.current_thread().name}
        assert len(job.outputs) == len(job.plan)


@pytest.mark.parametrize(("overlap", "batch_size"), [(False, 1), (False, 2), (True, 1), (True, 2)])
def test_at_most_two_batches_are_in_flight(overlap: bool, batch_size: int) -> None:
    """Chunks read but not yet delivered: one batch sequentially, two with the overlap (one in
    the network, one being delivered), however many chunks the tracks have."""
    model = random_model(tiny_config())
    config = InferenceConfig(chunk_seconds=0.6, overlap_seconds=0.1, batch_size=batch_size)
    sep = Separator(model, config, overlap=overlap)
    log: list[tuple[str, int, int]] = []
    jobs = [Recorder(w, sep.plan(w.shape[-1]), log) for w in waves(3)]
    sep.run(jobs)
    outstanding, most = 0, 0
    for kind, _, _ in log:
        outstanding += 1 if kind == "read" else -1
        most = max(most, outstanding)
    assert most == (2 if overlap else 1) * batch_size
    assert sum(kind == "out" for kind, _, _ in log) == sum(len(j.plan) for j in jobs)


def test_outputs_are_delivered_in_the_order_chunks_were_read() -> None:
    model = random_model(tiny_config())
    sep = Separator(model, InferenceConfig(chunk_seconds=0.6, overlap_seconds=0.1, batch_size=2))
    log: list[tuple[str, int, int]] = []
    sep.run([Recorder(w, sep.plan(w.shape[-1]), log) for w in waves(3)])
    reads = [(job, i) for kind, job, i in log if kind == "read"]
    outs = [(job, i) for kind, job, i in log if kind == "out"]
    assert outs == reads


def test_a_track_failing_while_its_next_chunks_are_in_the_network_gets_no_more_outputs() -> None:
    model = random_model(tiny_config())
    sep = Separator(model, CONFIG)
    log: list[tuple[str, int, int]] = []
    x = waves()
    bad = Recorder(x[0], sep.plan(x.shape[-1]), log, fail_at=1)
    good = Recorder(x[1], sep.plan(x.shape[-1]), log)
    sep.run([bad, good])
    assert bad.failed and str(bad.error) == "disk full"
    assert [i for kind, job, i in log if kind == "out" and job == id(bad)] == [0, 1]
    assert len(good.outputs) == len(good.plan)
    whole = Separator(model, CONFIG, overlap=False).separate(x[1:])
    assert torch.equal(torch.cat(good.outputs, dim=-1), whole[0])


def test_an_interruption_leaves_no_network_thread_behind() -> None:
    model = random_model(tiny_config())
    sep = Separator(model, CONFIG)
    log: list[tuple[str, int, int]] = []
    x = waves()
    with pytest.raises(KeyboardInterrupt):
        sep.run([Recorder(w, sep.plan(x.shape[-1]), log, raise_at=1) for w in x])
    assert not [t for t in threading.enumerate() if t.name.startswith("cumx-network")]
    assert sum(kind == "out" for kind, _, _ in log) == 2  # chunk 0, then the raising chunk 1


def test_a_network_error_reaches_the_caller() -> None:
    model = random_model(tiny_config())
    sep = Separator(model, CONFIG)

    def broken(*_: object) -> None:
        raise RuntimeError("out of memory")

    model.register_forward_hook(broken)
    with pytest.raises(RuntimeError, match="out of memory"):
        sep.separate(waves(1))
    assert not [t for t in threading.enumerate() if t.name.startswith("cumx-network")]


def test_a_single_chunk_track_is_passed_through_overlap_add_unchanged() -> None:
    plan = ChunkPlan(length=5, size=5, starts=(0,))
    out = torch.arange(20.0).view(2, 2, 5)
    ola = OverlapAdd(plan)
    assert ola.add(out) is out
    assert ola.emitted == 5


class EventLog:
    """SeparateEvents that record their calls, and on which thread."""

    def __init__(self) -> None:
        self.calls: list[tuple[str, str, str]] = []
        self.threads: set[str] = set()

    def _add(self, kind: str, path: Path, detail: str = "") -> None:
        self.threads.add(threading.current_thread().name)
        self.calls.append((kind, path.name, detail))

    def track_started(self, path: Path, num_chunks: int) -> None:
        self._add("started", path, str(num_chunks))

    def chunk_done(self, path: Path) -> None:
        self._add("chunk", path)

    def track_finished(self, result: TrackResult) -> None:
        self._add("finished", result.input, result.status)

    def track_warning(self, path: Path, message: str) -> None:
        self._add("warning", path, message)


@pytest.mark.parametrize("batch_size", [1, 2])
def test_folder_events_come_in_the_order_of_a_run_without_overlap(
        tmp_path: Path, batch_size: int) -> None:
    """Files of 1-3 chunks, a missing one between them, and one whose stems exist (skipped):
    the overlap changes neither the events, nor their order, nor the stems."""
    model = random_model(tiny_config())
    folder = tmp_path / "in"
    folder.mkdir()
    for k, seconds in enumerate([1.5, 0.5, 1.0, 0.4]):
        sf.write(folder / f"t{k}.wav", music(seconds, seed=k), RATE, subtype="PCM_16")
    items = [InputFile(folder / name, Path(name).stem)
             for name in ("t0.wav", "t1.wav", "gone.wav", "t2.wav", "t3.wav")]
    config = InferenceConfig(chunk_seconds=0.6, overlap_seconds=0.1, batch_size=batch_size)
    logs, stems = [], []
    for overlap in (False, True):
        out = tmp_path / f"out_{overlap}"
        for name in model.sources:  # t3's stems exist already: skipped
            (out / "t3").mkdir(parents=True, exist_ok=True)
            sf.write(out / "t3" / f"{name}.wav", np.zeros((10, 2)), RATE)
        log = EventLog()
        sep = Separator(model, config, overlap=overlap)
        results = separate_files(sep, items, OutputSpec(outdir=out, skip_existing=True), log)
        assert [r.status for r in results] == ["ok", "ok", "error", "ok", "skipped"]
        assert log.threads == {threading.current_thread().name}
        logs.append(log.calls)
        stems.append([sf.read(out / f"t{k}" / f"{model.sources[0]}.wav")[0] for k in range(3)])
    assert logs[1] == logs[0]
    assert [c[0] for c in logs[0]].count("chunk") == 3 + 1 + 2
    for a, b in zip(*stems, strict=True):
        assert np.array_equal(a, b)
