"""Where cumx keeps downloaded and computed files: ``CUMX_CACHE_DIR`` or the user cache dir."""

from __future__ import annotations

import os
from pathlib import Path


def cache_root() -> Path:
    """``$CUMX_CACHE_DIR`` if set, else platformdirs' user cache folder for cumx."""
    env = os.environ.get("CUMX_CACHE_DIR")
    if env:
        return Path(env).expanduser()
    from platformdirs import user_cache_dir  # noqa: PLC0415

    return Path(user_cache_dir("cumx"))
