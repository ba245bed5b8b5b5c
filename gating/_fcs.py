"""FCS 2.0/3.0/3.1 reader: memory-mapped DATA, typed errors, flowio-compatible preprocessing.

``read_fcs`` parses HEADER and TEXT (small) eagerly and maps the DATA segment lazily: nothing
is decoded until ``events``, ``raw`` or ``columns`` is asked for, and ``columns`` decodes only the
channels requested (the gating core's path). Float data in native byte order with nothing to
rescale is returned as a read-only view of the file mapping: no copy at all.
"""

from __future__ import annotations

import dataclasses
import functools
import logging
import math
import re
import types
import warnings
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Literal

import numpy as np
import pandas as pd

from gating._errors import (
    FCSDataLengthError,
    FCSDatatypeError,
    FCSKeywordError,
    FCSOffsetError,
    FCSTruncatedError,
    FCSWarning,
)
from gating._fcs_text import (
    dataset_offsets,
    file_size_of,
    keyword_int,
    read_header,
    read_text,
)
from gating._kernels import (
    decode_packed_columns,
    decode_uint_columns,
    lookup_column,
    rescale_column,
)

__all__ = ["FCSData", "read_fcs"]

log = logging.getLogger(__name__)

OffsetPolicy = Literal["strict", "header", "text"]
SPILL_KEYWORDS = ("$SPILLOVER", "SPILL", "$SPILL", "SPILLOVER")
_SCATTER = re.compile(r"^(fsc|ssc|fs|ss)([-_ .\s]|$)", re.IGNORECASE)


@dataclasses.dataclass(frozen=True)
class _Layout:
    """Where and how the DATA segment of one dataset is stored."""

    datatype: str  # "I", "F" or "D"
    bits: tuple[int, ...]  # $PnB per channel
    order: tuple[int, ...]  # $BYTEORD as 0-based significance ranks per byte position
    start: int  # absolute byte offset of DATA
    n_events: int
    n_bytes: int  # bytes actually used by the events

    @property
    def packed(self) -> bool:
        return any(b % 8 for b in self.bits)

    @property
    def event_bits(self) -> int:
        return sum(self.bits)

    def numpy_dtype(self) -> np.dtype | None:
        """A numpy dtype for a zero-copy view, or ``None`` when a decode pass is needed."""
        if self.packed or len(set(self.bits)) != 1:
            return None
        width = self.bits[0] // 8
        if self.datatype == "I" and width not in (1, 2, 4, 8):
            return None
        if (self.datatype == "F" and width != 4) or (self.datatype == "D" and width != 8):
            return None
        if width == 1:
            endian = "|"
        elif self.order == tuple(range(len(self.order))):
            endian = "<"
        elif self.order == tuple(reversed(range(len(self.order)))):
            endian = ">"
        else:
            return None
        kind = {"I": "u", "F": "f", "D": "f"}[self.datatype]
        return np.dtype(f"{endian}{kind}{width}")

    def significance(self, width: int) -> np.ndarray:
        """Byte position of each significance rank for a value ``width`` bytes wide."""
        sig = np.zeros(8, dtype=np.int64)
        n = len(self.order)
        if self.order == tuple(range(n)) or width == 1:
            sig[:width] = np.arange(width)
        elif self.order == tuple(reversed(range(n))):
            sig[:width] = np.arange(width)[::-1]
        else:  # an arbitrary permutation only makes sense for its own width
            for position, rank in enumerate(self.order):
                sig[rank] = position
        return sig


