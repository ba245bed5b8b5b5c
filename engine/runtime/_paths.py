"""File names derived from sample and gate names, made safe for any file system."""

from __future__ import annotations

import re
import unicodedata

__all__ = ["safe_name"]

_UNSAFE = re.compile(r"[^A-Za-z0-9._+=,@-]+")
# names Windows reserves for devices, with or without an extension (``CON``, ``nul.txt``)
_WINDOWS_DEVICES = frozenset(
    ["CON", "PRN", "AUX", "NUL", "CONIN$", "CONOUT$"]
    + [f"{d}{i}" for d in ("COM", "LPT") for i in (*"123456789", "\u00b9", "\u00b2", "\u00b3")]
)


def safe_name(name: str, *, max_length: int = 120) -> str:
    """A file name for ``name``: no separators, no control characters, no leading dots.

    A name that had to change, a Windows device name (``CON``, ``nul.txt``, ``COM1``...) and a
    name longer than ``max_length`` get a hash of the original appended, so distinct names stay
    distinct; device names also get a leading ``_``.

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
    if cleaned.split(".", 1)[0].upper() in _WINDOWS_DEVICES:
        cleaned = f"_{cleaned}"  # Windows matches the part before the first dot
    if cleaned != name or len(cleaned) > max_length:
        import hashlib

        digest = hashlib.sha1(name.encode("utf-8", "surrogatepass")).hexdigest()[:8]
        cleaned = f"{cleaned[: max_length - 9]}-{digest}"
    return cleaned
