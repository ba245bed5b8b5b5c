"""What a command may change in its own process, and only there.

When ``phenoflow`` runs as its own process (arguments from ``sys.argv``: the ``phenoflow``
script, ``python -m engine.cli``), a command may tune process-wide interpreter settings for
its work; a caller invoking a command in-process with explicit arguments (tests, scripts,
notebooks) keeps its interpreter as it is (:attr:`PhenoflowGroup.whole_process`).
"""

from __future__ import annotations

import gc
import os

import click

__all__ = ["owns_process", "quiet_blas", "settle_heap"]


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
