"""R DESeq2's ``DESeq()`` and ``results()`` on plain arrays: phenoflow's own driver.

The steps and their order are R DESeq2 1.38's (``DESeq`` -> ``estimateSizeFactors``,
``estimateDispersionsGeneEst``, ``estimateDispersionsFit``, ``estimateDispersionsPriorVar``,
``estimateDispersionsMAP``, ``nbinomWaldTest``, ``refitWithoutOutliers``; ``results`` ->
``cleanContrast``, Cook's filtering, ``pvalueAdjustment``); the per-gene numerics are the
R-order Numba kernels of :mod:`expression._dispersion` and :mod:`expression._kernels`.
Everything is numpy in, numpy out: no pydeseq2, AnnData or pandas objects on this path, so a
``phenoflow de`` run pays for none of their imports.

Matrices are samples x genes (as R's ``t(counts(dds))``); coefficients are on the natural-log
scale inside the fit and reported on the log2 scale by :func:`wald_results`.
"""

from __future__ import annotations

import logging
import math
from dataclasses import dataclass

import numpy as np

from engine.runtime import default_threads, small_or_parallel, thread_limit
from expression import _dispersion as disp
from expression import _kernels as k
from expression._dispersion import MIN_MU
from expression._multiple import benjamini_hochberg, bh_decreasing

__all__ = [
    "ALT_HYPOTHESES",
    "DeseqFit",
    "WaldColumns",
    "cooks_outliers",
    "deseq",
    "lrt_test",
    "n_or_more_in_cell",
    "r_filter_threshold",
    "shrink_lfc",
    "shrink_nb_glm",
    "threshold_test",
    "wald_results",
]

log = logging.getLogger(__name__)

#: R's ``altHypothesis`` values of ``results(lfcThreshold = ...)``.
ALT_HYPOTHESES = ("greaterAbs", "lessAbs", "greater", "less")

#: DESeq2's ``minReplicatesForReplace``.
MIN_REPLICATES = 7

#: The Wald test's ridge on the log2-scale coefficients (R's ``lambda = 1e-6``).
WALD_RIDGE_LOG2 = 1e-6

#: apeGLM-style shrinkage (pydeseq2's objective): Newton tolerance and iteration cap.
SHRINK_GTOL = 1e-10
SHRINK_MAXIT = 200


@dataclass(frozen=True)
class DeseqFit:
    """One fitted DESeq2 model (R's ``dds`` after ``DESeq``); arrays are read-only views.

    Attributes
    ----------
    counts
        Samples x genes original counts (float64; R's ``counts(dds)``).
    design
        Samples x coefficients model matrix.
    coefficients
        Column names of ``design`` (R's ``resultsNames``).
    size_factors
        R's exact median-of-ratios factors.
    base_mean
        Mean normalised count per gene (after Cook's replacement for refitted genes, as R).
    all_zero
        Genes without a single count.
    genewise, fitted, dispersions
        Gene-wise estimates, the trend at ``base_mean`` and the final (MAP, or gene-wise for
        dispersion outliers) dispersions; NaN for all-zero genes.
    beta
        Genes x coefficients, natural log (NaN rows for all-zero genes).
    beta_converged
        IRLS convergence per gene.
    cooks
        Samples x genes Cook's distances of the first fit.
    cooks_for_max
        The distances R's ``maxCooks`` is taken from (``replaceCooks`` after a refit).
    replaceable
        Samples in cells of at least ``min_replicates`` (R's ``dds$replaceable``).
    replaced, refitted, new_all_zero
        Genes with a Cook's outlier; of those, genes refitted on replaced counts; genes all
        zero after the replacement.
    fit_counts
        Samples x genes counts the final coefficients were fitted on (R's ``replaceCounts``).
    trend
        The dispersion trend.
    prior_var, var_log
        The dispersion prior variance and the variance of the log residuals.
    threads
        Numba threads used.
    """

    counts: np.ndarray
    design: np.ndarray
    coefficients: tuple[str, ...]
    size_factors: np.ndarray
    base_mean: np.ndarray
    all_zero: np.ndarray
    genewise: np.ndarray
    fitted: np.ndarray
    dispersions: np.ndarray
    beta: np.ndarray
    beta_converged: np.ndarray
    cooks: np.ndarray
    cooks_for_max: np.ndarray
    replaceable: np.ndarray
    replaced: np.ndarray
    refitted: np.ndarray
    new_all_zero: np.ndarray
    fit_counts: np.ndarray
    trend: disp.DispersionTrend
    prior_var: float
    var_log: float
    threads: int

    @property
    def n_samples(self) -> int:
        """Number of samples."""
        return int(self.counts.shape[0])

    @property
    def n_genes(self) -> int:
        """Number of genes."""
        return int(self.counts.shape[1])


