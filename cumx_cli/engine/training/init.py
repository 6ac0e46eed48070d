"""Fine-tuning: start a run from a trained model (``TrainConfig.init``) instead of random weights.

The model to start from (a published name or any file :func:`~cumx_cli.engine.weights.resolver.
load_model` reads) fixes the architecture: every :data:`ARCHITECTURE` field of the new run's
``ModelConfig`` is the model's, and a value the caller asked for that contradicts it is refused
(:func:`init_model_config`). Only the sources may change, and they map onto the model's
networks by name (:func:`plan_sources`, :func:`transfer_weights`):

* a **kept** source (one the model has) keeps its whole network: encoder, LSTM, decoder, input
  and output scaling, and the batch-norm running statistics;
* a **new** source starts as a *copy* of a donor's network: the first kept source in the new
  source order (for ``vocals,accompaniment`` from X-UMX, ``accompaniment`` starts as a copy of
  ``vocals``), or the model's first source when no source is kept. A copy rather than random
  weights, because every branch reads the same mixture: the copied encoder, LSTM and input
  scaling are trained features of it, and only the decoder's output has to be re-learned. The
  references fine-tune only whole models with unchanged sources (openunmix's ``--checkpoint``,
  asteroid's ``continue_from``), so this is cumx's choice;
* a **dropped** source (one the model has and the run does not) is removed with its network.

With the bridge on (X-UMX) every branch's LSTM reads the *mean* of all the encoder outputs, and
every decoder the mean of all the skip features: adding, dropping or copying a branch changes
those means for the kept branches too, so their output changes before any training step (a
copied branch counts its donor twice in the means; dropping ``bass``, ``drums`` and ``other``
leaves means over ``vocals`` and its copy, that is ``vocals``' own features). Without the bridge
a kept branch's output is exactly the model's (tested). The README's "Fine-tuning" section gives
the measured effect.

The optimizer and the learning-rate scheduler always start fresh (what tells ``init`` from
``--resume``); the input scaling is the model's unless ``TrainConfig.recompute_stats``.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import torch

from cumx_cli.engine.config import ModelConfig
from cumx_cli.engine.errors import ConfigError
from cumx_cli.engine.model import CrossUMX

if TYPE_CHECKING:
    from cumx_cli.engine.weights.cache import WeightsSettings

#: The ``ModelConfig`` fields that come from the model a run starts from.
ARCHITECTURE = ("num_channels", "hidden_size", "num_layers", "bidirectional", "max_bin",
                "bridge", "n_fft", "hop_length", "sample_rate")


@dataclass(frozen=True)
class SourceMapping:
    """How a run's sources map onto the networks of the model it starts from.

    Attributes:
        kept: sources the model has, which keep their networks (in the run's order).
        new: ``(source, donor)`` for each source the model lacks: it starts as a copy of the
            donor's network.
        dropped: the model's sources the run leaves out (in the model's order).
    """

    kept: tuple[str, ...]
    new: tuple[tuple[str, str], ...]
    dropped: tuple[str, ...]

    def describe(self) -> str:
        """One line for the run's log: ``kept vocals; new accompaniment (a copy of vocals)``."""
        parts = []
        if self.kept:
            parts.append(f"kept {', '.join(self.kept)}")
        if self.new:
            parts.append("new " + ", ".join(f"{s} (a copy of {d})" for s, d in self.new))
        if self.dropped:
            parts.append(f"dropped {', '.join(self.dropped)}")
        return "; ".join(parts)

    def to_dict(self) -> dict[str, Any]:
        return {"kept": list(self.kept), "new": dict(self.new), "dropped": list(self.dropped)}


def plan_sources(model_sources: tuple[str, ...], sources: tuple[str, ...]) -> SourceMapping:
    """Which of ``sources`` are kept, new (and copied from which donor) or dropped.

    The donor of every new source is the first kept source in ``sources``' order, or
    ``model_sources[0]`` when none is kept.
    """
    kept = tuple(s for s in sources if s in model_sources)
    donor = kept[0] if kept else model_sources[0]
    new = tuple((s, donor) for s in sources if s not in model_sources)
    dropped = tuple(s for s in model_sources if s not in sources)
    return SourceMapping(kept, new, dropped)


def _shown(value: object) -> str:
    if isinstance(value, bool):
        return "on" if value else "off"
    return str(value)


def init_model_config(base: ModelConfig, sources: tuple[str, ...] | None = None,
                      requested: Mapping[str, object] | None = None,
                      name: str = "the model") -> ModelConfig:
    """The ``ModelConfig`` of a run that starts from a model of config ``base``.

    Args:
        base: the config of the model to start from; every :data:`ARCHITECTURE` field is its.
        sources: the run's sources; None keeps the model's.
        requested: ``ModelConfig`` fields the caller set explicitly (``{"hidden_size": 64}``);
            each must agree with ``base``.
        name: how messages name the model (``xumx``, a path).

    Raises:
        ConfigError: a requested field contradicts ``base`` (``field`` names it), or an
            unknown field is requested.
    """
    for key, value in (requested or {}).items():
        if key not in ARCHITECTURE:
            raise ConfigError(f"{key} is not an architecture field of a model config", field=key)
        if getattr(base, key) != value:
            raise ConfigError(
                f"{key} {_shown(value)} contradicts the model to fine-tune ({name} has "
                f"{_shown(getattr(base, key))}): the architecture comes from that model, leave "
                f"{key} out", field=key)
    return ModelConfig(sources=tuple(sources) if sources is not None else base.sources,
                       **{key: getattr(base, key) for key in ARCHITECTURE})


def check_architecture(base: ModelConfig, target: ModelConfig, name: str = "the model") -> None:
    """Refuse to start a model of config ``target`` from one of config ``base``.

    Raises:
        ConfigError: an :data:`ARCHITECTURE` field differs (``field`` names it).
    """
    init_model_config(base, target.sources, {k: getattr(target, k) for k in ARCHITECTURE}, name)


def transfer_weights(base: CrossUMX, target: CrossUMX) -> SourceMapping:
    """Copy ``base``'s networks into ``target`` by source name, as the module docstring says.

    Every parameter and buffer of a kept source's network is copied from the model; a new
    source's from its donor's. ``target`` must have ``base``'s architecture.

    Raises:
        ConfigError: the architectures differ.
    """
    check_architecture(base.config, target.config)
    mapping = plan_sources(base.sources, target.sources)
    donors = {s: s for s in mapping.kept} | dict(mapping.new)
    with torch.no_grad():
        for source, donor in donors.items():
            target.net(source).load_state_dict(base.net(donor).state_dict())
    return mapping


def load_init(spec: str, settings: WeightsSettings | None = None) -> tuple[Path, CrossUMX]:
    """The local path and the model of ``spec``: a published name (downloaded and verified on
    first use, as ``separate`` does) or a checkpoint file or folder in any format cumx reads.

    Args:
        settings: cache, offline and mirror settings; None: the defaults.

    Raises:
        CheckpointError: as :func:`~cumx_cli.engine.weights.resolver.resolve_path` and
            :func:`~cumx_cli.engine.weights.resolver.load_model`.
    """
    from cumx_cli.engine.weights.resolver import load_model, resolve_path

    path = resolve_path(spec, settings)
    return path, load_model(path)
