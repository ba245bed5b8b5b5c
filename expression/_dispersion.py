"""DESeq2 dispersion estimation, step for step as R DESeq2 1.38 does it.

* :func:`gene_dispersions` (``estimateDispersionsGeneEst``): rough and moments estimates give the
  starting point (their minimum, clamped to ``[min_disp, max_disp]``); ``mu`` comes from a linear
  model on the normalised counts when the design only has groups (``~ 1``, one-factor designs),
  else from the ridge-penalised NB GLM fitted at the starting dispersions, floored at
  ``min_mu``; the Cox-Reid adjusted likelihood is then maximised by DESeq2's Armijo line search
  on log(alpha); moves that did not raise the log likelihood by a millionth are rejected;
  non-converged genes are refitted on DESeq2's two-level grid; all are clamped.
* :func:`fit_trend` (``estimateDispersionsFit``): the parametric curve ``a0 + a1 / mean``
  fitted as R fits it (``glm(family = Gamma(link = "identity"))`` by IRLS from the previous
  coefficients, genes whose ratio to the curve is outside (1e-4, 15) dropped before each refit,
  stopped when the coefficients move by less than 1e-6 in squared log and the GLM converged), or
  the 0.1%-trimmed mean (``fitType = "mean"``).
* :func:`map_dispersions` (``estimateDispersionsMAP``): the same line search with the normal
  prior on log(alpha) around the trend, started at the gene-wise estimate.

The arithmetic follows R's operation order, not only its formulas, because the line search
decides on log-posterior differences of a few units in the last place (a gene whose first step
is tiny keeps its start or goes to the grid on those bits, and one such gene moves the trend and
every p-value by up to 1e-3): ``baseMean`` is R's ``long double`` ``rowMeans``, ``baseVar``
matrixStats' ``rowVars``, row sums and means ``long double`` as R's; the linear-model means use
R's LINPACK QR and reference-BLAS product order; the IRLS start is R's ``solve(R, Q'y)``; the
trend's gamma GLM is ``glm.fit`` step by step (LINPACK least squares, ``long double`` deviance);
``exp``/``log`` are the C library's (numpy's vectorised ones differ in the last bit). Verified
bit for bit against R 1.38.3 (``tests/expression/test_r_dispersion.py``; on pasilla ``~ condition``
the trend coefficients and prior variance equal R's bits, 99.9% of the gene-wise and 99.8% of the
final dispersions too, and all p-values agree within 3e-13). Still short of R's bits: the
derivative on about 0.2% of genes (one to three units in the last place, not yet explained).
"""

from __future__ import annotations

import functools
import logging
import math
from dataclasses import dataclass

import numpy as np

from engine.runtime import default_threads, small_or_parallel, thread_limit
from expression import _kernels as k

__all__ = [
    "DispersionTrend",
    "GeneDispersions",
    "fit_nb_glm",
    "fit_trend",
    "gene_dispersions",
    "line_search",
    "map_dispersions",
    "nb_log_likelihood",
    "prior_variance",
]

log = logging.getLogger(__name__)

#: DESeq2 defaults.
MIN_DISP = 1e-8
KAPPA_0 = 1.0
DISP_TOL = 1e-6
MAXIT = 100
MIN_MU = 0.5
BETA_TOL = 1e-8
#: DESeq2's ridge on the log2-scale coefficients (``lambda = 1e-6``), on the natural-log scale.
RIDGE_NAT = 1e-6 / math.log(2.0) ** 2
#: R's ``optim`` finite-difference step (``ndeps``) for the L-BFGS-B refits.
R_NDEPS = 1e-3
#: The dispersion-trend fit types a caller can ask for (R's ``fitType`` without ``"local"``).
FIT_TYPES = ("parametric", "mean")


class TrendFitError(ValueError):
    """The dispersion trend cannot be fitted to these counts.

    Raised inside the fits with the numerical reason; :func:`fit_trend_as_requested` raises it
    again with what R would do and the fix (a ``ValueError``: the commands report it in one
    line and exit 2)."""


class DispersionsAtMinimumError(TrendFitError):
    """Every gene-wise dispersion is within two orders of magnitude of the minimum: no trend
    of any type can be fitted (R stops here too)."""


def check_fit_type(fit_type: str) -> None:
    """Refuse a dispersion-trend type other than :data:`FIT_TYPES` (before any fitting).

    Examples
    --------
    >>> check_fit_type("mean")
    """
    if fit_type not in FIT_TYPES:
        raise ValueError(f"fit_type must be one of {FIT_TYPES}, got {fit_type!r}")


@dataclass(frozen=True)
class GeneDispersions:
    """Gene-wise dispersion estimates (``dispGeneEst``) and what they were computed from.

    Attributes
    ----------
    dispersions
        One estimate per gene (NaN for all-zero genes).
    mu
        Genes x samples fitted means used by the line search (NaN rows for all-zero genes).
    iterations
        Line-search iterations per gene (0 for all-zero genes).
    base_mean, base_var
        Row means and variances of the normalised counts.
    all_zero
        Genes without a single count.
    linear_mu
        Whether ``mu`` came from the linear model (group-only design).
    """

    dispersions: np.ndarray
    mu: np.ndarray
    iterations: np.ndarray
    base_mean: np.ndarray
    base_var: np.ndarray
    all_zero: np.ndarray
    linear_mu: bool


