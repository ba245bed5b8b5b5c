"""Build FCS files byte by byte for tests: every version, datatype, width and byte order.

``gating.write_fcs`` writes only what phenoflow itself produces (FCS 3.1 float32); the reader
must handle everything else too, so tests assemble those files here from first principles.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import numpy as np


def pack_values(values: np.ndarray, bits: Sequence[int], byteorder: Sequence[int], datatype: str) -> bytes:
    """Encode an (events x channels) array as an FCS DATA segment.

    ``byteorder`` lists, per byte position, the 1-based significance rank (FCS ``$BYTEORD``).
    """
    n, p = values.shape
    if datatype in ("F", "D"):
        width = 4 if datatype == "F" else 8
        stored = np.ascontiguousarray(values, dtype=f"<f{width}")
        ints = stored.view(f"<u{width}").astype(np.uint64)
        bits = [8 * width] * p
    else:
        ints = values.astype(np.uint64)
    if any(b % 8 for b in bits):  # bit-packed, most significant bit first
        out = []
        for e in range(n):
            for c in range(p):
                out.append(format(int(ints[e, c]) & ((1 << bits[c]) - 1), f"0{bits[c]}b"))
        stream = "".join(out)
        stream += "0" * (-len(stream) % 8)
        return bytes(int(stream[i : i + 8], 2) for i in range(0, len(stream), 8))
    buf = bytearray()
    little = list(byteorder) == sorted(byteorder)
    big = list(byteorder) == sorted(byteorder, reverse=True)
    for e in range(n):
        for c in range(p):
            width = bits[c] // 8
            le = int(ints[e, c]).to_bytes(width, "little")
            if little or width == 1:
                buf += le
            elif big:
                buf += le[::-1]
            else:
                buf += bytes(le[rank - 1] for rank in byteorder)
    return bytes(buf)


def text_segment(keywords: Mapping[str, str], delim: bytes = b"/") -> bytes:
    parts = []
    for key, value in keywords.items():
        parts.append(key.encode("utf-8").replace(delim, delim * 2))
        parts.append(str(value).encode("utf-8").replace(delim, delim * 2))
    return delim + delim.join(parts) + delim


def build_dataset(
    values: np.ndarray,
    *,
    version: str = "FCS3.1",
    datatype: str = "I",
    bits: Sequence[int] | None = None,
    byteorder: str = "1,2,3,4",
    names: Sequence[str] | None = None,
    ranges: Sequence[float] | None = None,
    extra: Mapping[str, str] | None = None,
    delim: bytes = b"/",
    header_data_offsets: bool = True,
    text_data_offsets: bool = True,
    supplemental: Mapping[str, str] | None = None,
    nextdata: int = 0,
    data_end_fudge: int = 0,
) -> bytes:
    """One complete dataset (HEADER, TEXT, optional STEXT, DATA) as bytes."""
    n, p = values.shape
    if bits is None:
        bits = [32 if datatype == "F" else 64 if datatype == "D" else 16] * p
    order = [int(v) for v in byteorder.split(",")]
    names = list(names or [f"Ch{i}" for i in range(1, p + 1)])
    data = pack_values(values, bits, order, datatype)
    kw: dict[str, str] = {
        "$BYTEORD": byteorder,
        "$DATATYPE": datatype,
        "$MODE": "L",
        "$PAR": str(p),
        "$TOT": str(n),
        "$NEXTDATA": str(nextdata),
    }
    for i in range(p):
        kw[f"$P{i + 1}N"] = names[i]
        kw[f"$P{i + 1}B"] = str(bits[i])
        kw[f"$P{i + 1}E"] = "0,0"
        kw[f"$P{i + 1}R"] = str(ranges[i] if ranges else 2 ** bits[i])
    kw.update(extra or {})
    stext = text_segment(supplemental, delim) if supplemental else b""
    begin = end = s_begin = s_end = 0
    text_start = 58
    for _ in range(8):  # offsets live inside TEXT: iterate until they stop moving
        body = dict(kw)
        if text_data_offsets:
            body["$BEGINDATA"] = str(begin)
            body["$ENDDATA"] = str(end)
        if supplemental:
            body["$BEGINSTEXT"] = str(s_begin)
            body["$ENDSTEXT"] = str(s_end)
        text = text_segment(body, delim)
        text_end = text_start + len(text) - 1
        new = (text_end + 1, text_end + len(stext)) if supplemental else (0, 0)
        data_begin = text_end + 1 + len(stext)
        positions = (data_begin, data_begin + len(data) - 1 + data_end_fudge, *new)
        if positions == (begin, end, s_begin, s_end):
            break
        begin, end, s_begin, s_end = positions
    header = version.encode() + b"    " + b"".join(
        f"{v:>8d}".encode()
        for v in (
            text_start,
            text_end,
            begin if header_data_offsets else 0,
            end if header_data_offsets else 0,
            0,
            0,
        )
    )
    blob = header + text + stext + data
    assert len(header) == 58
    return blob


def build_file(datasets: Sequence[dict]) -> bytes:
    """Chain datasets through ``$NEXTDATA`` (each dict holds ``build_dataset`` arguments)."""
    blobs = [build_dataset(**d) for d in datasets]
    # $NEXTDATA depends on the lengths of earlier blobs; rebuild with the right offsets.
    out = b""
    for i, d in enumerate(datasets):
        if i + 1 < len(datasets):
            nxt = len(blobs[i])
            for _ in range(4):
                blob = build_dataset(**{**d, "nextdata": nxt})
                if len(blob) == nxt:
                    break
                nxt = len(blob)
            blobs[i] = blob
        out += blobs[i]
    return out