def n_or_more_in_cell(design: np.ndarray, n: int) -> np.ndarray:
    """Samples whose design row occurs at least ``n`` times (R's ``nOrMoreInCell``).

    Examples
    --------
    >>> n_or_more_in_cell(np.array([[1.0, 0], [1, 0], [1, 1]]), 2).tolist()
    [True, True, False]
    """
    _, inverse, counts = np.unique(np.ascontiguousarray(design), axis=0, return_inverse=True,
                                   return_counts=True)
    return counts[np.ravel(inverse)] >= n


def _r_trimmed_row_means(m: np.ndarray, trim: float) -> np.ndarray:
    """R's ``apply(m, 1, mean, trim = trim)`` (genes x values): sorted, ``floor(n trim)`` cut
    from each end, R's two-pass ``long double`` mean."""
    n = m.shape[1]
    lo = math.floor(n * trim) + 1
    hi = n + 1 - lo
    kept = np.sort(m, axis=1)[:, lo - 1: hi].astype(np.longdouble)
    s = np.cumsum(kept, axis=1)[:, -1] / kept.shape[1]
    t = np.cumsum(kept - s[:, None], axis=1)[:, -1]
    return (s + t / kept.shape[1]).astype(np.float64)


def _robust_moments_dispersions(normed: np.ndarray, design: np.ndarray) -> np.ndarray:
    """R's ``robustMethodOfMomentsDisp`` (genes x samples normalised counts): trimmed cell
    variances where a cell has 3 or more samples, else the trimmed variance; at least 0.04."""
    three = n_or_more_in_cell(design, 3)
    if three.any():
        _, cells = np.unique(np.ascontiguousarray(design), axis=0, return_inverse=True)
        cells = np.ravel(cells)
        trimratio = (1 / 3, 1 / 4, 1 / 8)
        scale = (2.04, 1.86, 1.51)
        estimates = []
        for cell in dict.fromkeys(cells[three].tolist()):
            cols = cells == cell
            size = int(cols.sum())
            which = 0 if size <= 3.5 else (1 if size <= 23.5 else 2)
            sub = normed[:, cols]
            mean = _r_trimmed_row_means(sub, trimratio[which])
            sq = (sub - mean[:, None]) ** 2
            estimates.append(scale[which] * _r_trimmed_row_means(sq, trimratio[which]))
        v = np.max(np.column_stack(estimates), axis=1)
    else:
        mean = _r_trimmed_row_means(normed, 1 / 8)
        v = 1.51 * _r_trimmed_row_means((normed - mean[:, None]) ** 2, 1 / 8)
    m = disp._r_row_means(normed)
    return np.maximum((v - m) / m**2, 0.04)


def _cooks(y: np.ndarray, mu: np.ndarray, hat: np.ndarray, normed: np.ndarray,
           design: np.ndarray) -> np.ndarray:
    """R's ``calculateCooksDistance`` (genes x samples in, genes x samples out)."""
    p = design.shape[1]
    robust = _robust_moments_dispersions(normed, design)
    v = mu + robust[:, None] * mu**2
    pearson_sq = (y - mu) ** 2 / v
    return pearson_sq / p * hat / (1.0 - hat) ** 2


@dataclass(frozen=True)
class _GeneFit:
    """Dispersions and coefficients of a set of genes (rows), as one pass of R's steps."""

    base_mean: np.ndarray
    genewise: np.ndarray
    fitted: np.ndarray
    dispersions: np.ndarray
    beta: np.ndarray
    converged: np.ndarray
    mu: np.ndarray
    hat: np.ndarray


