"""The fused gating kernel: every gate of a plan in one pass over cache-sized event blocks.

Arrays and scalars in (house ``njit``); the plan is encoded as arrays by
:mod:`gating._evaluate._fused`. Each value is computed with the same arithmetic, in the same
order, as the general evaluator's kernels (:func:`channel_values`, the transforms' kernels,
:func:`in_polygon`, :func:`raw_bound_state`), so the gate decisions are identical.
"""

from __future__ import annotations

import math

import numba
import numpy as np

from engine.runtime import njit
from gating._evaluate._kernels import (
    as_float,
    as_number,
    polygon_rule,
    stored_word,
    swap,
    swap32,
)
from gating._transforms import P_SCALE, P_X1, biex_solve

__all__ = [
    "BLOCK",
    "G_BOOLEAN",
    "G_POLYGON",
    "G_RECTANGLE",
    "T_ASINH",
    "T_BIEX",
    "T_FLOWJO_LINEAR",
    "T_LINEAR",
    "T_NONE",
    "fused_counts",
]

#: Events per block: a block's rows (96 KiB for 24 float32 channels) and its scratch (the
#: decoded columns and channels, under 300 KiB for 24 channels) stay in the core's L2 cache
#: while every gate of the plan is evaluated on it.
BLOCK = 1024

T_NONE, T_LINEAR, T_FLOWJO_LINEAR, T_BIEX, T_ASINH = 0, 1, 2, 3, 4
G_RECTANGLE, G_POLYGON, G_BOOLEAN = 0, 1, 2
# columns of the per-dimension rectangle parameters
R_LO, R_HI, R_HAS_LO, R_HAS_HI, R_RAW_LO, R_RAW_HI, R_BAND_LO, R_BAND_HI = range(8)


@njit()
def _load(
    x: np.ndarray, r: int, u: int, big: bool, floats: bool, offsets: np.ndarray,
    widths: np.ndarray, masks: np.ndarray, lookup: np.ndarray, tables: np.ndarray,
) -> float:
    """The float64 value of stored column ``u`` of event ``r``, as
    :func:`channel_values_stored` decodes it (any width, byte order, mask or table)."""
    item = x.itemsize
    p = offsets[u]
    w = widths[u]
    if w == item:
        wide = np.uint64(x[r, p])
        if big:
            wide = swap(wide, w)
    else:
        wide = stored_word(x[r], p, w, item, big)
    if floats:
        return as_float(wide, w)
    return as_number(wide & masks[u], lookup[u], tables, u)


@njit()
def _transform(
    v: float, kind: int, par: np.ndarray, lo: float, hi: float, p: np.ndarray, knots: np.ndarray,
) -> float:
    """``Transform.apply`` of one value (clamped to ``[lo, hi]``), the same arithmetic."""
    if kind == T_NONE:
        return v
    if kind == T_LINEAR:
        y = (v + par[0] if par[0] != 0.0 else v) / par[1]
    elif kind == T_FLOWJO_LINEAR:
        y = (v - par[0]) / par[1]
    elif kind == T_BIEX:
        if v != v:
            return np.nan
        delta = biex_solve(abs(v), p, knots)
        y = (p[P_X1] + delta) if v >= 0.0 else (p[P_X1] - delta)
        y *= p[P_SCALE]
    else:  # T_ASINH
        y = (math.asinh(v * par[0]) + par[1]) / par[2]
    if y < lo:
        y = lo
    if y > hi:
        y = hi
    return y


@njit()
def _half_open(v: float, q: np.ndarray, upper_closed: bool) -> bool:
    """``lo <= v < hi`` (``lo < v <= hi`` when ``upper_closed``), open sides as ``_half_open``."""
    if upper_closed:
        ok = v <= q[R_HI]
        if q[R_HAS_LO] != 0.0:
            ok = ok and v > q[R_LO]
        return ok
    ok = v >= q[R_LO]
    if q[R_HAS_HI] != 0.0:
        ok = ok and v < q[R_HI]
    return ok


