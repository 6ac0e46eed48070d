"""NNabla X-UMX parameters (Sony's x-umx.h5 layout, spec §6.4) give the same separation as the
same numbers in asteroid's format.

The .h5 is written here, with h5py, the way ``nnabla.save_parameters`` writes it (one dataset per
parameter named by its scope path, attributes ``need_grad`` and ``index``), from the numbers of
the real asteroid fixture. This writer is the inverse of the converter, written independently:
the asteroid file's two LSTM biases are summed into NNabla's one.
"""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
import pytest
import torch

from cumx_cli.engine.config import InferenceConfig
from cumx_cli.engine.errors import CheckpointError, MissingDependencyError
from cumx_cli.engine.inference.separator import Separator
from cumx_cli.engine.weights.resolver import load_model
from tests.conftest import FIXTURES

h5py = pytest.importorskip("h5py")

ASTEROID = FIXTURES / "peers" / "xumx_asteroid.pth"


def write_nnabla_h5(path: Path, asteroid: Path = ASTEROID, drop: str | None = None) -> None:
    data = torch.load(asteroid, weights_only=False)
    sd = {k: v.numpy() for k, v in data["state_dict"].items()}
    args = data["model_args"]
    layers = args["nb_layers"]
    params: dict[str, np.ndarray] = {}
    for src in args["sources"]:
        for what in ("input_mean", "input_scale", "output_scale", "output_mean"):
            params[f"{what}_{src}"] = sd[f"mean_scale.{what}_{src}"]
        blocks = {"fc1": f"layer_enc.{src}.enc.", "fc2": f"layer_dec.{src}.dec.",
                  "fc3": f"layer_dec.{src}.dec."}
        index = {"fc1": (0, 1), "fc2": (0, 1), "fc3": (3, 4)}
        for fc, prefix in blocks.items():
            lin, bn = index[fc]
            params[f"{fc}_{src}/affine/W"] = sd[f"{prefix}{lin}.weight"].T  # NNabla: (in, out)
            for theirs, ours in (("beta", "bias"), ("gamma", "weight"), ("mean", "running_mean"),
                                 ("var", "running_var")):
                params[f"{fc}_{src}/bn/{theirs}"] = sd[f"{prefix}{bn}.{ours}"].reshape(1, 1, -1)
        per_layer, biases = [], []
        for k in range(layers):
            dirs, dir_bias = [], []
            for suffix in ("", "_reverse"):
                key = f"layer_lstm.{src}.{{}}_l{k}{suffix}"
                w_ih, w_hh = sd[key.format("weight_ih")], sd[key.format("weight_hh")]
                cell = w_hh.shape[1]
                dirs.append(np.concatenate([w_ih.reshape(4, cell, -1), w_hh.reshape(4, cell, cell)], axis=-1))
                dir_bias.append((sd[key.format("bias_ih")] + sd[key.format("bias_hh")]).reshape(4, cell))
            per_layer.append(np.stack(dirs))
            biases.append(np.stack(dir_bias))
        params[f"lstm_{src}/lstm/weight_l0"] = per_layer[0]
        params[f"lstm_{src}/lstm/weight"] = np.stack(per_layer[1:])
        params[f"lstm_{src}/lstm/bias"] = np.stack(biases)
    if drop:
        del params[drop]
    with h5py.File(path, "w") as f:
        for i, (name, value) in enumerate(params.items()):
            f[name] = value.astype(np.float32)
            f[name].attrs["need_grad"] = not name.endswith(("/mean", "/var"))
            f[name].attrs["index"] = i


def _snr(est: np.ndarray, ref: np.ndarray) -> float:
    """SNR in dB (inf when identical)."""
    err = float(((est - ref) ** 2).sum())
    return float("inf") if err == 0 else float(10 * np.log10((ref**2).sum() / err))


def _separate_both(h5: Path) -> tuple[tuple[str, ...], np.ndarray, np.ndarray]:
    ours, theirs = load_model(h5), load_model(ASTEROID)
    assert ours.config == theirs.config
    with np.load(FIXTURES / "peers" / "reference.npz") as ref:
        mixture = torch.from_numpy(ref["mixture"])[None]
    out_h5 = Separator(ours, InferenceConfig(niter=1)).separate(mixture)[0].numpy()
    out_ast = Separator(theirs, InferenceConfig(niter=1)).separate(mixture)[0].numpy()
    return ours.sources, out_h5, out_ast


def test_nnabla_h5_separates_like_the_asteroid_file(tmp_path: Path) -> None:
    h5 = tmp_path / "x-umx.h5"
    write_nnabla_h5(h5)
    with h5py.File(h5) as f:  # the layout really is nested groups, as save_parameters makes it
        assert isinstance(f["fc1_bass"]["affine"]["W"], h5py.Dataset)
        assert f["lstm_vocals/lstm/weight_l0"].shape == (2, 4, 8, 24)
    sources, out_h5, out_ast = _separate_both(h5)
    for j, name in enumerate(sources):
        snr = _snr(out_h5[j], out_ast[j])
        assert snr >= 60, (name, snr)


def _model_outputs(h5: Path) -> tuple[torch.Tensor, torch.Tensor]:
    mag = torch.rand(1, 2, 2049, 40, generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        return load_model(h5)(mag), load_model(ASTEROID)(mag)


def test_network_outputs_match(tmp_path: Path) -> None:
    h5 = tmp_path / "x-umx.h5"
    write_nnabla_h5(h5)
    ours, theirs = _model_outputs(h5)
    torch.testing.assert_close(ours, theirs, rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("layout_error", ["gate-order", "bias-in-wrong-direction"])
def test_the_network_check_notices_a_layout_error(tmp_path: Path, layout_error: str) -> None:
    """Guard for the tests above: the separation after Wiener filtering hides small mask
    differences (a swapped gate pair still gives ~56 dB), the network output does not."""
    h5 = tmp_path / "x-umx.h5"
    write_nnabla_h5(h5)
    with h5py.File(h5, "r+") as f:
        if layout_error == "gate-order":
            w = f["lstm_vocals/lstm/weight_l0"][...]
            f["lstm_vocals/lstm/weight_l0"][...] = w[:, [1, 0, 2, 3]]
        else:
            b = f["lstm_vocals/lstm/bias"][...]
            f["lstm_vocals/lstm/bias"][...] = b[:, ::-1]
    ours, theirs = _model_outputs(h5)
    vocals = 2
    rel = ((ours[:, vocals] - theirs[:, vocals]).norm() / theirs[:, vocals].norm()).item()
    assert rel > 1e-3


def test_missing_parameter_is_named(tmp_path: Path) -> None:
    h5 = tmp_path / "bad.h5"
    write_nnabla_h5(h5, drop="fc2_drums/bn/gamma")
    with pytest.raises(CheckpointError, match="fc2_drums/bn/gamma is missing"):
        load_model(h5)


def test_without_h5py_the_error_says_what_to_install(tmp_path: Path,
                                                     monkeypatch: pytest.MonkeyPatch) -> None:
    h5 = tmp_path / "x-umx.h5"
    write_nnabla_h5(h5)
    monkeypatch.setitem(sys.modules, "h5py", None)
    with pytest.raises(MissingDependencyError, match=r"pip install 'cumx\[nnabla\]'"):
        load_model(h5)
