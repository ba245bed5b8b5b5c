"""One dataset's DATA segment: its storage :class:`Layout` and :class:`FCSData`.

:class:`FCSData` decodes lazily: nothing is read until ``events``, ``raw`` or ``columns`` is
asked for, and ``columns`` decodes only the channels requested. :func:`gating._fcs._read.read_fcs`
builds it from the HEADER and TEXT segments.

Memory: the file is memory-mapped once (DATA is read through that mapping, and so is the
batch's content fingerprint, :meth:`FCSData.file_chunks`). List mode stores events row by row,
so reading even one column touches every page of the file; every pass this module makes over
the mapping (copying columns out, decoding integers) therefore walks it in chunks of about
``CHUNK_BYTES`` of DATA and drops each chunk's pages from the process
(``madvise(MADV_DONTNEED)``) once it is done, so the file pages mapped into the process stay
within about one chunk whatever the file's size (the page cache keeps them; re-reading is a
minor fault). :meth:`FCSData.chunk_ranges` gives callers that read the zero-copy matrix
themselves (the gating evaluator) the same chunks.

Gating reads no copy of the columns for most layouts (:meth:`FCSData.event_source`): native
float data through the mapping itself, also at the unaligned offsets most instrument and
flowio/FlowKit files have (on x86-64 and AArch64, see :data:`UNALIGNED_LOADS`); big-endian
floats and integer data (FCS 2.0/3.x, masked, rescaled through a table) as their stored bytes,
decoded by the evaluator's kernel in its pass over each event.
"""

from __future__ import annotations

import contextlib
import dataclasses
import functools
import mmap
import os
import platform
from collections.abc import Iterator, Mapping, Sequence
from pathlib import Path

import numpy as np
import pandas as pd

from gating._errors import FCSDatatypeError, FCSTruncatedError
from gating._fcs._channels import channel_lookups, find_channel
from gating._fcs._keywords import SPILL_KEYWORDS, parse_spill

__all__ = ["CHUNK_BYTES", "EventSource", "FCSData", "Layout"]

#: Bytes of DATA per chunk when the mapping is read in passes (pages dropped after each).
CHUNK_BYTES = 64 << 20


@dataclasses.dataclass(frozen=True)
class Layout:
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


#: Whether the gating kernels may read numbers at addresses that are not a multiple of their
#: size. Numba types every array as aligned, so a kernel over an unaligned view is correct
#: only where unaligned loads are defined by the hardware for every instruction the compiler
#: may emit for them: x86-64 and AArch64 (checked: same answers and same speed as an aligned
#: copy). Elsewhere such files are read byte by byte (``uint8`` rows), which needs no alignment.
UNALIGNED_LOADS = platform.machine().lower() in {"x86_64", "amd64", "aarch64", "arm64"}

#: Integer channels that need rescaling are read through a table of this many entries at most
#: when gating reads stored bytes directly (:meth:`FCSData.event_source`).
_TABLE_LIMIT = 1 << 16


