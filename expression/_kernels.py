"""Numba kernels for DESeq2's per-gene work: NB GLM (IRLS), dispersion line search, Wald tests.

Every kernel takes arrays and scalars only. Count-like arrays are genes x samples (one
C-contiguous row per gene), so the gene loop (``prange``) reads contiguous memory. The
algorithms follow DESeq2 1.38's documented C++ routines step by step (same starting values,
step rules and stopping rules), because the estimates they produce depend on where the
iterations stop, not only on the optimum.
"""

from __future__ import annotations

import math

import numpy as np
from numba import prange

from engine.runtime import njit

__all__ = [
    "digamma",
    "fit_disp_grid",
    "fit_disp_line_search",
    "irls_nb",
    "lgamma",
    "log_posterior",
    "nb_log_pmf",
    "nb_shrink_newton",
    "wald_normal",
]

#: Armijo constant of DESeq2's dispersion line search.
ARMIJO_EPS = 1.0e-4
#: Coefficients beyond this (natural log scale) end the IRLS as diverged.
LARGE_BETA = 30.0


@njit()
def digamma(x: float) -> float:
    """The digamma function for ``x > 0`` (recurrence to ``x >= 10``, then the asymptotic series)."""
    result = 0.0
    while x < 10.0:
        result -= 1.0 / x
        x += 1.0
    inv = 1.0 / x
    inv2 = inv * inv
    series = inv2 * (
        1.0 / 12.0
        - inv2 * (1.0 / 120.0
        - inv2 * (1.0 / 252.0
        - inv2 * (1.0 / 240.0
        - inv2 * (1.0 / 132.0
        - inv2 * (691.0 / 32760.0
        - inv2 * (1.0 / 12.0)))))))
    return result + math.log(x) - 0.5 * inv - series


#: The first terms of the Chebyshev series of Stirling's correction (the ones R evaluates).
_ALGMCS = np.array([
    0.1666389480451863247205729650822e0, -0.1384948176067563840732986059135e-4,
    0.9810825646924729426157171547487e-8, -0.1809129475572494194263306266719e-10,
    0.6221098041892605227126015543416e-13,
])
_LN_SQRT_2PI = 0.918938533204672741780329736406


@njit()
def lgamma(x: float) -> float:
    """log Gamma(x) for x > 0, evaluated as R's ``lgammafn`` does above 10 (Stirling's series
    with the Chebyshev correction), so sums of large values round as R's do; libm below."""
    if x <= 10.0:
        return math.lgamma(x)
    if x > 1e17:
        return x * (math.log(x) - 1.0)
    if x > 4934720.0:
        return _LN_SQRT_2PI + (x - 0.5) * math.log(x) - x
    if x < 94906265.62425156:
        t = 10.0 / x
        u = t * t * 2.0 - 1.0
        twox = u * 2.0
        b0 = 0.0
        b1 = 0.0
        b2 = 0.0
        for i in range(1, 6):
            b2 = b1
            b1 = b0
            b0 = twox * b1 - b2 + _ALGMCS[5 - i]
        corr = (b0 - b2) * 0.5 / x
    else:
        corr = 1.0 / (x * 12.0)
    return _LN_SQRT_2PI + (x - 0.5) * math.log(x) - x + corr


@njit()
def nb_log_pmf(y: float, size: float, mu: float) -> float:
    """log NB(y; size, mu) (the ``dnbinom(..., log=TRUE)`` parametrisation)."""
    if y == 0.0:
        if size < mu:
            return size * math.log(size / (size + mu))
        return size * math.log1p(-mu / (size + mu))
    return (
        lgamma(y + size) - lgamma(size) - lgamma(y + 1.0)
        + size * math.log(size / (size + mu)) + y * math.log(mu / (size + mu))
    )


@njit()
def _cholesky(b: np.ndarray, low: np.ndarray) -> bool:
    """Lower Cholesky factor of a small SPD matrix into ``low``; False if not positive definite."""
    p = b.shape[0]
    for j in range(p):
        s = b[j, j]
        for k in range(j):
            s -= low[j, k] * low[j, k]
        if not s > 0.0:
            return False
        d = math.sqrt(s)
        low[j, j] = d
        for i in range(j + 1, p):
            t = b[i, j]
            for k in range(j):
                t -= low[i, k] * low[j, k]
            low[i, j] = t / d
        for i in range(j):
            low[i, j] = 0.0
    return True


