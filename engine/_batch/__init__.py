"""Batch gating of FCS archives: input resolution, executors, fault-isolated resumable runs.

The names load lazily (PEP 562): listing input files (``phenoflow info``, ``convert``) does not
import the executor, Dask, pandas or the gating kernels.
"""

from engine.runtime import lazy_namespace

#: public name -> the module that defines it
_EXPORTS: dict[str, str] = {
    "ExecutorSpec": "engine._batch._executor",
    "SlurmOptions": "engine._batch._executor",
    "open_executor": "engine._batch._executor",
    "slurm_job_script": "engine._batch._executor",
    "InputError": "engine._batch._inputs",
    "InputFile": "engine._batch._inputs",
    "expand_inputs": "engine._batch._inputs",
    "resolve_inputs": "engine._batch._inputs",
    "BatchTask": "engine._batch._records",
    "ErrorRecord": "engine._batch._records",
    "GatedSample": "engine._batch._records",
    "TaskOutcome": "engine._batch._records",
    "BatchOptions": "engine._batch._run",
    "BatchRun": "engine._batch._run",
    "FinishedFile": "engine._batch._run",
    "check_mfi_channels": "engine._batch._run",
    "file_fingerprint": "engine._batch._run",
    "finished_files": "engine._batch._run",
    "gate_chunk": "engine._batch._run",
    "gate_task": "engine._batch._run",
    "prepare_batch": "engine._batch._run",
    "run_batch": "engine._batch._run",
}

__all__: list[str] = sorted(_EXPORTS)


__getattr__, __dir__ = lazy_namespace(__name__, _EXPORTS, globals())
