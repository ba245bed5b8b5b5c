"""The statistics layer: paired pre/post tests, subgroups and Benjamini-Hochberg over tidy tables.

Correlations live in :mod:`engine._stats._corr`.

Conventions (kept identical to R where R has one):

- Differences are ``post - pre``; the Wilcoxon statistic is R's ``V`` (the sum of the ranks of the
  positive differences) and the paired t statistic is ``t.test(post, pre, paired = TRUE)``'s.
- Zero differences are dropped before ranking (R's ``wilcox.test``, scipy's ``zero_method="wilcox"``);
  ``zero_method="pratt"`` ranks them and then ignores their ranks.
- Small samples (at most ``exact_max`` non-zero differences, default 50) get an exact P. Without ties
  it is scipy's exact signed-rank distribution (equal to R's ``psignrank``); with tied ranks it is the
  exact sign-flip permutation distribution of ``V`` on mid-ranks (R falls back to the normal
  approximation there). Larger samples get the normal approximation with continuity correction and
  the tie-corrected variance (R's ``exact = FALSE, correct = TRUE``).
- Missing values are dropped pairwise; every result reports the ``n`` it used.
"""

from __future__ import annotations

import dataclasses
import logging
import warnings
from collections.abc import Sequence
from typing import Literal

import numpy as np
import pandas as pd
from numpy.typing import ArrayLike
from scipy import stats

__all__ = [
    "PairedTest",
    "Summary",
    "bh_adjust",
    "paired_test",
    "paired_tests",
    "subgroup_summary",
]

logger = logging.getLogger(__name__)

PairedMethod = Literal["wilcoxon", "t"]
_SUMMARY_FIELDS = ("n", "mean", "sd", "sem", "median", "q1", "q3")


@dataclasses.dataclass(frozen=True)
class Summary:
    """Descriptive statistics of one sample (NaN-free values).

    Attributes
    ----------
    n
        Number of values.
    mean, sd, sem
        Mean, standard deviation (n - 1 denominator) and standard error ``sd / sqrt(n)``
        (NaN when ``n < 2``).
    median, q1, q3
        Median and quartiles (linear interpolation, R's default ``type = 7``).
    """

    n: int
    mean: float
    sd: float
    sem: float
    median: float
    q1: float
    q3: float


@dataclasses.dataclass(frozen=True)
class PairedTest:
    """A paired pre/post test.

    Attributes
    ----------
    n
        Pairs used (pairs with a missing value dropped; zero differences are still counted here).
    method
        Human-readable test name, e.g. ``"Wilcoxon signed-rank, exact"``.
    statistic
        R's ``V`` (Wilcoxon) or ``t`` (paired t); NaN when the test is undefined.
    pvalue
        Two-sided P; NaN when the test is undefined.
    pre, post, diff
        :class:`Summary` of the pre values, post values and differences ``post - pre`` of the pairs used.
    statistic_name
        ``"V"`` or ``"t"``.
    df
        Degrees of freedom of the t test (NaN for Wilcoxon).
    note
        Why the statistic is NaN (empty otherwise).
    """

    n: int
    method: str
    statistic: float
    pvalue: float
    pre: Summary
    post: Summary
    diff: Summary
    statistic_name: str = ""
    df: float = float("nan")
    note: str = ""


def _summary(values: np.ndarray) -> Summary:
    n = int(values.size)
    if n == 0:
        return Summary(0, *([float("nan")] * 6))
    sd = float(np.std(values, ddof=1)) if n > 1 else float("nan")
    q1, median, q3 = (float(q) for q in np.quantile(values, [0.25, 0.5, 0.75]))
    return Summary(n, float(np.mean(values)), sd, float(sd / np.sqrt(n)), median, q1, q3)


def _as_vector(values: ArrayLike, name: str) -> np.ndarray:
    try:
        array = np.asarray(values, dtype=float)
    except (TypeError, ValueError) as error:
        raise ValueError(f"{name}: values must be numeric ({error})") from error
    if array.ndim != 1:
        raise ValueError(f"{name}: expected a 1-D sequence, got shape {array.shape}")
    return array


