"""How a ``cumx`` process ends: the exit status and output of a normal shutdown, without the
interpreter's teardown (:func:`cumx_cli.app._end_process`), unless something needs it."""

from __future__ import annotations

import subprocess
import sys

import pytest

# Runs the ``cumx`` entry point in a process of its own, with an atexit handler, a finalizer and
# os._exit reporting its use.
PROBE = """
import atexit, os, sys, threading, time, weakref
from cumx_cli.app import main

real_exit = os._exit


def fast_exit(code):  # what _end_process calls: reported, then done
    os.write(1, f"fast exit {code}\\n".encode())
    real_exit(code)


os._exit = fast_exit

class Holder:
    pass

holder = Holder()
atexit.register(lambda: print("atexit ran", flush=True))
weakref.finalize(holder, print, "finalizer ran")
print("unflushed output", end=" ")  # stdout is a pipe: block-buffered
if sys.argv[1] == "thread":
    threading.Thread(target=lambda: (time.sleep(0.5), print("thread done", flush=True))).start()
sys.argv = ["cumx", *sys.argv[2:]]
main()
"""


def _run(mode: str, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-c", PROBE, mode, *args], capture_output=True,
                          text=True, timeout=120)


@pytest.mark.parametrize(("args", "status"), [(("--version",), 0), (("separate", "--no-such-option"), 2),
                                              (("separate", "/no/such/file.wav"), 1)])
def test_the_status_output_and_exit_handlers_are_kept_and_the_teardown_skipped(
        args: tuple[str, ...], status: int) -> None:
    proc = _run("plain", *args)
    assert proc.returncode == status, proc.stderr
    assert "unflushed output" in proc.stdout
    assert "atexit ran" in proc.stdout and "finalizer ran" in proc.stdout
    assert proc.stdout.rstrip().endswith(f"fast exit {status}")  # after the handlers' output
    if status == 0:
        assert "cumx " in proc.stdout
    else:
        assert proc.stderr.strip()  # the error or usage message


def test_a_running_thread_gets_the_normal_shutdown() -> None:
    """Python waits for a thread that is not a daemon; so does cumx, by ending the usual way."""
    proc = _run("thread", "--version")
    assert proc.returncode == 0, proc.stderr
    assert "thread done" in proc.stdout and "atexit ran" in proc.stdout
    assert "fast exit" not in proc.stdout
