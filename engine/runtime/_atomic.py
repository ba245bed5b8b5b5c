"""Atomic file output: write a hidden temporary file beside the target, then rename it.

A reader (or a resumed run) sees either the previous file or the complete new one, never a
truncated one; a failure removes the temporary file. Temporary names are
``.<name>.<pid>.partial<suffix>`` so that stale ones left by a killed process are recognisable.
"""

from __future__ import annotations

import contextlib
import os
import threading
from collections.abc import Iterator
from pathlib import Path

__all__ = ["atomic_path", "atomic_write_bytes", "atomic_write_text", "partial_name"]


def partial_name(path: str | os.PathLike[str], *, suffix: str = "") -> Path:
    """The temporary name :func:`atomic_path` uses for ``path`` in this process.

    Parameters
    ----------
    path
        The final file.
    suffix
        Appended so that writers that infer a format from the extension still see it.

    Returns
    -------
    Path
        ``<dir>/.<name>.<pid>.partial<suffix>`` (``.<pid>.t<thread id>.partial`` outside the
        main thread, so that two threads writing the same file never share a temporary file).

    Examples
    --------
    >>> partial_name("out/run.json").name.startswith(".run.json.")
    True
    """
    target = Path(path)
    # threads of one process (a threaded Dask worker) each get their own name
    thread = "" if threading.current_thread() is threading.main_thread() else (
        f".t{threading.get_ident()}")
    return target.with_name(f".{target.name}.{os.getpid()}{thread}.partial{suffix}")


@contextlib.contextmanager
def atomic_path(path: str | os.PathLike[str], *, suffix: str = "") -> Iterator[Path]:
    """Yield a temporary path to write; rename it onto ``path`` when the block succeeds.

    Parameters
    ----------
    path
        The final file.
    suffix
        Extension kept on the temporary name (``".h5ad"`` for writers that check it).

    Yields
    ------
    Path
        Where to write.

    Examples
    --------
    >>> import tempfile
    >>> folder = Path(tempfile.mkdtemp())
    >>> with atomic_path(folder / "table.csv") as tmp:
    ...     _ = tmp.write_text("a,b\\n")
    >>> (folder / "table.csv").read_text()
    'a,b\\n'
    """
    target = Path(path)
    tmp = partial_name(target, suffix=suffix)
    try:
        yield tmp
        os.replace(tmp, target)
    finally:
        with contextlib.suppress(FileNotFoundError):
            tmp.unlink()


def atomic_write_bytes(path: str | os.PathLike[str], data: bytes) -> None:
    """Write ``data`` to ``path`` atomically.

    Parameters
    ----------
    path
        The final file.
    data
        Its whole content.

    Examples
    --------
    >>> import tempfile
    >>> target = Path(tempfile.mkdtemp()) / "run.json"
    >>> atomic_write_bytes(target, b"{}")
    >>> target.read_bytes()
    b'{}'
    """
    with atomic_path(path) as tmp:
        tmp.write_bytes(data)


def atomic_write_text(path: str | os.PathLike[str], text: str, *, encoding: str = "utf-8") -> None:
    """Write ``text`` to ``path`` atomically.

    Parameters
    ----------
    path
        The final file.
    text
        Its whole content.
    encoding
        Text encoding.

    Examples
    --------
    >>> import tempfile
    >>> target = Path(tempfile.mkdtemp()) / "note.txt"
    >>> atomic_write_text(target, "done")
    >>> target.read_text()
    'done'
    """
    atomic_write_bytes(path, text.encode(encoding))
