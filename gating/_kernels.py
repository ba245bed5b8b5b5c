"""Numba kernels of the gating package: arrays and scalars in, arrays out.

FCS DATA decoding lives here; every kernel goes through the house ``njit`` policy.
"""

from __future__ import annotations

import numba
import numpy as np

from engine._numba import njit

__all__ = [
    "channel_values",
    "decode_packed_columns",
    "decode_uint_columns",
    "in_cell",
    "in_ellipsoid",
    "in_polygon",
    "lookup_column",
    "raw_bound_state",
    "rescale_column",
]


@njit(parallel=True)
def decode_uint_columns(
    buf: np.ndarray,
    n_events: int,
    event_bytes: int,
    byte_offsets: np.ndarray,
    widths: np.ndarray,
    significance: np.ndarray,
    masks: np.ndarray,
    out: np.ndarray,
) -> None:
    """Decode byte-aligned unsigned integers of any width and byte order.

    Parameters
    ----------
    buf
        The DATA segment as ``uint8`` (``n_events * event_bytes`` bytes or more).
    n_events, event_bytes
        Number of events and bytes per event.
    byte_offsets
        ``int64[k]``: first byte of each wanted column inside an event.
    widths
        ``int64[k]``: bytes per value of each column (1 to 8).
    significance
        ``int64[k, 8]``: ``significance[c, j]`` is the byte position (within the value) that
        holds the ``j``-th least significant byte of column ``c``.
    masks
        ``uint64[k]``: bit mask applied to each decoded value.
    out
        ``(n_events, k)`` output, any numeric dtype (``uint64`` for raw values, ``float64``
        for events).
    """
    k = byte_offsets.shape[0]
    for e in numba.prange(n_events):
        base = e * event_bytes
        for c in range(k):
            start = base + byte_offsets[c]
            v = np.uint64(0)
            for j in range(widths[c]):
                v |= np.uint64(buf[start + significance[c, j]]) << np.uint64(8 * j)
            out[e, c] = v & masks[c]


@njit(parallel=True)
def decode_packed_columns(
    buf: np.ndarray,
    n_events: int,
    event_bits: int,
    bit_offsets: np.ndarray,
    bit_widths: np.ndarray,
    masks: np.ndarray,
    out: np.ndarray,
) -> None:
    """Decode bit-packed unsigned integers (FCS 2.0/3.0 ``$PnB`` not a multiple of 8).

    Values are read most significant bit first from a continuous bit stream.

    Parameters
    ----------
    buf
        The DATA segment as ``uint8``.
    n_events, event_bits
        Number of events and bits per event.
    bit_offsets, bit_widths
        ``int64[k]``: first bit and width in bits of each wanted column inside an event.
    masks
        ``uint64[k]``: bit mask applied to each decoded value.
    out
        ``(n_events, k)`` output.
    """
    k = bit_offsets.shape[0]
    for e in numba.prange(n_events):
        base = e * event_bits
        for c in range(k):
            pos = base + bit_offsets[c]
            v = np.uint64(0)
            for b in range(bit_widths[c]):
                p = pos + b
                bit = (np.uint64(buf[p >> 3]) >> np.uint64(7 - (p & 7))) & np.uint64(1)
                v = (v << np.uint64(1)) | bit
            out[e, c] = v & masks[c]


@njit(parallel=True)
def rescale_column(
    out: np.ndarray, j: int, timestep: float, decades: float, full_range: float,
    log_zero: float, gain: float,
) -> None:
    """In place FCS preprocessing of column ``j``: timestep, log decoding, gain (float64 math).

    ``10**(decades * x / full_range) * log_zero`` uses the C library's ``pow`` per value, which
    is what the reference preprocessed arrays were made with (numpy's vectorised power can
    differ in the last ulp).
    """
    for i in numba.prange(out.shape[0]):
        x = np.float64(out[i, j])
        if timestep != 1.0:
            x = x * timestep
        if decades > 0:
            x = (10.0 ** (decades * x / full_range)) * log_zero
        if gain != 1.0 and gain != 0.0:
            x = x / gain
        out[i, j] = x


@njit(parallel=True)
def lookup_column(out: np.ndarray, j: int, table: np.ndarray) -> None:
    """In place ``out[:, j] = table[out[:, j]]`` for columns holding exact small integers."""
    for i in numba.prange(out.shape[0]):
        out[i, j] = table[np.int64(out[i, j])]


