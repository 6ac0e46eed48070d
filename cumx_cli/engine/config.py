"""Frozen configuration dataclasses: every default of the engine lives here and only here."""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, TypeVar

from cumx_cli.engine.data.sources import normalise_recipes
from cumx_cli.engine.errors import ConfigError

if TYPE_CHECKING:
    from _typeshed import DataclassInstance

_Dataclass = TypeVar("_Dataclass", bound="DataclassInstance")

#: Default output path template of ``separate``, under the output folder.
DEFAULT_TEMPLATE = "{track}/{source}.{ext}"
#: MiB of separated stems ``separate`` holds in memory until a track is encoded (all open tracks
#: together): four stereo stems of a 4.5-minute track at 44.1 kHz. Longer tracks use scratch files.
DEFAULT_SCRATCH_MIB = 384

#: Wiener regulariser of norbert (X-UMX's reference inference): float64 machine epsilon.
NORBERT_EPS = 2.220446049250313e-16
#: Wiener regulariser of openunmix's ``Separator`` (Open-Unmix's reference inference).
OPENUNMIX_EPS = 1e-10
#: STFT frames per Wiener/EM window in openunmix's ``Separator`` (``wiener_win_len``, about 7 s).
OPENUNMIX_WIENER_WINDOW = 300

#: The sources of the MUSDB18 recipe, in the order of the paper's code (Sony and asteroid).
MUSDB_SOURCES: tuple[str, ...] = ("bass", "drums", "vocals", "other")


def bandwidth_to_max_bin(sample_rate: int, n_fft: int, bandwidth: float) -> int:
    """Number of STFT bins whose centre frequency is at most ``bandwidth`` Hz.

    The bins are the ``n_fft // 2 + 1`` equally spaced frequencies from 0 to ``sample_rate / 2``;
    the result is the index of the last one at or below ``bandwidth``, plus one, capped at the
    bin count. With 44.1 kHz, ``n_fft`` 4096 and 16 kHz this is 1487 (spec §1.1).
    """
    num_bins = n_fft // 2 + 1
    spacing = (sample_rate / 2) / (n_fft / 2)
    return min(num_bins, int(math.floor(bandwidth / spacing + 1e-9)) + 1)


def _from_dict(cls: type[_Dataclass], data: dict[str, Any], what: str) -> _Dataclass:
    names = {f.name for f in dataclasses.fields(cls)}
    unknown = sorted(set(data) - names)
    if unknown:
        raise ConfigError(f"unknown {what} key(s): {', '.join(unknown)}")
    return cls(**data)


@dataclass(frozen=True)
class ModelConfig:
    """Architecture of a (bridged or independent) Open-Unmix model and its STFT front end.

    ``bridge=True`` is X-UMX (CrossNet-Open-Unmix): the encoder outputs are averaged over the
    sources before the LSTMs, and the skip concatenations are averaged before the decoders.
    ``bridge=False`` gives independent Open-Unmix networks, one per source.
    """

    sources: tuple[str, ...] = MUSDB_SOURCES
    num_channels: int = 2
    hidden_size: int = 512
    num_layers: int = 3
    bidirectional: bool = True
    max_bin: int = 1487
    bridge: bool = True
    n_fft: int = 4096
    hop_length: int = 1024
    sample_rate: int = 44100

    def __post_init__(self) -> None:
        object.__setattr__(self, "sources", tuple(self.sources))
        if not self.sources or len(set(self.sources)) != len(self.sources):
            raise ConfigError(f"sources must be distinct and non-empty, got {self.sources}",
                              field="sources")
        if self.num_channels < 1:
            raise ConfigError(f"num_channels must be at least 1, got {self.num_channels}",
                              field="num_channels")
        if self.bidirectional and self.hidden_size % 2:
            raise ConfigError(f"hidden_size must be even for a bidirectional model, got "
                              f"{self.hidden_size}", field="hidden_size")
        if not 1 <= self.max_bin <= self.num_bins:
            raise ConfigError(f"max_bin must be in 1..{self.num_bins}, got {self.max_bin}",
                              field="max_bin")
        if self.hop_length < 1 or self.n_fft < 2 or self.sample_rate < 1:
            raise ConfigError("n_fft, hop_length and sample_rate must be positive")

    @property
    def num_bins(self) -> int:
        """STFT bins at the output: ``n_fft // 2 + 1``."""
        return self.n_fft // 2 + 1

    def to_dict(self) -> dict[str, Any]:
        data = dataclasses.asdict(self)
        data["sources"] = list(self.sources)
        return data

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> ModelConfig:
        return _from_dict(cls, dict(data), "model config")