@dataclass(frozen=True)
class DispersionTrend:
    """A fitted dispersion trend (``dispersionFunction``).

    Attributes
    ----------
    fit_type
        ``"parametric"`` or ``"mean"``.
    asympt_disp, extra_pois
        Parametric coefficients ``a0`` and ``a1`` of ``a0 + a1 / mean`` (NaN for ``"mean"``).
    mean_disp
        The trimmed mean dispersion (NaN for ``"parametric"``).
    n_used
        Genes that entered the fit.
    """

    fit_type: str
    asympt_disp: float
    extra_pois: float
    mean_disp: float
    n_used: int

    def __call__(self, means: np.ndarray) -> np.ndarray:
        """The trend at ``means``."""
        means = np.asarray(means, dtype=np.float64)
        if self.fit_type == "parametric":
            return self.asympt_disp + self.extra_pois / means
        return np.full_like(means, self.mean_disp)

    def to_dict(self) -> dict[str, float | int | str]:
        """A JSON/h5ad-friendly record."""
        return {
            "fit_type": self.fit_type, "asympt_disp": self.asympt_disp,
            "extra_pois": self.extra_pois, "mean_disp": self.mean_disp, "n_used": self.n_used,
        }


def _libm_log(x: np.ndarray) -> np.ndarray:
    """``log`` of a 1-D array with the C library's ``log`` (R's; numpy's differs in the last
    bit for some arguments)."""
    return k.libm_log(np.ascontiguousarray(x, dtype=np.float64).reshape(1, -1))[0]


def _libm_exp(x: np.ndarray) -> np.ndarray:
    """``exp`` of a 1-D array with the C library's ``exp`` (numpy's differs in the last bit
    for a few percent of arguments)."""
    return k.libm_exp(np.ascontiguousarray(x, dtype=np.float64).reshape(1, -1))[0]


def _r_mean(x: np.ndarray) -> float:
    """R's ``mean``: an extended-precision (x87 ``long double``) sum divided by ``n``, then one
    refinement pass with the mean of the deviations, rounded to double at the end."""
    x = np.asarray(x, dtype=np.float64).astype(np.longdouble)
    n = x.size
    s = np.cumsum(x)[-1] / n  # cumsum: a sequential sum, as R's loop
    t = np.cumsum(x - s)[-1]
    return float(s + t / n)


def _r_row_sums(m: np.ndarray) -> np.ndarray:
    """R's ``rowSums``: each row summed from the first column on in ``long double``."""
    acc = np.zeros(m.shape[0], dtype=np.longdouble)
    for j in range(m.shape[1]):
        acc += m[:, j].astype(np.longdouble)
    return acc.astype(np.float64)


def _r_row_means(m: np.ndarray) -> np.ndarray:
    """R's ``rowMeans`` (DESeq2's ``baseMean``): the ``long double`` row sum divided by the
    number of columns before rounding to double."""
    acc = np.zeros(m.shape[0], dtype=np.longdouble)
    for j in range(m.shape[1]):
        acc += m[:, j].astype(np.longdouble)
    return (acc / m.shape[1]).astype(np.float64)


def _r_row_var(y: np.ndarray, mean: np.ndarray | None = None) -> np.ndarray:
    """matrixStats' ``rowVars`` (DESeq2's ``baseVar``): its own double mean, then the squared
    deviations summed from the first column on, over ``n - 1``. (``mean`` is ignored: the
    double mean differs in the last bits from ``rowMeans``.)"""
    y = np.ascontiguousarray(y, dtype=np.float64)
    out = np.empty(y.shape[0])
    small_or_parallel(k.r_row_vars, y.size)(y, out)
    return out


