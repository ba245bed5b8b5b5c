"""DESeq2's dispersion prior variance for 1 to 3 residual degrees of freedom, as R computes it.

With ``m`` samples and ``p`` coefficients, DESeq2 1.38 (``estimateDispersionsPriorVar``) does
not use the moment formula ``var_log - trigamma((m - p) / 2)`` when ``0 < m - p <= 3``: the
sampling distribution of the log dispersion residuals is far from normal there, so it matches
the observed residual distribution by simulation. Its published procedure, reproduced here
with R's own random streams (:mod:`expression._rrandom`) and R's loess
(:mod:`expression._rloess`):

1. keep the residuals ``log(dispGeneEst) - log(dispFit)`` of the genes with
   ``dispGeneEst >= 100 * minDisp`` that lie strictly inside (-10, 10); histogram them on the
   breaks ``-10, -9.5, ..., 10`` as R's ``hist(..., plot = FALSE)$density`` does (right-closed
   bins ``(a, b]``, the first also closed on the left, with R's ``1e-7 * median(width)``
   fuzz on the breaks; density = count / (n * 0.5));
2. ``set.seed(2)``; for each of 200 values ``s2`` in ``seq(0, 8, length = 200)``, draw
   ``log(rchisq(1e4, df)) + rnorm(1e4, 0, sqrt(s2)) - log(df)`` (``rnorm`` with ``sd = 0``
   draws nothing), keep the values inside (-10, 10) and histogram them the same way;
3. the Kullback-Leibler divergence ``sum(obs * (log(obs + small) - log(sim + small)))``,
   ``small`` the smallest positive density of both histograms, summed in extended precision
   as R's ``sum`` does;
4. ``loess(kl ~ s2, span = 0.2)`` predicted on ``seq(0, 8, length = 1000)``; the first grid
   value at the minimum, floored at 0.25, is the prior variance.

Verified against R 4.2.2 / DESeq2 1.38.3 (``tests/expression/test_r_numerics.py``): the
divergences equal R's ``klDivs`` exactly and the prior variance equals
``attr(dispersionFunction(dds), "dispPriorVar")`` on pasilla subsets and simulated paired
designs with 1, 2 and 3 residual degrees of freedom.
"""

from __future__ import annotations

import math

import numpy as np

from engine.runtime import njit
from expression._rloess import loess_fit, loess_predict
from expression._rrandom import EXP_Q, RStream, norm_rand_kernel, rgamma_kernel

__all__ = ["kl_divergences", "r_hist_counts", "small_df_prior_variance"]

#: ``-20:20 / 2``
BREAKS = np.arange(-20, 21, dtype=np.float64) / 2.0
N_DRAWS = 10_000
GRID = 200
FINE_GRID = 1000
MIN_PRIOR_VAR = 0.25


def _r_seq(start: float, stop: float, length: int) -> np.ndarray:
    """R's ``seq(start, stop, length.out = length)``: ``start + i * by`` and ``stop`` itself."""
    by = (stop - start) / (length - 1)
    out = start + np.arange(length, dtype=np.float64) * by
    out[-1] = stop
    return out


def _fuzzy_breaks(breaks: np.ndarray) -> np.ndarray:
    """R's ``hist.default`` breaks for ``right = TRUE, include.lowest = TRUE``."""
    widths = np.diff(breaks)
    nb = breaks.shape[0]
    if nb > 5:
        diddle = 1e-7 * float(np.median(widths))
    else:  # pragma: no cover - DESeq2 always has 41 breaks
        diddle = 1e-7 * float(np.min(widths[widths > 0]))
    fuzz = np.full(nb, diddle)
    fuzz[0] = -diddle
    return breaks + fuzz


