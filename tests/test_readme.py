"""The README tour: every ```bash and ```python example in README.md runs here, as written.

The first block (the two set-up commands) is run verbatim by ``.ci/run``; this module checks
that, and runs the other examples in order in one sandbox folder (tests/readme_tour.py); the
training demo and the development block run in tests/test_readme_training.py. Each block must
exit 0, and what it is said to produce is checked.
"""

from __future__ import annotations

import json
import re
import shutil
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

from tests.conftest import RATE
from tests.fake_zenodo import ASTEROID
from tests.readme_tour import BASH, FOUR, PYTHON, RECORDS, ROOT, block, make_sandbox, run_block, stems

#: Minutes long: scheduled before the other modules (tests/conftest.py).
SCHEDULE_FIRST = True


@pytest.fixture(scope="module")
def sandbox(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Path, dict[str, str]]]:
    with make_sandbox(tmp_path_factory.mktemp("tour")) as made:
        yield made

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
               "mkdir -p ~/.local", 'pip install -e ".[dev]"\n', "cumx separate song.m4a --two-stems"}
    for _, text in BASH:
        assert any(text.startswith(c) for c in covered), f"README block not run by a test:\n{text}"
    assert len(PYTHON) == 2


@pytest.mark.slow
def test_quick_start(sandbox: tuple[Path, dict[str, str]]) -> None:
    root, env = sandbox
    out = run_block(block("cumx separate song.mp3"), root, env)
    assert stems(root / "separated" / "song") == FOUR
    assert stems(root / "separated" / "live") == {"vocals.wav", "no_vocals.wav"}
    assert stems(root / "separated" / "concert") == {f"{s.removesuffix('.wav')}.m4a" for s in FOUR}
    assert stems(root / "stems" / "01 intro") == FOUR
    assert stems(root / "stems" / "disc 2" / "02") == FOUR
    for name in ("a", "b"):
        assert stems(root / "separated" / name) == {"vocals.flac"}
        info = sf.info(str(root / "separated" / name / "vocals.flac"))
        assert info.subtype == "PCM_24" and info.samplerate == (RATE if name == "a" else 48000)
    listing = out.splitlines()
    for name in ("xumx", "xumx-hq"):  # downloaded by the first and third lines: now cached
        assert any(re.match(rf"{name}\s+[\d.]+ MB\s+yes\s", row) for row in listing), out


@pytest.mark.slow
def test_karaoke(sandbox: tuple[Path, dict[str, str]]) -> None:
    root, env = sandbox
    run_block(block("cumx separate song.m4a --two-stems"), root, env)
    assert stems(root / "karaoke" / "song") == {"vocals.wav", "no_vocals.wav"}
    for track in ("01 intro", "disc 2/02"):
        assert stems(root / "separated" / track) == {"vocals.m4a", "no_vocals.m4a"}


@pytest.mark.slow
def test_batch_processing_with_json_and_jq(sandbox: tuple[Path, dict[str, str]]) -> None:
    root, env = sandbox
    out = run_block(block("cumx separate music/"), root, env)
    report = [json.loads(line) for line in (root / "report.jsonl").read_text().splitlines()]
    status = {Path(r["input"]).name: r["status"] for r in report}
    assert status == {"a.wav": "ok", "b.flac": "ok", "c.wav": "ok", "broken.wav": "error"}
    lines = out.splitlines()
    assert lines[0] == "some files failed"  # exit 1 from cumx, the script goes on
    assert len(lines) == 2 and lines[1].startswith("music/broken.wav: "), out


@pytest.mark.slow
def test_sharding_a_folder(sandbox: tuple[Path, dict[str, str]]) -> None:
    root, env = sandbox
    shutil.rmtree(root / "stems")
    (root / "music" / "broken.wav").unlink()
    run_block(block("for k in"), root, env)
    assert {p.name for p in (root / "stems").iterdir()} == {"a", "b", "c"}
    assert all(stems(root / "stems" / t) == FOUR for t in ("a", "b", "c"))


@pytest.mark.slow
def test_mirror(sandbox: tuple[Path, dict[str, str]]) -> None:
    root, env = sandbox
    run_block(block("cumx download-weights xumx"), root, env)
    cached = root / "node-cache" / "weights" / "xumx" / RECORDS[4704231]
    assert cached.read_bytes() == ASTEROID and cached.with_name(cached.name + ".sha256").is_file()
    assert stems(root / "from-mirror" / "song") == FOUR


@pytest.mark.slow
def test_completion_install(sandbox: tuple[Path, dict[str, str]]) -> None:
    root, env = sandbox
    run_block(block("mkdir -p ~/.local"), root, env)
    home = root / "home"
    for installed, source in ((".local/share/bash-completion/completions/cumx", "cumx.bash"),
                              (".zfunc/_cumx", "cumx.zsh"),
                              (".config/fish/completions/cumx.fish", "cumx.fish")):
        assert (home / installed).read_text() == (ROOT / "completions" / source).read_text()


@pytest.mark.slow
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
