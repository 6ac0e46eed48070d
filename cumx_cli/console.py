"""Terminal output for the CLI: the stderr console, error rendering and exit codes.

stdout carries results only (``--json`` lines); messages, warnings and progress go to stderr.
"""

from __future__ import annotations

import logging
import sys
import traceback
from collections.abc import Callable
from functools import wraps
from typing import Any, TypeVar

import typer
from rich.console import Console
from rich.logging import RichHandler

from cumx_cli.engine.errors import ConfigError, CumxError

EXIT_OK = 0
EXIT_FAILED = 1
EXIT_USAGE = 2
EXIT_INTERRUPTED = 130

stderr = Console(stderr=True, highlight=False, soft_wrap=True)
F = TypeVar("F", bound=Callable[..., Any])


class State:
    """Global flags set by the root callback (``-v``/``-q``) or a command's own."""

    verbose = False
    quiet = False


def setup_logging(verbose: bool) -> None:
    State.verbose = State.verbose or verbose
    level = logging.DEBUG if State.verbose else logging.WARNING
    logging.basicConfig(level=level, format="%(message)s", force=True,
                        handlers=[RichHandler(console=stderr, show_path=False, show_time=False)])


def error_line(message: str) -> None:
    """One red line on stderr; never a traceback (see :func:`guard`)."""
    stderr.print(f"[bold red]error:[/] {_escape(message)}")


def warn_line(message: str) -> None:
    stderr.print(f"[yellow]warning:[/] {_escape(message)}")


def info_line(message: str) -> None:
    if not State.quiet:
        stderr.print(message)


def _escape(text: str) -> str:
    from rich.markup import escape

    return escape(text)


def guard(func: F) -> F:
    """Turn engine errors into one line and an exit code, tracebacks only with ``--verbose``.

    ``ConfigError`` (a bad option value) exits 2 like any usage error; other ``CumxError``\\ s
    exit 1; Ctrl-C exits 130; an unexpected exception prints its type and message and exits 1.
    """

    @wraps(func)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        try:
            return func(*args, **kwargs)
        except typer.Exit:
            raise
        except ConfigError as exc:
            _maybe_traceback()
            error_line(str(exc))
            raise typer.Exit(EXIT_USAGE) from None
        except CumxError as exc:
            _maybe_traceback()
            error_line(str(exc))
            raise typer.Exit(EXIT_FAILED) from None
        except KeyboardInterrupt:
            error_line("interrupted")
            raise typer.Exit(EXIT_INTERRUPTED) from None
        except Exception as exc:  # noqa: BLE001 - the last line of defence for a clean message
            _maybe_traceback()
            error_line(f"unexpected {type(exc).__name__}: {exc} (run with --verbose for details)")
            raise typer.Exit(EXIT_FAILED) from None

    return wrapper  # type: ignore[return-value]


def _maybe_traceback() -> None:
    if State.verbose:
        traceback.print_exc(file=sys.stderr)


def _megabytes(size: int | None) -> str:
    return "?" if size is None else f"{size / 1e6:.1f} MB"


class DownloadReporter:
    """Weights download reporting: one line when a model starts downloading, a progress bar per
    file on terminals, and a warning for files that no published checksum could verify.

    Implements the engine's ``DownloadEvents`` hooks (duck-typed, like the separate command's
    events, so that ``--help`` does not import the engine).
    """

    def __init__(self, reason: str = "") -> None:
        from rich.progress import (
            BarColumn,
            DownloadColumn,
            Progress,
            TextColumn,
            TimeRemainingColumn,
            TransferSpeedColumn,
        )

        self.reason = reason
        self.progress: Progress | None = None
        if stderr.is_terminal and not State.quiet:
            self.progress = Progress(TextColumn("{task.description}"), BarColumn(), DownloadColumn(),
                                     TransferSpeedColumn(), TimeRemainingColumn(), console=stderr,
                                     transient=True)
        self.tasks: dict[str, Any] = {}

    def __enter__(self) -> DownloadReporter:
        if self.progress is not None:
            self.progress.start()
        return self

    def __exit__(self, *exc: object) -> None:
        if self.progress is not None:
            self.progress.stop()

    def model_started(self, spec: Any, origin: str, dest: Any, total: int | None) -> None:
        size = _megabytes(total) if total is not None else f"about {_megabytes(spec.approx_bytes)}"
        info_line(f"downloading {spec.name}{self.reason} ({len(spec.files)} file(s), {size}) "
                  f"from {origin} to {dest}")

    def file_started(self, file: str, total: int | None, done: int) -> None:
        if self.progress is None:
            return
        if file in self.tasks:
            self.progress.update(self.tasks[file], total=total, completed=done)
        else:
            self.tasks[file] = self.progress.add_task(file, total=total, completed=done)

    def file_progress(self, file: str, done: int) -> None:
        if self.progress is not None and file in self.tasks:
            self.progress.update(self.tasks[file], completed=done)

    def file_finished(self, file: str, result: Any) -> None:
        if self.progress is not None and file in self.tasks:
            self.progress.remove_task(self.tasks.pop(file))
        if result.note:
            warn_line(f"{result.path}: {result.note}")