@njit()
def _forward(low: np.ndarray, v: np.ndarray, out: np.ndarray) -> None:
    """Solve ``low @ out = v`` (lower triangular)."""
    p = low.shape[0]
    for i in range(p):
        s = v[i]
        for k in range(i):
            s -= low[i, k] * out[k]
        out[i] = s / low[i, i]


@njit()
def _backward(low: np.ndarray, v: np.ndarray, out: np.ndarray) -> None:
    """Solve ``low.T @ out = v``."""
    p = low.shape[0]
    for i in range(p - 1, -1, -1):
        s = v[i]
        for k in range(i + 1, p):
            s -= low[k, i] * out[k]
        out[i] = s / low[i, i]


@njit()
def _gram(x: np.ndarray, w: np.ndarray, b: np.ndarray) -> None:
    """``b = x.T @ diag(w) @ x``."""
    n, p = x.shape
    for j in range(p):
        for k in range(j + 1):
            s = 0.0
            for i in range(n):
                s += x[i, j] * w[i] * x[i, k]
            b[j, k] = s
            b[k, j] = s


@njit()
def _cholesky_inverse(low: np.ndarray, tmp: np.ndarray, out: np.ndarray) -> None:
    """``out = (L L')^-1`` from the lower factor ``low``, column by column (``tmp``: scratch, p)."""
    p = low.shape[0]
    e = np.zeros(p)
    col = np.empty(p)
    for k in range(p):
        e[:] = 0.0
        e[k] = 1.0
        _forward(low, e, tmp)
        _backward(low, tmp, col)
        for j in range(p):
            out[j, k] = col[j]


@njit()
def _cr_system(
    x: np.ndarray, mu: np.ndarray, alpha: float
) -> tuple[np.ndarray, np.ndarray, np.ndarray, bool]:
    """The Cox-Reid system: weights ``w = 1 / (1/mu + alpha)``, ``B = X' diag(w) X`` and its
    lower Cholesky factor, with whether the factorisation succeeded."""
    n, p = x.shape
    w = np.empty(n)
    for i in range(n):
        w[i] = 1.0 / (1.0 / mu[i] + alpha)
    b = np.empty((p, p))
    low = np.zeros((p, p))
    _gram(x, w, b)
    return w, b, low, _cholesky(b, low)


@njit()
def log_posterior(
    log_alpha: float, y: np.ndarray, mu: np.ndarray, x: np.ndarray, prior_mean: float,
    prior_var: float, use_prior: bool, use_cr: bool,
) -> float:
    """DESeq2's log posterior of log(alpha): NB log likelihood (up to a constant), the
    Cox-Reid term ``-0.5 log det(X' W X)`` and an optional normal prior on log(alpha)."""
    n, p = x.shape
    alpha = math.exp(log_alpha)
    inv_alpha = 1.0 / alpha
    ll = 0.0
    lg_inv = lgamma(inv_alpha)
    for i in range(n):
        ll += (
            lgamma(y[i] + inv_alpha) - lg_inv - y[i] * math.log(mu[i] + inv_alpha)
            - inv_alpha * math.log(1.0 + mu[i] * alpha)
        )
    cr = 0.0
    if use_cr:
        _, b, low, factored = _cr_system(x, mu, alpha)
        if factored:
            logdet = 0.0
            for j in range(p):
                logdet += math.log(low[j, j])
            cr = -logdet  # -0.5 * log det(b) = -sum log diag(L)
        else:
            cr = -0.5 * math.log(max(np.linalg.det(b), 1e-300))
    prior = 0.0
    if use_prior:
        d = log_alpha - prior_mean
        prior = -0.5 * d * d / prior_var
    return ll + prior + cr


