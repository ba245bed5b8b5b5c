"""Evaluate a compiled plan over one sample's events.

Each population is evaluated only on its parent's events: the parent's rows are listed once
and shared by its children, and features (compensated, ratio'd, transformed channel values)
are computed for those rows only and cached per (feature, parent), so siblings share them.
The event matrix is the sample's own (a zero-copy view for native float files); only the
columns the plan uses are ever read.

Memory bound: gating allocates at most 4x the bytes of the columns the plan uses
(``events x k x 4``; measured 3.1x for ``k = 4`` on 50M events, the same absolute peak for
``k = 8``), whatever the number of channels in the file. The file is read through its memory
mapping chunk by chunk (:data:`gating._fcs._data.CHUNK_BYTES`, 64 MiB of DATA) and each chunk's
pages are dropped once read, so the mapped file pages in the process stay within two chunks
(measured +66..70 MiB for 4.8 and 9.6 GB files), not the file size. Both bounds are asserted
in ``tests/engine/test_memory_bound.py`` and measured by ``benchmarks/bench_memory.py``.
"""

from __future__ import annotations

import dataclasses
import logging
from collections.abc import Sequence
from typing import Literal

import numpy as np
import pandas as pd

from engine.runtime import thread_limit
from gating._compensation import unmixing_matrix
from gating._evaluate._evaluator import Evaluator
from gating._fcs import FCSData
from gating._plan import CompensationError, Plan, PlanError, check_spillover

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
    """

    sample: str
    n_events: int
    counts: pd.DataFrame
    membership: pd.DataFrame | None = None
    mfi: pd.DataFrame | None = None
    uncompensated: tuple[str, ...] = ()


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
    uncompensated: Literal["error", "allow"] = "error",
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
        reported per population. A spillover that cannot be applied (labels that are not
        channels, singular) is a :class:`~gating.CompensationError` unless ``uncompensated``
        is ``"allow"``.
    sample_name
        Name in the ``sample`` column; default the file name without extension (with
        ``#<dataset>`` for later datasets of a multi-dataset file).
    threads
        Numba threads (default: the job's share of the machine).
    uncompensated
        ``"allow"`` reports MFIs uncompensated when the file's spillover cannot be applied
        (recorded in :attr:`GatingResult.uncompensated`); compile the plan with the same
        option (:func:`gating.compile_plan`).

    Returns
    -------
    GatingResult
        Counts table, and membership / MFIs when asked.

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
    """
    name = sample_name or (
        sample.path.stem + (f"#{sample.dataset}" if sample.dataset else "")
    )
    ev = evaluate_plan(plan, sample, threads=threads)
    with thread_limit(threads):
        masks = {g.population: ev.mask(g.population) for g in plan.gates} if (membership or mfi) else {}
    n = sample.n_events
    paths = {g.population: g.path for g in plan.gates}
    rows = []
    for step in plan.gates:
        count = ev.count(step.population)
        parent_count = ev.count(step.parent)
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
    members = pd.DataFrame(masks, copy=False) if membership else None
    skipped = list(plan.uncompensated)
    mfis = None
    if mfi:
        mfis, why = _medians(sample, plan, masks, mfi, name, allow=uncompensated == "allow")
        if why and why not in skipped:
            skipped.append(why)
    return GatingResult(sample=name, n_events=n, counts=counts, membership=members, mfi=mfis,
                        uncompensated=tuple(skipped))


def evaluate_plan(plan: Plan, sample: FCSData, *, threads: int | None = None) -> Evaluator:
    """Evaluate every population of ``plan`` exactly as :func:`apply_plan` does, keeping the state.

    For inspection (gate plots): the returned evaluator gives ``rows``/``count``/``mask`` of
    every population and ``feature(key, parent)``, the transformed values of a plan feature
    on a parent population's rows.

    Parameters
    ----------
    plan
        From :func:`gating.compile_plan`.
    sample
        The events.
    threads
        Numba threads for the evaluation (default: the job's share of the machine).

    Returns
    -------
    Evaluator
        The evaluator after every step of the plan.
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


def _medians(
    sample: FCSData, plan: Plan, masks: dict[str, np.ndarray], channels: Sequence[str], name: str,
    *, allow: bool = False,
) -> tuple[pd.DataFrame, str]:
    """The medians table, and why the file's spillover was not applied ("" when it was, or
    when the file has none)."""
    idx = [sample.channel_index(c) for c in channels]
    values = sample.columns(idx, dtype=np.float64)
    why = ""
    check = check_spillover(sample) if sample.spill is not None else None
    if check is not None and not check.ok:
        why = f"the file's spillover for MFI: {check.text}"
        if not allow:
            raise CompensationError(
                f"{sample.path}: the MFI channels are compensated with the file's spillover, "
                f"which cannot be applied: {check.text}; fix the file's $SPILLOVER labels, or "
                "report MFIs uncompensated on purpose with uncompensated='allow' "
                "(phenoflow gate --allow-uncompensated)",
                path=str(sample.path), matrix="FCS", reason=check.status, labels=check.labels,
                hints=check.hints,
            )
        logger.warning("%s: MFIs reported UNCOMPENSATED as asked (%s)", sample.path, why)
    elif check is not None:  # the same unmixing the plan uses for the file's spillover
        spill = sample.spill
        det = [sample.channel_index(d) for d in spill.columns]
        try:
            unmix = unmixing_matrix(spill.to_numpy(), inverted=False)
        except np.linalg.LinAlgError as exc:
            raise PlanError(f"{sample.path}: MFI compensation with the file's spillover: {exc}") from None
        raw = sample.columns(det, dtype=np.float64)
        for j, col in enumerate(idx):
            if col in det:
                values[:, j] = raw @ unmix[:, det.index(col)]
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
