"""FCS HEADER and TEXT segments: offsets, keyword parsing, dataset chains.

Pure Python over small byte strings; the DATA segment is never touched here.
"""

from __future__ import annotations

import dataclasses
import math
import os
import re
import stat
from collections.abc import Mapping

from gating._errors import FCSFormatError, FCSKeywordError, FCSTruncatedError

__all__ = [
    "Header",
    "dataset_chain",
    "dataset_offsets",
    "file_size_of",
    "keyword_int",
    "parse_keywords",
    "read_header",
    "read_text",
]

HEADER_BYTES = 58
VERSIONS = ("FCS2.0", "FCS3.0", "FCS3.1", "FCS3.2")


@dataclasses.dataclass(frozen=True)
class Header:
    """The fixed-width HEADER of one dataset; offsets are relative to ``base``."""

    version: str
    base: int
    text: tuple[int, int]
    data: tuple[int, int]
    analysis: tuple[int, int]


def read_header(fh, *, base: int, file_size: int, path: str) -> Header:
    """Parse the 58-byte HEADER of the dataset starting at ``base``.

    Parameters
    ----------
    fh
        A binary file object.
    base
        Absolute byte offset of the dataset.
    file_size
        Size of the file in bytes.
    path
        File name for error messages.

    Returns
    -------
    Header
        The parsed header.
    """
    if base + HEADER_BYTES > file_size:
        raise FCSTruncatedError(
            f"file ends after {file_size - base} bytes, a HEADER needs {HEADER_BYTES}",
            path=path,
            segment="HEADER",
            offset=base,
        )
    fh.seek(base)
    raw = fh.read(HEADER_BYTES)
    version = raw[:6].decode("latin-1")
    if version not in VERSIONS:
        raise FCSFormatError(
            f"not an FCS file: HEADER starts with {raw[:6]!r}, expected one of {VERSIONS}",
            path=path,
            segment="HEADER",
            offset=base,
        )
    fields = []
    for i in range(6):
        chunk = raw[10 + 8 * i : 18 + 8 * i].decode("latin-1").strip()
        if chunk == "":
            fields.append(0)
            continue
        if not (chunk.isascii() and chunk.isdigit()):  # str.isdigit() also accepts '²'
            raise FCSFormatError(
                f"HEADER offset field {i + 1} is not a number: {chunk!r}",
                path=path,
                segment="HEADER",
                offset=base + 10 + 8 * i,
            )
        fields.append(int(chunk))
    return Header(
        version=version,
        base=base,
        text=(fields[0], fields[1]),
        data=(fields[2], fields[3]),
        analysis=(fields[4], fields[5]),
    )


def read_text(fh, *, base: int, start: int, end: int, file_size: int, path: str, segment: str):
    """Read and parse a TEXT (or supplemental TEXT) segment into a keyword dict.

    Parameters
    ----------
    fh
        A binary file object.
    base
        Absolute offset of the dataset.
    start, end
        Segment offsets relative to ``base`` (``end`` inclusive).
    file_size
        File size in bytes.
    path, segment
        For error messages.

    Returns
    -------
    dict[str, str]
        Upper-cased keywords to values.
    """
    if end < start or start < 0:
        raise FCSFormatError(
            f"{segment} segment offsets are inverted ({start}..{end})",
            path=path,
            segment=segment,
            offset=base + start,
        )
    if base + end >= file_size:
        raise FCSTruncatedError(
            f"{segment} segment ends at byte {base + end} but the file has {file_size} bytes",
            path=path,
            segment=segment,
            offset=base + start,
        )
    fh.seek(base + start)
    return parse_keywords(fh.read(end - start + 1), path=path, segment=segment, offset=base + start)


def _decode(value: bytes) -> str:
    try:
        return value.decode("utf-8")
    except UnicodeDecodeError:
        return value.decode("latin-1")