@njit()
def _bin_count(x: np.ndarray, fbreaks: np.ndarray, counts: np.ndarray) -> int:
    """R's ``C_BinCount`` (right-closed, lowest included); returns the number of finite x."""
    nb1 = fbreaks.shape[0] - 1
    for k in range(nb1):
        counts[k] = 0
    n_finite = 0
    for i in range(x.shape[0]):
        xi = x[i]
        if not math.isfinite(xi):
            continue
        n_finite += 1
        lo = 0
        hi = nb1
        if fbreaks[lo] <= xi and (xi < fbreaks[hi] or xi == fbreaks[hi]):
            while hi - lo >= 2:
                mid = (hi + lo) // 2
                if xi > fbreaks[mid]:
                    lo = mid
                else:
                    hi = mid
            counts[lo] += 1
    return n_finite


def r_hist_counts(values: np.ndarray, *, breaks: np.ndarray = BREAKS) -> tuple[np.ndarray, int]:
    """Counts of R's ``hist(values, breaks, plot = FALSE)`` and the number of finite values.

    Parameters
    ----------
    values
        Data (non-finite values are ignored, as in R).
    breaks
        Increasing break points.

    Returns
    -------
    tuple
        ``(counts, n)``; R's density is ``counts / (n * diff(breaks))``.

    Examples
    --------
    >>> counts, n = r_hist_counts(np.array([-0.5, 0.0, 0.25, 0.5]))  # bins (a, b]
    >>> int(counts[18]), int(counts[19]), int(counts[20]), n
    (1, 1, 2, 4)
    """
    x = np.ascontiguousarray(values, dtype=np.float64).ravel()
    counts = np.zeros(breaks.shape[0] - 1, dtype=np.int64)
    n = _bin_count(x, _fuzzy_breaks(np.asarray(breaks, dtype=np.float64)), counts)
    return counts, n


@njit()
def _simulated_counts(state: np.ndarray, q_exp: np.ndarray, df: float, grid: np.ndarray,
                      n_draws: int, lo: float, hi: float, fbreaks: np.ndarray,
                      counts: np.ndarray, n_kept: np.ndarray) -> None:
    """Histogram counts of DESeq2's simulated residuals for every grid variance.

    Draws in R's order: ``rchisq(n_draws, df)`` then ``rnorm(n_draws, 0, sqrt(s2))``.
    """
    chisq = np.empty(n_draws)
    vals = np.empty(n_draws)
    log_df = math.log(df)
    nb1 = fbreaks.shape[0] - 1
    for g in range(grid.shape[0]):
        for i in range(n_draws):
            chisq[i] = rgamma_kernel(state, q_exp, df / 2.0, 2.0)
        sd = math.sqrt(grid[g])
        for i in range(n_draws):
            c = chisq[i]
            lc = math.log(c) if c > 0.0 else (-math.inf if c == 0.0 else math.nan)
            z = 0.0 if sd == 0.0 else 0.0 + sd * norm_rand_kernel(state)
            vals[i] = lc + z - log_df
        kept = 0
        for k in range(nb1):
            counts[g, k] = 0
        for i in range(n_draws):
            v = vals[i]
            if v > lo and v < hi:
                kept += 1
                b_lo = 0
                b_hi = nb1
                if fbreaks[b_lo] <= v and (v < fbreaks[b_hi] or v == fbreaks[b_hi]):
                    while b_hi - b_lo >= 2:
                        mid = (b_hi + b_lo) // 2
                        if v > fbreaks[mid]:
                            b_lo = mid
                        else:
                            b_hi = mid
                    counts[g, b_lo] += 1
        n_kept[g] = kept


@njit()
def _kl_terms(obs: np.ndarray, sim: np.ndarray, terms: np.ndarray) -> None:
    """Per-bin terms ``obs * (log(obs + small) - log(sim + small))`` for each grid row."""
    nb = obs.shape[0]
    for g in range(sim.shape[0]):
        small = math.inf
        for k in range(nb):
            if obs[k] > 0.0 and obs[k] < small:
                small = obs[k]
            if sim[g, k] > 0.0 and sim[g, k] < small:
                small = sim[g, k]
        for k in range(nb):
            terms[g, k] = obs[k] * (math.log(obs[k] + small) - math.log(sim[g, k] + small))


