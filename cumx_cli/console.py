"""Terminal output for the CLI: the stderr console, error rendering, exit codes and the
termination signals.

stdout carries results only (``--json`` lines); messages, warnings and progress go to stderr.
``-v``/``-q`` are one invocation's :class:`CliState`, kept in the Typer context (``ctx.obj``) by
the root callback, never in a process-wide variable: two invocations in one process (tests, or
the app called from Python) do not see each other's flags.
"""

from __future__ import annotations

import logging
import signal
import sys
import traceback
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass
from functools import wraps
from typing import TYPE_CHECKING, Any, TypeVar, cast

import typer
from rich.console import Console
from rich.logging import RichHandler

from cumx_cli.engine.errors import ConfigError, CumxError

if TYPE_CHECKING:
    from pathlib import Path

    from rich.progress import TaskID

    from cumx_cli.engine.weights.download import FileResult
    from cumx_cli.engine.weights.registry import WeightsSpec

EXIT_OK = 0
EXIT_FAILED = 1
EXIT_USAGE = 2
EXIT_INTERRUPTED = 130
#: Signals that stop a command the way Ctrl-C does (those of them the platform has).
TERMINATION_SIGNALS = tuple(getattr(signal, name) for name in ("SIGTERM", "SIGHUP")
                            if hasattr(signal, name))

stderr = Console(stderr=True, highlight=False, soft_wrap=True)
F = TypeVar("F", bound=Callable[..., Any])


@dataclass
class CliState:
    """The output flags of one invocation: ``-v`` (debug logs, tracebacks) and ``-q`` (errors only).

    The root callback puts it in ``ctx.obj``; subcommand contexts share their parent's object.
    """

    verbose: bool = False
    quiet: bool = False

    @property
    def live(self) -> bool:
        """Whether progress bars are drawn: on a terminal, unless ``--quiet``."""
        return stderr.is_terminal and not self.quiet

    def info(self, message: str) -> None:
        """A message line on stderr (rich markup allowed), unless ``--quiet``."""
        if not self.quiet:
            stderr.print(message)


def cli_state(ctx: typer.Context) -> CliState:
    """The invocation's :class:`CliState` (a default one outside the ``cumx`` app)."""
    return ctx.ensure_object(CliState)


def command_state(ctx: typer.Context, *, verbose: bool = False, quiet: bool = False) -> CliState:
    """The invocation's state with a command's own ``-v``/``-q`` merged in.

    The per-command spellings (``cumx separate ... -q``) are hidden aliases of the root flags
    (``cumx -q separate ...``), kept for one release.
    """
    state = cli_state(ctx)
    state.quiet = state.quiet or quiet
    if verbose and not state.verbose:
        state.verbose = True
        setup_logging(True)
    return state


def setup_logging(verbose: bool) -> None:
    """Route ``logging`` to stderr: debug records with ``--verbose``, warnings otherwise."""
    level = logging.DEBUG if verbose else logging.WARNING
    logging.basicConfig(level=level, format="%(message)s", force=True,
                        handlers=[RichHandler(console=stderr, show_path=False, show_time=False)])


def error_line(message: str) -> None:
    """One red line on stderr; never a traceback (see :func:`guard`)."""
    stderr.print(f"[bold red]error:[/] {_escape(message)}")


def warn_line(message: str) -> None:
    stderr.print(f"[yellow]warning:[/] {_escape(message)}")


def _escape(text: str) -> str:
    from rich.markup import escape

    return escape(text)


class Terminated(KeyboardInterrupt):
    """A termination signal (SIGTERM from ``kill``, ``timeout`` or a batch scheduler; SIGHUP
    from a dropped terminal) raised as an exception by :func:`termination_signals`.

    A ``KeyboardInterrupt``, so that it unwinds through exactly the cleanup Ctrl-C does (the
    pipeline discards its scratch and aborts its writers, training keeps its last complete
    checkpoint); :func:`guard` then exits ``128 + signum``, the status of a process the signal
    killed, which shells and schedulers read.
    """

    def __init__(self, signum: int) -> None:
        super().__init__(signum)
        self.signum = signum

    @property
    def signal_name(self) -> str:
        """``SIGTERM``, ``SIGHUP``, ..."""
        try:
            return signal.Signals(self.signum).name
        except ValueError:
            return f"signal {self.signum}"

    @property
    def exit_code(self) -> int:
        return 128 + self.signum


