"""Header checks for delimited text tables, before pandas reads them.

pandas renames a repeated column label (``A``, ``A.1``, ...) without a word; for phenoflow's
inputs (count matrices, sample sheets, clinical tables) that turns one id into two, or makes a
lookup by name use the first of two columns. Every reader asks :func:`repeated_header_labels`
and refuses with its own typed error.
"""

from __future__ import annotations

import csv
import gzip
from collections import Counter
from pathlib import Path

__all__ = ["repeated_header_labels"]


def repeated_header_labels(
    path: str | Path, *, sep: str = ",", skip_first: bool = False,
) -> list[tuple[str, int]]:
    """The non-empty labels the header row (the first non-blank line) names more than once.

    Parameters
    ----------
    path
        A delimited text file (``.gz`` is read compressed).
    sep
        The delimiter.
    skip_first
        Leave out the first column (a row-label column).

    Returns
    -------
    list of (str, int)
        Each repeated label with its count, in header order; empty when every label is unique.

    Examples
    --------
    >>> import tempfile, os
    >>> with tempfile.NamedTemporaryFile("w", suffix=".csv", delete=False) as fh:
    ...     _ = fh.write("id,a,b,a\\n1,2,3,4\\n")
    >>> repeated_header_labels(fh.name)
    [('a', 2)]
    >>> os.unlink(fh.name)
    """
    path = Path(path)
    opener = gzip.open if path.suffix == ".gz" else open
    with opener(path, "rt", encoding="utf-8-sig", newline="") as fh:  # type: ignore[operator]
        for line in fh:
            if line.strip():
                break
        else:
            return []
    header = next(csv.reader([line.rstrip("\r\n")], delimiter=sep))
    counts = Counter(header[1:] if skip_first else header)
    return [(label, n) for label, n in counts.items() if n > 1 and label]