@dataclass(frozen=True)
class InferenceConfig:
    """How a track is separated: chunking, batching and the Wiener post-filter.

    ``wiener_window`` (STFT frames per Wiener/EM window, 0 for the whole chunk) and ``wiener_eps``
    ``None`` follow each model family's reference inference (the table is in the README,
    "Inference defaults per model family"): Open-Unmix models (independent networks) are filtered
    in windows of 300 frames (``OPENUNMIX_WIENER_WINDOW``, openunmix's ``wiener_win_len``), X-UMX
    models over the whole chunk at once (asteroid's and Sony's evaluation code).

    ``wiener_eps`` ``None`` follows each model family's reference inference: norbert's float64
    machine epsilon for bridged X-UMX models (asteroid's and Sony's evaluation code), 1e-10 for
    independent Open-Unmix models (openunmix's ``Separator``). The two differ by about 50 dB SNR
    in the output; matching them is what makes cumx's stems equal the peers' (tests/engine).

    ``chunk_seconds`` default (30 s) was chosen by measurement (see README "Choosing the chunk
    length"): with 2 CPU cores it is as fast as longer chunks, keeps the peak memory of a chunk
    batch near 1 GB, and a random full-size model's chunked output stays within the SNR quoted
    there of whole-track output. ``batch_size`` 0 means "pick for the device".
    """

    chunk_seconds: float = 30.0
    overlap_seconds: float = 1.0
    batch_size: int = 0
    niter: int = 1
    softmask: bool = False
    residual: bool = False
    wiener_eps: float | None = None
    wiener_window: int | None = None
    device: str = "auto"

    def __post_init__(self) -> None:
        if self.chunk_seconds <= 0:
            raise ConfigError(f"chunk_seconds must be positive, got {self.chunk_seconds}",
                              field="chunk_seconds")
        if self.overlap_seconds < 0 or self.overlap_seconds >= self.chunk_seconds:
            raise ConfigError(
                f"overlap_seconds must be at least 0 and shorter than the chunk "
                f"({self.chunk_seconds} s), got {self.overlap_seconds}", field="overlap_seconds"
            )
        if self.batch_size < 0:
            raise ConfigError(f"batch_size must be 0 (auto) or positive, got {self.batch_size}",
                              field="batch_size")
        if self.niter < 0:
            raise ConfigError(f"niter must be 0 or more, got {self.niter}", field="niter")
        if self.wiener_window is not None and self.wiener_window < 0:
            raise ConfigError(f"wiener_window must be 0 (whole chunk) or a number of frames, "
                              f"got {self.wiener_window}", field="wiener_window")


#: Training data layouts: ``auto`` detects ``tracks`` (a folder of stems per track, or MUSDB18's
#: ``.stem.mp4`` files) or ``sources`` (a folder of unaligned files per source).
DATA_LAYOUTS: tuple[str, ...] = ("auto", "tracks", "sources")


