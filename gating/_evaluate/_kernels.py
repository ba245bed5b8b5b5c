"""Numba kernels of the gating evaluator: arrays and scalars in, arrays out (house ``njit``)."""

from __future__ import annotations

import numba
import numpy as np

from engine.runtime import njit

__all__ = [
    "channel_values",
    "channel_values_stored",
    "channel_values_words",
    "in_box",
    "in_ellipsoid",
    "in_polygon",
    "interval_index",
    "polygon_rule",
    "raw_bound_state",
    "rows_member",
    "scatter_mask",
    "select_rows",
]

@njit(parallel=True)
def channel_values(
    x: np.ndarray, rows: np.ndarray, all_rows: bool, cols: np.ndarray, coefs: np.ndarray,
    n_cols: np.ndarray, out: np.ndarray, start: int, stop: int,
) -> None:
    """Several (compensated) channels at once: ``out[f, i] = sum_t coefs[f, t] * x[r_i, cols[f, t]]``.

    One pass over the chosen event rows fills every requested channel, so a row is read
    from memory once however many channels need it. ``rows`` lists the rows (ignored when
    ``all_rows``); an uncompensated channel is one column with coefficient 1, which
    reproduces the stored value exactly. Only outputs ``start`` to ``stop - 1`` are filled
    (a chunk of the pass; ``0, out.shape[1]`` for all), so a caller can walk a memory-mapped
    ``x`` chunk by chunk without slicing (one compiled specialization for every use).
    """
    m = stop
    k = out.shape[0]
    # Four rows at a time: four independent accumulators hide the floating-point add
    # latency; each accumulator still sums its row in the same order (identical results).
    for b in numba.prange((stop - start + 3) // 4):
        i0 = start + 4 * b
        if i0 + 4 <= m:
            r0 = np.int64(i0) if all_rows else np.int64(rows[i0])
            r1 = np.int64(i0 + 1) if all_rows else np.int64(rows[i0 + 1])
            r2 = np.int64(i0 + 2) if all_rows else np.int64(rows[i0 + 2])
            r3 = np.int64(i0 + 3) if all_rows else np.int64(rows[i0 + 3])
            for f in range(k):
                s0 = 0.0
                s1 = 0.0
                s2 = 0.0
                s3 = 0.0
                for t in range(n_cols[f]):
                    c = cols[f, t]
                    w = coefs[f, t]
                    s0 += np.float64(x[r0, c]) * w
                    s1 += np.float64(x[r1, c]) * w
                    s2 += np.float64(x[r2, c]) * w
                    s3 += np.float64(x[r3, c]) * w
                out[f, i0] = s0
                out[f, i0 + 1] = s1
                out[f, i0 + 2] = s2
                out[f, i0 + 3] = s3
        else:
            for i in range(i0, m):
                r = np.int64(i) if all_rows else np.int64(rows[i])
                for f in range(k):
                    s = 0.0
                    for t in range(n_cols[f]):
                        s += np.float64(x[r, cols[f, t]]) * coefs[f, t]
                    out[f, i] = s


@njit(parallel=True)
def scatter_mask(rows: np.ndarray, mask: np.ndarray) -> None:
    """``mask[rows] = True`` (``mask`` zero-initialised by the caller)."""
    for i in numba.prange(rows.shape[0]):
        mask[rows[i]] = True


@njit(error_model="numpy")
def polygon_rule(
    px: np.ndarray, py: np.ndarray, m: int, vx: np.ndarray, vy: np.ndarray, n: int,
    crossed: np.ndarray, on_edge: np.ndarray,
) -> None:
    """The polygon rule (crossing parity; points exactly on an edge or a vertex inside) for the
    points ``(px[j], py[j])``, ``j < m``, inside the vertices' bounding box (callers reject the
    others, NaN included), edge by edge: ``crossed[j]`` the crossing parity, ``on_edge[j]`` whether the
    point is on an edge or a vertex (inside is ``crossed | on_edge``). With the edges outside and no
    branch on a point, the points' divisions overlap instead of each waiting on a branch
    (the polygon gates 2-4x faster on random events). NumPy's error model: an edge that does
    not straddle ``py`` may divide by zero, and that quotient is never used.
    """
    for j in range(m):
        crossed[j] = False
        on_edge[j] = False
    last = n - 1
    for k in range(n):
        x1 = vx[last]
        y1 = vy[last]
        x2 = vx[k]
        y2 = vy[k]
        last = k
        x_lo = min(x1, x2)
        x_hi = max(x1, x2)
        y_lo = min(y1, y2)
        y_hi = max(y1, y2)
        for j in range(m):
            x = px[j]
            y = py[j]
            on_edge[j] |= ((x_lo <= x) & (x <= x_hi) & (y_lo <= y) & (y <= y_hi)
                           & ((x2 - x1) * (y - y1) == (y2 - y1) * (x - x1)))
            straddles = (y1 > y) != (y2 > y)
            cross = x1 + (y - y1) * (x2 - x1) / (y2 - y1)
            crossed[j] ^= straddles & (x < cross)



#: Points handled together by :func:`in_polygon` (one block's scratch stays in cache).
POLYGON_BLOCK = 1024


@njit(parallel=True)
def in_polygon(x: np.ndarray, y: np.ndarray, vx: np.ndarray, vy: np.ndarray, out: np.ndarray) -> None:
    """Point in polygon by crossing parity; points exactly on an edge are inside; NaN outside.

    Points outside the polygon's bounding box are rejected first; the rest of each block of
    :data:`POLYGON_BLOCK` points go through :func:`polygon_rule` together (the rule the fused
    pass uses too: one implementation).
    """
    n = vx.shape[0]
    x_min = vx.min()
    x_max = vx.max()
    y_min = vy.min()
    y_max = vy.max()
    total = x.shape[0]
    n_blocks = (total + POLYGON_BLOCK - 1) // POLYGON_BLOCK
    for blk in numba.prange(n_blocks):
        lo = blk * POLYGON_BLOCK
        hi = min(total, lo + POLYGON_BLOCK)
        tx = np.empty(POLYGON_BLOCK)
        ty = np.empty(POLYGON_BLOCK)
        idx = np.empty(POLYGON_BLOCK, dtype=np.int64)
        crossed = np.empty(POLYGON_BLOCK, dtype=np.bool_)
        on_edge = np.empty(POLYGON_BLOCK, dtype=np.bool_)
        m = 0
        for i in range(lo, hi):
            px = x[i]
            py = y[i]
            out[i] = False  # outside the box, NaN included
            if px >= x_min and px <= x_max and py >= y_min and py <= y_max:
                tx[m] = px
                ty[m] = py
                idx[m] = i
                m += 1
        polygon_rule(tx, ty, m, vx, vy, n, crossed, on_edge)
        for j in range(m):
            out[idx[j]] = crossed[j] | on_edge[j]


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
def interval_index(values: np.ndarray, splits: np.ndarray, upper_closed: bool, out: np.ndarray) -> None:
    """``out[i]`` = number of ``splits`` that are ``<= values[i]`` (its half-open interval
    ``[s_k, s_k+1)``, Gating-ML), or with ``upper_closed`` the number that are ``< values[i]``
    (intervals ``(s_k, s_k+1]``, FlowJo); ``-1`` for NaN, which lies in no interval."""
    k = splits.shape[0]
    for i in numba.prange(values.shape[0]):
        v = values[i]
        if v != v:
            out[i] = -1
            continue
        c = 0
        for s in range(k):
            if splits[s] < v or (splits[s] == v and not upper_closed):
                c += 1
        out[i] = c


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


@njit(parallel=True)
def select_rows(rows: np.ndarray, all_rows: bool, inside: np.ndarray, n_chunks: int) -> np.ndarray:
    """The rows whose ``inside`` flag is set, in order (``rows`` ignored when ``all_rows``:
    the positions themselves are returned). Works on any array: ``select_rows(values,
    False, inside, k)`` is ``values[inside]``.

    A parallel compress: count per chunk, prefix-sum, then fill.
    """
    m = inside.shape[0]
    size = (m + n_chunks - 1) // n_chunks
    counts = np.zeros(n_chunks + 1, dtype=np.int64)
    for c in numba.prange(n_chunks):
        total = 0
        for i in range(c * size, min(m, (c + 1) * size)):
            if inside[i]:
                total += 1
        counts[c + 1] = total
    for c in range(n_chunks):
        counts[c + 1] += counts[c]
    out = np.empty(counts[n_chunks], dtype=rows.dtype)
    for c in numba.prange(n_chunks):
        j = counts[c]
        for i in range(c * size, min(m, (c + 1) * size)):
            if inside[i]:
                out[j] = i if all_rows else rows[i]
                j += 1
    return out


@njit()
def rows_member(rows: np.ndarray, members: np.ndarray, out: np.ndarray) -> None:
    """``out[i] = rows[i] in members`` for two sorted row lists (a linear merge)."""
    j = 0
    n_members = members.shape[0]
    for i in range(rows.shape[0]):
        r = rows[i]
        while j < n_members and members[j] < r:
            j += 1
        out[i] = j < n_members and members[j] == r


@njit(parallel=True)
def in_box(values: np.ndarray, lo: np.ndarray, hi: np.ndarray, out: np.ndarray) -> None:
    """``out[i]`` = every ``values[a][i]`` lies in the closed ``[lo[a], hi[a]]`` (NaN: no).

    ``values`` is a 2-D array with one row per dimension.
    """
    d = lo.shape[0]
    for i in numba.prange(values.shape[1]):
        ok = True
        for a in range(d):
            v = values[a, i]
            if not (v >= lo[a] and v <= hi[a]):
                ok = False
                break
        out[i] = ok


@njit()
def swap(v: np.uint64, width: int) -> np.uint64:
    """The low ``width`` bytes of ``v`` in reverse order (LLVM emits one ``bswap``)."""
    if width == 4:
        w = np.uint32(v)
        return np.uint64(
            ((w & np.uint32(0xFF)) << np.uint32(24)) | ((w & np.uint32(0xFF00)) << np.uint32(8))
            | ((w >> np.uint32(8)) & np.uint32(0xFF00)) | (w >> np.uint32(24))
        )
    if width == 2:
        h = np.uint32(v)
        return np.uint64(((h & np.uint32(0xFF)) << np.uint32(8)) | (h >> np.uint32(8)))
    out = np.uint64(0)
    for j in range(width):
        out = (out << np.uint64(8)) | ((v >> np.uint64(8 * j)) & np.uint64(0xFF))
    return out


@njit()
def swap32(v: np.uint32) -> np.uint32:
    """``v`` with its 4 bytes reversed (LLVM emits one ``bswap``)."""
    return (
        ((v & np.uint32(0xFF)) << np.uint32(24)) | ((v & np.uint32(0xFF00)) << np.uint32(8))
        | ((v >> np.uint32(8)) & np.uint32(0xFF00)) | (v >> np.uint32(24))
    )


@njit()
def stored_word(row: np.ndarray, p: int, w: int, item: int, big: bool) -> np.uint64:
    """The ``w``-byte unsigned value at ``row[p]`` (``row`` of ``item``-byte words)."""
    if w == item:  # one stored word per value: load it, swap the bytes if needed
        if big:
            return swap(np.uint64(row[p]), w)
        return np.uint64(row[p])
    out = np.uint64(0)
    if big:
        for j in range(w):
            out = (out << np.uint64(8)) | np.uint64(row[p + j])
    else:
        for j in range(w):
            out |= np.uint64(row[p + j]) << np.uint64(8 * j)
    return out


@njit()
def as_float(bits: np.uint64, w: int) -> float:
    if w == 4:
        return np.float64(np.uint32(bits).view(np.float32))
    return np.uint64(bits).view(np.float64)


@njit()
def as_number(v: np.uint64, lookup: bool, tables: np.ndarray, u: int) -> float:
    if lookup:
        return tables[u, np.int64(v)]
    if v >> np.uint64(63):
        return np.float64(v)
    return np.float64(np.int64(v))  # the fast conversion, same value below 2**63


@njit(parallel=True)
def channel_values_stored(
    data: np.ndarray, rows: np.ndarray, all_rows: bool, big: bool, floats: bool,
    offsets: np.ndarray, widths: np.ndarray, masks: np.ndarray, lookup: np.ndarray,
    tables: np.ndarray, cols: np.ndarray, coefs: np.ndarray, n_cols: np.ndarray, out: np.ndarray,
    start: int, stop: int,
) -> None:
    """:func:`channel_values` reading the stored bytes of each event directly.

    ``data`` is the DATA segment as rows of unsigned words (events x words per event), at any
    alignment: ``uint8`` for any layout, or words as wide as every value (``uint16``,
    ``uint32``, ``uint64``, native byte order). Each column ``u`` the call reads is
    ``widths[u]`` bytes at word ``offsets[u]`` of a row (``big``: big-endian); ``floats``: IEEE floats (4 or 8 bytes); otherwise unsigned
    integers masked with ``masks[u]`` and, when ``lookup[u]``, replaced by
    ``tables[u, value]`` (the preprocessed value of every stored integer). ``cols[f, t]``
    indexes these columns. A block of events is decoded once into a small float64 scratch
    (each value the float64 the decode pass, :meth:`FCSData.columns`, would produce) and
    summed in the same order as :func:`channel_values`: results are identical to it over the
    decoded matrix, without writing that matrix.
    """
    k = out.shape[0]
    n_used = offsets.shape[0]
    item = data.itemsize
    block = 256
    for b in numba.prange((stop - start + block - 1) // block):
        i0 = start + b * block
        i1 = min(stop, i0 + block)
        scratch = np.empty((i1 - i0, n_used), dtype=np.float64)
        # column by column: each column's decoding is decided once per block, not per value
        for u in range(n_used):
            p = offsets[u]
            w = widths[u]
            if w == item and w == 4 and floats:
                for i in range(i0, i1):
                    r = np.int64(i) if all_rows else np.int64(rows[i])
                    v32 = np.uint32(data[r, p])
                    if big:
                        v32 = swap32(v32)
                    scratch[i - i0, u] = np.float64(np.uint32(v32).view(np.float32))
            elif w == item and not floats and not lookup[u] and masks[u] >> np.uint64(63) == 0:
                mask = np.int64(masks[u])
                for i in range(i0, i1):
                    r = np.int64(i) if all_rows else np.int64(rows[i])
                    word = np.uint64(data[r, p])
                    if big:
                        word = swap(word, w)
                    scratch[i - i0, u] = np.float64(np.int64(word) & mask)
            else:
                for i in range(i0, i1):
                    r = np.int64(i) if all_rows else np.int64(rows[i])
                    wide = stored_word(data[r], p, w, item, big)
                    if floats:
                        scratch[i - i0, u] = as_float(wide, w)
                    else:
                        scratch[i - i0, u] = as_number(wide & masks[u], lookup[u], tables, u)
        # four rows at a time, as channel_values (independent accumulators, same order)
        i = i0
        while i + 4 <= i1:
            j = i - i0
            for f in range(k):
                s0 = 0.0
                s1 = 0.0
                s2 = 0.0
                s3 = 0.0
                for t in range(n_cols[f]):
                    c = cols[f, t]
                    w = coefs[f, t]
                    s0 += scratch[j, c] * w
                    s1 += scratch[j + 1, c] * w
                    s2 += scratch[j + 2, c] * w
                    s3 += scratch[j + 3, c] * w
                out[f, i] = s0
                out[f, i + 1] = s1
                out[f, i + 2] = s2
                out[f, i + 3] = s3
            i += 4
        while i < i1:
            for f in range(k):
                s = 0.0
                for t in range(n_cols[f]):
                    s += scratch[i - i0, cols[f, t]] * coefs[f, t]
                out[f, i] = s
            i += 1


@njit()
def _word_value(word: np.uint64, item: int, big: bool, floats: bool, mask: np.uint64) -> float:
    """A stored word as the float64 the decode pass gives: byte-swapped when ``big``, then
    reinterpreted as an IEEE float (``floats``) or masked as an unsigned integer below 2**63."""
    v = swap(word, item) if big else word
    if floats:
        return as_float(v, item)
    return np.float64(np.int64(v & mask))


@njit(parallel=True)
def channel_values_words(
    data: np.ndarray, rows: np.ndarray, all_rows: bool, big: bool, floats: bool, mask: np.uint64,
    cols: np.ndarray, coefs: np.ndarray, n_cols: np.ndarray, out: np.ndarray, start: int, stop: int,
) -> None:
    """:func:`channel_values` over stored words decoded as they are read.

    ``data`` holds one native-order word per value (events x channels, ``uint16``/``uint32``/
    ``uint64``, any alignment): every column the call reads is stored the same way (``big``:
    big-endian; ``floats``: IEEE floats; otherwise unsigned integers masked with ``mask``,
    which is below ``2**63``, and not rescaled). Same sums in the same order as
    :func:`channel_values` over the decoded matrix (identical results), no scratch copy.
    """
    m = stop
    k = out.shape[0]
    item = data.itemsize
    for b in numba.prange((stop - start + 3) // 4):
        i0 = start + 4 * b
        if i0 + 4 <= m:
            r0 = np.int64(i0) if all_rows else np.int64(rows[i0])
            r1 = np.int64(i0 + 1) if all_rows else np.int64(rows[i0 + 1])
            r2 = np.int64(i0 + 2) if all_rows else np.int64(rows[i0 + 2])
            r3 = np.int64(i0 + 3) if all_rows else np.int64(rows[i0 + 3])
            for f in range(k):
                s0 = 0.0
                s1 = 0.0
                s2 = 0.0
                s3 = 0.0
                for t in range(n_cols[f]):
                    c = cols[f, t]
                    w = coefs[f, t]
                    s0 += _word_value(np.uint64(data[r0, c]), item, big, floats, mask) * w
                    s1 += _word_value(np.uint64(data[r1, c]), item, big, floats, mask) * w
                    s2 += _word_value(np.uint64(data[r2, c]), item, big, floats, mask) * w
                    s3 += _word_value(np.uint64(data[r3, c]), item, big, floats, mask) * w
                out[f, i0] = s0
                out[f, i0 + 1] = s1
                out[f, i0 + 2] = s2
                out[f, i0 + 3] = s3
        else:
            for i in range(i0, m):
                r = np.int64(i) if all_rows else np.int64(rows[i])
                for f in range(k):
                    s = 0.0
                    for t in range(n_cols[f]):
                        s += _word_value(np.uint64(data[r, cols[f, t]]), item, big, floats, mask) * coefs[f, t]
                    out[f, i] = s
