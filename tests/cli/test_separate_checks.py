"""What the commands check before they load a model, how they name bad ``--model`` values, and
the format lists that the help, the README and the code share."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
import soundfile as sf

from cumx_cli.commands.separate import Format
from cumx_cli.engine.audio.formats import AUDIO_SUFFIXES, READ_FORMATS, WRITE_FORMATS
from tests.cli.helpers import cumx, error_lines, json_lines, show
from tests.conftest import RATE, music

README = Path(__file__).resolve().parents[2] / "README.md"
#: A model name that is valid but cannot be had: offline, with an empty cache. Were it loaded
#: before the check under test, its "not in the cache" error would show instead.
UNAVAILABLE = ["-m", "xumx", "--offline", "--cache-dir", "empty-cache"]


@pytest.fixture(autouse=True)
def _in_tmp(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv("CUMX_OFFLINE", raising=False)


def _one_error(result) -> str:  # type: ignore[no-untyped-def]
    assert "Traceback" not in result.output, show(result)
    (line,) = error_lines(result)
    return line


def _wav(path: Path) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    sf.write(path, music(1.0), RATE, subtype="PCM_16")
    return path


# -- before the model ---------------------------------------------------------------------------


def test_missing_inputs_fail_before_the_model_loads() -> None:
    result = cumx("separate", "typo.wav", "--json", *UNAVAILABLE)
    assert result.exit_code == 1, show(result)
    assert "typo.wav: no such file" in _one_error(result)
    assert [obj["status"] for obj in json_lines(result)] == ["error"]
    assert not Path("separated").exists() and not Path("empty-cache").exists()


def test_one_missing_input_among_good_ones_is_left_to_the_run(model: str) -> None:
    _wav(Path("good.wav"))
    result = cumx("separate", "typo.wav", "good.wav", "-m", model, "--json")
    assert result.exit_code == 1, show(result)
    assert [obj["status"] for obj in json_lines(result)] == ["error", "ok"]


@pytest.mark.parametrize("blocker", ["a-file", "a-file/below"])
def test_an_output_that_cannot_be_created_fails_before_the_model_loads(blocker: str) -> None:
    song = _wav(Path("song.wav"))
    Path("a-file").write_text("not a folder\n")
    result = cumx("separate", song, "-o", blocker, *UNAVAILABLE)
    assert result.exit_code == 1, show(result)
    assert _one_error(result) == f"error: {blocker}: cannot create the output folder: a-file is a file"


def test_eval_checks_its_output_folder_before_the_model() -> None:
    from tests.synthetic_musdb import write_musdb

    write_musdb(Path("data"), {"Track": 1.0}, subset="test")
    Path("a-file").write_text("not a folder\n")
    result = cumx("eval", "--musdb", "data", "--out", "a-file/scores", *UNAVAILABLE)
    assert result.exit_code == 1, show(result)
    assert "a-file/scores: cannot create the output folder" in _one_error(result)


# -- what --model names --------------------------------------------------------------------------


@pytest.mark.parametrize("command", ["separate", "eval", "download-weights"])
def test_an_unknown_model_name_is_a_usage_error(command: str) -> None:
    song = _wav(Path("song.wav"))
    from tests.synthetic_musdb import write_musdb

    write_musdb(Path("data"), {"Track": 1.0}, subset="test")
    args = {"separate": ["separate", song, "-m", "xumz"], "eval": ["eval", "--musdb", "data", "-m", "xumz"],
            "download-weights": ["download-weights", "xumz"]}[command]
    result = cumx(*args, "--cache-dir", "cache")
    assert result.exit_code == 2, show(result)
    assert "unknown model 'xumz': did you mean 'xumx'?" in _one_error(result)


def test_offline_as_a_flag_is_named_as_one() -> None:
    song = _wav(Path("song.wav"))
    line = _one_error(cumx("separate", song, *UNAVAILABLE))
    assert "not in the cache" in line and "offline mode is on (--offline or CUMX_OFFLINE)" in line


def test_a_song_given_as_the_model_is_named_for_what_it_is() -> None:
    song = _wav(Path("song.wav"))
    result = cumx("separate", song, "-m", song)
    assert result.exit_code == 1, show(result)
    assert _one_error(result) == "error: song.wav: this is an audio file (WAV), not a model checkpoint"


# -- the format lists -----------------------------------------------------------------------------


def _readme_section(title: str) -> str:
    text = README.read_text()
    start = text.index(f"## {title}\n")
    end = text.index("\n## ", start + 1)
    return text[start:end]


def test_help_readme_and_code_name_the_same_formats() -> None:
    help_text = " ".join(cumx("separate", "--help").stdout.replace("│", " ").split())  # rich wraps
    assert READ_FORMATS in help_text
    section = _readme_section("`cumx separate`")
    assert READ_FORMATS in " ".join(section.split()), "the README's INPUT paragraph"
    assert tuple(f.value for f in Format) == WRITE_FORMATS
    (row,) = [line for line in section.splitlines() if line.startswith("| `--format F`")]
    assert re.findall(r"`(\w+)`", row.split("|")[3])[: len(WRITE_FORMATS)] == list(WRITE_FORMATS)
    listed = re.search(r"searched recursively for the audio\s+suffixes \(`([^`]+)`\)", section)
    assert listed is not None and set(listed.group(1).split()) == AUDIO_SUFFIXES


def test_flac_has_no_float_samples() -> None:
    song = _wav(Path("song.wav"))
    result = cumx("separate", song, "--format", "flac", "--dtype", "float32", *UNAVAILABLE)
    assert result.exit_code == 2, show(result)
    assert "--format flac cannot store float32 samples" in _one_error(result)


@pytest.mark.parametrize("command", ["separate", "eval", "train", "download-weights"])
def test_flags_show_no_value_placeholder_in_help(command: str) -> None:
    result = cumx(command, "--help")
    assert result.exit_code == 0, show(result)
    assert "--json" in result.stdout or "--force" in result.stdout or "--bridge" in result.stdout
    assert "<bool>" not in result.stdout
