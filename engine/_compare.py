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
import csv
import dataclasses
import logging
import os
import time
from collections import Counter
from collections.abc import Iterable, Iterator, Mapping, Sequence
from pathlib import Path

import numpy as np
import pandas as pd
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure

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

PER_FILE_COLUMNS = [
    "file", "sample", "n_events", "population_a", "population_b", "match", "count_a",
    "count_b", "difference", "percent_difference", "in_both", "only_a", "only_b", "f1",
    "jaccard",
]
SUMMARY_COLUMNS = [
    "population_a", "population_b", "match", "files", "count_a", "count_b", "difference",
    "percent_difference", "max_abs_difference", "f1_mean", "f1_min", "jaccard_mean",
    "jaccard_min",
]
TIMING_COLUMNS = [
    "scope", "file", "stage", "label", "files", "events", "compile_s", "apply_s", "seconds",
    "seconds_per_file", "events_per_s",
]
UNMATCHED_COLUMNS = ["side", "label", "population", "id", "files"]
ERROR_COLUMNS = ["file", "stage", "error_type", "message"]
TABLES = ("per_file", "summary", "timing", "unmatched", "errors")


@dataclasses.dataclass(frozen=True, eq=False)
class Comparison:
    """What :func:`compare_strategies` found.

    Attributes
    ----------
    per_file
        One row per file and matched population: ``file``, ``sample``, ``n_events``,
        ``population_a``/``population_b`` (full paths), ``match`` (``"mapping"``, ``"path"``
        or ``"name"``), ``count_a``/``count_b``, ``difference`` (B - A),
        ``percent_difference`` (100 (B - A) / A; 0 when both are 0, NaN when only A is 0),
        ``in_both`` (true positives), ``only_a``, ``only_b``, ``f1``, ``jaccard`` (1.0 when
        both populations are empty).
    summary
        One row per matched population over the files: ``files``, total ``count_a``,
        ``count_b``, ``difference`` and ``percent_difference``, ``max_abs_difference`` (the
        largest per-file absolute difference), ``f1_mean``, ``f1_min``, ``jaccard_mean``,
        ``jaccard_min``.
    timing
        Seconds per file (``scope="file"``) and over all compared files (``scope="total"``,
        ``file`` empty) for each ``stage``: ``"read"`` (parse and load the events once),
        ``"a"`` and ``"b"`` (compile + apply of each strategy, membership included), with
        ``label``, ``files``, ``events``, ``compile_s``, ``apply_s``, ``seconds``,
        ``seconds_per_file`` and ``events_per_s``.
    unmatched
        Populations without a partner: ``side`` (``"a"``/``"b"``), ``label``,
        ``population`` (path), ``id`` and ``files`` (in how many compared files).
    errors
        Files that failed and were skipped: ``file``, ``stage`` (``resolve``, ``match``,
        ``read``, ``a`` or ``b``), ``error_type``, ``message``.
    labels
        Display names of strategies A and B.
    out_dir
        Where the tables and ``agreement.png`` were written, or None.
    """

    per_file: pd.DataFrame
    summary: pd.DataFrame
    timing: pd.DataFrame
    unmatched: pd.DataFrame
    errors: pd.DataFrame
    labels: tuple[str, str]
    out_dir: Path | None = None

    @property
    def ok(self) -> bool:
        """Whether every file was compared."""
        return self.errors.empty


@dataclasses.dataclass(frozen=True)
class _Pair:
    id_a: str
    id_b: str
    path_a: str
    path_b: str
    match: str


@dataclasses.dataclass(frozen=True)
class _Matching:
    pairs: tuple[_Pair, ...]
    unmatched_a: tuple[tuple[str, str], ...]  # (id, path)
    unmatched_b: tuple[tuple[str, str], ...]


def _unique(values: Mapping[str, str]) -> dict[str, str]:
    """Invert ``{id: value}`` for the values held by exactly one id."""
    seen = Counter(values.values())
    return {v: k for k, v in values.items() if seen[v] == 1}


def _lookup(key: str, paths: Mapping[str, str], *, side: str) -> str:
    """The population id that ``key`` names: a unique full path, else an id."""
    by_path = _unique(paths)
    if key in by_path:
        return by_path[key]
    if key in paths:
        return key
    raise ValueError(f"mapping: {key!r} is neither a population path nor an id in strategy {side}")


