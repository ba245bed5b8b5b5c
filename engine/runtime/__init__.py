"""The runtime layer: the lowest layer of phenoflow, imported by every other part.

It holds what every package needs and nothing that knows about cytometry or expression data:
the house Numba policy (one ``njit``, thread caps, the compile cache), file names made safe,
atomic file output, output folder checks and locks, and bounded loading of untrusted YAML. It imports nothing of phenoflow;
``gating`` and ``expression`` use this layer of ``engine`` and nothing else of it (a test walks
the imports to keep it so).

The names load lazily (PEP 562): ``from engine.runtime import safe_name`` does not import Numba,
so the command line starts fast; the first kernel module pays for it.
"""

from engine.runtime._lazy import lazy_namespace

#: public name -> the module that defines it
_EXPORTS: dict[str, str] = {
    "atomic_path": "engine.runtime._atomic",
    "atomic_write_bytes": "engine.runtime._atomic",
    "atomic_write_text": "engine.runtime._atomic",
    "partial_name": "engine.runtime._atomic",
    "DPI": "engine.runtime._figures",
    "format_p": "engine.runtime._figures",
    "new_figure": "engine.runtime._figures",
    "LOCK_NAME": "engine.runtime._lock",
    "LockHolder": "engine.runtime._lock",
    "OutputDirError": "engine.runtime._lock",
    "OutputLockedError": "engine.runtime._lock",
    "check_output_dir": "engine.runtime._lock",
    "output_lock": "engine.runtime._lock",
    "pid_alive": "engine.runtime._lock",
    "remove_stale_partials": "engine.runtime._lock",
    "unwritable_reason": "engine.runtime._lock",
    "SERIAL_BELOW": "engine.runtime._numba",
    "default_threads": "engine.runtime._numba",
    "ensure_cache_dir": "engine.runtime._cache",
    "njit": "engine.runtime._numba",
    "small_or_parallel": "engine.runtime._numba",
    "thread_limit": "engine.runtime._numba",
    "safe_name": "engine.runtime._paths",
    "repeated_header_labels": "engine.runtime._tables",
    "MAX_YAML_NODES": "engine.runtime._yaml",
    "load_yaml_bounded": "engine.runtime._yaml",
    "lazy_namespace": "engine.runtime._lazy",
}

__all__ = sorted(_EXPORTS)


__getattr__, __dir__ = lazy_namespace(__name__, _EXPORTS, globals())