def _signed_rank_exact_pvalue(ranks: np.ndarray, positive: np.ndarray) -> tuple[float, float]:
    """Exact two-sided P of ``V`` under all ``2**k`` sign flips of the (mid-)ranks.

    Mid-ranks are multiples of 1/2, so doubled ranks are integers and the null distribution of
    ``2 V`` is the polynomial product ``prod_i (1 + x**(2 r_i))``; the counts stay below 2**53
    for k <= 52 and are therefore exact in float64.
    """
    doubled = np.rint(2 * ranks).astype(np.int64)
    counts = np.zeros(int(doubled.sum()) + 1)
    counts[0] = 1.0
    top = 0
    for step in doubled:
        counts[step : top + step + 1] += counts[: top + 1].copy()
        top += step
    total = counts.sum()
    v2 = int(doubled[positive].sum())
    lower = counts[: v2 + 1].sum() / total
    upper = counts[v2:].sum() / total
    return v2 / 2.0, float(min(1.0, 2.0 * min(lower, upper)))


def _wilcoxon(diff: np.ndarray, *, zero_method: str, exact_max: int) -> tuple[float, float, str, str]:
    if zero_method not in ("wilcox", "pratt"):
        raise ValueError(f"zero_method must be 'wilcox' or 'pratt', got {zero_method!r}")
    zeros = int(np.count_nonzero(diff == 0))
    if zeros == diff.size:
        return np.nan, np.nan, "Wilcoxon signed-rank", "all differences are zero"
    ranked = diff[diff != 0] if zero_method == "wilcox" else diff
    ranks = stats.rankdata(np.abs(ranked))
    nonzero = ranked != 0
    ranks, signs = ranks[nonzero], ranked[nonzero] > 0
    k = int(ranks.size)
    ties = bool(np.unique(ranks).size < k) or (zero_method == "pratt" and zeros > 0)
    v = float(ranks[signs].sum())
    if k <= exact_max:
        if ties:
            v, pvalue = _signed_rank_exact_pvalue(ranks, signs)
            tied = np.unique(ranks).size < k
            method = "Wilcoxon signed-rank, exact (permutation" + (
                ", mid-ranks for ties)" if tied else ")"
            )
        else:
            result = stats.wilcoxon(ranked[nonzero], method="exact", alternative="two-sided")
            pvalue = float(result.pvalue)
            method = "Wilcoxon signed-rank, exact"
    else:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", UserWarning)  # scipy's notes about zeros/ties
            result = stats.wilcoxon(
                diff, zero_method=zero_method, correction=True, method="approx",
                alternative="two-sided",
            )
        pvalue = float(result.pvalue)
        method = "Wilcoxon signed-rank, normal approximation with continuity correction"
        if ties:
            method += " (tie-corrected variance)"
    if zeros:
        how = "dropped (R's convention)" if zero_method == "wilcox" else "ranked then ignored (Pratt)"
        method += f"; {zeros} zero difference{'s' if zeros > 1 else ''} {how}"
    return v, pvalue, method, ""


