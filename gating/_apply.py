"""Evaluate a compiled plan over one sample's events.

Each population is evaluated only on its parent's events: the parent's rows are listed once
and shared by its children, and features (compensated, ratio'd, transformed channel values)
are computed for those rows only and cached per (feature, parent), so siblings share them.
The event matrix is the sample's own (a zero-copy view for native float files); only the
columns the plan uses are ever read.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence

import numpy as np
import pandas as pd

from engine._numba import thread_limit
from gating._fcs import FCSData
from gating._kernels import (
    channel_values,
    in_cell,
    in_ellipsoid,
    in_polygon,
    raw_bound_state,
)
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

__all__ = ["COUNT_COLUMNS", "GatingResult", "apply_plan"]

# Strictly increasing and finite everywhere (when not clamped): a bound on the transformed
# value is a bound on the raw value. Log is excluded (NaN below zero), FlowJo log too (flat).
_STRICT = (Linear, Asinh, Logicle, Hyperlog, FlowJoBiex, FlowJoLinear)
_BAND = 1e-7  # relative width of the raw-space band re-checked exactly in transformed space


def _raw_comparable(t: Transform | None) -> bool:
    return (
        t is not None
        and isinstance(t, _STRICT)
        and t.bound_min is None
        and t.bound_max is None
        and not getattr(t, "interpolate", False)
    )

COUNT_COLUMNS = [
    "sample",
    "population",
    "parent",
    "count",
    "parent_count",
    "percent_of_parent",
    "percent_of_total",
    "id",
]


@dataclasses.dataclass(frozen=True, eq=False)
class GatingResult:
    """Populations of one sample.

    Attributes
    ----------
    sample
        Sample name.
    n_events
        Events in the sample.
    counts
        One row per population: ``sample``, ``population`` (full path), ``parent`` (full
        path, ``None`` at the root), ``count``, ``parent_count``, ``percent_of_parent``,
        ``percent_of_total``, ``id`` (the population id in the strategy).
    membership
        With ``membership=True``: one boolean column per population id, one row per event.
    mfi
        With ``mfi=[...]``: tidy medians (``sample``, ``population``, ``channel``,
        ``median``) of the compensated channel values in each population.
    """

    sample: str
    n_events: int
    counts: pd.DataFrame
    membership: pd.DataFrame | None = None
    mfi: pd.DataFrame | None = None


class _Evaluator:
    def __init__(self, plan: Plan, sample: FCSData) -> None:
        self.plan = plan
        self.n = sample.n_events
        self.x, self.colmap = sample.event_matrix(plan.columns)
        self.features = {f.key: f for f in plan.features}
        self.masks: dict[str, np.ndarray] = {}
        self._rows: dict[str | None, np.ndarray | None] = {None: None}
        self._values: dict[tuple[str, str | None], np.ndarray] = {}
        self._raw: dict[tuple[str, str | None], np.ndarray] = {}

    def rows(self, parent: str | None) -> np.ndarray | None:
        if parent not in self._rows:
            self._rows[parent] = np.flatnonzero(self.masks[parent])
        return self._rows[parent]

    def channel(self, ch: Channel, rows: np.ndarray | None) -> np.ndarray:
        m = self.n if rows is None else len(rows)
        out = np.empty(m, dtype=np.float64)
        cols = np.asarray([self.colmap[c] for c in ch.columns], dtype=np.int64)
        coefs = (
            np.ones(1, dtype=np.float64)
            if ch.coefficients is None
            else np.asarray(ch.coefficients, dtype=np.float64)
        )
        channel_values(
            self.x, rows if rows is not None else np.zeros(0, dtype=np.int64), rows is None,
            cols, coefs, out,
        )
        return out

    def untransformed(self, key: str, parent: str | None) -> np.ndarray:
        """Compensated (and ratio'd) values of a feature on the parent's rows, cached."""
        cached = self._raw.get((key, parent))
        if cached is not None:
            return cached
        f: Feature = self.features[key]
        rows = self.rows(parent)
        values = self.channel(f.numerator, rows)
        if f.denominator is not None:
            a, b, c = f.ratio
            den = self.channel(f.denominator, rows)
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

    def _range(self, key: str, parent: str | None, lo: float | None, hi: float | None) -> np.ndarray:
        """``lo <= T(u) < hi`` without transforming every value when ``T`` allows it.

        A strictly increasing transform turns the bounds into raw-space bounds; only values
        within a relative band of them (and non-finite ones) are transformed and compared
        exactly, so the answer is the transformed-space answer.
        """
        transform = self.features[key].transform
        lo_t = -np.inf if lo is None else float(lo)
        hi_t = np.inf if hi is None else float(hi)
        if (key, parent) in self._values or not _raw_comparable(transform):
            v = self.feature(key, parent)
            return (v >= lo_t) & (v < hi_t)
        assert transform is not None
        u = self.untransformed(key, parent)
        raw = transform.inverse(np.array([lo_t, hi_t]))
        r_lo = -np.inf if lo is None else float(raw[0])
        r_hi = np.inf if hi is None else float(raw[1])
        state = np.empty(len(u), dtype=np.int8)
        band_lo = _BAND * (abs(r_lo) + 1.0) if np.isfinite(r_lo) else 0.0
        band_hi = _BAND * (abs(r_hi) + 1.0) if np.isfinite(r_hi) else 0.0
        raw_bound_state(u, r_lo, r_hi, band_lo, band_hi, state)
        inside = state == 1
        unsure = np.flatnonzero(state == 2)
        if len(unsure):
            with np.errstate(divide="ignore", invalid="ignore"):
                t = transform.apply(u[unsure])
            inside[unsure] = (t >= lo_t) & (t < hi_t)
        return inside

    def evaluate(self, step: PlanGate) -> np.ndarray:
        parent_mask = self.masks[step.parent] if step.parent is not None else None
        if step.kind == "boolean":
            return self._boolean(step, parent_mask)
        rows = self.rows(step.parent)
        m = self.n if rows is None else len(rows)
        p = step.params
        if step.kind == "rectangle":
            inside = np.ones(m, dtype=np.bool_)
            for key, (lo, hi) in zip(step.features, p["bounds"], strict=True):
                inside &= self._range(key, step.parent, lo, hi)
            return self._scatter(inside, rows)
        columns = [self.feature(k, step.parent) for k in step.features]
        inside = np.empty(m, dtype=np.bool_)
        if step.kind == "polygon":
            v = np.asarray(p["vertices"], dtype=np.float64)
            in_polygon(columns[0], columns[1], np.ascontiguousarray(v[:, 0]),
                       np.ascontiguousarray(v[:, 1]), inside)
        elif step.kind == "ellipsoid":
            in_ellipsoid(
                np.column_stack(columns), np.asarray(p["mean"], dtype=np.float64),
                np.asarray(p["precision"], dtype=np.float64), float(p["distance_square"]),
                inside,
            )
        elif step.kind == "quadrant":
            width = max(len(s) for s in p["splits"])
            splits = np.full((len(p["splits"]), width), np.inf)
            for i, s in enumerate(p["splits"]):
                splits[i, : len(s)] = s
            in_cell(
                np.column_stack(columns), splits,
                np.array([len(s) for s in p["splits"]], dtype=np.int64),
                np.asarray(p["cells"], dtype=np.int64), inside,
            )
        else:  # pragma: no cover - compile_plan emits only known kinds
            raise PlanError(f"unknown gate kind {step.kind!r}", gate=step.population)
        return self._scatter(inside, rows)

    def _scatter(self, inside: np.ndarray, rows: np.ndarray | None) -> np.ndarray:
        if rows is None:
            return inside
        mask = np.zeros(self.n, dtype=np.bool_)
        mask[rows[inside]] = True
        return mask

    def _boolean(self, step: PlanGate, parent_mask: np.ndarray | None) -> np.ndarray:
        op = step.params["op"]
        terms = [
            ~self.masks[ref] if complement else self.masks[ref]
            for ref, complement in step.params["operands"]
        ]
        if op == "not":
            result = ~terms[0]
        elif op == "and":
            result = np.logical_and.reduce(terms)
        else:
            result = np.logical_or.reduce(terms)
        return result & parent_mask if parent_mask is not None else result


def _check_fits(plan: Plan, sample: FCSData) -> None:
    names = sample.names
    bad = [
        (c, plan.channel_names[c], names[c] if c < len(names) else None)
        for c in plan.columns
        if c >= len(names) or names[c] != plan.channel_names[c]
    ]
    if bad:
        c, want, got = bad[0]
        raise PlanError(
            f"{sample.path}: plan compiled for another channel layout (column {c} is "
            f"{got!r}, the plan expects {want!r}); compile the plan for this sample"
        )


def apply_plan(
    plan: Plan,
    sample: FCSData,
    *,
    membership: bool = False,
    mfi: Sequence[str] | None = None,
    sample_name: str | None = None,
    threads: int | None = None,
) -> GatingResult:
    """Gate one sample with a compiled plan.

    Parameters
    ----------
    plan
        From :func:`gating.compile_plan` (for this sample or one with the same channels).
    sample
        The events.
    membership
        Also return per-event membership (one boolean column per population id).
    mfi
        Channels whose median (compensated with the file's spillover when it has one) is
        reported per population.
    sample_name
        Name in the ``sample`` column; default the file name without extension (with
        ``#<dataset>`` for later datasets of a multi-dataset file).
    threads
        Numba threads (default: the job's share of the machine).

    Returns
    -------
    GatingResult
        Counts table, and membership / MFIs when asked.
    """
    _check_fits(plan, sample)
    name = sample_name or (
        sample.path.stem + (f"#{sample.dataset}" if sample.dataset else "")
    )
    with thread_limit(threads):
        ev = _Evaluator(plan, sample)
        for step in plan.gates:
            ev.masks[step.population] = ev.evaluate(step)
    n = sample.n_events
    paths = {g.population: g.path for g in plan.gates}
    rows = []
    for step in plan.gates:
        count = int(np.count_nonzero(ev.masks[step.population]))
        parent_count = (
            int(np.count_nonzero(ev.masks[step.parent])) if step.parent is not None else n
        )
        rows.append(
            {
                "sample": name,
                "population": step.path,
                "parent": paths[step.parent] if step.parent is not None else None,
                "count": count,
                "parent_count": parent_count,
                "percent_of_parent": 100.0 * count / parent_count if parent_count else np.nan,
                "percent_of_total": 100.0 * count / n if n else np.nan,
                "id": step.population,
            }
        )
    counts = pd.DataFrame(rows, columns=COUNT_COLUMNS)
    members = pd.DataFrame(ev.masks, copy=False) if membership else None
    mfis = _medians(sample, plan, ev.masks, mfi, name) if mfi else None
    return GatingResult(sample=name, n_events=n, counts=counts, membership=members, mfi=mfis)


def _medians(
    sample: FCSData, plan: Plan, masks: dict[str, np.ndarray], channels: Sequence[str], name: str
) -> pd.DataFrame:
    idx = [sample.channel_index(c) for c in channels]
    values = sample.columns(idx, dtype=np.float64)
    spill = sample.spill
    if spill is not None:
        det = [sample.channel_index(d) for d in spill.columns]
        inv = np.linalg.inv(spill.to_numpy())
        raw = sample.columns(det, dtype=np.float64)
        for j, col in enumerate(idx):
            if col in det:
                values[:, j] = raw @ inv[:, det.index(col)]
    rows = []
    for step in plan.gates:
        mask = masks[step.population]
        for j, channel in enumerate(channels):
            chosen = values[mask, j]
            rows.append(
                {
                    "sample": name,
                    "population": step.path,
                    "channel": channel,
                    "median": float(np.median(chosen)) if len(chosen) else np.nan,
                }
            )
    return pd.DataFrame(rows)
