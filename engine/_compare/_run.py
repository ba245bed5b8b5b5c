"""Compare two gating strategies on the same FCS files: counts, per-event agreement, timing.

Each file is read once; each strategy is then compiled and applied to it (the order
alternates file by file, so neither strategy systematically pays first-touch costs such as
loading compiled kernels). Populations are matched by full path, then by their own name
when that name is unique in both strategies; an explicit mapping overrides both.
Agreement is computed from the two per-event membership vectors of a matched pair:
``F1 = 2|A∩B| / (|A| + |B|)`` and ``Jaccard = |A∩B| / |A∪B|``, both defined as 1.0 when
both populations are empty (the strategies agree that nothing is there).
"""

from __future__ import annotations

import contextlib
import dataclasses
import logging
import os
import time
from collections import Counter
from collections.abc import Iterator, Mapping, Sequence
from pathlib import Path

import numpy as np
import pandas as pd

from engine._compare._figure import format_score, pair_labels, plot_agreement
from engine._compare._match import (
    Matching,
    match_populations,
    parse_mapping,
    population_agreement,
    read_mapping,
)
from engine._compare._tables import (
    ERROR_COLUMNS,
    PER_FILE_COLUMNS,
    TABLES,
    TIMING_COLUMNS,
    UNMATCHED_COLUMNS,
    Comparison,
    summarise,
    timing_row,
    with_totals,
)
from engine._compare._tables import SUMMARY_COLUMNS as SUMMARY_COLUMNS  # re-exported
from engine.runtime import atomic_path
from gating import (
    FlowJoWorkspace,
    GatingResult,
    Strategy,
    apply_plan,
    compile_plan,
    load_strategy,
    read_fcs,
    resolve_strategy,
)

__all__ = [
    "Comparison",
    "compare_strategies",
    "format_score",
    "pair_labels",
    "parse_mapping",
    "plot_agreement",
    "read_mapping",
]

log = logging.getLogger(__name__)

StrategyLike = str | os.PathLike[str] | Strategy | FlowJoWorkspace


def _load(strategy: StrategyLike) -> Strategy | FlowJoWorkspace:
    return strategy if isinstance(strategy, Strategy | FlowJoWorkspace) else load_strategy(strategy)


def compare_strategies(
    strategy_a: StrategyLike,
    strategy_b: StrategyLike,
    files: Sequence[str | os.PathLike[str]],
    *,
    mapping: Mapping[str, str] | None = None,
    group_a: str | None = None,
    group_b: str | None = None,
    out_dir: str | os.PathLike[str] | None = None,
    labels: tuple[str, str] = ("A", "B"),
    warmup: bool = True,
) -> Comparison:
    """Run two strategies over the same FCS files and compare them population by population.

    Parameters
    ----------
    strategy_a, strategy_b
        Strategies (or FlowJo workspaces), or anything :func:`gating.load_strategy` reads.
    files
        FCS files; one that fails (unreadable, a strategy that does not fit it) is recorded
        in ``errors`` and skipped.
    mapping
        ``{population in A: population in B}`` (each a full path or an id): pairs compared
        whatever their names; these populations take no part in matching by name.
        Otherwise populations pair up by full path, then by their own (last path component)
        name where that name occurs once in each strategy.
    group_a, group_b
        For a FlowJo workspace: apply this group's gates to every file instead of each
        sample's own.
    out_dir
        Write ``per_file``, ``summary``, ``timing``, ``unmatched`` and ``errors`` as Parquet
        and CSV, and the figure ``agreement.png``, into this folder (created).
    labels
        Display names of the two strategies (distinct).
    warmup
        Gate the first readable file once with each strategy, untimed, before the timed
        runs, so that loading compiled kernels is not charged to whichever strategy runs
        first. The timed order also alternates file by file.

    Returns
    -------
    Comparison
        The tables (see :class:`Comparison`).

    Raises
    ------
    ValueError
        No files, equal labels, a group for a strategy that is not a FlowJo workspace, or a
        mapping entry naming no population (checked before any file is read when neither
        strategy is a FlowJo workspace).
    """
    if len(labels) != 2 or str(labels[0]) == str(labels[1]):
        raise ValueError(f"labels must be two distinct names, got {labels!r}")
    names = (str(labels[0]), str(labels[1]))
    if not files:
        raise ValueError("no FCS files to compare")
    loaded = (_load(strategy_a), _load(strategy_b))
    for side, strategy, group in ((0, loaded[0], group_a), (1, loaded[1], group_b)):
        if group is not None and not isinstance(strategy, FlowJoWorkspace):
            raise ValueError(f"a group was given for {names[side]}, which is not a FlowJo workspace")
    pairs_of = dict(mapping or {})
    cache: dict[tuple[int, int], tuple[Strategy, Strategy, Matching]] = {}

    def matching(a: Strategy, b: Strategy) -> Matching:
        key = (id(a), id(b))
        if key not in cache:  # the strategies are kept alive in the cache with their matching
            cache[key] = (a, b, match_populations(a, b, pairs_of, names))
        return cache[key][2]

    if isinstance(loaded[0], Strategy) and isinstance(loaded[1], Strategy):
        matching(loaded[0], loaded[1])  # a bad mapping fails before any file is read
    rows: list[dict[str, object]] = []
    timing: list[dict[str, object]] = []
    errors: list[dict[str, str]] = []
    unmatched: Counter[tuple[str, str, str, str]] = Counter()
    for index, f in enumerate(files):
        path = Path(f)
        try:
            with _stage("resolve"):
                pair = tuple(
                    resolve_strategy(s, path.name, group=g)
                    for s, g in zip(loaded, (group_a, group_b), strict=True)
                )
            with _stage("match"):
                found = matching(pair[0], pair[1])
            warm = warmup and not timing  # before the first file gated (untimed)
            run = _gate_file(path, (pair[0], pair[1]), swap=index % 2 == 1, warm=warm)
        except _Failed as failed:  # one bad file never stops the comparison; it is recorded
            exc = failed.__cause__
            log.warning("%s failed (%s): %s: %s", path, failed.stage, type(exc).__name__, exc)
            errors.append({
                "file": str(path), "stage": failed.stage, "error_type": type(exc).__name__,
                "message": str(exc),
            })
            continue
        n, name = run.results[0].n_events, str(path)
        rows += [{"file": name, **row} for row in population_agreement(found, *run.results)]
        timing.append(timing_row("file", name, "read", "read", 1, n, np.nan, np.nan, run.read_s))
        for side in (0, 1):
            c_s, a_s = run.compile_s[side], run.apply_s[side]
            timing.append(
                timing_row("file", name, "ab"[side], names[side], 1, n, c_s, a_s, c_s + a_s)
            )
        for side, pops in ((0, found.unmatched_a), (1, found.unmatched_b)):
            unmatched.update(("ab"[side], names[side], p, pid) for pid, p in pops)
        log.info("%s: %d populations compared", path.name, len(found.pairs))
    timing_table = with_totals(pd.DataFrame(timing, columns=TIMING_COLUMNS))
    comparison = Comparison(
        per_file=pd.DataFrame(rows, columns=PER_FILE_COLUMNS),
        summary=summarise(pd.DataFrame(rows, columns=PER_FILE_COLUMNS)),
        timing=timing_table,
        unmatched=pd.DataFrame([(*k, n) for k, n in unmatched.items()], columns=UNMATCHED_COLUMNS),
        errors=pd.DataFrame(errors, columns=ERROR_COLUMNS),
        labels=names,
        out_dir=Path(out_dir) if out_dir is not None else None,
    )
    if comparison.out_dir is not None:
        _write(comparison, comparison.out_dir)
    return comparison


