"""FCS 2.0/3.0/3.1 reader: memory-mapped DATA, typed errors, flowio-compatible preprocessing.

``read_fcs`` parses HEADER and TEXT (small) eagerly and maps the DATA segment lazily: nothing
is decoded until ``events``, ``raw`` or ``columns`` is asked for, and ``columns`` decodes only the
channels requested (the gating core's path). Float data in native byte order with nothing to
rescale is returned as a read-only view of the file mapping: no copy at all.
"""

from __future__ import annotations

import logging
import re
import types
import warnings
from pathlib import Path

import numpy as np

from gating._errors import (
    FCSDataLengthError,
    FCSDatatypeError,
    FCSKeywordError,
    FCSOffsetError,
    FCSTruncatedError,
    FCSWarning,
)
from gating._fcs._data import FCSData, Layout
from gating._fcs._keywords import SPILL_KEYWORDS as SPILL_KEYWORDS  # re-exported
from gating._fcs._keywords import (
    OffsetPolicy,
    channel_table,
    parse_byteorder,
    resolve_data_offsets,
)
from gating._fcs._keywords import parse_spill as parse_spill  # re-exported
from gating._fcs._text import (
    dataset_chain,
    file_size_of,
    keyword_int,
    read_text,
)

__all__ = ["FCSData", "read_fcs"]

log = logging.getLogger(__name__)

_CHANNEL_DATATYPE = re.compile(r"\$P\d+DATATYPE")


