"""Correlations with confidence intervals (Pearson, Spearman), per timepoint or pooled.

Confidence intervals use Fisher's z: standard error ``1/sqrt(n-3)`` for Pearson and
Bonett-Wright's ``sqrt((1 + r^2/2)/(n-3))`` for Spearman. Pooling timepoints is an option that
always carries a warning in the output: the points are not independent.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Literal

import numpy as np
import pandas as pd
from scipy import stats

from engine._stats._paired import bh_adjust, check_levels, require_columns

__all__ = ["correlations"]

_NOT_INDEPENDENT = (
    "pooled points are not independent: n = {n} observations from k = {k} subjects "
    "(P and CI assume independence)"
)


def _fisher_ci(r: float, n: int, se: float, confidence: float) -> tuple[float, float]:
    if abs(r) >= 1:
        return r, r
    half = stats.norm.ppf(0.5 + confidence / 2) * se
    z = np.arctanh(r)
    return float(np.tanh(z - half)), float(np.tanh(z + half))


def _correlation_row(
    x: np.ndarray, y: np.ndarray, *, method: str, confidence: float,
) -> dict[str, object]:
    keep = ~(np.isnan(x) | np.isnan(y))
    x, y = x[keep], y[keep]
    n = int(x.size)
    row: dict[str, object] = {
        "n": n, "r": np.nan, "ci_low": np.nan, "ci_high": np.nan, "pvalue": np.nan, "note": "",
    }
    if n < 3:
        row["note"] = f"fewer than 3 complete observations (n = {n})"
        return row
    if np.ptp(x) == 0 or np.ptp(y) == 0:
        row["note"] = "a variable is constant: correlation undefined"
        return row
    if method == "pearson":
        result = stats.pearsonr(x, y)
    else:
        result = stats.spearmanr(x, y)
    r = float(result.statistic)
    row.update(r=r, pvalue=float(result.pvalue))
    if n > 3:
        if method == "pearson":
            se = 1.0 / np.sqrt(n - 3)
        else:
            se = np.sqrt((1.0 + r * r / 2.0) / (n - 3))
        row["ci_low"], row["ci_high"] = _fisher_ci(r, n, se, confidence)
    else:
        row["note"] = "n = 3: no confidence interval (Fisher z needs n > 3)"
    return row


def correlations(
    table: pd.DataFrame,
    *,
    pairs: Sequence[tuple[str, str]],
    method: Literal["spearman", "pearson"] = "spearman",
    subject: str = "patient",
    time: str = "timepoint",
    timepoint: str | None = "pre",
    pool_timepoints: bool = False,
    confidence: float = 0.95,
) -> pd.DataFrame:
    """Correlation with a confidence interval for each pair of columns, with BH over the pairs.

    Parameters
    ----------
    table
        Wide table (rows = subject x time).
    pairs
        ``(x, y)`` column pairs.
    method
        ``"spearman"`` (default) or ``"pearson"``. P is scipy's (t distribution with n - 2 df).
        CI: Fisher z; SE ``1/sqrt(n - 3)`` for Pearson and Bonett-Wright
        ``sqrt((1 + r**2/2)/(n - 3))`` for Spearman.
    subject, time
        Subject and timepoint columns (``time`` is needed only to filter by ``timepoint``;
        ``subject`` is needed when pooling, to count subjects).
    timepoint
        The ``time`` level to use; ``None`` uses every row as given.
    pool_timepoints
        Use every timepoint together (overrides ``timepoint``). The output says the points are
        not independent; the same warning appears whenever a subject contributes more than one
        observation.
    confidence
        Confidence level of the interval.

    Returns
    -------
    pandas.DataFrame
        One row per pair: ``x``, ``y``, ``method``, ``timepoint`` (the level, ``"pooled"`` or
        ``"all"``), ``n`` (complete observations), ``n_subjects``, ``r``, ``ci_low``,
        ``ci_high``, ``ci_method``, ``pvalue``, ``pvalue_method``, ``padj`` (BH over the rows),
        ``warning`` and ``note`` (why r is NaN).

    Raises
    ------
    ValueError
        A column is missing or not numeric, ``method`` is unknown, ``confidence`` is not in
        (0, 1), or ``timepoint`` has no rows.
    """
    what = "correlations"
    if method not in ("spearman", "pearson"):
        raise ValueError(f"{what}: method must be 'spearman' or 'pearson', got {method!r}")
    if not 0 < confidence < 1:
        raise ValueError(f"{what}: confidence must lie in (0, 1), got {confidence}")
    pairs = [tuple(p) for p in pairs]
    if any(len(p) != 2 for p in pairs):
        raise ValueError(f"{what}: every pair must be (x, y), got {pairs}")
    columns = list(dict.fromkeys(c for p in pairs for c in p))
    require_columns(table, columns, what)
    for name in columns:
        if not pd.api.types.is_numeric_dtype(table[name]):
            raise ValueError(f"{what}: column {name!r} is not numeric (dtype {table[name].dtype})")
    if pool_timepoints:
        require_columns(table, [subject], what)
        used, label = table, "pooled"
    elif timepoint is None:
        used, label = table, "all"
    else:
        require_columns(table, [time], what)
        check_levels(table, time, [timepoint], what)
        used, label = table.loc[table[time] == timepoint], str(timepoint)
    ci_method = (
        "Fisher z, SE 1/sqrt(n - 3)" if method == "pearson"
        else "Fisher z, Bonett-Wright SE sqrt((1 + r^2/2)/(n - 3))"
    )
    rows = []
    for x_name, y_name in pairs:
        x = used[x_name].to_numpy(dtype=float)
        y = used[y_name].to_numpy(dtype=float)
        row = {"x": x_name, "y": y_name, "method": method, "timepoint": label}
        row.update(_correlation_row(x, y, method=method, confidence=confidence))
        complete = ~(np.isnan(x) | np.isnan(y))
        k = int(used.loc[complete, subject].nunique()) if subject in used.columns else np.nan
        warning = ""
        if pool_timepoints or (subject in used.columns and k < row["n"]):
            warning = _NOT_INDEPENDENT.format(n=row["n"], k=k)
        row.update(
            n_subjects=k, ci_method=ci_method, pvalue_method="t distribution, n - 2 df",
            warning=warning,
        )
        rows.append(row)
    order = [
        "x", "y", "method", "timepoint", "n", "n_subjects", "r", "ci_low", "ci_high", "ci_method",
        "pvalue", "pvalue_method", "padj", "warning", "note",
    ]
    out = pd.DataFrame(rows, columns=[c for c in order if c != "padj"])
    out["padj"] = bh_adjust(out["pvalue"].to_numpy(dtype=float))
    return out.reindex(columns=order)
