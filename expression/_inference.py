"""A Numba implementation of pydeseq2's compute seam, following R DESeq2's algorithms.

:class:`NumbaInference` implements :class:`pydeseq2.inference.Inference` with gene-parallel
Numba kernels (:mod:`expression._kernels`) run under :func:`engine.runtime.thread_limit`:

* ``irls``: DESeq2's ridge-penalised IRLS (same start, deviance test and iteration cap; genes
  that do not converge are refitted by L-BFGS-B on the penalised likelihood, as R does);
* ``alpha_mle``: DESeq2's Armijo line search on log(alpha) with the Cox-Reid term, R's rejection
  of non-improving moves and its two-level grid for non-converged genes (with the normal prior
  when ``prior_reg``);
* ``wald_test``: two-sided Wald tests (one-sided and thresholded hypotheses are delegated);
* ``lfc_shrink_nbinom_glm``: pydeseq2's apeGLM-style objective minimised by damped Newton
  steps (never a worse optimum than pydeseq2's L-BFGS-B; LFCs agree to ~1e-3), with the exact
  inverse Hessian at the optimum (pydeseq2 0.5.4 adds the prior's curvature to whole columns of
  its Hessian, so the shrunken standard errors differ);
* rough/moments dispersions, the linear-model means and the gamma GLM of the trend in numpy,
  in R's operation order (see :mod:`expression._dispersion`).

:class:`RDeseqDataSet` overrides the pydeseq2 steps whose orchestration departs from R: R's
exact median-of-ratios size factors and ``rowMeans`` (pydeseq2's differ in the last bits, which
decide knife-edge genes of the dispersion line search), the parametric trend (R's outlier loop
and ``glm`` IRLS, only genes above ``100 * min_disp``), the prior variance (R's MAD constant),
the MAP start (the gene-wise estimate when it is above a tenth of the trend) and the refit of
genes whose Cook's outliers were replaced (through this class, so the refit follows the same
rules).
"""

from __future__ import annotations

import logging
import warnings
from typing import Any, Literal

import numpy as np
import pandas as pd
from pydeseq2.dds import DeseqDataSet
from pydeseq2.default_inference import DefaultInference
from pydeseq2.ds import DeseqStats
from pydeseq2.inference import Inference

from engine.runtime import default_threads, small_or_parallel, thread_limit
from expression import _dispersion as disp
from expression import _kernels as k
from expression._compat import renamed_keywords
from expression._dispersion import MIN_MU

__all__ = [
    "ALT_HYPOTHESES", "NumbaInference", "RDeseqDataSet", "RDeseqStats", "final_counts", "lrt_test",
    "threshold_test",
]

log = logging.getLogger(__name__)

#: Newton stopping rule of the LFC shrinkage (largest gradient component / objective scale).
SHRINK_GTOL = 1e-10
SHRINK_MAXIT = 200


def _design(design_matrix: Any) -> np.ndarray:
    values = design_matrix.to_numpy() if hasattr(design_matrix, "to_numpy") else design_matrix
    return np.ascontiguousarray(values, dtype=np.float64)