def _sequential_matmul(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """``a @ b`` with every element summed over the inner index from the first term on, as the
    reference BLAS ``dgemm`` that R uses sums it (numpy's BLAS blocks and reorders)."""
    out = np.empty((a.shape[0], b.shape[1]))
    kernel = small_or_parallel(k.sequential_matmul, out.size * a.shape[1])
    # one overload: C-contiguous and writeable (the cached design QR parts are read-only)
    kernel(np.require(a, np.float64, ["C", "W"]), np.require(b, np.float64, ["C", "W"]), out)
    return out


def _dot(a: np.ndarray, b: np.ndarray) -> float:
    if a.shape != b.shape or a.ndim != 1:
        raise ValueError(f"_dot needs two vectors of one length, got {a.shape} and {b.shape}")
    return float(k.sequential_dot(np.require(a, np.float64, ["C", "W"]),
                                  np.require(b, np.float64, ["C", "W"])))


def _householder_qr(x: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """R's ``qr(x)`` (LINPACK ``dqrdc2`` without the pivoting a full-rank design never needs):
    Householder reflections, column norms as ``sqrt`` of sequential sums of squares; returns the
    compact ``qr`` matrix and ``qraux``."""
    a = np.array(x, dtype=np.float64, copy=True)
    n, p = a.shape
    qraux = np.zeros(p)
    for col in range(min(n - 1, p)):
        norm = math.sqrt(_dot(a[col:, col], a[col:, col]))
        if norm == 0.0:
            continue
        if a[col, col] != 0.0:
            norm = math.copysign(norm, a[col, col])
        a[col:, col] = (1.0 / norm) * a[col:, col]
        a[col, col] = 1.0 + a[col, col]
        for j in range(col + 1, p):
            t = -_dot(a[col:, col], a[col:, j]) / a[col, col]
            a[col:, j] = a[col:, j] + t * a[col:, col]
        qraux[col] = a[col, col]
        a[col, col] = -norm
    return a, qraux


def _r_qr_parts(design: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """``(qr.Q(qr(x)), solve(qr.R(qr(x))))`` computed in R's operation order (read-only arrays,
    computed once per design: see :func:`_design_qr`)."""
    q, rinv, _ = _design_qr(np.ascontiguousarray(design, dtype=np.float64))
    return q, rinv


def _design_qr(x: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """``(Q, R^-1, R)`` of a design in R's order, cached by the design's bytes: a DE fit asks
    for them several times (starts of every IRLS, linear-model means) and the R-order
    Householder steps run in Python."""
    return _design_qr_cached(x.shape, x.tobytes())


@functools.lru_cache(maxsize=16)
def _design_qr_cached(shape: tuple[int, ...], data: bytes
                      ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    x = np.frombuffer(data, dtype=np.float64).reshape(shape)
    q, rinv = _r_qr_parts_uncached(x)
    p = x.shape[1]
    r = np.triu(_householder_qr(x)[0][:p, :p])
    for part in (q, rinv, r):
        part.setflags(write=False)
    return q, rinv, r


def _r_qr_parts_uncached(design: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    qr, qraux = _householder_qr(design)
    n, p = qr.shape
    q = np.zeros((n, p))
    for j in range(p):
        v = np.zeros(n)
        v[j] = 1.0
        for c in range(min(p, n - 1) - 1, -1, -1):  # qr.qy: reflections applied last to first
            if qraux[c] == 0.0:
                continue
            h = qr[c:, c].copy()
            h[0] = qraux[c]
            t = -_dot(h, v[c:]) / h[0]
            v[c:] = v[c:] + t * h
        q[:, j] = v
    r = np.triu(qr[:p, :p])
    rinv = np.eye(p)
    for j in range(p):  # solve(): back substitution per column (LAPACK dgetrs on a triangle)
        b = rinv[:, j]
        for c in range(p - 1, -1, -1):
            if b[c] != 0.0:
                b[c] = b[c] / r[c, c]
                for i in range(c):
                    b[i] = b[i] - b[c] * r[i, c]
    return q, rinv


def linear_model_mu(normed: np.ndarray, design: np.ndarray) -> np.ndarray:
    """Least-squares fitted values of each gene's normalised counts (genes x samples), as
    DESeq2's ``linearModelMu``: ``(y Q) (X R^-1)'`` with R's QR and R's product order, so the
    values equal R's to the last bit (they feed the line search's knife-edge decisions)."""
    x = np.asarray(design, dtype=np.float64)
    if np.linalg.matrix_rank(x) < x.shape[1]:
        q, r = np.linalg.qr(x)
        return (normed @ q) @ (x @ np.linalg.solve(r, np.eye(r.shape[0]))).T
    q, rinv = _r_qr_parts(x)
    return _sequential_matmul(_sequential_matmul(np.asarray(normed, dtype=np.float64), q),
                              _sequential_matmul(x, rinv).T)


def rough_dispersions(normed: np.ndarray, design: np.ndarray) -> np.ndarray:
    """DESeq2's ``roughDispEstimate`` (genes x samples normalised counts)."""
    m, p = design.shape
    mu = np.maximum(1.0, linear_model_mu(normed, design))
    est = _r_row_sums(((normed - mu) ** 2 - mu) / mu**2) / (m - p)
    return np.maximum(est, 0.0)


def moments_dispersions(base_mean: np.ndarray, base_var: np.ndarray, size_factors: np.ndarray) -> np.ndarray:
    """DESeq2's ``momentsDispEstimate``."""
    xim = _r_mean(1.0 / size_factors)
    return (base_var - xim * base_mean) / base_mean**2


def n_groups(design: np.ndarray) -> int:
    """Distinct rows of the design matrix (R's ``modelMatrixGroups``)."""
    return int(np.unique(np.ascontiguousarray(design), axis=0).shape[0])


def _threads(threads: int | None) -> int:
    return default_threads(threads)


def _r_start_coefficients(y: np.ndarray, sf: np.ndarray, x: np.ndarray) -> np.ndarray:
    """DESeq2's IRLS start (genes x coefficients): ``solve(R, t(Q) %*% log(normalised + 0.1))``
    with R's QR, R's product order and the C library's ``log``."""
    logs = np.ascontiguousarray(k.libm_log(y / sf[None, :] + 0.1).T)  # samples x genes
    if np.linalg.matrix_rank(x) < x.shape[1]:
        q, r = np.linalg.qr(x)
        return np.ascontiguousarray(np.linalg.solve(r, q.T @ logs).T)
    q, _, r = _design_qr(np.ascontiguousarray(x, dtype=np.float64))
    b = _sequential_matmul(np.ascontiguousarray(q.T), logs)
    p = x.shape[1]
    for j in range(p - 1, -1, -1):  # solve(): back substitution, the same steps for every gene
        b[j] = b[j] / r[j, j]
        for i in range(j):
            b[i] = b[i] - b[j] * r[i, j]
    return np.ascontiguousarray(b.T)


def fit_nb_glm(
    counts: np.ndarray, size_factors: np.ndarray, design: np.ndarray, alpha: np.ndarray, *,
    beta_tol: float = BETA_TOL, maxit: int = MAXIT, min_mu: float = MIN_MU,
    ridge: float = RIDGE_NAT, threads: int | None = None,
) -> dict[str, np.ndarray]:
    """DESeq2's ``fitNbinomGLMs`` (IRLS part) for genes x samples ``counts`` at fixed dispersions.

    Starting coefficients are the least-squares fit of ``log(normalised + 0.1)``.

    Returns
    -------
    dict
        ``beta`` (genes x coefficients, natural log), ``iterations``, ``converged``,
        ``deviance``, ``hat`` (genes x samples), ``beta_var``, ``mu`` (floored at ``min_mu``),
        ``mu_raw`` (``sf * exp(X beta)``, not floored) and ``optim`` (genes refitted by
        L-BFGS-B, whose ``mu_raw`` R's ``fitNbinomGLMsOptim`` floors for the likelihood).
    """
    y = np.ascontiguousarray(counts, dtype=np.float64)
    sf = np.ascontiguousarray(size_factors, dtype=np.float64)
    x = np.ascontiguousarray(design, dtype=np.float64)
    g, n = y.shape
    p = x.shape[1]
    beta0 = _r_start_coefficients(y, sf, x)
    out = {
        "beta": np.empty((g, p)), "iterations": np.empty(g, dtype=np.int64),
        "deviance": np.empty(g), "hat": np.empty((g, n)), "beta_var": np.empty((g, p)),
        "mu": np.empty((g, n)),
    }
    kernel = small_or_parallel(k.irls_nb, g * n * p)
    with thread_limit(_threads(threads)):
        kernel(
            y, sf, x, np.ascontiguousarray(alpha, dtype=np.float64), beta0,
            np.full(p, ridge), beta_tol, maxit, min_mu, out["beta"], out["iterations"],
            out["deviance"], out["hat"], out["beta_var"], out["mu"],
        )
    out["converged"] = out["iterations"] < maxit
    # R recomputes mu from the coefficients: nf * exp(X beta), sums in coefficient order
    out["mu_raw"] = sf[None, :] * k.libm_exp(_sequential_matmul(out["beta"], x.T))
    bad = ~out["converged"] | ~np.isfinite(out["beta"]).all(axis=1) | (out["beta_var"] <= 0).any(axis=1)
    out["optim"] = bad
    if bad.any():
        _optim_rows(y, sf, x, np.asarray(alpha, dtype=np.float64), out, np.flatnonzero(bad), ridge,
                    min_mu, beta0)
    return out


def _optim_rows(
    y: np.ndarray, sf: np.ndarray, x: np.ndarray, alpha: np.ndarray, out: dict[str, np.ndarray],
    rows: np.ndarray, ridge: float, min_mu: float, beta0: np.ndarray,
) -> None:
    """Refit non-converged genes by L-BFGS-B on the penalised likelihood (log2 scale, |beta| <= 30),
    as DESeq2's ``fitNbinomGLMsOptim``: started at the IRLS result when it is finite and inside
    the bounds, else at the IRLS starting values (taken as log2-scale values, as R does)."""
    from scipy.optimize import minimize
    from scipy.special import gammaln

    lam = ridge * math.log(2.0) ** 2  # the log2-scale prior precision
    log_norm_const = 0.5 * math.log(2.0 * math.pi) + math.log(math.sqrt(1.0 / lam))
    ln2 = math.log(2.0)
    for row in rows:
        kvec, a = y[row], float(alpha[row])
        size = 1.0 / a
        beta_row = out["beta"][row] / ln2
        if not (np.isfinite(beta_row).all() and (np.abs(beta_row) < 30).all()):
            beta_row = np.clip(beta0[row], -30.0, 30.0)

        def objective(b: np.ndarray, kvec: np.ndarray = kvec, size: float = size) -> float:
            mu = sf * 2.0 ** (x @ b)
            ll = (gammaln(kvec + size) - gammaln(size) - gammaln(kvec + 1)
                  + size * np.log(size / (size + mu)) + kvec * np.log(mu / (size + mu))).sum()
            # R's sum(dnorm(b, 0, sqrt(1 / lambda), log = TRUE)): the constant matters, the
            # stopping rule is relative to the objective's size
            log_prior = (-0.5 * lam * b**2 - log_norm_const).sum()
            value = -(ll + log_prior)
            return float(value) if np.isfinite(value) else 1e300

        def gradient(b: np.ndarray, objective=objective) -> np.ndarray:
            # R's optim without a gradient: central differences with step 1e-3, cut at the bounds
            g = np.empty_like(b)
            for j in range(b.size):
                up, down = b.copy(), b.copy()
                up[j] = min(b[j] + R_NDEPS, 30.0)
                down[j] = max(b[j] - R_NDEPS, -30.0)
                g[j] = (objective(up) - objective(down)) / ((up[j] - b[j]) + (b[j] - down[j]))
            return g

        res = minimize(objective, beta_row, jac=gradient, method="L-BFGS-B",
                       bounds=[(-30.0, 30.0)] * x.shape[1],
                       options={"maxcor": 5, "ftol": 1e7 * np.finfo(float).eps, "gtol": 0.0,
                                "maxiter": 100})
        out["beta"][row] = res.x * ln2
        mu_raw = sf * np.exp(x @ out["beta"][row])
        out["mu_raw"][row] = mu_raw
        mu = np.maximum(mu_raw, min_mu)
        out["mu"][row] = mu
        w = 1.0 / (1.0 / mu + a)
        gram = (x.T * w) @ x
        inv = np.linalg.inv(gram + np.diag(np.full(x.shape[1], ridge)))
        out["beta_var"][row] = np.diag(inv @ gram @ inv)
        out["hat"][row] = w * np.einsum("ij,jk,ik->i", x, inv, x)
        out["converged"][row] = bool(res.success)


def nb_log_likelihood(counts: np.ndarray, mu: np.ndarray, alpha: np.ndarray) -> np.ndarray:
    """Row sums of the negative binomial log density (R's ``dnbinom(k, mu = mu, size = 1 / alpha,
    log = TRUE)``), genes x samples.

    ``log Gamma(k + s) - log Gamma(s) - log k!`` is taken as ``-log(k + s) - log B(k + 1, s)``,
    which keeps its precision for very large sizes (dispersions near ``1e-8``), and
    ``s log(s / (s + mu))`` as ``-s log1p(mu / s)``.

    Examples
    --------
    >>> from scipy.stats import nbinom
    >>> ll = nb_log_likelihood(np.array([[0.0, 3.0, 10.0]]), np.array([[2.0, 2.0, 5.0]]),
    ...                        np.array([0.2]))
    >>> bool(np.isclose(ll[0], nbinom.logpmf([0, 3, 10], 5.0, 5.0 / np.array([7, 7, 10])).sum()))
    True
    """
    from scipy.special import betaln

    k = np.asarray(counts, dtype=np.float64)
    m = np.asarray(mu, dtype=np.float64)
    size = (1.0 / np.asarray(alpha, dtype=np.float64))[:, None]
    with np.errstate(divide="ignore", invalid="ignore"):
        log_choose = np.where(k > 0, -np.log(k + size) - betaln(k + 1.0, size), 0.0)
        log_mu = np.where(k > 0, k * (np.log(m) - np.log(size + m)), 0.0)
        ll = log_choose - size * np.log1p(m / size) + log_mu
    return ll.sum(axis=1)


def line_search(
    counts: np.ndarray, mu: np.ndarray, design: np.ndarray, start: np.ndarray, *,
    prior_mean: np.ndarray | None = None, prior_var: float = 1.0, min_disp: float = MIN_DISP,
    kappa_0: float = KAPPA_0, tol: float = DISP_TOL, maxit: int = MAXIT, use_cr: bool = True,
    threads: int | None = None,
) -> dict[str, np.ndarray]:
    """DESeq2's ``fitDisp``: the Armijo line search on log(alpha) for each gene (row).

    Returns
    -------
    dict
        ``log_alpha``, ``iterations``, ``initial_lp``, ``last_lp``.
    """
    y = np.ascontiguousarray(counts, dtype=np.float64)
    m = np.ascontiguousarray(mu, dtype=np.float64)
    x = np.ascontiguousarray(design, dtype=np.float64)
    g = y.shape[0]
    log_start = _libm_log(start)
    use_prior = prior_mean is not None
    pm = _libm_log(prior_mean) if use_prior else log_start
    out = {"log_alpha": np.empty(g), "iterations": np.empty(g, dtype=np.int64),
           "initial_lp": np.empty(g), "last_lp": np.empty(g)}
    kernel = small_or_parallel(k.fit_disp_line_search, g * y.shape[1] * 50)
    with thread_limit(_threads(threads)):
        kernel(y, m, x, log_start, pm, float(prior_var), use_prior, use_cr,
               math.log(min_disp / 10.0), kappa_0, tol, maxit, out["log_alpha"], out["iterations"],
               out["initial_lp"], out["last_lp"])
    return out


def grid_search(
    counts: np.ndarray, mu: np.ndarray, design: np.ndarray, *, prior_mean: np.ndarray | None = None,
    prior_var: float = 1.0, use_cr: bool = True, threads: int | None = None,
) -> np.ndarray:
    """DESeq2's ``fitDispGridWrapper``: dispersions maximising the log posterior on a two-level grid."""
    y = np.ascontiguousarray(counts, dtype=np.float64)
    n = y.shape[1]
    lo, hi = math.log(1e-8), math.log(max(10.0, float(n)))
    # R's seq(from, to, length = 20)
    grid = np.concatenate([[lo], lo + np.arange(1, 19) * ((hi - lo) / 19), [hi]])
    use_prior = prior_mean is not None
    pm = _libm_log(prior_mean) if use_prior else np.zeros(y.shape[0])
    out = np.empty(y.shape[0])
    with thread_limit(_threads(threads)):
        k.fit_disp_grid(y, np.ascontiguousarray(mu, dtype=np.float64),
                        np.ascontiguousarray(design, dtype=np.float64), grid,
                        np.ascontiguousarray(pm, dtype=np.float64), float(prior_var), use_prior,
                        use_cr, out)
    return _libm_exp(out)


def mle_search(
    counts: np.ndarray, mu: np.ndarray, design: np.ndarray, start: np.ndarray, *,
    min_disp: float = MIN_DISP, max_disp: float, use_cr: bool = True, kappa_0: float = KAPPA_0,
    disp_tol: float = DISP_TOL, maxit: int = MAXIT, threads: int | None = None,
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Gene-wise MLE as ``estimateDispersionsGeneEst`` after its starting values: the line
    search, its start kept where no move raised the log posterior, the grid for genes that
    did not converge (or stopped after one step) above ``10 * min_disp``.

    Returns
    -------
    tuple of numpy.ndarray
        ``(dispersions, iterations, grid_refit, no_increase)``, the dispersions capped at
        ``max_disp`` but not yet floored.
    """
    res = line_search(counts, mu, design, start, min_disp=min_disp, kappa_0=kappa_0,
                      tol=disp_tol, maxit=maxit, use_cr=use_cr, threads=threads)
    est = np.minimum(_libm_exp(res["log_alpha"]), max_disp)
    no_increase = res["last_lp"] < res["initial_lp"] + np.abs(res["initial_lp"]) / 1e6
    est[no_increase] = start[no_increase]
    iters = res["iterations"]
    converged = (iters < maxit) & (iters != 1)
    refit = ~converged & (est > min_disp * 10)
    if refit.any():
        est[refit] = grid_search(counts[refit], mu[refit], design, use_cr=use_cr,
                                 threads=threads)
    return est, iters, refit, no_increase


def map_search(
    counts: np.ndarray, mu: np.ndarray, design: np.ndarray, start: np.ndarray,
    prior_mean: np.ndarray, prior_var: float, *, min_disp: float = MIN_DISP,
    use_cr: bool = True, kappa_0: float = KAPPA_0, disp_tol: float = DISP_TOL,
    maxit: int = MAXIT, threads: int | None = None,
) -> tuple[np.ndarray, np.ndarray]:
    """MAP line search from ``start`` with the normal prior on log(alpha) around
    ``prior_mean``, the grid for genes that did not converge: ``(dispersions, converged)``,
    not clamped."""
    res = line_search(counts, mu, design, start, prior_mean=prior_mean, prior_var=prior_var,
                      min_disp=min_disp, kappa_0=kappa_0, tol=disp_tol, maxit=maxit,
                      use_cr=use_cr, threads=threads)
    disp = _libm_exp(res["log_alpha"])
    converged = res["iterations"] < maxit
    if (~converged).any():
        disp[~converged] = grid_search(counts[~converged], mu[~converged], design,
                                       prior_mean=prior_mean[~converged], prior_var=prior_var,
                                       use_cr=use_cr, threads=threads)
    return disp, converged


def gene_dispersions(
    counts: np.ndarray, size_factors: np.ndarray, design: np.ndarray, *,
    min_disp: float = MIN_DISP, kappa_0: float = KAPPA_0, disp_tol: float = DISP_TOL,
    maxit: int = MAXIT, min_mu: float = MIN_MU, linear_mu: bool | None = None,
    threads: int | None = None,
) -> GeneDispersions:
    """Gene-wise dispersion estimates as DESeq2's ``estimateDispersionsGeneEst``.

    Parameters
    ----------
    counts
        Genes x samples raw counts.
    size_factors
        One factor per sample.
    design
        Samples x coefficients design matrix (full rank, more samples than coefficients).
    min_disp, kappa_0, disp_tol, maxit, min_mu
        DESeq2's defaults.
    linear_mu
        Force (or forbid) the linear-model means; default: group-only designs use them.
    threads
        Numba threads (default :func:`engine.runtime.default_threads`).

    Returns
    -------
    GeneDispersions
        The estimates and their inputs.
    """
    y = np.asarray(counts, dtype=np.float64)
    sf = np.asarray(size_factors, dtype=np.float64)
    x = np.asarray(design, dtype=np.float64)
    n_genes, n = y.shape
    if x.shape[0] != n:
        raise ValueError(f"design has {x.shape[0]} rows for {n} samples")
    if x.shape[0] <= x.shape[1]:
        raise ValueError(
            "the number of samples and the number of model coefficients are equal: "
            "no replicates to estimate the dispersion"
        )
    if np.linalg.matrix_rank(x) < x.shape[1]:
        raise ValueError("the design matrix is not full rank")
    normed = y / sf[None, :]
    base_mean = _r_row_means(normed)
    base_var = _r_row_var(normed)
    all_zero = (y == 0).all(axis=1)
    nz = ~all_zero
    ynz, nnz = y[nz], normed[nz]
    max_disp = max(10.0, float(n))
    alpha_hat = np.minimum(rough_dispersions(nnz, x), moments_dispersions(base_mean[nz], base_var[nz], sf))
    alpha_init = np.minimum(np.maximum(min_disp, alpha_hat), max_disp)
    if linear_mu is None:
        linear_mu = n_groups(x) == x.shape[1]
    if linear_mu:
        mu = linear_model_mu(nnz, x) * sf[None, :]
    else:
        mu = fit_nb_glm(ynz, sf, x, alpha_init, min_mu=min_mu, threads=threads)["mu_raw"]
    mu = np.where(mu < min_mu, min_mu, mu)
    est, iters, refit, no_increase = mle_search(
        ynz, mu, x, alpha_init, min_disp=min_disp, max_disp=max_disp, kappa_0=kappa_0,
        disp_tol=disp_tol, maxit=maxit, threads=threads,
    )
    est = np.minimum(np.maximum(est, min_disp), max_disp)
    disp = np.full(n_genes, np.nan)
    disp[nz] = est
    mu_full = np.full((n_genes, n), np.nan)
    mu_full[nz] = mu
    it_full = np.zeros(n_genes, dtype=np.int64)
    it_full[nz] = iters
    log.info("gene-wise dispersions: %d genes, %d grid refits, %d rejected moves",
             int(nz.sum()), int(refit.sum()), int(no_increase.sum()))
    return GeneDispersions(disp, mu_full, it_full, base_mean, base_var, all_zero, bool(linear_mu))


def _r_sum(x: np.ndarray) -> float:
    """R's ``sum`` of doubles: sequential, in ``long double``."""
    return float(np.cumsum(np.asarray(x, dtype=np.float64).astype(np.longdouble))[-1])


def _r_weighted_ls(xw: np.ndarray, zw: np.ndarray) -> np.ndarray:
    """R's ``.Call(C_Cdqrls, xw, zw, ...)`` coefficients for a full-rank ``xw``: LINPACK QR
    (``dqrdc2``), ``Q'z`` by the reflectors in order (``dqrsl``), back substitution."""
    qr, qraux = _householder_qr(xw)
    n, p = qr.shape
    qty = np.array(zw, dtype=np.float64, copy=True)
    for j in range(min(p, n - 1)):
        if qraux[j] == 0.0:
            continue
        h = qr[j:, j].copy()
        h[0] = qraux[j]
        t = -_dot(h, qty[j:]) / h[0]
        qty[j:] = qty[j:] + t * h
    b = qty[:p].copy()
    for j in range(p - 1, -1, -1):
        if qr[j, j] == 0.0:
            raise TrendFitError("singular weighted design in the trend fit")
        b[j] = b[j] / qr[j, j]
        if j > 0:
            b[:j] = b[:j] + (-b[j]) * qr[:j, j]
    return b


def _gamma_identity_glm(
    y: np.ndarray, xcov: np.ndarray, start: np.ndarray, *, epsilon: float = 1e-8, maxit: int = 25
) -> tuple[np.ndarray, bool]:
    """R's ``glm.fit`` for ``y ~ xcov`` with ``Gamma(link = "identity")`` from ``start``, in R's
    arithmetic (weights ``sqrt(1 / mu^2)``, working response ``eta + (y - mu)``, LINPACK QR,
    ``long double`` deviance sums), so the trend coefficients equal R's to the last bit: the MAP
    line search starts from the trend, and its knife-edge genes need R's bits."""
    y = np.asarray(y, dtype=np.float64)
    x = np.column_stack([np.ones_like(xcov), xcov])

    def linear(coef: np.ndarray) -> np.ndarray:
        return (0.0 + coef[0] * x[:, 0]) + coef[1] * x[:, 1]

    def deviance(mu: np.ndarray) -> float:
        return _r_sum(-2.0 * (_libm_log(y / mu) - (y - mu) / mu))

    coef = np.asarray(start, dtype=np.float64).copy()
    coefold = coef.copy()
    eta = linear(coef)
    mu = eta
    if not (np.isfinite(mu).all() and (mu > 0).all()):
        raise TrendFitError("cannot find valid starting values")
    devold = deviance(mu)
    converged = False
    for _ in range(maxit):
        z = eta + (y - mu)
        w = np.sqrt(1.0 / (mu * mu))  # sqrt(weights * mu.eta^2 / variance), variance mu^2
        coef = _r_weighted_ls(x * w[:, None], z * w)
        eta = linear(coef)
        mu = eta
        dev = deviance(mu) if (mu > 0).all() else math.inf
        if not math.isfinite(dev) or not (np.isfinite(mu).all() and (mu > 0).all()):
            # step halving back towards the previous coefficients, as glm.fit does
            for _ in range(maxit):
                coef = (coef + coefold) / 2.0
                eta = linear(coef)
                mu = eta
                if np.isfinite(mu).all() and (mu > 0).all():
                    break
            else:
                raise TrendFitError("no valid coefficients after step halving")
            dev = deviance(mu)
        if abs(dev - devold) / (abs(dev) + 0.1) < epsilon:
            converged = True
            break
        devold = dev
        coefold = coef.copy()
    return coef, converged


def parametric_trend(means: np.ndarray, disps: np.ndarray) -> tuple[float, float]:
    """DESeq2's ``parametricDispersionFit``: ``(asymptDisp, extraPois)``.

    Raises
    ------
    TrendFitError
        When a coefficient is not positive or 10 refits do not converge.
    """
    coefs = np.array([0.1, 1.0])
    iteration = 0
    while True:
        residuals = disps / (coefs[0] + coefs[1] / means)
        good = (residuals > 1e-4) & (residuals < 15)
        new, converged = _gamma_identity_glm(disps[good], 1.0 / means[good], coefs)
        old = coefs
        coefs = new
        if not (coefs > 0).all():
            raise TrendFitError("parametric dispersion fit failed (a coefficient is not positive)")
        if _r_sum(_libm_log(coefs / old) ** 2) < 1e-6 and converged:
            break
        iteration += 1
        if iteration > 10:
            raise TrendFitError("dispersion fit did not converge")
    return float(coefs[0]), float(coefs[1])


def trimmed_mean(x: np.ndarray, trim: float) -> float:
    """R's ``mean(x, trim = trim)``."""
    x = np.sort(np.asarray(x, dtype=np.float64))
    n = x.size
    lo = math.floor(n * trim) + 1
    hi = n + 1 - lo
    return _r_mean(x[lo - 1 : hi])


def fit_trend(
    base_mean: np.ndarray, disp_gene: np.ndarray, *, fit_type: str = "parametric",
    min_disp: float = MIN_DISP,
) -> DispersionTrend:
    """The dispersion trend as DESeq2's ``estimateDispersionsFit``.

    Parameters
    ----------
    base_mean
        Mean normalised count per gene.
    disp_gene
        Gene-wise dispersion estimates (NaN for all-zero genes).
    fit_type
        ``"parametric"`` or ``"mean"``. R falls back to a local regression when the parametric
        fit fails; here a :class:`TrendFitError` is raised instead (the caller decides).
    min_disp
        DESeq2's ``minDisp``.

    Returns
    -------
    DispersionTrend
        The fitted curve.
    """
    check_fit_type(fit_type)
    ok = np.isfinite(disp_gene)
    means, disps = np.asarray(base_mean)[ok], np.asarray(disp_gene)[ok]
    use = disps > 100 * min_disp
    if not use.any():
        raise DispersionsAtMinimumError(
            "all gene-wise dispersion estimates are within 2 orders of magnitude of the minimum"
        )
    if fit_type == "parametric":
        a0, a1 = parametric_trend(means[use], disps[use])
        return DispersionTrend("parametric", a0, a1, math.nan, int(use.sum()))
    use_mean = disps > 10 * min_disp
    return DispersionTrend("mean", math.nan, math.nan, trimmed_mean(disps[use_mean], 0.001),
                           int(use_mean.sum()))


def fit_trend_as_requested(
    base_mean: np.ndarray, disp_gene: np.ndarray, *, fit_type: str, what: str,
) -> DispersionTrend:
    """The dispersion trend of the requested type, or a :class:`TrendFitError` naming the fix:
    the one rule for a trend that cannot be fitted (DE and VST).

    R DESeq2 switches a failed parametric fit to a local regression (``locfit``), which
    phenoflow does not implement; substituting another fit without being asked would give other
    dispersions and p-values than R's with exit code 0. So a failed parametric fit is refused,
    pointing to ``fit_type="mean"`` (the trimmed mean of the gene-wise estimates, R's
    ``fitType="mean"``), which the caller records. When every gene-wise estimate is within two
    orders of magnitude of the minimum, R stops for every fit type, and so does this.

    Parameters
    ----------
    base_mean, disp_gene
        As :func:`fit_trend`.
    fit_type
        ``"parametric"`` or ``"mean"``.
    what
        The step, for the message (``"DE"``, ``"VST"``).

    Returns
    -------
    DispersionTrend
        The fitted trend, always of the requested type.

    Raises
    ------
    TrendFitError
        The trend cannot be fitted; the message says what R does and how to proceed.
    """
    try:
        return fit_trend(base_mean, disp_gene, fit_type=fit_type)
    except DispersionsAtMinimumError as exc:
        raise TrendFitError(
            f"{what}: {exc}, so no dispersion trend can be fitted (R DESeq2 stops here too; "
            "its advice is to use the gene-wise estimates as final dispersions, which "
            "phenoflow does not offer): check the counts and the design"
        ) from exc
    except TrendFitError as exc:
        if fit_type == "parametric":
            raise TrendFitError(
                f"{what}: the parametric dispersion trend cannot be fitted to these counts "
                f"({exc}); R DESeq2 would switch to a local regression fit here, which phenoflow "
                "does not implement. To use the mean of the gene-wise dispersions as the trend "
                "instead (R's fitType='mean'; results differ from R's default), pass "
                "fit_type='mean' (phenoflow de/normalize: --fit-type mean; study manifest: "
                "expression: {fit_type: mean})"
            ) from exc
        raise


def _mad(x: np.ndarray) -> float:
    center = np.median(x)
    return 1.4826 * float(np.median(np.abs(x - center)))


def prior_variance(
    disp_gene: np.ndarray, disp_fit: np.ndarray, n_samples: int, n_coefs: int, *,
    min_disp: float = MIN_DISP,
) -> tuple[float, float]:
    """DESeq2's dispersion prior variance: ``(dispPriorVar, varLogDispEsts)``.

    ``varLogDispEsts`` is the squared MAD of the log residuals of the gene-wise estimates
    above ``100 * min_disp``; the prior variance subtracts the expected sampling variance
    ``trigamma((m - p) / 2)`` and is at least 0.25. With 1 to 3 residual degrees of freedom the
    MAD is a poor estimate and R matches the residuals' histogram by simulation instead
    (``set.seed(2)``, R's random streams, a KL grid smoothed by ``loess``); that procedure is
    reproduced exactly by :func:`expression._rprior.small_df_prior_variance`.
    """
    from scipy.special import polygamma

    ok = np.isfinite(disp_gene)
    resid = _libm_log(disp_gene[ok]) - _libm_log(disp_fit[ok])
    above = disp_gene[ok] >= min_disp * 100
    var_log = _mad(resid[above]) ** 2
    df = n_samples - n_coefs
    if 0 < df <= 3:
        from expression._rprior import small_df_prior_variance

        return small_df_prior_variance(resid[above], df), var_log
    if df > 0:
        return max(var_log - float(polygamma(1, df / 2.0)), 0.25), var_log
    return var_log, var_log


def map_dispersions(
    counts: np.ndarray, mu: np.ndarray, design: np.ndarray, disp_gene: np.ndarray,
    disp_fit: np.ndarray, prior_var: float, *, min_disp: float = MIN_DISP,
    kappa_0: float = KAPPA_0, disp_tol: float = DISP_TOL, maxit: int = MAXIT,
    threads: int | None = None,
) -> tuple[np.ndarray, np.ndarray]:
    """MAP dispersions as DESeq2's ``estimateDispersionsMAP`` (rows: non-all-zero genes).

    Returns
    -------
    tuple of numpy.ndarray
        ``(dispMAP, converged)``, clamped to ``[min_disp, max(10, n_samples)]``.
    """
    start = np.where(disp_gene > 0.1 * disp_fit, disp_gene, disp_fit)
    start = np.where(np.isnan(start), disp_fit, start)
    disp, converged = map_search(counts, mu, design, start, disp_fit, prior_var,
                                 min_disp=min_disp, kappa_0=kappa_0, disp_tol=disp_tol,
                                 maxit=maxit, threads=threads)
    max_disp = max(10.0, float(counts.shape[1]))
    return np.minimum(np.maximum(disp, min_disp), max_disp), converged