class _Failed(Exception):
    """A file failed at ``stage``; the original exception is the ``__cause__``."""

    def __init__(self, stage: str) -> None:
        super().__init__(stage)
        self.stage = stage


@contextlib.contextmanager
def _stage(name: str) -> Iterator[None]:
    try:
        yield
    except Exception as exc:
        raise _Failed(name) from exc


@dataclasses.dataclass(frozen=True)
class _FileRun:
    results: tuple[GatingResult, GatingResult]
    compile_s: tuple[float, float]
    apply_s: tuple[float, float]
    read_s: float


def _gate_file(
    path: Path, strategies: tuple[Strategy, Strategy], *, swap: bool, warm: bool
) -> _FileRun:
    """Read once, then compile and apply each strategy (B first when ``swap``), timed."""
    start = time.perf_counter()
    with _stage("read"):
        sample = read_fcs(path)
        np.count_nonzero(sample.raw)  # load the DATA segment now, not in the first apply
    read_s = time.perf_counter() - start
    if warm:  # untimed: compiled kernels are loaded outside the timings
        for side in (0, 1):
            with _stage("ab"[side]):
                apply_plan(compile_plan(strategies[side], sample), sample, membership=True)
    done: dict[int, tuple[GatingResult, float, float]] = {}
    for side in (1, 0) if swap else (0, 1):
        with _stage("ab"[side]):
            start = time.perf_counter()
            plan = compile_plan(strategies[side], sample)
            compiled = time.perf_counter()
            result = apply_plan(plan, sample, membership=True)
            done[side] = (result, compiled - start, time.perf_counter() - compiled)
    return _FileRun(
        results=(done[0][0], done[1][0]),
        compile_s=(done[0][1], done[1][1]),
        apply_s=(done[0][2], done[1][2]),
        read_s=read_s,
    )


def _write(comparison: Comparison, out: Path) -> None:
    out.mkdir(parents=True, exist_ok=True)
    for name in TABLES:
        frame: pd.DataFrame = getattr(comparison, name)
        with atomic_path(out / f"{name}.parquet") as tmp:
            frame.to_parquet(tmp, index=False)
        frame.to_csv(out / f"{name}.csv", index=False)
    plot_agreement(comparison, path=out / "agreement.png")
    log.info("comparison written to %s", out)
