"""TEXT keywords interpreted: the channel table, byte order, DATA offsets and spillover.

Used by :func:`gating._fcs._read.read_fcs` (the channel table, ``$BYTEORD``, where DATA is) and by
:attr:`gating._fcs._data.FCSData.spill` (:func:`parse_spill`).
"""

from __future__ import annotations

import math
import re
from collections.abc import Mapping
from typing import Literal

import numpy as np
import pandas as pd

from gating._errors import FCSDatatypeError, FCSKeywordError, FCSOffsetError
from gating._fcs._text import keyword_int

__all__ = [
    "SPILL_KEYWORDS",
    "OffsetPolicy",
    "channel_table",
    "parse_byteorder",
    "parse_spill",
    "resolve_data_offsets",
]

OffsetPolicy = Literal["strict", "header", "text"]
SPILL_KEYWORDS = ("$SPILLOVER", "SPILL", "$SPILL", "SPILLOVER")
_SCATTER = re.compile(r"^(fsc|ssc|fs|ss)([-_ .\s]|$)", re.IGNORECASE)


def parse_spill(text: str, *, path: str, keyword: str = "$SPILLOVER") -> pd.DataFrame:
    """Parse an FCS spillover keyword value into a labelled square matrix.

    Parameters
    ----------
    text
        ``"n,name_1,...,name_n,v_11,v_12,...,v_nn"``.
    path, keyword
        For error messages.

    Returns
    -------
    pandas.DataFrame
        Rows and columns labelled by channel name.
    """
    parts = [p.strip() for p in text.split(",")]
    while parts and parts[-1] == "":
        parts.pop()
    try:
        n = int(float(parts[0]))
    except (ValueError, IndexError, OverflowError):
        raise FCSKeywordError(
            f"{keyword} does not start with a channel count: {text[:40]!r}", path=path,
            segment="TEXT",
        ) from None
    if n < 1 or len(parts) != 1 + n + n * n:
        raise FCSKeywordError(
            f"{keyword} declares {n} channels, so it needs {1 + n + n * n} fields, found "
            f"{len(parts)}",
            path=path,
            segment="TEXT",
        )
    names = parts[1 : 1 + n]
    try:
        values = np.array([float(v) for v in parts[1 + n :]], dtype=np.float64).reshape(n, n)
    except ValueError as exc:
        raise FCSKeywordError(f"{keyword} has a non-numeric value: {exc}", path=path, segment="TEXT") from None
    return pd.DataFrame(values, index=pd.Index(names), columns=pd.Index(names))


def parse_byteorder(value: str, *, path: str) -> tuple[int, ...]:
    try:
        ranks = tuple(int(v) - 1 for v in value.replace(" ", "").split(","))
    except ValueError:
        raise FCSDatatypeError(f"$BYTEORD is not a byte order: {value!r}", path=path, segment="TEXT") from None
    if sorted(ranks) != list(range(len(ranks))) or len(ranks) not in (1, 2, 3, 4, 8):
        raise FCSDatatypeError(f"$BYTEORD is not a permutation: {value!r}", path=path, segment="TEXT")
    return ranks


