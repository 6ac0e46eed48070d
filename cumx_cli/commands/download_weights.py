"""``cumx download-weights``: pre-fetch published models into the cache, or list them."""

from __future__ import annotations

import sys
from typing import TYPE_CHECKING, Annotated, Optional

import typer

from cumx_cli.console import EXIT_FAILED, EXIT_OK, DownloadReporter, cli_state, error_line, guard
from cumx_cli.options import CacheDir, Mirror, Offline, weights_settings

if TYPE_CHECKING:
    from cumx_cli.engine.weights.cache import WeightsSettings


def _size(size: int | None, cached: bool) -> str:
    if size is None:
        return "?"
    return f"{'' if cached else '~'}{size / 1e6:.1f} MB"


def _list(settings: WeightsSettings) -> None:
    from cumx_cli.engine.weights.cache import cached_size
    from cumx_cli.engine.weights.registry import CATALOGUE

    rows = [("NAME", "SIZE", "CACHED", "LICENSE", "DESCRIPTION")]
    for spec in CATALOGUE.values():
        size = cached_size(settings, spec)
        rows.append((spec.name, _size(size if size is not None else spec.approx_bytes, size is not None),
                     "yes" if size is not None else "no", spec.license, spec.description))
    widths = [max(len(r[i]) for r in rows) for i in range(3)]
    for row in rows:
        head = "  ".join(cell.ljust(w) for cell, w in zip(row[:3], widths, strict=True))
        sys.stdout.write(f"{head}  {row[4]} [license: {row[3]}]\n" if row[0] != "NAME"
                         else f"{head}  DESCRIPTION [LICENSE]\n")
    sys.stdout.write(f"cache: {settings.root}\n")


@guard
def download_weights_command(
    ctx: typer.Context,
    names: Annotated[Optional[list[str]], typer.Argument(  # noqa: UP007 - typer needs Optional
        metavar="NAME", help="Published model names (see --list).", show_default=False)] = None,
    all_models: Annotated[bool, typer.Option("--all", help="Every published model.")] = False,
    list_models: Annotated[bool, typer.Option(
        "--list", help="List the published models: name, size, cached or not, license, "
        "description.")] = False,
    force: Annotated[bool, typer.Option(
        "--force", help="Download again even if a verified copy is cached.")] = False,
    cache_dir: CacheDir = None,
    mirror: Mirror = None,
    offline: Offline = False,
) -> None:
    """Download published weights into the cache, verified (size and checksum) before use.

    Prints one line per file on stdout: its path and size. Exit status: 0 when every model is
    cached and verified; 1 when any failed; 2 for usage errors.
    """
    from cumx_cli.engine.errors import ConfigError, CumxError
    from cumx_cli.engine.weights.download import ensure_weights
    from cumx_cli.engine.weights.registry import CATALOGUE, get_spec

    settings = weights_settings(cache_dir, offline, mirror)
    if list_models:
        _list(settings)
        raise typer.Exit(EXIT_OK)
    if all_models == bool(names):
        raise ConfigError("name the models to download, or pass --all (--list shows them)")
    chosen = list(CATALOGUE) if all_models else list(dict.fromkeys(names or []))
    specs = [get_spec(name) for name in chosen]  # every name is checked before any download
    failed = 0
    for spec in specs:
        try:
            with DownloadReporter(cli_state(ctx)) as reporter:
                results = ensure_weights(spec, settings, force=force, events=reporter)
        except CumxError as exc:
            if len(chosen) == 1:
                raise
            error_line(str(exc))
            failed += 1
            continue
        for result in results:
            sys.stdout.write(f"{result.path}\t{result.size / 1e6:.1f} MB\t{result.status}\n")
    sys.stdout.flush()
    raise typer.Exit(EXIT_FAILED if failed else EXIT_OK)
