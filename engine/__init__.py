"""Engine: batch execution, statistics, the study pipeline and the command-line interface."""

from importlib.metadata import PackageNotFoundError, version

try:
    __version__ = version("phenoflow")
except PackageNotFoundError:  # pragma: no cover - running from a source tree
    __version__ = "0.0.0+unknown"

__all__ = ["__version__"]