@njit()
def _divide(x: float, y: float) -> float:
    """``x / y`` as IEEE (NumPy) divides: ``±inf`` or NaN for ``y == 0`` where a compiled
    Python division would raise."""
    if y == 0.0:
        if x != x or x == 0.0:
            return np.nan
        return np.inf if (x > 0.0) == (math.copysign(1.0, y) > 0.0) else -np.inf
    return x / y


@njit()
def _raw_value(f: int, i: int, chval: np.ndarray, f_num: np.ndarray, f_den: np.ndarray,
               f_ratio: np.ndarray) -> float:
    """A feature's untransformed value (its channel, or the ratio of two, clamped)."""
    v = chval[f_num[f], i]
    d = f_den[f]
    if d < 0:
        return v
    r = f_ratio[f]
    v = _divide(r[0] * (v - r[1]), chval[d, i] - r[2])
    if r[3] == r[3] and v < r[3]:
        v = r[3]
    if r[4] == r[4] and v > r[4]:
        v = r[4]
    return v


@njit()
def _feature_values(
    f: int, lst: np.ndarray, m: int, chval: np.ndarray, out: np.ndarray, transformed: bool,
    f_num: np.ndarray, f_den: np.ndarray, f_ratio: np.ndarray, f_kind: np.ndarray,
    f_par: np.ndarray, f_clamp: np.ndarray, f_p: np.ndarray, f_knots: np.ndarray,
) -> None:
    """``out[j]``: feature ``f`` of listed event ``lst[j]``, untransformed or (``transformed``)
    transformed; the transform is chosen once for the list."""
    num = f_num[f]
    if f_den[f] < 0:
        for j in range(m):
            out[j] = chval[num, lst[j]]
    else:
        for j in range(m):
            out[j] = _raw_value(f, lst[j], chval, f_num, f_den, f_ratio)
    if not transformed:
        return
    kind = f_kind[f]
    lo = f_clamp[f, 0]
    hi = f_clamp[f, 1]
    if kind == T_NONE:
        return
    if kind == T_LINEAR:
        a = f_par[f, 0]
        d = f_par[f, 1]
        for j in range(m):
            y = (out[j] + a if a != 0.0 else out[j]) / d
            if y < lo:
                y = lo
            if y > hi:
                y = hi
            out[j] = y
    elif kind == T_FLOWJO_LINEAR:
        a = f_par[f, 0]
        d = f_par[f, 1]
        for j in range(m):
            y = (out[j] - a) / d
            if y < lo:
                y = lo
            if y > hi:
                y = hi
            out[j] = y
    else:
        par = f_par[f]
        p = f_p[f]
        knots = f_knots[f]
        for j in range(m):
            out[j] = _transform(out[j], kind, par, lo, hi, p, knots)


@njit()
def _decode_column(
    src: int, todo: np.ndarray, k: int, b0: int, out: np.ndarray, x: np.ndarray, stored: bool,
    big: bool, floats: bool, offsets: np.ndarray, widths: np.ndarray, masks: np.ndarray,
    lookup: np.ndarray, tables: np.ndarray,
) -> None:
    """``out[j]``: the float64 value of source column ``src`` of event ``b0 + todo[j]``, as the
    evaluator's kernels decode it (:func:`channel_values`, :func:`channel_values_stored`)."""
    if not stored:
        for j in range(k):
            out[j] = np.float64(x[b0 + todo[j], src])
        return
    p = offsets[src]
    width = widths[src]
    if width == x.itemsize and width == 4 and floats:
        for j in range(k):
            v32 = np.uint32(x[b0 + todo[j], p])
            if big:
                v32 = swap32(v32)
            out[j] = np.float64(np.uint32(v32).view(np.float32))
    elif width == x.itemsize and not floats and not lookup[src] and masks[src] >> np.uint64(63) == 0:
        mask = np.int64(masks[src])
        for j in range(k):
            word = np.uint64(x[b0 + todo[j], p])
            if big:
                word = swap(word, width)
            out[j] = np.float64(np.int64(word) & mask)
    else:
        for j in range(k):
            out[j] = _load(x, b0 + todo[j], src, big, floats, offsets, widths, masks, lookup,
                           tables)


