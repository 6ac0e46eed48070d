"""Options shared by several commands (declared once), and how they become engine settings.

Inference defaults come from :class:`cumx_cli.engine.config.InferenceConfig` (the one place they
live).
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Optional

import typer

from cumx_cli.engine.config import InferenceConfig

if TYPE_CHECKING:
    from cumx_cli.engine.model import CrossUMX
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

_INF = InferenceConfig()

def load_model(model: str, cache_dir: Path | None, offline: bool, mirror: str | None) -> CrossUMX:
    """``--model`` for a command: a checkpoint path, or a published name downloaded on first use
    (with its one stderr line and progress bar)."""
    from cumx_cli.console import DownloadReporter
    from cumx_cli.engine.checkpoint import resolve_model

    with DownloadReporter(reason=" (first use)") as reporter:
        return resolve_model(model, weights_settings(cache_dir, offline, mirror), reporter)  # type: ignore[arg-type]


Model = Annotated[str, typer.Option(
    "-m", "--model", help="A published model name (downloaded on first use; see "
    "'cumx download-weights --list'), or a checkpoint: cumx .pt, asteroid X-UMX .pth, NNabla "
    ".h5, or an Open-Unmix model folder.")]
Niter = Annotated[int, typer.Option(help="Wiener/EM iterations (0: masks only).", min=0)]
Softmask = Annotated[bool, typer.Option(
    "--softmask", help="Start the Wiener filter from ratio masks, not the mixture phase.")]
Residual = Annotated[bool, typer.Option(
    "--residual", help="Also separate 'residual': the mixture minus all sources.")]
Device = Annotated[str, typer.Option(
    envvar="CUMX_DEVICE", help="auto (cuda, then mps, then cpu), cpu, cuda, cuda:N or mps.")]
Chunk = Annotated[float, typer.Option(help="Chunk length in seconds.")]
Overlap = Annotated[float, typer.Option(help="Cross-fade between chunks, in seconds.")]
BatchSize = Annotated[int, typer.Option(help="Chunks per batch (0: 1 on CPU, 4 on GPU).", min=0)]
Quiet = Annotated[bool, typer.Option("-q", "--quiet", help="Only errors on stderr.")]
Verbose = Annotated[bool, typer.Option("-v", "--verbose", help="Tracebacks and debug logs.")]

DEFAULT_NITER = _INF.niter
DEFAULT_DEVICE = _INF.device
DEFAULT_CHUNK = _INF.chunk_seconds
DEFAULT_OVERLAP = _INF.overlap_seconds
DEFAULT_BATCH_SIZE = _INF.batch_size
