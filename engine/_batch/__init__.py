"""Batch gating of FCS archives: input resolution, executors, fault-isolated resumable runs."""

from engine._batch._executor import ExecutorSpec, SlurmOptions, open_executor, slurm_job_script
from engine._batch._inputs import InputError, InputFile, expand_inputs, resolve_inputs
from engine._batch._records import BatchTask, ErrorRecord, GatedSample, TaskOutcome
from engine._batch._run import (
    BatchOptions,
    BatchRun,
    FinishedFile,
    check_mfi_channels,
    file_fingerprint,
    finished_files,
    gate_chunk,
    gate_task,
    prepare_batch,
    run_batch,
)

__all__ = [
    "BatchOptions",
    "BatchRun",
    "BatchTask",
    "ErrorRecord",
    "ExecutorSpec",
    "FinishedFile",
    "GatedSample",
    "InputError",
    "InputFile",
    "SlurmOptions",
    "TaskOutcome",
    "check_mfi_channels",
    "expand_inputs",
    "file_fingerprint",
    "finished_files",
    "gate_chunk",
    "gate_task",
    "open_executor",
    "prepare_batch",
    "resolve_inputs",
    "run_batch",
    "slurm_job_script",
]