# ---- gating ------------------------------------------------------------------------------
@njit(parallel=True)
def channel_values(
    x: np.ndarray, rows: np.ndarray, all_rows: bool, cols: np.ndarray, coefs: np.ndarray,
    out: np.ndarray,
) -> None:
    """``out[i] = sum_k coefs[k] * x[r_i, cols[k]]`` (a compensated channel) for chosen rows.

    ``rows`` lists the event rows (ignored when ``all_rows``); an uncompensated channel is one
    column with coefficient 1, which reproduces the stored value exactly.
    """
    m = out.shape[0]
    k = cols.shape[0]
    for i in numba.prange(m):
        r = np.int64(i) if all_rows else np.int64(rows[i])
        s = 0.0
        for t in range(k):
            s += np.float64(x[r, cols[t]]) * coefs[t]
        out[i] = s


@njit(parallel=True)
def in_polygon(x: np.ndarray, y: np.ndarray, vx: np.ndarray, vy: np.ndarray, out: np.ndarray) -> None:
    """Point in polygon by crossing parity; points exactly on an edge are inside; NaN outside."""
    n = vx.shape[0]
    for i in numba.prange(x.shape[0]):
        px = x[i]
        py = y[i]
        if not (np.isfinite(px) and np.isfinite(py)):
            out[i] = False
            continue
        inside = False
        edge = False
        j = n - 1
        for k in range(n):
            x1 = vx[j]
            y1 = vy[j]
            x2 = vx[k]
            y2 = vy[k]
            j = k
            if (
                min(x1, x2) <= px <= max(x1, x2)
                and min(y1, y2) <= py <= max(y1, y2)
                and (x2 - x1) * (py - y1) == (y2 - y1) * (px - x1)
            ):
                edge = True
                break
            if (y1 > py) != (y2 > py):
                cross = x1 + (py - y1) * (x2 - x1) / (y2 - y1)
                if px < cross:
                    inside = not inside
        out[i] = edge or inside


@njit(parallel=True)
def in_ellipsoid(
    values: np.ndarray, mean: np.ndarray, precision: np.ndarray, distance_square: float,
    out: np.ndarray,
) -> None:
    """Mahalanobis distance ``(v - mean)^T precision (v - mean) <= distance_square``."""
    d = mean.shape[0]
    for i in numba.prange(values.shape[0]):
        total = 0.0
        for a in range(d):
            da = values[i, a] - mean[a]
            for b in range(d):
                total += da * precision[a, b] * (values[i, b] - mean[b])
        out[i] = total <= distance_square


@njit(parallel=True)
def in_cell(
    values: np.ndarray, splits: np.ndarray, n_splits: np.ndarray, cells: np.ndarray,
    out: np.ndarray,
) -> None:
    """Quadrant cell membership: per column, the count of split points ``<= v`` must equal
    ``cells[a]`` (``-1``: any); splits are padded rows of ``splits``; NaN is in no cell."""
    d = cells.shape[0]
    for i in numba.prange(values.shape[0]):
        ok = True
        for a in range(d):
            v = values[i, a]
            if v != v:
                ok = False
                break
            if cells[a] < 0:
                continue
            c = 0
            for s in range(n_splits[a]):
                if splits[a, s] <= v:
                    c += 1
            if c != cells[a]:
                ok = False
                break
        out[i] = ok


@njit(parallel=True)
def raw_bound_state(
    u: np.ndarray, lo: float, hi: float, band_lo: float, band_hi: float, state: np.ndarray
) -> None:
    """Classify untransformed values against raw-space bounds of a half-open range.

    ``state`` becomes 0 (surely outside), 1 (surely inside) or 2 (within ``band`` of a bound,
    or not finite: decide exactly in transformed space). Use ``-inf``/``inf`` for open sides.
    """
    for i in numba.prange(u.shape[0]):
        x = u[i]
        if not np.isfinite(x):
            state[i] = 2
            continue
        s = 1
        if x < lo - band_lo or x >= hi + band_hi:
            s = 0
        elif x <= lo + band_lo or x >= hi - band_hi:
            s = 2
        state[i] = s
