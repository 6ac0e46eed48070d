"""Thread settings for the ``cumx`` command on shared machines.

Set in the application before torch is imported, because torch's OpenMP runtime reads them once,
when torch loads it; never in the engine, which is a library. A variable the user has set always
wins. ``benchmarks/shards.py`` measures the effect (README "Several shards on one CPU machine").
"""

from __future__ import annotations

import os

#: Variables that already say how OpenMP threads wait: the standard one, and libgomp's spin count
#: (which libgomp prefers to the policy when both are set).
_WAIT_VARIABLES = ("OMP_WAIT_POLICY", "GOMP_SPINCOUNT")


def tune_threads() -> None:
    """Make torch's OpenMP threads sleep as soon as they wait, instead of spinning first.

    By default libgomp (torch's OpenMP runtime on Linux) spins about 300,000 times, a few
    milliseconds, whenever a thread waits for work, and separating a 30 s file waits about 64,000
    times. When the cores are shared, by several ``cumx`` shards or by other busy processes, the
    spinning threads take the cores from the threads doing the work: two shards at once were
    slower than one after the other. ``PASSIVE`` makes waiting threads sleep at once; a run
    alone on the machine pays a wake-up per wait instead (within the noise of our measurements).

    The number of threads is left to torch (one per core) and to ``OMP_NUM_THREADS``, which
    the README advises setting to cores / N for N shards on one machine. ``separate`` runs the
    network in a worker thread beside the main thread (the Wiener filter, cross-fades, decoding
    and encoding), and each has its own team of that many OpenMP threads; with ``PASSIVE`` a team
    waiting for its next parallel region sleeps, so the two stages share the cores instead of
    spinning against each other.
    """
    if not any(name in os.environ for name in _WAIT_VARIABLES):
        os.environ["OMP_WAIT_POLICY"] = "PASSIVE"