def channel_table(
    kw: Mapping[str, str], n_par: int, *, path: str, version: str, notes: list[str]
) -> tuple[pd.DataFrame, pd.DataFrame]:
    """The public channel table and the private per-channel scaling table."""
    # built column by column (a frame from a list of records costs several times more)
    rows: dict[str, list] = {k: [] for k in (
        "number", "name", "marker", "range", "bits", "amplification", "decades", "log_zero",
        "gain", "kind")}
    scaling: dict[str, list] = {k: [] for k in (
        "mask", "timestep", "decades", "log_zero", "range", "gain", "needs_scaling")}
    timestep = 1.0
    if kw.get("$TIMESTEP", "").strip():
        try:
            timestep = float(kw["$TIMESTEP"])
        except ValueError:
            timestep = math.nan
            notes.append(f"$TIMESTEP={kw['$TIMESTEP']!r} is not a number; Time is left unscaled")
    for i in range(1, n_par + 1):
        name = kw.get(f"$P{i}N", "").strip()
        if not name:
            if version != "FCS2.0":
                raise FCSKeywordError(f"required keyword $P{i}N is missing", path=path, segment="TEXT")
            name = f"P{i}"
        bits_text = kw.get(f"$P{i}B")
        if bits_text is None:
            raise FCSKeywordError(f"required keyword $P{i}B is missing", path=path, segment="TEXT")
        try:
            bits = int(bits_text.strip())
        except ValueError:
            raise FCSDatatypeError(
                f"$P{i}B={bits_text!r} is not a bit width (ASCII data is not supported)", path=path,
                segment="TEXT",
            ) from None
        if not 1 <= bits <= 64:
            raise FCSDatatypeError(f"$P{i}B={bits} is outside 1..64", path=path, segment="TEXT")
        rng_text = kw.get(f"$P{i}R", "").strip()
        try:
            rng = float(rng_text) if rng_text else math.nan
        except ValueError:
            raise FCSKeywordError(f"$P{i}R is not a number: {rng_text!r}", path=path, segment="TEXT") from None
        amp = kw.get(f"$P{i}E", "0,0").strip() or "0,0"
        try:
            decades, log_zero = (float(v) for v in amp.split(",")[:2])
        except ValueError:
            raise FCSKeywordError(f"$P{i}E is not 'f1,f2': {amp!r}", path=path, segment="TEXT") from None
        if not (math.isfinite(decades) and math.isfinite(log_zero)):
            raise FCSKeywordError(f"$P{i}E has a value that is not finite: {amp!r}", path=path, segment="TEXT")
        if decades > 0 and not (math.isfinite(rng) and rng > 0):
            raise FCSKeywordError(
                f"$P{i}E={amp!r} is logarithmic but $P{i}R={rng_text!r} is not a positive range",
                path=path,
                segment="TEXT",
            )
        if decades > 0 and log_zero == 0:
            log_zero = 1.0  # the standard's reading of an invalid 0
        gain_text = kw.get(f"$P{i}G", "").strip()
        try:
            gain = float(gain_text) if gain_text else 1.0
        except ValueError:
            raise FCSKeywordError(f"$P{i}G is not a number: {gain_text!r}", path=path, segment="TEXT") from None
        is_time = name.lower() == "time"
        kind = "time" if is_time else ("scatter" if _SCATTER.match(name) else "fluorescence")
        mask = (1 << bits) - 1
        if not math.isnan(rng) and 0 < rng < 2**bits:
            mask = (1 << (max(math.ceil(rng), 1) - 1).bit_length()) - 1
        step = timestep if is_time and not math.isnan(timestep) else 1.0
        effective_gain = 1.0 if is_time else gain  # a gain on the time channel is meaningless
        for key, value in (
            ("number", i), ("name", name), ("marker", kw.get(f"$P{i}S", "").strip()),
            ("range", rng), ("bits", bits), ("amplification", amp), ("decades", decades),
            ("log_zero", log_zero if decades > 0 else 0.0), ("gain", gain), ("kind", kind),
        ):
            rows[key].append(value)
        for key, value in (
            ("mask", np.uint64(mask)), ("timestep", step), ("decades", decades),
            ("log_zero", log_zero), ("range", rng), ("gain", effective_gain),
            ("needs_scaling", bool(step != 1.0 or decades > 0 or (effective_gain not in (1.0, 0.0)))),
        ):
            scaling[key].append(value)
    return _frame(rows, _CHANNEL_DTYPES), _frame(scaling, _SCALING_DTYPES)


#: The dtypes pandas infers for the channel and scaling tables' columns (set explicitly:
#: inference per column costs more than building the table).
_CHANNEL_DTYPES = {"number": np.int64, "name": object, "marker": object, "range": np.float64,
                   "bits": np.int64, "amplification": object, "decades": np.float64,
                   "log_zero": np.float64, "gain": np.float64, "kind": object}
_SCALING_DTYPES = {"mask": np.uint64, "timestep": np.float64, "decades": np.float64,
                   "log_zero": np.float64, "range": np.float64, "gain": np.float64,
                   "needs_scaling": np.bool_}


def _frame(columns: dict[str, list], dtypes: dict[str, type]) -> pd.DataFrame:
    """The table of ``columns``: the frame a list of their rows gives, built column by column."""
    if not next(iter(columns.values())):
        return pd.DataFrame([])
    return pd.DataFrame({k: np.array(v, dtype=dtypes[k]) for k, v in columns.items()}, copy=False)


def resolve_data_offsets(
    header, kw, *, policy: OffsetPolicy, path: str, notes: list[str] | None = None
) -> tuple[int, int]:
    """DATA offsets (relative to the dataset) from the HEADER and ``$BEGINDATA``/``$ENDDATA``.

    Instrument quirk: some FCS 2.0 writers leave junk after the number (``'       768I'``).
    When the HEADER has the offsets, such a value is ignored with a note in ``notes`` (as other
    readers do); without HEADER offsets it is an error, since nothing else says where DATA is.
    """
    h_start, h_end = header.data
    header_given = (h_start, h_end) != (0, 0)
    t_start = _offset_keyword(kw, "$BEGINDATA", path=path, header_given=header_given, notes=notes)
    t_end = _offset_keyword(kw, "$ENDDATA", path=path, header_given=header_given, notes=notes)
    text_given = t_start is not None and t_end is not None and (t_start, t_end) != (0, 0)
    if header_given and text_given and (h_start, h_end) != (t_start, t_end):
        if policy == "header":
            return h_start, h_end
        if policy == "text":
            return t_start, t_end  # type: ignore[return-value]
        raise FCSOffsetError(
            f"HEADER says DATA is bytes {h_start}..{h_end} but TEXT says $BEGINDATA={t_start}, "
            f"$ENDDATA={t_end}; pass offsets='header' or offsets='text' to trust one of them",
            path=path,
            segment="DATA",
            offset=header.base + h_start,
        )
    if header_given:
        return h_start, h_end
    if text_given:
        return t_start, t_end  # type: ignore[return-value]
    return 0, 0


def _offset_keyword(
    kw, name: str, *, path: str, header_given: bool, notes: list[str] | None
) -> int | None:
    try:
        return keyword_int(kw, name, path=path, segment="TEXT")
    except FCSKeywordError:
        if not header_given:
            raise
        if notes is not None:
            notes.append(f"{name}={kw[name]!r} is not an integer; used the HEADER's DATA offsets")
        return None