@contextmanager
def termination_signals() -> Iterator[None]:
    """Within the block, SIGTERM and SIGHUP raise :class:`Terminated` in the main thread.

    For the ``cumx`` process only (:func:`cumx_cli.app.main`): handlers are process-wide, and
    the app called in process (tests, Python callers) keeps the caller's. Once one signal is
    being handled, further SIGTERM/SIGHUP are ignored, so that a second ``kill`` (or a
    scheduler's repeated warning) cannot break off the cleanup or land outside :func:`guard`
    as a traceback; SIGKILL still ends a cleanup that hangs, and Ctrl-C stays Ctrl-C.

    A signal outside a command's :func:`guard` (while the arguments are parsed, or after the
    command returned) still ends the process with ``128 + signum``.
    """
    received: list[int] = []

    def handler(signum: int, frame: object) -> None:
        for sig in TERMINATION_SIGNALS:
            signal.signal(sig, signal.SIG_IGN)
        received.append(signum)
        raise Terminated(signum)

    try:
        previous = {sig: signal.signal(sig, handler) for sig in TERMINATION_SIGNALS}
    except ValueError:  # not the main thread: only the main thread can handle signals
        previous = None
    if previous is None:
        yield
        return
    try:
        yield
    except Terminated as exc:  # the command had finished: the process is ending anyway
        error_line(f"terminated ({exc.signal_name})")
        raise SystemExit(exc.exit_code) from None
    except SystemExit as exc:
        if received and exc.code != 128 + received[0]:  # e.g. click's "Aborted!" exit 1
            raise SystemExit(128 + received[0]) from None
        raise
    finally:
        for sig, old in previous.items():
            signal.signal(sig, signal.SIG_DFL if old is None else old)


def guard(func: F) -> F:
    """Turn engine errors into one line and an exit code, tracebacks only with ``--verbose``.

    ``ConfigError`` (a bad option value) exits 2 like any usage error; other ``CumxError``\\ s
    exit 1; Ctrl-C exits 130, SIGTERM and SIGHUP (:class:`Terminated`) ``128 + signum``; an
    unexpected exception prints its type and message and exits 1.
    The command takes a ``ctx: typer.Context`` parameter (Typer passes it by keyword), where
    ``--verbose`` is looked up.
    """

    @wraps(func)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        ctx: typer.Context | None = kwargs.get("ctx")
        try:
            return func(*args, **kwargs)
        except typer.Exit:
            raise
        except ConfigError as exc:
            _maybe_traceback(ctx)
            error_line(str(exc))
            raise typer.Exit(EXIT_USAGE) from None
        except CumxError as exc:
            _maybe_traceback(ctx)
            error_line(str(exc))
            raise typer.Exit(EXIT_FAILED) from None
        except Terminated as exc:
            error_line(f"terminated ({exc.signal_name})")
            raise typer.Exit(exc.exit_code) from None
        except KeyboardInterrupt:
            error_line("interrupted")
            raise typer.Exit(EXIT_INTERRUPTED) from None
        except Exception as exc:  # noqa: BLE001 - the last line of defence for a clean message
            _maybe_traceback(ctx)
            error_line(f"unexpected {type(exc).__name__}: {exc} (run with --verbose for details)")
            raise typer.Exit(EXIT_FAILED) from None

    return cast(F, wrapper)


@contextmanager
def flag_names(flags: Mapping[str, str]) -> Iterator[None]:
    """Show an engine config error under this command's flag for the field it names.

    The engine's :class:`ConfigError` names a config field and starts its message with it
    (``num_layers must be at least 1``); ``flags`` maps fields to the command's flags, so the
    user reads ``--nb-layers must be at least 1``. Errors of other fields pass unchanged.
    """
    try:
        yield
    except ConfigError as exc:
        message, name = str(exc), exc.field
        if name is None or name not in flags or not message.startswith(name):
            raise
        raise ConfigError(flags[name] + message[len(name):], field=name) from exc


def _maybe_traceback(ctx: typer.Context | None) -> None:
    if ctx is not None and cli_state(ctx).verbose:
        traceback.print_exc(file=sys.stderr)


def _megabytes(size: int | None) -> str:
    return "?" if size is None else f"{size / 1e6:.1f} MB"


class DownloadReporter:
    """Weights download reporting: one line when a model starts downloading, a progress bar per
    file on terminals, and a warning for files that no published checksum could verify.

    Implements :class:`cumx_cli.engine.events.DownloadEvents` (a Protocol: nothing of the engine
    is imported at run time, so that ``--help`` stays fast).
    """

    def __init__(self, state: CliState, reason: str = "") -> None:
        from rich.progress import (
            BarColumn,
            DownloadColumn,
            Progress,
            TextColumn,
            TimeRemainingColumn,
            TransferSpeedColumn,
        )

        self.state = state
        self.reason = reason
        self.progress: Progress | None = None
        if state.live:
            self.progress = Progress(TextColumn("{task.description}"), BarColumn(), DownloadColumn(),
                                     TransferSpeedColumn(), TimeRemainingColumn(), console=stderr,
                                     transient=True)
        self.tasks: dict[str, TaskID] = {}

    def __enter__(self) -> DownloadReporter:
        if self.progress is not None:
            self.progress.start()
        return self

    def __exit__(self, *exc: object) -> None:
        if self.progress is not None:
            self.progress.stop()

    def model_started(self, spec: WeightsSpec, origin: str, dest: Path, total: int | None) -> None:
        size = _megabytes(total) if total is not None else f"about {_megabytes(spec.approx_bytes)}"
        self.state.info(f"downloading {spec.name}{self.reason} ({len(spec.files)} file(s), "
                        f"{size}) from {origin} to {dest}")

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

    def file_finished(self, file: str, result: FileResult) -> None:
        if self.progress is not None and file in self.tasks:
            self.progress.remove_task(self.tasks.pop(file))
        if result.note:
            warn_line(f"{result.path}: {result.note}")
