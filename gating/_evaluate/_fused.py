"""Counts of every population in one fused pass over the events (:func:`fused_counts_of`).

The plan is encoded as arrays (:class:`FusedProgram`) and evaluated by
:func:`gating._evaluate._fused_kernels.fused_counts` block by block: a block's used columns
are read from the sample's own bytes (mapped float values or stored words, decoded as read),
only the channels the gates read are compensated (one column of the unmixing per channel), on
the events of the first population whose children read one of their columns (a compensated
column is decoded once per event and block, not again for each subpopulation), and each
gate's count is accumulated per worker. No array as long
as the sample is made, so the pass costs about one read of the used columns.

It covers rectangles, polygons and Booleans on channels or ratios with no transform or a
linear, FlowJo linear, logicle, hyperlog, FlowJo biex (not interpolated) or asinh transform.
:func:`fused_program` returns ``None`` for anything else (ellipsoids, quadrants, log scales),
and :func:`gating.apply_plan` then uses the general :class:`~gating._evaluate.Evaluator`.
Both give the same counts: every value is computed with the evaluator's arithmetic.
"""

from __future__ import annotations

import dataclasses
from typing import Any

import numba
import numpy as np

from engine.runtime import small_or_parallel
from gating._evaluate._evaluator import BAND, raw_comparable
from gating._evaluate._fused_kernels import (
    G_BOOLEAN,
    G_POLYGON,
    G_RECTANGLE,
    T_ASINH,
    T_BIEX,
    T_FLOWJO_LINEAR,
    T_LINEAR,
    T_NONE,
    fused_counts,
)
from gating._plan import Channel, Plan
from gating._transforms import (
    N_PARAMS,
    Asinh,
    FlowJoBiex,
    FlowJoLinear,
    Hyperlog,
    Linear,
    Logicle,
    Transform,
)

__all__ = ["FusedProgram", "fused_counts_of", "fused_program"]

_OPS = {"and": 0, "or": 1, "not": 2}


@dataclasses.dataclass(frozen=True, eq=False)
class FusedProgram:
    """A plan as the arrays of :func:`fused_counts` (channels, features, gates), in plan order."""

    populations: tuple[str, ...]
    arrays: tuple[np.ndarray, ...]


def _transform_code(t: Transform | None) -> tuple[int, list[float], np.ndarray, np.ndarray] | None:
    """``(kind, params, biex p, biex knots)`` of a transform the kernel evaluates, or None."""
    empty_p = np.zeros(N_PARAMS)
    if t is None:
        return T_NONE, [], empty_p, np.zeros((0, 2))
    if type(t) is Linear:
        return T_LINEAR, [t.a, t.t + t.a], empty_p, np.zeros((0, 2))
    if type(t) is FlowJoLinear:
        return T_FLOWJO_LINEAR, [t.min_range, t.max_range - t.min_range], empty_p, np.zeros((0, 2))
    if type(t) is Asinh:
        return T_ASINH, list(t._constants), empty_p, np.zeros((0, 2))
    if type(t) in (Logicle, Hyperlog) or (type(t) is FlowJoBiex and not t.interpolate):
        p, knots = t._kernel  # type: ignore[attr-defined]
        return T_BIEX, [], p, knots
    return None


