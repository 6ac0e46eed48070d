"""Fixtures of the weights tests: a fake Zenodo on 127.0.0.1 serving the small asteroid X-UMX
fixture as ``xumx``, and settings pointing a temporary cache at it (the cache inspection
helpers are in ``tests/engine/weights/helpers.py``).

Every failure must end in a typed one-line error or a verified file, never a cache entry that is
not verified: each failure test checks the cache holds no weights file and no ``.sha256``.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from cumx_cli.engine.weights.cache import WeightsSettings
from tests.fake_zenodo import ASTEROID, XUMX_FILE, FakeZenodo


@pytest.fixture
def server() -> Iterator[FakeZenodo]:
    fake = FakeZenodo()
    fake.add_record(4704231, {XUMX_FILE: ASTEROID})
    yield fake
    fake.close()


@pytest.fixture
def settings(server: FakeZenodo, tmp_path: Path) -> WeightsSettings:
    return WeightsSettings(cache_dir=tmp_path / "cache", zenodo_url=server.url, timeout=2.0)
