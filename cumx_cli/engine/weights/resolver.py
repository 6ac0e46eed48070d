"""From what a user typed to a model: a checkpoint path, or the name of a published model.

:func:`load_model` reads a file or folder in any supported format, the format detected from
the content, never from the name:

* a folder: an Open-Unmix model folder (:mod:`.formats.openunmix`);
* an HDF5 file: Sony's NNabla X-UMX parameters (:mod:`.formats.nnabla`, needs h5py);
* a PyTorch file holding cumx's own checkpoint (:mod:`.formats.cumx`) or an asteroid X-UMX
  package (:mod:`.formats.asteroid`).

:func:`resolve_model` adds names: a name is looked up in the registry, downloaded into the cache
on first use and verified, then loaded the same way.
"""

from __future__ import annotations

from pathlib import Path

from cumx_cli.engine.errors import CheckpointError
from cumx_cli.engine.events import DownloadEvents
from cumx_cli.engine.model import CrossUMX
from cumx_cli.engine.weights.cache import WeightsSettings
from cumx_cli.engine.weights.formats import asteroid, cumx, nnabla, openunmix
from cumx_cli.engine.weights.formats.common import read_torch_file
from cumx_cli.engine.weights.integrity import is_hdf5
from cumx_cli.engine.weights.registry import get_spec

#: Suffixes that make a missing ``--model`` a missing file, not an unknown name.
_CHECKPOINT_SUFFIXES = (".pt", ".pth", ".h5")


def load_model(path: Path) -> CrossUMX:
    """Load a model from any supported checkpoint format, in eval mode, on the CPU.

    Raises:
        CheckpointError: unknown format, damaged file, or weights that do not fit.
        UnsafeCheckpointError: the file would need arbitrary code to unpickle.
        MissingDependencyError: an NNabla .h5 file without h5py installed.
    """
    path = Path(path)
    if path.is_dir():
        return openunmix.load_folder(path)
    if not path.is_file():
        raise CheckpointError(f"{path}: no such model file or folder")
    if is_hdf5(path):
        return nnabla.load_file(path)
    data = read_torch_file(path)
    if cumx.is_cumx(data):
        return cumx.model_from_data(data, path)
    if asteroid.is_asteroid(data):
        return asteroid.model_from_data(data, path)
    if openunmix.is_single_target(data):
        raise CheckpointError(f"{path}: this is a single Open-Unmix target model; pass the folder "
                              "that holds all the target files instead")
    raise CheckpointError(f"{path}: unrecognised checkpoint; cumx reads its own .pt files, asteroid "
                          "X-UMX .pth packages, NNabla X-UMX .h5 files and Open-Unmix model folders")


def resolve_model(spec: str, settings: WeightsSettings | None = None,
                  events: DownloadEvents | None = None) -> CrossUMX:
    """Load ``spec``: a checkpoint file or Open-Unmix folder, or a published model's name
    (found by :func:`resolve_path`, then read by :func:`load_model`).

    Raises:
        CheckpointError: as :func:`resolve_path`, or the file cannot be loaded.
    """
    return load_model(resolve_path(spec, settings, events))


def resolve_path(spec: str, settings: WeightsSettings | None = None,
                 events: DownloadEvents | None = None) -> Path:
    """The local file or folder that ``spec`` names: a checkpoint path, or a published model's
    name.

    A path that exists is taken as it is. Anything else that looks like a path (a separator or a
    checkpoint suffix) is an error naming it. Otherwise ``spec`` is looked up in the registry of
    published models; a model that is not cached is downloaded first (unless ``settings`` says
    offline), and every cached file is checked against its recorded sha256.

    Args:
        spec: a path or a registry name.
        settings: cache, offline, mirror; the defaults (user cache, online) when None.
        events: download progress hooks.

    Raises:
        CheckpointError: no such file; its subclasses for unknown names
            (``UnknownWeightsError``), offline misses, failed downloads and bad checksums.
    """
    from cumx_cli.engine.weights.download import ensure_weights  # networking only when needed

    path = Path(spec).expanduser()
    if path.exists():
        return path
    if "/" in spec or "\\" in spec or path.suffix in _CHECKPOINT_SUFFIXES:
        raise CheckpointError(f"{spec}: no such model file or folder")
    entry = get_spec(spec)  # unknown names fail here, before any I/O
    if entry.format == "nnabla":
        nnabla.require_h5py()  # before a 142 MB download that could not be read
    settings = settings or WeightsSettings()
    ensure_weights(entry, settings, events=events)
    return settings.model_path(entry)
