"""Loading and saving models, with the checkpoint format detected from the file.

Three formats are read (every file with ``torch.load(weights_only=True)``):

* **cumx** (``.pt``): a dict ``{"format": "cumx", "format_version", "cumx_version",
  "model_config", "state_dict", ...}``; self-describing, written by :func:`save_model` and by
  training.
* **asteroid X-UMX package** (``.pth``): ``{"model_name": "XUMX", "model_args", "state_dict",
  ...}`` as ``asteroid``'s ``serialize()`` writes it (spec §6.2-6.3); loaded into the bridged model.
* **NNabla X-UMX parameters** (``.h5``, Sony's ``x-umx.h5``): converted on load
  (:mod:`cumx_cli.engine.weights.nnabla`; needs the optional h5py).
* **Open-Unmix target models**: a folder of ``<target>.pth`` or ``<target>-<sha256 prefix>.pth``
  plain state dicts (with optional ``<target>.json`` and ``separator.json``); loaded into the
  unbridged model. A hash suffix in a file name is checked against the file, as torch.hub's
  ``check_hash`` does.

Loading is strict: a missing or unexpected tensor is an error that names it (openunmix itself
loads with ``strict=False`` and silently ignores misnamed weights).
"""

from __future__ import annotations

import hashlib
import json
import pickle
import pickletools
import re
import warnings
from pathlib import Path
from typing import TYPE_CHECKING, Any

import torch

from cumx_cli.engine.config import ModelConfig
from cumx_cli.engine.errors import CheckpointError, UnsafeCheckpointError
from cumx_cli.engine.files import disk_full_reason, replacing
from cumx_cli.engine.model import CrossUMX

if TYPE_CHECKING:
    from cumx_cli.engine.weights.cache import WeightsSettings
    from cumx_cli.engine.weights.download import DownloadEvents

FORMAT_NAME = "cumx"
FORMAT_VERSION = 1

#: Globals a real asteroid package file needs beyond plain tensors and containers: asteroid's
#: ``serialize()`` stores ``torch.__version__`` (a TorchVersion) in ``infos.software_versions``.
_ASTEROID_SAFE_GLOBALS: list[Any] = [torch.torch_version.TorchVersion]

_UMX_ORDER = ("vocals", "drums", "bass", "other")
_HASH_SUFFIX = re.compile(r"^(?P<name>.+?)-(?P<hash>[0-9a-f]{8,64})$")


def _raw_pickle_globals(path: Path) -> list[str]:
    """Python globals a plain (non-zip) pickle file references, read without unpickling it.

    torch's weights-only loader stops at the first opcode it does not support (protocol 4
    framing, say) before it reaches the globals, so a hostile pickle and a text file look the
    same from its error; walking the opcodes tells them apart safely.
    """
    names: list[str] = []
    strings: list[str] = []
    try:
        with path.open("rb") as f:
            for op, arg, _ in pickletools.genops(f):
                if op.name == "GLOBAL":
                    names.append(str(arg).replace(" ", "."))
                elif op.name in ("SHORT_BINUNICODE", "BINUNICODE", "BINUNICODE8", "UNICODE"):
                    strings.append(str(arg))
                elif op.name == "STACK_GLOBAL" and len(strings) >= 2:
                    names.append(".".join(strings[-2:]))
    except Exception:  # noqa: BLE001 - not a pickle at all
        return []
    return names


def _torch_load(path: Path) -> Any:
    try:
        with torch.serialization.safe_globals(_ASTEROID_SAFE_GLOBALS), warnings.catch_warnings():
            warnings.simplefilter("ignore")  # e.g. "Detected pickle protocol 4": not the user's concern
            return torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as exc:
        found = re.search(r"GLOBAL ([\w.]+)", str(exc))
        names = [found.group(1)] if found else _raw_pickle_globals(path)
        if "Weights only load failed" in str(exc) and names:
            what = f" (it references {names[0]})"
            raise UnsafeCheckpointError(
                f"{path}: refused to load: the file holds Python objects that could run code{what}; "
                "only plain tensors are accepted"
            ) from exc
        raise CheckpointError(f"{path}: not a PyTorch checkpoint or it is damaged") from exc
    except Exception as exc:  # noqa: BLE001 - a damaged pickle raises anything (KeyError, ...)
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise CheckpointError(f"{path}: not a PyTorch checkpoint or it is damaged ({first})") from exc