def _fit_genes(y: np.ndarray, sf: np.ndarray, x: np.ndarray, threads: int, *,
               trend: disp.DispersionTrend | None, prior: tuple[float, float] | None,
               fit_type: str) -> tuple[_GeneFit, disp.DispersionTrend, tuple[float, float]]:
    """Gene-wise dispersions, trend (unless given), prior (unless given), MAP dispersions and
    the IRLS coefficients for genes x samples counts ``y`` without all-zero rows."""
    gene = disp.gene_dispersions(y, sf, x, threads=threads)
    means, genewise = gene.base_mean, gene.dispersions
    if trend is None:
        trend = disp.fit_trend_as_requested(means, genewise, fit_type=fit_type, what="DE")
    fitted = trend(means)
    n, p = x.shape
    if prior is None:
        if 0 < n - p <= 3:
            log.warning(
                "only %d residual degrees of freedom: the dispersion prior variance is "
                "estimated by R DESeq2's simulation (set.seed(2)), reproduced exactly; results "
                "rest on very few replicates", n - p,
            )
        prior = disp.prior_variance(genewise, fitted, n, p)
    prior_var, var_log = prior
    map_disp, _ = disp.map_dispersions(y, gene.mu, x, genewise, fitted, prior_var,
                                       threads=threads)
    with np.errstate(invalid="ignore"):
        outlier = disp._libm_log(genewise) > disp._libm_log(fitted) + 2 * math.sqrt(var_log)
    final = np.where(outlier, genewise, map_disp)
    glm = disp.fit_nb_glm(y, sf, x, final, min_mu=MIN_MU, threads=threads)
    fit = _GeneFit(means, genewise, fitted, final, glm["beta"], glm["converged"], glm["mu"],
                   glm["hat"])
    return fit, trend, prior


def _spread(rows: np.ndarray, values: np.ndarray, n_genes: int) -> np.ndarray:
    out = np.full((n_genes, *values.shape[1:]), np.nan)
    out[rows] = values
    return out