def read_fcs(
    path: str | Path,
    *,
    dataset: int = 0,
    offsets: OffsetPolicy = "strict",
    dtype: np.dtype | type | None = None,
) -> FCSData:
    """Read one dataset of an FCS 2.0/3.0/3.1 file, memory-mapping its DATA segment.

    Parameters
    ----------
    path
        The FCS file.
    dataset
        Which dataset of a multi-dataset file (``$NEXTDATA`` chain), 0-based.
    offsets
        ``"strict"`` raises :class:`FCSOffsetError` when HEADER and TEXT disagree about the
        DATA segment; ``"header"`` or ``"text"`` trusts one of them instead.
    dtype
        dtype of :attr:`FCSData.events`: default float32 for float32 files, float64 otherwise.

    Returns
    -------
    FCSData
        Metadata parsed, DATA mapped but not yet decoded.

    Raises
    ------
    FCSError
        A subclass naming the file, segment and offset for every kind of malformed file.
    """
    if offsets not in ("strict", "header", "text"):
        raise ValueError(f"offsets must be 'strict', 'header' or 'text', got {offsets!r}")
    p = Path(path)
    spath = str(p)
    size = file_size_of(p)
    notes: list[str] = []
    with open(p, "rb") as fh:
        chain = dataset_chain(fh, path=spath, file_size=size)  # each TEXT parsed once
        if not 0 <= dataset < len(chain):
            raise IndexError(f"{spath}: dataset {dataset} requested, the file has {len(chain)}")
        base, header, kw = chain[dataset]
        s_start = keyword_int(kw, "$BEGINSTEXT", path=spath) or 0
        s_end = keyword_int(kw, "$ENDSTEXT", path=spath) or 0
        if (s_start, s_end) != (0, 0) and (s_start, s_end) != header.text:
            extra = read_text(
                fh, base=base, start=s_start, end=s_end, file_size=size, path=spath,
                segment="STEXT",
            )
            for key, value in extra.items():
                if key in kw and kw[key] != value:
                    notes.append(f"supplemental TEXT repeats {key} with another value; kept TEXT's")
                kw.setdefault(key, value)

    for required in ("$PAR", "$DATATYPE", "$BYTEORD"):
        if not kw.get(required, "").strip():
            raise FCSKeywordError(f"required keyword {required} is missing", path=spath, segment="TEXT")
    datatype = kw["$DATATYPE"].strip().upper()
    if datatype not in ("I", "F", "D"):
        raise FCSDatatypeError(
            f"$DATATYPE={datatype!r} is not supported (I, F and D are)", path=spath, segment="TEXT"
        )
    mode = kw.get("$MODE", "L").strip().upper() or "L"
    if mode != "L":
        raise FCSDatatypeError(
            f"$MODE={mode!r} (histogram modes) is not supported; only list mode 'L'",
            path=spath, segment="TEXT",
        )
    for key in kw:
        if key.endswith("DATATYPE") and _CHANNEL_DATATYPE.fullmatch(key) and (
                kw[key].strip().upper() != datatype):
            raise FCSDatatypeError(
                f"{key}={kw[key]!r}: per-channel datatypes differing from $DATATYPE are not "
                "supported",
                path=spath, segment="TEXT",
            )
    n_par = keyword_int(kw, "$PAR", path=spath) or 0
    if n_par < 1:
        raise FCSKeywordError(f"$PAR must be at least 1, got {n_par}", path=spath, segment="TEXT")
    if n_par > 100_000:
        raise FCSKeywordError(f"$PAR={n_par} is implausibly large", path=spath, segment="TEXT")
    order = parse_byteorder(kw["$BYTEORD"], path=spath)
    channels, scaling = channel_table(
        kw, n_par, path=spath, version=header.version, notes=notes
    )
    bits = tuple(int(b) for b in channels["bits"])
    if datatype in ("F", "D"):
        want = 32 if datatype == "F" else 64
        if any(b != want for b in bits):
            notes.append(f"$PnB values {sorted(set(bits))} ignored for $DATATYPE={datatype}")
            bits = (want,) * n_par
            channels["bits"] = want
    if len(order) not in (1, 2, 4, 8) and datatype != "I":
        raise FCSDatatypeError(
            f"$BYTEORD={kw['$BYTEORD']!r} does not fit $DATATYPE={datatype}", path=spath,
            segment="TEXT",
        )
    if len(set(order)) > 1 and any(b % 8 == 0 and b // 8 != len(order) for b in bits):
        if order not in (tuple(range(len(order))), tuple(reversed(range(len(order))))):
            raise FCSDatatypeError(
                f"$BYTEORD={kw['$BYTEORD']!r} is a permutation for {len(order)}-byte values but "
                f"channels are {sorted(set(bits))} bits wide",
                path=spath, segment="TEXT",
            )

    start, end = resolve_data_offsets(header, kw, policy=offsets, path=spath, notes=notes)
    if start < 0 or end < 0:
        raise FCSOffsetError(
            f"DATA offsets are negative ({start}..{end})", path=spath, segment="DATA",
            offset=base + header.text[0],
        )
    event_bits = sum(bits)
    actual = end - start + 1 if (start, end) != (0, 0) and end >= start else 0
    tot = keyword_int(kw, "$TOT", path=spath)
    if tot is None:
        if header.version != "FCS2.0":
            raise FCSKeywordError("required keyword $TOT is missing", path=spath, segment="TEXT")
        tot = (actual * 8) // event_bits
    if tot < 0:
        raise FCSKeywordError(f"$TOT={tot} is negative", path=spath, segment="TEXT")
    expected = (tot * event_bits + 7) // 8
    if actual == expected + 1 and tot > 0:
        notes.append(
            f"DATA end offset {end} is one byte past the {expected} bytes that $TOT x event "
            "width needs (a known writer off-by-one); read the expected bytes"
        )
    elif actual != expected:
        raise FCSDataLengthError(
            f"DATA segment is {actual} bytes (bytes {start}..{end}) but $TOT={tot} events x "
            f"{event_bits} bits per event needs {expected}",
            path=spath, segment="DATA", offset=base + start,
        )
    if tot > 0 and base + start + expected > size:
        raise FCSTruncatedError(
            f"DATA needs bytes {base + start}..{base + start + expected - 1} but the file has "
            f"{size} bytes",
            path=spath, segment="DATA", offset=base + start,
        )
    layout = Layout(
        datatype=datatype, bits=bits, order=order, start=base + start, n_events=tot, n_bytes=expected
    )
    for note in notes:  # shown once, as the warning (a log record too printed it twice)
        log.debug("%s: %s", spath, note)
        warnings.warn(f"{spath}: {note}", FCSWarning, stacklevel=2)
    out_dtype = np.dtype(dtype) if dtype is not None else (
        np.dtype(np.float32) if datatype == "F" else np.dtype(np.float64)
    )
    if out_dtype.kind != "f":
        raise ValueError(f"dtype must be a float dtype, got {out_dtype}")
    return FCSData(
        path=p,
        dataset=dataset,
        n_datasets=len(chain),
        version=header.version,
        metadata=types.MappingProxyType(kw),
        channels=channels,
        n_events=tot,
        warnings=tuple(notes),
        _layout=layout,
        _scaling=scaling,
        _dtype=out_dtype,
    )
