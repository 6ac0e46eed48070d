"""Where and how a ``separate`` run writes stems: the output spec, the filename template, the
output paths of each input (never an input, never another input's), and the clip policy.
"""

from __future__ import annotations

import os
import string
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Literal, Protocol, cast

import torch

from cumx_cli.engine.audio.formats import LOSSY_FORMATS
from cumx_cli.engine.audio.io import AudioWriter, OutputFormat, SampleType, subtype_for
from cumx_cli.engine.config import DEFAULT_TEMPLATE
from cumx_cli.engine.errors import AudioIOError, ConfigError
from cumx_cli.engine.inference.inputs import InputFile
from cumx_cli.engine.inference.scratch import MEMORY_SCRATCH_BYTES

ClipMode = Literal["rescale", "clamp", "none"]
#: ``--format`` values (:data:`~cumx_cli.engine.audio.formats.WRITE_FORMATS`).
StemFormat = Literal["wav", "flac", "mp3", "ogg", "opus", "m4a"]
#: How ``no_SOURCE`` of two-stem output is made: the sum of the other separated sources, or the
#: mixture minus SOURCE.
OtherMethod = Literal["add", "minus"]
#: The fields a ``--filename`` template may use.
TEMPLATE_FIELDS = ("track", "name", "parent", "source", "ext")


@dataclass(frozen=True)
class OutputSpec:
    """Where and how stems are written.

    ``clip``: ``rescale`` divides every stem of a track by one common factor,
    ``max(1, 1.01 * peak)`` over the written stems, so nothing clips and the stems keep their
    relative levels (and still sum to the scaled mixture); it changes nothing when no stem
    exceeds full scale. ``clamp`` clips samples to [-1, 1]. ``none`` leaves float32 output
    untouched; integer and MP3 output is always clamped, since the encoder would wrap around.

    ``stems`` ``None`` writes every source of the separator (see :func:`stem_plan` for
    ``stems``, ``two_stems`` and ``other_method``). ``bitrate`` (kbps) is for the lossy formats,
    each with its default (:data:`~cumx_cli.engine.audio.encode.CODECS`); ``dtype`` for WAV and
    FLAC. ``scratch_memory_bytes`` is the budget for holding finished samples in memory (see
    :mod:`.scratch`).
    """

    outdir: Path = Path("separated")
    template: str = DEFAULT_TEMPLATE
    fmt: StemFormat = "wav"
    dtype: SampleType = "int16"
    clip: ClipMode = "rescale"
    sample_rate: int | None = None
    stems: tuple[str, ...] | None = None
    two_stems: str | None = None
    other_method: OtherMethod = "add"
    bitrate: int | None = None
    skip_existing: bool = False
    scratch_memory_bytes: int = MEMORY_SCRATCH_BYTES

    def __post_init__(self) -> None:
        from cumx_cli.engine.audio import encode  # PyAV, only once a spec is made

        check_template(self.template)
        if self.fmt in LOSSY_FORMATS:
            encode.check_bitrate(self.fmt, self.bitrate)
            missing = encode.missing_encoder(cast(encode.EncodedFormat, self.fmt))
            if missing is not None:
                raise ConfigError(f"--format {self.fmt}: {missing}; choose another --format")
        else:
            encode.check_bitrate(self.fmt, self.bitrate)  # refuses a bitrate for wav/flac
            subtype_for(cast(OutputFormat, self.fmt), self.dtype)  # flac + float32 is refused
        if self.two_stems is not None and self.stems is not None:
            raise ConfigError("--two-stems and --stems cannot be combined: --two-stems SOURCE "
                              "writes SOURCE and no_SOURCE")
        if self.sample_rate is not None and self.sample_rate <= 0:
            raise ConfigError(f"--sample-rate must be positive, got {self.sample_rate}")
        if self.scratch_memory_bytes < 0:
            raise ConfigError(f"scratch_memory_bytes must be 0 or more, got {self.scratch_memory_bytes}")


