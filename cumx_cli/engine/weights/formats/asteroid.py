"""asteroid's X-UMX package (``.pth``), loaded into the bridged model.

The file is ``{"model_name": "XUMX", "model_args", "state_dict", ...}`` as asteroid's
``serialize()`` writes it (spec §6.2-6.3). Its tensor names are mapped onto cumx's
(``layer_enc.<src>.enc.0.`` -> ``nets.<src>.fc1.``, ...); the STFT windows it stores are
dropped (cumx computes its own).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from cumx_cli.engine.config import ModelConfig
from cumx_cli.engine.errors import CheckpointError
from cumx_cli.engine.model import CrossUMX
from cumx_cli.engine.weights.formats.common import load_strict

_BLOCKS = {
    "layer_enc.{s}.enc.0.": "fc1.",
    "layer_enc.{s}.enc.1.": "bn1.",
    "layer_lstm.{s}.": "lstm.",
    "layer_dec.{s}.dec.0.": "fc2.",
    "layer_dec.{s}.dec.1.": "bn2.",
    "layer_dec.{s}.dec.3.": "fc3.",
    "layer_dec.{s}.dec.4.": "bn3.",
}
_IGNORED = ("encoder.0.window", "decoder.window")


def is_asteroid(data: Any) -> bool:
    """Whether loaded checkpoint data looks like an asteroid model package."""
    return isinstance(data, dict) and "model_name" in data and "state_dict" in data


def _config(args: dict[str, Any], path: Path) -> ModelConfig:
    if args.get("spec_power", 1) != 1:
        raise CheckpointError(f"{path}: spec_power {args['spec_power']} is not supported (only 1)")
    if args.get("window_length", args.get("in_chan")) != args.get("in_chan"):
        raise CheckpointError(f"{path}: window_length must equal in_chan (the FFT size)")
    try:
        return ModelConfig(
            sources=tuple(args["sources"]),
            num_channels=int(args.get("nb_channels", 2)),
            hidden_size=int(args["hidden_size"]),
            num_layers=int(args.get("nb_layers", 3)),
            bidirectional=bool(args.get("bidirectional", True)),
            max_bin=int(args["max_bin"]),
            bridge=True,
            n_fft=int(args["in_chan"]),
            hop_length=int(args["n_hop"]),
            sample_rate=int(args["sample_rate"]),
        )
    except KeyError as exc:
        raise CheckpointError(f"{path}: asteroid model_args lacks {exc.args[0]!r}") from exc


def model_from_data(data: dict[str, Any], path: Path) -> CrossUMX:
    """The bridged model in loaded asteroid package data (``path`` is for messages).

    Raises:
        CheckpointError: not X-UMX, unsupported model arguments, or weights that do not fit.
    """
    name = data.get("model_name")
    if name not in ("XUMX", "BrokenXUMX"):
        raise CheckpointError(f"{path}: asteroid model {name!r} is not X-UMX; cumx loads only XUMX")
    config = _config(data.get("model_args") or {}, path)
    state = {_our_key(key, config.sources): value for key, value in data["state_dict"].items()
             if key not in _IGNORED}
    return load_strict(config, state, path)


def _our_key(key: str, sources: tuple[str, ...]) -> str:
    for src in sources:
        for prefix, ours in _BLOCKS.items():
            p = prefix.format(s=src)
            if key.startswith(p):
                return f"nets.{src}.{ours}{key[len(p):]}"
        for what in ("input_mean", "input_scale", "output_mean", "output_scale"):
            if key == f"mean_scale.{what}_{src}":
                return f"nets.{src}.{what}"
    return key  # left unmapped: reported as unexpected by the strict load
