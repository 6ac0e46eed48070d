"""The README tour: every ```bash and ```python example in README.md runs here, as written.

The first block (the two set-up commands) is run verbatim by ``.ci/run``; this module checks
that, and runs every other example in order in one sandbox folder that holds the files the
examples name (``song.mp3``, ``album/``, ``music/`` ...), with ``HOME`` and the weights cache
inside it and a fake Zenodo on 127.0.0.1 serving small X-UMX checkpoints under the published
names (the network guard of conftest stays on). Each block must exit 0, and what it is said to
produce is checked. The few textual changes made before running are listed in
:data:`SUBSTITUTIONS`, each with its reason.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

from tests.conftest import FIXTURES, RATE, music
from tests.fake_zenodo import FakeZenodo

ROOT = Path(__file__).resolve().parents[1]
README = (ROOT / "README.md").read_text()
ASTEROID = (FIXTURES / "peers" / "xumx_asteroid.pth").read_bytes()
#: Published names the examples use, with (Zenodo record, file name) from the registry.
RECORDS = {4704231: "pretrained_xumx.pth", 4740378: "pretrained_xumx_musdb18HQ.pth"}
#: (text in README, what runs instead, why). Nothing else is changed.
SUBSTITUTIONS = [
    ("localhost:8000", "localhost:{port}", "port 8000 may be taken on a CI machine"),
    ("-d shared-weights 8000", "-d shared-weights {port}", "the same port"),
]


def blocks(language: str) -> list[tuple[int, str]]:
    """(line number, text) of every fenced block in the README with this info string."""
    found, lines = [], README.splitlines()
    for n, line in enumerate(lines):
        if line.strip() == f"```{language}":
            end = next(i for i in range(n + 1, len(lines)) if lines[i].startswith("```"))
            found.append((n + 1, "\n".join(lines[n + 1 : end])))
    return found


BASH = blocks("bash")
PYTHON = blocks("python")


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="module")
def sandbox(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Path, dict[str, str]]]:
    root = tmp_path_factory.mktemp("tour")
    song = music(3.0)
    sf.write(root / "song.mp3", song, RATE)
    sf.write(root / "song.wav", song, RATE)
    for path in ("album/01 intro.wav", "album/disc 2/02.flac", "music/a.wav", "music/b.flac",
                 "music/c.wav"):
        (root / path).parent.mkdir(parents=True, exist_ok=True)
        sf.write(root / path, music(1.5, seed=len(path)), RATE)
    (root / "music" / "broken.wav").write_bytes(b"")  # the jq example reports this one
    sf.write(root / "a.wav", music(1.0, seed=7), RATE)
    sf.write(root / "b.flac", music(1.0, seed=8), 48000)
    (root / "xumx.pth").write_bytes(ASTEROID)
    (root / "home").mkdir()
    (root / "completions").symlink_to(ROOT / "completions")
    (root / "benchmarks").symlink_to(ROOT / "benchmarks")
    zenodo = FakeZenodo()
    for record, name in RECORDS.items():
        zenodo.add_record(record, {name: ASTEROID})
    bin_dir = str(Path(sys.executable).parent)
    env = {**os.environ, "HOME": str(root / "home"), "CUMX_CACHE_DIR": str(root / "cache"),
           "CUMX_ZENODO_URL": zenodo.url, "PATH": f"{bin_dir}:{os.environ['PATH']}",
           "PYTHONPATH": str(ROOT), "PORT": str(_free_port())}
    for var in ("CUMX_OFFLINE", "CUMX_WEIGHTS_MIRROR", "CUMX_DEVICE"):
        env.pop(var, None)
    yield root, env
    zenodo.close()


def run_block(text: str, root: Path, env: dict[str, str], timeout: float = 600) -> str:
    """Run a bash block (strict mode) in its own process group; background jobs are killed
    when it ends. Returns stdout."""
    for old, new, _ in SUBSTITUTIONS:
        text = text.replace(old, new.format(port=env["PORT"]))
    out_path, err_path = root / ".block.out", root / ".block.err"
    with out_path.open("w") as out_file, err_path.open("w") as err_file:
        # Files, not pipes: a background job (the mirror's HTTP server) keeps a pipe open.
        proc = subprocess.Popen(["bash", "-euo", "pipefail", "-c", text], cwd=root, env=env,
                                stdout=out_file, stderr=err_file, start_new_session=True)
        try:
            proc.wait(timeout=timeout)
        finally:
            try:
                os.killpg(proc.pid, signal.SIGTERM)
            except ProcessLookupError:
                pass
    out, err = out_path.read_text(), err_path.read_text()
    assert proc.returncode == 0, f"README block failed (exit {proc.returncode}):\n{text}\n{err[-3000:]}"
    return out


def _block(startswith: str) -> str:
    (text,) = [t for _, t in BASH if t.lstrip().startswith(startswith)]
    return text


def stems(folder: Path) -> set[str]:
    return {p.name for p in folder.iterdir()} if folder.is_dir() else set()


FOUR = {"bass.wav", "drums.wav", "vocals.wav", "other.wav"}


def test_the_setup_commands_are_the_first_block_and_ci_runs_them_verbatim() -> None:
    line, first = BASH[0]
    assert line < 10, "README must start with the two set-up commands"
    install, tests = first.splitlines()
    assert install.startswith("pip install -e . && cumx separate")
    assert tests == 'pip install -e ".[dev]" && python -m pytest -q'
    ci = (ROOT / ".ci" / "run").read_text()
    assert "README.md" in ci and "bash -euo pipefail" in ci  # it extracts and runs this block


def test_every_block_is_covered() -> None:
    """A new example block fails here until this module runs it."""
    covered = {"pip install -e . &&", "cumx separate song.mp3", "cumx separate music/",
               "for k in", "cumx download-weights xumx", "cumx train --synthetic-data",
               "mkdir -p ~/.local", 'pip install -e ".[dev]"\n'}
    for _, text in BASH:
        assert any(text.startswith(c) for c in covered), f"README block not run by a test:\n{text}"
    assert len(PYTHON) == 2


def test_quick_start(sandbox: tuple[Path, dict[str, str]]) -> None:
    root, env = sandbox
    out = run_block(_block("cumx separate song.mp3"), root, env)
    assert stems(root / "separated" / "song") == FOUR
    assert stems(root / "stems" / "01 intro") == FOUR
    assert stems(root / "stems" / "disc 2" / "02") == FOUR
    for name in ("a", "b"):
        assert stems(root / "separated" / name) == {"vocals.flac"}
        info = sf.info(str(root / "separated" / name / "vocals.flac"))
        assert info.subtype == "PCM_24" and info.samplerate == (RATE if name == "a" else 48000)
    listing = out.splitlines()
    for name in ("xumx", "xumx-hq"):  # downloaded by the first and third lines: now cached
        assert any(re.match(rf"{name}\s+[\d.]+ MB\s+yes\s", row) for row in listing), out


def test_batch_processing_with_json_and_jq(sandbox: tuple[Path, dict[str, str]]) -> None:
    root, env = sandbox
    out = run_block(_block("cumx separate music/"), root, env)
    report = [json.loads(line) for line in (root / "report.jsonl").read_text().splitlines()]
    status = {Path(r["input"]).name: r["status"] for r in report}
    assert status == {"a.wav": "ok", "b.flac": "ok", "c.wav": "ok", "broken.wav": "error"}
    lines = out.splitlines()
    assert lines[0] == "some files failed"  # exit 1 from cumx, the script goes on
    assert len(lines) == 2 and lines[1].startswith("music/broken.wav: "), out


def test_sharding_a_folder(sandbox: tuple[Path, dict[str, str]]) -> None:
    root, env = sandbox
    shutil.rmtree(root / "stems")
    (root / "music" / "broken.wav").unlink()
    run_block(_block("for k in"), root, env)
    assert {p.name for p in (root / "stems").iterdir()} == {"a", "b", "c"}
    assert all(stems(root / "stems" / t) == FOUR for t in ("a", "b", "c"))


def test_mirror(sandbox: tuple[Path, dict[str, str]]) -> None:
    root, env = sandbox
    run_block(_block("cumx download-weights xumx"), root, env)
    cached = root / "node-cache" / "xumx" / RECORDS[4704231]
    assert cached.read_bytes() == ASTEROID and cached.with_name(cached.name + ".sha256").is_file()
    assert stems(root / "from-mirror" / "song") == FOUR


def test_training_without_musdb(sandbox: tuple[Path, dict[str, str]]) -> None:
    root, env = sandbox
    run_block(_block("cumx train --synthetic-data"), root, env)
    metrics = [json.loads(line) for line in (root / "demo-run" / "metrics.jsonl").read_text().splitlines()]
    epochs = int(re.search(r"--epochs (\d+)", _block("cumx train --synthetic-data")).group(1))
    assert len(metrics) == epochs
    assert stems(root / "demo-stems" / "mixture") == FOUR
    summary = json.loads((root / "demo-eval" / "summary.json").read_text())
    assert summary  # scores for the synthetic test tracks
    assert (root / "demo-eval" / "summary.txt").is_file()


def test_completion_install(sandbox: tuple[Path, dict[str, str]]) -> None:
    root, env = sandbox
    run_block(_block("mkdir -p ~/.local"), root, env)
    home = root / "home"
    for installed, source in ((".local/share/bash-completion/completions/cumx", "cumx.bash"),
                              (".zfunc/_cumx", "cumx.zsh"),
                              (".config/fish/completions/cumx.fish", "cumx.fish")):
        assert (home / installed).read_text() == (ROOT / "completions" / source).read_text()


def test_development_block(sandbox: tuple[Path, dict[str, str]]) -> None:
    """The first two lines are .ci/run's own steps (checked above); the benchmarks run here
    with the quick flags the README shows."""
    root, env = sandbox
    text = _block('pip install -e ".[dev]"\n')
    lines = [line for line in text.splitlines() if line.strip()]
    assert lines[0] == 'pip install -e ".[dev]"' and lines[1].startswith("python -m pytest -q")
    out = run_block("\n".join(lines[2:]), root, env)
    assert "speed: 0.25 min stereo" in out and "chunk" in out
    assert "speed-up:" in out and "NaN frames in the same places: True" in out


@pytest.mark.parametrize("index", range(len(PYTHON)))
def test_python_examples(sandbox: tuple[Path, dict[str, str]], index: int) -> None:
    root, env = sandbox
    _, code = PYTHON[index]
    result = subprocess.run([sys.executable, "-c", code], cwd=root, env=env, capture_output=True,
                            text=True, timeout=300)
    assert result.returncode == 0, f"{code}\n{result.stderr[-3000:]}"
    if "MultiDomainLoss" in code:
        match = re.fullmatch(r"loss (\S+) = (\S+) \+ 10 x (\S+)\n", result.stdout)
        assert match, result.stdout
        total, freq, time = map(float, match.groups())
        assert np.isclose(total, freq + 10 * time, atol=0.01)  # printed to 3 decimals
    else:
        assert result.stdout.strip() == "('bass', 'drums', 'vocals', 'other')"
