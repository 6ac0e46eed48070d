"""Reading Sony's NNabla X-UMX parameters (``x-umx.h5``) into cumx's parameter names.

``nnabla.save_parameters`` writes one HDF5 dataset per parameter, named by its scope path
(``/`` makes nested groups) with attributes ``need_grad`` and ``index``. The names and the
conversion follow spec §6.4:

* ``fc{1,2,3}_<src>/affine/W`` is (in, out): transposed into a Linear weight (out, in);
* ``fc*_<src>/bn/{gamma,beta,mean,var}`` of shape (1, 1, C): BatchNorm weight/bias/running stats;
* ``lstm_<src>/lstm/weight_l0`` (D, 4, H, I+H) and ``weight`` (L-1, D, 4, H, D*H+H) hold the
  input and recurrent weights side by side on the last axis, gates in the order i, f, g, o
  (``nnabla/utils/rnn.py``: ``w0, w1, w2, w3 = split(w)`` → i, f, g, o), which is PyTorch's
  order, so splitting the last axis and flattening (4, H) gives ``weight_ih``/``weight_hh``;
* ``lstm_<src>/lstm/bias`` (L, D, 4, H): NNabla has one bias per gate where PyTorch has two
  that are added, so it becomes ``bias_ih`` and ``bias_hh`` is zero;
* ``input_mean_<src>``, ``input_scale_<src>``, ``output_scale_<src>``, ``output_mean_<src>`` are
  copied as they are (they already hold -mean and 1/std).

The sources come out in the canonical order (the file does not store one). h5py is an optional
dependency (``pip install 'cumx[nnabla]'``), imported only here.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import numpy as np
import torch

from cumx_cli.engine.config import ModelConfig
from cumx_cli.engine.errors import CheckpointError, MissingDependencyError
from cumx_cli.engine.model import CrossUMX
from cumx_cli.engine.weights.formats.common import in_canonical_order, load_strict

_SOURCE = re.compile(r"^input_mean_(?P<src>.+)$")


def require_h5py() -> Any:
    """The h5py module, or a MissingDependencyError that says how to install it."""
    try:
        import h5py
    except ImportError as exc:
        raise MissingDependencyError(
            "reading NNabla .h5 weights needs h5py: pip install 'cumx[nnabla]' (or pip install h5py)"
        ) from exc
    return h5py


def read_parameters(path: Path) -> dict[str, np.ndarray]:
    """Every dataset of an NNabla parameter file, by its full name (e.g. ``fc1_bass/affine/W``)."""
    h5py = require_h5py()
    params: dict[str, np.ndarray] = {}
    try:
        with h5py.File(path, "r") as f:
            def visit(name: str, obj: Any) -> None:
                if isinstance(obj, h5py.Dataset):
                    params[name] = np.asarray(obj[...], dtype=np.float32)

            f.visititems(visit)
    except OSError as exc:
        raise CheckpointError(f"{path}: not a readable HDF5 file ({exc})") from exc
    return params


def load_file(path: Path) -> CrossUMX:
    """The bridged model of an NNabla X-UMX parameter file.

    Raises:
        MissingDependencyError: h5py is not installed (says how to install it).
        CheckpointError: not readable HDF5, a parameter missing or of an unexpected shape, or
            weights that do not fit.
    """
    config, state = nnabla_to_state(read_parameters(path), path)
    return load_strict(config, state, path)


def nnabla_to_state(params: dict[str, np.ndarray], path: Path) -> tuple[ModelConfig, dict[str, torch.Tensor]]:
    """Convert NNabla X-UMX parameters into a config and a cumx state dict (``nets.<src>.*``).

    Raises:
        CheckpointError: a parameter is missing or has an unexpected shape (named).
    """
    found = [m.group("src") for k in params if (m := _SOURCE.match(k))]
    if not found:
        raise CheckpointError(f"{path}: no input_mean_<source> parameters; not NNabla X-UMX weights")
    sources = in_canonical_order(found)

    def get(name: str) -> np.ndarray:
        try:
            return params[name]
        except KeyError:
            raise CheckpointError(f"{path}: parameter {name} is missing; not NNabla X-UMX weights "
                                  "in the layout of Sony's x-umx/model.py") from None

    first = sources[0]
    in_features, hidden = get(f"fc1_{first}/affine/W").shape
    max_bin = get(f"input_mean_{first}").shape[0]
    num_bins = get(f"output_mean_{first}").shape[0]
    w0 = get(f"lstm_{first}/lstm/weight_l0")
    directions = w0.shape[0]
    deeper = params.get(f"lstm_{first}/lstm/weight")
    config = ModelConfig(
        sources=sources, num_channels=in_features // max_bin, hidden_size=hidden,
        num_layers=1 + (deeper.shape[0] if deeper is not None else 0),
        bidirectional=directions == 2, max_bin=max_bin, bridge=True,
        n_fft=2 * (num_bins - 1), hop_length=(2 * (num_bins - 1)) // 4, sample_rate=44100,
    )
    state: dict[str, torch.Tensor] = {}
    for src in sources:
        state.update(_source_state(src, get, config))
    return config, state


def _source_state(src: str, get: Any, config: ModelConfig) -> dict[str, torch.Tensor]:
    out: dict[str, np.ndarray] = {}
    p = f"nets.{src}."
    for what in ("input_mean", "input_scale", "output_mean", "output_scale"):
        out[p + what] = get(f"{what}_{src}").reshape(-1)
    for fc, bn in (("fc1", "bn1"), ("fc2", "bn2"), ("fc3", "bn3")):
        out[f"{p}{fc}.weight"] = get(f"{fc}_{src}/affine/W").T
        for ours, theirs in (("weight", "gamma"), ("bias", "beta"), ("running_mean", "mean"),
                             ("running_var", "var")):
            out[f"{p}{bn}.{ours}"] = get(f"{fc}_{src}/bn/{theirs}").reshape(-1)
    out.update(_lstm_state(p, get(f"lstm_{src}/lstm/weight_l0"),
                           get(f"lstm_{src}/lstm/weight") if config.num_layers > 1 else None,
                           get(f"lstm_{src}/lstm/bias"), config))
    state = {k: torch.from_numpy(np.ascontiguousarray(v, dtype=np.float32)) for k, v in out.items()}
    for bn in ("bn1", "bn2", "bn3"):
        state[f"{p}{bn}.num_batches_tracked"] = torch.tensor(0, dtype=torch.long)
    return state


def _lstm_state(prefix: str, w0: np.ndarray, w: np.ndarray | None, b: np.ndarray,
                config: ModelConfig) -> dict[str, np.ndarray]:
    directions = 2 if config.bidirectional else 1
    cell = config.hidden_size // directions
    bias = b.reshape(config.num_layers, directions, 4 * cell)  # (L, D, 4, H) or (L, D, 4H)
    out: dict[str, np.ndarray] = {}
    for layer in range(config.num_layers):
        if layer > 0:
            assert w is not None  # nnabla_to_state reads the recurrent stack when num_layers > 1
        weights = w0 if layer == 0 or w is None else w[layer - 1]
        for d in range(directions):
            gates = weights[d]  # (4, H, I+H): [input ‖ recurrent] on the last axis, gates i, f, g, o
            inputs = gates.shape[-1] - cell
            suffix = f"_l{layer}" + ("_reverse" if d == 1 else "")
            out[f"{prefix}lstm.weight_ih{suffix}"] = gates[..., :inputs].reshape(4 * cell, inputs)
            out[f"{prefix}lstm.weight_hh{suffix}"] = gates[..., inputs:].reshape(4 * cell, cell)
            out[f"{prefix}lstm.bias_ih{suffix}"] = bias[layer, d]
            out[f"{prefix}lstm.bias_hh{suffix}"] = np.zeros(4 * cell, dtype=np.float32)
    return out
