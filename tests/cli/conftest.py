"""Fixtures of the CLI tests: a tiny model to separate with, and a fake Zenodo to download from.

Plain helpers (running ``cumx``, reading its output) are in ``tests/cli/helpers.py``.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.fake_zenodo import ASTEROID, XUMX_FILE, FakeZenodo


@pytest.fixture
def model(tiny_model_path: Path) -> str:
    """The tiny random model's checkpoint, as a ``--model`` value."""
    return str(tiny_model_path)


@pytest.fixture
def server(monkeypatch: pytest.MonkeyPatch) -> Iterator[FakeZenodo]:
    """A fake Zenodo on 127.0.0.1 serving :data:`ASTEROID` as ``xumx``, named by ``CUMX_ZENODO_URL``."""
    fake = FakeZenodo()
    fake.add_record(4704231, {XUMX_FILE: ASTEROID})
    monkeypatch.setenv("CUMX_ZENODO_URL", fake.url)
    yield fake
    fake.close()
