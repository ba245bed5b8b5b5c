"""Evaluate a compiled plan over one sample's events.

Each population is evaluated only on its parent's events: the parent's rows are listed once
and shared by its children, and features (compensated, ratio'd, transformed channel values)
are computed for those rows only and cached per (feature, parent), so siblings share them.
The event matrix is the sample's own (a zero-copy view for native float files); only the
columns the plan uses are ever read.

When only counts are asked for (no membership, MFIs or statistics, no ``evaluator=``) and the
plan holds only rectangles, polygons and Booleans on the transforms the fused kernel knows,
:func:`apply_plan` counts in one fused pass instead (:mod:`gating._evaluate._fused`): blocks of
events read once from the sample's bytes, every gate evaluated on them, no array as long as
the sample; the counts are the evaluator's.

Memory bound: gating allocates at most 4x the bytes of the columns the plan uses
(``events x k x 4``; measured 3.1x for ``k = 4`` on 50M events, the same absolute peak for
``k = 8``), whatever the number of channels in the file. The file is read through its memory
mapping chunk by chunk (:data:`gating._fcs._data.CHUNK_BYTES`, 64 MiB of DATA) and each chunk's
pages are dropped once read, so the mapped file pages in the process stay within two chunks
(measured +66..70 MiB for 4.8 and 9.6 GB files), not the file size. Both bounds are asserted
in ``tests/engine/test_memory_bound.py`` and measured by ``benchmarks/bench_memory.py``.
"""

from __future__ import annotations

import collections
import dataclasses
import logging
import threading
from collections.abc import Sequence
from typing import Any, Literal

import numpy as np
import pandas as pd

from engine.runtime import thread_limit
from gating._compensation import check_spillover, unmixing_matrix
from gating._evaluate._evaluator import Evaluator
from gating._evaluate._fused import FusedProgram, fused_counts_of, fused_program
from gating._plan import CompensationError, Plan, PlanError

__all__ = ["COUNT_COLUMNS", "GatingResult", "apply_plan", "evaluate_plan"]

logger = logging.getLogger(__name__)

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

#: The fused encoding of the last few plans (a batch gates many files with one plan object),
#: keyed by the plan's identity. Each entry holds its plan, so an id is never reused while
#: it is cached; a plan is immutable, so its encoding never goes stale.
_PROGRAMS_KEPT = 16
_programs: collections.OrderedDict[int, tuple[Plan, FusedProgram | None]] = collections.OrderedDict()
_programs_lock = threading.Lock()
_MISSING: Any = object()


def _same_plan(a: Plan, b: Plan) -> bool:
    """Whether two plans are equal field by field (then their encodings are too); a plan
    whose fields cannot be compared is equal to no other."""
    try:
        return bool(a.strategy_hash == b.strategy_hash and a == b)
    except (TypeError, ValueError):  # pragma: no cover - fields without a plain ==
        return False


