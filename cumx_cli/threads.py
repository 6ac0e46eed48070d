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


#: Spins of a waiting OpenMP thread that has a core of its own, before it sleeps: about 0.3 ms,
#: a tenth of libgomp's default.
SPIN_COUNT = "30000"


def tune_threads() -> None:
    """Make torch's OpenMP threads spin briefly before they sleep, instead of sleeping at once or
    spinning for milliseconds.

    ``OMP_WAIT_POLICY=ACTIVE`` with ``GOMP_SPINCOUNT=30000``. What this chooses is libgomp's
    *throttled* spin count, used whenever a process has more OpenMP threads than cores:
    ``separate`` always has (the network runs in a worker thread beside the main thread, which
    does the Wiener filter, cross-fades, decoding and encoding, and each has a team of one
    thread per core). Under ``ACTIVE`` such a thread spins 1,000 times before it sleeps;
    under libgomp's default 100 times, and under ``PASSIVE`` not at all. On the 2-core machine,
    separating a 3-minute file took 7.0-7.5 s with this setting, 12-14 s with libgomp's default
    and 17-19 s with ``PASSIVE`` (cumx's setting until this release): a sleeping thread is
    woken tens of thousands of times per track, and each wake-up costs a system call and a
    reschedule. The spin count bounds spinning where the threads are not throttled (``eval``,
    ``train``) to a tenth of libgomp's 300,000.

    Several ``cumx`` processes on one machine should each get their share of the cores with
    ``OMP_NUM_THREADS`` (cores / N, README "Several shards on one CPU machine"); on a machine
    busy with other work, ``OMP_WAIT_POLICY=PASSIVE`` yields the cores at once. A variable the
    user has set (``OMP_WAIT_POLICY`` or ``GOMP_SPINCOUNT``) always wins; the number of threads
    is left to torch (one per core) and to ``OMP_NUM_THREADS``.
    """
    if not any(name in os.environ for name in _WAIT_VARIABLES):
        os.environ["OMP_WAIT_POLICY"] = "ACTIVE"
        os.environ["GOMP_SPINCOUNT"] = SPIN_COUNT