class NumbaInference(Inference):
    """pydeseq2's inference routines as gene-parallel Numba kernels (R DESeq2's algorithms).

    Parameters
    ----------
    threads
        Numba threads; default :func:`engine.runtime.default_threads`. (``n_cpus=`` is a
        deprecated spelling.)
    ridge_log2
        Read the Wald test's ``ridge_factor`` as R DESeq2 reads its ``lambda``: a penalty on the
        log2-scale coefficients, i.e. ``ridge_factor / log(2)^2`` on the natural-log scale the
        kernels work in (pydeseq2 applies its 1e-6 on the natural scale directly). The IRLS
        always uses R's ``1e-6 / log(2)^2``. With this, standard errors and p-values equal R's
        to ~1e-12 instead of ~1e-5 for low-count genes.
    """

    @renamed_keywords(n_cpus="threads")
    def __init__(self, threads: int | None = None, *, ridge_log2: bool = True):
        self._threads = default_threads(threads)
        self._ridge_scale = 1.0 / np.log(2.0) ** 2 if ridge_log2 else 1.0

    @property
    def threads(self) -> int:
        """Threads used by the kernels."""
        return self._threads

    @threads.setter
    def threads(self, threads: int | None) -> None:
        self._threads = default_threads(threads)

    # pydeseq2's Inference interface: DeseqDataSet/DeseqStats read and set ``n_cpus``
    @property
    def n_cpus(self) -> int:
        """Threads used by the kernels (pydeseq2's name for :attr:`threads`)."""
        return self._threads

    @n_cpus.setter
    def n_cpus(self, n_cpus: int | None) -> None:
        self._threads = default_threads(n_cpus)

    # numpy parts ------------------------------------------------------------------------------
    def fit_rough_dispersions(self, normed_counts: np.ndarray, design_matrix: Any) -> np.ndarray:
        x = _design(design_matrix)
        if x.shape[0] == x.shape[1]:
            raise ValueError(
                "The number of samples and the number of design variables are equal: no "
                "replicates to estimate the dispersion."
            )
        return disp.rough_dispersions(np.asarray(normed_counts, dtype=np.float64).T, x)

    def fit_moments_dispersions(self, normed_counts: np.ndarray, size_factors: Any) -> np.ndarray:
        normed = np.asarray(normed_counts, dtype=np.float64)
        normed = np.ascontiguousarray(normed[:, ~(normed == 0).all(axis=0)].T)
        mean = disp._r_row_means(normed)
        var = disp._r_row_var(normed)
        sf = np.asarray(size_factors, dtype=np.float64)
        return np.nan_to_num(disp.moments_dispersions(mean, var, sf))

    def lin_reg_mu(
        self, counts: np.ndarray, size_factors: np.ndarray, design_matrix: np.ndarray, min_mu: float
    ) -> np.ndarray:
        sf = np.asarray(size_factors, dtype=np.float64)
        normed = np.asarray(counts, dtype=np.float64).T / sf[None, :]
        mu = disp.linear_model_mu(normed, _design(design_matrix)) * sf[None, :]
        return np.maximum(mu, min_mu).T

    def dispersion_trend_gamma_glm(
        self, covariates: pd.Series, targets: pd.Series
    ) -> tuple[np.ndarray, np.ndarray, bool]:
        cov = np.asarray(covariates, dtype=np.float64)
        y = np.asarray(targets, dtype=np.float64)
        try:
            coefs, converged = disp._gamma_identity_glm(y, cov, np.array([0.1, 1.0]))
        except disp.TrendFitError:
            return np.array([np.nan, np.nan]), np.full(y.shape, np.nan), False
        return coefs, coefs[0] + coefs[1] * cov, bool(converged)

    # Numba parts ------------------------------------------------------------------------------
    def irls(
        self,
        counts: np.ndarray,
        size_factors: np.ndarray,
        design_matrix: np.ndarray,
        disp: np.ndarray,
        min_mu: float,
        beta_tol: float,
        min_beta: float = -30,
        max_beta: float = 30,
        optimizer: Literal["BFGS", "L-BFGS-B"] = "L-BFGS-B",
        maxiter: int = 250,
    ) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
        fit = _fit_glm(counts, size_factors, design_matrix, disp, min_mu, beta_tol, self._threads)
        return fit["beta"], fit["mu"].T, fit["hat"].T, fit["converged"]

    def alpha_mle(
        self,
        counts: np.ndarray,
        design_matrix: np.ndarray,
        mu: np.ndarray,
        alpha_hat: np.ndarray,
        min_disp: float,
        max_disp: float,
        prior_disp_var: float | None = None,
        cr_reg: bool = True,
        prior_reg: bool = False,
        optimizer: Literal["BFGS", "L-BFGS-B"] = "L-BFGS-B",
    ) -> tuple[np.ndarray, np.ndarray]:
        y = np.ascontiguousarray(np.asarray(counts, dtype=np.float64).T)
        m = np.ascontiguousarray(np.asarray(mu, dtype=np.float64).T)
        x = _design(design_matrix)
        start = np.asarray(alpha_hat, dtype=np.float64)
        if prior_reg:
            if prior_disp_var is None:
                raise ValueError("prior_disp_var is required for prior regularization")
            est, converged = _map_search(y, m, x, start, start, float(prior_disp_var), min_disp,
                                         cr_reg, self._threads)
        else:
            est, converged = _mle_search(y, m, x, start, min_disp, max_disp, cr_reg, self._threads)
        return np.clip(est, min_disp, max_disp), converged

    def wald_test(
        self,
        design_matrix: np.ndarray,
        disp: np.ndarray,
        lfc: np.ndarray,
        mu: np.ndarray,
        ridge_factor: np.ndarray,
        contrast: np.ndarray,
        lfc_null: np.ndarray,
        alt_hypothesis: Literal["greaterAbs", "lessAbs", "greater", "less"] | None = None,
    ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        if alt_hypothesis is not None:
            return DefaultInference(n_cpus=1).wald_test(
                design_matrix, disp, lfc, mu, ridge_factor, contrast, lfc_null, alt_hypothesis
            )
        x = _design(design_matrix)
        n_genes = len(disp)
        # R computes the Wald variance with the means floored at minmu (0.5)
        mu_g = np.ascontiguousarray(np.maximum(np.asarray(mu, dtype=np.float64).T, MIN_MU))
        out_p, out_stat, out_se = np.empty(n_genes), np.empty(n_genes), np.empty(n_genes)
        kernel = small_or_parallel(k.wald_normal, n_genes * x.size)
        with thread_limit(self._threads):
            kernel(x, np.ascontiguousarray(disp, dtype=np.float64),
                   np.ascontiguousarray(lfc, dtype=np.float64), mu_g,
                   np.ascontiguousarray(np.asarray(ridge_factor, dtype=np.float64) * self._ridge_scale),
                   np.ascontiguousarray(contrast, dtype=np.float64), float(np.asarray(lfc_null)),
                   out_p, out_stat, out_se)
        return out_p, out_stat, out_se

    def lfc_shrink_nbinom_glm(
        self,
        design_matrix: np.ndarray,
        counts: np.ndarray,
        size: np.ndarray,
        offset: np.ndarray,
        prior_no_shrink_scale: float,
        prior_scale: float,
        optimizer: str,
        shrink_index: int,
    ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        # pydeseq2's objective (normal prior on the other coefficients, Cauchy on the shrunk
        # one) from pydeseq2's starting point, minimised by damped Newton steps in Numba;
        # genes that do not converge are handed to pydeseq2's own optimiser
        x = _design(design_matrix)
        y = np.ascontiguousarray(np.asarray(counts, dtype=np.float64).T)
        n_genes, p = y.shape[0], x.shape[1]
        beta0 = 0.1 * (-1.0) ** np.arange(p)
        lfcs, inv_hess = np.empty((n_genes, p)), np.empty((n_genes, p, p))
        converged = np.empty(n_genes, dtype=np.bool_)
        kernel = small_or_parallel(k.nb_shrink_newton, n_genes * x.size)
        with thread_limit(self._threads):
            kernel(y, x, np.ascontiguousarray(size, dtype=np.float64),
                   np.ascontiguousarray(offset, dtype=np.float64), float(prior_no_shrink_scale),
                   float(prior_scale), int(shrink_index), beta0, SHRINK_GTOL, SHRINK_MAXIT, lfcs,
                   inv_hess, converged)
        if not converged.all():
            rows = np.flatnonzero(~converged)
            log.info("LFC shrinkage: %d gene(s) refitted with pydeseq2's optimiser", rows.size)
            ref = DefaultInference(n_cpus=1).lfc_shrink_nbinom_glm(
                x, np.asarray(counts)[:, rows], np.asarray(size)[rows], offset,
                prior_no_shrink_scale, prior_scale, optimizer, shrink_index,
            )
            lfcs[rows], inv_hess[rows], converged[rows] = ref[0], ref[1], ref[2]
        return lfcs, inv_hess, converged


def _fit_glm(
    counts: np.ndarray, size_factors: Any, design_matrix: Any, alpha: Any, min_mu: float,
    beta_tol: float, threads: int,
) -> dict[str, np.ndarray]:
    y = np.ascontiguousarray(np.asarray(counts, dtype=np.float64).T)
    return disp.fit_nb_glm(y, np.asarray(size_factors, dtype=np.float64), _design(design_matrix),
                           np.asarray(alpha, dtype=np.float64), beta_tol=beta_tol, min_mu=min_mu,
                           threads=threads)


def _mle_search(
    y: np.ndarray, mu: np.ndarray, x: np.ndarray, start: np.ndarray, min_disp: float,
    max_disp: float, use_cr: bool, threads: int,
) -> tuple[np.ndarray, np.ndarray]:
    """Gene-wise MLE as ``estimateDispersionsGeneEst`` after its starting values."""
    res = disp.line_search(y, mu, x, start, min_disp=min_disp, use_cr=use_cr, threads=threads)
    est = np.minimum(disp._libm_exp(res["log_alpha"]), max_disp)
    no_increase = res["last_lp"] < res["initial_lp"] + np.abs(res["initial_lp"]) / 1e6
    est[no_increase] = start[no_increase]
    iters = res["iterations"]
    converged = (iters < disp.MAXIT) & (iters != 1)
    refit = ~converged & (est > min_disp * 10)
    if refit.any():
        est[refit] = disp.grid_search(y[refit], mu[refit], x, use_cr=use_cr, threads=threads)
    return est, converged


def _map_search(
    y: np.ndarray, mu: np.ndarray, x: np.ndarray, start: np.ndarray, prior_mean: np.ndarray,
    prior_var: float, min_disp: float, use_cr: bool, threads: int,
) -> tuple[np.ndarray, np.ndarray]:
    """MAP line search (prior around ``prior_mean``) with the grid for non-converged genes."""
    res = disp.line_search(y, mu, x, start, prior_mean=prior_mean, prior_var=prior_var,
                           min_disp=min_disp, use_cr=use_cr, threads=threads)
    est = disp._libm_exp(res["log_alpha"])
    converged = res["iterations"] < disp.MAXIT
    if (~converged).any():
        est[~converged] = disp.grid_search(y[~converged], mu[~converged], x,
                                           prior_mean=prior_mean[~converged], prior_var=prior_var,
                                           use_cr=use_cr, threads=threads)
    return est, converged


class RDeseqDataSet(DeseqDataSet):
    """pydeseq2's :class:`~pydeseq2.dds.DeseqDataSet` with R DESeq2's trend, prior and MAP steps.

    Use it with :class:`NumbaInference` (``inference=NumbaInference(threads)``); everything else
    (size factors, Cook's distances, outlier refits) is pydeseq2's.
    """

    def _threads(self) -> int:
        return int(getattr(self.inference, "n_cpus", 1) or 1)

    def fit_size_factors(self, fit_type: str | None = None, control_genes: Any = None) -> None:
        """pydeseq2's size factors; for the median-of-ratios ones (the default) R's exact values
        (:func:`expression.size_factors`) replace pydeseq2's, which differ in the last bits,
        and the mean normalised counts are R's ``rowMeans`` (``baseMean``): the gene-wise
        dispersion line search and the trend are decided on those bits."""
        super().fit_size_factors(fit_type=fit_type, control_genes=control_genes)
        used = fit_type if fit_type is not None else self.size_factors_fit_type
        if used != "ratio" or control_genes is not None or (self.X == 0).any(0).all():
            return
        from expression._size_factors import size_factors

        counts = np.asarray(self.X, dtype=np.float64)
        exact = size_factors(counts, method="ratio", orientation="samples_x_genes")
        current = self.obs["size_factors"].to_numpy(dtype=np.float64)
        if not np.allclose(exact, current, rtol=1e-10, atol=0.0):
            return  # not the same estimator (should not happen): keep pydeseq2's
        self.obs["size_factors"] = exact
        self.layers["normed_counts"] = counts / exact[:, None]
        self.var["_normed_means"] = disp._r_row_means(
            np.ascontiguousarray(self.layers["normed_counts"].T))

    def fit_dispersion_trend(self, vst: bool = False) -> None:
        """R's ``estimateDispersionsFit``: parametric (mean when that fails) or mean."""
        if vst:
            super().fit_dispersion_trend(vst=True)
            return
        if "genewise_dispersions" not in self.var:
            self.fit_genewise_dispersions()
        means = self.var["_normed_means"].to_numpy(dtype=np.float64)
        genewise = self.var["genewise_dispersions"].to_numpy(dtype=np.float64)
        try:
            trend = disp.fit_trend(means, genewise, fit_type=self.fit_type, min_disp=self.min_disp)
        except disp.TrendFitError:
            warnings.warn(
                "The dispersion trend curve fitting did not converge. Switching to a "
                "mean-based dispersion trend.", UserWarning, stacklevel=2,
            )
            trend = disp.fit_trend(means, genewise, fit_type="mean", min_disp=self.min_disp)
        self.uns["disp_function_type"] = trend.fit_type
        if trend.fit_type == "parametric":
            self.uns["trend_coeffs"] = pd.Series([trend.asympt_disp, trend.extra_pois], index=["a0", "a1"])
        else:
            self.uns["mean_disp"] = trend.mean_disp
        nz = self.var["non_zero"].to_numpy()
        fitted = np.full(self.n_vars, np.nan)
        fitted[nz] = trend(means[nz])
        self.var["fitted_dispersions"] = fitted

    def fit_dispersion_prior(self) -> None:
        """R's ``estimateDispersionsPriorVar``: MAD with R's 1.4826, or R's simulation when the
        residual degrees of freedom are 1 to 3."""
        if "fitted_dispersions" not in self.var:
            self.fit_dispersion_trend()
        nz = self.var["non_zero"].to_numpy()
        n, p = self.obsm["design_matrix"].shape
        if 0 < n - p <= 3:
            log.warning(
                "only %d residual degrees of freedom: the dispersion prior variance is "
                "estimated by R DESeq2's simulation (set.seed(2)), reproduced exactly; results "
                "rest on very few replicates", n - p,
            )
        prior_var, var_log = disp.prior_variance(
            self.var["genewise_dispersions"].to_numpy(dtype=np.float64)[nz],
            self.var["fitted_dispersions"].to_numpy(dtype=np.float64)[nz], n, p,
            min_disp=self.min_disp,
        )
        self.uns["_squared_logres"] = var_log
        self.uns["prior_disp_var"] = np.array(prior_var)

    def fit_MAP_dispersions(self) -> None:
        """R's ``estimateDispersionsMAP``: start at the gene-wise estimate unless it is below a
        tenth of the trend, prior around the trend, grid for non-converged genes."""
        if "prior_disp_var" not in self.uns:
            self.fit_dispersion_prior()
        nz = self.var["non_zero"].to_numpy()
        genewise = self.var["genewise_dispersions"].to_numpy(dtype=np.float64)[nz]
        fitted = self.var["fitted_dispersions"].to_numpy(dtype=np.float64)[nz]
        start = np.where(genewise > 0.1 * fitted, genewise, fitted)
        start = np.where(np.isnan(start), fitted, start)
        y = np.ascontiguousarray(np.asarray(self.X, dtype=np.float64)[:, nz].T)
        mu = np.ascontiguousarray(np.asarray(self.layers["_mu_hat"], dtype=np.float64)[:, nz].T)
        est, converged = _map_search(
            y, mu, _design(self.obsm["design_matrix"]), start, fitted,
            float(np.asarray(self.uns["prior_disp_var"])), self.min_disp, True, self._threads(),
        )
        map_disp = np.full(self.n_vars, np.nan)
        map_disp[nz] = np.clip(est, self.min_disp, self.max_disp)
        self.var["MAP_dispersions"] = map_disp
        flags = pd.array([pd.NA] * self.n_vars, dtype="boolean")
        flags[np.flatnonzero(nz)] = converged
        self.var["_MAP_converged"] = flags
        self.var["dispersions"] = self.var["MAP_dispersions"].copy()
        genewise_all = self.var["genewise_dispersions"].to_numpy(dtype=np.float64)
        fitted_all = self.var["fitted_dispersions"].to_numpy(dtype=np.float64)
        with np.errstate(invalid="ignore"):
            self.var["_outlier_genes"] = disp._libm_log(genewise_all) > disp._libm_log(
                fitted_all) + 2 * np.sqrt(self.uns["_squared_logres"])
        self.var.loc[self.var["_outlier_genes"], "dispersions"] = self.var.loc[
            self.var["_outlier_genes"], "genewise_dispersions"
        ]
        if self.low_memory:
            del self.layers["_mu_hat"]

    def _refit_without_outliers(self) -> None:
        """Refit the genes whose Cook's outliers were replaced, as R's ``refitWithoutOutliers``:
        gene-wise dispersions on the replaced counts, the existing trend and prior variance, the
        MAP step started the R way (pydeseq2 refits through a plain ``DeseqDataSet``, whose MAP
        starts at the trend), then the LFCs; Cook's distances of refitted genes are zeroed for
        the replaceable samples."""
        if "replaced" not in self.var:
            self._replace_outliers()
        replaced = self.var["replaced"].to_numpy(dtype=bool)
        sub_counts = self.counts_to_refit
        now_zero = (np.asarray(sub_counts.X) == 0).all(axis=0)
        self.new_all_zeroes_genes = sub_counts.var_names[now_zero]
        refitted = replaced.copy()
        refitted[np.flatnonzero(replaced)[now_zero]] = False
        self.var["refitted"] = refitted
        if now_zero.any():
            self.var.loc[self.new_all_zeroes_genes, "_normed_means"] = 0
            self.varm["LFC"].loc[self.new_all_zeroes_genes, :] = 0
        if not refitted.any():
            return
        kept = sub_counts[:, ~now_zero]
        self.counts_to_refit = kept.copy()
        sub = RDeseqDataSet(
            counts=pd.DataFrame(np.asarray(kept.X), index=kept.obs_names, columns=kept.var_names),
            metadata=self.obs, design=self.design, min_mu=self.min_mu, min_disp=self.min_disp,
            max_disp=self.max_disp, refit_cooks=self.refit_cooks,
            min_replicates=self.min_replicates, beta_tol=self.beta_tol, inference=self.inference,
            quiet=True,
        )
        sf = self.obs["size_factors"].to_numpy(dtype=np.float64)
        sub.obs["size_factors"] = sf
        sub.layers["normed_counts"] = np.asarray(sub.X, dtype=np.float64) / sf[:, None]
        sub.fit_genewise_dispersions()
        means = disp._r_row_means(np.ascontiguousarray(sub.layers["normed_counts"].T))
        sub.var["_normed_means"] = means
        sub.uns["disp_function_type"] = self.uns["disp_function_type"]
        if self.uns["disp_function_type"] == "parametric":
            sub.uns["trend_coeffs"] = self.uns["trend_coeffs"]
            a0, a1 = (float(v) for v in np.asarray(self.uns["trend_coeffs"]))
            sub.var["fitted_dispersions"] = a0 + a1 / means
        else:
            sub.uns["mean_disp"] = self.uns["mean_disp"]
            sub.var["fitted_dispersions"] = np.full(sub.n_vars, float(self.uns["mean_disp"]))
        sub.uns["_squared_logres"] = self.uns["_squared_logres"]
        sub.uns["prior_disp_var"] = self.uns["prior_disp_var"]
        sub.fit_MAP_dispersions()
        sub.fit_LFC()
        names = self.var_names[refitted]
        for column in ("_normed_means", "genewise_dispersions", "fitted_dispersions", "dispersions"):
            self.var.loc[names, column] = sub.var.loc[names, column].to_numpy()
        self.varm["LFC"].loc[names, :] = sub.varm["LFC"].loc[names, :].to_numpy()
        cooks = np.array(self.layers["cooks"], copy=True)
        rows = self.obs["replaceable"].to_numpy(dtype=bool)
        cooks[np.ix_(rows, np.flatnonzero(refitted))] = 0.0
        self.layers["replace_cooks"] = cooks


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
    from scipy.stats import false_discovery_control

    from expression._rlowess import lowess

    lower = float(np.mean(base_mean == 0))
    theta = np.linspace(lower, 0.95 if lower < 0.95 else 1.0, 50)
    cutoffs = np.quantile(base_mean, theta)  # R's type 7, numpy's default
    tested = ~np.isnan(pvalues)
    adjusted = np.full((base_mean.size, theta.size), np.nan)
    for i, cutoff in enumerate(cutoffs):
        use = (base_mean >= cutoff) & tested
        if use.any():
            adjusted[use, i] = false_discovery_control(pvalues[use], method="bh")
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


#: R's ``altHypothesis`` values of ``results(lfcThreshold = ...)``.
ALT_HYPOTHESES = ("greaterAbs", "lessAbs", "greater", "less")


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
    from scipy.stats import norm

    if alt_hypothesis not in ALT_HYPOTHESES:
        raise ValueError(f"alt_hypothesis must be one of {ALT_HYPOTHESES}, got {alt_hypothesis!r}")
    t = float(threshold)
    with np.errstate(divide="ignore", invalid="ignore"):
        if alt_hypothesis == "greaterAbs":
            z = (np.abs(lfc) - t) / se
            return np.sign(lfc) * np.maximum(z, 0.0), np.minimum(1.0, 2.0 * norm.sf(z))
        if alt_hypothesis == "lessAbs":
            above, below = (t - lfc) / se, (lfc + t) / se
            stat = np.minimum(np.maximum(above, 0.0), np.maximum(below, 0.0))
            return stat, np.maximum(norm.sf(above), norm.sf(below))
        if alt_hypothesis == "greater":
            z = (lfc - t) / se
            return np.maximum(z, 0.0), norm.sf(z)
        return np.minimum((lfc + t) / se, 0.0), norm.sf((-t - lfc) / se)


class RDeseqStats(DeseqStats):
    """pydeseq2's :class:`~pydeseq2.ds.DeseqStats` with R DESeq2's ``results()`` rules.

    R's independent filtering (clowess); and, set as attributes before :meth:`summary`:
    ``r_lfc_threshold``/``r_alt_hypothesis`` (R's ``lfcThreshold``/``altHypothesis``),
    ``r_lrt`` (``(stat, pvalue)`` of :func:`lrt_test`: the LRT replaces the Wald statistic and
    p-value, the log2 fold change stays the contrast's) and ``r_contrast_samples`` (a boolean
    per sample: the samples of the contrast's two levels; genes with no count in them get
    ``log2FoldChange = 0``, ``stat = 0``, ``pvalue = 1`` as R's ``cleanContrast``).
    """

    r_lfc_threshold: float = 0.0
    r_alt_hypothesis: str = "greaterAbs"
    r_lrt: tuple[np.ndarray, np.ndarray] | None = None
    r_contrast_samples: np.ndarray | None = None

    def contrast_all_zero(self) -> np.ndarray:
        """Genes (not all-zero) without a count in the contrast's samples (R's
        ``contrastAllZero``)."""
        if self.r_contrast_samples is None:
            return np.zeros(self.dds.n_vars, dtype=bool)
        counts = final_counts(self.dds)[np.asarray(self.r_contrast_samples, dtype=bool)]
        return (counts == 0).all(axis=0) & self.dds.var["non_zero"].to_numpy(dtype=bool)

    def run_wald_test(self) -> None:
        super().run_wald_test()
        zero = self.contrast_all_zero()
        lfc = (self.LFC.to_numpy() @ np.asarray(self.contrast_vector, dtype=np.float64)) / np.log(2)
        lfc[zero] = 0.0
        self.r_lfc = pd.Series(lfc, index=self.dds.var_names)
        stat = self.statistics.to_numpy(dtype=np.float64).copy()
        pvalue = self.p_values.to_numpy(dtype=np.float64).copy()
        stat[zero], pvalue[zero] = 0.0, 1.0
        if self.r_lfc_threshold > 0 or self.r_alt_hypothesis != "greaterAbs":
            se = self.SE.to_numpy(dtype=np.float64) / np.log(2)
            stat, pvalue = threshold_test(lfc, se, self.r_lfc_threshold, self.r_alt_hypothesis)
        if self.r_lrt is not None:
            stat, pvalue = (np.array(v, dtype=np.float64, copy=True) for v in self.r_lrt)
        if self.dds.refit_cooks and self.dds.var["replaced"].sum() > 0:
            now_zero = self.dds.var_names.get_indexer(self.dds.new_all_zeroes_genes)
            stat[now_zero], pvalue[now_zero] = 0.0, 1.0
            self.r_lfc.iloc[now_zero] = 0.0
        self.statistics = pd.Series(stat, index=self.dds.var_names)
        self.p_values = pd.Series(pvalue, index=self.dds.var_names)

    def summary(self, **kwargs: Any) -> None:
        super().summary(**kwargs)
        if hasattr(self, "r_lfc"):
            self.results_df["log2FoldChange"] = self.r_lfc

    def _independent_filtering(self) -> None:
        if not hasattr(self, "p_values"):
            self.run_wald_test()
        padj, _ = r_filter_threshold(
            self.base_mean.to_numpy(dtype=np.float64), self.p_values.to_numpy(dtype=np.float64),
            self.alpha,
        )
        self.padj = pd.Series(padj, index=self.dds.var_names)



def final_counts(dds: DeseqDataSet) -> np.ndarray:
    """Samples x genes counts as R's ``counts(dds)`` after ``DESeq``: the Cook's-outlier
    replacement counts for the refitted genes, the original counts elsewhere."""
    counts = np.array(np.asarray(dds.X), dtype=np.float64, copy=True)
    if "refitted" in dds.var and bool(dds.var["refitted"].any()) and hasattr(dds, "counts_to_refit"):
        sub = dds.counts_to_refit
        cols = dds.var_names.get_indexer(sub.var_names)
        counts[:, cols] = np.asarray(sub.X, dtype=np.float64)
    return counts


def lrt_test(
    dds: DeseqDataSet, reduced_matrix: np.ndarray, *, threads: int | None = None
) -> tuple[np.ndarray, np.ndarray, int]:
    """R DESeq2's ``nbinomLRT`` on a fitted data set: ``(stat, pvalue, df)`` per gene.

    Both models are fitted by DESeq2's IRLS (``fitNbinomGLMs``: same start, ridge ``1e-6`` on the
    log2 scale, L-BFGS-B for non-converged rows) at the final dispersions, on the counts R tests
    (Cook's replacement counts for refitted genes); an intercept-only reduced model takes R's
    closed form (``log2`` of the mean normalised count). The statistic is twice the difference of
    the NB log-likelihoods (``mu`` not floored, as R; floored at ``minmu`` for rows refitted by
    L-BFGS-B, as R's ``fitNbinomGLMsOptim``); the p-value is the upper chi-squared tail with
    ``df = p_full - p_reduced``. All-zero genes get NaN.
    """
    from scipy.stats import chi2

    x_full = _design(dds.obsm["design_matrix"])
    x_red = _design(reduced_matrix)
    df = x_full.shape[1] - x_red.shape[1]
    if df < 1:
        raise ValueError("the reduced design must have fewer coefficients than the full design")
    nz = dds.var["non_zero"].to_numpy(dtype=bool)
    y = np.ascontiguousarray(final_counts(dds)[:, nz].T)
    sf = dds.obs["size_factors"].to_numpy(dtype=np.float64)
    alpha = dds.var["dispersions"].to_numpy(dtype=np.float64)[nz]
    used = default_threads(threads)

    def loglike(x: np.ndarray) -> np.ndarray:
        if x.shape[1] == 1 and (x == 1.0).all():
            beta = np.log2((y / sf[None, :]).mean(axis=1))
            mu = sf[None, :] * (2.0 ** beta)[:, None]
            return disp.nb_log_likelihood(y, mu, alpha)
        fit = disp.fit_nb_glm(y, sf, x, alpha, min_mu=MIN_MU, threads=used)
        mu = np.where(fit["optim"][:, None], np.maximum(fit["mu_raw"], MIN_MU), fit["mu_raw"])
        return disp.nb_log_likelihood(y, mu, alpha)

    stat_nz = 2.0 * (loglike(x_full) - loglike(x_red))
    stat = np.full(dds.n_vars, np.nan)
    stat[nz] = stat_nz
    pvalue = np.full(dds.n_vars, np.nan)
    pvalue[nz] = chi2.sf(stat_nz, df)
    return stat, pvalue, df
