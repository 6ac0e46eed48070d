"""``--sources`` text: plain stems and derived sums, and the errors that name the bad item."""

from __future__ import annotations

import pytest

from cumx_cli.engine.config import DataConfig, ModelConfig, TrainConfig
from cumx_cli.engine.data.sources import SourceList, parse_sources
from cumx_cli.engine.errors import ConfigError


def test_plain_and_derived_sources_round_trip() -> None:
    parsed = parse_sources(" vocals , accompaniment = drums + bass+other,")
    assert parsed.names == ("vocals", "accompaniment")
    assert parsed.derived == (("accompaniment", ("drums", "bass", "other")),)
    assert parsed.recipe("vocals") == ("vocals",)
    assert parsed.recipe("accompaniment") == ("drums", "bass", "other")
    assert parsed.stems == ("vocals", "drums", "bass", "other")
    assert parsed.to_text() == "vocals,accompaniment=drums+bass+other"
    assert parse_sources(parsed.to_text()) == parsed
    assert parse_sources("bass,drums,vocals,other").derived == ()


@pytest.mark.parametrize(("text", "message"), [
    (",", "sources must name 2 to 8 sources, got 0 ()"),
    ("vocals", "sources must name 2 to 8 sources, got 1 (vocals)"),
    (",".join("abcdefghi"), "sources must name 2 to 8 sources, got 9"),
    ("a,b,a", "sources must be distinct and non-empty: 'a' is given twice"),
    ("a,b=", "sources item 'b=': expected NAME=stem+stem+..."),
    ("a,=c", "sources item '=c': expected NAME=stem+stem+..."),
    ("a,b=c=d", "sources item 'b=c=d': expected NAME"),
    ("a,b=c+", "sources item 'b=c+': expected NAME"),
    ("a,b=a+c", "sources item 'b=a+c': stem 'a' is used in 'a' and 'b'"),
    ("a,b=c+c", "sources item 'b=c+c': stem 'c' is used twice"),
    ("a,b=c+d,e=d", "sources item 'e=d': stem 'd' is used in 'b' and 'e'"),
    ("a,mixture", "sources item 'mixture': 'mixture' is the name of a track's mixture file"),
    ("a,b=mixture+c", "sources item 'b=mixture+c': 'mixture' is the name"),
    ("a,.x", "sources item '.x': '.x' is not a valid name"),
    ("a,b=c/d", "sources item 'b=c/d': 'c/d' is not a valid name"),
])
def test_bad_items_are_named(text: str, message: str) -> None:
    with pytest.raises(ConfigError) as caught:
        parse_sources(text)
    assert str(caught.value).startswith(message)
    assert caught.value.field == "sources"


def test_the_data_config_keeps_the_recipes_through_a_run_record() -> None:
    parsed = parse_sources("vocals,accompaniment=drums+bass+other")
    config = TrainConfig(model=ModelConfig(sources=parsed.names),
                         data=DataConfig(derived=parsed.derived, layout="tracks", polarity=True))
    record = config.to_dict()
    assert record["data"]["derived"] == {"accompaniment": ["drums", "bass", "other"]}
    assert TrainConfig.from_dict(record) == config
    older = {k: v for k, v in record.items() if k != "data"}  # a run of an older cumx
    assert TrainConfig.from_dict(older).data == DataConfig()
    with pytest.raises(ConfigError, match="unknown data config key"):
        TrainConfig.from_dict({**record, "data": {"shuffle": True}})
    with pytest.raises(ConfigError, match=r"sources: the recipe of 'karaoke' names no source"):
        TrainConfig(model=ModelConfig(sources=("a", "b")),
                    data=DataConfig(derived=(("karaoke", ("c",)),)))
    assert SourceList(("a",)).names == ("a",)  # built in code, one source is allowed


@pytest.mark.parametrize(("field", "value", "message"), [
    ("layout", "folders", "layout must be one of auto, tracks, sources, got 'folders'"),
    ("valid_share", 1.0, "valid_share must be between 0 and 1, got 1.0"),
    ("gain_min", 2.0, "gain_min must be at least 0 and at most gain_max (1.25), got 2.0"),
])
def test_data_config_errors_name_the_field(field: str, value: object, message: str) -> None:
    with pytest.raises(ConfigError) as caught:
        DataConfig(**{field: value})  # type: ignore[arg-type]
    assert str(caught.value) == message and caught.value.field == field
