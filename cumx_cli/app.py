"""The ``cumx`` command: a Typer app over the engine."""

from __future__ import annotations

from typing import Annotated

import typer

from cumx_cli import __version__
from cumx_cli.console import CliState, setup_logging, termination_signals
from cumx_cli.help_text import plain_flags

plain_flags()  # flags show no "<bool>" in --help (typer 0.29 prints one)

app = typer.Typer(
    name="cumx",
    help="Music source separation with X-UMX (CrossNet-Open-Unmix): separate, train, evaluate.",
    no_args_is_help=True,
    context_settings={"help_option_names": ["-h", "--help"]},
    pretty_exceptions_enable=False,
    rich_markup_mode="rich",
)


def _version(value: bool) -> None:
    if value:
        typer.echo(f"cumx {__version__}")
        raise typer.Exit()


@app.callback()
def root(
    ctx: typer.Context,
    version: Annotated[bool, typer.Option("--version", callback=_version, is_eager=True,
                                          help="Print the version and exit.")] = False,
    verbose: Annotated[bool, typer.Option("-v", "--verbose",
                                          help="Debug logs, and tracebacks on errors.")] = False,
    quiet: Annotated[bool, typer.Option("-q", "--quiet", help="Only errors on stderr.")] = False,
) -> None:
    """cumx: separate music into bass, drums, vocals and other with X-UMX."""
    ctx.obj = CliState(verbose=verbose, quiet=quiet)
    setup_logging(verbose)


def _register() -> None:
    from cumx_cli.commands import compare, download_weights, evaluate, separate, train

    app.command("separate", no_args_is_help=True)(separate.separate_command)
    app.command("train", no_args_is_help=True)(train.train_command)
    app.command("eval", no_args_is_help=True)(evaluate.eval_command)
    app.command("compare", no_args_is_help=True)(compare.compare_command)
    app.command("download-weights", no_args_is_help=True)(download_weights.download_weights_command)


_register()


def _tune_allocator() -> None:
    """Keep glibc from returning big tensor buffers to the OS after every use.

    By default glibc serves each allocation over 32 MB with a fresh mmap and unmaps it on free,
    so every STFT-sized temporary page-faults in zeroed memory again: on 2 cores that was about
    half of the separation's wall time, spent in the kernel. Serving them from the heap instead
    reuses the pages. Done here, in the application, never in the engine (a library).

    Worker threads (the network, the source networks, eval's read-ahead) would each get an
    arena of their own, whose heaps hold at most 64 MB: a bigger buffer there (a chunk's masks,
    a track's samples) is a fresh mmap every time, whatever the threshold. So every thread
    allocates from the main heap (``M_ARENA_MAX`` 1, unless ``MALLOC_ARENA_MAX`` is set). On
    2 cores a 3-minute ``separate`` made 390-430k page faults instead of 510-660k (kernel time
    1.0-1.4 s instead of 1.5-1.9 s, wall time 3-4% less), a folder of twenty 30 s files 0.4M
    instead of 1.05M, and ``eval --estimates`` of three 60 s tracks ran 5-11% faster (interleaved
    pairs); in one process, a second 3-minute file made 7k faults instead of 170-240k. The cost
    is peak memory: one heap fragments more, 150-300 MB for a 3-minute file (2.0 GB instead of
    1.8 GB), 140 MB for 10 minutes of X-UMX.
    """
    import ctypes
    import ctypes.util
    import os
    import sys

    if not sys.platform.startswith("linux"):
        return
    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6")
        libc.mallopt(-3, 1 << 30)  # M_MMAP_THRESHOLD: requests below 1 GiB come from the heap
        libc.mallopt(-1, 1 << 30)  # M_TRIM_THRESHOLD: keep up to 1 GiB of freed heap for reuse
        if "MALLOC_ARENA_MAX" not in os.environ:  # the user's setting wins
            libc.mallopt(-8, 1)  # M_ARENA_MAX: every thread allocates from the main heap
    except (OSError, AttributeError):  # not glibc: nothing to tune
        pass


def _skip_final_collection() -> None:
    """Freeze every object alive now (``gc.freeze``), so the interpreter's last garbage
    collection at exit does not walk them.

    After a command, torch's and matplotlib's modules hold some million objects, and the full
    collection that CPython runs while shutting down took 0.4 to 0.6 s of every ``cumx`` process
    on 2 cores (``benchmarks/eval_process.py``): a tenth of scoring three tracks. The memory is
    the OS's a moment later either way. Files are closed, and the atexit handlers (logging's
    flush among them) run, as before: only the cycle search is skipped.
    """
    import gc

    gc.freeze()


def main() -> None:
    """The ``cumx`` command. SIGTERM and SIGHUP stop it as Ctrl-C does, with nothing left behind
    (:func:`~cumx_cli.console.termination_signals`); installed here, for the process, and never
    for the ``app`` called in process."""
    from cumx_cli.threads import tune_threads

    tune_threads()
    _tune_allocator()
    try:
        with termination_signals():
            app()
    except SystemExit as exc:  # how app() ends
        _skip_final_collection()  # for the normal exit, where _end_process keeps it
        _end_process(exc)  # returns only by raising exc again
    except BaseException:  # e.g. KeyboardInterrupt: the process ends right after
        _skip_final_collection()
        raise


def _end_process(exit_: SystemExit) -> None:
    """End the process with ``exit_``'s status without tearing the interpreter down.

    Python's own shutdown then frees every module and object one by one, and the heap after
    them: 0.13 s of a 3-minute ``separate`` on 2 cores (2% of it), spent after the last file is
    written. What else that shutdown does is done first, as it does it: the atexit handlers
    run (logging's flush, ``weakref.finalize`` callbacks such as temporary folders' removal,
    multiprocessing's reaping of child processes) and stdout and stderr are flushed. Where it
    could do more, the normal way is kept (``exit_`` is raised again): a status that is not an
    integer (a message to print), a thread that is not a daemon still running (Python would wait
    for it), or a stream that fails to flush (a closed pipe: Python reports it).
    """
    import atexit
    import os
    import sys
    import threading

    code = 0 if exit_.code is None else exit_.code
    if not isinstance(code, int) or any(
            thread.is_alive() and not thread.daemon and thread is not threading.main_thread()
            for thread in threading.enumerate()):
        raise exit_
    atexit._run_exitfuncs()
    try:
        sys.stdout.flush()
        sys.stderr.flush()
    except (OSError, ValueError):
        raise exit_ from None
    os._exit(code)
