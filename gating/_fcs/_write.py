"""FCS 3.1 writer: float32, little-endian, streamed in chunks, written atomically."""

from __future__ import annotations

import logging
import math
import os
import re
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from engine.runtime import atomic_path

__all__ = ["format_spill", "write_fcs"]

log = logging.getLogger(__name__)

_DELIM = "/"
_TEXT_START = 256  # HEADER is 58 bytes; the gap is spaces, as most writers do
_MAX_HEADER_OFFSET = 99_999_999
_CHUNK_EVENTS = 1 << 20
_STRUCTURAL = re.compile(
    r"^\$(BEGIN|END)(DATA|STEXT|ANALYSIS)$|^\$(BYTEORD|DATATYPE|MODE|NEXTDATA|PAR|TOT)$"
    r"|^\$P\d+[BENRS]$|^\$(SPILLOVER|SPILL)$|^SPILL$",
    re.IGNORECASE,
)


def _channel_rows(channels: Any, n: int) -> list[dict[str, Any]]:
    if isinstance(channels, pd.DataFrame):
        rows = channels.to_dict("records")
    else:
        rows = [{"name": c} if isinstance(c, str) else dict(c) for c in channels]
    if len(rows) != n:
        raise ValueError(f"{len(rows)} channels given for an event matrix with {n} columns")
    names = [str(r.get("name", "")).strip() for r in rows]
    if any(not name for name in names):
        raise ValueError("every channel needs a non-empty name ($PnN)")
    if len(set(names)) != len(names):
        raise ValueError(f"channel names must be unique, got {names}")
    for name in names:
        if "," in name:
            raise ValueError(f"channel name {name!r} contains a comma, which $SPILLOVER cannot hold")
    return rows


def format_spill(spill: pd.DataFrame) -> str:
    """Format a square spillover matrix as an FCS ``$SPILLOVER`` value (exact round trip).

    Parameters
    ----------
    spill
        Rows and columns labelled by channel name (same labels, same order).

    Returns
    -------
    str
        ``"n,name_1,...,name_n,v_11,...,v_nn"`` with shortest round-trip float formatting.
    """
    if list(spill.index) != list(spill.columns):
        raise ValueError("the spillover matrix must have the same channel labels on both axes")
    values = np.asarray(spill.to_numpy(), dtype=np.float64)
    if not np.isfinite(values).all():
        raise ValueError("the spillover matrix has non-finite values")
    names = [str(c) for c in spill.columns]
    return ",".join([str(len(names)), *names, *(repr(float(v)) for v in values.ravel())])


def _text_segment(keywords: Mapping[str, str]) -> bytes:
    parts = []
    for key, value in keywords.items():
        value = str(value)
        if value == "":
            value = " "  # FCS 3.1 forbids empty values
        parts.append(key.replace(_DELIM, _DELIM * 2))
        parts.append(value.replace(_DELIM, _DELIM * 2))
    return (_DELIM + _DELIM.join(parts) + _DELIM).encode("utf-8")