@njit()
def dlog_posterior(
    log_alpha: float, y: np.ndarray, mu: np.ndarray, x: np.ndarray, prior_mean: float,
    prior_var: float, use_prior: bool, use_cr: bool,
) -> float:
    """Derivative of :func:`log_posterior` with respect to log(alpha)."""
    n, p = x.shape
    alpha = math.exp(log_alpha)
    inv_alpha = 1.0 / alpha
    dg_inv = digamma(inv_alpha)
    s = 0.0
    for i in range(n):
        ma = mu[i] * alpha
        s += (
            dg_inv + math.log(1.0 + ma) - ma / (1.0 + ma) - digamma(y[i] + inv_alpha)
            + y[i] / (mu[i] + inv_alpha)
        )
    ll = s / (alpha * alpha)
    cr = 0.0
    if use_cr:
        w, b, low, factored = _cr_system(x, mu, alpha)
        if factored:
            # trace(B^-1 dB) with dB = X' diag(-w^2) X: sum_i -w_i^2 * |L^-1 x_i|^2
            v = np.empty(p)
            tr = 0.0
            for i in range(n):
                _forward(low, x[i], v)
                q = 0.0
                for j in range(p):
                    q += v[j] * v[j]
                tr -= w[i] * w[i] * q
            cr = -0.5 * tr
        else:
            db = np.empty((p, p))
            _gram(x, -w * w, db)
            cr = -0.5 * np.trace(np.linalg.pinv(b) @ db)
    prior = 0.0
    if use_prior:
        prior = -(log_alpha - prior_mean) / prior_var
    return (ll + cr) * alpha + prior


@njit(parallel=True)
def fit_disp_line_search(
    y: np.ndarray, mu: np.ndarray, x: np.ndarray, log_alpha0: np.ndarray,
    prior_mean: np.ndarray, prior_var: float, use_prior: bool, use_cr: bool,
    min_log_alpha: float, kappa_0: float, tol: float, maxit: int,
    out_log_alpha: np.ndarray, out_iter: np.ndarray, out_initial_lp: np.ndarray,
    out_last_lp: np.ndarray,
) -> None:
    """DESeq2's Armijo line search on log(alpha), one gene per row.

    Starts at ``log_alpha0``, steps along the derivative with step ``kappa`` (proposals kept in
    [-30, 10]), accepts when the Armijo rule holds (else halves ``kappa``), grows ``kappa`` by
    1.1 (at most ``kappa_0``) after an accepted step and halves it every fifth acceptance; stops
    when an accepted step raises the log posterior by less than ``tol``, when log(alpha) falls
    below ``min_log_alpha``, or after ``maxit`` proposals.
    """
    n_genes = y.shape[0]
    for g in prange(n_genes):
        yr = y[g]
        mr = mu[g]
        pm = prior_mean[g]
        a = log_alpha0[g]
        lp = log_posterior(a, yr, mr, x, pm, prior_var, use_prior, use_cr)
        dlp = dlog_posterior(a, yr, mr, x, pm, prior_var, use_prior, use_cr)
        kappa = kappa_0
        out_initial_lp[g] = lp
        iters = 0
        accepted = 0
        for _t in range(maxit):
            iters += 1
            proposal = a + kappa * dlp
            if proposal < -30.0:
                kappa = (-30.0 - a) / dlp
            if proposal > 10.0:
                kappa = (10.0 - a) / dlp
            theta_kappa = -log_posterior(a + kappa * dlp, yr, mr, x, pm, prior_var, use_prior, use_cr)
            theta_hat_kappa = -lp - kappa * ARMIJO_EPS * dlp * dlp
            if theta_kappa <= theta_hat_kappa:
                accepted += 1
                a = a + kappa * dlp
                lpnew = log_posterior(a, yr, mr, x, pm, prior_var, use_prior, use_cr)
                change = lpnew - lp
                if change < tol:
                    lp = lpnew
                    break
                if a < min_log_alpha:
                    break
                lp = lpnew
                dlp = dlog_posterior(a, yr, mr, x, pm, prior_var, use_prior, use_cr)
                kappa = min(kappa * 1.1, kappa_0)
                if accepted % 5 == 0:
                    kappa = kappa / 2.0
            else:
                kappa = kappa / 2.0
        out_last_lp[g] = lp
        out_log_alpha[g] = a
        out_iter[g] = iters