@dataclasses.dataclass(frozen=True, eq=False)
class FCSData:
    """One dataset of an FCS file.

    Attributes
    ----------
    path
        The file.
    dataset
        Index of this dataset in the file's ``$NEXTDATA`` chain.
    n_datasets
        Number of datasets in the file.
    version
        ``"FCS2.0"``, ``"FCS3.0"``, ``"FCS3.1"`` (or ``"FCS3.2"``).
    metadata
        Every keyword (upper-cased) and its value, primary and supplemental TEXT merged.
    channels
        One row per channel: ``number``, ``name`` ($PnN), ``marker`` ($PnS), ``range`` ($PnR),
        ``bits`` ($PnB), ``amplification`` ($PnE as written), ``decades``, ``log_zero``,
        ``gain`` ($PnG, 1 when absent), ``kind`` (``scatter``/``fluorescence``/``time``).
    n_events
        Number of events.
    warnings
        Quirks that were tolerated while reading (also issued as :class:`FCSWarning`).
    """

    path: Path
    dataset: int
    n_datasets: int
    version: str
    metadata: Mapping[str, str]
    channels: pd.DataFrame
    n_events: int
    warnings: tuple[str, ...]
    _layout: _Layout = dataclasses.field(repr=False)
    _scaling: pd.DataFrame = dataclasses.field(repr=False)
    _dtype: np.dtype = dataclasses.field(repr=False)

    @property
    def n_channels(self) -> int:
        """Number of channels (``$PAR``)."""
        return len(self.channels)

    @property
    def names(self) -> list[str]:
        """Channel names (``$PnN``) in file order."""
        return self.channels["name"].tolist()

    def channel_index(self, channel: str | int) -> int:
        """0-based column of a channel given by ``$PnN`` name, ``$PnS`` marker or index.

        Parameters
        ----------
        channel
            A ``$PnN`` name (exact, then case-insensitive), a unique ``$PnS`` marker, or an int.

        Returns
        -------
        int
            The column index.
        """
        if isinstance(channel, int | np.integer):
            if not 0 <= int(channel) < self.n_channels:
                raise KeyError(f"{self.path}: channel index {channel} out of range")
            return int(channel)
        key = str(channel)
        for lookup, probe in zip(self._channel_lookups, (key, key.lower(), key, key.lower()), strict=True):
            hit = lookup.get(probe)
            if hit is not None:
                return hit
        names = self.channels["name"]
        raise KeyError(
            f"{self.path}: no unique channel {channel!r}; channels are "
            + ", ".join(f"{n} ({m})" if m else n for n, m in zip(names, self.channels["marker"], strict=True))
        )

    @functools.cached_property
    def _channel_lookups(self) -> tuple[dict[str, int], ...]:
        """Unique ``$PnN``, lower-cased ``$PnN``, ``$PnS`` and lower-cased ``$PnS`` -> column."""

        def unique(labels: list[str]) -> dict[str, int]:
            seen: dict[str, int] = {}
            repeated: set[str] = set()
            for i, label in enumerate(labels):
                if not label:
                    continue
                if label in seen:
                    repeated.add(label)
                seen.setdefault(label, i)
            return {k: v for k, v in seen.items() if k not in repeated}

        names = [str(n) for n in self.channels["name"]]
        markers = [str(m) for m in self.channels["marker"]]
        return (
            unique(names),
            unique([n.lower() for n in names]),
            unique(markers),
            unique([m.lower() for m in markers]),
        )

    # ---- DATA access -------------------------------------------------------------------
    @functools.cached_property
    def _bytes(self) -> np.ndarray:
        if self._layout.n_bytes == 0:
            return np.zeros(0, dtype=np.uint8)
        return np.memmap(
            self.path, dtype=np.uint8, mode="r", offset=self._layout.start,
            shape=(self._layout.n_bytes,),
        )

    @functools.cached_property
    def _mapped(self) -> np.ndarray | None:
        dtype = self._layout.numpy_dtype()
        if dtype is None:
            return None
        shape = (self.n_events, self.n_channels)
        if self.n_events == 0:
            return np.zeros(shape, dtype=dtype)
        view = np.memmap(self.path, dtype=dtype, mode="r", offset=self._layout.start, shape=shape)
        return np.asarray(view)  # a plain ndarray over the mapping (still zero-copy)

    def _decode(self, cols: np.ndarray, out: np.ndarray, *, masked: bool) -> None:
        layout = self._layout
        bits = np.asarray(layout.bits, dtype=np.int64)
        all_ones = np.uint64(np.iinfo(np.uint64).max)
        masks = (
            self._scaling["mask"].to_numpy(dtype=np.uint64)[cols]
            if masked
            else np.full(len(cols), all_ones, dtype=np.uint64)
        )
        starts = np.concatenate([[0], np.cumsum(bits)[:-1]])
        if layout.packed:
            decode_packed_columns(
                self._bytes, self.n_events, int(bits.sum()), starts[cols].astype(np.int64),
                bits[cols], masks, out,
            )
            return
        widths = bits[cols] // 8
        significance = np.stack([layout.significance(int(w)) for w in widths]) if len(cols) else (
            np.zeros((0, 8), dtype=np.int64)
        )
        decode_uint_columns(
            self._bytes, self.n_events, int(bits.sum()) // 8, (starts[cols] // 8).astype(np.int64),
            widths.astype(np.int64), significance, masks, out,
        )

    def _read_into(self, out: np.ndarray) -> None:
        with open(self.path, "rb") as fh:
            fh.seek(self._layout.start)
            got = fh.readinto(memoryview(out).cast("B"))
        if got != out.nbytes:
            raise FCSTruncatedError(
                f"DATA ended after {got} of {out.nbytes} bytes (file changed while reading?)",
                path=str(self.path), segment="DATA", offset=self._layout.start,
            )

    @functools.cached_property
    def raw(self) -> np.ndarray:
        """Stored values, unscaled and unmasked (events x channels).

        A read-only memory-mapped view when the storage has one numpy dtype (uniform width,
        little or big endian); otherwise decoded once into ``uint64`` (or float for F/D).
        """
        if self._mapped is not None:
            return self._mapped
        cols = np.arange(self.n_channels)
        out = np.empty((self.n_events, self.n_channels), dtype=np.uint64)
        self._decode(cols, out, masked=False)
        if self._layout.datatype == "F":
            return out.astype(np.uint32).view(np.float32)
        if self._layout.datatype == "D":
            return out.view(np.float64)
        return out

    @functools.cached_property
    def events(self) -> np.ndarray:
        """Preprocessed events (events x channels), computed once and cached.

        Integer values are masked to the bit width of ``$PnR`` rounded up to a power of two;
        log-amplified channels become ``10**(f1*x/PnR) * f2``; other channels are divided by
        ``$PnG`` when it is set and not 1; ``Time`` is multiplied by ``$TIMESTEP``. The dtype is
        float32 for float32 files and float64 otherwise (see ``read_fcs(dtype=...)``).
        """
        return self.columns(range(self.n_channels), dtype=self._dtype)

    def columns(
        self, channels: Sequence[str | int] | range, *, dtype: np.dtype | type = np.float64
    ) -> np.ndarray:
        """Preprocessed events of selected channels only (events x len(channels)).

        Only the requested channels are decoded and rescaled, so a gating plan that uses
        six of thirty channels pays for six.

        Parameters
        ----------
        channels
            Channel names, markers or 0-based indices.
        dtype
            Output dtype (float32 or float64); scaling is always computed in float64.

        Returns
        -------
        numpy.ndarray
            A C-contiguous array, or a read-only view of the file when nothing needs
            converting.
        """
        dtype = np.dtype(dtype)
        cols = np.asarray([self.channel_index(c) for c in channels], dtype=np.int64)
        scaling = self._scaling.iloc[cols]
        needs = scaling["needs_scaling"].to_numpy(dtype=bool)
        view = self._mapped
        datatype = self._layout.datatype
        full = np.array_equal(cols, np.arange(self.n_channels))
        if datatype != "I" and view is not None:
            if full and not needs.any() and view.dtype == dtype and view.flags.aligned:
                return view  # zero-copy: native float data with nothing to rescale
            out = np.empty((self.n_events, len(cols)), dtype=dtype)
            if full and view.dtype == dtype:
                self._read_into(out)  # a plain read() is cheaper than faulting in the mapping
            else:
                out[...] = view if full else view[:, cols]
        elif datatype == "I":
            decoded = np.empty((self.n_events, len(cols)), dtype=np.float64)
            self._decode(cols, decoded, masked=True)
            out = decoded if dtype == np.float64 else decoded.astype(dtype)
        else:  # float data in an unusual byte order: decode the bits, then reinterpret
            bits = np.empty((self.n_events, len(cols)), dtype=np.uint64)
            self._decode(cols, bits, masked=False)
            stored = bits.astype(np.uint32).view(np.float32) if datatype == "F" else bits.view(
                np.float64
            )
            out = np.ascontiguousarray(stored, dtype=dtype)
        for j in np.flatnonzero(needs):
            _rescale(out, int(j), scaling.iloc[j], integer=datatype == "I")
        return out

    def event_matrix(self, columns: Sequence[int]) -> tuple[np.ndarray, dict[int, int]]:
        """A 2-D array holding (at least) the given columns, and where each one is in it.

        The file's own mapping when the stored values need no conversion (native float data,
        none of the columns rescaled): nothing is copied. Otherwise only these columns are
        decoded, to float64.

        Parameters
        ----------
        columns
            0-based channel indices.

        Returns
        -------
        tuple
            ``(array, {channel index: column of array})``.
        """
        cols = [int(c) for c in columns]
        view = self._mapped
        needs = self._scaling["needs_scaling"].to_numpy(dtype=bool)
        if (
            self._layout.datatype in ("F", "D")
            and view is not None
            and view.dtype.isnative
            and view.flags.aligned
            and not needs[cols].any()
        ):
            return view, {c: c for c in cols}
        return self.columns(cols, dtype=np.float64), {c: j for j, c in enumerate(cols)}

    @functools.cached_property
    def spill(self) -> pd.DataFrame | None:
        """The spillover matrix (``$SPILLOVER``/``SPILL``/``$SPILL``) labelled by channel, or None."""
        for key in SPILL_KEYWORDS:
            if key in self.metadata and self.metadata[key].strip():
                return parse_spill(self.metadata[key], path=str(self.path), keyword=key)
        return None


