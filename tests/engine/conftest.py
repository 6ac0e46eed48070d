"""Fixtures shared by the engine tests: small datasets in the MUSDB18-HQ layout."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from cumx_cli.engine.data.synth import generate_synthetic_musdb
from tests.synthetic_musdb import write_musdb


@pytest.fixture(scope="session")
def synthetic_musdb(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """cumx's synthetic dataset, small: 2 training, 1 validation and 1 test track of 3 s.

    Shared by every test of the session: a test that changes it works on a copy.
    """
    return generate_synthetic_musdb(tmp_path_factory.mktemp("synth"), num_train=2, num_valid=1,
                                    num_test=1, seconds=3.0)


@pytest.fixture
def musdb_hq(tmp_path: Path) -> tuple[Path, dict[str, dict[str, np.ndarray]]]:
    """A two-track test set (``A - One`` 2.2 s, ``B - Two`` 1.2 s) and its stems as written."""
    root = tmp_path / "musdb"
    stems = write_musdb(root, {"A - One": 2.2, "B - Two": 1.2})
    return root, stems
