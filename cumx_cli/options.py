"""Shared ``Annotated`` option aliases for commands that run the separator.

Defaults come from :class:`cumx_cli.engine.config.InferenceConfig` (the one place they live).
"""

from __future__ import annotations

from typing import Annotated

import typer

from cumx_cli.engine.config import InferenceConfig

_INF = InferenceConfig()

Model = Annotated[str, typer.Option(
    "-m", "--model", help="A checkpoint: cumx .pt, asteroid X-UMX .pth, or an Open-Unmix model "
    "folder; or a published model name.")]
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
