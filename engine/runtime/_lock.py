"""Output folders: checked before any work, locked against a second concurrent run, swept of
the temporary files a killed run left behind.

- :func:`check_output_dir` says, without creating anything, whether a folder can be created
  (or, when it exists, written to): a run refuses an unusable ``--out`` before it reads a
  single input.
- :func:`output_lock` holds ``<folder>/.phenoflow.lock`` for the duration of a run. The lock
  is ``fcntl.flock`` on that file, so the kernel releases it when the holder dies, even under
  ``kill -9``; the file also names the holder (pid, host, start time), which a second run
  reports in its :class:`OutputLockedError`. A lock file left by a dead process of this host
  is taken over with a warning.
- :func:`remove_stale_partials` removes the ``.<name>.<pid>.partial*`` files of
  :func:`engine.runtime.atomic_path` whose process is no longer alive on this host.
"""

from __future__ import annotations

import contextlib
import dataclasses
import datetime
import errno
import fcntl
import json
import logging
import os
import re
import socket
import tempfile
from collections.abc import Iterator
from pathlib import Path

__all__ = [
    "LOCK_NAME",
    "LockHolder",
    "OutputDirError",
    "OutputLockedError",
    "check_output_dir",
    "output_lock",
    "pid_alive",
    "remove_stale_partials",
    "unwritable_reason",
]

log = logging.getLogger(__name__)

#: The lock file's name inside a locked folder.
LOCK_NAME = ".phenoflow.lock"

#: ``.<name>.<pid>[.t<thread>].partial<suffix>``: the temporary names of :func:`engine.runtime.atomic_path`.
_PARTIAL = re.compile(r"^\..+\.(\d+)(?:\.t\d+)?\.partial[^/]*$")


class OutputDirError(OSError):
    """An output folder cannot be created or written to (see :func:`check_output_dir`)."""


@dataclasses.dataclass(frozen=True)
class LockHolder:
    """Who holds (or held) an output folder's lock.

    Attributes
    ----------
    pid
        Process id.
    host
        Host name.
    started
        When the lock was taken (ISO 8601, local time with offset).
    """

    pid: int
    host: str
    started: str

    @property
    def text(self) -> str:
        """``pid 123 on host node1 since 2024-05-01T10:00:00+02:00``."""
        return f"pid {self.pid} on host {self.host} since {self.started}"

    @property
    def on_this_host(self) -> bool:
        """Whether the holder ran on this host."""
        return self.host == socket.gethostname()


class OutputLockedError(RuntimeError):
    """Another run holds an output folder's lock.

    Attributes
    ----------
    folder
        The locked folder.
    holder
        The holder named in the lock file (``None`` when the file could not be read).
    """

    def __init__(self, folder: str | os.PathLike[str], holder: LockHolder | None) -> None:
        self.folder = str(folder)
        self.holder = holder
        who = holder.text if holder is not None else "another process"
        super().__init__(
            f"{self.folder} is in use by another phenoflow run ({who}); wait for it to finish, "
            "or choose another output folder"
        )

    def __reduce__(self):  # keep the holder across process boundaries
        return (OutputLockedError, (self.folder, self.holder))


def pid_alive(pid: int) -> bool:
    """Whether process ``pid`` exists on this host.

    Parameters
    ----------
    pid
        A process id.

    Returns
    -------
    bool
        ``True`` for a live process (also one of another user), ``False`` otherwise.

    Examples
    --------
    >>> pid_alive(os.getpid())
    True
    """
    if pid <= 0:
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # alive, another user's
        return True
    except OSError:
        return False
    return True


def check_output_dir(path: str | os.PathLike[str], *, what: str = "output folder") -> Path:
    """Check that ``path`` is a folder that can be written to, or can be created; create nothing.

    Parameters
    ----------
    path
        The output folder.
    what
        How messages name it (``"--out"``, ``"output folder"``).

    Returns
    -------
    Path
        ``path``.

    Raises
    ------
    OutputDirError
        ``path`` is a file, is not writable, or cannot be created (a parent is a file, or not
        writable). The message names the path and the fix.

    Examples
    --------
    >>> import tempfile
    >>> folder = Path(tempfile.mkdtemp())
    >>> check_output_dir(folder / "new" / "out") == folder / "new" / "out"
    True
    >>> (folder / "new").exists()
    False
    """
    target = Path(path)
    if target.exists():
        if not target.is_dir():
            raise OutputDirError(f"{what} {target} is a file, not a folder; choose a folder")
        _probe(target, f"{what} {target} is not writable", target)
        return target
    ancestor = target.parent
    while not ancestor.exists() and ancestor != ancestor.parent:
        ancestor = ancestor.parent
    if not ancestor.is_dir():
        raise OutputDirError(
            f"{what} {target} cannot be created: {ancestor} is a file; choose another folder"
        )
    _probe(ancestor, f"{what} {target} cannot be created: {ancestor} is not writable", target)
    return target


