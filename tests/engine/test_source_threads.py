"""The source networks side by side on CPU threads: the same masks, and the threads as promised."""

from __future__ import annotations

import gc
import threading
from collections.abc import Iterator

import pytest
import torch

from cumx_cli.engine.config import InferenceConfig
from cumx_cli.engine.dsp import wiener as wiener_mod
from cumx_cli.engine.inference.separator import Separator
from cumx_cli.engine.model.threads import SourceThreads, intra_op_threads
from tests.conftest import random_model, tiny_config


@pytest.fixture
def two_threads() -> Iterator[None]:
    """torch with two intra-op threads (CI has two cores; the count is what matters here)."""
    before = torch.get_num_threads()
    torch.set_num_threads(2)
    yield
    torch.set_num_threads(before)


@pytest.mark.parametrize("bridge", [True, False])
def test_masks_equal_those_of_the_sources_in_turn(bridge: bool, two_threads: None) -> None:
    config = tiny_config(sources=("bass", "drums", "other", "vocals"), bridge=bridge, n_fft=256,
                         hop_length=64, max_bin=100, num_layers=3)
    model = random_model(config).eval()
    mag = torch.rand(2, 2, 129, 300)
    pool = SourceThreads(2, 1)
    with torch.inference_mode():
        in_turn, side_by_side = model(mag), model(mag, pool)
    pool.close()
    torch.testing.assert_close(side_by_side, in_turn, rtol=1e-6, atol=1e-7)
    assert side_by_side.shape == (2, 4, 2, 129, 300)


def test_each_worker_runs_torch_with_its_share_and_the_others_keep_theirs(two_threads: None) -> None:
    pool = SourceThreads(2, 1)
    with torch.no_grad():
        counts = pool.map(lambda _: torch.get_num_threads(), range(4))
    # The first torch call of a thread sets its count from the process default: it must not
    # undo the worker's own, nor leave the worker's count as the default for new threads.
    seen: list[int] = []
    fresh = threading.Thread(target=lambda: seen.append(torch.get_num_threads()))
    fresh.start()
    fresh.join()
    pool.close()
    assert counts == [1, 1, 1, 1]
    assert torch.get_num_threads() == 2
    assert seen == [2]


def test_items_run_side_by_side_and_come_back_in_order(two_threads: None) -> None:
    pool = SourceThreads(2, 1)
    both = threading.Barrier(2, timeout=30)  # broken unless two items run at the same time

    def item(k: int) -> tuple[int, str]:
        both.wait()
        return k, threading.current_thread().name

    with torch.no_grad():
        out = pool.map(item, range(4))
    pool.close()
    assert [k for k, _ in out] == [0, 1, 2, 3]
    assert {name for _, name in out} == {"cumx-source_0", "cumx-source_1"}


def test_grad_mode_is_the_callers_and_recording_gradients_is_refused(two_threads: None) -> None:
    pool = SourceThreads(2, 1)
    with pytest.raises(RuntimeError, match="inference only"):
        pool.map(lambda _: None, range(2))
    with torch.inference_mode():
        assert pool.map(lambda _: (torch.is_inference_mode_enabled(), torch.is_grad_enabled()),
                        range(2)) == [(True, False)] * 2
    with torch.no_grad():
        assert pool.map(lambda _: (torch.is_inference_mode_enabled(), torch.is_grad_enabled()),
                        range(2)) == [(False, False)] * 2
    pool.close()


def test_an_error_is_raised_once_every_item_is_done(two_threads: None) -> None:
    pool = SourceThreads(2, 1)
    finished: list[int] = []
    gate = threading.Event()

    def item(k: int) -> int:
        if k == 0:
            raise ValueError("item 0 failed")
        gate.wait(30)
        finished.append(k)
        return k

    def release() -> None:
        gate.set()

    timer = threading.Timer(0.2, release)
    timer.start()
    with torch.no_grad(), pytest.raises(ValueError, match="item 0 failed"):
        pool.map(item, range(3))
    timer.join()
    assert sorted(finished) == [1, 2]  # none still running after map raised
    with torch.no_grad():
        assert pool.map(lambda k: k * 2, [1, 2]) == [2, 4]  # the pool still works
    pool.close()


def test_a_pool_nobody_holds_ends_its_threads(two_threads: None) -> None:
    pool = SourceThreads(2, 1)
    threads = list(pool._threads)
    del pool
    gc.collect()
    for thread in threads:
        thread.join(timeout=30)
        assert not thread.is_alive()


def test_pools_only_where_they_help(two_threads: None) -> None:
    assert SourceThreads.for_device(torch.device("meta"), 4) is None
    assert SourceThreads.for_device(torch.device("cpu"), 1) is None
    pool = SourceThreads.for_device(torch.device("cpu"), 4)
    assert pool is not None and (pool.workers, pool.threads_each) == (2, 1)
    pool.close()
    torch.set_num_threads(1)
    assert SourceThreads.for_device(torch.device("cpu"), 4) is None
    with pytest.raises(ValueError, match="at least one worker"):
        SourceThreads(0, 1)


