"""Correlations with confidence intervals (Pearson, Spearman), per timepoint or pooled.

Confidence intervals use Fisher's z: standard error ``1/sqrt(n-3)`` for Pearson and
Bonett-Wright's ``sqrt((1 + r^2/2)/(n-3))`` for Spearman. Pooling timepoints is an option that
always carries a warning in the output: the points are not independent.

P values follow R's ``cor.test``: Pearson by the t distribution with ``n - 2`` df; Spearman
without ties (and ``n < 1290``) from the distribution of ``S = sum (rank x - rank y)^2`` by
algorithm AS 89 (Best & Roberts 1975: exact enumeration of the permutations for ``n <= 9``,
an Edgeworth series above), with ties by the t approximation. :func:`spearman_pvalue` gives
it alone; ``spearman_p="exact"`` asks for the exact permutation P (``n <= 9`` without ties,
labelled in the output).
"""

from __future__ import annotations

import functools
import itertools
import math
from collections.abc import Sequence
from typing import Literal

import numpy as np
import pandas as pd
from scipy import stats

from engine._stats._paired import bh_adjust, check_levels, require_columns

__all__ = ["correlations", "spearman_pvalue"]

#: AS 89's Edgeworth-series coefficients (Best & Roberts 1975, Applied Statistics 24: 377)
_EDGEWORTH = (0.2274, 0.2531, 0.1745, 0.0758, 0.1033, 0.3932, 0.0879, 0.0151, 0.0072, 0.0831,
              0.0131, 4.6e-4)
#: largest n whose permutation distribution is enumerated (9! = 362,880 permutations)
_EXACT_N = 9


@functools.cache
def _s_distribution(n: int) -> np.ndarray:
    """Counts of ``S = sum (i - p_i)^2`` over all permutations ``p`` of ``1..n``, by S."""
    top = n * (n * n - 1) // 3
    counts = np.zeros(top + 1, dtype=np.int64)
    base = np.arange(1, n + 1)
    for perm in itertools.permutations(range(1, n + 1)):
        counts[int(((base - np.asarray(perm)) ** 2).sum())] += 1
    return counts


def _prho(n: int, s: float, *, lower_tail: bool) -> float:
    """AS 89: ``P[S < s]`` (lower tail) or ``P[S >= s]`` (upper tail) for ``n`` untied ranks."""
    pv = 0.0 if lower_tail else 1.0
    if s <= 0:
        return pv
    top = n * (n * n - 1) / 3.0
    if s > top:
        return 1.0 - pv
    if n <= _EXACT_N:
        counts = _s_distribution(n)
        at_least = int(counts[math.ceil(s):].sum())
        total = math.factorial(n)
        return (total - at_least if lower_tail else at_least) / total
    c = _EDGEWORTH
    b = 1.0 / n
    x = (6.0 * (s - 1.0) * b / (n * n - 1.0) - 1.0) * math.sqrt(1.0 / b - 1.0)
    y = x * x
    u = x * b * (c[0] + b * (c[1] + c[2] * b) + y * (-c[3] + b * (c[4] + c[5] * b) - y * b * (
        c[6] + c[7] * b - y * (c[8] - c[9] * b + y * b * (c[10] - c[11] * y)))))
    y = u / math.exp(y / 2.0)
    pv = (-y if lower_tail else y) + float(stats.norm.cdf(x) if lower_tail else stats.norm.sf(x))
    return min(max(pv, 0.0), 1.0)