def deseq(
    counts: np.ndarray, design: np.ndarray, coefficients: tuple[str, ...] | list[str], *,
    threads: int | None = None, fit_type: str = "parametric",
    min_replicates: int = MIN_REPLICATES,
) -> DeseqFit:
    """R DESeq2's ``DESeq(dds)`` on a samples x genes count matrix and a model matrix.

    Parameters
    ----------
    counts
        Samples x genes non-negative integer counts.
    design
        Samples x coefficients full-rank model matrix (more samples than coefficients).
    coefficients
        The design's column names.
    threads
        Numba threads (default :func:`engine.runtime.default_threads`).
    fit_type
        The dispersion trend, ``"parametric"`` (R's default) or ``"mean"``; a trend that
        cannot be fitted raises :class:`expression._dispersion.TrendFitError` naming the fix
        (see :func:`expression._dispersion.fit_trend_as_requested`).
    min_replicates
        R's ``minReplicatesForReplace``: Cook's outliers are replaced in samples of cells at
        least this large and their genes refitted.

    Returns
    -------
    DeseqFit
        The fitted model.

    Raises
    ------
    ValueError
        A design without residual degrees of freedom or not of full rank.
    expression.CountsError
        Every gene has a zero count (R's error; use size factors of type ``poscounts``).

    Examples
    --------
    >>> rng = np.random.default_rng(0)
    >>> y = rng.negative_binomial(5, 0.05, size=(6, 50))
    >>> x = np.column_stack([np.ones(6), [0, 0, 0, 1, 1, 1]])
    >>> fit = deseq(y, x, ["Intercept", "b"], threads=1)
    >>> fit.beta.shape
    (50, 2)
    """
    from expression._size_factors import size_factors

    y_all = np.ascontiguousarray(np.asarray(counts, dtype=np.float64))
    x = np.ascontiguousarray(np.asarray(design, dtype=np.float64))
    n, p = x.shape
    if n <= p:
        raise ValueError("the number of samples and the number of model coefficients are "
                         "equal: no replicates to estimate the dispersion")
    if np.linalg.matrix_rank(x) < p:
        raise ValueError("the model matrix is not full rank: some coefficients cannot be "
                         "estimated (a variable confounded with another, or a level absent)")
    used = default_threads(threads)
    n_genes = y_all.shape[1]
    sf = size_factors(y_all, method="ratio", orientation="samples_x_genes")
    all_zero = (y_all == 0).all(axis=0)
    nz = np.flatnonzero(~all_zero)
    y = np.ascontiguousarray(y_all[:, nz].T)
    first, trend, prior = _fit_genes(y, sf, x, used, trend=None, prior=None, fit_type=fit_type)
    base_mean = disp._r_row_means(np.ascontiguousarray(y_all.T) / sf[None, :])
    normed = y / sf[None, :]
    cooks_nz = _cooks(y, first.mu, first.hat, normed, x)
    cooks = np.ascontiguousarray(_spread(nz, cooks_nz, n_genes).T)
    genewise = _spread(nz, first.genewise, n_genes)
    fitted = _spread(nz, first.fitted, n_genes)
    dispersions = _spread(nz, first.dispersions, n_genes)
    beta = _spread(nz, first.beta, n_genes)
    converged = np.zeros(n_genes, dtype=bool)
    converged[nz] = first.converged

    # R's replaceOutliers + refitWithoutOutliers
    replaceable = n_or_more_in_cell(x, min_replicates)
    cutoff = _f_quantile(0.99, p, n - p)
    with np.errstate(invalid="ignore"):
        outlier = cooks > cutoff
    replaced = outlier.any(axis=0)
    refitted = np.zeros(n_genes, dtype=bool)
    new_all_zero = np.zeros(n_genes, dtype=bool)
    fit_counts = y_all
    cooks_for_max = cooks
    if replaced.any() and replaceable.any():
        trimmed = _r_trimmed_row_means(np.ascontiguousarray(y_all.T) / sf[None, :], 0.2)
        replacement = np.trunc(trimmed[None, :] * sf[:, None])  # R's as.integer
        fit_counts = y_all.copy()
        swap = outlier & replaceable[:, None]
        fit_counts[swap] = replacement[swap]
        new_all_zero = replaced & (fit_counts == 0).all(axis=0)
        refitted = replaced & ~new_all_zero
        cols = np.flatnonzero(replaced)
        base_mean[cols] = disp._r_row_means(np.ascontiguousarray(fit_counts[:, cols].T)
                                            / sf[None, :])
        if refitted.any():
            rows = np.flatnonzero(refitted)
            sub, _, _ = _fit_genes(np.ascontiguousarray(fit_counts[:, rows].T), sf, x, used,
                                   trend=trend, prior=prior, fit_type=fit_type)
            genewise[rows], fitted[rows] = sub.genewise, sub.fitted
            dispersions[rows], beta[rows] = sub.dispersions, sub.beta
            converged[rows] = sub.converged
            cooks_for_max = cooks.copy()
            cooks_for_max[replaceable] = 0.0
        if new_all_zero.any():
            beta[new_all_zero] = 0.0
        log.info("Cook's outliers: %d gene(s) refitted on replaced counts, %d all zero after "
                 "the replacement", int(refitted.sum()), int(new_all_zero.sum()))
    return DeseqFit(
        counts=y_all, design=x, coefficients=tuple(str(c) for c in coefficients),
        size_factors=sf, base_mean=base_mean, all_zero=all_zero, genewise=genewise,
        fitted=fitted, dispersions=dispersions, beta=beta, beta_converged=converged,
        cooks=cooks, cooks_for_max=cooks_for_max, replaceable=replaceable, replaced=replaced,
        refitted=refitted, new_all_zero=new_all_zero, fit_counts=fit_counts, trend=trend,
        prior_var=float(prior[0]), var_log=float(prior[1]), threads=used,
    )


def _f_quantile(q: float, df1: float, df2: float) -> float:
    """R's ``qf(q, df1, df2)``."""
    from scipy.special import fdtri

    return float(fdtri(df1, df2, q))


def cooks_outliers(fit: DeseqFit) -> np.ndarray:
    """Genes whose p-values R's ``results(cooksCutoff = TRUE)`` sets to NA.

    ``maxCooks`` over the samples in cells of 3 or more (none: no filtering) above
    ``qf(0.99, p, m - p)``, unless 3 or more samples have a higher count than the sample with
    the largest Cook's distance (R's heuristic for low-count outliers).
    """
    n, p = fit.design.shape
    use = n_or_more_in_cell(fit.design, 3)
    if not (n > p and use.any()):
        return np.zeros(fit.n_genes, dtype=bool)
    cutoff = _f_quantile(0.99, p, n - p)
    with np.errstate(invalid="ignore"):
        out = (fit.cooks_for_max[use] > cutoff).any(axis=0)
    cols = np.flatnonzero(out)
    if cols.size:
        top = np.nanargmax(fit.cooks[:, cols], axis=0)
        at_top = fit.counts[top, cols]
        keep = (fit.counts[:, cols] > at_top[None, :]).sum(axis=0) >= 3
        out[cols[keep]] = False
    return out


