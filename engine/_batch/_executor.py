"""Where batch tasks run: in-process, a local Dask cluster, an existing scheduler, or SLURM.

Tasks are small frozen records (a chunk of ``BatchTask``: file paths and the serialised
strategy), never samples or event arrays; Dask ships them to workers like any other argument.
Results are small ``TaskOutcome`` records. Each executor caps the Numba threads a task may use
to its worker's share of the machine (it sets the task's ``threads``) and says how many tasks
it runs at once (``slots``), from which the batch sizes its chunks.

The local cluster runs its workers as threads of this process by default: the gating kernels
release the GIL, the process has already imported everything and loaded the compiled kernels,
so workers start in well under a second, where worker processes each start an interpreter,
import the stack and load the kernel cache (several seconds, more than gating 200 files of
100,000 events on two cores). ``processes=True`` gives each worker its own process (memory
isolation and a memory limit per worker) for long runs.
"""

from __future__ import annotations

import dataclasses
import logging
from collections.abc import Callable, Iterable, Iterator
from typing import Any, Literal

from engine._batch._records import BatchTask, TaskOutcome
from engine.runtime import default_threads

__all__ = ["ExecutorSpec", "SlurmOptions", "open_executor", "slurm_job_script"]

Chunk = tuple[BatchTask, ...]  # the files one task gates, in input order

log = logging.getLogger(__name__)


@dataclasses.dataclass(frozen=True)
class SlurmOptions:
    """A SLURM job of Dask workers (through dask-jobqueue).

    Attributes
    ----------
    cores, memory, walltime
        Per job: CPU cores, memory (e.g. ``"16GB"``) and wall time (``"01:00:00"``).
    processes
        Worker processes per job (each gets ``cores / processes`` threads).
    jobs
        Number of jobs to submit.
    account, queue
        ``--account`` and ``--partition``.
    extra
        Extra ``#SBATCH`` directives, e.g. ``("--qos=short", "--constraint=avx2")``.
    """

    cores: int = 4
    memory: str = "16GB"
    walltime: str = "01:00:00"
    processes: int = 1
    jobs: int = 1
    account: str | None = None
    queue: str | None = None
    extra: tuple[str, ...] = ()


@dataclasses.dataclass(frozen=True)
class ExecutorSpec:
    """Which executor to use.

    Attributes
    ----------
    kind
        ``"inprocess"`` (debugging: one file per task, in this thread), ``"local"`` (a
        ``LocalCluster``, the default), ``"scheduler"`` (an existing scheduler) or ``"slurm"``.
    workers
        Local workers (default: the job's share of the machine, honouring
        ``SLURM_CPUS_PER_TASK``).
    processes
        ``kind="local"`` only: workers as separate processes (a memory limit each, a crash
        isolated) instead of threads of this process (the default: no start-up cost).
    scheduler, scheduler_file
        Address (``tcp://host:port``) or scheduler file of an existing Dask scheduler.
    slurm
        Options for ``kind="slurm"``.
    """

    kind: Literal["inprocess", "local", "scheduler", "slurm"] = "local"
    workers: int | None = None
    processes: bool = False
    scheduler: str | None = None
    scheduler_file: str | None = None
    slurm: SlurmOptions | None = None


class _InProcess:
    def __init__(self) -> None:
        self.threads = default_threads()
        self.slots = 0  # no scheduling cost to amortise: one file per task
        self.description = f"in-process ({self.threads} threads)"

    def run(
        self, fn: Callable[[Chunk], list[TaskOutcome]], chunks: Iterable[Chunk]
    ) -> Iterator[list[TaskOutcome]]:
        for chunk in chunks:
            yield fn(tuple(dataclasses.replace(t, threads=self.threads) for t in chunk))

    def close(self) -> None:
        """Nothing to release."""