@njit(parallel=True)
def fit_disp_grid(
    y: np.ndarray, mu: np.ndarray, x: np.ndarray, grid: np.ndarray, prior_mean: np.ndarray,
    prior_var: float, use_prior: bool, use_cr: bool, out_log_alpha: np.ndarray,
) -> None:
    """DESeq2's grid fallback: best point of ``grid``, then of an equally long grid spanning
    one coarse step either side of it."""
    n_genes = y.shape[0]
    n_grid = grid.shape[0]
    delta = grid[1] - grid[0]
    for g in prange(n_genes):
        yr = y[g]
        mr = mu[g]
        pm = prior_mean[g]
        best = -np.inf
        a_hat = grid[0]
        for t in range(n_grid):
            v = log_posterior(grid[t], yr, mr, x, pm, prior_var, use_prior, use_cr)
            if v > best:
                best = v
                a_hat = grid[t]
        start = a_hat - delta
        stop = a_hat + delta
        step = (stop - start) / (n_grid - 1)
        best = -np.inf
        a_best = start
        for t in range(n_grid):
            a = stop if t == n_grid - 1 else start + t * step
            v = log_posterior(a, yr, mr, x, pm, prior_var, use_prior, use_cr)
            if v > best:
                best = v
                a_best = a
        out_log_alpha[g] = a_best


@njit(parallel=True)
def irls_nb(
    y: np.ndarray, sf: np.ndarray, x: np.ndarray, alpha: np.ndarray, beta0: np.ndarray,
    ridge: np.ndarray, tol: float, maxit: int, min_mu: float,
    out_beta: np.ndarray, out_iter: np.ndarray, out_dev: np.ndarray, out_hat: np.ndarray,
    out_var: np.ndarray, out_mu: np.ndarray,
) -> None:
    """DESeq2's ridge-penalised NB GLM fit by IRLS (log link, offsets log(sf)), one gene per row.

    ``mu`` is floored at ``min_mu`` inside the iterations; convergence is
    ``|dev - dev_old| / (|dev| + 0.1) < tol`` from the second iteration on (deviance
    ``-2 log L``); a coefficient beyond +-30, a non-finite test or ``maxit`` iterations set
    ``out_iter`` to ``maxit`` (not converged). Also returns the hat-matrix diagonal, the sandwich
    variances ``diag((X'WX + R)^-1 X'WX (X'WX + R)^-1)`` and the floored ``mu`` at the end.
    """
    n_genes, n = y.shape
    p = x.shape[1]
    for g in prange(n_genes):
        yr = y[g]
        a = alpha[g]
        size = 1.0 / a
        beta = beta0[g].copy()
        mu = np.empty(n)
        w = np.empty(n)
        rhs = np.empty(p)
        b = np.empty((p, p))
        low = np.zeros((p, p))
        tmp = np.empty(p)
        for i in range(n):
            eta = 0.0
            for j in range(p):
                eta += x[i, j] * beta[j]
            mu[i] = max(sf[i] * math.exp(eta), min_mu)
        dev = 0.0
        dev_old = 0.0
        iters = 0
        for t in range(maxit):
            iters += 1
            for i in range(n):
                w[i] = mu[i] / (1.0 + a * mu[i])
            _gram(x, w, b)
            for j in range(p):
                b[j, j] += ridge[j]
                s = 0.0
                for i in range(n):
                    z = math.log(mu[i] / sf[i]) + (yr[i] - mu[i]) / mu[i]
                    s += x[i, j] * w[i] * z
                rhs[j] = s
            if not _cholesky(b, low):
                iters = maxit
                break
            _forward(low, rhs, tmp)
            _backward(low, tmp, beta)
            diverged = False
            for j in range(p):
                if abs(beta[j]) > LARGE_BETA or not math.isfinite(beta[j]):
                    diverged = True
            if diverged:
                iters = maxit
                break
            for i in range(n):
                eta = 0.0
                for j in range(p):
                    eta += x[i, j] * beta[j]
                mu[i] = max(sf[i] * math.exp(eta), min_mu)
            dev = 0.0
            for i in range(n):
                dev += -2.0 * nb_log_pmf(yr[i], size, mu[i])
            conv = abs(dev - dev_old) / (abs(dev) + 0.1)
            if math.isnan(conv):
                iters = maxit
                break
            if t > 0 and conv < tol:
                break
            dev_old = dev
        out_iter[g] = iters
        out_dev[g] = dev
        for j in range(p):
            out_beta[g, j] = beta[j]
        # final weights, hat diagonal and sandwich variance at the returned coefficients
        for i in range(n):
            w[i] = mu[i] / (1.0 + a * mu[i])
            out_mu[g, i] = mu[i]
        _gram(x, w, b)
        gram = b.copy()
        for j in range(p):
            b[j, j] += ridge[j]
        if not _cholesky(b, low):
            for i in range(n):
                out_hat[g, i] = np.nan
            for j in range(p):
                out_var[g, j] = np.nan
            continue
        v = np.empty(p)
        for i in range(n):
            _forward(low, x[i], v)
            q = 0.0
            for j in range(p):
                q += v[j] * v[j]
            out_hat[g, i] = w[i] * q
        # inverse of (X'WX + R) column by column, then the sandwich diagonal
        inv = np.empty((p, p))
        _cholesky_inverse(low, tmp, inv)
        sandwich = inv @ gram @ inv
        for j in range(p):
            out_var[g, j] = sandwich[j, j]