def fused_program(plan: Plan) -> FusedProgram | None:
    """The plan encoded for :func:`fused_counts`, or ``None`` when it holds a gate kind or a
    transform the fused kernel does not evaluate.

    Parameters
    ----------
    plan
        A compiled plan.

    Returns
    -------
    FusedProgram or None
    """
    if not plan.gates:
        return None
    features = {f.key: f for f in plan.features}
    channels: dict[Channel, int] = {}
    feat_index: dict[str, int] = {}
    f_rows: list[tuple[Any, ...]] = []

    def channel(ch: Channel) -> int:
        return channels.setdefault(ch, len(channels))

    def feature(key: str) -> int | None:
        if key in feat_index:
            return feat_index[key]
        f = features[key]
        code = _transform_code(f.transform)
        if code is None:
            return None
        num = channel(f.numerator)
        den = channel(f.denominator) if f.denominator is not None else -1
        lo, hi = f.ratio_bounds
        ratio = [*f.ratio, np.nan if lo is None else lo, np.nan if hi is None else hi]
        t = f.transform
        clamp = [-np.inf, np.inf]
        if t is not None:
            clamp = [-np.inf if t.bound_min is None else t.bound_min,
                     np.inf if t.bound_max is None else t.bound_max]
        feat_index[key] = len(f_rows)
        f_rows.append((num, den, ratio, code, clamp))
        return feat_index[key]

    index = {g.population: k for k, g in enumerate(plan.gates)}
    n_gates = len(plan.gates)
    max_dim = max([len(g.features) for g in plan.gates] + [1])
    max_vert = max([len(g.params["vertices"]) for g in plan.gates if g.kind == "polygon"] + [1])
    max_ops = max([len(g.params["operands"]) for g in plan.gates if g.kind == "boolean"] + [1])
    g_kind = np.zeros(n_gates, dtype=np.int64)
    g_parent = np.full(n_gates, -1, dtype=np.int64)
    g_feat = np.zeros((n_gates, max_dim), dtype=np.int64)
    g_ndim = np.zeros(n_gates, dtype=np.int64)
    g_rect = np.zeros((n_gates, max_dim, 8), dtype=np.float64)
    g_rawcmp = np.zeros((n_gates, max_dim), dtype=np.bool_)
    g_upper = np.zeros(n_gates, dtype=np.bool_)
    g_vert = np.zeros((n_gates, max_vert, 2), dtype=np.float64)
    g_nvert = np.zeros(n_gates, dtype=np.int64)
    g_box = np.zeros((n_gates, 4), dtype=np.float64)
    g_prefilter = np.zeros(n_gates, dtype=np.bool_)
    g_boxpoly = np.zeros(n_gates, dtype=np.bool_)  # a polygon that is its bounding box
    g_ops = np.zeros((n_gates, max_ops), dtype=np.int64)
    g_comp = np.zeros((n_gates, max_ops), dtype=np.bool_)
    g_nops = np.zeros(n_gates, dtype=np.int64)
    g_op = np.zeros(n_gates, dtype=np.int64)
    g_operand = np.zeros(n_gates, dtype=np.bool_)  # a Boolean gate's operand: keep its mask
    for k, step in enumerate(plan.gates):
        if step.parent is not None:
            if step.parent not in index or index[step.parent] >= k:
                return None
            g_parent[k] = index[step.parent]
        p = step.params
        if step.kind == "boolean":
            operands = p["operands"]
            op = p["op"]
            if op not in _OPS or not operands or any(
                ref not in index or index[ref] >= k for ref, _ in operands
            ):
                return None
            if op == "not":
                operands = operands[:1]
            g_kind[k] = G_BOOLEAN
            g_op[k] = _OPS[op]
            g_nops[k] = len(operands)
            for o, (ref, complement) in enumerate(operands):
                g_ops[k, o] = index[ref]
                g_operand[index[ref]] = True
                g_comp[k, o] = bool(complement)
            continue
        if step.kind not in ("rectangle", "polygon"):
            return None
        dims = []
        for key in step.features:
            f = feature(key)
            if f is None:
                return None
            dims.append(f)
        g_ndim[k] = len(dims)
        g_feat[k, : len(dims)] = dims
        transforms = [features[key].transform for key in step.features]
        if step.kind == "rectangle":
            g_kind[k] = G_RECTANGLE
            g_upper[k] = p.get("inclusive", "min") == "max"
            for d, ((lo, hi), t) in enumerate(zip(p["bounds"], transforms, strict=True)):
                q = g_rect[k, d]
                q[0] = -np.inf if lo is None else float(lo)
                q[1] = np.inf if hi is None else float(hi)
                q[2] = lo is not None
                q[3] = hi is not None
                if raw_comparable(t):  # as Evaluator._range: raw bounds, a band re-checked
                    assert t is not None
                    raw = t.inverse(np.array([q[0], q[1]]))
                    r_lo = -np.inf if lo is None else float(raw[0])
                    r_hi = np.inf if hi is None else float(raw[1])
                    q[4], q[5] = r_lo, r_hi
                    q[6] = BAND * (abs(r_lo) + 1.0) if np.isfinite(r_lo) else 0.0
                    q[7] = BAND * (abs(r_hi) + 1.0) if np.isfinite(r_hi) else 0.0
                    g_rawcmp[k, d] = True
            continue
        if len(dims) != 2:
            return None
        g_kind[k] = G_POLYGON
        v = np.asarray(p["vertices"], dtype=np.float64)
        g_nvert[k] = len(v)
        g_vert[k, : len(v)] = v
        g_prefilter[k] = _polygon_box(v, transforms, g_box[k])
        g_boxpoly[k] = _is_box(v)
    n_ch = max(1, len(channels))
    width = max([len(c.columns) for c in channels] + [1])
    used = sorted({col for c in channels for col in c.columns}) or [0]  # sample columns
    where = {col: q for q, col in enumerate(used)}
    ch_pos = np.zeros((n_ch, width), dtype=np.int64)  # rows of the decoded block
    ch_coefs = np.zeros((n_ch, width), dtype=np.float64)
    ch_n = np.zeros(n_ch, dtype=np.int64)
    for c, j in channels.items():
        ch_n[j] = len(c.columns)
        ch_pos[j, : len(c.columns)] = [where[col] for col in c.columns]
        ch_coefs[j, : len(c.columns)] = 1.0 if c.coefficients is None else c.coefficients
    # per population (slot 0: all events, slot k + 1: gate k): the channels its children read
    wanted: list[list[int]] = [[] for _ in range(n_gates + 1)]
    for k in range(n_gates):
        slot = int(g_parent[k]) + 1
        for d in range(int(g_ndim[k])):
            row = f_rows[int(g_feat[k, d])]
            for ch in (row[0], row[1]):
                if ch >= 0 and ch not in wanted[slot]:
                    wanted[slot].append(ch)
    # A channel an ancestor's children read is already there for every event of the population
    # (the ancestor's slot was prepared on a superset of its events, earlier in the block).
    for slot in range(n_gates, 0, -1):
        above: set[int] = set(wanted[0])
        a = int(g_parent[slot - 1])
        while a >= 0:
            above.update(wanted[a + 1])
            a = int(g_parent[a])
        wanted[slot] = [ch for ch in wanted[slot] if ch not in above]
    # Each slot also computes, on the same events, every other channel made of the columns it
    # decodes (the compensated channels of the descendants, mostly): a column is then decoded
    # once per event and block, on the first population that needs it, and every channel is
    # computed in one contiguous pass over the decoded columns instead of a decode per level.
    by_index = {j: c for c, j in channels.items()}
    extended: list[list[int]] = []
    for chs in wanted:
        cols_of = {col for ch in chs for col in by_index[ch].columns}
        extra = [j for j in range(len(channels)) if j not in chs and len(by_index[j].columns) > 1
                 and set(by_index[j].columns) <= cols_of]
        extended.append(chs + extra)
    depth = max([len(w) for w in extended] + [1])
    pre_ch = np.zeros((n_gates + 1, depth), dtype=np.int64)
    pre_nch = np.zeros(n_gates + 1, dtype=np.int64)
    pre_nwant = np.zeros(n_gates + 1, dtype=np.int64)
    pre_cols = np.zeros((n_gates + 1, len(used)), dtype=np.int64)
    pre_ncols = np.zeros(n_gates + 1, dtype=np.int64)
    for slot, chs in enumerate(extended):
        pre_ch[slot, : len(chs)] = chs
        pre_nch[slot] = len(chs)
        pre_nwant[slot] = len(wanted[slot])
        cols = sorted({where[col] for ch in chs for col in by_index[ch].columns})
        pre_cols[slot, : len(cols)] = cols
        pre_ncols[slot] = len(cols)
    n_f = max(1, len(f_rows))
    n_knots = max([r[3][3].shape[0] for r in f_rows] + [1])
    f_num = np.zeros(n_f, dtype=np.int64)
    f_den = np.full(n_f, -1, dtype=np.int64)
    f_ratio = np.zeros((n_f, 5), dtype=np.float64)
    f_kind = np.zeros(n_f, dtype=np.int64)
    f_par = np.zeros((n_f, 4), dtype=np.float64)
    f_clamp = np.zeros((n_f, 2), dtype=np.float64)
    f_p = np.zeros((n_f, N_PARAMS), dtype=np.float64)
    f_knots = np.zeros((n_f, n_knots, 2), dtype=np.float64)
    for j, (num, den, ratio, (kind, par, bp, knots), clamp) in enumerate(f_rows):
        f_num[j], f_den[j], f_kind[j] = num, den, kind
        f_ratio[j] = ratio
        f_par[j, : len(par)] = par
        f_clamp[j] = clamp
        f_p[j] = bp
        f_knots[j, : len(knots)] = knots
    arrays = (
        np.asarray(used, dtype=np.int64), ch_pos, ch_coefs, ch_n, pre_ch, pre_nch, pre_nwant,
        pre_cols, pre_ncols, f_num, f_den, f_ratio, f_kind, f_par, f_clamp, f_p, f_knots,
        g_kind, g_parent, g_feat, g_ndim, g_rect, g_rawcmp, g_upper, g_vert, g_nvert, g_box,
        g_prefilter, g_boxpoly, g_ops, g_comp, g_nops, g_op, g_operand,
    )
    return FusedProgram(tuple(g.population for g in plan.gates), arrays)


