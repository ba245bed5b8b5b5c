"""Where Numba keeps compiled kernels: made writable before any kernel is imported.

This module imports neither Numba nor anything of phenoflow, so that the command line can
point the cache before a command imports its kernels (``phenoflow CMD --help`` stays cheap).
"""

from __future__ import annotations

import os
import sys

__all__ = ["ensure_cache_dir"]


def ensure_cache_dir(*sources: str | os.PathLike[str]) -> str | None:
    """Make sure Numba's on-disk cache is writable; call before the kernels are imported.

    Numba caches next to the source (``__pycache__``). When a folder holding kernels is not
    writable (a shared HPC module, a container image) and ``NUMBA_CACHE_DIR`` is unset, this
    points the cache at a per-user, per-job temporary folder
    (``$TMPDIR/phenoflow-numba-<uid>[-<job>]``) and logs a warning. Worker processes started
    afterwards inherit the setting.

    Parameters
    ----------
    *sources
        The folders whose kernels will be compiled (the caller, which sits above the packages
        that hold kernels, names them); default: the folder of the package this layer lives in.

    Returns
    -------
    str or None
        The cache folder chosen, or ``None`` when nothing had to change.

    Examples
    --------
    >>> import os
    >>> os.environ.setdefault("NUMBA_CACHE_DIR", "/tmp/numba-cache") and ensure_cache_dir() is None
    True
    """
    import logging
    import tempfile

    if os.environ.get("NUMBA_CACHE_DIR"):
        return None
    folders = [os.fspath(s) for s in sources] or [os.path.dirname(os.path.dirname(__file__))]
    blocked = next((f for f in folders if not os.access(f, os.W_OK)), None)
    if blocked is None:
        return None
    job = os.environ.get("SLURM_JOB_ID", "")
    folder = os.path.join(tempfile.gettempdir(), f"phenoflow-numba-{os.getuid()}" + (f"-{job}" if job else ""))
    os.makedirs(folder, exist_ok=True)
    os.environ["NUMBA_CACHE_DIR"] = folder
    if "numba" in sys.modules:  # already imported: it read the environment at import
        sys.modules["numba"].config.CACHE_DIR = folder
    logging.getLogger(__name__).warning(
        "%s is not writable: caching compiled kernels in %s (set NUMBA_CACHE_DIR to choose)",
        blocked, folder,
    )
    return folder