@njit(parallel=True)
def wald_normal(
    x: np.ndarray, disp: np.ndarray, lfc: np.ndarray, mu: np.ndarray, ridge: np.ndarray,
    contrast: np.ndarray, lfc_null: float, out_p: np.ndarray, out_stat: np.ndarray,
    out_se: np.ndarray,
) -> None:
    """Two-sided Wald tests of ``contrast' beta = lfc_null`` per gene (``mu`` genes x samples):
    ``se^2 = c' H (X'WX) H c`` with ``H = (X'WX + ridge)^-1``, p-value ``2 Phi(-|stat|)``."""
    n_genes = disp.shape[0]
    n, p = x.shape
    for g in prange(n_genes):
        w = np.empty(n)
        for i in range(n):
            w[i] = mu[g, i] / (1.0 + mu[g, i] * disp[g])
        gram = np.empty((p, p))
        _gram(x, w, gram)
        b = gram + ridge
        low = np.zeros((p, p))
        if not _cholesky(b, low):
            out_p[g] = np.nan
            out_stat[g] = np.nan
            out_se[g] = np.nan
            continue
        tmp = np.empty(p)
        hc = np.empty(p)
        _forward(low, contrast, tmp)
        _backward(low, tmp, hc)
        var = 0.0
        for j in range(p):
            for k in range(p):
                var += hc[j] * gram[j, k] * hc[k]
        se = math.sqrt(var)
        est = 0.0
        for j in range(p):
            est += contrast[j] * (lfc[g, j] - lfc_null)
        stat = est / se
        out_se[g] = se
        out_stat[g] = stat
        out_p[g] = math.erfc(abs(stat) / math.sqrt(2.0))


@njit()
def _shrink_objective(
    beta: np.ndarray, y: np.ndarray, x: np.ndarray, size: float, offset: np.ndarray,
    no_shrink_scale: float, prior_scale: float, shrink_index: int,
) -> float:
    """Negative log posterior of the apeGLM-style shrinkage model (pydeseq2's ``nbinomFn``)."""
    n, p = x.shape
    prior = 0.0
    for j in range(p):
        if j == shrink_index:
            prior += math.log1p((beta[j] / prior_scale) ** 2)
        else:
            prior += beta[j] * beta[j] / (2.0 * no_shrink_scale * no_shrink_scale)
    log_size = math.log(size)
    nll = 0.0
    for i in range(n):
        xb = 0.0
        for j in range(p):
            xb += x[i, j] * beta[j]
        a = xb + offset[i]
        hi = max(a, log_size)
        lae = hi + math.log1p(math.exp(-abs(a - log_size)))
        nll += y[i] * xb - (y[i] + size) * lae
    return prior - nll


@njit()
def _shrink_grad_hess(
    beta: np.ndarray, y: np.ndarray, x: np.ndarray, size: float, offset: np.ndarray,
    no_shrink_scale: float, prior_scale: float, shrink_index: int, grad: np.ndarray,
    hess: np.ndarray,
) -> None:
    n, p = x.shape
    s2 = prior_scale * prior_scale
    bk = beta[shrink_index]
    for j in range(p):
        if j == shrink_index:
            grad[j] = 2.0 * bk / (s2 + bk * bk)
        else:
            grad[j] = beta[j] / (no_shrink_scale * no_shrink_scale)
        for m in range(p):
            hess[j, m] = 0.0
    for j in range(p):
        if j == shrink_index:
            hess[j, j] = 2.0 * (s2 - bk * bk) / (s2 + bk * bk) ** 2
        else:
            hess[j, j] = 1.0 / (no_shrink_scale * no_shrink_scale)
    for i in range(n):
        xb = 0.0
        for j in range(p):
            xb += x[i, j] * beta[j]
        e = math.exp(xb + offset[i])
        resid = y[i] - (y[i] + size) / (1.0 + size * math.exp(-xb - offset[i]))
        frac = (y[i] + size) * size * e / ((size + e) * (size + e))
        for j in range(p):
            grad[j] -= resid * x[i, j]
            for m in range(p):
                hess[j, m] += frac * x[i, j] * x[i, m]


