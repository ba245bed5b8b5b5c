"""The tables of a comparison: their columns, :class:`Comparison`, timing rows and summaries."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import numpy as np
import pandas as pd

__all__ = [
    "ERROR_COLUMNS",
    "PER_FILE_COLUMNS",
    "SUMMARY_COLUMNS",
    "TABLES",
    "TIMING_COLUMNS",
    "UNMATCHED_COLUMNS",
    "Comparison",
    "percent",
    "summarise",
    "timing_row",
    "with_totals",
]

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


def percent(diff: float, base: float) -> float:
    if base:
        return 100.0 * diff / base
    return 0.0 if diff == 0 else float("nan")


def timing_row(
    scope: str, file: str | None, stage: str, label: str, files: int, events: int,
    compile_s: float, apply_s: float, seconds: float,
) -> dict[str, object]:
    return {
        "scope": scope, "file": file, "stage": stage, "label": label, "files": files,
        "events": events, "compile_s": compile_s, "apply_s": apply_s, "seconds": seconds,
        "seconds_per_file": seconds / files if files else np.nan,
        "events_per_s": events / seconds if seconds > 0 else np.nan,
    }


def with_totals(timing: pd.DataFrame) -> pd.DataFrame:
    totals = [
        timing_row(
            "total", None, stage, str(rows["label"].iloc[0]), len(rows), int(rows["events"].sum()),
            rows["compile_s"].sum(min_count=1), rows["apply_s"].sum(min_count=1),
            float(rows["seconds"].sum()),
        )
        for stage, rows in timing.groupby("stage", sort=False)
    ]
    if not totals:
        return timing
    return pd.concat([timing, pd.DataFrame(totals, columns=TIMING_COLUMNS)], ignore_index=True)


def summarise(per_file: pd.DataFrame) -> pd.DataFrame:
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
        percent(d, a) for d, a in zip(summary["difference"], summary["count_a"], strict=True)
    ]
    return summary[SUMMARY_COLUMNS]