def check_output_folder(outdir: Path) -> None:
    """Fail now if stems could not be written under ``outdir`` (created later, when the first
    track is done), so that a run does not load, or download, a model only to fail then.

    The nearest existing folder on the way must be a folder this process may create entries in.
    A full disk is not caught here: it shows when a stem is written.

    Raises:
        AudioIOError: a file is in the way, or the folder is not writable (named).
    """
    existing = Path(outdir)
    while not existing.exists() and existing != existing.parent:
        existing = existing.parent  # a relative path ends at ".", which exists
    if not existing.is_dir():
        raise AudioIOError(f"{outdir}: cannot create the output folder: {existing} is a file")
    if not os.access(existing, os.W_OK | os.X_OK):
        where = "" if existing == Path(outdir) else f" ({existing})"
        raise AudioIOError(f"{outdir}: cannot write to the output folder{where}: permission denied")


def check_template(template: str) -> None:
    """Reject a filename template that is not usable for every source.

    Raises:
        ConfigError: malformed, an unknown field, or no ``{source}`` (every stem would get the
            same name).
    """
    try:
        names = {f for _, f, _, _ in string.Formatter().parse(template) if f is not None}
    except ValueError as exc:
        raise ConfigError(f"--filename {template!r} is not a valid template ({exc})") from exc
    unknown = sorted(names - set(TEMPLATE_FIELDS))
    if unknown:
        raise ConfigError(f"--filename {template!r} uses unknown field(s) {', '.join(unknown)}; "
                          "the fields are {track}, {name}, {parent}, {source} and {ext}")
    if "source" not in names:
        raise ConfigError(f"--filename {template!r} must contain {{source}}, or every stem "
                          "would get the same name")


def output_paths(item: InputFile, sources: Iterable[str], spec: OutputSpec) -> dict[str, Path]:
    """Final output path of each source for one input.

    Template fields: ``{track}`` (the file's name without suffix, or for files found in a
    folder input their path relative to it), ``{name}`` (the file name without suffix),
    ``{parent}`` (the name of the folder holding the file), ``{source}``, ``{ext}``.
    """
    fields = {"track": item.track, "name": item.path.stem, "parent": item.path.parent.name}
    return {src: spec.outdir / spec.template.format(**fields, source=src, ext=spec.fmt)
            for src in sources}


class Writer(Protocol):
    """A stem file being written (``AudioWriter`` or ``EncodedWriter``)."""

    def write_frames(self, frames: torch.Tensor) -> None:
        """Shapes: frames (time, channel) float."""

    def commit(self) -> None: ...

    def abort(self) -> None: ...

    def __enter__(self) -> Writer: ...

    def __exit__(self, exc_type: object, *_: object) -> None: ...


@dataclass(frozen=True)
class StemPlan:
    """Which stems a run writes and how each is made from the separator's outputs.

    ``weights`` (stem, source + 1) mixes the separator's sources and, in its last column, the
    mixture into each written stem; ``None`` when every stem is one source as it is
    (``indices``), the usual case, which costs nothing.
    """

    names: tuple[str, ...]
    indices: tuple[int, ...] = ()
    weights: torch.Tensor | None = None

    @property
    def needs_mixture(self) -> bool:
        return self.weights is not None and bool(self.weights[:, -1].any())

    def apply(self, outputs: torch.Tensor, mixture: torch.Tensor | None = None) -> torch.Tensor:
        """The written stems of a chunk.

        Shapes:
            outputs: (source, channel, time); mixture: (channel, time), when
            :attr:`needs_mixture`; returns (stem, channel, time)
        """
        if self.weights is None:
            if self.indices == tuple(range(outputs.shape[0])):
                return outputs  # every source as it is: no copy
            return outputs[list(self.indices)]
        parts = outputs if mixture is None else torch.cat([outputs, mixture[None]])
        weights = self.weights if mixture is not None else self.weights[:, :-1]
        return torch.einsum("ws,sct->wct", weights.to(parts.dtype), parts)