@njit()
def _prepare(
    slot: int, lst: np.ndarray, m: int, b0: int, chval: np.ndarray, chdone: np.ndarray,
    todo: np.ndarray, rawc: np.ndarray, acc: np.ndarray, pre_ch: np.ndarray, pre_nch: np.ndarray,
    pre_nwant: np.ndarray, pre_cols: np.ndarray, pre_ncols: np.ndarray, used_src: np.ndarray,
    ch_pos: np.ndarray, ch_coefs: np.ndarray, ch_n: np.ndarray, x: np.ndarray, stored: bool,
    big: bool, floats: bool, offsets: np.ndarray, widths: np.ndarray, masks: np.ndarray,
    lookup: np.ndarray, tables: np.ndarray,
) -> None:
    """Compute the channels of a population's slot (``pre_ch[slot]``: those its children read,
    first ``pre_nwant[slot]``, then every other channel of the same columns, mostly the
    compensated channels its descendants read) on its listed events that lack one of the
    first, together: the columns they use are decoded once per event into ``rawc`` (compact,
    column-major), then each channel is a sum over columns, channels of the same columns four
    or two at a time (:func:`_sums4`). So a compensated column is decoded once per event and
    block (on the first population that needs it), not again for each descendant.

    Each event's sum starts at 0.0 and adds ``value * coefficient`` column by column in the
    plan's order, as :func:`channel_values` does (identical values); the loop over events is
    innermost, so the sums of different events run side by side.
    """
    n_c = pre_nch[slot]
    n_want = pre_nwant[slot]
    if n_c == 0:
        return
    k = 0
    for j in range(m):
        i = lst[j]
        lacks = False
        for c in range(n_want):
            if chdone[pre_ch[slot, c], i] == 0:
                lacks = True
                break
        if lacks:
            todo[k] = i
            k += 1
    if k == 0:
        return
    for c in range(pre_ncols[slot]):
        q = pre_cols[slot, c]
        _decode_column(used_src[q], todo, k, b0, rawc[q], x, stored, big, floats, offsets,
                       widths, masks, lookup, tables)
    c = 0
    while c < n_c:
        ch = pre_ch[slot, c]
        # channels made of the same columns (the compensated ones) summed together, up to 4
        # at a time: each decoded column is loaded once for them all
        g = 1
        while g < 4 and c + g < n_c and _same_columns(ch, pre_ch[slot, c + g], ch_pos, ch_n):
            g += 1
        if g == 4:
            _sums4(pre_ch[slot, c:c + 4], k, rawc, acc, ch_pos, ch_coefs, ch_n)
        elif g >= 2:
            g = 2
            _sums2(pre_ch[slot, c:c + 2], k, rawc, acc, ch_pos, ch_coefs, ch_n)
        else:
            _sums1(ch, k, rawc, acc[0], ch_pos, ch_coefs, ch_n)
        for h in range(g):
            row = chval[pre_ch[slot, c + h]]
            flag = chdone[pre_ch[slot, c + h]]
            a = acc[h]
            for j in range(k):
                row[todo[j]] = a[j]
                flag[todo[j]] = 1
        c += g


@njit()
def _same_columns(a: int, b: int, ch_pos: np.ndarray, ch_n: np.ndarray) -> bool:
    """Whether channels ``a`` and ``b`` sum the same decoded columns in the same order."""
    if ch_n[a] != ch_n[b]:
        return False
    for t in range(ch_n[a]):
        if ch_pos[a, t] != ch_pos[b, t]:
            return False
    return True


