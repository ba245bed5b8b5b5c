"""Engine: batch execution, strategy comparison, statistics, the study pipeline and the CLI.

Rooms: ``engine.runtime`` (the bottom layer every package uses), ``engine._batch``,
``engine._compare``, ``engine._stats``, ``engine._study``, ``engine.cli``, ``engine.demo``.

The public names load lazily (PEP 562), so ``import engine`` (and so the CLI's start-up) does not
pay for scipy and pandas until a statistics function is first used.
"""

from importlib.metadata import PackageNotFoundError, version

from engine.runtime import lazy_namespace

try:
    __version__ = version("phenoflow")
except PackageNotFoundError:  # pragma: no cover - running from a source tree
    __version__ = "0.0.0+unknown"

#: public name -> the (private) sub-package that defines it
_EXPORTS: dict[str, str] = {
    # batch gating of FCS archives
    "BatchOptions": "engine._batch",
    "BatchRun": "engine._batch",
    "BatchTask": "engine._batch",
    "ErrorRecord": "engine._batch",
    "ExecutorSpec": "engine._batch",
    "GatedSample": "engine._batch",
    "InputError": "engine._batch",
    "InputFile": "engine._batch",
    "SlurmOptions": "engine._batch",
    "TaskOutcome": "engine._batch",
    "FinishedFile": "engine._batch",
    "check_mfi_channels": "engine._batch",
    "file_fingerprint": "engine._batch",
    "finished_files": "engine._batch",
    "expand_inputs": "engine._batch",
    "prepare_batch": "engine._batch",
    "resolve_inputs": "engine._batch",
    "run_batch": "engine._batch",
    "slurm_job_script": "engine._batch",
    # strategy comparison
    "Comparison": "engine._compare",
    "compare_strategies": "engine._compare",
    "format_score": "engine._compare",
    "pair_labels": "engine._compare",
    "parse_mapping": "engine._compare",
    "read_mapping": "engine._compare",
    # statistics
    "PairedTest": "engine._stats",
    "Summary": "engine._stats",
    "bh_adjust": "engine._stats",
    "correlations": "engine._stats",
    "paired_test": "engine._stats",
    "paired_tests": "engine._stats",
    "subgroup_summary": "engine._stats",
    # the study pipeline
    "Study": "engine._study",
    "StudyError": "engine._study",
    "StudyRun": "engine._study",
    "load_study": "engine._study",
    "run_study": "engine._study",
    "phenotype": "engine._phenotype",
}

__all__ = ["__version__", *sorted(_EXPORTS)]


__getattr__, __dir__ = lazy_namespace(__name__, _EXPORTS, globals())