def _is_box(v: np.ndarray) -> bool:
    """Whether the polygon ``v`` is an axis-aligned rectangle of positive finite sides, its
    corners in order: then :func:`gating._evaluate._kernels.polygon_rule` holds exactly the points of its closed
    bounding box (a side point is on an edge; an inner point's ray crosses the right side only,
    at ``x1 + (y - y1) * 0 / (y2 - y1) == x1``), so the kernel need not run the rule."""
    if v.shape != (4, 2) or not np.isfinite(v).all():
        return False
    xs, ys = np.unique(v[:, 0]), np.unique(v[:, 1])
    if len(xs) != 2 or len(ys) != 2:
        return False
    corners = {(float(a), float(b)) for a in xs for b in ys}
    if {(float(a), float(b)) for a, b in v} != corners:
        return False
    for e in range(4):
        (x1, y1), (x2, y2) = v[e - 1], v[e]
        if (x1 == x2) == (y1 == y2):  # a diagonal (or a repeated corner)
            return False
    return True


def _polygon_box(v: np.ndarray, transforms: list[Transform | None], out: np.ndarray) -> bool:
    """Fill ``out`` with a raw-space box (``x_lo, x_hi, y_lo, y_hi``) outside which no event
    can be inside the polygon, as :meth:`Evaluator._box_candidates` does; ``False`` when no
    such box helps (cheap or non-invertible transforms)."""
    if all(t is None or isinstance(t, (Linear, FlowJoLinear)) for t in transforms):
        return False
    lo, hi = v.min(axis=0), v.max(axis=0)
    if not np.isfinite([*lo, *hi]).all():
        return False
    for a, t in enumerate(transforms):
        if t is None:
            out[2 * a], out[2 * a + 1] = lo[a], hi[a]
        elif raw_comparable(t):
            low, high = (float(r) for r in t.inverse(np.array([lo[a], hi[a]])))
            out[2 * a] = low - BAND * (abs(low) + 1.0)
            out[2 * a + 1] = high + BAND * (abs(high) + 1.0)
        else:
            return False
    return True


