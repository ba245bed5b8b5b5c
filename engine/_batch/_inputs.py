"""Turn what users pass as FCS input into an ordered, de-duplicated list of files.

Accepted: files, directories (searched recursively for ``*.fcs``, any case, skipping hidden
files such as macOS's ``._x.fcs`` AppleDouble companions), glob patterns, list files (``@files.txt`` or a ``.txt``/``.lst`` file: one path per line, ``#`` comments), and
a manifest CSV with a ``path`` (or ``file``) column and any sample metadata columns (patient,
timepoint, ...), which are carried through to the outputs.

:func:`expand_inputs` is the one expansion rule: every command that takes FCS files (``gate``,
``info``, ``compare``) goes through it.
"""

from __future__ import annotations

import dataclasses
import glob
import os
from collections.abc import Mapping, Sequence
from pathlib import Path

__all__ = ["InputError", "InputFile", "expand_inputs", "resolve_inputs"]

_LIST_SUFFIXES = (".txt", ".lst", ".list")


class InputError(ValueError):
    """The FCS input cannot be resolved (nothing matches, a bad manifest, duplicates)."""


@dataclasses.dataclass(frozen=True)
class InputFile:
    """One FCS file of a batch.

    Attributes
    ----------
    path
        Absolute path.
    name
        Sample name base: the file stem, or the manifest's ``sample`` column; made unique
        across the batch (a file's later datasets get ``#<k>`` appended by the worker).
    metadata
        Manifest columns for this file (empty without a manifest).
    """

    path: str
    name: str
    metadata: Mapping[str, str] = dataclasses.field(default_factory=dict)


def _expand(item: str) -> list[Path]:
    if item.startswith("@"):
        return _read_list(Path(item[1:]))
    p = Path(item)
    if p.is_dir():
        return sorted(q for q in p.rglob("*") if q.suffix.lower() == ".fcs" and not q.name.startswith("."))
    if p.suffix.lower() in _LIST_SUFFIXES and p.is_file():
        return _read_list(p)
    if any(ch in item for ch in "*?["):
        hits = sorted(Path(h) for h in glob.glob(item, recursive=True))
        if not hits:
            raise InputError(f"no files match {item!r}")
        return hits
    return [p]  # a plain path; a missing file becomes that file's error, not the batch's


def expand_inputs(items: Sequence[str | os.PathLike[str]]) -> tuple[Path, ...]:
    """Expand FCS input items to file paths, in order (duplicates kept).

    Parameters
    ----------
    items
        Files, directories (searched recursively for ``*.fcs`` in any case; hidden files such
        as ``._x.fcs`` are skipped), glob patterns, list files (``@files.txt``, or a
        ``.txt``/``.lst``/``.list`` file: one path per line, ``#`` comments).

    Returns
    -------
    tuple of Path
        The files; a plain path is kept even if it does not exist (reading it reports that).

    Raises
    ------
    InputError
        A glob pattern matches nothing, or a list file does not exist.

    Examples
    --------
    >>> import tempfile
    >>> folder = Path(tempfile.mkdtemp())
    >>> for name in ("b.fcs", "a.FCS", "._a.fcs", "notes.txt"):
    ...     _ = (folder / name).write_bytes(b"")
    >>> [p.name for p in expand_inputs([folder])]
    ['a.FCS', 'b.fcs']
    """
    return tuple(p for item in items for p in _expand(os.fspath(item)))


def _read_list(path: Path) -> list[Path]:
    if not path.is_file():
        raise InputError(f"list file {path} does not exist")
    base = path.parent
    out = []
    for line in path.read_text().splitlines():
        line = line.strip()
        if line and not line.startswith("#"):
            q = Path(line)
            out.append(q if q.is_absolute() else base / q)
    return out


#: Manifest columns with a meaning: the file (``path``, or ``file``) and its sample name.
MANIFEST_KEYS = ("path", "file", "sample")

#: Columns of the gating outputs that a manifest metadata column may not overwrite.
RESERVED_COLUMNS = ("population", "parent", "count", "parent_count", "percent_of_parent",
                    "percent_of_total", "id", "dataset", "uncompensated")


def _closest(word: str, options: Sequence[str]) -> str:
    """``"; did you mean 'x'?"`` for the closest of ``options``, or ``""``."""
    import difflib

    close = difflib.get_close_matches(word.lower(), list(options), n=1, cutoff=0.6)
    return f"; did you mean {close[0]!r}?" if close else ""