_LOOKUP_LIMIT = 1 << 20  # integer channels up to 20 bits are rescaled through a table


def _rescale(out: np.ndarray, j: int, ch: pd.Series, *, integer: bool) -> None:
    """Apply the FCS preprocessing (timestep, log decoding, gain) to column ``j`` in place."""
    args = (
        float(ch["timestep"]), float(ch["decades"]), float(ch["range"]),
        float(ch["log_zero"]), float(ch["gain"]),
    )
    size = int(ch["mask"]) + 1
    if integer and ch["decades"] > 0 and size <= _LOOKUP_LIMIT:
        # every stored value is one of `size` integers: compute each result once
        table = np.arange(size, dtype=np.float64).reshape(-1, 1)
        rescale_column(table, 0, *args)
        lookup_column(out, j, table[:, 0])
    else:
        rescale_column(out, j, *args)


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
    except (ValueError, IndexError):
        raise FCSKeywordError(
            f"{keyword} does not start with a channel count: {text[:40]!r}", path=path
        ) from None
    if n < 1 or len(parts) != 1 + n + n * n:
        raise FCSKeywordError(
            f"{keyword} declares {n} channels, so it needs {1 + n + n * n} fields, found "
            f"{len(parts)}",
            path=path,
        )
    names = parts[1 : 1 + n]
    try:
        values = np.array([float(v) for v in parts[1 + n :]], dtype=np.float64).reshape(n, n)
    except ValueError as exc:
        raise FCSKeywordError(f"{keyword} has a non-numeric value: {exc}", path=path) from None
    return pd.DataFrame(values, index=pd.Index(names), columns=pd.Index(names))


