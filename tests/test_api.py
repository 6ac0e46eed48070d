"""The Python API at the package's top (``cumx_cli.load_model``, ``separate``, ``separate_file``),
with the tiny random models of conftest: cheap to import, same results as the engine."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest
import soundfile as sf
import torch

import cumx_cli
from cumx_cli.engine.config import InferenceConfig
from cumx_cli.engine.errors import AudioIOError, ConfigError, ShapeError, UnknownWeightsError
from cumx_cli.engine.inference.outputs import OutputSpec
from cumx_cli.engine.inference.separator import Separator
from cumx_cli.engine.model import CrossUMX
from tests.conftest import RATE, music, random_model, tiny_config

SOURCES = ("bass", "drums", "vocals", "other")


@pytest.fixture(scope="module")
def model() -> CrossUMX:
    return random_model(tiny_config())


def _stereo(seconds: float = 1.0, rate: int = RATE) -> torch.Tensor:
    return torch.from_numpy(music(seconds, rate=rate).T.copy())  # (channel, time)


@pytest.mark.slow
def test_import_is_cheap_and_the_api_is_lazy() -> None:
    code = ("import sys, cumx_cli; assert 'torch' not in sys.modules, 'torch at import'; "
            "assert {'load_model', 'separate', 'separate_file'} <= set(dir(cumx_cli)); "
            "cumx_cli.separate; assert 'torch' in sys.modules")
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr
    with pytest.raises(AttributeError, match="no_such_thing"):
        cumx_cli.no_such_thing  # noqa: B018 - the attribute access is the test


def test_load_model_from_a_path_or_a_string(tiny_model_path: Path) -> None:
    for spec in (tiny_model_path, str(tiny_model_path)):
        loaded = cumx_cli.load_model(spec)
        assert isinstance(loaded, CrossUMX) and loaded.sources == SOURCES
        assert not loaded.training


def test_load_model_unknown_name_fails_before_any_io(tmp_path: Path) -> None:
    with pytest.raises(UnknownWeightsError, match="no-such-model"):
        cumx_cli.load_model("no-such-model", cache_dir=tmp_path / "cache")
    assert not (tmp_path / "cache").exists()


def test_separate_matches_the_separator(model: CrossUMX) -> None:
    x = _stereo()
    stems = cumx_cli.separate(x, RATE, model=model)
    assert tuple(stems) == SOURCES
    expected = Separator(model).separate(x[None])[0]
    for j, source in enumerate(SOURCES):
        assert stems[source].shape == x.shape
        torch.testing.assert_close(stems[source], expected[j], rtol=0, atol=0)


def test_separate_keeps_rate_channels_and_length_of_the_input(model: CrossUMX) -> None:
    hi = _stereo(0.7, rate=48000)
    stems = cumx_cli.separate(hi, 48000, model=model)
    assert all(s.shape == hi.shape for s in stems.values())
    mono = hi[0]
    stems = cumx_cli.separate(mono, 48000, model=model)
    assert all(s.shape == mono.shape and torch.isfinite(s).all() for s in stems.values())


def test_separate_reuses_a_separator_and_takes_a_config(model: CrossUMX) -> None:
    x = _stereo(0.5)
    separator = Separator(model, InferenceConfig(residual=True, niter=0))
    stems = cumx_cli.separate(x, RATE, model=separator)
    assert tuple(stems) == (*SOURCES, "residual")
    again = cumx_cli.separate(x, RATE, model=model, config=InferenceConfig(residual=True, niter=0))
    torch.testing.assert_close(again["residual"], stems["residual"], rtol=0, atol=0)
    with pytest.raises(ConfigError, match="Separator"):
        cumx_cli.separate(x, RATE, model=separator, config=InferenceConfig())


@pytest.mark.parametrize(("waveform", "rate", "error"), [
    (torch.zeros(1, 2, 100), RATE, ShapeError),
    (torch.zeros(2, 100), 0, ConfigError),
], ids=["3-d", "rate-0"])
def test_separate_rejects_bad_input(model: CrossUMX, waveform: torch.Tensor, rate: int,
                                    error: type[Exception]) -> None:
    with pytest.raises(error):
        cumx_cli.separate(waveform, rate, model=model)


def test_separate_file_writes_the_cli_layout(tiny_model_path: Path, song: Path,
                                             tmp_path: Path) -> None:
    out = tmp_path / "out"
    paths = cumx_cli.separate_file(song, out, model=str(tiny_model_path))
    assert paths == {s: out / "song" / f"{s}.wav" for s in SOURCES}
    for path in paths.values():
        info = sf.info(str(path))
        assert (info.samplerate, info.channels, info.frames) == (RATE, 2, sf.info(str(song)).frames)


def test_separate_file_takes_output_options(model: CrossUMX, song: Path, tmp_path: Path) -> None:
    spec = OutputSpec(outdir=Path("ignored"), fmt="flac", stems=("vocals",),
                      template="{source}-{name}.{ext}")
    paths = cumx_cli.separate_file(str(song), tmp_path / "o", model=model, output=spec)
    assert paths == {"vocals": tmp_path / "o" / "vocals-song.flac"}
    assert sf.info(str(paths["vocals"])).format == "FLAC"


def test_separate_file_raises_the_inputs_error(model: CrossUMX, tmp_path: Path) -> None:
    with pytest.raises(AudioIOError, match="missing.wav"):
        cumx_cli.separate_file(tmp_path / "missing.wav", tmp_path / "out", model=model)
    assert not (tmp_path / "out").exists()
