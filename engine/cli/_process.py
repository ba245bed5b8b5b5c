"""What a command may change in its own process, and only there.

When ``phenoflow`` runs as its own process (arguments from ``sys.argv``: the ``phenoflow``
script, ``python -m engine.cli``), a command may tune process-wide interpreter settings for
its work; a caller invoking a command in-process with explicit arguments (tests, scripts,
notebooks) keeps its interpreter as it is (:attr:`PhenoflowGroup.whole_process`).
"""

from __future__ import annotations

import contextlib
import gc
import os
import sys
import threading

import click

__all__ = ["leave_now", "owns_process", "quiet_blas", "settle_heap"]


def owns_process() -> bool:
    """Whether the running command is the command line of this whole process."""
    ctx = click.get_current_context(silent=True)
    root = ctx.find_root().command if ctx is not None else None
    return bool(getattr(root, "whole_process", False))


def quiet_blas() -> bool:
    """One OpenBLAS thread (``OPENBLAS_NUM_THREADS=1`` unless set), before numpy and SciPy
    load, for a command that does no linear algebra worth threads (gating).

    Each OpenBLAS (numpy's and SciPy's) otherwise starts a thread per extra core that
    spin-waits for work for a while after it starts: about 0.1 s of CPU each, taken from the
    gating threads on a small machine, for nothing. Dask worker processes inherit it (one
    gating thread each: no BLAS threads to want there either). Only when the command owns the
    process, and only if numpy is not loaded yet (later it would change nothing).

    Returns
    -------
    bool
        Whether the setting was made here.
    """
    import sys

    if not owns_process() or "numpy" in sys.modules or "OPENBLAS_NUM_THREADS" in os.environ:
        return False
    os.environ["OPENBLAS_NUM_THREADS"] = "1"
    return True


def settle_heap() -> bool:
    """Move every object made so far (the imported libraries, the loaded strategy) into the
    garbage collector's permanent generation (:func:`gc.freeze`), when the command owns the
    process.

    A batch allocates many short-lived objects per file, and each full collection walked the
    hundreds of thousands of objects of pandas, Numba, pyarrow and Dask, as did the last one
    at interpreter exit: about 0.1-0.3 s of a 200-file ``phenoflow gate``. The objects frozen
    live until the process ends anyway. A caller invoking the command in-process keeps its
    collector as it is: garbage frozen there would never be collected.

    Returns
    -------
    bool
        Whether the heap was frozen.
    """
    if not owns_process():
        return False
    gc.freeze()
    return True


def leave_now(code: object) -> None:
    """End the process with ``code`` (a :class:`SystemExit` code) without the interpreter's
    teardown, once the program's command is done, when nothing else is left running.

    Tearing down the interpreter frees every object of pandas, Numba, pyarrow and Dask one by
    one and runs their finalizers: about 0.1 s after the last output is written, for nothing,
    since the process ends. Here the standard streams are flushed and logging is shut down
    (its handlers flushed and closed), then the process exits at once (:func:`os._exit`).

    While another non-daemon thread or a child process is alive this returns without doing
    anything, and the caller's normal exit (which waits for them) follows. Every output of a
    command is written and closed before the command returns (atomic renames), so nothing is
    lost.

    Parameters
    ----------
    code
        ``None`` (0), an exit status, or a message (printed to stderr, status 1), as
        :class:`SystemExit` takes them.
    """
    others = [t for t in threading.enumerate() if t is not threading.main_thread() and not t.daemon]
    if others:
        return
    multiprocessing = sys.modules.get("multiprocessing")
    if multiprocessing is not None and multiprocessing.active_children():
        return
    if code is None:
        status = 0
    elif isinstance(code, int):
        status = code
    else:  # as the interpreter does for a non-integer exit code
        print(code, file=sys.stderr)
        status = 1
    import logging

    logging.shutdown()
    for stream in (sys.stdout, sys.stderr):
        with contextlib.suppress(OSError, ValueError):  # closed or broken: nothing to say there
            stream.flush()
    os._exit(status & 0xFF)