def r_filter_threshold(base_mean: np.ndarray, pvalues: np.ndarray, alpha: float
                       ) -> tuple[np.ndarray, int]:
    """R DESeq2's independent filtering (``pvalueAdjustment``): BH-adjusted p-values after
    dropping genes below the chosen mean-count quantile, and the chosen theta's index.

    Theta runs over 50 quantiles from the share of all-zero genes to 0.95 (or 1); the number of
    rejections per theta is smoothed by R's ``lowess(f = 1/5)`` (clowess, reproduced exactly by
    :func:`expression._rlowess.lowess`), and the first theta whose rejections exceed the smoothed
    maximum minus the residuals' root mean square is used (the first theta when at most 10
    genes are rejected anywhere).
    """
    from expression._rlowess import lowess

    lower = float(np.mean(base_mean == 0))
    theta = np.linspace(lower, 0.95 if lower < 0.95 else 1.0, 50)
    cutoffs = np.quantile(base_mean, theta)  # R's type 7, numpy's default
    tested = np.flatnonzero(~np.isnan(pvalues))
    # sorted once: each theta's genes in benjamini_hochberg's order are this order's subset
    desc = tested[np.argsort(pvalues[tested], kind="stable")[::-1]]
    adjusted = np.full((base_mean.size, theta.size), np.nan)
    for i, cutoff in enumerate(cutoffs):
        keep = desc[base_mean[desc] >= cutoff]
        if keep.size:
            adjusted[keep, i] = bh_decreasing(pvalues[keep])
    with np.errstate(invalid="ignore"):
        num_rej = (adjusted < alpha).sum(axis=0).astype(np.float64)
    _, fitted = lowess(theta, num_rej, f=1 / 5)
    if num_rej.max() <= 10:
        j = 0
    else:
        residual = num_rej[num_rej > 0] - fitted[num_rej > 0]
        thresh = fitted.max() - np.sqrt(np.mean(residual**2))
        above = np.flatnonzero(num_rej > thresh)
        j = int(above[0]) if above.size else 0
    return adjusted[:, j], j


def _upper_normal(z: np.ndarray) -> np.ndarray:
    from scipy.special import ndtr

    return ndtr(-np.asarray(z, dtype=np.float64))


def threshold_test(
    lfc: np.ndarray, se: np.ndarray, threshold: float, alt_hypothesis: str
) -> tuple[np.ndarray, np.ndarray]:
    """R DESeq2's ``results(lfcThreshold, altHypothesis)`` Wald statistics and p-values.

    ``lfc`` and ``se`` are log2-scale; with ``T = threshold`` and upper normal tails ``Q``:
    ``greaterAbs``: ``sign(lfc) max((|lfc| - T) / se, 0)``, ``min(1, 2 Q((|lfc| - T) / se))``;
    ``lessAbs``: the smaller of ``max((T - lfc) / se, 0)`` and ``max((lfc + T) / se, 0)``, the
    larger of ``Q((T - lfc) / se)`` and ``Q((lfc + T) / se)``; ``greater``:
    ``max((lfc - T) / se, 0)``, ``Q((lfc - T) / se)``; ``less``: ``min((lfc + T) / se, 0)``,
    ``Q((-T - lfc) / se)``.

    Examples
    --------
    >>> stat, p = threshold_test(np.array([2.0, -0.5]), np.array([0.5, 0.5]), 1.0, "greaterAbs")
    >>> stat.tolist(), np.round(p, 6).tolist()
    ([2.0, -0.0], [0.0455, 1.0])
    """
    if alt_hypothesis not in ALT_HYPOTHESES:
        raise ValueError(f"alt_hypothesis must be one of {ALT_HYPOTHESES}, got {alt_hypothesis!r}")
    t = float(threshold)
    q = _upper_normal
    with np.errstate(divide="ignore", invalid="ignore"):
        if alt_hypothesis == "greaterAbs":
            z = (np.abs(lfc) - t) / se
            return np.sign(lfc) * np.maximum(z, 0.0), np.minimum(1.0, 2.0 * q(z))
        if alt_hypothesis == "lessAbs":
            above, below = (t - lfc) / se, (lfc + t) / se
            stat = np.minimum(np.maximum(above, 0.0), np.maximum(below, 0.0))
            return stat, np.maximum(q(above), q(below))
        if alt_hypothesis == "greater":
            z = (lfc - t) / se
            return np.maximum(z, 0.0), q(z)
        return np.minimum((lfc + t) / se, 0.0), q((-t - lfc) / se)