def paired_test(
    pre: ArrayLike,
    post: ArrayLike,
    *,
    method: PairedMethod = "wilcoxon",
    zero_method: Literal["wilcox", "pratt"] = "wilcox",
    exact_max: int = 50,
) -> PairedTest:
    """Test post against pre for paired values (two-sided).

    Parameters
    ----------
    pre, post
        Paired values of equal length; a pair with a missing value in either is dropped.
    method
        ``"wilcoxon"`` (signed-rank, the default) or ``"t"`` (paired t).
    zero_method
        Wilcoxon only: ``"wilcox"`` drops zero differences before ranking (R's
        ``wilcox.test``), ``"pratt"`` ranks them and then ignores their ranks.
    exact_max
        Wilcoxon only: the largest number of non-zero differences that gets an exact P
        (tie-aware); above it the normal approximation with continuity correction and
        tie-corrected variance is used. ``exact_max=0`` reproduces R's ``wilcox.test`` for data
        with ties or zeros (R does not compute an exact P there).

    Returns
    -------
    PairedTest
        ``n``, ``method``, ``statistic`` (R's ``V`` or ``t``), ``pvalue`` and summaries. Fewer
        than 2 pairs, all-zero differences (Wilcoxon) or constant differences (t) give NaN
        statistic and P with a ``note``.

    Raises
    ------
    ValueError
        Lengths differ, the values are not numeric or 1-D, or ``method`` is unknown.

    Examples
    --------
    >>> paired_test([1.0, 2.0, 3.0, 4.0, 5.0], [2.0, 4.0, 6.0, 8.0, 10.0]).pvalue
    0.0625
    """
    if method not in ("wilcoxon", "t"):
        raise ValueError(f"method must be 'wilcoxon' or 't', got {method!r}")
    x, y = _as_vector(pre, "pre"), _as_vector(post, "post")
    if x.size != y.size:
        raise ValueError(f"pre and post have different lengths ({x.size} vs {y.size})")
    keep = ~(np.isnan(x) | np.isnan(y))
    x, y = x[keep], y[keep]
    diff = y - x
    n = int(diff.size)
    name = "V" if method == "wilcoxon" else "t"
    base = {"pre": _summary(x), "post": _summary(y), "diff": _summary(diff), "statistic_name": name}
    label = "Wilcoxon signed-rank" if method == "wilcoxon" else "paired t"
    if n < 2:
        note = f"fewer than 2 complete pairs (n = {n})"
        return PairedTest(n, label, np.nan, np.nan, note=note, **base)
    if method == "t":
        if np.ptp(diff) == 0:
            note = "differences are constant (zero variance): t undefined"
            return PairedTest(n, label, np.nan, np.nan, note=note, df=n - 1.0, **base)
        result = stats.ttest_rel(y, x)
        return PairedTest(
            n, label, float(result.statistic), float(result.pvalue), df=n - 1.0, **base
        )
    v, pvalue, label, note = _wilcoxon(diff, zero_method=zero_method, exact_max=exact_max)
    return PairedTest(n, label, v, pvalue, note=note, **base)


def bh_adjust(pvalues: ArrayLike) -> np.ndarray:
    """Benjamini-Hochberg adjusted P values (the step-up FDR, capped at 1).

    Parameters
    ----------
    pvalues
        Raw P values in [0, 1]; NaN stays NaN and is not counted in the number of tests ``m``.

    Returns
    -------
    numpy.ndarray
        Adjusted P values, same shape as the input.

    Raises
    ------
    ValueError
        A P value outside [0, 1] or non-numeric input.

    Examples
    --------
    >>> bh_adjust([0.01, 0.04, np.nan, 0.03]).round(3).tolist()
    [0.03, 0.04, nan, 0.04]
    """
    try:
        p = np.asarray(pvalues, dtype=float)
    except (TypeError, ValueError) as error:
        raise ValueError(f"bh_adjust: P values must be numeric ({error})") from error
    flat = p.ravel()
    out = np.full(flat.shape, np.nan)
    present = ~np.isnan(flat)
    if np.any((flat[present] < 0) | (flat[present] > 1)):
        bad = flat[present][(flat[present] < 0) | (flat[present] > 1)][0]
        raise ValueError(f"bh_adjust: P values must lie in [0, 1], got {bad}")
    if present.any():
        out[present] = stats.false_discovery_control(flat[present], method="bh")
    return out.reshape(p.shape)


def require_columns(table: pd.DataFrame, columns: Sequence[str], what: str) -> None:
    if not isinstance(table, pd.DataFrame):
        raise TypeError(f"{what}: expected a pandas DataFrame, got {type(table).__name__}")
    missing = [c for c in columns if c not in table.columns]
    if missing:
        raise ValueError(
            f"{what}: column(s) {missing} not in the table (columns: {list(table.columns)})"
        )


