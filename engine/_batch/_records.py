"""The records that cross the batch seam: a task, its outcome and a file's error.

:class:`BatchTask` is everything a worker needs to gate one file, and stays cheap to ship to a
Dask worker: a file path, the file's sample name and metadata, and the strategy as JSON text;
never a sample or event arrays. Dask pickles it like any other argument, so it holds only
plain values (strings, numbers, tuples, a ``dict`` of strings). A worker answers with a
:class:`TaskOutcome`; a file that fails is described by an :class:`ErrorRecord`, which is also
what ``parts/<key>.error.json`` holds (:meth:`ErrorRecord.to_dict` / :meth:`ErrorRecord.from_dict`
keep that file's keys).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from typing import Any

__all__ = ["BatchTask", "ErrorRecord", "GatedSample", "TaskOutcome"]


@dataclasses.dataclass(frozen=True)
class ErrorRecord:
    """Why one input file was not gated.

    Attributes
    ----------
    path
        The input file.
    sample
        Its sample name in the batch.
    stat
        ``(size, mtime_ns)`` of the file when the batch was prepared (``(-1, -1)`` if it could
        not be read); a resumed run redoes the file when this changes.
    error_type
        The exception's class name (``FCSTruncatedError``, ``PermissionError``, ...).
    message
        The exception's message.
    seconds
        Time spent on the file before it failed.
    """

    path: str
    sample: str
    stat: tuple[int, int]
    error_type: str
    message: str
    seconds: float = 0.0

    @classmethod
    def from_exception(
        cls, exc: BaseException, *, path: str, sample: str, stat: tuple[int, int], seconds: float = 0.0,
    ) -> ErrorRecord:
        """The record of ``exc`` raised while handling ``path``.

        Parameters
        ----------
        exc
            The exception.
        path, sample, stat
            The file, its sample name and its ``(size, mtime_ns)``.
        seconds
            Time spent before it failed.

        Returns
        -------
        ErrorRecord
            ``error_type`` is the exception's class name, ``message`` its text.
        """
        return cls(path=path, sample=sample, stat=stat, error_type=type(exc).__name__,
                   message=str(exc), seconds=seconds)

    @property
    def text(self) -> str:
        """``"<error_type>: <message>"``, as the CLI prints it."""
        return f"{self.error_type}: {self.message}"

    def to_dict(self) -> dict[str, Any]:
        """The JSON object of ``parts/<key>.error.json`` (its keys, in its order).

        Returns
        -------
        dict
            ``path``, ``sample``, ``stat`` (a list), ``error_type``, ``message``, ``seconds``.
        """
        return {"path": self.path, "sample": self.sample, "stat": list(self.stat),
                "error_type": self.error_type, "message": self.message, "seconds": self.seconds}

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> ErrorRecord:
        """The record read back from :meth:`to_dict`'s object.

        Parameters
        ----------
        data
            A parsed ``parts/<key>.error.json``.

        Returns
        -------
        ErrorRecord
            The record (``KeyError`` if a key is missing).
        """
        size, mtime = data["stat"]
        return cls(path=data["path"], sample=data["sample"], stat=(int(size), int(mtime)),
                   error_type=data["error_type"], message=data["message"],
                   seconds=float(data["seconds"]))


@dataclasses.dataclass(frozen=True)
class BatchTask:
    """One file of a batch: everything a worker needs to gate it and write its part file.

    Attributes
    ----------
    key
        The file's identity in the parts: a hash of its absolute path, strategy, options,
        sample name and metadata. It names the file's own part (``parts/<key>.parquet``, a
        one-file task) or error record (``parts/<key>.error.json``), and is listed in the
        metadata of its chunk's part (``parts/chunk-<hash>.parquet``).
    path
        The input file.
    name
        Sample name; a file's later datasets get ``#<k>`` appended.
    metadata
        Manifest columns carried into the counts table.
    stat
        ``(size, mtime_ns)`` when the batch was prepared (``(-1, -1)`` if unreadable).
    out_dir
        The batch's output folder.
    strategy_hash
        Which strategy the file gets (``""`` when it could not be resolved).
    membership
        Write ``membership/<sample>.parquet``.
    mfi
        Channels for per-population medians.
    uncompensated
        ``"error"`` (a file whose compensation cannot be applied fails) or ``"allow"`` (it is
        gated uncompensated, and its rows say so).
    events
        ``"parquet"`` or ``"h5ad"``: also write ``events/<sample>.<ext>`` (events x the plan's
        channels, raw / compensated / transformed, one boolean column per population);
        ``""`` for none.
    stats
        Compute FlowJo's table-editor statistics (``parts/<key>.stats.parquet``).
    stats_channels
        Channels of the statistics (empty: the channels the plan's gates use).
    problem
        Set when the file's strategy could not be resolved: the task then fails without a
        worker.
    strategy
        The strategy's JSON text, attached only when the task is submitted (the driver's task
        list holds the hash alone).
    threads
        Numba threads the worker may use, set by the executor.
    """

    key: str
    path: str
    name: str
    metadata: Mapping[str, str]
    stat: tuple[int, int]
    out_dir: str
    strategy_hash: str
    membership: bool = False
    mfi: tuple[str, ...] = ()
    uncompensated: str = "error"
    events: str = ""
    stats: bool = False
    stats_channels: tuple[str, ...] = ()
    problem: ErrorRecord | None = None
    strategy: str = ""
    threads: int = 1


@dataclasses.dataclass(frozen=True)
class TaskOutcome:
    """What a finished task reports back to the driver (progress, summaries).

    Attributes
    ----------
    key
        The task's key.
    path, sample
        The input file and its sample name.
    n_events
        Events gated over all the file's datasets (0 when it failed).
    seconds
        Time the task took.
    error
        Why the file failed, or ``None``.
    """

    key: str
    path: str
    sample: str
    n_events: int = 0
    seconds: float = 0.0
    error: ErrorRecord | None = None

    @property
    def ok(self) -> bool:
        """Whether the file was gated."""
        return self.error is None


@dataclasses.dataclass(frozen=True)
class GatedSample:
    """One file's evaluation, shown to the caller while the driver process gates it.

    :func:`engine.run_batch` gates the files named in its ``watch`` argument in the driver
    process and hands each watcher this record, so that figures and other views read the
    very evaluation that the counts came from (the file is not evaluated a second time). It
    lives only for the call: it holds the sample's events and is never shipped or stored.

    Attributes
    ----------
    path, name
        The input file and its sample name in the batch.
    plan
        The compiled plan (:func:`gating.compile_plan`) of the file's first data set.
    sample
        The sample read from the file.
    evaluation
        :func:`gating.evaluate_plan`'s evaluator, the same one the counts were taken from.
    """

    path: str
    name: str
    plan: Any
    sample: Any
    evaluation: Any
