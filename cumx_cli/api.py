"""cumx from Python: load a model once, then separate tensors or files with it.

.. code-block:: python

    import cumx_cli

    model = cumx_cli.load_model("xumx")         # a published name, or a checkpoint path
    stems = cumx_cli.separate(waveform, 44100, model=model)   # {"bass": (channel, time), ...}
    files = cumx_cli.separate_file("song.wav", "separated", model=model)   # {"bass": Path, ...}

These names are attributes of the package, loaded on first use, so ``import cumx_cli`` stays
cheap (no torch). Each is a thin layer over the engine (:mod:`cumx_cli.engine`): a
:class:`~cumx_cli.engine.inference.separator.Separator` does the work, and
:class:`~cumx_cli.engine.config.InferenceConfig` / :class:`~cumx_cli.engine.inference.outputs.OutputSpec`
hold the options (the same as the flags of ``cumx separate``). Errors are
:class:`~cumx_cli.engine.errors.CumxError` subclasses. Nothing here reads the environment: the
``CUMX_*`` variables are the command line's; pass ``cache_dir`` / ``offline`` instead.
"""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path
from typing import Union

import torch
import torch.nn.functional as F

from cumx_cli.engine.audio.channels import match_channels
from cumx_cli.engine.audio.resample import resample
from cumx_cli.engine.config import InferenceConfig
from cumx_cli.engine.errors import ConfigError, CumxError
from cumx_cli.engine.events import DownloadEvents, SeparateEvents
from cumx_cli.engine.inference.inputs import InputFile
from cumx_cli.engine.inference.outputs import OutputSpec
from cumx_cli.engine.inference.pipeline import separate_files
from cumx_cli.engine.inference.separator import Separator
from cumx_cli.engine.model import CrossUMX
from cumx_cli.engine.shapes import check_shape
from cumx_cli.engine.weights import resolver
from cumx_cli.engine.weights.cache import WeightsSettings
from cumx_cli.engine.weights.registry import DEFAULT_MODEL

#: What ``model=`` accepts: a published name or a checkpoint path (loaded with
#: :func:`load_model`), a loaded model, or a separator (reused as it is, with its config and
#: device).
ModelLike = Union[str, Path, CrossUMX, Separator]  # noqa: UP007 - a runtime alias on Python 3.10

__all__ = ["ModelLike", "load_model", "separate", "separate_file"]


def load_model(name_or_path: str | Path, *, cache_dir: str | Path | None = None,
               offline: bool = False, mirror: str | None = None,
               events: DownloadEvents | None = None) -> CrossUMX:
    """A model by published name (``cumx download-weights --list``) or from a checkpoint.

    A ``str`` that names an existing file or folder is loaded from it, any other ``str`` is a
    published name, downloaded into the cache and verified on first use; a :class:`~pathlib.Path`
    is always a checkpoint (any format ``cumx separate --model`` reads). The model is in eval
    mode, on the CPU.

    Args:
        name_or_path: the name or the checkpoint.
        cache_dir: the cache root, as ``--cache-dir`` (weights in its ``weights`` folder); None
            is the user cache (``~/.cache/cumx`` on Linux).
        offline: never download; a published model that is not cached is an error.
        mirror: an HTTP folder serving a copy of a cumx weights cache, used instead of Zenodo.
        events: download progress hooks.

    Raises:
        CheckpointError: the file cannot be read (subclasses: unknown names, offline misses,
            failed downloads, checksum mismatches).
    """
    if isinstance(name_or_path, Path):
        return resolver.load_model(name_or_path)
    settings = WeightsSettings(cache_dir=Path(cache_dir) if cache_dir is not None else None,
                               offline=offline, mirror=mirror)
    return resolver.resolve_model(name_or_path, settings, events)


def separate(waveform: torch.Tensor, sample_rate: int, *, model: ModelLike = DEFAULT_MODEL,
             config: InferenceConfig | None = None) -> dict[str, torch.Tensor]:
    """Separate one track held in memory.

    The waveform is resampled to the model's rate and mixed to its channel count for the
    separation; every stem comes back at ``sample_rate``, with the input's channel count and
    length (chunking and cross-fades as in ``cumx separate``).

    Args:
        waveform: the mixture, float, nominally in [-1, 1].
        sample_rate: its rate in Hz.
        model: see :data:`ModelLike`; the default is the CLI's default model.
        config: chunking, batching, Wiener options and device (not with a ``Separator``).

    Returns:
        Each source of the model (plus ``residual`` if ``config.residual``), in the model's
        order, to its stem on the CPU.

    Shapes:
        waveform: (channel, time), or (time,) for mono
        returns:  each (channel, time), or (time,) for a (time,) input

    Raises:
        ConfigError: a bad rate or config. ShapeError: not (channel, time) or (time,).
    """
    if sample_rate <= 0:
        raise ConfigError(f"sample_rate must be positive, got {sample_rate}")
    x = waveform[None] if waveform.dim() == 1 else waveform
    check_shape(x, ("channel", "time"))
    separator = _separator(model, config)
    channels, length, rate = x.shape[0], x.shape[-1], separator.sample_rate
    mix = match_channels(resample(x.detach().float().cpu(), sample_rate, rate), separator.num_channels)
    stems = separator.separate(mix.contiguous()[None])[0]  # (source, channel, time) at the model's rate
    stems = resample(match_channels(stems, channels).contiguous(), rate, sample_rate)
    stems = F.pad(stems, (0, max(0, length - stems.shape[-1])))[..., :length]
    if waveform.dim() == 1:
        stems = stems[:, 0]
    return dict(zip(separator.sources, stems, strict=True))


def separate_file(path: str | Path, out_dir: str | Path, *, model: ModelLike = DEFAULT_MODEL,
                  config: InferenceConfig | None = None, output: OutputSpec | None = None,
                  events: SeparateEvents | None = None) -> dict[str, Path]:
    """Separate one audio file into stem files, as ``cumx separate PATH -o OUT_DIR`` does.

    Stems are written, by default, to ``OUT_DIR/<file name without suffix>/<source>.wav`` at
    the input's rate and channel count; each appears at its final path only when complete.

    Args:
        path: the audio file (any format ``cumx separate`` reads: WAV, FLAC, MP3, M4A, video...).
        out_dir: the output folder (replaces ``output.outdir``).
        model: see :data:`ModelLike`.
        config: chunking, batching, Wiener options and device (not with a ``Separator``).
        output: format, sample type, filename template, clip policy, stems to write.
        events: progress hooks.

    Returns:
        Each written source to its file (the existing files when ``output.skip_existing``
        skipped the input).

    Raises:
        CumxError: the input could not be separated (an ``AudioIOError`` for unreadable or
            unwritable files, a ``ConfigError`` for bad options); no stem is left behind.
    """
    separator = _separator(model, config)
    spec = replace(output or OutputSpec(), outdir=Path(out_dir))
    path = Path(path)
    (result,) = separate_files(separator, [InputFile(path, path.stem)], spec, events)
    if result.status == "error":
        raise result.cause or CumxError(result.error or f"{path}: separation failed")
    return result.outputs


def _separator(model: ModelLike, config: InferenceConfig | None) -> Separator:
    """``model`` as a separator: reused, or built around the (loaded) model with ``config``."""
    if isinstance(model, Separator):
        if config is not None:
            raise ConfigError("config= builds a new separator; a Separator passed as model= "
                              "keeps its own (model.config)")
        return model
    return Separator(model if isinstance(model, CrossUMX) else load_model(model), config)