@njit()
def _sums1(ch: int, k: int, rawc: np.ndarray, a0: np.ndarray, ch_pos: np.ndarray,
           ch_coefs: np.ndarray, ch_n: np.ndarray) -> None:
    """``a0[j]``: channel ``ch`` of compact event ``j``: ``0.0`` plus ``value * coefficient``
    column by column, in the plan's order, as :func:`channel_values` sums (identical values;
    the events side by side)."""
    for j in range(k):
        a0[j] = 0.0
    for t in range(ch_n[ch]):
        col = rawc[ch_pos[ch, t]]
        w0 = ch_coefs[ch, t]
        for j in range(k):
            a0[j] += col[j] * w0


@njit()
def _sums4(chs: np.ndarray, k: int, rawc: np.ndarray, acc: np.ndarray, ch_pos: np.ndarray,
           ch_coefs: np.ndarray, ch_n: np.ndarray) -> None:
    """:func:`_sums1` of four channels ``chs`` of the same columns, into ``acc[0..3]``."""
    c0 = chs[0]
    a0, a1, a2, a3 = acc[0], acc[1], acc[2], acc[3]
    for j in range(k):
        a0[j] = 0.0
        a1[j] = 0.0
        a2[j] = 0.0
        a3[j] = 0.0
    for t in range(ch_n[c0]):
        col = rawc[ch_pos[c0, t]]
        w0 = ch_coefs[chs[0], t]
        w1 = ch_coefs[chs[1], t]
        w2 = ch_coefs[chs[2], t]
        w3 = ch_coefs[chs[3], t]
        for j in range(k):
            v = col[j]
            a0[j] += v * w0
            a1[j] += v * w1
            a2[j] += v * w2
            a3[j] += v * w3


@njit()
def _sums2(chs: np.ndarray, k: int, rawc: np.ndarray, acc: np.ndarray, ch_pos: np.ndarray,
           ch_coefs: np.ndarray, ch_n: np.ndarray) -> None:
    """:func:`_sums4` of two channels of the same columns."""
    c0 = chs[0]
    a0, a1 = acc[0], acc[1]
    for j in range(k):
        a0[j] = 0.0
        a1[j] = 0.0
    for t in range(ch_n[c0]):
        col = rawc[ch_pos[c0, t]]
        w0 = ch_coefs[chs[0], t]
        w1 = ch_coefs[chs[1], t]
        for j in range(k):
            v = col[j]
            a0[j] += v * w0
            a1[j] += v * w1


