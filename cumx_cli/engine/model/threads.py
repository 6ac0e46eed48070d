"""Run the per-source networks side by side on CPU threads, each with its share of the cores.

On a CPU, torch runs one operator at a time with every core, and each step of a BLSTM is too
small to keep even two cores busy: most of it is spent handing work to the OpenMP team and
waiting for it. The four source networks of Open-Unmix (and X-UMX's between its two averages) are
independent, so :class:`SourceThreads` gives each of ``workers`` threads ``cores / workers`` intra-op
threads and one source at a time. Every operator computes the same numbers as before; only
the way the cores are shared changes. On the 2-core machine the full-size network took 12-17%
less time per 26.6 s chunk, and a 3-minute file's whole ``separate`` 5-14% (README "Speed and
memory").
"""

from __future__ import annotations

import queue
import threading
import weakref
from collections.abc import Callable, Iterable, Iterator
from concurrent.futures import Future, wait
from contextlib import contextmanager
from typing import TypeVar, cast

import torch

T = TypeVar("T")
R = TypeVar("R")

_Task = tuple[Callable[[], object], "Future[object]"]


class SourceThreads:
    """A pool of ``workers`` threads, each running torch with ``threads_each`` intra-op threads.

    :meth:`map` runs a function over items in the pool, under the caller's grad mode (it is for
    inference: it refuses to run while gradients are recorded). The threads are daemons and wait
    idle between calls; :meth:`close` ends them.
    """

    def __init__(self, workers: int, threads_each: int) -> None:
        if workers < 1 or threads_each < 1:
            raise ValueError(f"need at least one worker and one thread each, got {workers} x {threads_each}")
        self.workers = workers
        self.threads_each = threads_each
        self._tasks: queue.SimpleQueue[_Task | None] = queue.SimpleQueue()
        ready = threading.Barrier(workers + 1)
        before = torch.get_num_threads()
        # The threads hold the queue, not the pool: a pool nobody holds is collected, and its
        # finalizer ends them.
        self._threads = [threading.Thread(target=_serve, args=(self._tasks, threads_each, ready),
                                          daemon=True, name=f"cumx-source_{k}")
                         for k in range(workers)]
        for thread in self._threads:
            thread.start()
        ready.wait()
        # torch.set_num_threads in a worker also sets the default of threads that start using
        # torch later; put it back (this thread's own count is unchanged: it is ``before``).
        torch.set_num_threads(before)
        self._finalizer = weakref.finalize(self, _stop, self._tasks, workers)

    @classmethod
    def for_device(cls, device: torch.device, sources: int) -> SourceThreads | None:
        """A pool for a model of ``sources`` networks on ``device``, or ``None`` where running
        them one after the other is as good: not a CPU, one core, or one source."""
        cores = torch.get_num_threads()
        if device.type != "cpu" or cores < 2 or sources < 2:
            return None
        workers = min(sources, cores)
        return cls(workers, cores // workers)

    def map(self, fn: Callable[[T], R], items: Iterable[T]) -> list[R]:
        """``[fn(item) for item in items]``, the items run side by side (results in order)."""
        if torch.is_grad_enabled():
            raise RuntimeError("SourceThreads runs inference only: call it under torch.no_grad()")
        inference = torch.is_inference_mode_enabled()

        def task(item: T) -> Callable[[], object]:
            def call() -> object:
                with torch.inference_mode(inference), torch.no_grad():
                    return fn(item)
            return call

        futures: list[Future[object]] = []
        for item in items:
            future: Future[object] = Future()
            self._tasks.put((task(item), future))
            futures.append(future)
        wait(futures)  # all of them, even when one fails: none is left writing after we return
        return [cast(R, future.result()) for future in futures]

    def close(self) -> None:
        """End the threads (after the tasks already queued)."""
        self._finalizer()
        for thread in self._threads:
            thread.join()


def _serve(tasks: queue.SimpleQueue[_Task | None], threads_each: int,
           ready: threading.Barrier) -> None:
    # torch sets a thread's count from the process default the first time the thread asks for
    # it: ask first, or that first use would undo the count set here.
    torch.get_num_threads()
    torch.set_num_threads(threads_each)
    ready.wait()
    while (task := tasks.get()) is not None:
        call, future = task
        try:
            future.set_result(call())
        except BaseException as exc:  # handed to the caller, who raises it
            future.set_exception(exc)
        del task, call, future  # nothing of a finished task stays alive while idle


def _stop(tasks: queue.SimpleQueue[_Task | None], workers: int) -> None:
    for _ in range(workers):
        tasks.put(None)


@contextmanager
def intra_op_threads(count: int) -> Iterator[None]:
    """Run the block with ``count`` intra-op threads on the calling thread, then restore its own.

    While the block runs, ``count`` is also the default of threads that use torch for the first
    time (torch keeps one such default for the process); the caller makes sure none starts then.
    """
    if count < 1:
        raise ValueError(f"need at least one thread, got {count}")
    before = torch.get_num_threads()
    if count == before:
        yield
        return
    torch.set_num_threads(count)
    try:
        yield
    finally:
        torch.set_num_threads(before)
