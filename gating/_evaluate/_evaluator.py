"""The plan evaluator: populations as sorted row lists, features cached per parent.

:class:`Evaluator` computes each population on its parent's rows only; rectangles on strictly
increasing transforms compare in raw space with an exact re-check band, polygons and
ellipsoids pre-filter by a raw-space bounding box. :func:`gating._evaluate._apply.evaluate_plan` and
:func:`gating._evaluate._apply.apply_plan` drive it.
"""

from __future__ import annotations

import numpy as np

from engine.runtime import small_or_parallel
from gating._evaluate._kernels import (
    channel_values,
    channel_values_stored,
    channel_values_words,
    in_box,
    in_ellipsoid,
    in_polygon,
    interval_index,
    raw_bound_state,
    rows_member,
    scatter_mask,
    select_rows,
)
from gating._fcs import FCSData
from gating._plan import Channel, Feature, Plan, PlanError, PlanGate
from gating._transforms import (
    Asinh,
    FlowJoBiex,
    FlowJoLinear,
    Hyperlog,
    Linear,
    Logicle,
    Transform,
)

__all__ = ["Evaluator"]

# Strictly increasing and finite everywhere (when not clamped): a bound on the transformed
# value is a bound on the raw value. Log is excluded (NaN below zero), FlowJo log too (flat).
_STRICT = (Linear, Asinh, Logicle, Hyperlog, FlowJoBiex, FlowJoLinear)
_CHEAP = (Linear, FlowJoLinear)  # as cheap to apply as a bounding-box test
BAND = 1e-7  # relative width of the raw-space band re-checked exactly in transformed space


def raw_comparable(t: Transform | None) -> bool:
    return (
        t is not None
        and isinstance(t, _STRICT)
        and t.bound_min is None
        and t.bound_max is None
        and not getattr(t, "interpolate", False)
    )