class _Dask:
    def __init__(self, client: Any, *, cluster: Any = None, description: str) -> None:
        self.client = client
        self.cluster = cluster
        self.description = description
        info = client.scheduler_info()
        threads = [w.get("nthreads", 1) for w in info.get("workers", {}).values()]
        # a Dask worker runs one task per thread at once, so each task gets one Numba thread:
        # the worker's threads are its share of the machine, never oversubscribed
        self.threads = 1
        self.slots = max(1, sum(threads)) if threads else 1

    def _submit(self, fn: Callable[[Chunk], list[TaskOutcome]], chunk: Chunk) -> Any:
        return self.client.submit(
            fn, tuple(dataclasses.replace(t, threads=self.threads) for t in chunk), pure=False)

    def run(
        self, fn: Callable[[Chunk], list[TaskOutcome]], chunks: Iterable[Chunk]
    ) -> Iterator[list[TaskOutcome]]:
        from distributed import as_completed

        pending = iter(chunks)
        in_flight = max(2, 2 * self.slots)  # bounded: memory does not grow with the archive
        queue = as_completed()
        for _ in range(in_flight):
            chunk = next(pending, None)
            if chunk is None:
                break
            queue.add(self._submit(fn, chunk))
        for future in queue:
            result = future.result()
            future.release()
            chunk = next(pending, None)
            if chunk is not None:
                queue.add(self._submit(fn, chunk))
            yield result

    def close(self) -> None:
        self.client.close()
        if self.cluster is not None:
            self.cluster.close()


def _slurm_cluster(options: SlurmOptions) -> Any:
    try:
        from dask_jobqueue import SLURMCluster
    except ImportError:  # pragma: no cover - depends on the optional extra
        raise RuntimeError(
            "SLURM support needs dask-jobqueue: pip install 'phenoflow[slurm]'"
        ) from None
    return SLURMCluster(
        cores=options.cores,
        processes=options.processes,
        memory=options.memory,
        walltime=options.walltime,
        account=options.account,
        queue=options.queue,
        job_extra_directives=list(options.extra),
        scheduler_options={"dashboard_address": ":0"},
    )


def slurm_job_script(options: SlurmOptions) -> str:
    """The ``sbatch`` script that ``--slurm`` would submit (nothing is submitted)."""
    cluster = _slurm_cluster(options)
    try:
        return str(cluster.job_script())
    finally:
        cluster.close()


def open_executor(spec: ExecutorSpec) -> _InProcess | _Dask:
    """Start (or connect to) the executor described by ``spec``; call ``.close()`` after.

    Parameters
    ----------
    spec
        The executor to use.

    Returns
    -------
    executor
        Has ``run(fn, chunks)`` (yields each chunk's outcomes as it finishes), ``threads``
        (Numba threads per task), ``slots`` (tasks run at once; 0: one file per task),
        ``description`` and ``close()``.
    """
    if spec.kind == "inprocess":
        return _InProcess()
    from distributed import Client, LocalCluster

    if spec.kind == "local":
        n = default_threads(spec.workers)
        # threads: n threads of one worker in this process, talking in-process (no sockets);
        # processes: n one-thread workers on loopback
        # (no dashboard for threads: starting its web server costs more than the whole
        # cluster, and the command shows progress itself; the scheduler's plain HTTP routes
        # still listen, so on ":0", a free port: on the default 8787 two runs at once
        # collide. ":0" everywhere: parallel runs never collide)
        where: dict[str, Any] = {"host": "127.0.0.1", "dashboard_address": ":0"} if spec.processes else {
            "dashboard_address": ":0", "scheduler_kwargs": {"dashboard": False}}
        cluster = LocalCluster(
            n_workers=n if spec.processes else 1, threads_per_worker=1 if spec.processes else n,
            processes=spec.processes, **where, silence_logs=logging.ERROR,
        )
        kind = "processes" if spec.processes else "threads in this process"
        return _Dask(Client(cluster), cluster=cluster, description=f"local Dask cluster, {n} workers ({kind})")
    if spec.kind == "scheduler":
        if spec.scheduler_file:
            client = Client(scheduler_file=spec.scheduler_file)
        elif spec.scheduler:
            client = Client(spec.scheduler)
        else:
            raise ValueError("kind='scheduler' needs a scheduler address or a scheduler file")
        return _Dask(client, description=f"Dask scheduler {client.scheduler.address}")
    if spec.kind == "slurm":
        options = spec.slurm or SlurmOptions()
        cluster = _slurm_cluster(options)
        cluster.scale(jobs=options.jobs)
        return _Dask(Client(cluster), cluster=cluster, description=f"SLURM, {options.jobs} job(s)")
    raise ValueError(f"unknown executor kind {spec.kind!r}")