def _parse_byteorder(value: str, *, path: str) -> tuple[int, ...]:
    try:
        ranks = tuple(int(v) - 1 for v in value.replace(" ", "").split(","))
    except ValueError:
        raise FCSDatatypeError(f"$BYTEORD is not a byte order: {value!r}", path=path) from None
    if sorted(ranks) != list(range(len(ranks))) or len(ranks) not in (1, 2, 3, 4, 8):
        raise FCSDatatypeError(f"$BYTEORD is not a permutation: {value!r}", path=path)
    return ranks


def _channel_table(
    kw: Mapping[str, str], n_par: int, *, path: str, version: str, notes: list[str]
) -> tuple[pd.DataFrame, pd.DataFrame]:
    """The public channel table and the private per-channel scaling table."""
    rows = []
    scaling = []
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
                raise FCSKeywordError(f"required keyword $P{i}N is missing", path=path)
            name = f"P{i}"
        bits_text = kw.get(f"$P{i}B")
        if bits_text is None:
            raise FCSKeywordError(f"required keyword $P{i}B is missing", path=path)
        try:
            bits = int(bits_text.strip())
        except ValueError:
            raise FCSDatatypeError(
                f"$P{i}B={bits_text!r} is not a bit width (ASCII data is not supported)", path=path
            ) from None
        if not 1 <= bits <= 64:
            raise FCSDatatypeError(f"$P{i}B={bits} is outside 1..64", path=path)
        rng_text = kw.get(f"$P{i}R", "").strip()
        try:
            rng = float(rng_text) if rng_text else math.nan
        except ValueError:
            raise FCSKeywordError(f"$P{i}R is not a number: {rng_text!r}", path=path) from None
        amp = kw.get(f"$P{i}E", "0,0").strip() or "0,0"
        try:
            decades, log_zero = (float(v) for v in amp.split(",")[:2])
        except ValueError:
            raise FCSKeywordError(f"$P{i}E is not 'f1,f2': {amp!r}", path=path) from None
        if decades > 0 and log_zero == 0:
            log_zero = 1.0  # the standard's reading of an invalid 0
        gain_text = kw.get(f"$P{i}G", "").strip()
        try:
            gain = float(gain_text) if gain_text else 1.0
        except ValueError:
            raise FCSKeywordError(f"$P{i}G is not a number: {gain_text!r}", path=path) from None
        is_time = name.lower() == "time"
        kind = "time" if is_time else ("scatter" if _SCATTER.match(name) else "fluorescence")
        mask = (1 << bits) - 1
        if not math.isnan(rng) and 0 < rng < 2**bits:
            mask = (1 << (max(math.ceil(rng), 1) - 1).bit_length()) - 1
        step = timestep if is_time and not math.isnan(timestep) else 1.0
        effective_gain = 1.0 if is_time else gain  # a gain on the time channel is meaningless
        rows.append(
            {
                "number": i,
                "name": name,
                "marker": kw.get(f"$P{i}S", "").strip(),
                "range": rng,
                "bits": bits,
                "amplification": amp,
                "decades": decades,
                "log_zero": log_zero if decades > 0 else 0.0,
                "gain": gain,
                "kind": kind,
            }
        )
        scaling.append(
            {
                "mask": np.uint64(mask),
                "timestep": step,
                "decades": decades,
                "log_zero": log_zero,
                "range": rng,
                "gain": effective_gain,
                "needs_scaling": bool(
                    step != 1.0 or decades > 0 or (effective_gain not in (1.0, 0.0))
                ),
            }
        )
    return pd.DataFrame(rows), pd.DataFrame(scaling)