def read_checkpoint(path: Path) -> Any:
    """``torch.load(weights_only=True)`` with cumx's errors (damaged file, unsafe pickle)."""
    return _torch_load(Path(path))


def _load_strict(model: CrossUMX, state: dict[str, torch.Tensor], path: Path) -> CrossUMX:
    expected = model.state_dict()
    missing = sorted(set(expected) - set(state))
    unexpected = sorted(set(state) - set(expected))
    if missing or unexpected:
        parts = []
        if missing:
            parts.append(f"missing {', '.join(missing[:5])}{' ...' if len(missing) > 5 else ''}")
        if unexpected:
            parts.append(f"unexpected {', '.join(unexpected[:5])}{' ...' if len(unexpected) > 5 else ''}")
        raise CheckpointError(f"{path}: the weights do not match the model: {'; '.join(parts)}")
    for key, value in state.items():
        if tuple(value.shape) != tuple(expected[key].shape):
            raise CheckpointError(f"{path}: tensor {key} has shape {tuple(value.shape)}, "
                                  f"expected {tuple(expected[key].shape)}")
    state = {k: v.to(expected[k].dtype).contiguous() for k, v in state.items()}
    model.load_state_dict(state, strict=True, assign=True)
    return model.eval()


def _empty_model(config: ModelConfig) -> CrossUMX:
    """A model without initialised weights (built on the meta device; loading assigns them)."""
    with torch.device("meta"):
        return CrossUMX(config)


# -- cumx's own format -------------------------------------------------------------------------


def save_model(model: CrossUMX, path: Path, extra: dict[str, Any] | None = None) -> None:
    """Write a self-describing cumx checkpoint atomically (temp file, then rename)."""
    from cumx_cli import __version__

    payload: dict[str, Any] = {
        "format": FORMAT_NAME,
        "format_version": FORMAT_VERSION,
        "cumx_version": __version__,
        "model_config": model.config.to_dict(),
        "state_dict": {k: v.detach().cpu() for k, v in model.state_dict().items()},
    }
    payload.update(extra or {})
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    try:
        with replacing(path) as tmp:
            try:
                torch.save(payload, tmp)
            except RuntimeError as exc:  # how torch's zip writer reports a failed write
                full = disk_full_reason(tmp)  # while the partial file still fills the disk
                if full:
                    raise CheckpointError(f"{path}: cannot write the checkpoint ({full})") from exc
                first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
                raise CheckpointError(f"{path}: cannot write the checkpoint ({first}); is the "
                                      "disk full?") from exc
    except OSError as exc:
        raise CheckpointError(f"{path}: cannot write the checkpoint ({exc.strerror or exc})") from exc


def _from_cumx(data: dict[str, Any], path: Path) -> CrossUMX:
    version = data.get("format_version")
    if version != FORMAT_VERSION:
        raise CheckpointError(f"{path}: cumx checkpoint format version {version} is not supported "
                              f"(this cumx reads version {FORMAT_VERSION}); upgrade cumx")
    config = ModelConfig.from_dict(data["model_config"])
    return _load_strict(_empty_model(config), data["state_dict"], path)


# -- asteroid X-UMX package --------------------------------------------------------------------

_ASTEROID_BLOCKS = {
    "layer_enc.{s}.enc.0.": "fc1.",
    "layer_enc.{s}.enc.1.": "bn1.",
    "layer_lstm.{s}.": "lstm.",
    "layer_dec.{s}.dec.0.": "fc2.",
    "layer_dec.{s}.dec.1.": "bn2.",
    "layer_dec.{s}.dec.3.": "fc3.",
    "layer_dec.{s}.dec.4.": "bn3.",
}
_ASTEROID_IGNORED = ("encoder.0.window", "decoder.window")


