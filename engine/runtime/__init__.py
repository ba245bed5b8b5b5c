"""The runtime layer: the lowest layer of phenoflow, imported by every other part.

It holds what every package needs and nothing that knows about cytometry or expression data:
the house Numba policy (one ``njit``, thread caps, the compile cache), file names made safe,
atomic file output, output folder checks and locks, and bounded loading of untrusted YAML. It imports nothing of phenoflow;
``gating`` and ``expression`` use this layer of ``engine`` and nothing else of it (a test walks
the imports to keep it so).
"""

from engine.runtime._atomic import atomic_path, atomic_write_bytes, atomic_write_text, partial_name
from engine.runtime._figures import DPI, format_p, new_figure
from engine.runtime._lock import (
    LOCK_NAME,
    LockHolder,
    OutputDirError,
    OutputLockedError,
    check_output_dir,
    output_lock,
    pid_alive,
    remove_stale_partials,
)
from engine.runtime._numba import (
    SERIAL_BELOW,
    default_threads,
    ensure_cache_dir,
    njit,
    small_or_parallel,
    thread_limit,
)
from engine.runtime._paths import safe_name
from engine.runtime._yaml import MAX_YAML_NODES, load_yaml_bounded

__all__ = [
    "DPI",
    "LOCK_NAME",
    "MAX_YAML_NODES",
    "SERIAL_BELOW",
    "LockHolder",
    "OutputDirError",
    "OutputLockedError",
    "atomic_path",
    "atomic_write_bytes",
    "atomic_write_text",
    "check_output_dir",
    "default_threads",
    "ensure_cache_dir",
    "format_p",
    "load_yaml_bounded",
    "new_figure",
    "njit",
    "output_lock",
    "partial_name",
    "pid_alive",
    "remove_stale_partials",
    "safe_name",
    "small_or_parallel",
    "thread_limit",
]
