"""``cumx download-weights`` and first-use downloads in ``cumx separate``, against a fake Zenodo
on 127.0.0.1 (``CUMX_ZENODO_URL``), plus the no-network behaviour of a real process."""

from __future__ import annotations

import errno
import os
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest

from tests.cli.helpers import cumx, show
from tests.fake_zenodo import ASTEROID, XUMX_FILE, Behaviour, FakeZenodo


@pytest.fixture(autouse=True)
def _env(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.chdir(tmp_path)
    for var in ("CUMX_OFFLINE", "CUMX_WEIGHTS_MIRROR", "CUMX_ZENODO_URL", "CUMX_HTTP_TIMEOUT"):
        monkeypatch.delenv(var, raising=False)


@pytest.fixture
def cache() -> Path:
    """The weights folder of the cache root that conftest sets per test (``CUMX_CACHE_DIR``)."""
    return Path(os.environ["CUMX_CACHE_DIR"]) / "weights"


def files(root: Path) -> list[str]:
    if not root.exists():
        return []
    return sorted(p.relative_to(root).as_posix() for p in root.rglob("*") if p.is_file())


# -- download-weights --------------------------------------------------------------------------


def test_download_prints_path_and_size_and_lands_verified(server: FakeZenodo, cache: Path) -> None:
    result = cumx("download-weights", "xumx")
    assert result.exit_code == 0, show(result)
    path = cache / "xumx" / XUMX_FILE
    assert result.stdout == f"{path}\t{len(ASTEROID) / 1e6:.1f} MB\tdownloaded\n"
    assert result.stderr == (f"downloading xumx (1 file(s), {len(ASTEROID) / 1e6:.1f} MB) from "
                             f"{server.url}/records/4704231 to {cache / 'xumx'}\n")
    assert files(cache) == [f"xumx/{XUMX_FILE}", f"xumx/{XUMX_FILE}.sha256"]

    again = cumx("download-weights", "xumx")
    assert again.exit_code == 0 and again.stdout.endswith("\tcached\n") and again.stderr == ""
    forced = cumx("download-weights", "xumx", "--force")
    assert forced.exit_code == 0 and forced.stdout.endswith("\tdownloaded\n")
    assert server.file_requests(XUMX_FILE) == [None, None]


def test_list_shows_every_model_and_what_is_cached(server: FakeZenodo, cache: Path) -> None:
    before = cumx("download-weights", "--list")
    assert before.exit_code == 0, show(before)
    lines = before.stdout.splitlines()
    names = [line.split()[0] for line in lines[1:-1]]
    assert names == ["xumx", "xumx-hq", "xumxl", "umxhq", "umx", "umxl", "xumx-nnabla"]
    assert lines[-1] == f"cache: {cache}"
    assert "CC BY-NC-SA 4.0" in before.stdout and server.requests == []  # --list is offline
    assert cumx("download-weights", "xumx").exit_code == 0
    after = cumx("download-weights", "--list").stdout.splitlines()
    assert after[1].split()[:4] == ["xumx", f"{len(ASTEROID) / 1e6:.1f}", "MB", "yes"]
    assert after[2].split()[3] == "no"


def test_cache_dir_flag_overrides_the_environment(server: FakeZenodo, tmp_path: Path, cache: Path) -> None:
    result = cumx("download-weights", "xumx", "--cache-dir", tmp_path / "elsewhere")
    assert result.exit_code == 0, show(result)
    assert (tmp_path / "elsewhere" / "weights" / "xumx" / XUMX_FILE).is_file() and files(cache) == []


@pytest.mark.parametrize(("args", "code", "message"), [
    (("--force",), 2, "--all"),
    (("xumx", "--all"), 2, "--all"),
    (("xumz",), 2, "did you mean 'xumx'"),
    (("xumx", "nope"), 2, "unknown model 'nope'"),
], ids=["no-name", "name-and-all", "typo", "one-unknown"])
def test_usage_and_unknown_names(server: FakeZenodo, args: tuple[str, ...], code: int, message: str) -> None:
    result = cumx("download-weights", *args)
    assert result.exit_code == code, show(result)
    (line,) = result.stderr.strip().splitlines()
    assert line.startswith("error:") and message in line
    assert server.requests == []  # every name is checked before any download


def test_mismatch_is_one_line_and_keeps_nothing(server: FakeZenodo, cache: Path) -> None:
    server.behaviour[XUMX_FILE] = Behaviour(record_md5="0" * 32)
    result = cumx("download-weights", "xumx")
    assert result.exit_code == 1, show(result)
    (line,) = result.stderr.strip().splitlines()[1:]  # after the "downloading" line
    assert line.startswith("error:") and "md5" in line and "nothing was kept" in line
    assert files(cache) == []


def test_offline_error_names_the_command_and_the_path(server: FakeZenodo, cache: Path,
                                                      monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("CUMX_OFFLINE", "1")
    result = cumx("download-weights", "xumx")
    assert result.exit_code == 1, show(result)
    (line,) = result.stderr.strip().splitlines()
    assert "cumx download-weights xumx" in line and str(cache / "xumx") in line
    assert server.requests == []


def test_mirror_flag(server: FakeZenodo, tmp_path: Path) -> None:
    assert cumx("download-weights", "xumx", "--cache-dir", tmp_path / "src").exit_code == 0
    for rel in files(tmp_path / "src" / "weights"):  # a mirror serves a weights folder
        server.static[f"/m/{rel}"] = (tmp_path / "src" / "weights" / rel).read_bytes()
    server.records.clear()  # Zenodo "down": only the mirror answers
    result = cumx("download-weights", "xumx", "--mirror", f"{server.url}/m", "--cache-dir", tmp_path / "dst")
    assert result.exit_code == 0, show(result)
    assert f"from {server.url}/m to" in result.stderr
    assert (tmp_path / "dst" / "weights" / "xumx" / XUMX_FILE).read_bytes() == ASTEROID


# -- separate: first use -----------------------------------------------------------------------


def test_separate_downloads_the_default_model_on_first_use(server: FakeZenodo, cache: Path,
                                                           song: Path) -> None:
    first = cumx("separate", song, "-o", "out")
    assert first.exit_code == 0, show(first)
    downloading = [line for line in first.stderr.splitlines() if "downloading" in line]
    assert len(downloading) == 1 and "xumx (first use)" in downloading[0]
    assert str(cache / "xumx") in downloading[0]
    assert sorted(p.name for p in (Path("out") / "song").iterdir()) == [
        "bass.wav", "drums.wav", "other.wav", "vocals.wav"]
    second = cumx("separate", song, "-o", "out2")
    assert second.exit_code == 0, show(second)
    assert "downloading" not in second.stderr
    assert server.file_requests(XUMX_FILE) == [None]


def test_separate_offline_without_the_model(server: FakeZenodo, song: Path, cache: Path) -> None:
    result = cumx("separate", song, "-o", "out", "--offline")
    assert result.exit_code == 1, show(result)
    (line,) = result.stderr.strip().splitlines()
    assert "cumx download-weights xumx" in line and str(cache / "xumx") in line
    assert not Path("out").exists() and server.requests == []


# -- no network at all -------------------------------------------------------------------------


@pytest.mark.parametrize("command", ["download-weights", "separate"])
def test_unreachable_network_in_process(monkeypatch: pytest.MonkeyPatch, song: Path, cache: Path,
                                        command: str) -> None:
    """The real zenodo.org, with every connection failing as on a machine without a route."""
    def no_route(self: socket.socket, address: object) -> None:
        raise OSError(errno.ENETUNREACH, "Network is unreachable")

    monkeypatch.setattr(socket.socket, "connect", no_route)
    monkeypatch.setattr(socket, "getaddrinfo",
                        lambda *a, **k: [(socket.AF_INET, socket.SOCK_STREAM, 6, "", ("192.0.2.1", 443))])
    args = ("download-weights", "xumx") if command == "download-weights" else ("separate", song, "-o", "out")
    started = time.monotonic()
    result = cumx(*args)
    assert time.monotonic() - started < 30
    assert result.exit_code == 1, show(result)
    (line,) = result.stderr.strip().splitlines()
    assert "network is unreachable" in line and "zenodo.org" in line
    assert "CUMX_WEIGHTS_MIRROR" in line and str(cache) in line
    assert files(cache) == [] and not Path("out").exists()


@pytest.mark.slow
@pytest.mark.parametrize("command", ["download-weights", "separate"])
def test_unreachable_host_in_a_real_process(tmp_path: Path, song: Path, command: str) -> None:
    closed = socket.socket()
    closed.bind(("127.0.0.1", 0))
    port = closed.getsockname()[1]
    closed.close()  # nothing listens there: connection refused
    env = {**os.environ, "CUMX_ZENODO_URL": f"http://127.0.0.1:{port}",
           "CUMX_CACHE_DIR": str(tmp_path / "c"), "PYTHONPATH": str(Path(__file__).resolve().parents[2])}
    args = (["download-weights", "xumx"] if command == "download-weights"
            else ["separate", str(song), "-o", "out"])
    started = time.monotonic()
    proc = subprocess.run([sys.executable, "-m", "cumx_cli", *args], capture_output=True, text=True,
                          env=env, timeout=60)
    assert time.monotonic() - started < 30
    assert proc.returncode == 1, proc.stderr
    (line,) = proc.stderr.strip().splitlines()
    assert line.startswith("error:") and "network is unreachable" in line and "Traceback" not in proc.stderr
    assert not (tmp_path / "c").exists()


def test_all_keeps_going_after_a_failure_and_exits_1(server: FakeZenodo, tmp_path: Path) -> None:
    assert cumx("download-weights", "xumx", "--cache-dir", tmp_path / "src").exit_code == 0
    for rel in files(tmp_path / "src" / "weights"):
        server.static[f"/m/{rel}"] = (tmp_path / "src" / "weights" / rel).read_bytes()
    result = cumx("download-weights", "--all", "--mirror", f"{server.url}/m", "--cache-dir", tmp_path / "dst")
    assert result.exit_code == 1, show(result)
    dst = tmp_path / "dst" / "weights"
    assert result.stdout == f"{dst / 'xumx' / XUMX_FILE}\t{len(ASTEROID) / 1e6:.1f} MB\tdownloaded\n"
    errors = [line for line in result.stderr.splitlines() if line.startswith("error:")]
    assert len(errors) == 6 and all("HTTP 404" in line for line in errors)
    assert files(dst) == [f"xumx/{XUMX_FILE}", f"xumx/{XUMX_FILE}.sha256"]