@dataclasses.dataclass(frozen=True, eq=False)
class EventSource:
    """How the gating kernels read the columns a plan uses (:meth:`FCSData.event_source`).

    Attributes
    ----------
    x
        ``values`` mode (``stored is None``): a 2-D float array holding the columns, the file's
        own mapping or a decoded copy. ``stored`` mode: the DATA segment as rows of unsigned
        words, decoded by the kernel as it reads: ``uint8`` (events x bytes per event), or,
        where :data:`UNALIGNED_LOADS` and every value is 2, 4 or 8 bytes, words that wide in
        native order (events x channels); either at any alignment.
    colmap
        Channel index -> column of ``x`` (``values``) or index into the ``stored`` arrays.
    stored
        ``None``, or ``(big, floats, offsets, widths, masks, lookup, tables)``: big-endian
        storage, IEEE floats, and per used column its offset in an event (in words of ``x``),
        its bytes, its
        integer mask, whether the masked integer is replaced through its row of ``tables``
        (the preprocessed value of every stored integer).
    """

    x: np.ndarray
    colmap: dict[int, int]
    stored: tuple | None = None


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
    _layout: Layout = dataclasses.field(repr=False)
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
        return find_channel(
            channel, lookups=self._channel_lookups, names=self.names,
            markers=[str(m) for m in self.channels["marker"]], where=self.path,
        )

    @functools.cached_property
    def _channel_lookups(self) -> tuple[dict[str, int], ...]:
        return channel_lookups(self.names, [str(m) for m in self.channels["marker"]])

    # ---- DATA access -------------------------------------------------------------------
    @functools.cached_property
    def _map(self) -> tuple[mmap.mmap, int]:
        """A read-only mapping of the whole file (it holds DATA), and the offset of DATA in it.

        The whole file, not only DATA: the batch's content fingerprint reads the same mapping
        (:meth:`file_chunks`), so each file is mapped and its pages faulted in once.
        """
        start, size = self._layout.start, self._layout.n_bytes
        try:
            with open(self.path, "rb") as fh:
                length = max(os.fstat(fh.fileno()).st_size, start + size)
                mapping = mmap.mmap(fh.fileno(), length, access=mmap.ACCESS_READ)
        except ValueError as exc:  # the file is shorter than DATA (changed since it was read?)
            raise FCSTruncatedError(
                f"DATA of {size} bytes does not fit in the file ({exc})",
                path=str(self.path), segment="DATA", offset=start,
            ) from None
        return mapping, start

    @functools.cached_property
    def _bytes(self) -> np.ndarray:
        if self._layout.n_bytes == 0:
            return np.zeros(0, dtype=np.uint8)
        mapping, offset = self._map
        return np.frombuffer(mapping, dtype=np.uint8, count=self._layout.n_bytes, offset=offset)

    @functools.cached_property
    def _mapped(self) -> np.ndarray | None:
        dtype = self._layout.numpy_dtype()
        if dtype is None:
            return None
        shape = (self.n_events, self.n_channels)
        if self.n_events == 0 or self.n_channels == 0:
            return np.zeros(shape, dtype=dtype)
        mapping, offset = self._map
        # a plain read-only ndarray over the mapping (zero-copy)
        return np.frombuffer(mapping, dtype=dtype, count=shape[0] * shape[1], offset=offset).reshape(shape)

    @functools.cached_property
    def _chunk_events(self) -> int:
        """Events per chunk: about ``CHUNK_BYTES`` of DATA, a multiple of 8 events (so a
        chunk of bit-packed events starts on a byte)."""
        row_bytes = max(1, -(-self._layout.event_bits // 8))
        return max(8, CHUNK_BYTES // row_bytes // 8 * 8)

    def _release(self, lo: int, hi: int) -> None:
        """Drop the mapped pages holding events ``lo..hi`` from the process (a hint: the data
        stay in the page cache and the mapping stays valid)."""
        mapping = self.__dict__.get("_map")
        if mapping is None or hi <= lo:
            return
        mm, offset = mapping
        bits = self._layout.event_bits
        first = offset + lo * bits // 8
        last = min(len(mm), offset + -(-hi * bits // 8))
        first -= first % mmap.PAGESIZE
        _drop_pages(mm, first, last - first)

    def file_chunks(self) -> Iterator[memoryview]:
        """The whole file's bytes, read-only, in consecutive pieces of :data:`CHUNK_BYTES`,
        read through the mapping the events are read from (no second mapping, no copy).

        For content fingerprints of the exact bytes gated: each piece is a view of the
        mapping, valid until the caller moves on to the next one. When the file is larger than
        one piece, each piece's pages are dropped from the process once the caller moves on,
        as :meth:`chunk_ranges` does, so the mapped pages stay within about one piece.

        Yields
        ------
        memoryview
            Consecutive bytes of the file, from its first byte to its last.
        """
        mapping, _ = self._map
        total = len(mapping)
        with memoryview(mapping) as whole:
            for lo in range(0, total, CHUNK_BYTES):
                hi = min(lo + CHUNK_BYTES, total)
                with whole[lo:hi] as piece:
                    yield piece
                if total > CHUNK_BYTES:
                    _drop_pages(mapping, lo, hi - lo)

    def chunk_ranges(self) -> Iterator[tuple[int, int]]:
        """Consecutive event ranges ``(lo, hi)`` covering every event, about
        :data:`CHUNK_BYTES` of DATA each.

        Each range's mapped file pages are dropped from the process when the caller moves on
        to the next range (or stops), so a pass over :attr:`raw`/:attr:`events` chunk by chunk
        keeps about one chunk of the file resident however large it is.

        Yields
        ------
        tuple of int
            ``(lo, hi)``: events ``lo`` to ``hi - 1``.
        """
        step = self._chunk_events
        for lo in range(0, self.n_events, step):
            hi = min(lo + step, self.n_events)
            try:
                yield lo, hi
            finally:
                self._release(lo, hi)

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
        # The kernels index the buffer without bounds checks: prove here that every event
        # and every column lies inside it (true by construction in read_fcs; kept as a guard).
        event_bits = int(bits.sum())
        if len(self._bytes) * 8 < self.n_events * event_bits or out.shape != (self.n_events, len(cols)):
            raise FCSTruncatedError(
                f"DATA holds {len(self._bytes)} bytes, {self.n_events} events of {event_bits} "
                "bits need more",
                path=str(self.path), segment="DATA", offset=layout.start,
            )
        # the decoding kernels (Numba) load with the first decode, not with the reader: a
        # command that only reads TEXT (``phenoflow info``) never starts Numba
        from gating._fcs._kernels import decode_packed_columns, decode_uint_columns

        if layout.packed:
            bit_offsets = starts[cols].astype(np.int64)
            for lo, hi in self.chunk_ranges():  # lo is a multiple of 8: a whole byte
                decode_packed_columns(
                    self._bytes[lo * event_bits // 8:], hi - lo, event_bits, bit_offsets,
                    bits[cols], masks, out[lo:hi],
                )
            return
        widths = bits[cols] // 8
        if event_bits % 8 or bool((bits[cols] % 8).any()) or not bool((widths <= 8).all()):
            raise FCSTruncatedError(  # pragma: no cover - read_fcs routes these to the packed path
                "byte-aligned decoding of channels that are not whole bytes", path=str(self.path),
                segment="DATA", offset=layout.start,
            )
        significance = np.stack([layout.significance(int(w)) for w in widths]) if len(cols) else (
            np.zeros((0, 8), dtype=np.int64)
        )
        used = np.arange(8)[None, :] < widths[:, None]
        if bool((used & ((significance < 0) | (significance >= widths[:, None]))).any()):
            raise FCSDatatypeError(
                f"$BYTEORD {layout.order} does not fit {sorted(set(layout.bits))}-bit channels",
                path=str(self.path), segment="TEXT",
            )
        event_bytes = event_bits // 8
        byte_offsets = (starts[cols] // 8).astype(np.int64)
        widths = widths.astype(np.int64)
        for lo, hi in self.chunk_ranges():
            decode_uint_columns(
                self._bytes[lo * event_bytes:], hi - lo, event_bytes, byte_offsets, widths,
                significance, masks, out[lo:hi],
            )

    def _read_into(self, out: np.ndarray) -> None:
        if out.size == 0:
            return
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
        # Stored values are data: a signalling NaN becomes a quiet one and a value beyond
        # float32 becomes inf without a RuntimeWarning (which strict callers turn into errors).
        with np.errstate(invalid="ignore", over="ignore"):
            return self._columns(cols, dtype)

    def _columns(self, cols: np.ndarray, dtype: np.dtype) -> np.ndarray:
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
                for lo, hi in self.chunk_ranges():  # pages dropped chunk by chunk
                    out[lo:hi] = view[lo:hi] if full else view[lo:hi, cols]
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
        none of the columns rescaled; at an unaligned offset only where
        :data:`UNALIGNED_LOADS`): nothing is copied; read it chunk by chunk with
        :meth:`chunk_ranges` to keep the mapped pages bounded. Otherwise only these columns are
        decoded, to float64 (chunk by chunk, pages dropped).

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
            and (view.flags.aligned or UNALIGNED_LOADS)
            and not needs[cols].any()
        ):
            return view, {c: c for c in cols}
        return self.columns(cols, dtype=np.float64), {c: j for j, c in enumerate(cols)}

    def event_source(self, columns: Sequence[int]) -> EventSource:
        """How to read the given columns for gating, copying as little as possible.

        - Native, aligned float data with nothing to rescale: the file's own mapping.
        - Byte-aligned little- or big-endian storage at any offset (most instrument files and
          everything flowio/FlowKit write start DATA at an odd byte; big-endian floats;
          integers of 1 to 8 bytes, masked as ``$PnR`` says; rescaled integers up to 16 bits
          through a table): the DATA bytes themselves, decoded by the gating kernels in their
          first pass over each event, so no float64 copy of the columns is made.
        - Anything else (bit-packed data, mixed byte orders, rescaled floats or wide rescaled
          integers): the columns decoded to float64 chunk by chunk, as :meth:`event_matrix`.

        Every mode gives the values :meth:`columns` would give, bit for bit.

        Parameters
        ----------
        columns
            0-based channel indices.

        Returns
        -------
        EventSource
        """
        cols = [int(c) for c in dict.fromkeys(int(c) for c in columns)]
        layout = self._layout
        view = self._mapped
        needs = self._scaling["needs_scaling"].to_numpy(dtype=bool)
        if (
            layout.datatype in ("F", "D") and view is not None and view.dtype.isnative
            and (view.flags.aligned or UNALIGNED_LOADS) and not needs[cols].any()
        ):
            return EventSource(view, {c: c for c in cols})
        stored = self._stored_codec(cols)
        if stored is not None:
            row_bytes = layout.event_bits // 8
            width = layout.bits[0] // 8
            if UNALIGNED_LOADS and view is not None and width in (2, 4, 8):
                # every value is one word: rows of native words, offsets in words
                mapping, offset = self._map
                data = np.frombuffer(
                    mapping, dtype=np.dtype(f"=u{width}"), count=view.size, offset=offset
                ).reshape(view.shape)
                stored = (*stored[:2], stored[2] // width, *stored[3:])
            else:
                data = self._bytes[: self.n_events * row_bytes].reshape(self.n_events, row_bytes)
            return EventSource(data, {c: j for j, c in enumerate(cols)}, stored)
        x, colmap = self.event_matrix(cols)
        return EventSource(x, colmap)

    def _stored_codec(self, cols: list[int]) -> tuple[np.ndarray, ...] | None:
        """The per-column decoding of :class:`EventSource` ``stored`` mode, or ``None``."""
        layout = self._layout
        if layout.packed or layout.event_bits % 8 or self.n_events == 0 or not cols:
            return None
        n_order = len(layout.order)
        little = layout.order == tuple(range(n_order))
        big = layout.order == tuple(reversed(range(n_order)))
        bits = np.asarray(layout.bits, dtype=np.int64)
        starts = np.concatenate([[0], np.cumsum(bits)[:-1]]) // 8
        widths = bits[cols] // 8
        if len(self._bytes) < self.n_events * (layout.event_bits // 8):
            return None  # let the decode pass report it
        if layout.datatype == "I":
            if not bool(((widths >= 1) & (widths <= 8)).all()):
                return None
        elif not bool((widths == (4 if layout.datatype == "F" else 8)).all()):
            return None
        if not (little or big or bool((widths == 1).all())):
            return None
        scaling = self._scaling.iloc[cols]
        needs = scaling["needs_scaling"].to_numpy(dtype=bool)
        masks = scaling["mask"].to_numpy(dtype=np.uint64)
        lookup = needs.copy()
        size = 0
        if needs.any():
            if layout.datatype != "I" or int(masks[needs].max()) + 1 > _TABLE_LIMIT:
                return None
            size = int(masks[needs].max()) + 1
        tables = np.zeros((len(cols), size), dtype=np.float64)
        for j in np.flatnonzero(needs):
            n_entries = int(masks[j]) + 1
            table = np.arange(n_entries, dtype=np.float64).reshape(-1, 1)
            _rescale(table, 0, scaling.iloc[j], integer=True)
            tables[j, :n_entries] = table[:, 0]
        return (
            bool(big and not little),
            layout.datatype != "I",
            starts[cols].astype(np.int64),
            widths.astype(np.int64),
            masks if layout.datatype == "I" else np.full(len(cols), ~np.uint64(0), dtype=np.uint64),
            lookup,
            tables,
        )

    @functools.cached_property
    def spill(self) -> pd.DataFrame | None:
        """The spillover matrix (``$SPILLOVER``/``SPILL``/``$SPILL``) labelled by channel, or None."""
        for key in SPILL_KEYWORDS:
            if key in self.metadata and self.metadata[key].strip():
                return parse_spill(self.metadata[key], path=str(self.path), keyword=key)
        return None


def _drop_pages(mm: mmap.mmap, start: int, length: int) -> None:
    """Drop ``length`` mapped bytes from ``start`` (page-aligned) out of the process: a hint
    (``madvise(MADV_DONTNEED)``; the page cache keeps them), ignored where unsupported."""
    if length <= 0 or not hasattr(mm, "madvise"):
        return
    with contextlib.suppress(OSError, ValueError, AttributeError):
        mm.madvise(mmap.MADV_DONTNEED, start, length)


_LOOKUP_LIMIT = 1 << 20  # integer channels up to 20 bits are rescaled through a table


def _rescale(out: np.ndarray, j: int, ch: pd.Series, *, integer: bool) -> None:
    """Apply the FCS preprocessing (timestep, log decoding, gain) to column ``j`` in place."""
    from gating._fcs._kernels import lookup_column, rescale_column

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