def _resolve_data_offsets(header, kw, *, policy: OffsetPolicy, path: str) -> tuple[int, int]:
    h_start, h_end = header.data
    t_start = keyword_int(kw, "$BEGINDATA", path=path)
    t_end = keyword_int(kw, "$ENDDATA", path=path)
    header_given = (h_start, h_end) != (0, 0)
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
        starts = dataset_offsets(fh, path=spath, file_size=size)
        if not 0 <= dataset < len(starts):
            raise IndexError(f"{spath}: dataset {dataset} requested, the file has {len(starts)}")
        base = starts[dataset]
        header = read_header(fh, base=base, file_size=size, path=spath)
        kw = read_text(
            fh, base=base, start=header.text[0], end=header.text[1], file_size=size,
            path=spath, segment="TEXT",
        )
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
        if re.fullmatch(r"\$P\d+DATATYPE", key) and kw[key].strip().upper() != datatype:
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
    order = _parse_byteorder(kw["$BYTEORD"], path=spath)
    channels, scaling = _channel_table(
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
        raise FCSDatatypeError(f"$BYTEORD={kw['$BYTEORD']!r} does not fit $DATATYPE={datatype}", path=spath)
    if len(set(order)) > 1 and any(b % 8 == 0 and b // 8 != len(order) for b in bits):
        if order not in (tuple(range(len(order))), tuple(reversed(range(len(order))))):
            raise FCSDatatypeError(
                f"$BYTEORD={kw['$BYTEORD']!r} is a permutation for {len(order)}-byte values but "
                f"channels are {sorted(set(bits))} bits wide",
                path=spath, segment="TEXT",
            )

    start, end = _resolve_data_offsets(header, kw, policy=offsets, path=spath)
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
    layout = _Layout(
        datatype=datatype, bits=bits, order=order, start=base + start, n_events=tot, n_bytes=expected
    )
    for note in notes:
        log.warning("%s: %s", spath, note)
        warnings.warn(f"{spath}: {note}", FCSWarning, stacklevel=2)
    out_dtype = np.dtype(dtype) if dtype is not None else (
        np.dtype(np.float32) if datatype == "F" else np.dtype(np.float64)
    )
    if out_dtype.kind != "f":
        raise ValueError(f"dtype must be a float dtype, got {out_dtype}")
    return FCSData(
        path=p,
        dataset=dataset,
        n_datasets=len(starts),
        version=header.version,
        metadata=types.MappingProxyType(kw),
        channels=channels,
        n_events=tot,
        warnings=tuple(notes),
        _layout=layout,
        _scaling=scaling,
        _dtype=out_dtype,
    )