@njit(parallel=True)
def fused_counts(
    x: np.ndarray, stored: bool, big: bool, floats: bool, offsets: np.ndarray,
    widths: np.ndarray, masks: np.ndarray, lookup: np.ndarray, tables: np.ndarray,
    used_src: np.ndarray, ch_pos: np.ndarray, ch_coefs: np.ndarray, ch_n: np.ndarray,
    pre_ch: np.ndarray, pre_nch: np.ndarray, pre_nwant: np.ndarray, pre_cols: np.ndarray,
    pre_ncols: np.ndarray, f_num: np.ndarray, f_den: np.ndarray, f_ratio: np.ndarray,
    f_kind: np.ndarray, f_par: np.ndarray, f_clamp: np.ndarray, f_p: np.ndarray,
    f_knots: np.ndarray, g_kind: np.ndarray, g_parent: np.ndarray, g_feat: np.ndarray,
    g_ndim: np.ndarray,
    g_rect: np.ndarray, g_rawcmp: np.ndarray, g_upper: np.ndarray,
    g_vert: np.ndarray, g_nvert: np.ndarray, g_box: np.ndarray, g_prefilter: np.ndarray,
    g_boxpoly: np.ndarray, g_ops: np.ndarray, g_comp: np.ndarray, g_nops: np.ndarray,
    g_op: np.ndarray, g_operand: np.ndarray, start: int, stop: int, n_workers: int,
    counts: np.ndarray,
) -> None:
    """Add each population's count among events ``start .. stop - 1`` to ``counts``.

    Blocks of :data:`BLOCK` events are dealt to ``n_workers`` workers (a ``prange``, so the
    thread cap of :func:`engine.runtime.thread_limit` holds), each with its own scratch. In a
    block the gates run in plan order on their parent's events only: a list of the parent's
    events shrinks dimension by dimension, and a channel is computed for an event once per
    block (about): when the first child of a population is evaluated, every channel its children
    read, and every other channel of the same columns, is computed on the population's events
    together (:func:`_prepare`). A polygon that is an axis-aligned rectangle (``g_boxpoly``)
    keeps its closed bounding box, as the polygon rule would. No array as long as the sample
    is made.
    """
    n_gates = g_kind.shape[0]
    n_ch = ch_n.shape[0]
    n_blocks = (stop - start + BLOCK - 1) // BLOCK
    per_worker = np.zeros((n_workers, n_gates), dtype=np.int64)
    for wk in numba.prange(n_workers):
        member = np.zeros((n_gates, BLOCK), dtype=np.uint8)  # only for Boolean operands
        inside = np.empty((n_gates, BLOCK), dtype=np.int64)  # each population's events
        n_inside = np.zeros(n_gates, dtype=np.int64)
        chval = np.empty((n_ch, BLOCK), dtype=np.float64)
        chdone = np.zeros((n_ch, BLOCK), dtype=np.uint8)
        lst = np.empty(BLOCK, dtype=np.int64)
        todo = np.empty(BLOCK, dtype=np.int64)
        rawc = np.empty((used_src.shape[0], BLOCK), dtype=np.float64)
        acc = np.empty((4, BLOCK), dtype=np.float64)
        prepared = np.zeros(n_gates + 1, dtype=np.uint8)
        tx = np.empty(BLOCK, dtype=np.float64)
        ty = np.empty(BLOCK, dtype=np.float64)
        crossed = np.empty(BLOCK, dtype=np.bool_)
        on_edge = np.empty(BLOCK, dtype=np.bool_)
        for blk in range(wk, n_blocks, n_workers):
            b0 = start + blk * BLOCK
            nb = min(BLOCK, stop - b0)
            chdone[:, :nb] = 0
            prepared[:] = 0
            for g in range(n_gates):
                p = g_parent[g]
                m = 0
                if p < 0:
                    for i in range(nb):
                        lst[i] = i
                    m = nb
                else:  # the parent's events: a child never looks at the others
                    m = n_inside[p]
                    lst[:m] = inside[p, :m]
                kind = g_kind[g]
                # the channels all children of the parent read, on the parent's events
                if prepared[p + 1] == 0:
                    prepared[p + 1] = 1
                    _prepare(p + 1, lst, m, b0, chval, chdone, todo, rawc, acc, pre_ch,
                             pre_nch, pre_nwant, pre_cols, pre_ncols, used_src, ch_pos, ch_coefs,
                             ch_n, x, stored, big, floats, offsets, widths, masks, lookup, tables)
                if kind == G_BOOLEAN:
                    k = 0
                    op = g_op[g]
                    for j in range(m):
                        i = lst[j]
                        res = op == 0  # and: start true; or / not: start false
                        for o in range(g_nops[g]):
                            v = member[g_ops[g, o], i] != 0
                            if g_comp[g, o]:
                                v = not v
                            if op == 0:
                                res = res and v
                            else:
                                res = res or v
                        if op == 2:
                            res = not res
                        if res:
                            lst[k] = i
                            k += 1
                    m = k
                else:
                    for d in range(g_ndim[g]):
                        f = g_feat[g, d]
                        if kind != G_RECTANGLE:
                            continue
                        q = g_rect[g, d]
                        upper = g_upper[g]
                        raw = g_rawcmp[g, d]
                        _feature_values(f, lst, m, chval, tx, not raw, f_num, f_den, f_ratio,
                                        f_kind, f_par, f_clamp, f_p, f_knots)
                        k = 0
                        if raw:  # bounds mapped to raw values; a thin band decided exactly
                            # as raw_bound_state: surely outside, surely inside, or unsure
                            r_lo = q[R_RAW_LO] - q[R_BAND_LO]
                            r_hi = q[R_RAW_HI] + q[R_BAND_HI]
                            s_lo = q[R_RAW_LO] + q[R_BAND_LO]
                            s_hi = q[R_RAW_HI] - q[R_BAND_HI]
                            for j in range(m):
                                u = tx[j]
                                if u > s_lo and u < s_hi:  # finite here
                                    ok = True
                                elif (u < r_lo or u >= r_hi) and np.isfinite(u):
                                    ok = False
                                else:  # in a band, or not finite: in transformed space
                                    ok = _half_open(_transform(
                                        u, f_kind[f], f_par[f], f_clamp[f, 0], f_clamp[f, 1],
                                        f_p[f], f_knots[f]), q, upper)
                                if ok:
                                    lst[k] = lst[j]
                                    k += 1
                        else:
                            for j in range(m):
                                if _half_open(tx[j], q, upper):
                                    lst[k] = lst[j]
                                    k += 1
                        m = k
                    if kind == G_POLYGON:
                        fx = g_feat[g, 0]
                        fy = g_feat[g, 1]
                        if g_prefilter[g]:  # raw-space box first: few events transformed
                            box = g_box[g]
                            _feature_values(fx, lst, m, chval, tx, False, f_num, f_den, f_ratio,
                                            f_kind, f_par, f_clamp, f_p, f_knots)
                            _feature_values(fy, lst, m, chval, ty, False, f_num, f_den, f_ratio,
                                            f_kind, f_par, f_clamp, f_p, f_knots)
                            k = 0
                            for j in range(m):
                                if (tx[j] >= box[0] and tx[j] <= box[1] and ty[j] >= box[2]
                                        and ty[j] <= box[3]):
                                    lst[k] = lst[j]
                                    k += 1
                            m = k
                        _feature_values(fx, lst, m, chval, tx, True, f_num, f_den, f_ratio,
                                        f_kind, f_par, f_clamp, f_p, f_knots)
                        _feature_values(fy, lst, m, chval, ty, True, f_num, f_den, f_ratio,
                                        f_kind, f_par, f_clamp, f_p, f_knots)
                        nv = g_nvert[g]
                        vx = g_vert[g, :, 0]
                        vy = g_vert[g, :, 1]
                        x_min = vx[0]
                        x_max = vx[0]
                        y_min = vy[0]
                        y_max = vy[0]
                        for v in range(1, nv):
                            x_min = min(x_min, vx[v])
                            x_max = max(x_max, vx[v])
                            y_min = min(y_min, vy[v])
                            y_max = max(y_max, vy[v])
                        # the bounding box first (it also rejects NaN), then the polygon
                        # rule edge by edge over the events left (polygon_rule); both
                        # compactions write every event and keep it by moving k on
                        k = 0
                        for j in range(m):
                            px = tx[j]
                            py = ty[j]
                            tx[k] = px
                            ty[k] = py
                            lst[k] = lst[j]
                            k += np.int64((px >= x_min) & (px <= x_max) & (py >= y_min)
                                          & (py <= y_max))
                        m = k
                        if not g_boxpoly[g]:  # a rectangle's box is its inside: done
                            polygon_rule(tx, ty, m, vx, vy, nv, crossed, on_edge)
                            k = 0
                            for j in range(m):
                                lst[k] = lst[j]
                                k += np.int64(crossed[j] | on_edge[j])
                            m = k
                inside[g, :m] = lst[:m]
                n_inside[g] = m
                if g_operand[g]:
                    member[g, :nb] = 0
                    for j in range(m):
                        member[g, lst[j]] = 1
                per_worker[wk, g] += m
    for g in range(n_gates):
        for wk in range(n_workers):
            counts[g] += per_worker[wk, g]
