"""Numba kernels for DESeq2's per-gene work: NB GLM (IRLS), dispersion line search, Wald tests.

Every kernel takes arrays and scalars only. Count-like arrays are genes x samples (one
C-contiguous row per gene), so the gene loop (``prange``) reads contiguous memory. The
algorithms follow DESeq2 1.38's documented C++ routines step by step (same starting values,
step rules and stopping rules), because the estimates they produce depend on where the
iterations stop, not only on the optimum. The dispersion log posterior, its derivative and the
IRLS solve also keep R's operation order (R's ``lgammafn``/``digamma``, libm ``pow`` where R's C++
calls it, Armadillo's closed-form 2x2/3x3 determinants and inverses, reference LAPACK's
Householder QR and LU order): the line search compares values a few units in the last place
apart, so equal inputs must give R's bits (checked against R in
``tests/expression/test_r_dispersion.py``).
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np
from numba import prange

from engine.runtime import njit

__all__ = [
    "digamma",
    "fit_disp_grid",
    "fit_disp_line_search",
    "irls_nb",
    "lgamma",
    "libm_exp",
    "libm_log",
    "log_posterior",
    "nb_log_pmf",
    "nb_shrink_newton",
    "r_row_vars",
    "sequential_dot",
    "sequential_matmul",
    "wald_normal",
]

#: Armijo constant of DESeq2's dispersion line search.
ARMIJO_EPS = 1.0e-4
#: Coefficients beyond this (natural log scale) end the IRLS as diverged.
LARGE_BETA = 30.0


@njit()
def libm_exp(a: np.ndarray) -> np.ndarray:
    """``exp`` of a 2-D array element by element with the C library's ``exp``, as R computes
    it (numpy's vectorised ``exp`` differs in the last bit for a few percent of arguments)."""
    out = np.empty(a.shape)
    for i in range(a.shape[0]):
        for j in range(a.shape[1]):
            out[i, j] = math.exp(a[i, j])
    return out


@njit()
def libm_log(a: np.ndarray) -> np.ndarray:
    """``log`` of a 2-D array with the C library's ``log`` (see :func:`libm_exp`)."""
    out = np.empty(a.shape)
    for i in range(a.shape[0]):
        for j in range(a.shape[1]):
            out[i, j] = math.log(a[i, j])
    return out


#: Bernoulli numbers B_2, B_4, ..., B_40 (the coefficients of digamma's asymptotic series).
_BERNOULLI = np.array([
    1.0 / 6.0, -1.0 / 30.0, 1.0 / 42.0, -1.0 / 30.0, 5.0 / 66.0, -691.0 / 2730.0, 7.0 / 6.0,
    -3617.0 / 510.0, 43867.0 / 798.0, -174611.0 / 330.0, 854513.0 / 138.0,
    -236364091.0 / 2730.0, 8553103.0 / 6.0, -23749461029.0 / 870.0,
    8615841276005.0 / 14322.0, -7709321041217.0 / 510.0, 2577687858367.0 / 6.0,
    -1.3711655205088332e13, 4.883323189735932e14, -1.9296579341940068e16,
])
#: Half the machine epsilon: the asymptotic series stops at terms below this share of 1/(2x).
_HALF_EPS = 2.0**-53
#: The ratios ``2k / (2k + 2)`` of successive series terms, divided once here (the same double
#: as dividing at every call).
_TERM_RATIOS = np.array([tk / (tk + 2.0) for tk in np.arange(2.0, 42.0, 2.0)])


@njit()
def digamma(x: float) -> float:
    """The digamma function for ``x > 0``, evaluated as R's ``digamma`` (``dpsifn``) does, so
    that sums of its values round as R's do (DESeq2's dispersion derivative).

    Below 9 the argument is shifted up to ``x + (9 - floor(x))``; there the asymptotic series
    ``log z - 1/(2z) - sum B_2k / (2k z^2k)`` is summed from ``k = 1`` on, each term obtained
    from the previous one by the factor ``(2k - 2) / (2k) / z^2``, until a term falls below
    ``eps/2 * 1/(2z)``; the shift is undone by adding ``1 / (x + j)`` for ``j`` from the
    largest down to 0 before subtracting ``log z``.
    """
    shift = 0.0
    z = x
    if x < 9.0:
        whole = int(x)
        shift = 9.0 - whole
        z = x + shift
    log_z = math.log(z)
    half_inv = 0.5 / z
    tol = _HALF_EPS * half_inv
    inv_z2 = 1.0 / (z * z)
    t = 0.5 * inv_z2
    s = t * _BERNOULLI[0]
    if abs(s) >= tol:
        for k in range(1, 20):
            # the factor (2k - 1 + 0 + 1) / (2k - 1) of the general series is exactly 1 here
            t = t * _TERM_RATIOS[k - 1] * inv_z2
            term = t * _BERNOULLI[k]
            if abs(term) < tol:
                break
            s += term
    s = s + half_inv
    n_shift = int(shift)
    for i in range(1, n_shift + 1):
        s += 1.0 / (x + float(n_shift - i))
    return -(s - log_z)


#: The first terms of the Chebyshev series of Stirling's correction (the ones R evaluates).
_ALGMCS = np.array([
    0.1666389480451863247205729650822e0, -0.1384948176067563840732986059135e-4,
    0.9810825646924729426157171547487e-8, -0.1809129475572494194263306266719e-10,
    0.6221098041892605227126015543416e-13,
])
_LN_SQRT_2PI = 0.918938533204672741780329736406
#: The first 22 terms of Fullerton's (SLATEC) Chebyshev series for Gamma on [1, 2], as R
#: evaluates it.
_GAMCS = np.array([
    +0.8571195590989331421920062399942e-2, +0.4415381324841006757191315771652e-2,
    +0.5685043681599363378632664588789e-1, -0.4219835396418560501012500186624e-2,
    +0.1326808181212460220584006796352e-2, -0.1893024529798880432523947023886e-3,
    +0.3606925327441245256578082217225e-4, -0.6056761904460864218485548290365e-5,
    +0.1055829546302283344731823509093e-5, -0.1811967365542384048291855891166e-6,
    +0.3117724964715322277790254593169e-7, -0.5354219639019687140874081024347e-8,
    +0.9193275519859588946887786825940e-9, -0.1577941280288339761767423273953e-9,
    +0.2707980622934954543266540433089e-10, -0.4646818653825730144081661058933e-11,
    +0.7973350192007419656460767175359e-12, -0.1368078209830916025799499172309e-12,
    +0.2347319486563800657233471771688e-13, -0.4027432614949066932766570534699e-14,
    +0.6910051747372100912138336975257e-15, -0.1185584500221992907052387126192e-15,
])


@njit()
def _gamma_small(x: float) -> float:
    """Gamma(x) for 0 < x <= 10 as R's ``gammafn``: the Chebyshev series on [1, 2] (Clenshaw
    recurrence), then the recurrence down (divisions) or up (products) to ``x``."""
    n = int(x)
    frac = x - n
    n -= 1
    t = frac * 2.0 - 1.0
    twox = t * 2.0
    b0 = 0.0
    b1 = 0.0
    b2 = 0.0
    m = _GAMCS.shape[0]
    for i in range(1, m + 1):
        b2 = b1
        b1 = b0
        b0 = twox * b1 - b2 + _GAMCS[m - i]
    value = (b0 - b2) * 0.5 + 0.9375
    if n == 0:
        return value
    if n < 0:
        for i in range(-n):
            value /= x + i
        return value
    for i in range(1, n + 1):
        value *= frac + i
    return value


@njit()
def lgamma(x: float) -> float:
    """log Gamma(x) for x > 0, evaluated as R's ``lgammafn`` does (``log(gammafn(x))`` up to 10,
    Stirling's series with the Chebyshev correction above), so sums round as R's do."""
    if x < 1e-306:
        return -math.log(x)
    if x <= 10.0:
        return math.log(abs(_gamma_small(x)))
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
    return _nb_log_pmf_with(_nb_log_pmf_const(y, size), y, size, mu)


@njit()
def _nb_log_pmf_const(y: float, size: float) -> float:
    """The part of :func:`nb_log_pmf` that does not depend on ``mu`` (``lgamma(y + size) -
    lgamma(size) - lgamma(y + 1)``, its leading terms in the same order), NaN where
    :func:`nb_log_pmf` takes another branch. The IRLS computes it once per gene."""
    if y == 0.0 or y < 1e-10 * size:
        return math.nan
    return lgamma(y + size) - lgamma(size) - lgamma(y + 1.0)


@njit()
def _nb_log_pmf_with(const: float, y: float, size: float, mu: float) -> float:
    """:func:`nb_log_pmf` given its ``mu``-free part from :func:`_nb_log_pmf_const` (added first,
    so the value does not depend on whether the part was computed once or now)."""
    if not math.isnan(const):
        return const + size * math.log(size / (size + mu)) + y * math.log(mu / (size + mu))
    if y == 0.0:
        if size < mu:
            return size * math.log(size / (size + mu))
        return size * math.log1p(-mu / (size + mu))
    # R's dnbinom_mu for a count far below the size (near-Poisson, dispersions near 1e-8):
    # its own expansion, whose last bits decide where DESeq2's IRLS stops
    if size < mu:
        lp = math.log(size / (1.0 + size / mu))
    else:
        lp = math.log(mu / (1.0 + mu / size))
    return y * lp - mu - lgamma(y + 1.0) + math.log1p(y * (y - 1.0) / (2.0 * size))


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


@njit(parallel=True)
def sequential_matmul(a: np.ndarray, b: np.ndarray, out: np.ndarray) -> None:
    """``out = a @ b`` with every element summed over the inner index from the first term on
    (``0 + a[i, 0] b[0, j] + a[i, 1] b[1, j] + ...``), as the reference BLAS ``dgemm`` R uses
    sums it (an optimised BLAS blocks and reorders the sums); rows in parallel."""
    m, k = a.shape
    n = b.shape[1]
    for i in prange(m):
        for j in range(n):
            s = 0.0
            for c in range(k):
                s = s + a[i, c] * b[c, j]
            out[i, j] = s


@njit()
def sequential_dot(a: np.ndarray, b: np.ndarray) -> float:
    """``sum(a * b)`` added from the first term on (``0 + a[0] b[0] + a[1] b[1] + ...``), as
    R's compiled loops and the reference BLAS ``ddot`` without unrolling sum it."""
    s = 0.0
    for i in range(a.shape[0]):
        s = s + a[i] * b[i]
    return s


@njit(parallel=True)
def r_row_vars(y: np.ndarray, out: np.ndarray) -> None:
    """matrixStats' ``rowVars``: per row its own double mean (sum from the first column on,
    over ``n``), then the squared deviations summed from the first column on, over ``n - 1``."""
    m, n = y.shape
    for i in prange(m):
        s = 0.0
        for j in range(n):
            s = s + y[i, j]
        mean = s / n
        v = 0.0
        for j in range(n):
            d = y[i, j] - mean
            v = v + d * d
        out[i] = v / (n - 1)


@njit()
def _gram(x: np.ndarray, w: np.ndarray, b: np.ndarray, cols: np.ndarray) -> None:
    """``b = x.T @ diag(w) @ x``, each entry ``sum_i (x[i, j] w[i]) x[i, k]`` added from the
    first sample on (``cols``: int64 scratch of length p).

    Terms with ``x[i, j] == 0`` or ``x[i, k] == 0`` are skipped: they are signed zeros, and
    adding a zero to a running sum that started at ``+0.0`` never changes it, so the result is
    bit-identical to the dense loop for finite weights while a factor design (mostly zeros)
    costs a tenth of the work.
    """
    n, p = x.shape
    for j in range(p):
        for k in range(j + 1):
            b[j, k] = 0.0
    for i in range(n):
        m = 0
        for j in range(p):
            if x[i, j] != 0.0:
                cols[m] = j
                m += 1
        wi = w[i]
        for a in range(m):
            j = cols[a]
            xw = x[i, j] * wi
            for c in range(a + 1):
                k = cols[c]
                b[j, k] += xw * x[i, k]
    for j in range(p):
        for k in range(j):
            b[k, j] = b[j, k]


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


#: Determinants below this or above its inverse are not taken from the closed form (as R's
#: Armadillo does not): the Cholesky factor gives them.
_DET_EPS = 2.0**-52


#: Armadillo's closed-form 4x4 determinant (R's DESeq2 ``det()`` of a 4-coefficient X'WX), as
#: the sum of 24 terms ``sign * (b[r0, c0] * b[r1, c1]) * (b[r2, c2] * b[r3, c3])`` taken from
#: left to right: one row per term, ``sign, r0, c0, r1, c1, r2, c2, r3, c3``.
_DET4_TERMS = np.array([
    [+1, 0, 3, 1, 2, 2, 1, 3, 0], [-1, 0, 2, 1, 3, 2, 1, 3, 0], [-1, 0, 3, 1, 1, 2, 2, 3, 0],
    [+1, 0, 1, 1, 3, 2, 2, 3, 0], [+1, 0, 2, 1, 1, 2, 3, 3, 0], [-1, 0, 1, 1, 2, 2, 3, 3, 0],
    [-1, 0, 3, 1, 2, 2, 0, 3, 1], [+1, 0, 2, 1, 3, 2, 0, 3, 1], [+1, 0, 3, 1, 0, 2, 2, 3, 1],
    [-1, 0, 0, 1, 3, 2, 2, 3, 1], [-1, 0, 2, 1, 0, 2, 3, 3, 1], [+1, 0, 0, 1, 2, 2, 3, 3, 1],
    [+1, 0, 3, 1, 1, 2, 0, 3, 2], [-1, 0, 1, 1, 3, 2, 0, 3, 2], [-1, 0, 3, 1, 0, 2, 1, 3, 2],
    [+1, 0, 0, 1, 3, 2, 1, 3, 2], [+1, 0, 1, 1, 0, 2, 3, 3, 2], [-1, 0, 0, 1, 1, 2, 3, 3, 2],
    [-1, 0, 2, 1, 1, 2, 0, 3, 3], [+1, 0, 1, 1, 2, 2, 0, 3, 3], [+1, 0, 2, 1, 0, 2, 1, 3, 3],
    [-1, 0, 0, 1, 2, 2, 1, 3, 3], [-1, 0, 1, 1, 0, 2, 2, 3, 3], [+1, 0, 0, 1, 1, 2, 2, 3, 3],
], dtype=np.int64)


@njit()
def _small_det(b: np.ndarray) -> float:
    """Closed-form determinant of a 1x1 to 4x4 matrix, in the operation order R's DESeq2 gets
    from Armadillo (cofactors of the first column for 3x3, :data:`_DET4_TERMS` for 4x4); NaN for
    larger ones."""
    p = b.shape[0]
    if p == 4:
        val = 0.0
        for t in range(_DET4_TERMS.shape[0]):
            r = _DET4_TERMS[t]
            term = (b[r[1], r[2]] * b[r[3], r[4]]) * (b[r[5], r[6]] * b[r[7], r[8]])
            if t == 0:
                val = term
            elif r[0] > 0:
                val = val + term
            else:
                val = val - term
        return val
    if p == 1:
        return b[0, 0]
    if p == 2:
        return b[0, 0] * b[1, 1] - b[0, 1] * b[1, 0]
    if p == 3:
        v1 = b[0, 0] * (b[2, 2] * b[1, 1] - b[1, 2] * b[2, 1])
        v2 = b[1, 0] * (b[2, 2] * b[0, 1] - b[1, 2] * b[0, 2])
        v3 = b[2, 0] * (b[2, 1] * b[0, 1] - b[1, 1] * b[0, 2])
        return v1 - v2 + v3
    return np.nan


@njit()
def _pow(v: float, e: float) -> float:
    """libm's ``pow``, as R's C++ calls it: ``pow(v, -1)`` is not always ``1 / v`` in the last bit.
    (The exponent is made opaque to the compiler, which would rewrite ``pow(v, -1.0)`` as a
    division.) Where DESeq2's compiled code itself gets a division (the Cox-Reid weights),
    the kernels divide; measured against DESeq2 1.38.3's C++ built by R's toolchain, its
    log-likelihood terms keep libm's ``pow`` while ``pow(pow(mu, -1) + alpha, -1)`` is
    ``1 / (1 / mu + alpha)``."""
    return math.pow(v, e)


@njit()
def _cr_gram(
    x: np.ndarray, inv_mu: np.ndarray, alpha: float, w: np.ndarray, b: np.ndarray,
    cols: np.ndarray,
) -> None:
    """The Cox-Reid system ``B = X' diag(w) X`` into ``b``, with the weights
    ``w = 1 / (1/mu + alpha)`` (R's compiled ``pow(pow(mu, -1) + alpha, -1)`` is two
    divisions, not libm's ``pow``: see :func:`_pow`)."""
    for i in range(x.shape[0]):
        w[i] = 1.0 / (inv_mu[i] + alpha)
    _gram(x, w, b, cols)


@njit()
def _cr_workspace(n: int, p: int) -> tuple[
    np.ndarray, np.ndarray, np.ndarray, np.ndarray, np.ndarray, np.ndarray, np.ndarray,
    np.ndarray, np.ndarray, np.ndarray, np.ndarray,
]:
    """Scratch for :func:`_log_posterior` and :func:`_dlog_posterior` (``n`` samples, ``p``
    coefficients), made once per gene: ``w, dw`` (n), ``b, db, low, a, inv`` (p x p), ``piv``
    and ``cols`` (int64, p), ``work`` (p), and ``memo`` (3): the log(alpha) whose ``X'WX`` is in
    ``b`` (NaN: none), its determinant and whether it was factored. Every buffer is written
    before it is read, so the values are those of fresh arrays."""
    memo = np.empty(3)
    memo[0] = np.nan
    return (np.empty(n), np.empty(n), np.empty((p, p)), np.empty((p, p)), np.zeros((p, p)),
            np.empty((p, p)), np.empty(p, dtype=np.int64), np.empty((p, p)), np.empty(p),
            np.empty(p, dtype=np.int64), memo)


@njit()
def _lu_factor(a: np.ndarray, piv: np.ndarray) -> bool:
    """LU with partial pivoting in place, in reference LAPACK ``dgetrf``'s order (first largest
    pivot, multipliers scaled by the pivot's reciprocal); ``piv[c]`` is the row swapped with
    ``c``. False when a pivot is zero (singular)."""
    p = a.shape[0]
    for c in range(p):
        r = c
        big = abs(a[c, c])
        for i in range(c + 1, p):
            if abs(a[i, c]) > big:
                big = abs(a[i, c])
                r = i
        piv[c] = r
        if a[r, c] == 0.0:
            return False
        if r != c:
            for j in range(p):
                t = a[c, j]
                a[c, j] = a[r, j]
                a[r, j] = t
        rc = 1.0 / a[c, c]
        for i in range(c + 1, p):
            a[i, c] = rc * a[i, c]
        for j in range(c + 1, p):
            t = -a[c, j]
            for i in range(c + 1, p):
                a[i, j] = a[i, j] + t * a[i, c]
    return True


@njit()
def _lu_det(b: np.ndarray, a: np.ndarray, piv: np.ndarray) -> float:
    """Determinant from the LU factors (:func:`_lu_factor`, as in :func:`_lu_inverse`): the
    product of U's diagonal from the first, negated per row swap (``a``, ``piv``: scratch)."""
    p = b.shape[0]
    a[:, :] = b
    if not _lu_factor(a, piv):
        return 0.0
    val = a[0, 0]
    for i in range(1, p):
        val *= a[i, i]
    swaps = 0
    for c in range(p):
        if piv[c] != c:
            swaps += 1
    return -val if swaps % 2 == 1 else val


@njit()
def _log_det(b: np.ndarray, low: np.ndarray, a: np.ndarray, piv: np.ndarray) -> tuple[float, float, bool]:
    """``(det, log det)`` of the SPD matrix ``b`` and whether it is positive definite, as R's
    Armadillo ``det`` gives it: the closed form up to 3x3 when it lies in ``(eps, 1/eps)``, else
    the LU factors; ``low`` gets the Cholesky factor only when neither gives a positive value
    (then the log determinant comes from it). ``a``, ``piv``: scratch for the LU factors."""
    det = _small_det(b)
    if det > _DET_EPS and det < 1.0 / _DET_EPS:
        return det, math.log(det), True
    det = _lu_det(b, a, piv)
    if det > 0.0:
        return det, math.log(det), True
    if not _cholesky(b, low):
        det = np.linalg.det(b)
        return det, math.log(max(det, 1e-300)), False
    logdet = 0.0
    for j in range(b.shape[0]):
        logdet += math.log(low[j, j])
    return math.exp(2.0 * logdet), 2.0 * logdet, True


@njit()
def _inverse_means(mu: np.ndarray) -> np.ndarray:
    """``1 / mu`` per sample (R's compiled ``pow(mu, -1)``, a division; R's C++ recomputes it at
    every call; it does not depend on alpha, so the line search computes it once per gene)."""
    out = np.empty(mu.shape[0])
    for i in range(mu.shape[0]):
        out[i] = 1.0 / mu[i]
    return out


@njit()
def log_posterior(
    log_alpha: float, y: np.ndarray, mu: np.ndarray, x: np.ndarray, prior_mean: float,
    prior_var: float, use_prior: bool, use_cr: bool,
) -> float:
    """DESeq2's log posterior of log(alpha) (see :func:`_log_posterior`)."""
    return _log_posterior(log_alpha, y, mu, _inverse_means(mu), x, prior_mean, prior_var,
                          use_prior, use_cr, _cr_workspace(x.shape[0], x.shape[1]))


@njit()
def _log_posterior(
    log_alpha: float, y: np.ndarray, mu: np.ndarray, inv_mu: np.ndarray, x: np.ndarray,
    prior_mean: float, prior_var: float, use_prior: bool, use_cr: bool, ws: Any,
) -> float:
    """DESeq2's log posterior of log(alpha): NB log likelihood (up to a constant), the
    Cox-Reid term ``-0.5 log det(X' W X)`` and an optional normal prior on log(alpha).

    Summed in R's order (per sample, from the first), so that equal inputs give R's bits: the
    line search compares values that differ by a few units in the last place on genes whose
    first step is tiny (one such gene moves the whole trend). ``ws``: :func:`_cr_workspace`.
    """
    n = x.shape[0]
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
        w, _, b, _, low, a, piv, _, _, cols, memo = ws
        _cr_gram(x, inv_mu, alpha, w, b, cols)
        det, logdet, factored = _log_det(b, low, a, piv)
        memo[0] = log_alpha  # b and its determinant, for a derivative at this very point
        memo[1] = det
        memo[2] = 1.0 if factored else 0.0
        cr = -0.5 * logdet
    prior = 0.0
    if use_prior:
        d = log_alpha - prior_mean
        prior = -0.5 * (d * d) / prior_var
    return ll + prior + cr


@njit()
def _lu_inverse(b: np.ndarray, inv: np.ndarray, a: np.ndarray, piv: np.ndarray,
                work: np.ndarray) -> bool:
    """Inverse of a small matrix in the order of reference LAPACK's ``dgetrf``/``dgetri``, which
    R's Armadillo uses for ``inv()`` beyond 2x2: LU with partial pivoting (first largest pivot,
    multipliers scaled by the pivot's reciprocal), the inverse of U built column by column,
    then ``inv(A) L = inv(U)`` solved from the last column back and the pivots' column swaps
    undone; False when singular. ``a``, ``piv``, ``work``: scratch (p x p, p, p)."""
    p = b.shape[0]
    a[:, :] = b
    if not _lu_factor(a, piv):
        return False
    for j in range(p):  # inverse of U in place
        a[j, j] = 1.0 / a[j, j]
        ajj = -a[j, j]
        for jj in range(j):
            if a[jj, j] != 0.0:
                t = a[jj, j]
                for i in range(jj):
                    a[i, j] = a[i, j] + t * a[i, jj]
                a[jj, j] = a[jj, j] * a[jj, jj]
        for i in range(j):
            a[i, j] = ajj * a[i, j]
    for j in range(p - 1, -1, -1):
        for i in range(j + 1, p):
            work[i] = a[i, j]
            a[i, j] = 0.0
        for jj in range(j + 1, p):
            t = -work[jj]
            for i in range(p):
                a[i, j] = a[i, j] + t * a[i, jj]
    for j in range(p - 2, -1, -1):
        jp = piv[j]
        if jp != j:
            for i in range(p):
                t = a[i, j]
                a[i, j] = a[i, jp]
                a[i, jp] = t
    for i in range(p):
        for j in range(p):
            inv[i, j] = a[i, j]
    return True


@njit()
def _looks_sympd(b: np.ndarray) -> bool:
    """Armadillo's guess that a matrix (4x4 or larger) is symmetric positive definite, which
    sends its ``inv()`` to the Cholesky route: positive diagonal, off-diagonal entries below the
    largest diagonal entry and below the mean of their two diagonal entries, symmetric."""
    p = b.shape[0]
    if p < 4:
        return False
    tol = 100.0 * 2.0**-52
    max_diag = 0.0
    for j in range(p):
        if b[j, j] <= 0.0:
            return False
        max_diag = max(max_diag, b[j, j])
    for j in range(p - 1):
        for i in range(j + 1, p):
            a_ij = abs(b[i, j])
            a_ji = abs(b[j, i])
            if a_ij >= max_diag:
                return False
            delta = abs(b[i, j] - b[j, i])
            if delta > tol and delta > max(a_ij, a_ji) * tol:
                return False
            if a_ij + a_ij >= b[i, i] + b[j, j]:
                return False
    return True


@njit()
def _sympd_inverse(b: np.ndarray, inv: np.ndarray, a: np.ndarray) -> bool:
    """Inverse of an SPD matrix in the order of reference LAPACK's ``dpotrf``/``dpotri`` (lower
    factor by columns, reciprocals multiplied; the triangular inverse from the last column back;
    ``L^-T L^-1`` row by row), R's Armadillo's route for ``inv()`` of a 4x4 or larger
    ``X'WX``; False when not positive definite. ``a``: scratch (p x p)."""
    p = b.shape[0]
    for i in range(p):
        for j in range(p):
            a[i, j] = b[i, j] if j <= i else 0.0
    for c in range(p):
        if not a[c, c] > 0.0:
            return False
        a[c, c] = math.sqrt(a[c, c])
        r = 1.0 / a[c, c]
        for i in range(c + 1, p):
            a[i, c] = r * a[i, c]
        for j in range(c + 1, p):
            t = -a[j, c]
            for i in range(j, p):
                a[i, j] = a[i, j] + t * a[i, c]
    for j in range(p - 1, -1, -1):
        a[j, j] = 1.0 / a[j, j]
        ajj = -a[j, j]
        for jj in range(p - 1, j, -1):
            if a[jj, j] != 0.0:
                t = a[jj, j]
                for i in range(p - 1, jj, -1):
                    a[i, j] = a[i, j] + t * a[i, jj]
                a[jj, j] = a[jj, j] * a[jj, jj]
        for i in range(j + 1, p):
            a[i, j] = ajj * a[i, j]
    for i in range(p):
        aii = a[i, i]
        if i < p - 1:
            s = 0.0
            for k2 in range(i, p):
                s += a[k2, i] * a[k2, i]
            a[i, i] = s
            for jj in range(i):
                t = 0.0
                for k2 in range(i + 1, p):
                    t += a[k2, jj] * a[k2, i]
                a[i, jj] = aii * a[i, jj] + t
        else:
            for jj in range(i + 1):
                a[i, jj] = aii * a[i, jj]
    for i in range(p):
        for j in range(p):
            inv[i, j] = a[i, j] if i >= j else a[j, i]
    return True


@njit()
def _trace_inv_product(b: np.ndarray, det: float, db: np.ndarray, low: np.ndarray,
                       inv: np.ndarray, a: np.ndarray, piv: np.ndarray, work: np.ndarray) -> float:
    """``trace(B^-1 dB)`` as R's Armadillo computes ``trace(b.i() * db)``: the closed-form
    inverse for 2x2, the LAPACK Cholesky route for 4x4 and larger matrices that look SPD, LU
    otherwise; the trace of the product accumulated in two interleaved sums. ``inv``, ``a``,
    ``piv``, ``work``: scratch."""
    p = b.shape[0]
    if p == 1:
        return (1.0 / b[0, 0]) * db[0, 0]
    if p == 2 and abs(det) > _DET_EPS and abs(det) < 1.0 / _DET_EPS:
        i00 = b[1, 1] / det
        i01 = -b[0, 1] / det
        i10 = -b[1, 0] / det
        i11 = b[0, 0] / det
        acc1 = i00 * db[0, 0]
        acc2 = i01 * db[1, 0]
        acc1 += i10 * db[0, 1]
        acc2 += i11 * db[1, 1]
        return acc1 + acc2
    done = _sympd_inverse(b, inv, a) if _looks_sympd(b) else False
    if not done and not _lu_inverse(b, inv, a, piv, work) and _cholesky(b, low):
        _cholesky_inverse(low, np.empty(p), inv)
    # trace of a product as Armadillo sums it: two accumulators, alternate inner terms
    acc1 = 0.0
    acc2 = 0.0
    for k in range(p):
        j = 1
        while j < p:
            acc1 += inv[k, j - 1] * db[j - 1, k]
            acc2 += inv[k, j] * db[j, k]
            j += 2
        if j - 1 < p:
            acc1 += inv[k, j - 1] * db[j - 1, k]
    return acc1 + acc2


@njit()
def dlog_posterior(
    log_alpha: float, y: np.ndarray, mu: np.ndarray, x: np.ndarray, prior_mean: float,
    prior_var: float, use_prior: bool, use_cr: bool,
) -> float:
    """Derivative of :func:`log_posterior` with respect to log(alpha) (see
    :func:`_dlog_posterior`)."""
    return _dlog_posterior(log_alpha, y, mu, _inverse_means(mu), x, prior_mean, prior_var,
                           use_prior, use_cr, _cr_workspace(x.shape[0], x.shape[1]))


@njit()
def _dlog_posterior(
    log_alpha: float, y: np.ndarray, mu: np.ndarray, inv_mu: np.ndarray, x: np.ndarray,
    prior_mean: float, prior_var: float, use_prior: bool, use_cr: bool, ws: Any,
) -> float:
    """Derivative of :func:`log_posterior` with respect to log(alpha), in R's operation order
    (``1/alpha^2`` times the per-sample sum; the Cox-Reid part as ``-0.5 det(B) tr(B^-1 dB) /
    det(B)``): the line search's first proposal is ``log(alpha) + derivative``, whose last bits
    decide knife-edge genes. ``ws``: :func:`_cr_workspace`."""
    n = x.shape[0]
    alpha = math.exp(log_alpha)
    inv_alpha = 1.0 / alpha
    dg_inv = digamma(inv_alpha)
    minus_one = -1.0 - 0.0 * alpha  # -1, not a compile-time constant (see _pow)
    s = 0.0
    for i in range(n):
        ma = mu[i] * alpha
        s += (
            dg_inv + math.log(1.0 + ma) - ma * _pow(1.0 + ma, minus_one)
            - digamma(y[i] + inv_alpha) + y[i] * _pow(mu[i] + inv_alpha, minus_one)
        )
    ll = (1.0 / (alpha * alpha)) * s
    cr = 0.0
    if use_cr:
        w, dw, b, db, low, a, piv, inv, work, cols, memo = ws
        for i in range(n):
            dw[i] = -_pow(inv_mu[i] + alpha, 2.0 * minus_one)  # libm's pow(t, -2)
        _gram(x, dw, db, cols)
        if memo[0] == log_alpha:  # b holds X'WX at this very point (the line search evaluates
            det = memo[1]  # the posterior, then the derivative where it accepts): reused
            factored = memo[2] != 0.0
        else:
            _cr_gram(x, inv_mu, alpha, w, b, cols)
            det, _, factored = _log_det(b, low, a, piv)
            memo[0] = log_alpha
            memo[1] = det
            memo[2] = 1.0 if factored else 0.0
        if factored:
            cr = -0.5 * (det * _trace_inv_product(b, det, db, low, inv, a, piv, work)) / det
        else:
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
        im = _inverse_means(mr)
        ws = _cr_workspace(x.shape[0], x.shape[1])
        lp = _log_posterior(a, yr, mr, im, x, pm, prior_var, use_prior, use_cr, ws)
        dlp = _dlog_posterior(a, yr, mr, im, x, pm, prior_var, use_prior, use_cr, ws)
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
            theta_kappa = -_log_posterior(a + kappa * dlp, yr, mr, im, x, pm, prior_var,
                                          use_prior, use_cr, ws)
            theta_hat_kappa = -lp - kappa * ARMIJO_EPS * dlp * dlp
            if theta_kappa <= theta_hat_kappa:
                accepted += 1
                a = a + kappa * dlp
                # R evaluates the log posterior here again, at the very point theta_kappa was
                # computed at (the same expression of the same values): the same number
                lpnew = -theta_kappa
                change = lpnew - lp
                if change < tol:
                    lp = lpnew
                    break
                if a < min_log_alpha:
                    break
                lp = lpnew
                dlp = _dlog_posterior(a, yr, mr, im, x, pm, prior_var, use_prior, use_cr, ws)
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
        im = _inverse_means(mr)
        ws = _cr_workspace(x.shape[0], x.shape[1])
        pm = prior_mean[g]
        best = -np.inf
        a_hat = grid[0]
        for t in range(n_grid):
            v = _log_posterior(grid[t], yr, mr, im, x, pm, prior_var, use_prior, use_cr, ws)
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
            v = _log_posterior(a, yr, mr, im, x, pm, prior_var, use_prior, use_cr, ws)
            if v > best:
                best = v
                a_best = a
        out_log_alpha[g] = a_best


@njit()
def _reflect(house: np.ndarray, a: np.ndarray, i: int, tau: float, m: int, p: int) -> None:
    """Apply reflector ``i`` (``v = (1, house[i, i+1:])``) to columns ``i+1..p-1`` of ``a``, as
    reference LAPACK's ``dlarf`` for one column at a time: ``s = a[j, i] + sum_k a[j, k] v[k]``
    summed over k in order, and when ``s != 0`` ``a[j, .] += v (-tau s)``. Matrices are stored
    column-major (``a[j, k]`` is row k of column j), so both loops run along memory and the
    update vectorises; two columns are processed side by side (two independent sums, each in
    the reference order). No bit changes."""
    j = i + 1
    while j + 1 < p:
        s0 = a[j, i]
        s1 = a[j + 1, i]
        for k in range(i + 1, m):
            v = house[i, k]
            s0 += a[j, k] * v
            s1 += a[j + 1, k] * v
        if s0 != 0.0:
            t0 = -tau * s0
            a[j, i] = a[j, i] + t0
            for k in range(i + 1, m):
                a[j, k] = a[j, k] + house[i, k] * t0
        if s1 != 0.0:
            t1 = -tau * s1
            a[j + 1, i] = a[j + 1, i] + t1
            for k in range(i + 1, m):
                a[j + 1, k] = a[j + 1, k] + house[i, k] * t1
        j += 2
    if j < p:
        s0 = a[j, i]
        for k in range(i + 1, m):
            s0 += a[j, k] * house[i, k]
        if s0 != 0.0:
            t0 = -tau * s0
            a[j, i] = a[j, i] + t0
            for k in range(i + 1, m):
                a[j, k] = a[j, k] + house[i, k] * t0


@njit()
def _qr_weighted_solve(
    x: np.ndarray, sw: np.ndarray, zw: np.ndarray, sqrt_ridge: np.ndarray, house: np.ndarray,
    tau: np.ndarray, q: np.ndarray, beta: np.ndarray,
) -> bool:
    """One IRLS solve as DESeq2's ``fitBeta`` (``useQR``) makes it: Householder QR of
    ``[sqrt(W) X; sqrt(ridge)]`` (reflectors ``v = (1, ...)``, ``tau = (beta - alpha) / beta``,
    norms as ``sqrt`` of sequential sums of squares, ``hypot`` as ``w sqrt(1 + (z/w)^2)``), the
    first columns of Q formed by applying the reflectors last to first, ``gamma = Q' sqrt(W) z``
    summed in row order, then back substitution with R. Written to these steps (the reference
    LAPACK/BLAS order R uses) so the coefficients equal R's to the last bit; False when R is
    singular. ``house`` and ``q`` are ``p x (n + p)``: the matrices stored column-major."""
    n, p = x.shape
    for i in range(n):
        for j in range(p):
            house[j, i] = x[i, j] * sw[i]
    for i in range(p):
        for j in range(p):
            house[j, n + i] = sqrt_ridge[i] if i == j else 0.0
    # Reflector i has zeros below row n + i: the ridge rows n + r, r > i, are still untouched
    # (their only entry, sqrt(ridge_r), sits in column r > i). The loops stop at row n + i:
    # the skipped terms are products with those zeros, whose addition changes no bit.
    for i in range(p):
        last = n + i + 1
        alpha = house[i, i]
        ss = 0.0
        for k in range(i + 1, last):
            ss += house[i, k] * house[i, k]
        xnorm = math.sqrt(ss)
        if xnorm == 0.0:
            tau[i] = 0.0
        else:
            big = max(abs(alpha), xnorm)
            small = min(abs(alpha), xnorm)
            hyp = big if small == 0.0 else big * math.sqrt(1.0 + (small / big) * (small / big))
            beta_i = -math.copysign(hyp, alpha)
            tau[i] = (beta_i - alpha) / beta_i
            scale = 1.0 / (alpha - beta_i)
            for k in range(i + 1, last):
                house[i, k] = scale * house[i, k]
            house[i, i] = beta_i
        if tau[i] != 0.0:  # apply the reflector to the remaining columns
            _reflect(house, house, i, tau[i], last, p)
    for i in range(p - 1, -1, -1):  # the first p columns of Q (rows below n + i never read)
        last = n + i + 1
        if tau[i] != 0.0:
            _reflect(house, q, i, tau[i], last, p)
        for k in range(i + 1, last):
            q[i, k] = -tau[i] * house[i, k]
        q[i, i] = 1.0 - tau[i]
        for k in range(i):
            q[i, k] = 0.0
    for j in range(p):
        s = 0.0
        for k in range(n):
            s += q[j, k] * zw[k]
        beta[j] = s
    for k in range(p - 1, -1, -1):
        if house[k, k] == 0.0:
            return False
        if beta[k] != 0.0:
            beta[k] = beta[k] / house[k, k]
            for i in range(k):
                beta[i] = beta[i] - beta[k] * house[k, i]
    return True


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
    sqrt_ridge = np.sqrt(ridge)
    for g in prange(n_genes):
        yr = y[g]
        a = alpha[g]
        size = 1.0 / a
        ll_const = np.empty(n)  # the deviance's mu-free terms, fixed during the iterations
        for i in range(n):
            ll_const[i] = _nb_log_pmf_const(yr[i], size)
        beta = beta0[g].copy()
        mu = np.empty(n)
        w = np.empty(n)
        b = np.empty((p, p))
        low = np.zeros((p, p))
        tmp = np.empty(p)
        sw = np.empty(n)
        zw = np.empty(n)
        house = np.empty((p, n + p))  # column-major: the reflectors' loops run along rows
        tau = np.empty(p)
        q = np.empty((p, n + p))
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
                sw[i] = math.sqrt(w[i])
                zw[i] = sw[i] * (math.log(mu[i] / sf[i]) + (yr[i] - mu[i]) / mu[i])
            if not _qr_weighted_solve(x, sw, zw, sqrt_ridge, house, tau, q, beta):
                iters = maxit
                break
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
                dev += -2.0 * _nb_log_pmf_with(ll_const[i], yr[i], size, mu[i])
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
        _gram(x, w, b, np.empty(p, dtype=np.int64))
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
        # only the diagonal of inv @ gram @ inv: sum_k inv[j, k] (sum_l gram[k, l] inv[l, j])
        for j in range(p):
            var = 0.0
            for kk in range(p):
                row = 0.0
                for ll in range(p):
                    row += gram[kk, ll] * inv[ll, j]
                var += inv[j, kk] * row
            out_var[g, j] = var


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
        _gram(x, w, gram, np.empty(p, dtype=np.int64))
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