def _wald(fit: DeseqFit, contrast: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Wald p-values, statistics and standard errors (natural log) of ``contrast' beta``."""
    x = fit.design
    p = x.shape[1]
    # R's Wald variance uses the means of the fitted coefficients, floored at minmu
    mu = np.exp(x @ fit.beta.T) * fit.size_factors[:, None]
    mu_g = np.ascontiguousarray(np.maximum(mu.T, MIN_MU))
    ridge = np.diag(np.repeat(WALD_RIDGE_LOG2, p)) * (1.0 / np.log(2.0) ** 2)
    n_genes = fit.n_genes
    out_p, out_stat, out_se = np.empty(n_genes), np.empty(n_genes), np.empty(n_genes)
    kernel = small_or_parallel(k.wald_normal, n_genes * x.size)
    with np.errstate(invalid="ignore"), thread_limit(fit.threads):
        kernel(x, np.ascontiguousarray(fit.dispersions), np.ascontiguousarray(fit.beta), mu_g,
               np.ascontiguousarray(ridge), np.ascontiguousarray(contrast, dtype=np.float64), 0.0,
               out_p, out_stat, out_se)
    return out_p, out_stat, out_se


@dataclass(frozen=True)
class WaldColumns:
    """The columns of one result table (R's ``results()``), natural order of genes."""

    base_mean: np.ndarray
    log2_fold_change: np.ndarray
    lfc_se: np.ndarray
    stat: np.ndarray
    pvalue: np.ndarray
    padj: np.ndarray
    se_natural: np.ndarray


def wald_results(
    fit: DeseqFit, contrast: np.ndarray, *, contrast_samples: np.ndarray | None = None,
    lfc_threshold: float = 0.0, alt_hypothesis: str = "greaterAbs",
    lrt: tuple[np.ndarray, np.ndarray] | None = None, alpha: float = 0.1,
    independent_filtering: bool = True, cooks_filter: bool = True,
) -> WaldColumns:
    """R's ``results(dds, contrast = ...)`` columns.

    Parameters
    ----------
    fit
        From :func:`deseq`.
    contrast
        Contrast vector over the coefficients.
    contrast_samples
        The samples of the contrast's two levels: genes (not all zero) without a count in them
        get ``log2FoldChange = 0``, ``stat = 0``, ``pvalue = 1`` (R's ``cleanContrast``).
    lfc_threshold, alt_hypothesis
        R's ``lfcThreshold`` / ``altHypothesis`` (:func:`threshold_test`).
    lrt
        ``(stat, pvalue)`` of :func:`lrt_test`: replaces the Wald statistic and p-value.
    alpha, independent_filtering, cooks_filter
        As R's ``results``.

    Returns
    -------
    WaldColumns
        The table's columns.
    """
    pvalue, stat, se = _wald(fit, contrast)
    lfc = (fit.beta @ np.asarray(contrast, dtype=np.float64)) / np.log(2)
    if contrast_samples is not None:
        sub = fit.counts[np.asarray(contrast_samples, dtype=bool)]
        zero = (sub == 0).all(axis=0) & ~fit.all_zero
        lfc[zero], stat[zero], pvalue[zero] = 0.0, 0.0, 1.0
    if lfc_threshold > 0 or alt_hypothesis != "greaterAbs":
        stat, pvalue = threshold_test(lfc, se / np.log(2), lfc_threshold, alt_hypothesis)
    if lrt is not None:
        stat, pvalue = (np.array(v, dtype=np.float64, copy=True) for v in lrt)
    if fit.new_all_zero.any():
        gone = fit.new_all_zero
        se, stat, pvalue = se.copy(), np.array(stat, copy=True), np.array(pvalue, copy=True)
        se[gone], stat[gone], pvalue[gone], lfc[gone] = 0.0, 0.0, 1.0, 0.0
    pvalue = np.array(pvalue, dtype=np.float64, copy=True)
    if cooks_filter:
        pvalue[cooks_outliers(fit)] = np.nan
    if independent_filtering:
        padj, _ = r_filter_threshold(fit.base_mean, pvalue, alpha)
    else:
        padj = benjamini_hochberg(pvalue)
    return WaldColumns(fit.base_mean, lfc, se / np.log(2), np.asarray(stat, dtype=np.float64),
                       pvalue, padj, se)


def lrt_test(
    fit: DeseqFit, reduced_matrix: np.ndarray, *, threads: int | None = None
) -> tuple[np.ndarray, np.ndarray, int]:
    """R DESeq2's ``nbinomLRT`` on a fitted model: ``(stat, pvalue, df)`` per gene.

    Both models are fitted by DESeq2's IRLS (``fitNbinomGLMs``: same start, ridge ``1e-6`` on the
    log2 scale, L-BFGS-B for non-converged rows) at the final dispersions, on the counts R tests
    (Cook's replacement counts for refitted genes); an intercept-only reduced model takes R's
    closed form (``log2`` of the mean normalised count). The statistic is twice the difference of
    the NB log-likelihoods (``mu`` not floored, as R; floored at ``minmu`` for rows refitted by
    L-BFGS-B, as R's ``fitNbinomGLMsOptim``); the p-value is the upper chi-squared tail with
    ``df = p_full - p_reduced``. All-zero genes get NaN.
    """
    from scipy.special import chdtrc

    x_full = fit.design
    x_red = np.ascontiguousarray(np.asarray(reduced_matrix, dtype=np.float64))
    df = x_full.shape[1] - x_red.shape[1]
    if df < 1:
        raise ValueError("the reduced design must have fewer coefficients than the full design")
    nz = ~fit.all_zero
    counts = np.where(fit.refitted[None, :], fit.fit_counts, fit.counts)
    y = np.ascontiguousarray(counts[:, nz].T)
    sf = fit.size_factors
    alpha = fit.dispersions[nz]
    used = default_threads(threads)

    def loglike(x: np.ndarray) -> np.ndarray:
        if x.shape[1] == 1 and (x == 1.0).all():
            beta = np.log2((y / sf[None, :]).mean(axis=1))
            mu = sf[None, :] * (2.0 ** beta)[:, None]
            return disp.nb_log_likelihood(y, mu, alpha)
        glm = disp.fit_nb_glm(y, sf, x, alpha, min_mu=MIN_MU, threads=used)
        mu = np.where(glm["optim"][:, None], np.maximum(glm["mu_raw"], MIN_MU), glm["mu_raw"])
        return disp.nb_log_likelihood(y, mu, alpha)

    stat_nz = 2.0 * (loglike(x_full) - loglike(x_red))
    stat = np.full(fit.n_genes, np.nan)
    stat[nz] = stat_nz
    pvalue = np.full(fit.n_genes, np.nan)
    with np.errstate(invalid="ignore"):  # a negative statistic has upper tail 1, as R
        pvalue[nz] = np.where(stat_nz < 0, 1.0, chdtrc(df, np.maximum(stat_nz, 0.0)))
    return stat, pvalue, df


def shrink_nb_glm(
    design: np.ndarray, counts: np.ndarray, size: np.ndarray, offset: np.ndarray,
    prior_no_shrink_scale: float, prior_scale: float, shrink_index: int, *, threads: int,
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """pydeseq2's apeGLM-style MAP coefficients (normal prior on the other coefficients, Cauchy
    on the shrunk one) by damped Newton steps from pydeseq2's start; ``counts`` samples x genes.

    Returns ``(lfcs, inverse Hessians, converged)``; genes that do not converge are handed to
    pydeseq2's own optimiser."""
    x = np.ascontiguousarray(np.asarray(design, dtype=np.float64))
    y = np.ascontiguousarray(np.asarray(counts, dtype=np.float64).T)
    n_genes, p = y.shape[0], x.shape[1]
    beta0 = 0.1 * (-1.0) ** np.arange(p)
    lfcs, inv_hess = np.empty((n_genes, p)), np.empty((n_genes, p, p))
    converged = np.empty(n_genes, dtype=np.bool_)
    kernel = small_or_parallel(k.nb_shrink_newton, n_genes * x.size)
    with thread_limit(threads):
        kernel(y, x, np.ascontiguousarray(size, dtype=np.float64),
               np.ascontiguousarray(offset, dtype=np.float64), float(prior_no_shrink_scale),
               float(prior_scale), int(shrink_index), beta0, SHRINK_GTOL, SHRINK_MAXIT, lfcs,
               inv_hess, converged)
    if not converged.all():
        from pydeseq2.default_inference import DefaultInference

        rows = np.flatnonzero(~converged)
        log.info("LFC shrinkage: %d gene(s) refitted with pydeseq2's optimiser", rows.size)
        ref = DefaultInference(n_cpus=1).lfc_shrink_nbinom_glm(
            x, np.asarray(counts)[:, rows], np.asarray(size)[rows], offset,
            prior_no_shrink_scale, prior_scale, "L-BFGS-B", shrink_index,
        )
        lfcs[rows], inv_hess[rows], converged[rows] = ref[0], ref[1], ref[2]
    return lfcs, inv_hess, converged


def shrink_lfc(fit: DeseqFit, index: int, se_natural: np.ndarray) -> np.ndarray:
    """Shrunk log2 fold changes of coefficient ``index`` (pydeseq2's ``lfc_shrink``: adaptive
    prior scale ``min(sqrt(prior variance), 1)`` fitted on the MLE coefficients and their
    Wald standard errors ``se_natural``); genes without a finite shrunk value keep the MLE."""
    from scipy.optimize import brentq

    lfc = fit.beta[:, index].copy()
    keep = ~np.isnan(lfc)
    s2, d2 = lfc[keep] ** 2, se_natural[keep] ** 2

    def objective(a: float) -> float:
        coeff = 1.0 / (2.0 * (a + d2) ** 2)
        return float(((s2 - d2) * coeff).sum() / coeff.sum() - a)

    min_var, max_var = 1e-6, 400.0
    prior_var = min_var if objective(min_var) < 0 else brentq(objective, min_var, max_var)
    nz = np.flatnonzero(~fit.all_zero)
    lfcs, inv_hess, _ = shrink_nb_glm(
        fit.design, fit.counts[:, nz], 1.0 / fit.dispersions[nz], np.log(fit.size_factors),
        15.0, min(math.sqrt(prior_var), 1.0), index, threads=fit.threads,
    )
    new = lfcs[:, index]
    se_new = np.sqrt(np.abs(inv_hess[:, index, index]))
    ok = np.isfinite(new) & np.isfinite(se_new)
    if (~ok).any():
        log.warning("%d gene(s) had NaN/infinite values during LFC shrinkage: their MLE log "
                    "fold changes are kept", int((~ok).sum()))
    lfc[nz[ok]] = new[ok]
    return lfc / np.log(2)



def warm_kernels() -> None:
    """Load the driver's gene-parallel kernels from Numba's on-disk cache (calling each once on
    a two-gene input of the real argument types), so that a command can do it in a background
    thread while it imports pandas and reads its files: Numba's first loads cost about half a
    second, much of it outside the GIL. Safe to call any number of times; a failure here only
    means the real call loads the kernel itself.

    Examples
    --------
    >>> warm_kernels()
    """
    try:
        y = np.ones((2, 3))
        x = np.ascontiguousarray(np.column_stack([np.ones(3), [0.0, 1.0, 1.0]]))
        k.libm_log(y)
        k.libm_exp(y)
        sf = np.ones(3)
        k.sequential_matmul(y, np.ones((3, 2)), np.empty((2, 2)))
        k.r_row_vars(y, np.empty(2))
        k.sequential_dot(sf, sf)
        alpha = np.full(2, 0.1)
        k.irls_nb(y, sf, x, alpha, np.zeros((2, 2)), np.full(2, 1e-6), 1e-8, 2, MIN_MU,
                  np.empty((2, 2)), np.empty(2, dtype=np.int64), np.empty(2), np.empty((2, 3)),
                  np.empty((2, 2)), np.empty((2, 3)))
        log_a = np.full(2, -2.0)
        k.fit_disp_line_search(y, y, x, log_a, log_a, 1.0, False, True, -20.0, 1.0, 1e-6, 2,
                               np.empty(2), np.empty(2, dtype=np.int64), np.empty(2), np.empty(2))
        k.wald_normal(x, alpha, np.zeros((2, 2)), y, np.eye(2), np.array([0.0, 1.0]), 0.0,
                      np.empty(2), np.empty(2), np.empty(2))
    except Exception:
        log.debug("kernel warm-up failed; the kernels load on first use", exc_info=True)
