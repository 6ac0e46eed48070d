"""Options shared by several commands (declared once), and how they become engine settings."""

from __future__ import annotations

import os
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Optional

import typer

if TYPE_CHECKING:
    from cumx_cli.engine.weights.cache import WeightsSettings

CacheDir = Annotated[Optional[Path], typer.Option(  # noqa: UP007 - typer needs Optional
    "--cache-dir", envvar="CUMX_CACHE_DIR", file_okay=False,
    help="Folder of downloaded weights.", show_default="the user cache, e.g. ~/.cache/cumx/weights")]
Offline = Annotated[bool, typer.Option(
    "--offline", envvar="CUMX_OFFLINE",
    help="Never use the network; a model that is not cached is an error.")]
Mirror = Annotated[Optional[str], typer.Option(  # noqa: UP007
    "--mirror", envvar="CUMX_WEIGHTS_MIRROR", metavar="URL",
    help="Fetch weights from this HTTP folder (a served copy of a cumx weights cache) instead "
    "of Zenodo/nnabla.org.", show_default=False)]


def weights_settings(cache_dir: Path | None, offline: bool, mirror: str | None) -> WeightsSettings:
    """Engine settings from the flags (which already fell back on their ``CUMX_*`` variables).

    ``CUMX_ZENODO_URL`` (Zenodo's base URL) and ``CUMX_HTTP_TIMEOUT`` (seconds) exist for tests
    and unusual networks; they have no flags.
    """
    from cumx_cli.engine.errors import ConfigError
    from cumx_cli.engine.weights.cache import WeightsSettings
    from cumx_cli.engine.weights.registry import ZENODO_URL

    try:
        timeout = float(os.environ.get("CUMX_HTTP_TIMEOUT") or 15.0)
    except ValueError:
        raise ConfigError(f"CUMX_HTTP_TIMEOUT must be a number of seconds, got "
                          f"{os.environ['CUMX_HTTP_TIMEOUT']!r}") from None
    return WeightsSettings(cache_dir=cache_dir, offline=offline, mirror=mirror or None,
                           zenodo_url=os.environ.get("CUMX_ZENODO_URL") or ZENODO_URL,
                           timeout=timeout)