class Evaluator:
    """Populations as sorted row lists; features computed on a parent's rows, shared."""

    def __init__(self, plan: Plan, sample: FCSData) -> None:
        self.plan = plan
        self.n = sample.n_events
        self.sample = sample
        source = sample.event_source(plan.columns)
        self.x, self.colmap, self._stored = source.x, source.colmap, source.stored
        self.features = {f.key: f for f in plan.features}
        # rows of each population (None: every event); masks built only when asked for
        self._rows: dict[str | None, np.ndarray | None] = {None: None}
        self._masks: dict[str, np.ndarray] = {}
        self._channels: dict[tuple[Channel, str | None], np.ndarray] = {}
        self._values: dict[tuple[str, str | None], np.ndarray] = {}
        self._raw: dict[tuple[str, str | None], np.ndarray] = {}
        self._codes: dict[tuple[str, str | None, tuple[float, ...], str], np.ndarray] = {}
        self._inside: dict[str, np.ndarray] = {}  # a gate's flags on its parent's rows
        self._wanted: dict[str | None, list[Channel]] = {}
        parent_of = {g.population: g.parent for g in plan.gates}
        for step in plan.gates:
            wanted = self._wanted.setdefault(step.parent, [])
            for key in step.features:
                f = self.features[key]
                for ch in (f.numerator, f.denominator):
                    if ch is not None and ch not in wanted:
                        wanted.append(ch)
        # Uncompensated channels a population's children need are read one level up, in the
        # parent's pass over the same rows (same cache lines, nearly free), and handed down
        # by compressing: the population then needs no pass of its own over the events.
        self._ahead: dict[str | None, list[Channel]] = {}
        for population, wanted in self._wanted.items():
            if population is None:
                continue
            ahead = self._ahead.setdefault(parent_of[population], [])
            ahead += [c for c in wanted if c.coefficients is None and c not in ahead]

    def release(self, parent: str | None) -> None:
        """Drop the cached feature values computed on ``parent``'s rows (recomputed on use)."""
        for cache in (self._channels, self._values, self._raw):
            for key in [k for k in cache if k[1] == parent]:
                del cache[key]
        for key in [k for k in self._codes if k[1] == parent]:
            del self._codes[key]

    def rows(self, population: str | None) -> np.ndarray | None:
        return self._rows[population]

    def count(self, population: str | None) -> int:
        rows = self._rows[population]
        return self.n if rows is None else len(rows)

    def mask(self, population: str) -> np.ndarray:
        cached = self._masks.get(population)
        if cached is None:
            rows = self._rows[population]
            cached = np.ones(self.n, dtype=np.bool_) if rows is None else np.zeros(self.n, dtype=np.bool_)
            if rows is not None:
                small_or_parallel(scatter_mask, len(rows))(rows, cached)
            self._masks[population] = cached
        return cached

    def channel(self, ch: Channel, parent: str | None) -> np.ndarray:
        """A channel's values on the parent's rows; all channels the parent's children
        need are computed together in one pass over those rows."""
        cached = self._channels.get((ch, parent))
        if cached is not None:
            return cached
        todo = [
            c
            for c in (*self._wanted.get(parent, []), *self._ahead.get(parent, []))
            if (c, parent) not in self._channels
        ]
        todo = list(dict.fromkeys(todo))
        if ch not in todo:
            todo.append(ch)
        rows = self._rows[parent]
        m = self.n if rows is None else len(rows)
        width = max(len(c.columns) for c in todo)
        cols = np.zeros((len(todo), width), dtype=np.int64)
        coefs = np.zeros((len(todo), width), dtype=np.float64)
        n_cols = np.zeros(len(todo), dtype=np.int64)
        for f, c in enumerate(todo):
            n_cols[f] = len(c.columns)
            cols[f, : len(c.columns)] = [self.colmap[col] for col in c.columns]
            coefs[f, : len(c.columns)] = 1.0 if c.coefficients is None else c.coefficients
        out = np.empty((len(todo), m), dtype=np.float64)
        self._gather(rows, cols, coefs, n_cols, out)
        for f, c in enumerate(todo):
            self._channels[(c, parent)] = out[f]
        return self._channels[(ch, parent)]

    def _gather(
        self, rows: np.ndarray | None, cols: np.ndarray, coefs: np.ndarray, n_cols: np.ndarray,
        out: np.ndarray,
    ) -> None:
        """Fill ``out`` from the event matrix, chunk by chunk of events.

        The matrix is often the file's own mapping: reading it chunk by chunk lets the sample
        drop each chunk's file pages once done (see :meth:`FCSData.chunk_ranges`), so a pass
        keeps about one chunk of the file resident, not the file. Each row is summed exactly
        as in one call (results are identical).

        The matrix is read as :meth:`FCSData.event_source` says: float values (the mapping
        or a decoded copy) by :func:`channel_values`; stored words of one kind (unaligned
        native floats are values; big-endian floats, integers masked alike) by
        :func:`channel_values_words`, decoded inside the sums; any other stored layout (mixed
        widths, byte rows, integers rescaled through tables) by
        :func:`channel_values_stored`, a block of events at a time. All give the sums over the
        decoded float64 values, in the same order.
        """
        rows_arg = rows if rows is not None else np.zeros(0, dtype=np.int64)
        m = out.shape[1]
        if self._stored is None:
            def kernel(size: int, a: int, b: int) -> None:
                small_or_parallel(channel_values, size)(
                    self.x, rows_arg, rows is None, cols, coefs, n_cols, out, a, b,
                )
        else:  # the stored bytes, decoded as they are read (no float64 copy of the columns)
            big, floats, *per_column = self._stored
            used = sorted({int(cols[f, t]) for f in range(len(n_cols)) for t in range(n_cols[f])})
            _, _, masks, lookup, _ = (a[used] for a in per_column)
            if self.x.itemsize > 1 and not lookup.any() and (
                floats or (len(set(masks.tolist())) == 1 and int(masks[0]) < 1 << 63)
            ):  # one word per value, decoded alike: inline in the sums, as channel_values
                words = per_column[0][cols]
                mask = masks[0]

                def kernel(size: int, a: int, b: int) -> None:
                    small_or_parallel(channel_values_words, size)(
                        self.x, rows_arg, rows is None, big, floats, mask, words, coefs, n_cols,
                        out, a, b,
                    )
            else:  # any layout: a block of events decoded to a scratch, then summed
                where = np.zeros(len(per_column[0]), dtype=np.int64)
                where[used] = np.arange(len(used))
                local = where[cols]  # only the columns this pass reads are decoded
                codec = [a[used] for a in per_column]

                def kernel(size: int, a: int, b: int) -> None:
                    small_or_parallel(channel_values_stored, size)(
                        self.x, rows_arg, rows is None, big, floats, *codec, local, coefs,
                        n_cols, out, a, b,
                    )
        if self.n <= self.sample._chunk_events:  # one chunk: one call
            kernel(m, 0, m)
            return
        for lo, hi in self.sample.chunk_ranges():
            if rows is None:
                a, b = lo, hi
            else:  # the parent's rows (sorted) that fall in events lo..hi
                a, b = (int(i) for i in np.searchsorted(rows, (lo, hi)))
            if a < b:
                kernel(b - a, a, b)

    def untransformed(self, key: str, parent: str | None) -> np.ndarray:
        """Compensated (and ratio'd) values of a feature on the parent's rows, cached."""
        cached = self._raw.get((key, parent))
        if cached is not None:
            return cached
        f: Feature = self.features[key]
        values = self.channel(f.numerator, parent)
        if f.denominator is not None:
            a, b, c = f.ratio
            den = self.channel(f.denominator, parent)
            with np.errstate(divide="ignore", invalid="ignore"):
                values = a * (values - b) / (den - c)
            lo, hi = f.ratio_bounds
            if lo is not None:
                np.maximum(values, lo, out=values)
            if hi is not None:
                np.minimum(values, hi, out=values)
        self._raw[(key, parent)] = values
        return values

    def feature(self, key: str, parent: str | None) -> np.ndarray:
        """Transformed values of a feature on the parent's rows, cached."""
        cached = self._values.get((key, parent))
        if cached is not None:
            return cached
        values = self.untransformed(key, parent)
        transform = self.features[key].transform
        if transform is not None:
            with np.errstate(divide="ignore", invalid="ignore"):
                values = transform.apply(values)
        self._values[(key, parent)] = values
        return values

    def _range(
        self, key: str, parent: str | None, lo: float | None, hi: float | None, inclusive: str
    ) -> np.ndarray:
        """``lo <= T(u) < hi`` (``inclusive="min"``; ``lo < T(u) <= hi`` with ``"max"``)
        without transforming every value when ``T`` allows it.

        A strictly increasing transform turns the bounds into raw-space bounds; only values
        within a relative band of them (and non-finite ones) are transformed and compared
        exactly, so the answer is the transformed-space answer.
        """
        transform = self.features[key].transform
        lo_t = -np.inf if lo is None else float(lo)
        hi_t = np.inf if hi is None else float(hi)
        if (key, parent) in self._values or not raw_comparable(transform):
            return _half_open(self.feature(key, parent), lo, hi, inclusive)
        assert transform is not None
        u = self.untransformed(key, parent)
        raw = transform.inverse(np.array([lo_t, hi_t]))
        r_lo = -np.inf if lo is None else float(raw[0])
        r_hi = np.inf if hi is None else float(raw[1])
        state = np.empty(len(u), dtype=np.int8)
        band_lo = BAND * (abs(r_lo) + 1.0) if np.isfinite(r_lo) else 0.0
        band_hi = BAND * (abs(r_hi) + 1.0) if np.isfinite(r_hi) else 0.0
        small_or_parallel(raw_bound_state, len(u))(u, r_lo, r_hi, band_lo, band_hi, state)
        inside = state == 1
        unsure = np.flatnonzero(state == 2)
        if len(unsure):
            with np.errstate(divide="ignore", invalid="ignore"):
                t = transform.apply(u[unsure])
            inside[unsure] = _half_open(t, lo, hi, inclusive)
        return inside

    def evaluate(self, step: PlanGate) -> None:
        """Compute one population's rows (and, for Booleans, its mask)."""
        self._evaluate(step)
        handed = [
            c for c in self._wanted.get(step.population, []) if (c, step.parent) in self._channels
        ]
        if handed:
            inside = self._inside.pop(step.population, None)
            if inside is None:  # a Boolean population: its mask on the parent's rows
                parent_rows = self._rows[step.parent]
                mask = self.mask(step.population)
                inside = mask if parent_rows is None else mask[parent_rows]
            for c in handed:
                values = self._channels[(c, step.parent)]
                self._channels[(c, step.population)] = small_or_parallel(select_rows, len(inside))(
                    values, False, inside, _chunks(len(inside))
                )
        self._inside.pop(step.population, None)

    def _evaluate(self, step: PlanGate) -> None:
        if step.kind == "boolean":
            if step.parent is None:
                mask = self._boolean(step)
                self._masks[step.population] = mask
                self._rows[step.population] = np.flatnonzero(mask)
                return
            # within a parent: combine the operands on the parent's rows only
            rows = self._rows[step.parent]
            assert rows is not None
            terms = []
            for ref, complement in step.params["operands"]:
                member = np.empty(len(rows), dtype=np.bool_)
                ref_rows = self._rows[ref]
                if ref_rows is None:
                    member[:] = True
                else:
                    rows_member(rows, ref_rows, member)
                terms.append(~member if complement else member)
            op = step.params["op"]
            if op == "not":
                inside = ~terms[0]
            elif op == "and":
                inside = np.logical_and.reduce(terms)
            else:
                inside = np.logical_or.reduce(terms)
            self._rows[step.population] = _select(rows, inside)
            self._inside[step.population] = inside
            return
        rows = self.rows(step.parent)
        m = self.n if rows is None else len(rows)
        p = step.params
        if step.kind == "rectangle":
            inside = np.ones(m, dtype=np.bool_)
            inclusive = p.get("inclusive", "min")
            for key, (lo, hi) in zip(step.features, p["bounds"], strict=True):
                inside &= self._range(key, step.parent, lo, hi, inclusive)
            self._rows[step.population] = _select(rows, inside)
            self._inside[step.population] = inside
            return
        inside = np.empty(m, dtype=np.bool_)
        if step.kind in ("polygon", "ellipsoid"):
            self._shape(step, inside)
        elif step.kind == "quadrant":
            inside[:] = True
            for key, splits, cell in zip(step.features, p["splits"], p["cells"], strict=True):
                codes = self._intervals(key, step.parent, splits, p.get("inclusive", "min"))
                inside &= codes >= 0  # NaN is in no quadrant
                if cell >= 0:
                    inside &= codes == cell
        else:  # pragma: no cover - compile_plan emits only known kinds
            raise PlanError(f"unknown gate kind {step.kind!r}", gate=step.population)
        self._rows[step.population] = _select(rows, inside)
        self._inside[step.population] = inside

    def _shape(self, step: PlanGate, inside: np.ndarray) -> None:
        """Polygon or ellipsoid membership on the parent's rows.

        Events outside the shape's bounding box, mapped back to raw space through the
        (strictly increasing) transforms and widened by a small band, cannot be inside; only
        the others are transformed and tested.
        """
        p = step.params
        if step.kind == "polygon":
            v = np.asarray(p["vertices"], dtype=np.float64)
            box = (v.min(axis=0), v.max(axis=0))
        else:
            mean = np.asarray(p["mean"], dtype=np.float64)
            precision = np.asarray(p["precision"], dtype=np.float64)
            try:
                half = np.sqrt(float(p["distance_square"]) * np.diag(np.linalg.inv(precision)))
            except np.linalg.LinAlgError:
                half = np.full(len(mean), np.inf)
            box = (mean - half, mean + half)
        keep = self._box_candidates(step, box[0], box[1])
        if keep is None:
            columns = [self.feature(k, step.parent) for k in step.features]
        else:
            inside[:] = False
            if not len(keep):
                return
            columns = []
            for key in step.features:
                u = self.untransformed(key, step.parent)[keep]
                t = self.features[key].transform
                with np.errstate(divide="ignore", invalid="ignore"):
                    columns.append(t.apply(u) if t is not None else u)
        out = inside if keep is None else np.empty(len(keep), dtype=np.bool_)
        if step.kind == "polygon":
            small_or_parallel(in_polygon, len(out))(
                columns[0], columns[1], np.ascontiguousarray(v[:, 0]), np.ascontiguousarray(v[:, 1]), out
            )
        else:
            small_or_parallel(in_ellipsoid, len(out))(
                np.column_stack(columns), mean, precision, float(p["distance_square"]), out
            )
        if keep is not None:
            inside[keep] = out

    def _box_candidates(
        self, step: PlanGate, lo: np.ndarray, hi: np.ndarray
    ) -> np.ndarray | None:
        """Positions (on the parent's rows) inside a raw-space bounding box, or ``None`` when
        pre-filtering cannot help (values already transformed, a transform that is not
        strictly increasing, or most events inside the box anyway)."""
        transforms = [self.features[key].transform for key in step.features]
        if all(t is None or isinstance(t, _CHEAP) for t in transforms):
            return None  # transforming is no dearer than testing the box
        r_lo, r_hi, raws = [], [], []
        for key, t, b_lo, b_hi in zip(step.features, transforms, lo, hi, strict=True):
            if (key, step.parent) in self._values or not np.isfinite([b_lo, b_hi]).all():
                return None
            if t is None:
                r_lo.append(b_lo)
                r_hi.append(b_hi)
            elif raw_comparable(t):
                low, high = (float(r) for r in t.inverse(np.array([b_lo, b_hi])))
                r_lo.append(low - BAND * (abs(low) + 1.0))
                r_hi.append(high + BAND * (abs(high) + 1.0))
            else:
                return None
            raws.append(self.untransformed(key, step.parent))
        keep = np.empty(len(raws[0]), dtype=np.bool_)
        small_or_parallel(in_box, len(keep))(
            np.stack(raws), np.asarray(r_lo, dtype=np.float64), np.asarray(r_hi, dtype=np.float64), keep
        )
        idx = _select(None, keep)
        return idx if len(idx) < 0.8 * len(keep) else None

    def _intervals(
        self, key: str, parent: str | None, splits: list[float], inclusive: str
    ) -> np.ndarray:
        """Interval index of each value among a divider's splits; shared by all quadrants."""
        cache_key = (key, parent, tuple(splits), inclusive)
        codes = self._codes.get(cache_key)
        if codes is None:
            values = self.feature(key, parent)
            codes = np.empty(len(values), dtype=np.int16)
            small_or_parallel(interval_index, len(values))(
                values, np.asarray(splits, dtype=np.float64), inclusive == "max", codes
            )
            self._codes[cache_key] = codes
        return codes

    def _boolean(self, step: PlanGate) -> np.ndarray:
        """A root-level Boolean population's mask over every event."""
        op = step.params["op"]
        terms = [
            ~self.mask(ref) if complement else self.mask(ref)
            for ref, complement in step.params["operands"]
        ]
        if op == "not":
            result = ~terms[0]
        elif op == "and":
            result = np.logical_and.reduce(terms)
        else:
            result = np.logical_or.reduce(terms)
        return result


def _half_open(v: np.ndarray, lo: float | None, hi: float | None, inclusive: str) -> np.ndarray:
    """``lo <= v < hi`` (``inclusive="min"``) or ``lo < v <= hi`` (``"max"``); an open side
    (``None``) holds the infinities on its side, never NaN."""
    if inclusive == "max":
        inside = v <= (np.inf if hi is None else float(hi))  # False for NaN
        if lo is not None:
            inside &= v > float(lo)
        return inside
    inside = v >= (-np.inf if lo is None else float(lo))  # False for NaN
    if hi is not None:
        inside &= v < float(hi)
    return inside


def _chunks(n: int) -> int:
    return max(1, min(64, n // 65536))


def _select(rows: np.ndarray | None, inside: np.ndarray) -> np.ndarray:
    """Rows of the parent that are inside (sorted, as the parent's are)."""
    return small_or_parallel(select_rows, len(inside))(
        rows if rows is not None else np.zeros(0, dtype=np.int64), rows is None, inside,
        _chunks(len(inside)),
    )
