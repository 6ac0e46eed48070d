"""The cUMX network: layout, masks, parameter count, and what bridging changes."""

from __future__ import annotations

import pytest
import torch

from cumx_cli.engine.config import ModelConfig, bandwidth_to_max_bin
from cumx_cli.engine.errors import ShapeError
from cumx_cli.engine.model import CrossUMX
from tests.conftest import random_model, tiny_config


def test_max_bin_from_bandwidth() -> None:
    assert bandwidth_to_max_bin(44100, 4096, 16000) == 1487  # spec §1.1
    assert bandwidth_to_max_bin(16000, 1024, 16000) == 513  # capped at the bin count (umxse)


def test_full_size_parameter_count_matches_the_paper_model() -> None:
    with torch.device("meta"):
        model = CrossUMX(ModelConfig())
    assert sum(p.numel() for p in model.parameters()) == 35_573_392  # spec §1.4
    with torch.device("meta"):
        umx = CrossUMX(ModelConfig(bridge=False))
    assert sum(p.numel() for p in umx.parameters()) == 35_573_392  # bridging adds nothing


@pytest.mark.parametrize("channels", [1, 2])
@pytest.mark.parametrize("sources", [("a", "b"), ("bass", "drums", "vocals", "other")])
@pytest.mark.parametrize("bridge", [True, False])
def test_masks_layout_and_sign(channels: int, sources: tuple[str, ...], bridge: bool) -> None:
    config = tiny_config(num_channels=channels, sources=sources, bridge=bridge, n_fft=256,
                         hop_length=64, max_bin=100, num_layers=2)
    model = random_model(config)
    mag = torch.rand(3, channels, 129, 11)
    masks = model(mag)
    assert masks.shape == (3, len(sources), channels, 129, 11)
    assert (masks >= 0).all() and masks.max() > 0


def test_wrong_layout_is_rejected() -> None:
    model = random_model(tiny_config(n_fft=256, hop_length=64, max_bin=100))
    with pytest.raises(ShapeError):
        model(torch.rand(1, 129, 2, 11))


def _cross_gradient(bridge: bool) -> float:
    config = tiny_config(sources=("a", "b"), bridge=bridge, n_fft=256, hop_length=64, max_bin=100)
    model = random_model(config)
    masks = model(torch.rand(1, 2, 129, 5))
    masks[:, 0].sum().backward()  # source a's output ...
    return float(model.nets["b"].fc1.weight.grad.abs().sum())  # ... against source b's encoder


def test_bridging_couples_the_sources() -> None:
    assert _cross_gradient(bridge=True) > 0
    assert _cross_gradient(bridge=False) == 0


@pytest.mark.parametrize("grad", [True, False])
def test_bridged_forward_equals_a_direct_transcription_of_the_spec(grad: bool) -> None:
    """Spec §1.3 steps 1-11 written out with plain tensor operations; also without
    gradients, where the decoder applies bn3 and the output scaling as one affine map."""
    config = tiny_config(sources=("a", "b", "c"), n_fft=256, hop_length=64, max_bin=100,
                         num_layers=2)
    model = random_model(config)
    mag = torch.rand(2, 2, 129, 7)
    x = mag.permute(3, 0, 1, 2)[..., :100]  # (frame, batch, channel, bin)
    hs, nets = [], [model.nets[s] for s in config.sources]
    for net in nets:
        h = ((x + net.input_mean) * net.input_scale).reshape(14, -1) @ net.fc1.weight.T
        h = ((h - net.bn1.running_mean) / torch.sqrt(net.bn1.running_var + 1e-5) * net.bn1.weight
             + net.bn1.bias)
        hs.append(torch.tanh(h).reshape(7, 2, -1))
    h_avg = sum(hs) / 3
    z_avg = sum(torch.cat([h, net.lstm(h_avg)[0]], -1) for h, net in zip(hs, nets, strict=True)) / 3
    for j, net in enumerate(nets):
        y = z_avg.reshape(14, -1) @ net.fc2.weight.T
        y = torch.relu((y - net.bn2.running_mean) / torch.sqrt(net.bn2.running_var + 1e-5)
                       * net.bn2.weight + net.bn2.bias)
        y = y @ net.fc3.weight.T
        y = ((y - net.bn3.running_mean) / torch.sqrt(net.bn3.running_var + 1e-5) * net.bn3.weight
             + net.bn3.bias)
        mask = torch.relu(y.reshape(7, 2, 2, 129) * net.output_scale + net.output_mean)
        with torch.set_grad_enabled(grad):
            got = model(mag)[:, j]
        torch.testing.assert_close(got, mask.permute(1, 2, 3, 0), rtol=1e-5, atol=1e-6)


def test_decoder_without_gradients_in_training_mode_uses_batch_statistics() -> None:
    """The one-pass affine map is for running statistics only: in training mode bn3 normalises
    with the batch's own, with or without gradients."""
    config = tiny_config(sources=("a", "b"), bridge=False, n_fft=256, hop_length=64, max_bin=100)
    model = random_model(config).train()
    net = model.net("a")
    assert net._output_affine() is None
    mag = torch.rand(2, 2, 129, 9)
    torch.manual_seed(0)  # the same dropout masks in both runs
    with_grad = model(mag)
    torch.manual_seed(0)
    with torch.no_grad():
        without = model(mag)
    torch.testing.assert_close(without, with_grad.detach())
    assert model.eval().net("a")._output_affine() is not None
