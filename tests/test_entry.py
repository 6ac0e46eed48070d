"""The ``cumx`` console entry's process settings at exit: the objects alive when a command ends
are frozen (``gc.freeze``), so that the interpreter's final collection skips them."""

from __future__ import annotations

import subprocess
import sys

import pytest

# atexit handlers run after main() has returned or raised SystemExit, before the final collection.
ENTRY = """
import atexit, gc, sys
import cumx_cli.app
print("frozen before:", gc.get_freeze_count())
atexit.register(lambda: print("frozen at exit:", gc.get_freeze_count() > 0))
sys.argv = ["cumx", *sys.argv[1:]]
cumx_cli.app.main()
"""


@pytest.mark.parametrize(("args", "code"), [(["--version"], 0),
                                            (["separate", "no-such-file.wav"], 1)])
def test_objects_are_frozen_when_the_command_ends(args: list[str], code: int) -> None:
    proc = subprocess.run([sys.executable, "-c", ENTRY, *args], capture_output=True, text=True,
                          timeout=120)
    assert proc.returncode == code, proc.stderr
    assert "frozen before: 0" in proc.stdout
    assert "frozen at exit: True" in proc.stdout
