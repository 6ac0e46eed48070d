"""Where and how a ``separate`` run writes stems: the output spec, the filename template, the
output paths of each input (never an input, never another input's), and the clip policy.
"""

from __future__ import annotations

import os
import string
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

import torch

from cumx_cli.engine.audio.io import OutputFormat, SampleType, subtype_for
from cumx_cli.engine.config import DEFAULT_TEMPLATE
from cumx_cli.engine.errors import AudioIOError, ConfigError
from cumx_cli.engine.inference.inputs import InputFile
from cumx_cli.engine.inference.scratch import MEMORY_SCRATCH_BYTES

ClipMode = Literal["rescale", "clamp", "none"]
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

    ``stems`` ``None`` writes every source of the separator. ``scratch_memory_bytes`` is the
    budget for holding finished samples in memory (see :mod:`.scratch`).
    """

    outdir: Path = Path("separated")
    template: str = DEFAULT_TEMPLATE
    fmt: OutputFormat = "wav"
    dtype: SampleType = "int16"
    clip: ClipMode = "rescale"
    sample_rate: int | None = None
    stems: tuple[str, ...] | None = None
    skip_existing: bool = False
    scratch_memory_bytes: int = MEMORY_SCRATCH_BYTES

    def __post_init__(self) -> None:
        check_template(self.template)
        subtype_for(self.fmt, self.dtype)  # raises for impossible combinations (flac + float32)
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
