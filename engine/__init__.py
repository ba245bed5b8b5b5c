"""Engine: batch execution, statistics, the study pipeline and the command-line interface.

The public names load lazily (PEP 562), so ``import engine`` (and so the CLI's start-up) does not
pay for scipy and pandas until a statistics function is first used.
"""

from importlib import import_module
from importlib.metadata import PackageNotFoundError, version
from typing import Any

try:
    __version__ = version("phenoflow")
except PackageNotFoundError:  # pragma: no cover - running from a source tree
    __version__ = "0.0.0+unknown"

#: public name -> private module that defines it
_EXPORTS: dict[str, str] = {
    "PairedTest": "engine._stats",
    "Study": "engine._study_manifest",
    "StudyError": "engine._study_manifest",
    "StudyRun": "engine._study",
    "load_study": "engine._study_manifest",
    "run_study": "engine._study",
    "Summary": "engine._stats",
    "bh_adjust": "engine._stats",
    "correlations": "engine._stats_corr",
    "paired_test": "engine._stats",
    "paired_tests": "engine._stats",
    "subgroup_summary": "engine._stats",
}

__all__ = ["__version__", *sorted(_EXPORTS)]


def __getattr__(name: str) -> Any:
    module = _EXPORTS.get(name)
    if module is None:
        raise AttributeError(f"module 'engine' has no attribute {name!r}")
    value = getattr(import_module(module), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(_EXPORTS))