@dataclass(frozen=True)
class DataConfig:
    """Where the training examples come from and how they are augmented (:mod:`cumx_cli.engine.data`).

    ``derived`` holds the recipe of each source that is a sum of stems (``accompaniment`` from
    ``drums``, ``bass``, ``other``; :mod:`~cumx_cli.engine.data.sources`); the source names
    themselves are ``ModelConfig.sources``. ``silence_missing`` reads a stem that a track lacks
    as silence instead of refusing the track. ``valid_share`` is the share of the training
    tracks held out for validation when nothing else names them (``ROOT/valid/``, musdb's
    validation tracks, ``ROOT/split.json``; :mod:`~cumx_cli.engine.data.layouts`).

    The augmentations (:mod:`~cumx_cli.engine.data.augment`): a gain from U(``gain_min``,
    ``gain_max``) per stem, a channel swap with probability 0.5 (``channel_swap``), each source
    from a random track at a random start (``random_mix``; off: one track and start for all
    sources), and a sign flip with probability 0.5 (``polarity``). The defaults are the
    reference recipe (spec §3.2), where ``polarity`` is off.
    """

    layout: str = "auto"
    derived: tuple[tuple[str, tuple[str, ...]], ...] = ()
    silence_missing: bool = False
    valid_share: float = 0.1
    gain_min: float = 0.25
    gain_max: float = 1.25
    channel_swap: bool = True
    random_mix: bool = True
    polarity: bool = False

    def __post_init__(self) -> None:
        object.__setattr__(self, "derived", normalise_recipes(self.derived))
        if self.layout not in DATA_LAYOUTS:
            raise ConfigError(f"layout must be one of {', '.join(DATA_LAYOUTS)}, got "
                              f"{self.layout!r}", field="layout")
        if not 0 < self.valid_share < 1:
            raise ConfigError(f"valid_share must be between 0 and 1, got {self.valid_share}",
                              field="valid_share")
        if not 0 <= self.gain_min <= self.gain_max:
            raise ConfigError(f"gain_min must be at least 0 and at most gain_max "
                              f"({self.gain_max}), got {self.gain_min}", field="gain_min")

    def to_dict(self) -> dict[str, Any]:
        data = {f.name: getattr(self, f.name) for f in dataclasses.fields(self)}
        data["derived"] = {name: list(parts) for name, parts in self.derived}
        return data

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> DataConfig:
        return _from_dict(cls, dict(data), "data config")


#: Keys of the training configs that cumx wrote before ``TrainConfig`` held a ``ModelConfig``
#: (flat, in the ``train_config`` of older run folders' checkpoints): they belong to ``model``.
_FLAT_MODEL_KEYS = ("sources", "hidden_size", "num_layers", "bridge")


