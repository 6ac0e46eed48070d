"""Removing what killed runs left: only hidden working files of this host's processes that are
gone, never those of a running process or of another machine sharing the folder."""

from __future__ import annotations

import logging
import os
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from cumx_cli.engine import files
from cumx_cli.engine.files import (
    OLD_NAME_MIN_AGE,
    hidden_path,
    host_token,
    remove_stale_scratch,
    temp_path,
)
from cumx_cli.engine.inference.scratch import FileScratch

pytestmark = pytest.mark.skipif(os.name != "posix", reason="process ids are checked on POSIX only")


@pytest.fixture(autouse=True)
def fresh_host_token() -> Iterator[None]:
    """Tests that fake the host name see it in :func:`host_token`; the others the real one."""
    host_token.cache_clear()
    yield
    host_token.cache_clear()


@pytest.fixture(scope="module")
def dead_pid() -> int:
    """The id of a process that has ended (and been reaped)."""
    proc = subprocess.Popen([sys.executable, "-c", "pass"])
    proc.wait()
    return proc.pid


def touch(folder: Path, *names: str, age: float = 0.0) -> None:
    for name in names:
        path = folder / name
        path.write_bytes(b"scratch")
        if age:
            then = time.time() - age
            os.utime(path, (then, then))


def names(folder: Path) -> set[str]:
    return {p.name for p in folder.iterdir()}


def test_only_dead_processes_of_this_host_lose_their_files(tmp_path: Path, dead_pid: int) -> None:
    host, live = host_token(), os.getpid()
    dead = {f".bass.wav.{host}.{dead_pid}.raw", f".vocals.flac.{host}.{dead_pid}.part"}
    kept = {f".bass.wav.{host}.{live}.raw", f".vocals.flac.{host}.{live}.part",  # running
            f".bass.wav.other-host.{dead_pid}.raw",  # perhaps running on the other host
            f".bass.wav.{host}x.{dead_pid}.raw",  # another host whose name starts like ours
            f".{host}.{dead_pid}.raw",  # no file name before the host
            f".bass.wav.{host}.{dead_pid}.lock", ".hidden.wav", "bass.wav"}
    touch(tmp_path, *dead, *kept)
    removed = remove_stale_scratch(tmp_path)
    assert {p.name for p in removed} == dead
    assert names(tmp_path) == kept


def test_old_names_without_a_host_go_only_when_dead_here_and_a_day_old(tmp_path: Path,
                                                                       dead_pid: int) -> None:
    """``.NAME.PID.raw`` from cumx before the host was added: its pid may be a process of
    another machine, but a day without a write means no run is using it."""
    old = OLD_NAME_MIN_AGE + 3600
    touch(tmp_path, f".bass.wav.{dead_pid}.raw", f".drums.mp3.{dead_pid}.part", age=old)
    touch(tmp_path, f".vocals.wav.{dead_pid}.raw")  # recent: perhaps another host's live run
    touch(tmp_path, f".other.wav.{os.getpid()}.raw", age=old)  # running here
    touch(tmp_path, f".notes.txt.{dead_pid}.part", age=old)  # no stem of cumx's
    remove_stale_scratch(tmp_path)
    assert names(tmp_path) == {f".vocals.wav.{dead_pid}.raw", f".other.wav.{os.getpid()}.raw",
                               f".notes.txt.{dead_pid}.part"}


def test_a_process_of_another_user_counts_as_running(tmp_path: Path, dead_pid: int,
                                                     monkeypatch: pytest.MonkeyPatch) -> None:
    def not_permitted(pid: int, sig: int) -> None:
        raise PermissionError(1, "Operation not permitted")

    monkeypatch.setattr(files.os, "kill", not_permitted)
    touch(tmp_path, f".bass.wav.{host_token()}.{dead_pid}.raw")
    assert remove_stale_scratch(tmp_path) == []
    assert len(names(tmp_path)) == 1


def test_the_working_files_of_this_process_carry_its_host_and_pid(tmp_path: Path) -> None:
    final = tmp_path / "vocals.wav"
    suffix = f"{host_token()}.{os.getpid()}"
    assert temp_path(final) == tmp_path / f".vocals.wav.{suffix}.part"
    assert FileScratch({"vocals": final}, 2).paths == [tmp_path / f".vocals.wav.{suffix}.raw"]
    touch(tmp_path, temp_path(final).name, hidden_path(final, "raw").name)
    assert remove_stale_scratch(tmp_path) == []  # ours, and we are running


@pytest.mark.parametrize(("hostname", "token"), [
    ("node07", "node07"),
    ("node07.cluster.example.org", "node07-cluster-example-org"),  # no dot: the name splits
    ("my_box (1)", "my-box--1-"),
    ("", "host"),
])
def test_the_host_name_is_sanitised(monkeypatch: pytest.MonkeyPatch, hostname: str,
                                    token: str) -> None:
    monkeypatch.setattr(files.socket, "gethostname", lambda: hostname)
    monkeypatch.setattr(files.os, "readlink", lambda path: "pid:[4026531836]")
    assert host_token() == token


def test_a_container_with_the_hosts_name_has_a_token_of_its_own(
        monkeypatch: pytest.MonkeyPatch) -> None:
    """``docker run --network host`` shares the host name, not the process ids."""
    monkeypatch.setattr(files.socket, "gethostname", lambda: "node07")
    monkeypatch.setattr(files.os, "readlink", lambda path: "pid:[4026532451]")
    assert host_token() == "node07-4026532451"


def test_removal_never_fails(tmp_path: Path, dead_pid: int, monkeypatch: pytest.MonkeyPatch,
                             caplog: pytest.LogCaptureFixture) -> None:
    assert remove_stale_scratch(tmp_path / "missing") == []
    host = host_token()
    touch(tmp_path, f".bass.wav.{host}.{dead_pid}.raw", f".drums.wav.{host}.{dead_pid}.raw")
    real_unlink = Path.unlink

    def unlink(self: Path, missing_ok: bool = False) -> None:
        if self.name.startswith(".bass"):
            raise PermissionError(13, "Permission denied")
        real_unlink(self, missing_ok)

    monkeypatch.setattr(Path, "unlink", unlink)
    with caplog.at_level(logging.DEBUG, logger="cumx_cli.engine.files"):
        removed = remove_stale_scratch(tmp_path)
    assert [p.name for p in removed] == [f".drums.wav.{host}.{dead_pid}.raw"]
    assert names(tmp_path) == {f".bass.wav.{host}.{dead_pid}.raw"}
    removals = [r.getMessage() for r in caplog.records if r.getMessage().startswith("removed ")]
    assert len(removals) == 1 and f".drums.wav.{host}.{dead_pid}.raw" in removals[0]