def _match(
    a: Strategy, b: Strategy, mapping: Mapping[str, str], labels: Sequence[str]
) -> _Matching:
    """Pair populations: the explicit mapping, then unique full paths, then unique names."""
    order_a, order_b = a.population_order(), b.population_order()
    path_a = {p: a.path(p) for p in order_a}
    path_b = {p: b.path(p) for p in order_b}
    found: dict[str, tuple[str, str]] = {}  # id in A -> (id in B, how)
    for key, value in mapping.items():
        partner = _lookup(value, path_b, side=labels[1])
        found[_lookup(key, path_a, side=labels[0])] = (partner, "mapping")
    used_b = {pid for pid, _ in found.values()}
    for how, names_a, names_b in (
        ("path", path_a, path_b),
        ("name", {p: a.display_name(p) for p in order_a}, {p: b.display_name(p) for p in order_b}),
    ):
        unique_a, unique_b = _unique(names_a), _unique(names_b)
        for name, pid in unique_a.items():
            partner = unique_b.get(name)
            if pid not in found and partner is not None and partner not in used_b:
                found[pid] = (partner, how)
                used_b.add(partner)
    pairs = tuple(
        _Pair(pid, found[pid][0], path_a[pid], path_b[found[pid][0]], found[pid][1])
        for pid in order_a
        if pid in found
    )
    return _Matching(
        pairs=pairs,
        unmatched_a=tuple((p, path_a[p]) for p in order_a if p not in found),
        unmatched_b=tuple((p, path_b[p]) for p in order_b if p not in used_b),
    )


def _agreement(found: _Matching, ra: GatingResult, rb: GatingResult) -> list[dict[str, object]]:
    """Counts (from the counts tables) and per-event agreement of every matched pair."""
    assert ra.membership is not None and rb.membership is not None
    counts_a = dict(zip(ra.counts["id"], ra.counts["count"], strict=True))
    counts_b = dict(zip(rb.counts["id"], rb.counts["count"], strict=True))
    about = {"sample": ra.sample, "n_events": ra.n_events}
    return [
        {**about, **_pair_agreement(pair, ra.membership, rb.membership, counts_a, counts_b)}
        for pair in found.pairs
    ]


def _pair_agreement(
    pair: _Pair, members_a: pd.DataFrame, members_b: pd.DataFrame,
    counts_a: Mapping[str, int], counts_b: Mapping[str, int],
) -> dict[str, object]:
    in_a = members_a[pair.id_a].to_numpy(dtype=bool)
    in_b = members_b[pair.id_b].to_numpy(dtype=bool)
    both = int(np.count_nonzero(in_a & in_b))
    n_a, n_b = int(np.count_nonzero(in_a)), int(np.count_nonzero(in_b))
    union = n_a + n_b - both
    count_a, count_b = int(counts_a[pair.id_a]), int(counts_b[pair.id_b])
    diff = count_b - count_a
    return {
        "population_a": pair.path_a,
        "population_b": pair.path_b,
        "match": pair.match,
        "count_a": count_a,
        "count_b": count_b,
        "difference": diff,
        "percent_difference": _percent(diff, count_a),
        "in_both": both,
        "only_a": n_a - both,
        "only_b": n_b - both,
        "f1": 2.0 * both / (n_a + n_b) if n_a + n_b else 1.0,
        "jaccard": both / union if union else 1.0,
    }


