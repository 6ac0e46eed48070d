"""Fine-tuning (``TrainConfig.init``): the source mapping, the weight transfer, the kept input
scaling, the architecture checks, and exact resume of a fine-tuned run."""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path

import pytest
import torch

from cumx_cli.engine.config import ModelConfig, TrainConfig
from cumx_cli.engine.errors import ConfigError
from cumx_cli.engine.model import CrossUMX
from cumx_cli.engine.training import loop
from cumx_cli.engine.training.init import (
    SourceMapping,
    init_model_config,
    plan_sources,
    transfer_weights,
)
from cumx_cli.engine.training.loop import fit
from cumx_cli.engine.training.run_folder import load_run_config
from cumx_cli.engine.weights.resolver import load_model
from tests.conftest import random_model, tiny_config
from tests.synthetic_musdb import karaoke_data

FOUR = ("bass", "drums", "vocals", "other")
KARAOKE = ("vocals", "accompaniment")


@pytest.fixture(scope="module")
def karaoke(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The small synthetic set (2 training, 1 validation track of 3 s) plus, in each track,
    ``accompaniment.wav`` = drums + bass + other."""
    return karaoke_data(tmp_path_factory.mktemp("karaoke"))


def _tiny_run(model: ModelConfig, **overrides: object) -> TrainConfig:
    values: dict[str, object] = {"model": model, "init": "base", "seq_seconds": 1.0,
                                 "samples_per_track": 2, "batch_size": 2, "device": "cpu",
                                 "epochs": 1}
    values.update(overrides)
    return TrainConfig(**values)  # type: ignore[arg-type]


def test_plan_sources_keeps_adds_and_drops_by_name() -> None:
    assert plan_sources(FOUR, KARAOKE) == SourceMapping(
        kept=("vocals",), new=(("accompaniment", "vocals"),), dropped=("bass", "drums", "other"))
    assert plan_sources(FOUR, ("piano", "drums", "guitar")) == SourceMapping(
        kept=("drums",), new=(("piano", "drums"), ("guitar", "drums")),
        dropped=("bass", "vocals", "other"))
    none_kept = plan_sources(FOUR, ("a", "b"))
    assert none_kept.new == (("a", "bass"), ("b", "bass")) and none_kept.dropped == FOUR
    assert plan_sources(FOUR, FOUR) == SourceMapping(FOUR, (), ())
    assert plan_sources(FOUR, KARAOKE).describe() == (
        "kept vocals; new accompaniment (a copy of vocals); dropped bass, drums, other")


def test_the_architecture_comes_from_the_model_and_contradictions_are_refused() -> None:
    base = tiny_config(n_fft=512, hop_length=128, max_bin=100, bridge=False)
    config = init_model_config(base, KARAOKE, {"hidden_size": 8, "bridge": False})
    assert config == dataclasses.replace(base, sources=KARAOKE)
    assert init_model_config(base).sources == base.sources
    with pytest.raises(ConfigError, match=r"^hidden_size 64 contradicts the model to fine-tune "
                       r"\(xumx has 8\): the architecture comes from that model, leave "
                       r"hidden_size out$") as caught:
        init_model_config(base, KARAOKE, {"hidden_size": 64}, name="xumx")
    assert caught.value.field == "hidden_size"
    with pytest.raises(ConfigError, match=r"^bridge on contradicts .* has off\)") as caught:
        init_model_config(base, KARAOKE, {"bridge": True})
    assert caught.value.field == "bridge"


def _masks(model: CrossUMX, mag: torch.Tensor) -> dict[str, torch.Tensor]:
    with torch.no_grad():
        out = model.eval()(mag)
    return {s: out[:, j] for j, s in enumerate(model.sources)}


@pytest.mark.parametrize("bridge", [False, True])
def test_transfer_copies_networks_by_name(bridge: bool) -> None:
    """Kept and new networks are exact copies (of themselves, of their donor). Without the
    bridge a kept source's mask is the model's own; with it, the means over the new set of
    branches change it (the effect the README describes), unless the sources are unchanged."""
    base = random_model(tiny_config(bridge=bridge), seed=3)
    target = CrossUMX(dataclasses.replace(base.config, sources=KARAOKE))
    mapping = transfer_weights(base, target)
    assert mapping.new == (("accompaniment", "vocals"),)
    for source, donor in (("vocals", "vocals"), ("accompaniment", "vocals")):
        got, want = target.net(source).state_dict(), base.net(donor).state_dict()
        assert got.keys() == want.keys()
        assert all(torch.equal(got[k], want[k]) for k in want)
    mag = torch.rand(1, 2, base.config.num_bins, 12, generator=torch.Generator().manual_seed(0))
    before, after = _masks(base, mag), _masks(target, mag)
    if bridge:
        assert not torch.allclose(before["vocals"], after["vocals"])
        # vocals and its copy: both means are vocals' own features, so the masks are equal
        assert torch.allclose(after["vocals"], after["accompaniment"])
        same = CrossUMX(base.config)
        transfer_weights(base, same)
        assert all(torch.equal(a, b) for a, b in zip(_masks(same, mag).values(),
                                                      before.values(), strict=True))
    else:
        assert torch.equal(before["vocals"], after["vocals"])
        assert torch.equal(after["vocals"], after["accompaniment"])


def test_transfer_refuses_another_architecture() -> None:
    base = random_model(tiny_config())
    with pytest.raises(ConfigError, match="^hidden_size 16 contradicts") as caught:
        transfer_weights(base, CrossUMX(tiny_config(hidden_size=16)))
    assert caught.value.field == "hidden_size"


def test_input_scaling_is_kept_unless_recomputed() -> None:
    base = random_model(tiny_config(), seed=5)
    model = init_model_config(base.config, KARAOKE)
    kept, _ = loop._build(_tiny_run(model), 44100, None, base)
    for source in KARAOKE:
        assert torch.equal(kept.net(source).input_mean, base.net("vocals").input_mean)
        assert torch.equal(kept.net(source).input_scale, base.net("vocals").input_scale)
    mean, std = torch.rand(2049) + 0.5, torch.rand(2049) + 0.5
    fresh, _ = loop._build(_tiny_run(model, recompute_stats=True), 44100, (mean, std), base)
    assert torch.equal(fresh.net("vocals").input_mean, -mean[:model.max_bin])
    assert torch.allclose(fresh.net("accompaniment").input_scale, 1 / std[:model.max_bin])
    assert torch.equal(fresh.net("vocals").fc1.weight, base.net("vocals").fc1.weight)


def test_data_at_another_rate_than_the_model_is_refused() -> None:
    config = _tiny_run(init_model_config(tiny_config(), KARAOKE))
    with pytest.raises(ConfigError, match=r"^the training data is at 22050 Hz and the model to "
                       r"fine-tune \(base\) at 44100 Hz: resample the data to 44100 Hz$"):
        config.model_config(22050)
    assert config.model_config(44100) == config.model


def test_init_loaded_from_the_config_when_not_given(karaoke: Path, tmp_path: Path,
                                                    monkeypatch: pytest.MonkeyPatch) -> None:
    """The Python API: ``TrainConfig.init`` alone is enough (a path here), no statistics are
    computed (the model's input scaling is kept), and the run's ``best.pt`` is a two-source
    model."""
    fixture = Path(__file__).parents[1] / "fixtures" / "peers" / "xumx_asteroid.pth"
    base = load_model(fixture)
    model = init_model_config(base.config, KARAOKE)

    def no_statistics(*args: object, **kwargs: object) -> None:
        raise AssertionError("statistics computed for a run that keeps the model's")

    monkeypatch.setattr(loop, "input_statistics", no_statistics)
    fit(_tiny_run(model, init=str(fixture)), karaoke, tmp_path / "run")
    best = load_model(tmp_path / "run" / "best.pt")
    assert best.sources == KARAOKE and best.config.hidden_size == base.config.hidden_size
    record = json.loads((tmp_path / "run" / "config.json").read_text())
    assert record["init"] == str(fixture)
    assert record["init_from"] == {"model": str(fixture), "kept": ["vocals"],
                                   "new": {"accompaniment": "vocals"},
                                   "dropped": ["bass", "drums", "other"], "input_scaling": "kept"}


@pytest.mark.slow
def test_a_fine_tuned_run_resumes_exactly(karaoke: Path, tmp_path: Path) -> None:
    base = random_model(tiny_config(), seed=7)
    config = _tiny_run(init_model_config(base.config, KARAOKE), epochs=3)
    straight = fit(config, karaoke, tmp_path / "a", init_model=base)
    first = fit(config, karaoke, tmp_path / "b", init_model=base, stop_after=1)
    assert load_run_config(tmp_path / "b") == config
    # the resumed run reads its own last.pt: the init model is neither given nor loadable
    rest = fit(load_run_config(tmp_path / "b"), karaoke, tmp_path / "b", resume=True)
    assert [r.epoch for r in rest] == [2, 3]
    assert [(r.train_loss, r.valid_loss) for r in straight] == \
        [(r.train_loss, r.valid_loss) for r in first + rest]
    a = json.loads((tmp_path / "a" / "config.json").read_text())
    b = json.loads((tmp_path / "b" / "config.json").read_text())
    assert a["init_from"] == b["init_from"] and b["init_from"]["kept"] == ["vocals"]
    for name in ("last.pt", "best.pt"):
        sa = torch.load(tmp_path / "a" / name, weights_only=True)["state_dict"]
        sb = torch.load(tmp_path / "b" / name, weights_only=True)["state_dict"]
        assert all(torch.equal(sa[k], sb[k]) for k in sa)