def _read_manifest(manifest: Path) -> list[tuple[Path, str | None, dict[str, str]]]:
    """``(path, sample or None, metadata)`` per manifest row, refusing what would be dropped
    or replaced silently: unreadable headers, misspelt or clashing columns, repeated files and
    repeated sample names."""
    import csv

    if not manifest.is_file():
        raise InputError(f"manifest {manifest} does not exist")
    try:
        with open(manifest, newline="", encoding="utf-8-sig") as fh:
            header = next(csv.reader(fh), [])
    except (OSError, UnicodeDecodeError, csv.Error) as exc:
        raise InputError(f"manifest {manifest}: cannot read its header ({exc})") from None
    header = [h.strip() for h in header]
    if not any(header):
        raise InputError(f"manifest {manifest} is empty; it needs a header row with a 'path' column")
    for i, name in enumerate(header):
        if not name:
            raise InputError(f"manifest {manifest}: column {i + 1} has no name; name it or remove it")
        if header.count(name) > 1:
            raise InputError(f"manifest {manifest}: column {name!r} appears {header.count(name)} "
                             "times; keep one")
    if "path" in header and "file" in header:
        raise InputError(f"manifest {manifest} has both a 'path' and a 'file' column; keep one "
                         "(the file of each row)")
    for name in header:
        if name in MANIFEST_KEYS:
            continue
        if name.lower() in RESERVED_COLUMNS:
            raise InputError(f"manifest {manifest}: column {name!r} would overwrite the gating "
                             f"output's own column; rename it (reserved: {', '.join(RESERVED_COLUMNS)})")
        hint = _closest(name, MANIFEST_KEYS)
        if hint and name.lower().replace("_", "").replace(" ", "") not in ("patient", "timepoint"):
            raise InputError(f"manifest {manifest}: unknown column {name!r}{hint} (columns with a "
                             f"meaning: {', '.join(MANIFEST_KEYS)}; other columns are metadata)")
    column = "path" if "path" in header else "file" if "file" in header else None
    if column is None:
        hint = next((_closest(h, ("path", "file")) for h in header if _closest(h, ("path", "file"))), "")
        raise InputError(f"manifest {manifest} needs a 'path' (or 'file') column{hint}; it has "
                         f"{header}")
    import pandas as pd  # only for a manifest: listing files stays light

    try:
        table = pd.read_csv(manifest, dtype=str, keep_default_na=False, skipinitialspace=True)
    except (ValueError, pd.errors.ParserError) as exc:
        raise InputError(f"manifest {manifest}: {exc}") from None
    table.columns = header
    base = manifest.parent
    rows: list[tuple[Path, str | None, dict[str, str]]] = []
    seen_paths: dict[str, int] = {}
    seen_samples: dict[str, int] = {}
    for i, row in enumerate(table.to_dict("records")):
        line = i + 2  # the header is line 1
        raw = str(row.pop(column)).strip()
        if not raw:
            raise InputError(f"manifest {manifest}, line {line}: the {column!r} cell is empty")
        p = Path(raw)
        p = p if p.is_absolute() else base / p
        key = os.path.abspath(p)
        if key in seen_paths:
            raise InputError(f"manifest {manifest}, line {line}: {column} {raw!r} is already on line "
                             f"{seen_paths[key]}; list each file once")
        seen_paths[key] = line
        sample = str(row.pop("sample", "") or "").strip() or None
        if sample is not None:
            if sample in seen_samples:
                raise InputError(f"manifest {manifest}, line {line}: sample {sample!r} is already on "
                                 f"line {seen_samples[sample]}; sample names must be unique")
            seen_samples[sample] = line
        rows.append((p, sample, {k: str(v) for k, v in row.items()}))
    return rows


def _unique_names(paths: list[Path], names: list[str]) -> list[str]:
    counts: dict[str, int] = {}
    for n in names:
        counts[n] = counts.get(n, 0) + 1
    if all(c == 1 for c in counts.values()):
        return names
    root = Path(os.path.commonpath([str(p.parent) for p in paths])) if paths else Path()
    out = []
    for p, n in zip(paths, names, strict=True):
        if counts[n] > 1:
            rel = p.with_suffix("").relative_to(root) if p.is_relative_to(root) else p.with_suffix("")
            n = str(rel).replace(os.sep, "/")
        out.append(n)
    return out


def resolve_inputs(
    items: Sequence[str | os.PathLike[str]] = (), *, manifest: str | os.PathLike[str] | None = None
) -> tuple[InputFile, ...]:
    """Resolve FCS inputs to files, in a stable order, each once.

    Parameters
    ----------
    items
        Files, directories, glob patterns or list files.
    manifest
        A CSV with a ``path`` (or ``file``) column, optionally ``sample``, and metadata columns.
        Relative paths are relative to the manifest's folder.

    Returns
    -------
    tuple of InputFile
        Files in the order given (directories sorted), duplicates removed (a manifest row for a
        file also given in ``items`` adds its metadata to it).

    Raises
    ------
    InputError
        Nothing to gate, or a manifest that would be read wrongly: a column without a name or
        twice, both ``path`` and ``file``, a column that misspells ``path``/``file``/``sample``
        (named with the closest one) or overwrites an output column, an empty path, a file or a
        sample name on two rows (both lines named).
    """
    paths: list[Path] = []
    meta: list[dict[str, str]] = []
    given: list[str | None] = []
    for p in expand_inputs(items):
        paths.append(p)
        meta.append({})
        given.append(None)
    if manifest is not None:
        for p, g, m in _read_manifest(Path(manifest)):
            paths.append(p)
            given.append(g)
            meta.append(m)
    if not paths:
        raise InputError("no FCS files given")
    seen: dict[str, int] = {}
    files: list[tuple[Path, dict[str, str], str | None]] = []
    for p, m, g in zip(paths, meta, given, strict=True):
        key = os.path.abspath(p)
        if key in seen:
            if m:  # the manifest row adds metadata to a file also given directly
                files[seen[key]] = (files[seen[key]][0], m, g or files[seen[key]][2])
            continue
        seen[key] = len(files)
        files.append((Path(key), m, g))
    names = _unique_names([f[0] for f in files], [g or f[0].stem for f, (_, _, g) in zip(files, files, strict=True)])
    if len(set(names)) != len(names):
        dupes = sorted({n for n in names if names.count(n) > 1})
        raise InputError(f"sample names are not unique: {dupes}")
    return tuple(InputFile(str(f[0]), n, f[1]) for f, n in zip(files, names, strict=True))