@njit(parallel=True)
def nb_shrink_newton(
    y: np.ndarray, x: np.ndarray, size: np.ndarray, offset: np.ndarray, no_shrink_scale: float,
    prior_scale: float, shrink_index: int, beta0: np.ndarray, gtol: float, maxit: int,
    out_beta: np.ndarray, out_inv_hess: np.ndarray, out_conv: np.ndarray,
) -> None:
    """MAP coefficients under a normal prior (scale ``no_shrink_scale``) on all coefficients but
    ``shrink_index``, which gets a Cauchy prior (scale ``prior_scale``), by damped Newton steps
    with Armijo backtracking (a Levenberg shift when the Hessian is not positive definite).

    Converged when the largest gradient component, divided by ``max(f(0), 1)``, is below
    ``gtol``. Also returns the inverse Hessian at the solution.
    """
    n_genes = y.shape[0]
    p = x.shape[1]
    for g in prange(n_genes):
        yr = y[g]
        sz = size[g]
        beta = beta0.copy()
        zero = np.zeros(p)
        scale = max(_shrink_objective(zero, yr, x, sz, offset, no_shrink_scale, prior_scale,
                                      shrink_index), 1.0)
        grad = np.empty(p)
        hess = np.empty((p, p))
        shifted = np.empty((p, p))
        low = np.zeros((p, p))
        tmp = np.empty(p)
        step = np.empty(p)
        trial = np.empty(p)
        f = _shrink_objective(beta, yr, x, sz, offset, no_shrink_scale, prior_scale, shrink_index)
        converged = False
        for _it in range(maxit):
            _shrink_grad_hess(beta, yr, x, sz, offset, no_shrink_scale, prior_scale,
                              shrink_index, grad, hess)
            gmax = 0.0
            for j in range(p):
                gmax = max(gmax, abs(grad[j]))
            if gmax / scale < gtol:
                converged = True
                break
            shift = 0.0
            while True:
                for j in range(p):
                    for m in range(p):
                        shifted[j, m] = hess[j, m]
                    shifted[j, j] += shift
                if _cholesky(shifted, low):
                    break
                shift = max(2.0 * shift, 1e-6 * (1.0 + abs(hess[0, 0])))
            for j in range(p):
                tmp[j] = -grad[j]
            _forward(low, tmp, step)
            _backward(low, step, tmp)
            slope = 0.0
            for j in range(p):
                step[j] = tmp[j]
                slope += grad[j] * step[j]
            t = 1.0
            accepted = False
            for _ls in range(60):
                for j in range(p):
                    trial[j] = beta[j] + t * step[j]
                f_new = _shrink_objective(trial, yr, x, sz, offset, no_shrink_scale,
                                          prior_scale, shrink_index)
                if f_new <= f + 1e-4 * t * slope:
                    accepted = True
                    break
                t *= 0.5
            if not accepted:
                # no decrease possible at this precision: a stationary point up to rounding
                converged = gmax / scale < gtol * 1e3
                break
            for j in range(p):
                beta[j] = trial[j]
            f = f_new
        for j in range(p):
            out_beta[g, j] = beta[j]
        _shrink_grad_hess(beta, yr, x, sz, offset, no_shrink_scale, prior_scale, shrink_index,
                          grad, hess)
        out_conv[g] = converged
        if _cholesky(hess, low):
            _cholesky_inverse(low, tmp, out_inv_hess[g])
        else:
            inv = np.linalg.pinv(hess)
            for j in range(p):
                for m in range(p):
                    out_inv_hess[g, j, m] = inv[j, m]
