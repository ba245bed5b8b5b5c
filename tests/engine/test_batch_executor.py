"""The default local executor: Dask's threaded scheduler on threads of this process."""

from __future__ import annotations

import dataclasses
import threading
import time

import pytest

from engine import ExecutorSpec
from engine._batch._executor import open_executor


@dataclasses.dataclass(frozen=True)
class _Task:
    """A stand-in for a BatchTask: the executor only sets ``threads``."""

    i: int
    threads: int | None = None


def _chunks(n: int) -> list[tuple[_Task, ...]]:
    return [(_Task(i),) for i in range(n)]


def test_every_chunk_is_delivered_once_on_the_pools_threads() -> None:
    ex = open_executor(ExecutorSpec(kind="local", workers=2))
    assert ex.description == "local Dask threaded scheduler, 2 threads"
    assert (ex.slots, ex.threads) == (2, 1)
    seen: list[str] = []

    def fn(chunk: tuple[_Task, ...]) -> list[int]:
        seen.append(threading.current_thread().name)
        assert all(t.threads == 1 for t in chunk)  # one Numba thread per task
        return [t.i * 10 for t in chunk]

    try:
        out = list(ex.run(fn, _chunks(40)))  # type: ignore[arg-type]
    finally:
        ex.close()
    assert sorted(v for r in out for v in r) == [10 * i for i in range(40)]
    assert all(name.startswith("phenoflow-gate") for name in seen)
    assert threading.main_thread().name not in seen


def test_outcomes_arrive_while_other_chunks_still_run() -> None:
    ex = open_executor(ExecutorSpec(kind="local", workers=1))
    release = threading.Event()
    calls: list[int] = []

    def fn(chunk: tuple[_Task, ...]) -> list[int]:
        calls.append(chunk[0].i)
        if len(calls) > 1:  # the later chunks wait until the first outcome was handed over
            assert release.wait(10)
        return [t.i for t in chunk]

    try:
        stream = ex.run(fn, _chunks(3))  # type: ignore[arg-type]
        first = next(stream)
        release.set()
        rest = list(stream)
    finally:
        ex.close()
    assert first == [calls[0]]
    assert sorted(first + [v for r in rest for v in r]) == [0, 1, 2]


def test_an_error_in_a_task_reaches_the_caller() -> None:
    ex = open_executor(ExecutorSpec(kind="local", workers=2))

    def fn(chunk: tuple[_Task, ...]) -> list[int]:
        if chunk[0].i == 3:
            raise OSError("disk full")
        return [t.i for t in chunk]

    try:
        with pytest.raises(OSError, match="disk full"):
            list(ex.run(fn, _chunks(6)))  # type: ignore[arg-type]
    finally:
        ex.close()


def test_closing_early_skips_the_chunks_not_started() -> None:
    ex = open_executor(ExecutorSpec(kind="local", workers=1))
    ran: list[int] = []

    def fn(chunk: tuple[_Task, ...]) -> list[int]:
        ran.append(chunk[0].i)
        time.sleep(0.01)
        return [t.i for t in chunk]

    stream = ex.run(fn, _chunks(200))  # type: ignore[arg-type]
    next(stream)
    ex.close()
    stream.close()
    deadline = time.monotonic() + 10
    while threading.active_count() > 1 and any(
            t.name.startswith("phenoflow-") for t in threading.enumerate()) and time.monotonic() < deadline:
        time.sleep(0.01)
    assert not any(t.name.startswith("phenoflow-") for t in threading.enumerate())
    assert len(ran) < 200


def test_no_chunks_no_work() -> None:
    ex = open_executor(ExecutorSpec(kind="local", workers=2))
    assert list(ex.run(lambda c: list(c), [])) == []  # type: ignore[arg-type]
    ex.close()
