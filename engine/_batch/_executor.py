"""Where batch tasks run: in-process, a local Dask cluster, an existing scheduler, or SLURM.

Tasks are small frozen records (a chunk of ``BatchTask``: file paths and the serialised
strategy), never samples or event arrays; Dask ships them to workers like any other argument.
Results are small ``TaskOutcome`` records. Each executor caps the Numba threads a task may use
to its worker's share of the machine (it sets the task's ``threads``) and says how many tasks
it runs at once (``slots``), from which the batch sizes its chunks.

Local runs use Dask's threaded scheduler (``dask.threaded``) on threads of this process by
default: the gating kernels release the GIL and the process has already imported everything
and loaded the compiled kernels, so starting costs nothing (a ``distributed`` cluster in this
process cost 0.2-0.3 s to import, start and stop, and a scheduler round trip per task; worker
processes each start an interpreter, import the stack and load the kernel cache: several
seconds, more than gating 200 files of 100,000 events on two cores). ``processes=True`` runs a
``distributed`` ``LocalCluster`` of worker processes instead (memory isolation and a memory
limit per worker) for long runs; an existing scheduler and SLURM use ``distributed`` too.
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
        ``"inprocess"`` (debugging: one file per task, in this thread), ``"local"`` (the
        default: Dask's threaded scheduler, or a ``LocalCluster`` of worker processes),
        ``"scheduler"`` (an existing scheduler) or ``"slurm"``.
    workers
        Local workers (default: the job's share of the machine, honouring
        ``SLURM_CPUS_PER_TASK``).
    processes
        ``kind="local"`` only: workers as separate processes of a ``distributed``
        ``LocalCluster`` (a memory limit each, a crash isolated) instead of threads of this
        process under Dask's threaded scheduler (the default: no start-up cost).
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


def _capped(chunk: Chunk, threads: int) -> Chunk:
    """The chunk's tasks with their Numba threads set to the executor's share per task."""
    return tuple(dataclasses.replace(t, threads=threads) for t in chunk)


class _InProcess:
    def __init__(self) -> None:
        self.threads = default_threads()
        self.slots = 0  # no scheduling cost to amortise: one file per task
        self.description = f"in-process ({self.threads} threads)"

    def run(
        self, fn: Callable[[Chunk], list[TaskOutcome]], chunks: Iterable[Chunk]
    ) -> Iterator[list[TaskOutcome]]:
        for chunk in chunks:
            yield fn(_capped(chunk, self.threads))

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
            fn, _capped(chunk, self.threads), pure=False)

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


class _DaskThreads:
    """Dask's local threaded scheduler (``dask.threaded``) on ``n`` threads of this process.

    The chunks are the independent tasks of one Dask graph, run by ``dask.threaded.get`` on a
    pool of ``n`` threads from a helper thread; each chunk's outcomes reach :meth:`run`'s
    caller as the chunk finishes (a ``posttask`` callback), and the scheduler drops them once
    delivered. Nothing else is started: no scheduler or worker objects, no event loop, no
    port opened; a task costs what the call costs. The gating kernels release the GIL, so the
    threads gate side by side.
    """

    def __init__(self, n: int) -> None:
        import threading

        self.n = n
        self.threads = 1  # one Numba thread per task: the pool's threads are the share
        self.slots = n
        self.description = f"local Dask threaded scheduler, {n} threads"
        self._stop = threading.Event()

    def run(
        self, fn: Callable[[Chunk], list[TaskOutcome]], chunks: Iterable[Chunk]
    ) -> Iterator[list[TaskOutcome]]:
        import concurrent.futures
        import queue
        import threading

        import dask.threaded

        stop = self._stop

        def call(chunk: Chunk) -> list[TaskOutcome] | None:
            return None if stop.is_set() else fn(chunk)  # closed early: the rest is skipped

        graph = {
            ("phenoflow-chunk", i): (call, _capped(chunk, self.threads))
            for i, chunk in enumerate(chunks)
        }
        if not graph:
            return
        delivered: queue.Queue[tuple[bool, Any]] = queue.Queue()

        def posttask(key: Any, result: Any, dsk: Any, state: Any, worker_id: Any) -> None:
            delivered.put((False, result))
            state["cache"][key] = None  # handed over: the scheduler holds no outcomes

        def drive() -> None:
            try:
                with concurrent.futures.ThreadPoolExecutor(
                        self.n, thread_name_prefix="phenoflow-gate") as pool:
                    dask.threaded.get(graph, list(graph), pool=pool,
                                      callbacks=[(None, None, None, posttask, None)])
            except BaseException as exc:  # raised again in the caller's thread
                delivered.put((True, exc))
            else:
                delivered.put((True, None))

        driver = threading.Thread(target=drive, name="phenoflow-dask-threaded", daemon=True)
        driver.start()
        while True:
            last, item = delivered.get()
            if last:
                driver.join()
                if item is not None:
                    raise item
                return
            if item is not None:
                yield item

    def close(self) -> None:
        """Skip the chunks not yet started (a run closed early); running ones finish."""
        self._stop.set()


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


def open_executor(spec: ExecutorSpec) -> _InProcess | _DaskThreads | _Dask:
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
    if spec.kind == "local" and not spec.processes:
        return _DaskThreads(default_threads(spec.workers))
    from distributed import Client, LocalCluster

    if spec.kind == "local":  # worker processes: n one-thread workers on loopback
        n = default_threads(spec.workers)
        # the dashboard on ":0", a free port: on the default 8787 two runs at once collide
        cluster = LocalCluster(
            n_workers=n, threads_per_worker=1, processes=True, host="127.0.0.1",
            dashboard_address=":0", silence_logs=logging.ERROR,
        )
        return _Dask(Client(cluster), cluster=cluster, description=f"local Dask cluster, {n} workers (processes)")
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
