"""The house Numba policy: one ``njit`` for every kernel, thread caps, cache location.

Every kernel in the code base is compiled through :func:`njit` so that all of them share
the same choices: an on-disk cache (compile once per machine, not once per process), the GIL
released while a kernel runs (so Dask threads can overlap), and no ``fastmath`` (gating must be
bit-exact). Thread counts are never left at Numba's default of "every core of the node": use
:func:`thread_limit` around parallel work, sized by :func:`default_threads`.
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Callable, Iterator
from typing import Any, TypeVar

import numba

from engine.runtime._cache import ensure_cache_dir  # kept importable from here

F = TypeVar("F", bound=Callable[..., Any])

__all__ = [
    "SERIAL_BELOW",
    "default_threads",
    "ensure_cache_dir",  # defined in engine.runtime._cache (no Numba import)
    "njit",
    "small_or_parallel",
    "thread_limit",
]

#: Below this many elements a kernel's serial twin is used: waking the thread pool costs more
#: than the loop itself.
SERIAL_BELOW = 50_000


def njit(*signatures: Any, parallel: bool = False, **options: Any) -> Callable[[F], F]:
    """Compile a kernel with the house policy (``cache=True, nogil=True``, no fastmath).

    Parameters
    ----------
    *signatures
        Optional explicit Numba signatures.
    parallel
        Enable ``numba.prange`` loops; the thread count is governed by :func:`thread_limit`.
    **options
        Further ``numba.njit`` options; ``cache``/``nogil``/``fastmath`` cannot be overridden.

    Returns
    -------
    Callable
        A decorator.
    """
    for fixed in ("cache", "nogil", "fastmath"):
        if fixed in options:
            raise TypeError(f"njit option {fixed!r} is fixed by the house policy")

    def decorate(func: F) -> F:
        return numba.njit(  # type: ignore[no-any-return]
            *signatures, cache=True, nogil=True, fastmath=False, parallel=parallel, **options
        )(func)

    return decorate


def small_or_parallel(kernel: F, size: int) -> F:
    """``kernel`` itself, or for small inputs its serial twin (same code, no thread pool).

    Parameters
    ----------
    kernel
        A dispatcher made by :func:`njit` with ``parallel=True``.
    size
        Number of elements the call will loop over.

    Returns
    -------
    Callable
        The kernel to call.
    """
    if size >= SERIAL_BELOW:
        return kernel
    twin = _TWINS.get(kernel)
    if twin is None:
        import types

        func = kernel.py_func  # type: ignore[attr-defined]
        # a distinct name, so the twin has its own entry in Numba's on-disk cache
        clone = types.FunctionType(
            func.__code__, func.__globals__, f"{func.__name__}_serial", func.__defaults__,
            func.__closure__,
        )
        clone.__qualname__ = f"{func.__qualname__}_serial"
        clone.__module__ = func.__module__
        twin = numba.njit(cache=True, nogil=True, fastmath=False)(clone)
        _TWINS[kernel] = twin
    return twin  # type: ignore[return-value]


_TWINS: dict[Any, Any] = {}


def default_threads(requested: int | None = None) -> int:
    """Threads to use: ``requested`` if given, else the job's share of the machine.

    Honours ``SLURM_CPUS_PER_TASK`` and the process CPU affinity, never more than Numba was
    started with.

    Parameters
    ----------
    requested
        Explicit thread count; values below 1 are rejected.

    Returns
    -------
    int
        The number of threads.
    """
    ceiling = int(numba.config.NUMBA_NUM_THREADS)
    if requested is not None:
        if requested < 1:
            raise ValueError(f"thread count must be >= 1, got {requested}")
        return min(requested, ceiling)
    slurm = os.environ.get("SLURM_CPUS_PER_TASK", "").strip()
    if slurm.isdigit() and int(slurm) > 0:
        return min(int(slurm), ceiling)
    try:
        available = len(os.sched_getaffinity(0))
    except AttributeError:  # pragma: no cover - non-Linux
        available = os.cpu_count() or 1
    return max(1, min(available, ceiling))


@contextlib.contextmanager
def thread_limit(n: int | None = None) -> Iterator[int]:
    """Run the enclosed Numba parallel kernels with at most ``n`` threads.

    Parameters
    ----------
    n
        Thread cap; ``None`` uses :func:`default_threads`.

    Yields
    ------
    int
        The cap in effect.
    """
    n = default_threads(n)
    previous = numba.get_num_threads()
    numba.set_num_threads(n)
    try:
        yield n
    finally:
        numba.set_num_threads(previous)