def _from_asteroid(data: dict[str, Any], path: Path) -> CrossUMX:
    name = data.get("model_name")
    if name not in ("XUMX", "BrokenXUMX"):
        raise CheckpointError(f"{path}: asteroid model {name!r} is not X-UMX; cumx loads only XUMX")
    args = data.get("model_args") or {}
    if args.get("spec_power", 1) != 1:
        raise CheckpointError(f"{path}: spec_power {args['spec_power']} is not supported (only 1)")
    if args.get("window_length", args.get("in_chan")) != args.get("in_chan"):
        raise CheckpointError(f"{path}: window_length must equal in_chan (the FFT size)")
    try:
        config = ModelConfig(
            sources=tuple(args["sources"]),
            num_channels=int(args.get("nb_channels", 2)),
            hidden_size=int(args["hidden_size"]),
            num_layers=int(args.get("nb_layers", 3)),
            bidirectional=bool(args.get("bidirectional", True)),
            max_bin=int(args["max_bin"]),
            bridge=True,
            n_fft=int(args["in_chan"]),
            hop_length=int(args["n_hop"]),
            sample_rate=int(args["sample_rate"]),
        )
    except KeyError as exc:
        raise CheckpointError(f"{path}: asteroid model_args lacks {exc.args[0]!r}") from exc
    state = {}
    for key, value in data["state_dict"].items():
        if key in _ASTEROID_IGNORED:
            continue
        state[_asteroid_key(key, config.sources)] = value
    return _load_strict(_empty_model(config), state, path)


def _asteroid_key(key: str, sources: tuple[str, ...]) -> str:
    for src in sources:
        for prefix, ours in _ASTEROID_BLOCKS.items():
            p = prefix.format(s=src)
            if key.startswith(p):
                return f"nets.{src}.{ours}{key[len(p):]}"
        for what in ("input_mean", "input_scale", "output_mean", "output_scale"):
            if key == f"mean_scale.{what}_{src}":
                return f"nets.{src}.{what}"
    return key  # left unmapped: reported as unexpected by the strict load


# -- Open-Unmix target models ------------------------------------------------------------------


