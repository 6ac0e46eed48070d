"""An Open-Unmix model folder, loaded into the unbridged model.

The folder holds one plain state dict per target, ``<target>.pth`` or
``<target>-<sha256 prefix>.pth`` (with optional ``<target>.json`` and ``separator.json`` giving
the STFT hop and sample rate). A hash in a file name is checked against the file, as torch.hub's
``check_hash`` does. The targets become the model's sources in the canonical order
(:func:`~cumx_cli.engine.weights.formats.common.in_canonical_order`).
"""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

import torch

from cumx_cli.engine.config import ModelConfig
from cumx_cli.engine.errors import CheckpointError
from cumx_cli.engine.model import CrossUMX
from cumx_cli.engine.weights.formats.common import (
    in_canonical_order,
    load_strict,
    map_files,
    read_torch_file,
)
from cumx_cli.engine.weights.integrity import file_sha256, split_hash_in_name

State = dict[str, torch.Tensor]


def is_single_target(data: Any) -> bool:
    """Whether loaded checkpoint data is one Open-Unmix target's state dict (not a folder)."""
    return isinstance(data, dict) and "fc1.weight" in data and "lstm.weight_ih_l0" in data


def load_folder(folder: Path) -> CrossUMX:
    """The unbridged model of an Open-Unmix folder, one network per target.

    Raises:
        CheckpointError: no ``.pth`` files, two files for a target, a corrupt file (its hash),
            targets of different architectures, or weights that do not fit.
        UnsafeCheckpointError: a file would need arbitrary code to unpickle.
    """
    folder = Path(folder)
    files = sorted(folder.glob("*.pth"))
    if not files:
        raise CheckpointError(f"{folder}: no .pth files; an Open-Unmix model folder holds "
                              "<target>.pth (or <target>-<hash>.pth) for each target")
    states: dict[str, State] = {}
    # Each file's hash check and load, two at a time where there are two cores (map_files).
    for target, sd in map_files(lambda file: (_checked_target(file), _read_target(file)), files):
        if target in states:
            raise CheckpointError(f"{folder}: more than one file for target {target!r}")
        states[target] = sd
    states = {t: states[t] for t in in_canonical_order(states)}
    state = {f"nets.{t}.{k}": v for t, sd in states.items() for k, v in sd.items()}
    return load_strict(_config(states, folder), state, folder)


def _checked_target(file: Path) -> str:
    """The target a file holds; a sha256 prefix in its name must match its bytes."""
    split = split_hash_in_name(file.name)
    if split is None:
        return file.stem
    target, expected = split
    digest = file_sha256(file)
    if not digest.startswith(expected):
        raise CheckpointError(f"{file}: the file is corrupt: its sha256 {digest[:12]}... "
                              f"does not start with {expected}, the prefix in its name; download it again")
    return target


def _read_target(file: Path) -> State:
    sd = read_torch_file(file)
    if not isinstance(sd, dict) or not all(isinstance(v, torch.Tensor) for v in sd.values()):
        raise CheckpointError(f"{file}: not an Open-Unmix state dict")
    return sd


def _config(states: dict[str, State], folder: Path) -> ModelConfig:
    """The architecture, read from the tensor shapes (all targets must agree)."""
    shapes = set()
    for target, sd in states.items():
        try:
            hidden, in_features = sd["fc1.weight"].shape
            max_bin = sd["input_mean"].shape[0]
            num_bins = sd["output_mean"].shape[0]
        except KeyError as exc:
            raise CheckpointError(f"{folder}: {target} is not an Open-Unmix state dict "
                                  f"(no {exc.args[0]})") from exc
        layers = sum(1 for k in sd if re.fullmatch(r"lstm\.weight_ih_l\d+", k))
        shapes.add((hidden, in_features // max_bin, max_bin, num_bins, layers,
                    "lstm.weight_ih_l0_reverse" in sd))
    if len(shapes) != 1:
        raise CheckpointError(f"{folder}: the target models differ in architecture ({sorted(shapes)})")
    hidden, channels, max_bin, num_bins, layers, bidirectional = shapes.pop()
    n_fft = 2 * (num_bins - 1)
    meta = _meta(folder, next(iter(states)))
    return ModelConfig(
        sources=tuple(states), num_channels=channels, hidden_size=hidden, num_layers=layers,
        bidirectional=bidirectional, max_bin=max_bin, bridge=False, n_fft=n_fft,
        hop_length=int(meta.get("nhop", n_fft // 4)),
        sample_rate=int(meta.get("sample_rate", 44100)),
    )


def _meta(folder: Path, target: str) -> dict[str, Any]:
    """STFT hop and sample rate from ``separator.json`` or ``<target>.json`` if present."""
    meta: dict[str, Any] = {}
    for name in (f"{target}.json", "separator.json"):
        file = folder / name
        if file.is_file():
            try:
                data = json.loads(file.read_text())
            except (OSError, ValueError) as exc:
                raise CheckpointError(f"{file}: not valid JSON ({exc})") from exc
            meta.update(data.get("args", data) if isinstance(data, dict) else {})
    return meta
