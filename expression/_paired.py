"""Paired pre/post tests of one variable: the paired t test and the exact Wilcoxon signed-rank.

The one implementation of the paired tests in phenoflow: :func:`expression.paired_score_tests`
uses it per gene set and the engine's statistics layer (``engine.paired_test``,
``engine.paired_tests``, ``engine.subgroup_summary``) re-exports it.

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
from typing import Literal

import numpy as np
from numpy.typing import ArrayLike
from scipy import stats

__all__ = ["PairedMethod", "PairedTest", "Summary", "paired_test"]

logger = logging.getLogger(__name__)

#: The tests :func:`paired_test` offers.
PairedMethod = Literal["wilcoxon", "t"]


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
    >>> round(paired_test([1.0, 2.0, 3.0, 4.0], [2.0, 2.5, 5.0, 4.5], method="t").statistic, 4)
    2.8284
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