def _umx_config(states: dict[str, dict[str, torch.Tensor]], folder: Path) -> ModelConfig:
    shapes = set()
    for target, sd in states.items():
        try:
            hidden, in_features = sd["fc1.weight"].shape
            max_bin = sd["input_mean"].shape[0]
            num_bins = sd["output_mean"].shape[0]
        except KeyError as exc:
            raise CheckpointError(f"{folder}: {target} is not an Open-Unmix state dict "
                                  f"(no {exc.args[0]})") from exc
        layers = sum(1 for k in sd if re.fullmatch(r"lstm\.weight_ih_l\d+", k))
        shapes.add((hidden, in_features // max_bin, max_bin, num_bins, layers,
                    "lstm.weight_ih_l0_reverse" in sd))
    if len(shapes) != 1:
        raise CheckpointError(f"{folder}: the target models differ in architecture ({sorted(shapes)})")
    hidden, channels, max_bin, num_bins, layers, bidirectional = shapes.pop()
    n_fft = 2 * (num_bins - 1)
    meta = _umx_meta(folder, next(iter(states)))
    return ModelConfig(
        sources=tuple(states), num_channels=channels, hidden_size=hidden, num_layers=layers,
        bidirectional=bidirectional, max_bin=max_bin, bridge=False, n_fft=n_fft,
        hop_length=int(meta.get("nhop", n_fft // 4)),
        sample_rate=int(meta.get("sample_rate", 44100)),
    )


def _umx_meta(folder: Path, target: str) -> dict[str, Any]:
    """STFT hop and sample rate from ``separator.json`` or ``<target>.json`` if present."""
    meta: dict[str, Any] = {}
    for name in (f"{target}.json", "separator.json"):
        file = folder / name
        if file.is_file():
            try:
                data = json.loads(file.read_text())
            except (OSError, ValueError) as exc:
                raise CheckpointError(f"{file}: not valid JSON ({exc})") from exc
            meta.update(data.get("args", data) if isinstance(data, dict) else {})
    return meta


def _check_hash_suffix(file: Path, expected: str) -> None:
    digest = hashlib.sha256()
    with file.open("rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    if not digest.hexdigest().startswith(expected):
        raise CheckpointError(f"{file}: the file is corrupt: its sha256 {digest.hexdigest()[:12]}... "
                              f"does not start with {expected}, the prefix in its name; download it again")


def _from_umx_folder(folder: Path) -> CrossUMX:
    files = sorted(folder.glob("*.pth"))
    if not files:
        raise CheckpointError(f"{folder}: no .pth files; an Open-Unmix model folder holds "
                              "<target>.pth (or <target>-<hash>.pth) for each target")
    states: dict[str, dict[str, torch.Tensor]] = {}
    for file in files:
        m = _HASH_SUFFIX.match(file.stem)
        target = m.group("name") if m else file.stem
        if m:
            _check_hash_suffix(file, m.group("hash"))
        if target in states:
            raise CheckpointError(f"{folder}: more than one file for target {target!r}")
        sd = _torch_load(file)
        if not isinstance(sd, dict) or not all(isinstance(v, torch.Tensor) for v in sd.values()):
            raise CheckpointError(f"{file}: not an Open-Unmix state dict")
        states[target] = sd
    order = sorted(states, key=lambda t: (_UMX_ORDER.index(t) if t in _UMX_ORDER else 99, t))
    states = {t: states[t] for t in order}
    config = _umx_config(states, folder)
    state = {f"nets.{t}.{k}": v for t, sd in states.items() for k, v in sd.items()}
    return _load_strict(_empty_model(config), state, folder)


# -- NNabla parameters (Sony) -----------------------------------------------------------------

_HDF5_SIGNATURE = b"\x89HDF\r\n\x1a\n"


def _is_hdf5(path: Path) -> bool:
    with path.open("rb") as f:
        return f.read(8) == _HDF5_SIGNATURE


def _from_nnabla(path: Path) -> CrossUMX:
    from cumx_cli.engine.weights.nnabla import nnabla_to_state, read_parameters

    config, state = nnabla_to_state(read_parameters(path), path)
    return _load_strict(_empty_model(config), state, path)


# -- entry point -------------------------------------------------------------------------------


def load_model(path: Path) -> CrossUMX:
    """Load a model from any supported checkpoint format, in eval mode, on the CPU.

    Raises:
        CheckpointError: unknown format, damaged file, or weights that do not fit.
        UnsafeCheckpointError: the file would need arbitrary code to unpickle.
        MissingDependencyError: an NNabla .h5 file without h5py installed.
    """
    path = Path(path)
    if path.is_dir():
        return _from_umx_folder(path)
    if not path.is_file():
        raise CheckpointError(f"{path}: no such model file or folder")
    if _is_hdf5(path):
        return _from_nnabla(path)
    data = _torch_load(path)
    if isinstance(data, dict) and data.get("format") == FORMAT_NAME:
        return _from_cumx(data, path)
    if isinstance(data, dict) and "model_name" in data and "state_dict" in data:
        return _from_asteroid(data, path)
    if isinstance(data, dict) and "fc1.weight" in data and "lstm.weight_ih_l0" in data:
        raise CheckpointError(f"{path}: this is a single Open-Unmix target model; pass the folder "
                              "that holds all the target files instead")
    raise CheckpointError(f"{path}: unrecognised checkpoint; cumx reads its own .pt files, asteroid "
                          "X-UMX .pth packages, NNabla X-UMX .h5 files and Open-Unmix model folders")


def resolve_model(spec: str, settings: WeightsSettings | None = None,
                  events: DownloadEvents | None = None) -> CrossUMX:
    """Load ``spec``: a checkpoint file or Open-Unmix folder, or a published model's name.

    A path that exists is loaded as it is. Anything else that looks like a path (a separator or a
    checkpoint suffix) is an error naming it. Otherwise ``spec`` is looked up in the registry of
    published models; a model that is not cached is downloaded first (unless ``settings`` says
    offline), and every cached file is checked against its recorded sha256 before loading.

    Args:
        spec: a path or a registry name.
        settings: cache, offline, mirror; the defaults (user cache, online) when None.
        events: download progress hooks.

    Raises:
        CheckpointError: the file cannot be loaded; its subclasses for unknown names
            (``UnknownWeightsError``), offline misses, failed downloads and bad checksums.
    """
    from cumx_cli.engine.weights.cache import WeightsSettings
    from cumx_cli.engine.weights.download import ensure_model
    from cumx_cli.engine.weights.registry import get_spec

    path = Path(spec).expanduser()
    if path.exists():
        return load_model(path)
    if "/" in spec or "\\" in spec or path.suffix in (".pt", ".pth", ".h5"):
        raise CheckpointError(f"{spec}: no such model file or folder")
    if get_spec(spec).format == "nnabla":  # unknown names fail in get_spec, before any I/O
        from cumx_cli.engine.weights.nnabla import require_h5py

        require_h5py()  # before a 142 MB download that could not be read
    return load_model(ensure_model(spec, settings or WeightsSettings(), events))
