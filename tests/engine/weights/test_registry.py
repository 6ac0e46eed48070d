"""The registry of published models: complete entries, and unknown names that say what to type."""

from __future__ import annotations

import pytest

from cumx_cli.engine.errors import UnknownWeightsError
from cumx_cli.engine.weights.registry import CATALOGUE, get_spec


def test_registry_entries_are_complete() -> None:
    assert {"xumx", "xumx-hq", "xumxl", "umxhq", "umx", "umxl", "xumx-nnabla"} <= set(CATALOGUE)
    for spec in CATALOGUE.values():
        assert spec.files and spec.license and spec.training_data and spec.description
        assert (spec.zenodo_record is None) != (spec.url is None)
    for name in ("umx", "umxhq", "umxl"):
        assert all(len(f.split("-")[1].split(".")[0]) == 8 for f in CATALOGUE[name].files)
    assert CATALOGUE["xumx-nnabla"].verification == "first-use"


def test_unknown_name_suggests_the_closest() -> None:
    with pytest.raises(UnknownWeightsError, match="did you mean 'xumx'"):
        get_spec("xumz")