def _r_sum(values: np.ndarray) -> float:
    """R's ``sum``: sequential accumulation in long double, rounded once to double."""
    acc = np.longdouble(0.0)
    for v in values:
        acc = acc + np.longdouble(v)
    return float(acc)


def kl_divergences(residuals: np.ndarray, df: int, *, seed: int = 2) -> tuple[np.ndarray,
                                                                              np.ndarray]:
    """DESeq2's KL divergences between the observed and simulated residual histograms.

    Parameters
    ----------
    residuals
        Log dispersion residuals of the genes above ``100 * minDisp``.
    df
        Residual degrees of freedom ``m - p`` (1, 2 or 3 in DESeq2).
    seed
        R's seed (DESeq2 uses 2).

    Returns
    -------
    tuple of numpy.ndarray
        ``(grid, kl)``: the 200 simulated variances ``seq(0, 8, length = 200)`` and R's
        ``klDivs``.

    Examples
    --------
    >>> rng = np.random.default_rng(0)
    >>> grid, kl = kl_divergences(rng.normal(0.0, 1.0, 2000), 2)
    >>> grid.shape, kl.shape
    ((200,), (200,))
    """
    if df <= 0:
        raise ValueError(f"df must be positive, got {df}")
    res = np.asarray(residuals, dtype=np.float64).ravel()
    lo, hi = float(BREAKS[0]), float(BREAKS[-1])
    with np.errstate(invalid="ignore"):
        obs_vals = res[(res > lo) & (res < hi)]
    obs_counts, n_obs = r_hist_counts(obs_vals)
    if n_obs == 0:
        raise ValueError("no finite residuals inside (-10, 10)")
    widths = np.diff(BREAKS)
    obs_dens = obs_counts / (float(n_obs) * widths)
    grid = _r_seq(0.0, 8.0, GRID)
    fbreaks = _fuzzy_breaks(BREAKS)
    sim_counts = np.zeros((GRID, BREAKS.shape[0] - 1), dtype=np.int64)
    n_kept = np.zeros(GRID, dtype=np.int64)
    rng = RStream(seed)
    _simulated_counts(rng.state, EXP_Q, float(df), grid, N_DRAWS, lo, hi, fbreaks,
                      sim_counts, n_kept)
    sim_dens = sim_counts / (n_kept[:, None].astype(np.float64) * widths[None, :])
    terms = np.empty_like(sim_dens)
    _kl_terms(np.ascontiguousarray(obs_dens), np.ascontiguousarray(sim_dens), terms)
    kl = np.array([_r_sum(row) for row in terms])
    return grid, kl


def small_df_prior_variance(residuals: np.ndarray, df: int, *, seed: int = 2) -> float:
    """DESeq2's simulation-matched dispersion prior variance for ``0 < m - p <= 3``.

    Parameters
    ----------
    residuals
        ``log(dispGeneEst) - log(dispFit)`` of the genes (not all-zero) whose gene-wise
        dispersion is at least ``100 * minDisp``; non-finite values are ignored.
    df
        Residual degrees of freedom ``m - p``.
    seed
        R's seed (DESeq2 uses 2).

    Returns
    -------
    float
        R's ``dispPriorVar``: the loess argmin of the KL curve on ``seq(0, 8, length = 1000)``,
        at least 0.25.

    Examples
    --------
    >>> rng = np.random.default_rng(1)
    >>> v = small_df_prior_variance(rng.normal(0.0, 1.5, 3000), 3)
    >>> 0.25 <= v <= 8.0
    True
    """
    grid, kl = kl_divergences(residuals, df, seed=seed)
    fit = loess_fit(grid, kl, span=0.2)
    fine = _r_seq(0.0, 8.0, FINE_GRID)
    fitted = loess_predict(fit, fine)
    arg = float(fine[int(np.nanargmin(fitted))])
    return max(arg, MIN_PRIOR_VAR)