def _program_of(plan: Plan) -> FusedProgram | None:
    """:func:`fused_program` of ``plan``, encoded once per plan object, and reused for an
    equal plan (a caller compiling the same strategy for each file of one layout gets equal,
    distinct plans: the encoding is a function of the plan's fields only)."""
    with _programs_lock:
        hit = _programs.get(id(plan))
        if hit is not None and hit[0] is plan:
            _programs.move_to_end(id(plan))
            return hit[1]
        program = next((prog for other, prog in reversed(_programs.values())
                        if _same_plan(other, plan)), _MISSING)
    if program is _MISSING:
        program = fused_program(plan)
    with _programs_lock:
        _programs[id(plan)] = (plan, program)
        while len(_programs) > _PROGRAMS_KEPT:
            _programs.popitem(last=False)
    return program


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
    uncompensated
        Empty unless compensation that could not be applied was skipped on request
        (``uncompensated="allow"``): then why, one line per matrix (the plan's
        :attr:`~gating.Plan.uncompensated`, and the MFI's own when it is skipped there).
    stats
        With ``stats=``: one row, FlowJo's table-editor statistics (:data:`STAT_NAMES`),
        columns ``sample``, then ``<population> | Count``, ``| Freq. of Parent``, ``| Freq.
        of Grandparent``, ``| Freq. of Total`` and ``<population> | <statistic> (<channel>)``.
    plan
        The plan the sample was gated with (for :func:`gating.to_anndata` and friends).
    data
        The sample that was gated (an :class:`~gating.FCSData` or in-memory sample).
    """

    sample: str
    n_events: int
    counts: pd.DataFrame
    membership: pd.DataFrame | None = None
    mfi: pd.DataFrame | None = None
    uncompensated: tuple[str, ...] = ()
    stats: pd.DataFrame | None = None
    plan: Plan | None = dataclasses.field(default=None, repr=False)
    data: Any = dataclasses.field(default=None, repr=False)

    def evaluate(self, *, threads: int | None = None) -> Evaluator:
        """Gate the sample again with the result's plan (the same answers): the evaluator
        the event export reads populations from when :attr:`membership` was not kept.

        Parameters
        ----------
        threads
            Numba threads.

        Returns
        -------
        Evaluator
            As :func:`evaluate_plan` gives it.
        """
        if self.plan is None or self.data is None:
            raise ValueError("this result holds no plan and sample (it was not made by apply_plan)")
        return evaluate_plan(self.plan, self.data, threads=threads)


def _check_fits(plan: Plan, sample: Any) -> None:
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
    sample: Any,
    *,
    membership: bool = False,
    mfi: Sequence[str] | None = None,
    stats: bool | Sequence[str] = False,
    sample_name: str | None = None,
    threads: int | None = None,
    uncompensated: Literal["error", "allow"] = "error",
    evaluator: Evaluator | None = None,
) -> GatingResult:
    """Gate one sample with a compiled plan.

    Parameters
    ----------
    plan
        From :func:`gating.compile_plan` (for this sample or one with the same channels).
    sample
        The events: an :class:`~gating.FCSData`, or what :func:`gating.as_sample` converts
        (a DataFrame, an AnnData, a ``flowkit.Sample``; converted with its defaults).
    membership
        Also return per-event membership (one boolean column per population id).
    mfi
        Channels whose median (compensated with the file's spillover when it has one) is
        reported per population. A spillover that cannot be applied (labels that are not
        channels, singular) is a :class:`~gating.CompensationError` unless ``uncompensated``
        is ``"allow"``.
    stats
        FlowJo's table-editor statistics in :attr:`GatingResult.stats` (one row): counts and
        frequencies of parent, grandparent and total for every population, and per channel
        (``True``: the channels the plan's gates use; or a list of channels) the median,
        mean, geometric mean, CV and robust SD of each population, on channel values
        compensated as for ``mfi`` (see :data:`STAT_NAMES` for the definitions).
    sample_name
        Name in the ``sample`` column; default the file name without extension (with
        ``#<dataset>`` for later datasets of a multi-dataset file), or an in-memory sample's
        name.
    threads
        Numba threads (default: the job's share of the machine).
    uncompensated
        ``"allow"`` reports MFIs and statistics uncompensated when the file's spillover
        cannot be applied (recorded in :attr:`GatingResult.uncompensated`); compile the plan
        with the same option (:func:`gating.compile_plan`).
    evaluator
        The :func:`evaluate_plan` of this very plan and sample, to reuse its work (the
        batch engine gates once for counts, statistics and the event export).

    Returns
    -------
    GatingResult
        Counts table, and membership / MFIs / statistics when asked.

    Notes
    -----
    Numeric edge cases have one defined result, the same on the serial (small input) and
    parallel kernels:

    - NaN (stored, or made by compensation such as ``inf - inf``, a ratio or a transform such
      as ``log`` of a negative value) is inside no rectangle, range, polygon, ellipsoid or
      quadrant; a Boolean ``not`` of a gate therefore holds it.
    - Infinities: a rectangle side left open (``None``) holds its infinity (``min=0`` with no
      max holds ``+inf``); an explicit bound never does (``x < inf`` is false for ``inf``).
      Quadrant intervals are open at both ends (``-inf`` in the first, ``+inf`` in the last).
      Polygons and ellipsoids, being bounded, hold no infinite value.
    - Boundaries: rectangles, ranges and quadrants are ``min <= x < max``; points on a polygon's
      edges or vertices are inside; an ellipsoid holds points at exactly ``distance_square``.
    - Degenerate polygons: repeated vertices change nothing; a collinear (zero-area) polygon
      holds exactly the points on its edges; fewer than 3 distinct vertices is a
      :class:`StrategyError`.
    - Zero events: every count is 0, percentages and MFI medians are NaN. Below an empty
      population ``percent_of_parent`` is NaN (0 of 0), and an empty population's medians are
      NaN.
    - A singular (or numerically singular, or non-finite) compensation matrix is a
      :class:`PlanError` naming the matrix and the file; transform parameters out of range are a
      ``ValueError`` when the transform is built.

    Examples
    --------
    >>> import pandas as pd
    >>> from gating import Dimension, RectangleGate, Strategy, compile_plan
    >>> events = pd.DataFrame({"A": [0.0, 1.0, 2.0]})
    >>> s = Strategy(gates=(RectangleGate("R", (Dimension("A"),), ((0.5, None),)),))
    >>> apply_plan(compile_plan(s, events), events).counts["count"].tolist()
    [2]
    """
    name = sample_name or _default_name(sample)
    if evaluator is not None and (evaluator.plan is not plan or evaluator.sample is not sample):
        raise ValueError("evaluator= must be evaluate_plan(plan, sample) of this plan and sample")
    wants_stats = stats is not False and stats is not None
    program = None
    if evaluator is None and not (membership or mfi or wants_stats):
        program = _program_of(plan)  # counts only: one fused pass when the plan allows
    if program is not None:
        _check_fits(plan, sample)
        with thread_limit(threads):
            count_of = fused_counts_of(plan, sample, program)
        ev = None
    else:
        ev = evaluator if evaluator is not None else evaluate_plan(plan, sample, threads=threads)
        count_of = {None: ev.count(None), **{g.population: ev.count(g.population) for g in plan.gates}}
    with thread_limit(threads):
        masks = {g.population: ev.mask(g.population) for g in plan.gates} if ev is not None and (
            membership or mfi) else {}
    n = sample.n_events
    paths = {g.population: g.path for g in plan.gates}
    if plan.gates:  # built column by column: a table of records costs several times more
        cnt = [count_of[step.population] for step in plan.gates]
        parent_cnt = [count_of[step.parent] for step in plan.gates]
        # the dict is in COUNT_COLUMNS order: passing columns= as well would make pandas
        # select them through a Series of the dict (twice the cost, the same frame)
        counts = pd.DataFrame({
            "sample": [name] * len(cnt),
            "population": [step.path for step in plan.gates],
            "parent": [paths[s.parent] if s.parent is not None else None for s in plan.gates],
            "count": cnt,
            "parent_count": parent_cnt,
            "percent_of_parent": [100.0 * c / p if p else np.nan
                                  for c, p in zip(cnt, parent_cnt, strict=True)],
            "percent_of_total": [100.0 * c / n if n else np.nan for c in cnt],
            "id": [step.population for step in plan.gates],
        })
    else:
        counts = pd.DataFrame([], columns=COUNT_COLUMNS)
    members = pd.DataFrame(masks, copy=False) if membership else None
    skipped = list(plan.uncompensated)
    allow = uncompensated == "allow"
    mfis = None
    if mfi:
        mfis, why = _medians(sample, plan, masks, mfi, name, allow=allow)
        if why and why not in skipped:
            skipped.append(why)
    table = None
    if wants_stats:
        assert ev is not None
        channels = _plan_channels(plan, sample) if stats is True else list(stats)  # type: ignore[arg-type]
        table, why = _stats(sample, plan, ev, channels, name, allow=allow)
        if why and why not in skipped:
            skipped.append(why)
    if not membership:
        masks.clear()
    return GatingResult(sample=name, n_events=n, counts=counts, membership=members, mfi=mfis,
                        uncompensated=tuple(skipped), stats=table, plan=plan, data=sample)


def _default_name(sample: Any) -> str:
    named = getattr(sample, "name", None)  # an in-memory sample (gating.EventSample)
    if isinstance(named, str):
        return named
    return sample.path.stem + (f"#{sample.dataset}" if sample.dataset else "")


def evaluate_plan(plan: Plan, sample: Any, *, threads: int | None = None) -> Evaluator:
    """Evaluate every population of ``plan`` exactly as :func:`apply_plan` does, keeping the state.

    For inspection (gate plots) and for reuse (``apply_plan(..., evaluator=)``, the event
    export): the returned evaluator gives ``rows``/``count``/``mask`` of every population and
    ``feature(key, parent)``, the transformed values of a plan feature on a parent
    population's rows.

    Parameters
    ----------
    plan
        From :func:`gating.compile_plan`.
    sample
        The events (anything :func:`gating.as_sample` takes).
    threads
        Numba threads for the evaluation (default: the job's share of the machine).

    Returns
    -------
    Evaluator
        The evaluator after every step of the plan.

    Examples
    --------
    >>> import pandas as pd
    >>> from gating import Dimension, RectangleGate, Strategy, compile_plan
    >>> events = pd.DataFrame({"A": [0.0, 1.0, 2.0]})
    >>> s = Strategy(gates=(RectangleGate("R", (Dimension("A"),), ((0.5, None),)),))
    >>> evaluate_plan(compile_plan(s, events), events).count("R")
    2
    """
    _check_fits(plan, sample)
    pending: dict[str | None, int] = {}
    for step in plan.gates:
        pending[step.parent] = pending.get(step.parent, 0) + 1
    with thread_limit(threads):
        ev = Evaluator(plan, sample)
        for step in plan.gates:
            ev.evaluate(step)
            pending[step.parent] -= 1
            if pending[step.parent] == 0:
                ev.release(step.parent)  # the parent's children are done: free its features
    return ev


def _file_unmixing(
    sample: Any, *, allow: bool, what: str,
) -> tuple[list[int], np.ndarray | None, str]:
    """The file's spillover as its detector columns and unmixing matrix (``None`` when the file
    has none, or when it cannot be applied and ``allow``), and why it was not applied ("" when
    it was, or when the file has none)."""
    check = check_spillover(sample) if sample.spill is not None else None
    if check is None:
        return [], None, ""
    if not check.ok:
        why = f"the file's spillover for {what}: {check.text}"
        if not allow:
            raise CompensationError(
                f"{sample.path}: the {what} channels are compensated with the file's spillover, "
                f"which cannot be applied: {check.text}; fix the file's $SPILLOVER labels, or "
                f"report {what} uncompensated on purpose with uncompensated='allow' "
                "(phenoflow gate --allow-uncompensated)",
                path=str(sample.path), matrix="FCS", reason=check.status, labels=check.labels,
                hints=check.hints,
            )
        logger.warning("%s: %s reported UNCOMPENSATED as asked (%s)", sample.path, what, why)
        return [], None, why
    # the same unmixing the plan uses for the file's spillover
    spill = sample.spill
    det = [sample.channel_index(d) for d in spill.columns]
    try:
        unmix = unmixing_matrix(spill.to_numpy(), inverted=False)
    except np.linalg.LinAlgError as exc:
        raise PlanError(f"{sample.path}: {what} compensation with the file's spillover: {exc}") from None
    return det, unmix, ""


def _compensated(
    sample: Any, channels: Sequence[str], *, allow: bool, what: str,
) -> tuple[np.ndarray, str]:
    """Events x channels, compensated with the file's spillover when it has one (as MFIs are),
    and why it was not applied ("" when it was, or when the file has none)."""
    idx = [sample.channel_index(c) for c in channels]
    unmixing, why = _unmixing(sample, idx, allow=allow, what=what)
    values = np.empty((sample.n_events, len(idx)), dtype=np.float64)
    for j, col in enumerate(idx):
        values[:, j] = _compensated_column(sample, col, unmixing)
    return values, why


#: What compensating a column needs: the detector columns' values (events x columns, the
#: file's mapping for native float data), where each detector is in them, the detectors and
#: the unmixing matrix.
_Unmixing = tuple[np.ndarray, dict[int, int], list[int], np.ndarray]


def _unmixing(
    sample: Any, cols: Sequence[int], *, allow: bool, what: str,
) -> tuple[_Unmixing | None, str]:
    """What :func:`_compensated_column` needs to compensate ``cols`` (``None``: nothing to
    compensate), and why the file's spillover was not applied ("" when it was, or none)."""
    det, unmix, why = _file_unmixing(sample, allow=allow, what=what)
    if unmix is None or not any(c in det for c in cols):
        return None, why
    x, colmap = sample.event_matrix(det)  # the file's mapping for native float data
    return (x, colmap, det, unmix), why


def _compensated_column(
    sample: Any, col: int, unmixing: _Unmixing | None,
) -> np.ndarray:
    """One channel's values on every event (float64): the stored value, or compensated as the
    gating kernels and the event export compute it, ``sum_t x[:, det_t] * unmix[t, k]`` in
    detector order (the same sums whatever the chunking or the number of threads, unlike a
    BLAS product), chunk by chunk of events (the file's pages dropped as it goes)."""
    if unmixing is None or col not in unmixing[2]:
        return sample.columns([col], dtype=np.float64)[:, 0]
    x, colmap, det, unmix = unmixing
    k = det.index(col)
    out = np.zeros(sample.n_events, dtype=np.float64)
    for lo, hi in sample.chunk_ranges():
        acc = out[lo:hi]
        for t, c in enumerate(det):
            acc += np.asarray(x[lo:hi, colmap[c]], dtype=np.float64) * unmix[t, k]
    return out


def _medians(
    sample: Any, plan: Plan, masks: dict[str, np.ndarray], channels: Sequence[str], name: str,
    *, allow: bool = False,
) -> tuple[pd.DataFrame, str]:
    """The medians table, and why the file's spillover was not applied ("" when it was, or
    when the file has none)."""
    values, why = _compensated(sample, channels, allow=allow, what="MFI")
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
    return pd.DataFrame(rows), why


#: The per-channel statistics of ``apply_plan(stats=...)`` (FlowJo's names; defined in
#: :data:`gating.STAT_NAMES`).
STAT_NAMES = ("Median", "Mean", "Geometric Mean", "CV", "Robust SD")


def _plan_channels(plan: Plan, sample: Any) -> list[str]:
    """The sample's channels (``$PnN``) the plan's gates use (``gating.stat_channels``)."""
    mapped = {name: pnn for name, pnn, _ in plan.channel_map}
    out: list[str] = []
    for f in plan.features:
        name, _, _, kind = f.key.rsplit("|", 3)
        if kind == "ratio":
            continue
        try:
            pnn = str(sample.names[sample.channel_index(mapped.get(name, name))])
        except KeyError:
            continue
        if pnn not in out:
            out.append(pnn)
    return out


def _one_channel_stats(x: np.ndarray) -> list[float]:
    """:data:`STAT_NAMES` of one population on one channel. ``x`` is the caller's own copy:
    the percentiles partition it in place (after the mean, which depends on the order)."""
    if not len(x):
        return [np.nan] * len(STAT_NAMES)
    with np.errstate(invalid="ignore", divide="ignore", over="ignore"):
        mean = float(np.mean(x))
        positive = x[x > 0]
        geo = float(np.exp(np.mean(np.log(positive, out=positive)))) if len(positive) else np.nan
        del positive
        sd = float(np.std(x, ddof=1)) if len(x) > 1 else np.nan
        cv = 100.0 * sd / mean if mean != 0 else np.nan
        median, p16, p84 = (
            float(v) for v in np.percentile(x, [50.0, 15.87, 84.13], overwrite_input=True)
        )
    return [median, mean, geo, cv, 0.5 * (p84 - p16)]


def _label(path: str) -> str:
    """FlowJo's population label: the path without its leading ``/``."""
    return path.lstrip("/")


def _stats(
    sample: Any, plan: Plan, ev: Evaluator, channels: Sequence[str], name: str, *, allow: bool,
) -> tuple[pd.DataFrame, str]:
    """The one-row wide statistics table, and why compensation was skipped ("" if not).

    Memory: one channel at a time, one population at a time. A channel's values on every
    event (``events x 8`` bytes) are computed once, then each population's values are copied
    out of it through the evaluation's rows and reduced (exact percentiles by selection), so
    the peak is about three float64 columns of events over gating, whatever the number of
    channels and populations. The file's detector columns are read from its mapping (native
    float files); other layouts decode them once to float64.
    """
    cols = [sample.channel_index(c) for c in channels]
    unmixing, why = _unmixing(sample, cols, allow=allow, what="statistics") if cols else (
        None, "")
    labels = [sample.names[c] for c in cols]
    parent_of = {g.population: g.parent for g in plan.gates}
    n = sample.n_events

    def pct(count: int, of: int | None) -> float:
        return 100.0 * count / of if of else np.nan

    row: dict[str, Any] = {"sample": name}
    for step in plan.gates:  # every column in its place first: FlowJo's order
        pop = _label(step.path)
        count = ev.count(step.population)
        grand = None if step.parent is None else ev.count(parent_of[step.parent])
        row[f"{pop} | Count"] = count
        row[f"{pop} | Freq. of Parent"] = pct(count, ev.count(step.parent))
        row[f"{pop} | Freq. of Grandparent"] = pct(count, grand) if grand is not None else np.nan
        row[f"{pop} | Freq. of Total"] = pct(count, n)
        for label in labels:
            for stat in STAT_NAMES:
                row[f"{pop} | {stat} ({label})"] = np.nan
    for col, label in zip(cols, labels, strict=True):
        column = _compensated_column(sample, col, unmixing)
        for step in plan.gates:
            rows = ev.rows(step.population)
            chosen = np.array(column) if rows is None else column[rows]
            pop = _label(step.path)
            for stat, value in zip(STAT_NAMES, _one_channel_stats(chosen), strict=True):
                row[f"{pop} | {stat} ({label})"] = value
            del chosen
        del column
    return pd.DataFrame([row]), why
