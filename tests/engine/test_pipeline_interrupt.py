"""An interruption while a track is being opened leaves none of its files behind."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

from cumx_cli.engine.config import InferenceConfig
from cumx_cli.engine.inference import scratch
from cumx_cli.engine.inference.inputs import find_inputs
from cumx_cli.engine.inference.outputs import OutputSpec
from cumx_cli.engine.inference.pipeline import separate_files
from cumx_cli.engine.inference.separator import Separator
from tests.conftest import random_model, tiny_config


def test_a_signal_between_two_scratch_files_leaves_neither(tmp_path: Path,
                                                           monkeypatch: pytest.MonkeyPatch) -> None:
    """A signal lands between any two bytecodes: here after two of the four scratch files of
    a track exist, before the track is handed back. Its files and folder must go again (a
    SIGTERM in CI once left ``.bass.wav...raw`` and ``.drums.wav...raw``)."""
    rng = np.random.default_rng(0)
    sf.write(tmp_path / "song.wav", 0.1 * rng.standard_normal((3 * 44100, 2)), 44100)
    opened: list[Path] = []

    def open_two_then_interrupt(self: scratch.FileScratch) -> None:
        for path in self.paths[:2]:
            self.files.append(path.open("wb"))
            opened.append(path)
        raise KeyboardInterrupt

    monkeypatch.setattr(scratch.FileScratch, "open", open_two_then_interrupt)
    out = tmp_path / "out"
    separator = Separator(random_model(tiny_config()), InferenceConfig(device="cpu"))
    with pytest.raises(KeyboardInterrupt):
        separate_files(separator, find_inputs([tmp_path / "song.wav"], out, ()).files,
                       OutputSpec(outdir=out, scratch_memory_bytes=0))
    assert len(opened) == 2 and all(p.parent == out / "song" for p in opened)
    assert not (out / "song").exists()  # scratch files gone, and the folder it made too
