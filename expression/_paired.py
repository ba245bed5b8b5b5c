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
- ``wilcoxon_exact="r"`` is R's own rule instead (``wilcox.test(post, pre, paired = TRUE)``
  with its defaults): an exact P only for fewer than 50 non-zero differences without ties or
  zeros, else the normal approximation with continuity correction.
- The paired t test also gives R's confidence interval of the mean difference, and follows
  R's ``t.test`` where it refuses: differences that are constant up to rounding (standard
  error below ``10 * eps * |mean|``: "data are essentially constant") or not finite give NaN
  with a note instead of R's error.

Argument order: ``paired_test(pre, post)`` is R's ``wilcox.test(post, pre, paired = TRUE)`` and
``t.test(post, pre, paired = TRUE)`` -- R takes the later value first, we take pre first; the
differences are ``post - pre`` in both.
"""

from __future__ import annotations

import dataclasses
import logging
from typing import Literal

import numpy as np
from numpy.typing import ArrayLike
from scipy import stats

__all__ = ["PairedMethod", "PairedTest", "Summary", "WilcoxonExact", "paired_test"]

logger = logging.getLogger(__name__)

#: The tests :func:`paired_test` offers.
PairedMethod = Literal["wilcoxon", "t"]
#: When the Wilcoxon P is exact: ``"ties"`` (ours: up to ``exact_max`` non-zero differences,
#: also with ties and zeros) or ``"r"`` (R's ``wilcox.test``: fewer than 50, no ties, no zeros).
WilcoxonExact = Literal["ties", "r"]


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
    estimate
        Paired t: the mean difference (R's ``estimate``); NaN for Wilcoxon.
    ci_low, ci_high, conf_level
        Paired t: R's confidence interval of the mean difference at ``conf_level``; NaN for
        Wilcoxon.
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
    estimate: float = float("nan")
    ci_low: float = float("nan")
    ci_high: float = float("nan")
    conf_level: float = float("nan")


def _summary(values: np.ndarray) -> Summary:
    n = int(values.size)
    if n == 0:
        return Summary(0, *([float("nan")] * 6))
    with np.errstate(invalid="ignore"):  # an infinite value: sd is NaN, as R's sd() gives
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


def _normal_pvalue(v: float, ranks: np.ndarray, correct: bool) -> float:
    """R's normal approximation of ``V``: tie-corrected variance, continuity correction."""
    k = ranks.size
    z = v - k * (k + 1) / 4.0
    _, tie_counts = np.unique(ranks, return_counts=True)
    sigma = np.sqrt(k * (k + 1) * (2 * k + 1) / 24.0
                    - float(np.sum(tie_counts**3 - tie_counts)) / 48.0)
    if sigma == 0:
        return float("nan")
    z = (z - (np.sign(z) * 0.5 if correct else 0.0)) / sigma
    return float(min(1.0, 2.0 * min(stats.norm.cdf(z), stats.norm.sf(z))))


def _wilcoxon(diff: np.ndarray, *, zero_method: str, exact_max: int,
              exact: WilcoxonExact) -> tuple[float, float, str, str]:
    zeros = int(np.count_nonzero(diff == 0))
    if zeros == diff.size:
        return np.nan, np.nan, "Wilcoxon signed-rank", "all differences are zero"
    ranked = diff[diff != 0] if zero_method == "wilcox" else diff
    ranks = stats.rankdata(np.abs(ranked))
    nonzero = ranked != 0
    ranks, signs = ranks[nonzero], ranked[nonzero] > 0
    k = int(ranks.size)
    tied = bool(np.unique(ranks).size < k)
    ties = tied or (zero_method == "pratt" and zeros > 0)
    v = float(ranks[signs].sum())
    use_exact = k <= exact_max if exact == "ties" else (k < 50 and not tied and zeros == 0)
    if use_exact:
        v, pvalue = _signed_rank_exact_pvalue(ranks, signs)
        method = "Wilcoxon signed-rank, exact" + (
            " (permutation, mid-ranks for ties)" if tied
            else " (permutation)" if ties else ""
        )
    else:
        pvalue = _normal_pvalue(v, ranks, correct=True)
        method = "Wilcoxon signed-rank, normal approximation with continuity correction"
        if ties:
            method += " (tie-corrected variance)"
    if zeros:
        how = "dropped (R's convention)" if zero_method == "wilcox" else "ranked then ignored (Pratt)"
        method += f"; {zeros} zero difference{'s' if zeros > 1 else ''} {how}"
    return v, pvalue, method, ""


def _paired_t(diff: np.ndarray, conf_level: float) -> dict[str, float | str]:
    """R's ``t.test(post, pre, paired = TRUE)`` on the differences."""
    n = diff.size
    out: dict[str, float | str] = {"df": n - 1.0, "conf_level": conf_level}
    if not np.isfinite(diff).all():
        out["note"] = "a difference is not finite: t undefined (R stops here)"
        return out
    mean = float(np.mean(diff))
    stderr = float(np.sqrt(np.var(diff, ddof=1) / n))
    out["estimate"] = mean
    if stderr < 10 * np.finfo(float).eps * abs(mean) or stderr == 0:
        out["note"] = "differences are essentially constant: t undefined (R's t.test stops here)"
        return out
    t = mean / stderr
    half = float(stats.t.ppf(0.5 + conf_level / 2.0, n - 1)) * stderr
    out.update(statistic=t, pvalue=float(2.0 * stats.t.sf(abs(t), n - 1)),
               ci_low=mean - half, ci_high=mean + half)
    return out


def paired_test(
    pre: ArrayLike,
    post: ArrayLike,
    *,
    method: PairedMethod = "wilcoxon",
    zero_method: Literal["wilcox", "pratt"] = "wilcox",
    exact_max: int = 50,
    wilcoxon_exact: WilcoxonExact = "ties",
    conf_level: float = 0.95,
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
        tie-corrected variance is used (``wilcoxon_exact="ties"``).
    wilcoxon_exact
        ``"ties"`` (default, above) or ``"r"``: R's ``wilcox.test`` rule (exact only for fewer
        than 50 non-zero differences without ties or zeros; ``exact_max`` is then unused).
    conf_level
        Paired t: level of the confidence interval of the mean difference.

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
    if zero_method not in ("wilcox", "pratt"):
        raise ValueError(f"zero_method must be 'wilcox' or 'pratt', got {zero_method!r}")
    if isinstance(exact_max, bool) or not isinstance(exact_max, int | np.integer) or exact_max < 0:
        raise ValueError(f"exact_max must be an integer >= 0, got {exact_max!r}")
    if wilcoxon_exact not in ("ties", "r"):
        raise ValueError(f"wilcoxon_exact must be 'ties' or 'r', got {wilcoxon_exact!r}")
    if not 0.0 < conf_level < 1.0:
        raise ValueError(f"conf_level must lie in (0, 1), got {conf_level!r}")
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
        fit = _paired_t(diff, conf_level)
        return PairedTest(
            n, label, float(fit.get("statistic", np.nan)), float(fit.get("pvalue", np.nan)),
            df=float(fit["df"]), note=str(fit.get("note", "")),
            estimate=float(fit.get("estimate", np.nan)), ci_low=float(fit.get("ci_low", np.nan)),
            ci_high=float(fit.get("ci_high", np.nan)), conf_level=conf_level, **base,
        )
    v, pvalue, label, note = _wilcoxon(diff, zero_method=zero_method, exact_max=int(exact_max),
                                       exact=wilcoxon_exact)
    return PairedTest(n, label, v, pvalue, note=note, **base)