def _percent(diff: float, base: float) -> float:
    if base:
        return 100.0 * diff / base
    return 0.0 if diff == 0 else float("nan")


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
    cache: dict[tuple[int, int], tuple[Strategy, Strategy, _Matching]] = {}

    def matching(a: Strategy, b: Strategy) -> _Matching:
        key = (id(a), id(b))
        if key not in cache:  # the strategies are kept alive in the cache with their matching
            cache[key] = (a, b, _match(a, b, pairs_of, names))
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
        rows += [{"file": name, **row} for row in _agreement(found, *run.results)]
        timing.append(_timing_row("file", name, "read", "read", 1, n, np.nan, np.nan, run.read_s))
        for side in (0, 1):
            c_s, a_s = run.compile_s[side], run.apply_s[side]
            timing.append(
                _timing_row("file", name, "ab"[side], names[side], 1, n, c_s, a_s, c_s + a_s)
            )
        for side, pops in ((0, found.unmatched_a), (1, found.unmatched_b)):
            unmatched.update(("ab"[side], names[side], p, pid) for pid, p in pops)
        log.info("%s: %d populations compared", path.name, len(found.pairs))
    timing_table = _with_totals(pd.DataFrame(timing, columns=TIMING_COLUMNS))
    comparison = Comparison(
        per_file=pd.DataFrame(rows, columns=PER_FILE_COLUMNS),
        summary=_summarise(pd.DataFrame(rows, columns=PER_FILE_COLUMNS)),
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


def _timing_row(
    scope: str, file: str | None, stage: str, label: str, files: int, events: int,
    compile_s: float, apply_s: float, seconds: float,
) -> dict[str, object]:
    return {
        "scope": scope, "file": file, "stage": stage, "label": label, "files": files,
        "events": events, "compile_s": compile_s, "apply_s": apply_s, "seconds": seconds,
        "seconds_per_file": seconds / files if files else np.nan,
        "events_per_s": events / seconds if seconds > 0 else np.nan,
    }


def _with_totals(timing: pd.DataFrame) -> pd.DataFrame:
    totals = [
        _timing_row(
            "total", None, stage, str(rows["label"].iloc[0]), len(rows), int(rows["events"].sum()),
            rows["compile_s"].sum(min_count=1), rows["apply_s"].sum(min_count=1),
            float(rows["seconds"].sum()),
        )
        for stage, rows in timing.groupby("stage", sort=False)
    ]
    if not totals:
        return timing
    return pd.concat([timing, pd.DataFrame(totals, columns=TIMING_COLUMNS)], ignore_index=True)


def _summarise(per_file: pd.DataFrame) -> pd.DataFrame:
    if per_file.empty:
        return pd.DataFrame(columns=SUMMARY_COLUMNS)
    grouped = per_file.groupby(["population_a", "population_b", "match"], sort=False)
    summary = grouped.agg(
        files=("file", "size"),
        count_a=("count_a", "sum"),
        count_b=("count_b", "sum"),
        difference=("difference", "sum"),
        max_abs_difference=("difference", lambda d: int(d.abs().max())),
        f1_mean=("f1", "mean"),
        f1_min=("f1", "min"),
        jaccard_mean=("jaccard", "mean"),
        jaccard_min=("jaccard", "min"),
    ).reset_index()
    summary["percent_difference"] = [
        _percent(d, a) for d, a in zip(summary["difference"], summary["count_a"], strict=True)
    ]
    return summary[SUMMARY_COLUMNS]


def _write(comparison: Comparison, out: Path) -> None:
    out.mkdir(parents=True, exist_ok=True)
    for name in TABLES:
        frame: pd.DataFrame = getattr(comparison, name)
        tmp = out / f".{name}.parquet.{os.getpid()}.partial"
        frame.to_parquet(tmp, index=False)
        os.replace(tmp, out / f"{name}.parquet")
        frame.to_csv(out / f"{name}.csv", index=False)
    plot_agreement(comparison, path=out / "agreement.png")
    log.info("comparison written to %s", out)


# ---- labels and the figure -------------------------------------------------------------------
def _short(paths: Iterable[str]) -> dict[str, str]:
    """Each path's shortest trailing part (whole components) that no other path ends with."""
    parts = {p: [c for c in p.split("/") if c] for p in dict.fromkeys(paths)}
    out: dict[str, str] = {}
    for p, comps in parts.items():
        out[p] = p
        for k in range(1, len(comps) + 1):
            if sum(q[-k:] == comps[-k:] for q in parts.values()) == 1:
                out[p] = "/".join(comps[-k:])
                break
    return out


def format_score(value: float, *, digits: int = 4) -> str:
    """An F1 or Jaccard value as text that never rounds up to 1.

    Parameters
    ----------
    value
        A score in [0, 1] (or NaN).
    digits
        Decimals shown.

    Returns
    -------
    str
        ``"1"`` for exactly 1; otherwise the value truncated to ``digits`` decimals, so
        ``0.99996`` reads ``0.9999``, not ``1.0000``.
    """
    if value == 1.0:
        return "1"
    if not np.isfinite(value):
        return "nan"
    scale = 10**digits
    return f"{np.floor(value * scale) / scale:.{digits}f}"


def pair_labels(summary: pd.DataFrame) -> list[str]:
    """Short readable labels for the rows of a comparison summary.

    Parameters
    ----------
    summary
        :attr:`Comparison.summary` (``population_a`` and ``population_b`` columns).

    Returns
    -------
    list of str
        Per row, the shortest unambiguous tail of the A path (``CD8+/CXCR3+``), followed by
        ``↔`` and the B one when the two paths differ.
    """
    short_a = _short(summary["population_a"])
    short_b = _short(summary["population_b"])
    return [
        short_a[a] if a == b else f"{short_a[a]} ↔ {short_b[b]}"
        for a, b in zip(summary["population_a"], summary["population_b"], strict=True)
    ]


def plot_agreement(comparison: Comparison, *, path: str | os.PathLike[str] | None = None) -> Figure:
    """F1 per matched population: one dot per file, a bar for the mean over files.

    Parameters
    ----------
    comparison
        From :func:`compare_strategies`.
    path
        Also write the figure as PNG here.

    Returns
    -------
    matplotlib.figure.Figure
        A figure on the Agg canvas (no pyplot, no global state).
    """
    summary, per_file = comparison.summary, comparison.per_file
    n = len(summary)
    fig = Figure(figsize=(8.0, 1.8 + 0.3 * max(n, 1)), dpi=100, layout="constrained")
    FigureCanvasAgg(fig)
    ax = fig.add_subplot()
    a, b = comparison.labels
    if n == 0:
        ax.text(
            0.5, 0.5, "no populations compared", ha="center", va="center", transform=ax.transAxes
        )
        ax.set_axis_off()
    else:
        key = ["population_a", "population_b", "match"]
        where = {k: i for i, k in enumerate(summary[key].itertuples(index=False, name=None))}
        ypos = np.array([where[k] for k in per_file[key].itertuples(index=False, name=None)], float)
        jitter = np.random.default_rng(0).uniform(-0.22, 0.22, len(ypos))
        ax.barh(
            np.arange(n), summary["f1_mean"], height=0.7, color="#c6dbef", label="mean over files",
            zorder=1,
        )
        ax.scatter(
            per_file["f1"], ypos + jitter, s=12, color="#08519c", alpha=0.7, label="one file",
            zorder=2, linewidths=0,
        )
        for i, mean in enumerate(summary["f1_mean"]):
            ax.text(1.02, i, format_score(mean, digits=3), va="center", fontsize=8)
        ax.set_yticks(np.arange(n), pair_labels(summary), fontsize=9)
        ax.set_ylim(n - 0.5, -0.5)
        ax.set_xlim(0.0, 1.1)
        ax.set_xticks(np.linspace(0.0, 1.0, 6))
        ax.grid(axis="x", color="#dddddd", zorder=0)
        ax.set_xlabel("F1 = 2|A∩B| / (|A| + |B|), per event (1 when both are empty)")
        fig.legend(loc="outside lower center", ncols=2, frameon=False, fontsize=8)
    n_files = per_file["file"].nunique()
    plural = "" if n_files == 1 else "s"
    ax.set_title(f"Agreement of {a} and {b}: F1 per population ({n_files} file{plural})")
    if path is not None:
        fig.savefig(Path(path), format="png")
    return fig


# ---- mappings from the command line ----------------------------------------------------------
def parse_mapping(items: Iterable[str]) -> dict[str, str]:
    """``A_POP=B_POP`` strings as a mapping.

    Parameters
    ----------
    items
        Each ``A=B``; where ``=`` occurs several times, the split is at the one ``=/``
        (B given as a full path), else the item is ambiguous.

    Returns
    -------
    dict
        ``{A: B}``.

    Raises
    ------
    ValueError
        An item without ``=``, with an empty side, or ambiguous.
    """
    out: dict[str, str] = {}
    for item in items:
        if item.count("=") == 1:
            a, b = item.split("=")
        elif item.count("=/") == 1:
            a, b = item.split("=/")
            b = "/" + b
        else:
            raise ValueError(
                f"--map {item!r}: expected A_POP=B_POP (use --map-file for names with '=')"
            )
        if not a or not b:
            raise ValueError(f"--map {item!r}: both populations must be given")
        out[a] = b
    return out


def read_mapping(path: str | os.PathLike[str]) -> dict[str, str]:
    """A mapping from a CSV file: a header row, then one A population, B population per row.

    Parameters
    ----------
    path
        The CSV file (UTF-8); blank rows are skipped, further columns ignored.

    Returns
    -------
    dict
        ``{A: B}``.

    Raises
    ------
    ValueError
        A row with fewer than two non-empty cells.
    """
    out: dict[str, str] = {}
    with open(path, newline="", encoding="utf-8-sig") as fh:
        reader = csv.reader(fh)
        rows = ((reader.line_num, r) for r in reader if any(c.strip() for c in r))
        next(rows, None)  # the header
        for line, row in rows:
            if len(row) < 2 or not row[0].strip() or not row[1].strip():
                raise ValueError(f"{path}: line {line} needs an A and a B population")
            out[row[0].strip()] = row[1].strip()
    return out