def test_the_separator_runs_the_sources_on_threads_on_a_cpu(two_threads: None) -> None:
    config = tiny_config(sources=("bass", "drums", "other", "vocals"), n_fft=256, hop_length=64,
                         max_bin=100)
    model = random_model(config)
    separator = Separator(model, InferenceConfig(device="cpu", niter=1))
    wave = torch.randn(1, 2, 20000)
    out = separator.process(wave)
    pool = separator._threads()
    assert pool is not None and pool.workers == 2
    separator._source_threads = None
    separator._threads = lambda: None  # type: ignore[method-assign]
    torch.testing.assert_close(out, separator.process(wave), rtol=1e-5, atol=1e-6)


def test_intra_op_threads_sets_the_count_for_the_block_and_restores_it(two_threads: None) -> None:
    seen = []
    with intra_op_threads(1):
        seen.append(torch.get_num_threads())
        with pytest.raises(RuntimeError, match="inside"):
            with intra_op_threads(2):
                seen.append(torch.get_num_threads())
                raise RuntimeError("inside")
        seen.append(torch.get_num_threads())
    assert seen == [1, 2, 1] and torch.get_num_threads() == 2
    with pytest.raises(ValueError, match="at least one thread"):
        with intra_op_threads(0):
            pass


@pytest.mark.parametrize("overlap", [True, False])
@pytest.mark.parametrize("bridge", [True, False])
def test_the_filter_takes_half_the_cores_while_the_next_batch_is_in_the_network(
        overlap: bool, bridge: bool, two_threads: None) -> None:
    """Every batch but the last is filtered while the next one is in the network (on the
    source threads, which hold both cores): with one thread. The last, and every batch of a run
    without the overlap, on the idle source threads: the Wiener windows (of the Open-Unmix
    family) and the sources' inverse transforms side by side there. The stems equal those of a
    run in turn."""
    config = tiny_config(sources=("bass", "drums", "other", "vocals"), n_fft=256, hop_length=64,
                         max_bin=100, bridge=bridge)
    model = random_model(config)
    inference = InferenceConfig(device="cpu", niter=1, chunk_seconds=0.5, overlap_seconds=0.1,
                                wiener_window=None if bridge else 100)
    separator = Separator(model, inference, overlap=overlap)
    calls: list[tuple[int, bool]] = []
    filter_batch = separator._filter

    def recording(stage, pool=None):  # type: ignore[no-untyped-def]
        calls.append((torch.get_num_threads(), pool is not None))
        return filter_batch(stage, pool)

    separator._filter = recording  # type: ignore[method-assign]
    where: list[tuple[int, str, str]] = []  # (batch, what, thread): inverse transforms, windows
    inverse, core = separator.stft.inverse, wiener_mod._wiener_em

    def recorded_inverse(*args, **kwargs):  # type: ignore[no-untyped-def]
        where.append((len(calls), "inverse", threading.current_thread().name))
        return inverse(*args, **kwargs)

    def recorded_core(*args, **kwargs):  # type: ignore[no-untyped-def]
        where.append((len(calls), "window", threading.current_thread().name))
        return core(*args, **kwargs)

    separator.stft.inverse = recorded_inverse  # type: ignore[method-assign]
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(wiener_mod, "_wiener_em", recorded_core)
        wave = torch.randn(1, 2, 40000)
        out = separator.separate(wave)
    batches = len(separator.plan(40000))
    assert batches >= 3
    assert calls == ([(1, False)] * (batches - 1) + [(2, True)] if overlap else [(2, True)] * batches)
    assert torch.get_num_threads() == 2
    pooled = {batches} if overlap else set(range(1, batches + 1))
    sources = {"cumx-source_0", "cumx-source_1"}
    for batch in range(1, batches + 1):
        inverses = {name for b, what, name in where if b == batch and what == "inverse"}
        windows = {name for b, what, name in where if b == batch and what == "window"}
        # on the pool's threads (which of them takes an item is up to the scheduler)
        assert inverses <= sources if batch in pooled else inverses == {"MainThread"}
        # an X-UMX chunk is one window, filtered here; Open-Unmix windows side by side
        if batch in pooled and not bridge:
            assert windows <= sources
        else:
            assert windows == {"MainThread"}
    windows_each = 1 if bridge else -(-inference_frames(separator) // 100)
    assert windows_each > 1 or bridge
    for batch in range(1, batches + 1):  # every source and window once
        assert sum(b == batch and what == "inverse" for b, what, _ in where) == 4
        assert sum(b == batch and what == "window" for b, what, _ in where) == windows_each
    in_turn = Separator(model, inference, overlap=False)
    in_turn._threads = lambda: None  # type: ignore[method-assign]
    torch.testing.assert_close(out, in_turn.separate(wave), rtol=1e-5, atol=1e-6)


def inference_frames(separator: Separator) -> int:
    """STFT frames of one chunk."""
    return 1 + separator.plan(40000).size // separator.stft.hop_length