def _tokens(body: bytes, delim: bytes) -> list[bytes]:
    """Keywords and values of a TEXT segment (after its first delimiter), in order.

    The segment alternates text and runs of delimiters. A keyword never holds the delimiter,
    so a run after a keyword is one separator, then escaped delimiters (doubled) that begin
    the value; an even run there is a separator, a value made only of delimiters (empty when
    the run is two: the ``key//next`` of older writers) and another separator. Inside a value
    an even run is escaped delimiters and an odd run ends the value (its extra delimiters
    ending the value first).
    """
    tokens: list[bytes] = []
    current: list[bytes] = []
    in_key = True
    pos = 0
    for found in re.finditer(re.escape(delim) + b"+", body):  # runs found at C speed
        current.append(body[pos : found.start()])
        run = found.end() - found.start()
        if in_key:
            tokens.append(b"".join(current))
            if run % 2:  # separator, then (run - 1) / 2 escaped delimiters opening the value
                current = [delim * ((run - 1) // 2)]
                in_key = False
            else:  # separator, a value of (run - 2) / 2 delimiters, separator
                tokens.append(delim * ((run - 2) // 2))
                current = []
        elif run % 2:  # the value ends (after (run - 1) / 2 escaped delimiters)
            current.append(delim * ((run - 1) // 2))
            tokens.append(b"".join(current))
            current = []
            in_key = True
        else:
            current.append(delim * (run // 2))
        pos = found.end()
    current.append(body[pos:])
    last = b"".join(current)
    if last.strip(b" \x00\r\n") != b"":
        tokens.append(last)  # a last field without its closing delimiter
    return tokens


def parse_keywords(buf: bytes, *, path: str, segment: str, offset: int) -> dict[str, str]:
    """Split a TEXT segment into keywords, honouring doubled (escaped) delimiters.

    Parameters
    ----------
    buf
        The segment bytes; the first byte is the delimiter.
    path, segment, offset
        For error messages.

    Returns
    -------
    dict[str, str]
        Upper-cased keywords to values (UTF-8, falling back to Latin-1 per value); the first
        of repeated keywords is kept.
    """
    if len(buf) < 2:
        raise FCSFormatError("TEXT segment is empty", path=path, segment=segment, offset=offset)
    delim = buf[:1]
    if delim in (b" ", b"\x00") or delim.isalnum():
        raise FCSFormatError(
            f"invalid TEXT delimiter {delim!r}", path=path, segment=segment, offset=offset
        )
    body = buf[1:]
    if delim * 2 not in body and buf.isascii():
        # the common case: no escaped delimiter, plain ASCII. The fields are what lies
        # between single delimiters (as _tokens splits them), already decoded.
        fields = body.decode("ascii").split(delim.decode("ascii"))
        if not fields[-1].strip(" \x00\r\n"):
            fields.pop()  # nothing after the closing delimiter
        if len(fields) % 2 == 0:  # (else the general path reports the odd field)
            found: dict[str, str] = {}
            for key, value in zip(fields[::2], fields[1::2], strict=True):
                name = key.strip().upper()
                if not name:
                    raise FCSFormatError("empty keyword in TEXT", path=path, segment=segment,
                                         offset=offset)
                found.setdefault(name, value)
            return found
    tokens = _tokens(body, delim)
    if len(tokens) % 2:
        raise FCSFormatError(
            f"TEXT has an odd number of fields ({len(tokens)}): a keyword without a value "
            f"near {_decode(tokens[-1])[:40]!r}",
            path=path,
            segment=segment,
            offset=offset,
        )
    out: dict[str, str] = {}
    for key, value in zip(tokens[::2], tokens[1::2], strict=True):
        name = _decode(key).strip().upper()
        if not name:
            raise FCSFormatError("empty keyword in TEXT", path=path, segment=segment, offset=offset)
        out.setdefault(name, _decode(value))
    return out


def keyword_int(
    keywords: Mapping[str, str], name: str, *, path: str, segment: str = "TEXT"
) -> int | None:
    """An integer keyword, ``None`` when absent or blank; a typed error when not a number."""
    value = keywords.get(name)
    if value is None or value.strip() == "":
        return None
    text = value.strip()
    try:
        return int(text)
    except ValueError:
        try:
            as_float = float(text)
        except ValueError:
            as_float = float("nan")
        if math.isfinite(as_float) and as_float == int(as_float):
            return int(as_float)
        raise FCSKeywordError(
            f"keyword {name} is not an integer: {value!r}", path=path, segment=segment
        ) from None


def dataset_offsets(fh, *, path: str, file_size: int) -> list[int]:
    """Absolute start offsets of every dataset chained through ``$NEXTDATA``.

    Parameters
    ----------
    fh
        A binary file object.
    path
        For error messages.
    file_size
        Size of the file.

    Returns
    -------
    list[int]
        One offset per dataset, the first being 0.
    """
    return [base for base, _, _ in dataset_chain(fh, path=path, file_size=file_size)]


def dataset_chain(fh, *, path: str, file_size: int) -> list[tuple[int, Header, dict[str, str]]]:
    """Every dataset chained through ``$NEXTDATA``: its absolute start, HEADER and TEXT
    keywords (each parsed once; :func:`dataset_offsets` keeps the starts only).

    Parameters
    ----------
    fh
        A binary file object.
    path
        For error messages.
    file_size
        Size of the file.

    Returns
    -------
    list of tuple
        ``(start, header, keywords)`` per dataset, the first starting at 0.
    """
    chain: list[tuple[int, Header, dict[str, str]]] = []
    starts = [0]
    while True:
        base = starts[-1]
        header = read_header(fh, base=base, file_size=file_size, path=path)
        keywords = read_text(
            fh,
            base=base,
            start=header.text[0],
            end=header.text[1],
            file_size=file_size,
            path=path,
            segment="TEXT",
        )
        chain.append((base, header, keywords))
        nxt = keyword_int(keywords, "$NEXTDATA", path=path) or 0
        if nxt == 0:
            return chain
        target = base + nxt
        if nxt < 0 or target in starts or target <= base or target >= file_size:
            raise FCSFormatError(
                f"$NEXTDATA={nxt} of the dataset at byte {base} points to {target}, which is "
                f"{'past the end of the file' if target >= file_size else 'not a new dataset'}",
                path=path,
                segment="TEXT",
                offset=base + header.text[0],
            )
        starts.append(target)


def file_size_of(path: str | os.PathLike[str]) -> int:
    """Size of a regular file; a typed error for directories and other non-files."""
    st = os.stat(path)
    if not stat.S_ISREG(st.st_mode):
        raise FCSFormatError("not a regular file", path=str(path), segment="HEADER", offset=0)
    return st.st_size
