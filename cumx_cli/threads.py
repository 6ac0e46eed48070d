"""Thread settings for the ``cumx`` command on shared machines.

Set in the application before torch (and so its OpenMP runtime) is imported; never in the
engine, which is a library. A variable the user has set always wins.
"""

from __future__ import annotations

import os


def tune_threads() -> None:
    """OpenMP threads sleep instead of spinning while they wait for work."""
    os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")
