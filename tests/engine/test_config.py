"""``TrainConfig`` and ``EvalConfig``: round trips, older flat configs, errors that name fields."""

from __future__ import annotations

import dataclasses

import pytest

from cumx_cli.engine.config import EvalConfig, ModelConfig, TrainConfig, bandwidth_to_max_bin
from cumx_cli.engine.errors import ConfigError

#: ``TrainConfig.to_dict()`` as cumx wrote it before the config held a ``ModelConfig``.
FLAT = {
    "sources": ["bass", "drums", "vocals", "other"], "hidden_size": 8, "num_layers": 1,
    "bandwidth": 16000.0, "bridge": False, "multidomain": True, "combine": True, "alpha": 10.0,
    "wsdr_trim": 200, "seq_seconds": 6.0, "samples_per_track": 64, "batch_size": 16,
    "epochs": 1000, "lr": 0.001, "weight_decay": 1e-05, "lr_factor": 0.3, "lr_patience": 80,
    "lr_cooldown": 10, "patience": None, "valid_seconds": 10.0, "seed": 42, "workers": 0,
    "device": "auto", "amp": None,
}


@pytest.mark.parametrize("config", [
    TrainConfig(),
    TrainConfig(model=ModelConfig(sources=("vocals", "other"), hidden_size=16, num_layers=2,
                                  bridge=False, n_fft=2048, hop_length=512, max_bin=1025),
                bandwidth=8000.0,
                patience=5, amp="bf16"),
])
def test_train_config_round_trip(config: TrainConfig) -> None:
    assert TrainConfig.from_dict(config.to_dict()) == config
    assert isinstance(config.to_dict()["model"], dict)


def test_an_older_flat_config_is_read() -> None:
    config = TrainConfig.from_dict(FLAT)
    assert config.model == ModelConfig(hidden_size=8, num_layers=1, bridge=False)
    assert config == TrainConfig(model=ModelConfig(hidden_size=8, num_layers=1, bridge=False))
    with pytest.raises(ConfigError, match="unknown training config key"):
        TrainConfig.from_dict({**FLAT, "nb_layers": 3})


def test_max_bin_comes_from_the_bandwidth_and_the_model_stft() -> None:
    config = TrainConfig(model=ModelConfig(max_bin=10))
    assert config.model.max_bin == 1487  # 16 kHz at 44.1 kHz with n_fft 4096
    small = TrainConfig(model=ModelConfig(n_fft=2048, hop_length=512, max_bin=1025),
                        bandwidth=8000.0)
    assert small.model.max_bin == bandwidth_to_max_bin(44100, 2048, 8000.0)
    at_48k = small.model_config(48000)
    assert at_48k.sample_rate == 48000 and at_48k.n_fft == 2048
    assert at_48k.max_bin == bandwidth_to_max_bin(48000, 2048, 8000.0)


@pytest.mark.parametrize(("change", "field"), [
    ({"batch_size": 0}, "batch_size"),
    ({"model": ModelConfig(num_layers=0)}, "num_layers"),
    ({"seq_seconds": 0.0}, "seq_seconds"),
    ({"lr": 0.0}, "lr"),
    ({"weight_decay": -1.0}, "weight_decay"),
    ({"amp": "fp8"}, "amp"),
    ({"patience": 0}, "patience"),
    ({"bandwidth": -1.0}, "bandwidth"),
])
def test_train_config_errors_start_with_the_field(change: dict, field: str) -> None:  # type: ignore[type-arg]
    with pytest.raises(ConfigError) as caught:
        dataclasses.replace(TrainConfig(), **change)
    assert caught.value.field == field and str(caught.value).startswith(f"{field} ")
    assert "--" not in str(caught.value)


def test_model_config_errors_name_their_field() -> None:
    with pytest.raises(ConfigError, match="^hidden_size must be even") as caught:
        ModelConfig(hidden_size=7)
    assert caught.value.field == "hidden_size"
    with pytest.raises(ConfigError, match="^sources must be distinct") as caught:
        ModelConfig(sources=("a", "a"))
    assert caught.value.field == "sources"


@pytest.mark.parametrize(("change", "field"), [
    ({"backend": "bsseval"}, "backend"),
    ({"window_seconds": 0.0}, "window_seconds"),
    ({"filters_len": 0}, "filters_len"),
    ({"max_length_mismatch_seconds": -1.0}, "max_length_mismatch_seconds"),
])
def test_eval_config_errors_start_with_the_field(change: dict, field: str) -> None:  # type: ignore[type-arg]
    with pytest.raises(ConfigError) as caught:
        EvalConfig(**change)
    assert caught.value.field == field and str(caught.value).startswith(f"{field} ")


def test_eval_config_has_no_device() -> None:
    assert "device" not in {f.name for f in dataclasses.fields(EvalConfig)}
