"""Where estimates come from: stems on disk (checked against the references) or a separator."""

from __future__ import annotations

import hashlib
import shutil
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
import torch

from cumx_cli.engine.audio.io import probe
from cumx_cli.engine.config import InferenceConfig
from cumx_cli.engine.data.musdb import TrackFolder, find_tracks
from cumx_cli.engine.errors import EvaluationError
from cumx_cli.engine.evaluation.estimators import (
    EstimatesFolder,
    SeparatorEstimator,
    model_files,
    model_record,
)
from tests.synthetic_musdb import RATE, SOURCES, damage_estimate, write_estimates

Dataset = tuple[Path, dict[str, dict[str, np.ndarray]]]


def _references(track: TrackFolder) -> dict:  # type: ignore[type-arg]
    return {s: probe(track.stem_path(s)) for s in SOURCES}


@pytest.mark.parametrize(("problem", "message"), [
    ("missing", "estimate .*bass.wav is missing"),
    ("length", "estimate .*bass.wav has 22050 samples, the reference 97020 "),
    ("rate", "estimate .*bass.wav is at 22050 Hz, the reference at 44100 Hz; resample"),
    ("channels", "estimate .*bass.wav has 1 channel\\(s\\), the reference 2"),
])
def test_stems_on_disk_are_checked_against_the_reference(musdb_hq: Dataset, tmp_path: Path,
                                                         problem: str, message: str) -> None:
    root, stems = musdb_hq
    write_estimates(tmp_path / "est", stems)
    damage_estimate(tmp_path / "est" / "A - One" / "bass.wav", problem)
    (track,) = find_tracks(root, "test", ["A - One"])
    with pytest.raises(EvaluationError, match=f"^track 'A - One': {message}"):
        EstimatesFolder(tmp_path / "est", 0.1).estimates(track, SOURCES, _references(track))


def test_stems_within_the_length_tolerance_are_read(musdb_hq: Dataset, tmp_path: Path) -> None:
    root, stems = musdb_hq
    write_estimates(tmp_path / "est", stems, cut=500)
    (track,) = find_tracks(root, "test", ["B - Two"])
    got = EstimatesFolder(tmp_path / "est", 0.1).estimates(track, SOURCES, _references(track))
    assert list(got) == list(SOURCES) and got["bass"].shape == (2, int(1.2 * RATE) - 500)


class _Scaler:
    """A separator that returns the mixture times (1, 2, 3, 4), one per source, in stereo."""

    sources = ("bass", "drums", "vocals", "other")
    num_channels = 2
    sample_rate = RATE

    def __init__(self) -> None:
        self.seen: list[tuple[int, ...]] = []

    def separate(self, waveform: torch.Tensor) -> torch.Tensor:
        self.seen.append(tuple(waveform.shape))
        gains = torch.arange(1.0, 5.0).view(1, 4, 1, 1)
        return waveform[:, None] * gains


@pytest.mark.parametrize("channels", [1, 2])
def test_a_separator_gets_the_model_channels_and_gives_the_mixture_channels(
        tmp_path: Path, channels: int) -> None:
    folder = tmp_path / "test" / "song"
    folder.mkdir(parents=True)
    mixture = np.random.default_rng(0).uniform(-0.5, 0.5, (RATE, channels)).astype(np.float32)
    sf.write(folder / "mixture.wav", mixture, RATE, subtype="FLOAT")
    separator = _Scaler()
    got = SeparatorEstimator(separator).estimates(TrackFolder("song", "test", folder),
                                                 ["vocals", "drums"], {})
    assert separator.seen == [(1, 2, RATE)]
    assert got["vocals"].shape == (channels, RATE)
    expected = torch.from_numpy(mixture.T.copy()) * 3  # vocals is the third source
    assert torch.allclose(got["vocals"], expected, atol=1e-6)


def test_a_separator_at_another_rate_is_refused(tmp_path: Path) -> None:
    folder = tmp_path / "test" / "song"
    folder.mkdir(parents=True)
    sf.write(folder / "mixture.wav", np.zeros((1000, 2)), 22050)
    with pytest.raises(EvaluationError, match="is at 22050 Hz, the model at 44100 Hz"):
        SeparatorEstimator(_Scaler()).estimates(TrackFolder("song", "test", folder), SOURCES, {})


@pytest.mark.parametrize("how", ["copied", "rewritten as float"])
def test_an_estimate_equal_to_its_reference_is_refused(musdb_hq: Dataset, tmp_path: Path,
                                                      how: str) -> None:
    root, stems = musdb_hq
    write_estimates(tmp_path / "est", stems)
    (track,) = find_tracks(root, "test", ["A - One"])
    estimate = tmp_path / "est" / "A - One" / "bass.wav"
    if how == "copied":
        shutil.copyfile(track.stem_path("bass"), estimate)
    else:  # the same samples in another encoding are still the reference
        audio, rate = sf.read(track.stem_path("bass"), dtype="float32")
        sf.write(estimate, audio, rate, subtype="FLOAT")
    with pytest.raises(EvaluationError, match=r"^track 'A - One': estimate .*bass.wav is "
                       r"identical to the reference .*bass.wav; it is a copy") as raised:
        EstimatesFolder(tmp_path / "est", 0.1).estimates(track, SOURCES, _references(track))
    assert "\n" not in str(raised.value)


def test_the_records_say_what_made_the_estimates(tmp_path: Path) -> None:
    assert EstimatesFolder(tmp_path / "est", 0.1).record == {
        "estimates": str((tmp_path / "est").resolve())}
    folder = tmp_path / "umx"
    folder.mkdir()
    for name, content in (("vocals.pth", b"v"), ("bass.pth", b"b"), ("separator.json", b"{}")):
        (folder / name).write_bytes(content)
    files = model_files(folder)
    assert [f.name for f in files] == ["bass.pth", "vocals.pth"]  # the weights, not the json
    assert model_files(tmp_path / "x.pt") == [tmp_path / "x.pt"]
    record = model_record("umx", files, InferenceConfig(niter=0, chunk_seconds=10.0))
    assert record["model"] == "umx"
    assert record["sha256"] == {"bass.pth": hashlib.sha256(b"b").hexdigest(),
                                "vocals.pth": hashlib.sha256(b"v").hexdigest()}
    assert record["inference"] == {"niter": 0, "softmask": False, "residual": False,
                                   "wiener_window": None, "chunk_seconds": 10.0,
                                   "overlap_seconds": 1.0}
    assert SeparatorEstimator(_Scaler(), record).record is record
