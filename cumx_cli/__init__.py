"""cumx: music source separation with X-UMX (CrossNet-Open-Unmix) from the command line."""

from importlib.metadata import PackageNotFoundError, version

try:
    __version__ = version("cumx")
except PackageNotFoundError:  # running from a source tree that was not installed
    __version__ = "0.0.0+unknown"