def stem_plan(spec: OutputSpec, sources: tuple[str, ...], residual: str | None = None) -> StemPlan:
    """The stems of ``spec`` from a separator of ``sources``.

    - ``two_stems=S``: ``S`` and ``no_S``; ``no_S`` is the sum of every other source
      (``other_method="add"``, as demucs; with a residual, it is included, so the two add up to
      the mixture) or the mixture minus ``S`` (``"minus"``: the two add up to the mixture
      exactly, and ``no_S`` holds whatever the model put in no source).
    - ``stems``: those sources, in that order; ``residual`` (the separator's residual source,
      when it has one) is written too, since asking for it and then losing it is a surprise.
    - neither: every source.

    Raises:
        ConfigError: a stem or ``two_stems`` that the separator does not have.
    """
    model_sources = [s for s in sources if s != residual]
    if spec.two_stems is not None:
        stem = spec.two_stems
        if stem not in model_sources:
            raise ConfigError(f"--two-stems {stem}: this model has {', '.join(model_sources)}")
        weights = torch.zeros(2, len(sources) + 1)
        k = sources.index(stem)
        weights[0, k] = 1.0
        if spec.other_method == "add":
            weights[1, : len(sources)] = 1.0
            weights[1, k] = 0.0
        else:
            weights[1, -1], weights[1, k] = 1.0, -1.0
        return StemPlan((stem, f"no_{stem}"), weights=weights)
    names = tuple(spec.stems) if spec.stems else sources
    if residual is not None and residual in sources and residual not in names:
        names = (*names, residual)
    unknown = [s for s in names if s not in sources]
    if unknown:
        hint = ("; 'residual' is written with --residual" if "residual" in unknown
                and residual is None else "")
        raise ConfigError(f"unknown stem(s) {', '.join(unknown)}; this model has "
                          f"{', '.join(sources)}{hint}")
    return StemPlan(names, indices=tuple(sources.index(s) for s in names))


def open_writer(final: Path, sample_rate: int, channels: int, spec: OutputSpec,
                tags: dict[str, str] | None = None) -> Writer:
    """The writer of one stem: libsndfile for WAV and FLAC, PyAV's encoders for the lossy
    formats (:mod:`~cumx_cli.engine.audio.encode`), ``tags`` copied where the format keeps them.
    """
    if spec.fmt in LOSSY_FORMATS:
        from cumx_cli.engine.audio.encode import EncodedFormat, EncodedWriter

        return EncodedWriter(final, sample_rate, channels, cast(EncodedFormat, spec.fmt),
                             bitrate=spec.bitrate, tags=tags)
    return AudioWriter(final, sample_rate, channels, cast(OutputFormat, spec.fmt), spec.dtype,
                       tags=tags)


def stored_rate(spec: OutputSpec, input_rate: int) -> int:
    """The rate stems are written at: ``--sample-rate`` or the input's, except Opus, which
    stores 48 kHz (the rate the stems are resampled to)."""
    from cumx_cli.engine.audio.encode import OPUS_RATE

    rate = spec.sample_rate or input_rate
    return OPUS_RATE if spec.fmt == "opus" else rate


class OutputClaims:
    """The output paths handed out so far in one run, compared as resolved paths.

    Args:
        inputs: every input of the run; no output may overwrite one of them.
    """

    def __init__(self, inputs: Iterable[InputFile]) -> None:
        self._inputs = {_resolved(item.path) for item in inputs}
        self._claimed: dict[Path, Path] = {}

    def claim(self, item: InputFile, outputs: dict[str, Path]) -> None:
        """Reserve ``outputs`` for ``item``, all or none.

        Raises:
            ConfigError: an output is an input file, or the output of another input.
        """
        for path in outputs.values():
            real = _resolved(path)
            if real in self._inputs:
                raise ConfigError(f"{item.path}: output {path} would overwrite an input file; "
                                  "choose another -o/--output or --filename")
            owner = self._claimed.get(real)
            if owner is not None and owner != item.path:
                raise ConfigError(f"{item.path}: output {path} is also the output of {owner}; "
                                  "use a --filename template that keeps them apart")
        for path in outputs.values():
            self._claimed[_resolved(path)] = item.path


def _resolved(path: Path) -> Path:
    try:
        return path.resolve()
    except OSError:
        return path.absolute()


def clip_gain(clip: ClipMode, peak: float) -> float:
    """The gain of every stem of a track whose stems peak at ``peak`` (see :class:`OutputSpec`)."""
    return 1.0 / max(1.0, 1.01 * peak) if clip == "rescale" else 1.0


def apply_clip(frames: torch.Tensor, clip: ClipMode, gain: float) -> torch.Tensor:
    """Scale by the track's gain, then clamp to [-1, 1] for ``clamp`` (a new tensor if changed).

    Shapes:
        frames: any layout; returns the same layout
    """
    if gain != 1.0:
        frames = frames * gain
    if clip == "clamp":
        frames = frames.clamp(-1.0, 1.0)
    return frames