def unwritable_reason(folder: str | os.PathLike[str]) -> str | None:
    """Why no file can be created in ``folder``, or ``None`` when one can.

    The one writability check of phenoflow: it creates and removes a probe file, because
    ``os.access`` is wrong for root, ACLs and read-only mounts.

    Parameters
    ----------
    folder
        An existing folder.

    Returns
    -------
    str or None
        The operating system's reason, or ``None``.

    Examples
    --------
    >>> import tempfile
    >>> unwritable_reason(tempfile.gettempdir()) is None
    True
    """
    try:
        fd, name = tempfile.mkstemp(prefix=".phenoflow-probe.", dir=folder)
    except OSError as exc:
        return os.strerror(exc.errno) if exc.errno else str(exc)
    os.close(fd)
    with contextlib.suppress(OSError):
        os.unlink(name)
    return None


def _probe(folder: Path, message: str, target: Path) -> None:
    reason = unwritable_reason(folder)
    if reason is not None:
        raise OutputDirError(f"{message} ({reason}); choose a folder you can write to")


def _read_holder(fd: int) -> LockHolder | None:
    try:
        os.lseek(fd, 0, os.SEEK_SET)
        data = json.loads(os.read(fd, 4096).decode() or "null")
        return LockHolder(int(data["pid"]), str(data["host"]), str(data["started"]))
    except (OSError, ValueError, KeyError, TypeError):
        return None


@contextlib.contextmanager
def output_lock(folder: str | os.PathLike[str]) -> Iterator[LockHolder]:
    """Hold ``folder``'s lock (``<folder>/.phenoflow.lock``) for the block; the folder must exist.

    Parameters
    ----------
    folder
        The output folder.

    Yields
    ------
    LockHolder
        This process, as written into the lock file.

    Raises
    ------
    OutputLockedError
        Another process (of this or another host) holds the lock; raised at once.

    Examples
    --------
    >>> import tempfile
    >>> folder = Path(tempfile.mkdtemp())
    >>> with output_lock(folder) as me:
    ...     me.pid == os.getpid()
    True
    >>> (folder / LOCK_NAME).exists()
    False
    """
    path = Path(folder) / LOCK_NAME
    while True:
        fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError as exc:
            holder = _read_holder(fd)
            os.close(fd)
            if exc.errno in (errno.EWOULDBLOCK, errno.EAGAIN, errno.EACCES):
                raise OutputLockedError(folder, holder) from None
            raise
        try:  # the file may have been removed (and recreated) by its holder meanwhile
            same = os.fstat(fd).st_ino == os.stat(path).st_ino
        except FileNotFoundError:
            same = False
        if same:
            break
        os.close(fd)
    try:
        previous = _read_holder(fd)
        if previous is not None:  # the lock is free: its holder died without cleaning up
            gone = "is no longer running" if previous.on_this_host and not pid_alive(previous.pid) \
                else "no longer holds it"
            log.warning("%s: taking over a stale lock of %s, which %s", folder, previous.text, gone)
        me = LockHolder(os.getpid(), socket.gethostname(),
                        datetime.datetime.now().astimezone().isoformat(timespec="seconds"))
        os.ftruncate(fd, 0)
        os.lseek(fd, 0, os.SEEK_SET)
        os.write(fd, json.dumps(dataclasses.asdict(me)).encode())
        os.fsync(fd)
        yield me
    finally:
        with contextlib.suppress(OSError):
            os.unlink(path)  # while still locked: a waiting opener re-checks the inode
        os.close(fd)


def remove_stale_partials(*folders: str | os.PathLike[str]) -> list[Path]:
    """Remove the temporary files killed runs left in ``folders`` (not their subfolders).

    Only names of :func:`engine.runtime.atomic_path`'s pattern, ``.<name>.<pid>.partial*``,
    whose process is not alive on this host are removed; hold the folder's
    :func:`output_lock` first, so no live run of another host is writing them.

    Parameters
    ----------
    *folders
        Folders to sweep; missing ones are skipped.

    Returns
    -------
    list of Path
        The files removed.

    Examples
    --------
    >>> import tempfile
    >>> folder = Path(tempfile.mkdtemp())
    >>> _ = (folder / ".run.json.999999999.partial").write_text("{")
    >>> _ = (folder / f".run.json.{os.getpid()}.partial").write_text("{")
    >>> [p.name for p in remove_stale_partials(folder)]
    ['.run.json.999999999.partial']
    """
    removed = []
    for folder in folders:
        try:
            entries = list(os.scandir(folder))
        except (FileNotFoundError, NotADirectoryError):
            continue
        for entry in entries:
            match = _PARTIAL.match(entry.name)
            if match is None or pid_alive(int(match.group(1))):
                continue
            try:
                if not entry.is_file(follow_symlinks=False):
                    continue
                os.unlink(entry.path)
            except FileNotFoundError:
                continue
            removed.append(Path(entry.path))
    if removed:
        log.warning("removed %d temporary file(s) left by killed runs: %s", len(removed),
                    ", ".join(p.name for p in removed[:5]) + (", ..." if len(removed) > 5 else ""))
    return removed
