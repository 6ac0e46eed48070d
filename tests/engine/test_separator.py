"""Chunked, batched separation: seamless joins, batch independence, whole-track equivalence."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from cumx_cli.engine.config import InferenceConfig
from cumx_cli.engine.errors import ConfigError
from cumx_cli.engine.inference.separator import Separator
from cumx_cli.engine.model import CrossUMX
from tests.conftest import music, random_model, tiny_config


def identity_model(sources: tuple[str, ...] = ("a", "b")) -> CrossUMX:
    """A model whose masks are all ones: relu(0 * x + 1)."""
    model = random_model(tiny_config(sources=sources))
    with torch.no_grad():
        for net in model.nets.values():
            net.output_scale.zero_()
            net.output_mean.fill_(1.0)
    return model


@pytest.mark.parametrize(("length", "chunk", "overlap"), [
    (1, 1000, 0), (2000, 1000, 0), (5000, 5000, 100), (5001, 5000, 100),
    (44_100 * 3 + 7, 20_000, 3_000), (100_000, 30_000, 0), (123_457, 9_999, 4_998),
])
def test_ones_masks_reconstruct_the_input_exactly(length: int, chunk: int, overlap: int) -> None:
    model = identity_model()
    rate = model.config.sample_rate
    config = InferenceConfig(chunk_seconds=chunk / rate, overlap_seconds=overlap / rate, niter=0)
    x = torch.from_numpy(music(length / rate + 1)[:length].T.copy())[None]
    out = Separator(model, config).separate(x)
    assert out.shape == (1, 2, 2, length)
    for j in range(2):  # every source is the mixture itself
        assert (out[0, j] - x[0]).abs().max() < 1e-5


def test_em_sources_sum_to_the_input_across_chunks() -> None:
    model = identity_model(("a", "b", "c"))  # (a random model may zero every mask of a bin)
    x = torch.from_numpy(music(4.0).T.copy())[None]
    out = Separator(model, InferenceConfig(chunk_seconds=1.5, overlap_seconds=0.3)).separate(x)
    assert (out[0].sum(0) - x[0]).abs().max() < 1e-3 * x.abs().max()


def test_batch_size_does_not_change_the_result() -> None:
    model = random_model(tiny_config())
    x = torch.from_numpy(np.stack([music(5.0, seed=1).T, music(5.0, seed=2).T]))
    outs = [Separator(model, InferenceConfig(chunk_seconds=1.3, overlap_seconds=0.2,
                                             batch_size=b)).separate(x) for b in (1, 3, 8)]
    for other in outs[1:]:
        torch.testing.assert_close(other, outs[0], rtol=1e-4, atol=1e-5)


def test_short_input_is_separated_whole_like_process() -> None:
    model = random_model(tiny_config())
    x = torch.from_numpy(music(2.0).T.copy())[None]
    sep = Separator(model, InferenceConfig(chunk_seconds=30))
    torch.testing.assert_close(sep.separate(x), sep.process(x))


def test_chunked_output_stays_close_to_whole_track_output() -> None:
    """24 s, random model: 8 s chunks with 1 s cross-fades vs one 24 s pass (>= 25 dB)."""
    model = random_model(tiny_config(num_layers=2), seed=3)
    x = torch.from_numpy(music(24.0, seed=4).T.copy())[None]
    whole = Separator(model, InferenceConfig(chunk_seconds=25)).separate(x)
    chunked = Separator(model, InferenceConfig(chunk_seconds=8, overlap_seconds=1)).separate(x)
    for j in range(whole.shape[1]):
        snr = 10 * torch.log10(whole[0, j].pow(2).sum() / (chunked[0, j] - whole[0, j]).pow(2).sum())
        assert snr > 25, f"source {j}: {snr:.1f} dB"


def test_tiny_and_silent_inputs() -> None:
    model = random_model(tiny_config())
    sep = Separator(model, InferenceConfig())
    one = sep.separate(torch.full((1, 2, 1), 0.5))
    assert one.shape == (1, 4, 2, 1) and torch.isfinite(one).all()
    silent = sep.separate(torch.zeros(1, 2, 44100))
    assert torch.isfinite(silent).all() and silent.abs().max() == 0


def test_single_source_needs_residual_for_em() -> None:
    model = random_model(tiny_config(sources=("vocals",)))
    with pytest.raises(ConfigError, match="--residual"):
        Separator(model, InferenceConfig(niter=1))
    sep = Separator(model, InferenceConfig(niter=1, residual=True))
    assert sep.sources == ("vocals", "residual")
    x = torch.from_numpy(music(1.0).T.copy())[None]
    out = sep.separate(x)
    assert (out[0].sum(0) - x[0]).abs().max() < 1e-4


@pytest.mark.parametrize("value", [{"chunk_seconds": 0}, {"overlap_seconds": 30},
                                   {"overlap_seconds": -1}, {"niter": -1}, {"batch_size": -2}])
def test_bad_inference_options(value: dict[str, float]) -> None:
    with pytest.raises(ConfigError):
        InferenceConfig(**value)  # type: ignore[arg-type]


@pytest.mark.parametrize(("bridge", "window"), [(True, 0), (False, 300)])
def test_each_family_filters_in_its_reference_windows(bridge: bool, window: int) -> None:
    """X-UMX: the whole chunk at once (asteroid, Sony); Open-Unmix: openunmix's 300 frames."""
    model = random_model(tiny_config(bridge=bridge))
    assert Separator(model, InferenceConfig()).wiener_window == window
    assert Separator(model, InferenceConfig(wiener_window=50)).wiener_window == 50
    assert Separator(model, InferenceConfig(wiener_window=0)).wiener_window == 0


def test_wiener_window_must_not_be_negative() -> None:
    with pytest.raises(ConfigError, match="^wiener_window must be"):
        InferenceConfig(wiener_window=-1)
