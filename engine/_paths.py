"""File names derived from sample and gate names, made safe for any file system."""

from __future__ import annotations

import re
import unicodedata

__all__ = ["safe_name"]

_UNSAFE = re.compile(r"[^A-Za-z0-9._+=,@-]+")


def safe_name(name: str, *, max_length: int = 120) -> str:
    """A file name for ``name``: no separators, no control characters, no leading dots.

    Parameters
    ----------
    name
        Any sample or population name (may contain ``/``, ``..``, spaces, non-ASCII).
    max_length
        Longest result (long names keep a stable hash suffix).

    Returns
    -------
    str
        A non-empty name made of ``[A-Za-z0-9._+=,@-]`` that cannot escape a directory.
    """
    normal = unicodedata.normalize("NFKD", name).encode("ascii", "ignore").decode("ascii")
    cleaned = _UNSAFE.sub("_", normal).strip("._") or "unnamed"
    if cleaned != name or len(cleaned) > max_length:
        import hashlib

        digest = hashlib.sha1(name.encode("utf-8", "surrogatepass")).hexdigest()[:8]
        cleaned = f"{cleaned[: max_length - 9]}-{digest}"
    return cleaned