@dataclass(frozen=True)
class TrainConfig:
    """The training recipe (spec §3; Sony's values where the two reference codes differ, §8).

    ``model`` is the network to train; its ``max_bin`` is not set directly but derived from
    ``bandwidth`` (Hz) at the training data's sample rate (:meth:`model_config`), so the value
    stored here is the one at ``model.sample_rate``. ``model.bridge``, ``multidomain``,
    ``combine`` and ``alpha`` select a row of the paper's Table 1. The statistics and validation
    follow Sony's code: real mixtures, full training tracks, ``valid_seconds`` validation chunks,
    ``wsdr_trim`` samples trimmed inside the wSDR.

    ``init`` names a model to start from (a published name or a checkpoint path; None: random
    weights): ``model`` then holds that model's architecture with this run's sources
    (:mod:`~cumx_cli.engine.training.init`), and its input scaling is kept unless
    ``recompute_stats``. It is recorded for the run's provenance; ``--resume`` reads the weights
    from the run's own checkpoint, never from ``init`` again.

    Errors name the field at fault (:class:`ConfigError` ``field``), never a command-line flag.
    """

    model: ModelConfig = field(default_factory=ModelConfig)
    bandwidth: float = 16000.0
    multidomain: bool = True
    combine: bool = True
    alpha: float = 10.0
    wsdr_trim: int = 200
    seq_seconds: float = 6.0
    samples_per_track: int = 64
    batch_size: int = 16
    epochs: int = 1000
    lr: float = 1e-3
    weight_decay: float = 1e-5
    lr_factor: float = 0.3
    lr_patience: int = 80
    lr_cooldown: int = 10
    patience: int | None = None
    valid_seconds: float = 10.0
    seed: int = 42
    workers: int = 0
    device: str = "auto"
    amp: str | None = None
    init: str | None = None
    recompute_stats: bool = False
    data: DataConfig = field(default_factory=DataConfig)

    def __post_init__(self) -> None:
        counts = {"hidden_size": self.model.hidden_size, "num_layers": self.model.num_layers,
                  "samples_per_track": self.samples_per_track, "batch_size": self.batch_size,
                  "epochs": self.epochs}
        for name, value in counts.items():
            if value < 1:
                raise ConfigError(f"{name} must be at least 1, got {value}", field=name)
        for name in ("seq_seconds", "valid_seconds", "bandwidth", "lr"):
            if getattr(self, name) <= 0:
                raise ConfigError(f"{name} must be positive, got {getattr(self, name)}", field=name)
        if self.weight_decay < 0:
            raise ConfigError(f"weight_decay must be 0 or more, got {self.weight_decay}",
                              field="weight_decay")
        if self.amp not in (None, "bf16"):
            raise ConfigError(f"amp must be bf16, got {self.amp}", field="amp")
        if self.patience is not None and self.patience < 1:
            raise ConfigError(f"patience must be at least 1, got {self.patience}", field="patience")
        stray = [name for name, _ in self.data.derived if name not in self.model.sources]
        if stray:
            raise ConfigError(f"sources: the recipe of {stray[0]!r} names no source of the model "
                              f"({', '.join(self.model.sources)})", field="sources")
        object.__setattr__(self, "model", self.model_config(self.model.sample_rate))

    def model_config(self, sample_rate: int) -> ModelConfig:
        """``model`` for training data at ``sample_rate``: ``max_bin`` from ``bandwidth``.

        A run that starts from a model (``init``) keeps that model's ``max_bin`` and rate
        (``bandwidth`` is not used), and its data must be at that rate.
        """
        if self.init is not None:
            if sample_rate != self.model.sample_rate:
                raise ConfigError(f"the training data is at {sample_rate} Hz and the model to "
                                  f"fine-tune ({self.init}) at {self.model.sample_rate} Hz: "
                                  f"resample the data to {self.model.sample_rate} Hz")
            return self.model
        max_bin = bandwidth_to_max_bin(sample_rate, self.model.n_fft, self.bandwidth)
        return dataclasses.replace(self.model, sample_rate=sample_rate, max_bin=max_bin)

    def to_dict(self) -> dict[str, Any]:
        data = {f.name: getattr(self, f.name) for f in dataclasses.fields(self)}
        data["model"] = self.model.to_dict()
        data["data"] = self.data.to_dict()
        return data

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> TrainConfig:
        """The config of :meth:`to_dict`, or the flat one of older cumx run folders."""
        data = dict(data)
        model = dict(data.pop("model", None) or {})
        model.update({key: data.pop(key) for key in _FLAT_MODEL_KEYS if key in data})
        data["model"] = ModelConfig.from_dict(model)
        data["data"] = DataConfig.from_dict(data.pop("data", None) or {})  # older runs: none
        return _from_dict(cls, data, "training config")


#: Evaluation backends: cumx's own BSSEval v4 in torch, or the museval package itself.
EVAL_BACKENDS: tuple[str, ...] = ("fast", "museval")


@dataclass(frozen=True)
class EvalConfig:
    """How separations are scored (museval's BSSEval v4 settings by default).

    ``max_length_mismatch_seconds``: an estimate up to this much shorter or longer than its
    reference is zero-padded or cut to the reference's length, as museval's ``eval_mus_track``
    does (the X-UMX reference scripts drop up to 1023 samples); a bigger difference is an error,
    since it usually means a wrong file or a wrong sample rate.

    Errors name the field at fault (:class:`ConfigError` ``field``), never a command-line flag.
    """

    window_seconds: float = 1.0
    hop_seconds: float = 1.0
    filters_len: int = 512
    backend: str = "fast"
    max_length_mismatch_seconds: float = 0.1

    def __post_init__(self) -> None:
        if self.backend not in EVAL_BACKENDS:
            raise ConfigError(f"backend must be one of {', '.join(EVAL_BACKENDS)}, got "
                              f"{self.backend!r}", field="backend")
        for name in ("window_seconds", "hop_seconds", "filters_len"):
            if getattr(self, name) <= 0:
                raise ConfigError(f"{name} must be positive, got {getattr(self, name)}", field=name)
        if self.max_length_mismatch_seconds < 0:
            raise ConfigError("max_length_mismatch_seconds must be 0 or more, got "
                              f"{self.max_length_mismatch_seconds}",
                              field="max_length_mismatch_seconds")