def fused_counts_of(plan: Plan, sample: Any, program: FusedProgram) -> dict[str | None, int]:
    """Every population's count (and ``None``: all events) by one fused pass over ``sample``.

    Call inside :func:`engine.runtime.thread_limit`: the pass uses that many workers.

    Parameters
    ----------
    plan
        The compiled plan (checked to fit the sample by the caller).
    sample
        An :class:`~gating.FCSData` or in-memory sample.
    program
        :func:`fused_program` of ``plan``.

    Returns
    -------
    dict
        Population id -> count.
    """
    n = sample.n_events
    counts = np.zeros(len(program.populations), dtype=np.int64)
    if n:
        source = sample.event_source(plan.columns)
        used, *rest = program.arrays
        colmap = np.zeros(max(max(source.colmap), int(used.max())) + 1, dtype=np.int64)
        for c, j in source.colmap.items():
            colmap[c] = j
        if source.stored is None:
            codec: tuple[Any, ...] = (False, False, False, *(np.zeros(1, dtype=dt) for dt in (
                np.int64, np.int64, np.uint64, np.bool_)), np.zeros((1, 1)))
        else:
            big, floats, offsets, widths, masks, lookup, tables = source.stored
            codec = (True, bool(big), bool(floats), offsets, widths, masks, lookup, tables)
        args = (source.x, *codec, colmap[used], *rest)
        kernel = small_or_parallel(fused_counts, n)
        workers = numba.get_num_threads() if kernel is fused_counts else 1
        if n <= sample._chunk_events:
            kernel(*args, 0, n, workers, counts)
        else:
            for lo, hi in sample.chunk_ranges():  # each chunk's pages dropped once read
                kernel(*args, lo, hi, workers, counts)
    out: dict[str | None, int] = {None: n}
    out.update(zip(program.populations, (int(c) for c in counts), strict=True))
    return out