def write_fcs(
    path: str | os.PathLike[str],
    events: np.ndarray,
    channels: Sequence[str] | Sequence[Mapping[str, Any]] | pd.DataFrame,
    *,
    metadata: Mapping[str, str] | None = None,
    spill: pd.DataFrame | None = None,
) -> Path:
    """Write events as an FCS 3.1 file (float32, little-endian, list mode).

    Events are streamed to disk in chunks (no Python loop over events) into a temporary file
    that replaces ``path`` only when complete.

    Parameters
    ----------
    path
        Destination file.
    events
        2-D array (events x channels); converted to float32.
    channels
        ``$PnN`` names, or mappings / a DataFrame with ``name`` and optional ``marker``
        ($PnS) and ``range`` ($PnR, default 262144).
    metadata
        Extra keywords (e.g. ``{"$TIMESTEP": "0.01"}``). Keywords that describe the file's
        structure (offsets, ``$PAR``, ``$TOT``, ``$PnB``, ``$PnE``, ``$PnN``...) are
        computed by the writer and ignored here.
    spill
        Spillover matrix written as ``$SPILLOVER``; its labels must be channel names.

    Returns
    -------
    pathlib.Path
        The written file.
    """
    arr = np.asarray(events) if not isinstance(events, np.ndarray) else events
    if arr.ndim != 2:
        raise ValueError(f"events must be 2-D (events x channels), got shape {arr.shape}")
    n_events, n_par = arr.shape
    if n_par < 1:
        raise ValueError("events need at least one channel")
    rows = _channel_rows(channels, n_par)
    keywords: dict[str, str] = {
        "$BEGINANALYSIS": "0",
        "$ENDANALYSIS": "0",
        "$BEGINSTEXT": "0",
        "$ENDSTEXT": "0",
        "$BEGINDATA": "0",
        "$ENDDATA": "0",
        "$BYTEORD": "1,2,3,4",
        "$DATATYPE": "F",
        "$MODE": "L",
        "$NEXTDATA": "0",
        "$PAR": str(n_par),
        "$TOT": str(n_events),
    }
    for i, row in enumerate(rows, start=1):
        keywords[f"$P{i}N"] = str(row["name"]).strip()
        marker = row.get("marker")
        if marker is not None and not (isinstance(marker, float) and math.isnan(marker)):
            if str(marker).strip():
                keywords[f"$P{i}S"] = str(marker).strip()
        keywords[f"$P{i}B"] = "32"
        keywords[f"$P{i}E"] = "0,0"
        rng = row.get("range")
        keywords[f"$P{i}R"] = (
            "262144" if rng is None or (isinstance(rng, float) and math.isnan(rng)) else
            (str(int(rng)) if float(rng).is_integer() else repr(float(rng)))
        )
    if spill is not None:
        names = {keywords[f"$P{i}N"] for i in range(1, n_par + 1)}
        unknown = [c for c in spill.columns if str(c) not in names]
        if unknown:
            raise ValueError(f"spillover channels {unknown} are not channels of the file")
        keywords["$SPILLOVER"] = format_spill(spill)
    for key, value in (metadata or {}).items():
        name = str(key).strip().upper()
        if _STRUCTURAL.match(name):
            log.debug("write_fcs: ignoring structural keyword %s from metadata", name)
            continue
        if not name:
            raise ValueError("metadata keywords must be non-empty")
        keywords[name] = str(value)

    data_bytes = n_events * n_par * 4
    begin = end = 0
    for _ in range(10):  # offsets are written inside TEXT: iterate to a fixed point
        keywords["$BEGINDATA"] = str(begin) if data_bytes else "0"
        keywords["$ENDDATA"] = str(end) if data_bytes else "0"
        text = _text_segment(keywords)
        text_end = _TEXT_START + len(text) - 1
        new_begin = (text_end + 1 + 7) // 8 * 8  # 8-byte aligned DATA: aligned memory maps
        new_end = new_begin + data_bytes - 1
        if (new_begin, new_end) == (begin, end):
            break
        begin, end = new_begin, new_end
    else:  # pragma: no cover - the lengths converge in two or three rounds
        raise RuntimeError("FCS TEXT offsets did not converge")
    fits = end <= _MAX_HEADER_OFFSET and data_bytes > 0
    header = "FCS3.1    " + "".join(
        f"{v:>8d}"
        for v in (_TEXT_START, text_end, begin if fits else 0, end if fits else 0, 0, 0)
    )
    target = Path(path)
    with atomic_path(target) as tmp, open(tmp, "wb") as fh:
        fh.write(header.encode("ascii"))
        fh.write(b" " * (_TEXT_START - len(header)))
        fh.write(text)
        fh.write(b" " * (begin - text_end - 1 if data_bytes else 0))
        for lo in range(0, n_events, _CHUNK_EVENTS):
            chunk = np.ascontiguousarray(arr[lo : lo + _CHUNK_EVENTS], dtype="<f4")
            fh.write(memoryview(chunk).cast("B"))
    return target
