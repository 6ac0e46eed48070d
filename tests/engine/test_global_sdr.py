"""The global SDR (MDX 2021, demucs's ``new_sdr``): its definition on known signals, against an
independent numpy computation and demucs's own formula, and its way through the score files."""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
import torch

from cumx_cli.engine.config import EvalConfig
from cumx_cli.engine.data.musdb import find_tracks
from cumx_cli.engine.evaluation import museval_format, report, runner
from cumx_cli.engine.evaluation.estimators import EstimatesFolder
from cumx_cli.engine.evaluation.museval_format import GLOBAL_SDR_EPS, global_sdr
from tests.synthetic_musdb import RATE, SOURCES, estimates, sources, write_estimates

Dataset = tuple[Path, dict[str, dict[str, np.ndarray]]]


def _numpy_global_sdr(refs: np.ndarray, ests: np.ndarray) -> np.ndarray:
    """Written out from the MDX 2021 definition (per instrument: the sums over both channels
    and every sample), independently of cumx's code: (source, channel, time) in, (source,) out."""
    out = []
    for ref, est in zip(refs.astype(np.float64), ests.astype(np.float64), strict=True):
        signal = sum(float(np.dot(c, c)) for c in ref)
        error = sum(float(np.dot(c, c)) for c in ref - est)
        out.append(10 * math.log10((signal + 1e-7) / (error + 1e-7)))
    return np.array(out)


def _demucs_new_sdr(references: torch.Tensor, estimates: torch.Tensor) -> torch.Tensor:
    """demucs/evaluate.py ``new_sdr``, as it is called in ``eval_track``: (batch, source, time,
    channel) float64, delta 1e-7 added to both sums over time and channels."""
    assert references.dim() == 4 and estimates.dim() == 4
    delta = 1e-7
    num = torch.sum(torch.square(references), dim=(2, 3)) + delta
    den = torch.sum(torch.square(references - estimates), dim=(2, 3)) + delta
    return 10 * torch.log10(num / den)


def test_the_eps_is_demucs_new_sdr_delta() -> None:
    assert GLOBAL_SDR_EPS == 1e-7


def test_known_signals() -> None:
    ref = torch.from_numpy(sources(1, 2, 4000, seed=1)).float()
    energy = float(ref.double().square().sum())
    cases = {
        "half the gain": (0.5 * ref, 10 * math.log10(energy / (0.25 * energy))),  # 6.02 dB
        "inverted": (-ref, 10 * math.log10(energy / (4 * energy))),  # -6.02 dB
        "silent estimate": (torch.zeros_like(ref), 0.0),
        "exact": (ref.clone(), 10 * math.log10((energy + 1e-7) / 1e-7)),
    }
    for name, (est, expected) in cases.items():
        got = float(global_sdr(ref, est)[0])
        assert got == pytest.approx(expected, abs=1e-6), name
    silent = torch.zeros(1, 2, 100)
    assert float(global_sdr(silent, silent)[0]) == 0.0  # eps / eps
    assert float(global_sdr(silent, silent + 0.1)[0]) == pytest.approx(
        10 * math.log10(1e-7 / (200 * 0.01 + 1e-7)), abs=1e-3)  # eps over the error


def test_equals_an_independent_numpy_computation_and_demucs_formula() -> None:
    refs = sources(4, 2, 3 * RATE, seed=4)
    ests = estimates(refs, seed=2)
    got = global_sdr(torch.from_numpy(refs).float(), torch.from_numpy(ests).float()).numpy()
    refs32, ests32 = refs.astype(np.float32), ests.astype(np.float32)  # what cumx reads
    assert np.allclose(got, _numpy_global_sdr(refs32, ests32), atol=1e-9, rtol=0)
    demucs = _demucs_new_sdr(torch.from_numpy(refs32).double().transpose(1, 2)[None],
                             torch.from_numpy(ests32).double().transpose(1, 2)[None])[0]
    assert np.allclose(got, demucs.numpy(), atol=1e-9, rtol=0)
    assert got[0] > got[1]  # the even sources' estimates are the good ones


def test_block_sums_equal_one_sum(monkeypatch: pytest.MonkeyPatch) -> None:
    refs = torch.from_numpy(sources(2, 2, 10_000, seed=3)).float()
    ests = torch.from_numpy(estimates(refs.double().numpy())).float()
    whole = global_sdr(refs, ests)
    monkeypatch.setattr(museval_format, "_GLOBAL_SDR_BLOCK", 777)
    assert torch.allclose(global_sdr(refs, ests), whole, atol=1e-9, rtol=0)


def test_shapes_must_match() -> None:
    from cumx_cli.engine.errors import ShapeError

    with pytest.raises(ShapeError):
        global_sdr(torch.zeros(2, 2, 10), torch.zeros(2, 2, 11))


def test_runner_stores_it_reads_it_back_and_old_files_have_none(musdb_hq: Dataset,
                                                                  tmp_path: Path) -> None:
    root, stems = musdb_hq
    write_estimates(tmp_path / "est", stems)
    tracks = find_tracks(root, "test")
    est = EstimatesFolder(tmp_path / "est", 0.1)
    config = EvalConfig(filters_len=64)
    first = runner.evaluate_tracks(tracks, SOURCES, est, tmp_path / "out", config)
    path = tmp_path / "out" / "test" / "A - One.json"
    stored = json.loads(path.read_text())[museval_format.GLOBAL_SDR_KEY]
    assert list(stored) == list(SOURCES) and stored == first[0].global_sdr
    refs = np.stack([stems["A - One"][s].T for s in SOURCES])
    ests = np.stack([sf.read(tmp_path / "est" / "A - One" / f"{s}.wav", dtype="float32")[0].T
                     for s in SOURCES])
    expected = _numpy_global_sdr(refs.astype(np.float32), ests)
    assert np.allclose([stored[s] for s in SOURCES], expected, atol=1e-5, rtol=0)
    assert museval_format.LAG_KEY not in json.loads(path.read_text())  # aligned: no lag stored

    again = runner.evaluate_tracks(tracks, SOURCES, est, tmp_path / "out", config)
    assert [r.status for r in again] == ["skipped", "skipped"]
    assert [r.global_sdr for r in again] == [r.global_sdr for r in first]
    assert report.summarize(again, SOURCES) == report.summarize(first, SOURCES)

    # a file written before the global SDR was stored: reused, with none (n/a)
    data = json.loads(path.read_text())
    del data[museval_format.GLOBAL_SDR_KEY]
    path.write_text(json.dumps(data))
    old = runner.evaluate_tracks(tracks, SOURCES, est, tmp_path / "out", config)
    assert old[0].status == "skipped" and old[0].global_sdr == {}
    summary = report.summarize(old, SOURCES)
    assert set(summary.global_sdr) == {"B - Two"}
    assert "over 1 of 2 track(s)" in report.format_table(summary)