def spearman_pvalue(x: np.ndarray, y: np.ndarray, *, exact: bool | None = None
                    ) -> tuple[float, float, str]:
    """Two-sided P of Spearman's rho as R's ``cor.test(x, y, method = "spearman")``.

    Parameters
    ----------
    x, y
        Paired observations without missing values (at least 3).
    exact
        ``None`` (R's default): AS 89 when there are no ties and ``n < 1290``, else the t
        approximation. ``True``: the exact permutation P (only for ``n <= 9`` without ties).
        ``False``: the t approximation.

    Returns
    -------
    tuple
        ``(rho, pvalue, method)`` with ``method`` naming how P was computed.

    Raises
    ------
    ValueError
        ``exact=True`` with ties or ``n > 9``.

    Examples
    --------
    >>> rho, p, how = spearman_pvalue(np.arange(5.0), np.arange(5.0))
    >>> rho, round(p, 6), how
    (1.0, 0.016667, 'exact permutation (AS 89)')
    """
    n = int(x.size)
    rx, ry = stats.rankdata(x), stats.rankdata(y)
    rho = float(np.corrcoef(rx, ry)[0, 1])
    ties = len(np.unique(x)) < n or len(np.unique(y)) < n
    if exact is True and (ties or n > _EXACT_N):
        raise ValueError(
            f"an exact permutation P needs n <= {_EXACT_N} without ties (n = {n}"
            + (", with ties)" if ties else ")")
        )
    use_as89 = (exact is None and not ties and n < 1290) or exact is True
    if use_as89:
        q = (n**3 - n) * (1.0 - rho) / 6.0
        upper = q > (n**3 - n) / 6.0
        p = _prho(n, round(q) + 2 * (not upper), lower_tail=not upper)
        how = ("exact permutation (AS 89)" if n <= _EXACT_N
               else "AS 89 Edgeworth series")
        return rho, min(2.0 * p, 1.0), how
    if abs(rho) >= 1.0:
        return rho, 0.0, "t distribution, n - 2 df"
    t = rho / math.sqrt((1.0 - rho * rho) / (n - 2))
    return rho, float(2.0 * stats.t.sf(abs(t), n - 2)), "t distribution, n - 2 df"

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
    x: np.ndarray, y: np.ndarray, *, method: str, confidence: float, exact: bool | None,
) -> dict[str, object]:
    keep = ~(np.isnan(x) | np.isnan(y))
    x, y = x[keep], y[keep]
    n = int(x.size)
    row: dict[str, object] = {
        "n": n, "r": np.nan, "ci_low": np.nan, "ci_high": np.nan, "pvalue": np.nan, "note": "",
        "pvalue_method": "",
    }
    if n < 3:
        row["note"] = f"fewer than 3 complete observations (n = {n})"
        return row
    if np.ptp(x) == 0 or np.ptp(y) == 0:
        row["note"] = "a variable is constant: correlation undefined"
        return row
    if method == "pearson":
        result = stats.pearsonr(x, y)
        r, pvalue, how = float(result.statistic), float(result.pvalue), "t distribution, n - 2 df"
    else:
        r, pvalue, how = spearman_pvalue(x, y, exact=exact)
    row.update(r=r, pvalue=pvalue, pvalue_method=how)
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
    exact: bool | None = None,
) -> pd.DataFrame:
    """Correlation with a confidence interval for each pair of columns, with BH over the pairs.

    Parameters
    ----------
    table
        Wide table (rows = subject x time).
    pairs
        ``(x, y)`` column pairs.
    method
        ``"spearman"`` (default) or ``"pearson"``. P as R's ``cor.test`` gives it: Pearson by
        the t distribution with n - 2 df, Spearman by :func:`spearman_pvalue`.
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
    exact
        Spearman only, as R's ``exact``: ``None`` (R's rule), ``True`` (exact permutation P;
        ``n <= 9`` without ties) or ``False`` (t approximation). ``pvalue_method`` says which.

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
    if exact not in (None, True, False):
        raise ValueError(f"{what}: exact must be None, True or False, got {exact!r}")
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
        row.update(_correlation_row(x, y, method=method, confidence=confidence, exact=exact))
        complete = ~(np.isnan(x) | np.isnan(y))
        k = int(used.loc[complete, subject].nunique()) if subject in used.columns else np.nan
        warning = ""
        if pool_timepoints or (subject in used.columns and k < row["n"]):
            warning = _NOT_INDEPENDENT.format(n=row["n"], k=k)
        row.update(
            n_subjects=k, ci_method=ci_method, warning=warning,
        )
        rows.append(row)
    order = [
        "x", "y", "method", "timepoint", "n", "n_subjects", "r", "ci_low", "ci_high", "ci_method",
        "pvalue", "pvalue_method", "padj", "warning", "note",
    ]
    out = pd.DataFrame(rows, columns=[c for c in order if c != "padj"])
    out["padj"] = bh_adjust(out["pvalue"].to_numpy(dtype=float))
    return out.reindex(columns=order)