def _wide(
    table: pd.DataFrame, *, subject: str, time: str, variables: Sequence[str] | None,
    variable: str | None, value: str | None, what: str,
) -> tuple[pd.DataFrame, list[str]]:
    """The table as one row per subject x time and one column per variable."""
    if (variable is None) != (value is None):
        raise ValueError(f"{what}: give both `variable` and `value` for long input, or neither")
    if variable is not None and value is not None:
        require_columns(table, [subject, time, variable, value], what)
        keys = [subject, time, variable]
        if table.duplicated(keys).any():
            raise ValueError(f"{what}: duplicate rows for the same {subject} x {time} x {variable}")
        wide = table.pivot(index=[subject, time], columns=variable, values=value).reset_index()
        wide.columns.name = None
        names = list(pd.unique(table[variable])) if variables is None else list(variables)
    else:
        require_columns(table, [subject, time], what)
        wide = table
        if variables is None:
            names = [
                c for c in table.columns
                if c not in (subject, time) and pd.api.types.is_numeric_dtype(table[c])
                and not pd.api.types.is_bool_dtype(table[c])
            ]
        else:
            names = list(variables)
    require_columns(wide, names, what)
    for name in names:
        if not pd.api.types.is_numeric_dtype(wide[name]):
            raise ValueError(f"{what}: variable {name!r} is not numeric (dtype {wide[name].dtype})")
    if wide.duplicated([subject, time]).any():
        dup = wide.loc[wide.duplicated([subject, time], keep=False), [subject, time]]
        raise ValueError(
            f"{what}: more than one row per {subject} x {time}, e.g. {dup.iloc[0].tolist()}"
        )
    return wide, names


def check_levels(table: pd.DataFrame, time: str, levels: Sequence[str], what: str) -> None:
    present = set(table[time].dropna().unique())
    missing = [level for level in levels if level not in present]
    if missing:
        raise ValueError(
            f"{what}: {time!r} has no rows at level(s) {missing} (levels present: "
            f"{sorted(map(str, present))})"
        )


def _test_rows(
    wide: pd.DataFrame, names: Sequence[str], *, subject: str, time: str, pre: str, post: str,
    method: PairedMethod,
) -> pd.DataFrame:
    before = wide.loc[wide[time] == pre].set_index(subject)
    after = wide.loc[wide[time] == post].set_index(subject)
    subjects = before.index.union(after.index)
    rows = []
    for name in names:
        x = before[name].reindex(subjects).to_numpy(dtype=float)
        y = after[name].reindex(subjects).to_numpy(dtype=float)
        result = paired_test(x, y, method=method)
        row: dict[str, object] = {"variable": name, "n": result.n}
        for part in ("pre", "post", "diff"):
            summary = getattr(result, part)
            row.update({f"{part}_{f}": getattr(summary, f) for f in _SUMMARY_FIELDS})
        row.update(
            statistic=result.statistic, statistic_name=result.statistic_name, df=result.df,
            pvalue=result.pvalue, method=result.method, note=result.note,
        )
        rows.append(row)
    columns = (
        ["variable", "n"]
        + [f"{p}_{f}" for p in ("pre", "post", "diff") for f in _SUMMARY_FIELDS]
        + ["statistic", "statistic_name", "df", "pvalue", "padj", "method", "note"]
    )
    out = pd.DataFrame(rows, columns=[c for c in columns if c != "padj"])
    out.insert(out.columns.get_loc("pvalue") + 1, "padj", bh_adjust(out["pvalue"].to_numpy()))
    return out.reindex(columns=columns)


