"""Options shared by several commands (declared once), and how they become engine settings.

Inference defaults come from :class:`cumx_cli.engine.config.InferenceConfig` (the one place they
live).
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any, Optional

import typer

from cumx_cli.engine.config import InferenceConfig

if TYPE_CHECKING:
    from cumx_cli.console import CliState
    from cumx_cli.engine.model import CrossUMX
    from cumx_cli.engine.weights.cache import WeightsSettings

CacheDir = Annotated[Optional[Path], typer.Option(  # noqa: UP007 - typer needs Optional
    "--cache-dir", envvar="CUMX_CACHE_DIR", file_okay=False,
    help="cumx's cache folder: downloaded weights in DIR/weights, training statistics in "
    "DIR/stats.", show_default="the user cache, e.g. ~/.cache/cumx")]
Offline = Annotated[bool, typer.Option(
    "--offline", envvar="CUMX_OFFLINE",
    help="Never use the network; a model that is not cached is an error.")]
Mirror = Annotated[Optional[str], typer.Option(  # noqa: UP007
    "--mirror", envvar="CUMX_WEIGHTS_MIRROR", metavar="URL",
    help="Fetch weights from this HTTP folder (a served copy of a cumx weights cache) instead "
    "of Zenodo/nnabla.org.", show_default=False)]


def cache_root(cache_dir: Path | None) -> Path:
    """The cache folder of ``--cache-dir`` / ``CUMX_CACHE_DIR``, else the user cache folder.

    One meaning for every command: weights go to ``<root>/weights``, training statistics to
    ``<root>/stats``.
    """
    from cumx_cli.engine.weights.cache import default_cache_dir

    return Path(cache_dir).expanduser() if cache_dir else default_cache_dir()


def weights_settings(cache_dir: Path | None, offline: bool, mirror: str | None) -> WeightsSettings:
    """Engine settings from the flags (which already fell back on their ``CUMX_*`` variables).

    ``cache_dir`` is the cache root (:func:`cache_root`); the engine keeps the weights in its
    ``weights`` folder.

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
    return WeightsSettings(cache_dir=cache_root(cache_dir), offline=offline,
                           mirror=mirror or None,
                           zenodo_url=os.environ.get("CUMX_ZENODO_URL") or ZENODO_URL,
                           timeout=timeout)

_INF = InferenceConfig()

def load_model(model: str, cache_dir: Path | None, offline: bool, mirror: str | None,
               state: CliState) -> CrossUMX:
    """``--model`` for a command: a checkpoint path, or a published name downloaded on first use
    (with its one stderr line and progress bar, unless ``state`` is quiet)."""
    from cumx_cli.engine.weights.resolver import load_model as load_file

    return load_file(model_path(model, cache_dir, offline, mirror, state))


def model_path(model: str, cache_dir: Path | None, offline: bool, mirror: str | None,
               state: CliState) -> Path:
    """The local file or folder of ``--model`` (a published name is downloaded on first use,
    as :func:`load_model` says)."""
    from cumx_cli.console import DownloadReporter
    from cumx_cli.engine.weights.resolver import resolve_path

    with DownloadReporter(state, reason=" (first use)") as reporter:
        return resolve_path(model, weights_settings(cache_dir, offline, mirror), reporter)


#: InferenceConfig fields -> the flags of separate and eval that set them (for error messages).
INFERENCE_FLAGS = {
    "chunk_seconds": "--chunk", "overlap_seconds": "--overlap", "batch_size": "--batch-size",
    "niter": "--niter", "wiener_window": "--wiener-window", "device": "--device",
}


def inference_config(**values: Any) -> InferenceConfig:
    """``InferenceConfig(**values)``, its errors naming the command's flags."""
    from cumx_cli.console import flag_names

    with flag_names(INFERENCE_FLAGS):
        return InferenceConfig(**values)


Model = Annotated[str, typer.Option(
    "-m", "--model", help="A published model name (downloaded on first use; see "
    "'cumx download-weights --list'), or a checkpoint: cumx .pt, asteroid X-UMX .pth, NNabla "
    ".h5, or an Open-Unmix model folder.")]
Niter = Annotated[int, typer.Option(help="Wiener/EM iterations (0: masks only).", min=0)]
WienerWindow = Annotated[Optional[int], typer.Option(  # noqa: UP007 - typer needs Optional
    "--wiener-window", metavar="FRAMES", min=0,
    help="STFT frames per Wiener/EM window, each filtered on its own (0: the whole chunk at "
    "once).", show_default="300 for Open-Unmix models (as openunmix), 0 for X-UMX (as asteroid)")]
Softmask = Annotated[bool, typer.Option(
    "--softmask", help="Start the Wiener filter from ratio masks, not the mixture phase.")]
Residual = Annotated[bool, typer.Option(
    "--residual", help="Also separate 'residual': the mixture minus all sources.")]
Device = Annotated[str, typer.Option(
    envvar="CUMX_DEVICE", help="auto (cuda, then mps, then cpu), cpu, cuda, cuda:N or mps.")]
Chunk = Annotated[float, typer.Option(help="Chunk length in seconds.")]
Overlap = Annotated[float, typer.Option(help="Cross-fade between chunks, in seconds.")]
BatchSize = Annotated[int, typer.Option(help="Chunks per batch (0: 1 on CPU, 4 on GPU).", min=0)]
# A command's own -q/-v: hidden aliases of the root flags (`cumx -q separate ...`), kept for one
# release; merge them with cumx_cli.console.command_state.
Quiet = Annotated[bool, typer.Option("-q", "--quiet", hidden=True,
                                     help="Same as the root flag: cumx -q COMMAND.")]
Verbose = Annotated[bool, typer.Option("-v", "--verbose", hidden=True,
                                       help="Same as the root flag: cumx -v COMMAND.")]

DEFAULT_NITER = _INF.niter
DEFAULT_DEVICE = _INF.device
DEFAULT_CHUNK = _INF.chunk_seconds
DEFAULT_OVERLAP = _INF.overlap_seconds
DEFAULT_BATCH_SIZE = _INF.batch_size
