"""cumx: music source separation with X-UMX (CrossNet-Open-Unmix), from the command line or Python.

The Python API (:mod:`cumx_cli.api`): :func:`load_model`, :func:`separate` (a tensor) and
:func:`separate_file` (a file to stem files). They are loaded on first use, so ``import
cumx_cli`` (and the command line's ``--help``) imports no torch.
"""

from __future__ import annotations

from importlib.metadata import PackageNotFoundError, version
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from cumx_cli.api import load_model, separate, separate_file

try:
    __version__ = version("cumx")
except PackageNotFoundError:  # running from a source tree that was not installed
    __version__ = "0.0.0+unknown"

__all__ = ["__version__", "load_model", "separate", "separate_file"]
_API = ("load_model", "separate", "separate_file")


def __getattr__(name: str) -> object:
    """The API functions, imported (with torch) when first asked for."""
    if name in _API:
        from cumx_cli import api

        value = getattr(api, name)
        globals()[name] = value
        return value
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def __dir__() -> list[str]:
    return sorted({*globals(), *_API})