def paired_tests(
    table: pd.DataFrame,
    *,
    subject: str = "patient",
    time: str = "timepoint",
    pre: str = "pre",
    post: str = "post",
    variables: Sequence[str] | None = None,
    variable: str | None = None,
    value: str | None = None,
    method: PairedMethod = "wilcoxon",
) -> pd.DataFrame:
    """Paired pre/post tests of many variables, with Benjamini-Hochberg over the table.

    Parameters
    ----------
    table
        Wide (rows = subject x time, one column per variable) or, with ``variable`` and
        ``value``, long (one row per subject x time x variable).
    subject, time
        Columns naming the subject and the timepoint.
    pre, post
        The two levels of ``time`` compared (other levels are ignored).
    variables
        Variables to test, in output order; default every numeric column other than
        ``subject``/``time`` (wide) or every ``variable`` level (long).
    variable, value
        Long input: the columns holding the variable name and its value.
    method
        ``"wilcoxon"`` (default) or ``"t"``; see :func:`paired_test`.

    Returns
    -------
    pandas.DataFrame
        One row per variable: ``variable``, ``n`` (complete pairs), ``pre_*``, ``post_*``,
        ``diff_*`` (``post - pre``) summaries (``n``, ``mean``, ``sd``, ``sem``, ``median``,
        ``q1``, ``q3``; over the complete pairs), ``statistic``, ``statistic_name``, ``df``,
        ``pvalue``, ``padj`` (BH over this table's rows), ``method`` and ``note``.

    Raises
    ------
    ValueError
        A named column is missing, a variable is not numeric, a subject has two rows at one
        timepoint, or ``pre``/``post`` has no rows.
    """
    what = "paired_tests"
    wide, names = _wide(
        table, subject=subject, time=time, variables=variables, variable=variable, value=value,
        what=what,
    )
    check_levels(wide, time, [pre, post], what)
    return _test_rows(wide, names, subject=subject, time=time, pre=pre, post=post, method=method)


def subgroup_summary(
    table: pd.DataFrame,
    *,
    by: str,
    variables: Sequence[str],
    subject: str = "patient",
    time: str = "timepoint",
    pre: str = "pre",
    post: str = "post",
    method: PairedMethod = "wilcoxon",
) -> pd.DataFrame:
    """:func:`paired_tests` within each level of a subject-level grouping column.

    Parameters
    ----------
    table
        Wide table (rows = subject x time) holding ``by`` and the ``variables``.
    by
        Subgroup column (e.g. treatment-naive vs maintenance). A subject's level is its one
        non-missing value over its rows; subjects without one are left out.
    variables, subject, time, pre, post, method
        As in :func:`paired_tests`.

    Returns
    -------
    pandas.DataFrame
        :func:`paired_tests`'s columns with ``subgroup`` first; ``padj`` is BH within each
        subgroup. Groups too small to test get NaN statistic and P and a ``note``.

    Raises
    ------
    ValueError
        A named column is missing, or a subject has two different ``by`` values.
    """
    what = "subgroup_summary"
    require_columns(table, [subject, time, by], what)
    wide, names = _wide(
        table, subject=subject, time=time, variables=variables, variable=None, value=None,
        what=what,
    )
    check_levels(wide, time, [pre, post], what)
    levels = wide.dropna(subset=[by]).groupby(subject, sort=False)[by].unique()
    conflicting = levels[levels.map(len) > 1]
    if len(conflicting):
        raise ValueError(
            f"{what}: subject {conflicting.index[0]!r} has more than one {by!r} value "
            f"{list(conflicting.iloc[0])}"
        )
    group_of = wide[subject].map(levels.map(lambda v: v[0]))
    frames = []
    for level in pd.unique(group_of.dropna()):
        part = wide.loc[group_of == level]
        rows = _test_rows(part, names, subject=subject, time=time, pre=pre, post=post, method=method)
        rows.insert(0, "subgroup", level)
        frames.append(rows)
        logger.debug("subgroup %r: %d subjects", level, part[subject].nunique())
    if not frames:
        empty = _test_rows(wide.iloc[:0], [], subject=subject, time=time, pre=pre, post=post,
                           method=method)
        return empty.reindex(columns=["subgroup", *empty.columns])
    return pd.concat(frames, ignore_index=True)
