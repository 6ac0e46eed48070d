"""Parity with the peers' own separations (fixtures made by their code, see
tests/fixtures/peers/make_peer_fixtures.py).

asteroid 0.7.0 (X-UMX, its MUSDB eval path: whole track, norbert Wiener niter=1, no softmask, no
residual) and openunmix 1.3.0 (``Separator``, niter=1, no residual, ``wiener_win_len=300``), both
at hidden size 16, on a mixture long enough to reach every boundary of both tools: several
Wiener windows of openunmix, several EM frame blocks of cumx.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

from cumx_cli.engine.config import InferenceConfig
from cumx_cli.engine.inference.separator import Separator
from cumx_cli.engine.weights.resolver import load_model
from tests.conftest import FIXTURES

PEERS = FIXTURES / "peers"


def _snr(est: np.ndarray, ref: np.ndarray) -> float:
    return float(10 * np.log10((ref**2).sum() / ((est - ref) ** 2).sum()))


@pytest.fixture(scope="module")
def reference() -> dict[str, np.ndarray]:
    with np.load(PEERS / "reference.npz") as data:
        return {k: data[k] for k in data.files}


def _separate(model_path: Path, mixture: np.ndarray, **options: object) -> tuple[np.ndarray, tuple[str, ...]]:
    model = load_model(model_path)
    sep = Separator(model, InferenceConfig(niter=1, **options))  # type: ignore[arg-type]
    out = sep.separate(torch.from_numpy(mixture)[None])[0].numpy()
    return out, model.sources


@pytest.mark.parametrize(("path", "key"), [("xumx_asteroid.pth", "asteroid"), ("umx", "umx")])
def test_parity_with_the_peers_at_60_db(reference: dict[str, np.ndarray], path: str, key: str) -> None:
    out, sources = _separate(PEERS / path, reference["mixture"])
    expected = reference[f"{key}_estimates"]
    assert out.shape[-1] == reference["mixture"].shape[-1]  # cumx keeps the input length
    for j, name in enumerate(reference[f"{key}_sources"]):
        est = out[sources.index(str(name))][:, : expected.shape[-1]]  # asteroid drops the tail
        assert _snr(est, expected[j]) >= 60, name
