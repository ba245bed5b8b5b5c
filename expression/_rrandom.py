"""R's default random number streams, bit for bit (``RNGkind("Mersenne-Twister", "Inversion")``).

DESeq2 draws random numbers in one place that changes its results: the dispersion prior variance
for 1 to 3 residual degrees of freedom (``set.seed(2)``, then ``rchisq`` and ``rnorm`` draws; see
:mod:`expression._rprior`). Reproducing R there needs R's streams exactly, which this module
implements from the published algorithms and R's documented conventions:

* **Uniforms** (``unif_rand``): the Mersenne-Twister MT19937 of Matsumoto & Nishimura (1998),
  its 32-bit output times ``2.3283064365386963e-10`` (``2^-32``), then R's fix-up that never
  returns exactly 0 or 1 (``0.5 / (2^32 - 1)`` and one minus that).
* **Seeding** (``set.seed(seed)``): R scrambles the integer seed with 50 steps of the linear
  congruential generator ``seed = 69069 * seed + 1 (mod 2^32)``, then fills the 625-word state
  (position index followed by the 624 MT words) with 625 further steps, then sets the position
  to 624, so the first draw regenerates the whole block. :func:`seed_state` returns the same
  625 words as R's ``.Random.seed[-1]`` (read as unsigned 32-bit integers).
* **Normals** (``norm_rand``, R's default ``"Inversion"``): ``u = floor(2^27 * u1) + u2`` from two
  uniforms, then ``qnorm(u / 2^27)`` by Wichura's algorithm AS 241 (PPND16), the quantile R
  uses. ``rnorm(n, mean, sd)`` is ``mean + sd * norm_rand()``; with ``sd == 0`` R returns
  ``mean`` *without drawing*, and so does :meth:`RStream.rnorm`.
* **Exponentials** (``exp_rand``): Ahrens & Dieter (1972) algorithm SA with R's table of
  ``q_k = sum_{i<=k} ln(2)^i / i!``.
* **Gammas** (``rgamma(a, scale)``): Ahrens & Dieter (1982) algorithm GD for ``a >= 1``
  (normal deviate, squeeze, quotient and double-exponential rejection steps with the published
  constants), Ahrens & Dieter (1974) algorithm GS for ``a < 1``.
* **Chi-squared**: ``rchisq(df) = rgamma(df / 2, scale = 2)``.

Verified against R 4.2.2 (``tests/expression/test_r_numerics.py`` and the CSVs written by
``tests/expression/r_reference/make_r_reference.R``): the state after ``set.seed`` for several
seeds equals ``.Random.seed``; ``runif``, ``rnorm`` (several ``sd``), ``rexp``, ``rgamma``
(shapes 0.3 to 20) and ``rchisq`` (df 1, 2, 3) equal R's draws exactly, including
``set.seed(2); rchisq(1e4, df); rnorm(1e4, 0, 0.5)`` for df 1, 2, 3 and DESeq2's full sequence of
200 ``rchisq``/``rnorm`` pairs (4 million draws) per df; ``qnorm`` equals R's on 0 < p < 1 down
to ``1e-300``.

The hot loops are Numba kernels working on the state array; :class:`RStream` is the
convenient wrapper.
"""

from __future__ import annotations

import math

import numpy as np

from engine.runtime import njit

__all__ = ["EXP_Q", "RStream", "norm_rand_kernel", "qnorm", "rgamma_kernel", "seed_state"]

_N = 624
_M = 397
_MATRIX_A = 0x9908B0DF
_UPPER = 0x80000000
_LOWER = 0x7FFFFFFF
_MASK32 = 0xFFFFFFFF
_TO_UNIT = 2.3283064365386963e-10  # 2^-32
_I2_32M1 = 2.328306437080797e-10  # 1 / (2^32 - 1)
_BIG = 134217728.0  # 2^27

#: ``q[k-1] = sum_{i=1..k} ln(2)^i / i!`` (Ahrens & Dieter 1972), as R tabulates them.
EXP_Q = np.array([
    0.6931471805599453, 0.9333736875190459, 0.9888777961838675, 0.9984959252914960040,
    0.9998292811061389, 0.9999833164100727, 0.9999985691438767, 0.9999998906925558,
    0.9999999924734159, 0.9999999995283275, 0.9999999999728814, 0.9999999999985598,
    0.9999999999999289, 0.9999999999999968, 0.9999999999999999, 1.0000000000000000,
])


def seed_state(seed: int) -> np.ndarray:
    """The generator state R holds after ``set.seed(seed)`` (default kinds).

    Parameters
    ----------
    seed
        The integer given to ``set.seed`` (any value R accepts as an integer).

    Returns
    -------
    numpy.ndarray
        625 ``int64`` words in ``[0, 2^32)``: the position (624) and the 624 Mersenne-Twister
        words, equal to ``.Random.seed[-1]`` read as unsigned integers.

    Examples
    --------
    >>> state = seed_state(2)
    >>> int(state[0])
    624
    """
    s = int(seed) & _MASK32
    for _ in range(50):
        s = (69069 * s + 1) & _MASK32
    state = np.empty(_N + 1, dtype=np.int64)
    for j in range(_N + 1):
        s = (69069 * s + 1) & _MASK32
        state[j] = s
    state[0] = _N  # FixupSeeds(initial=TRUE): position = 624
    if not np.any(state[1:]):  # pragma: no cover - impossible for an LCG fill
        raise ValueError("all-zero Mersenne-Twister state")
    return state


@njit()
def _mt_genrand(state: np.ndarray) -> float:
    """One Mersenne-Twister output in [0, 1) (``MT_genrand``); advances ``state`` in place."""
    mti = state[0]
    if mti >= _N:
        for kk in range(_N - _M):
            y = (state[1 + kk] & _UPPER) | (state[2 + kk] & _LOWER)
            v = state[1 + kk + _M] ^ (y >> 1)
            if y & 1:
                v ^= _MATRIX_A
            state[1 + kk] = v
        for kk in range(_N - _M, _N - 1):
            y = (state[1 + kk] & _UPPER) | (state[2 + kk] & _LOWER)
            v = state[1 + kk + (_M - _N)] ^ (y >> 1)
            if y & 1:
                v ^= _MATRIX_A
            state[1 + kk] = v
        y = (state[_N] & _UPPER) | (state[1] & _LOWER)
        v = state[_M] ^ (y >> 1)
        if y & 1:
            v ^= _MATRIX_A
        state[_N] = v
        mti = 0
    y = state[1 + mti]
    mti += 1
    y ^= y >> 11
    y ^= (y << 7) & 0x9D2C5680
    y ^= (y << 15) & 0xEFC60000
    y ^= y >> 18
    y &= _MASK32
    state[0] = mti
    return float(y) * _TO_UNIT


@njit()
def _unif_rand(state: np.ndarray) -> float:
    """R's ``unif_rand``: a Mersenne-Twister draw, never exactly 0 or 1."""
    x = _mt_genrand(state)
    if x <= 0.0:
        return 0.5 * _I2_32M1
    if (1.0 - x) <= 0.0:
        return 1.0 - 0.5 * _I2_32M1
    return x


@njit()
def _qnorm_std(p: float) -> float:
    """Standard normal quantile for a lower-tail probability ``p`` (AS 241, as in R)."""
    if math.isnan(p):
        return p
    if p <= 0.0:
        return -math.inf if p == 0.0 else math.nan
    if p >= 1.0:
        return math.inf if p == 1.0 else math.nan
    q = p - 0.5
    if abs(q) <= 0.425:
        r = 0.180625 - q * q
        num = (((((((r * 2509.0809287301226727 + 33430.575583588128105) * r
                    + 67265.770927008700853) * r + 45921.953931549871457) * r
                  + 13731.693765509461125) * r + 1971.5909503065514427) * r
                + 133.14166789178437745) * r + 3.387132872796366608)
        den = (((((((r * 5226.495278852854561 + 28729.085735721942674) * r
                    + 39307.89580009271061) * r + 21213.794301586595867) * r
                  + 5394.1960214247511077) * r + 687.1870074920579083) * r
                + 42.313330701600911252) * r + 1.0)
        return q * num / den
    r = (0.5 - p + 0.5) if q > 0 else p
    r = math.sqrt(-math.log(r))
    if r <= 5.0:
        r += -1.6
        num = (((((((r * 7.7454501427834140764e-4 + 0.0227238449892691845833) * r
                    + 0.24178072517745061177) * r + 1.27045825245236838258) * r
                  + 3.64784832476320460504) * r + 5.7694972214606914055) * r
                + 4.6303378461565452959) * r + 1.42343711074968357734)
        den = (((((((r * 1.05075007164441684324e-9 + 5.475938084995344946e-4) * r
                    + 0.0151986665636164571966) * r + 0.14810397642748007459) * r
                  + 0.68976733498510000455) * r + 1.6763848301838038494) * r
                + 2.05319162663775882187) * r + 1.0)
    else:
        r += -5.0
        num = (((((((r * 2.01033439929228813265e-7 + 2.71155556874348757815e-5) * r
                    + 0.0012426609473880784386) * r + 0.026532189526576123093) * r
                  + 0.29656057182850489123) * r + 1.7848265399172913358) * r
                + 5.4637849111641143699) * r + 6.6579046435011037772)
        den = (((((((r * 2.04426310338993978564e-15 + 1.4215117583164458887e-7) * r
                    + 1.8463183175100546818e-5) * r + 7.868691311456132591e-4) * r
                  + 0.0148753612908506148525) * r + 0.13692988092273580531) * r
                + 0.59983220655588793769) * r + 1.0)
    val = num / den
    if q < 0.0:
        val = -val
    return val


@njit()
def norm_rand_kernel(state: np.ndarray) -> float:
    """R's ``norm_rand`` by inversion: two uniforms give 2^27 * 2^32 resolution, then qnorm."""
    u = _unif_rand(state)
    u = float(int(_BIG * u)) + _unif_rand(state)
    return _qnorm_std(u / _BIG)


@njit()
def _exp_rand(state: np.ndarray, q: np.ndarray) -> float:
    """R's ``exp_rand``: Ahrens & Dieter (1972) algorithm SA."""
    a = 0.0
    u = _unif_rand(state)
    while u <= 0.0 or u >= 1.0:
        u = _unif_rand(state)
    while True:
        u += u
        if u > 1.0:
            break
        a += q[0]
    u -= 1.0
    if u <= q[0]:
        return a + u
    i = 0
    ustar = _unif_rand(state)
    umin = ustar
    while True:
        ustar = _unif_rand(state)
        if umin > ustar:
            umin = ustar
        i += 1
        if u <= q[i]:
            break
    return a + umin * q[0]


@njit()
def rgamma_kernel(state: np.ndarray, q_exp: np.ndarray, a: float, scale: float) -> float:
    """R's ``rgamma(a, scale)``: GD (Ahrens & Dieter 1982) for a >= 1, GS (1974) for a < 1."""
    if math.isnan(a) or math.isnan(scale):
        return math.nan
    if a <= 0.0 or scale <= 0.0:
        if scale == 0.0 or a == 0.0:
            return 0.0
        return math.nan
    if math.isinf(a) or math.isinf(scale):
        return math.inf
    if a < 1.0:
        e = 1.0 + 0.36787944117144232159 * a
        while True:
            p = e * _unif_rand(state)
            if p >= 1.0:
                x = -math.log((e - p) / a)
                if _exp_rand(state, q_exp) >= (1.0 - a) * math.log(x):
                    break
            else:
                x = math.exp(math.log(p) / a)
                if _exp_rand(state, q_exp) >= x:
                    break
        return scale * x
    # GD, step 1
    s2 = a - 0.5
    s = math.sqrt(s2)
    d = 5.656854 - s * 12.0
    # step 2: immediate acceptance
    t = norm_rand_kernel(state)
    x = s + 0.5 * t
    ret_val = x * x
    if t >= 0.0:
        return scale * ret_val
    # step 3: squeeze acceptance
    u = _unif_rand(state)
    if d * u <= t * t * t:
        return scale * ret_val
    # step 4: constants of the quotient and the hat
    r = 1.0 / a
    q0 = ((((((2.424e-4 * r + 2.4511e-4) * r + -7.388e-5) * r + 0.00144121) * r
            + 0.00801191) * r + 0.02083148) * r + 0.04166669) * r
    if a <= 3.686:
        b = 0.463 + s + 0.178 * s2
        si = 1.235
        c = 0.195 / s - 0.079 + 0.16 * s
    elif a <= 13.022:
        b = 1.654 + 0.0076 * s2
        si = 1.68 / s + 0.275
        c = 0.062 / s + 0.024
    else:
        b = 1.77
        si = 0.75
        c = 0.1515 / s
    # steps 5-7: quotient acceptance
    if x > 0.0:
        v = t / (s + s)
        if abs(v) <= 0.25:
            q = q0 + 0.5 * t * t * ((((((0.1233795 * v + -0.1367177) * v + 0.1423657) * v
                                       + -0.1662921) * v + 0.2000062) * v + -0.250003) * v
                                    + 0.3333333) * v
        else:
            q = q0 - s * t + 0.25 * t * t + (s2 + s2) * math.log(1.0 + v)
        if math.log(1.0 - u) <= q:
            return scale * ret_val
    # steps 8-11: double-exponential rejection
    while True:
        e = _exp_rand(state, q_exp)
        u = _unif_rand(state)
        u = u + u - 1.0
        if u < 0.0:
            t = b - si * e
        else:
            t = b + si * e
        if t >= -0.71874483771719:
            v = t / (s + s)
            if abs(v) <= 0.25:
                q = q0 + 0.5 * t * t * ((((((0.1233795 * v + -0.1367177) * v + 0.1423657) * v
                                           + -0.1662921) * v + 0.2000062) * v + -0.250003) * v
                                        + 0.3333333) * v
            else:
                q = q0 - s * t + 0.25 * t * t + (s2 + s2) * math.log(1.0 + v)
            if q > 0.0:
                w = math.expm1(q)
                if c * abs(u) <= w * math.exp(e - 0.5 * t * t):
                    break
    x = s + 0.5 * t
    return scale * x * x


@njit()
def _fill_unif(state: np.ndarray, out: np.ndarray) -> None:
    for i in range(out.shape[0]):
        out[i] = _unif_rand(state)


@njit()
def _fill_norm(state: np.ndarray, out: np.ndarray, mean: float, sd: float) -> None:
    for i in range(out.shape[0]):
        out[i] = mean + sd * norm_rand_kernel(state)


@njit()
def _fill_exp(state: np.ndarray, q_exp: np.ndarray, out: np.ndarray, scale: float) -> None:
    for i in range(out.shape[0]):
        out[i] = scale * _exp_rand(state, q_exp)


@njit()
def _fill_gamma(state: np.ndarray, q_exp: np.ndarray, out: np.ndarray, a: float,
                scale: float) -> None:
    for i in range(out.shape[0]):
        out[i] = rgamma_kernel(state, q_exp, a, scale)


@njit()
def _fill_qnorm(p: np.ndarray, out: np.ndarray) -> None:
    for i in range(p.shape[0]):
        out[i] = _qnorm_std(p[i])


def qnorm(p: np.ndarray | float) -> np.ndarray:
    """R's ``qnorm(p)`` (standard normal, lower tail, AS 241) elementwise.

    Parameters
    ----------
    p
        Probabilities.

    Returns
    -------
    numpy.ndarray
        Quantiles (``-inf``/``inf`` at 0/1, NaN outside [0, 1]).

    Examples
    --------
    >>> float(qnorm(0.975)[0])
    1.9599639845400536
    """
    arr = np.atleast_1d(np.asarray(p, dtype=np.float64)).ravel()
    out = np.empty_like(arr)
    _fill_qnorm(np.ascontiguousarray(arr), out)
    return out


class RStream:
    """One R random number stream (default kinds), drawn in the order R would draw.

    Parameters
    ----------
    seed
        As given to R's ``set.seed``.

    Examples
    --------
    >>> rng = RStream(2)
    >>> x = rng.rchisq(10_000, 1.0)   # set.seed(2); x <- rchisq(1e4, 1)
    >>> y = rng.rnorm(10_000, sd=0.5)  # y <- rnorm(1e4, 0, 0.5)
    >>> x.shape, y.shape
    ((10000,), (10000,))
    """

    def __init__(self, seed: int) -> None:
        self.state = seed_state(seed)

    def set_seed(self, seed: int) -> None:
        """Restart the stream as ``set.seed(seed)`` does."""
        self.state = seed_state(seed)

    def runif(self, n: int) -> np.ndarray:
        """``runif(n)``: ``n`` uniforms on (0, 1)."""
        out = np.empty(int(n))
        _fill_unif(self.state, out)
        return out

    def rnorm(self, n: int, *, mean: float = 0.0, sd: float = 1.0) -> np.ndarray:
        """``rnorm(n, mean, sd)``; ``sd == 0`` (or infinite ``mean``) draws nothing, as in R."""
        out = np.empty(int(n))
        if math.isnan(mean) or not math.isfinite(sd) or sd < 0.0:
            out.fill(math.nan)
        elif sd == 0.0 or not math.isfinite(mean):
            out.fill(mean)
        else:
            _fill_norm(self.state, out, float(mean), float(sd))
        return out

    def rexp(self, n: int, *, rate: float = 1.0) -> np.ndarray:
        """``rexp(n, rate)``."""
        out = np.empty(int(n))
        scale = 1.0 / rate
        if not math.isfinite(scale) or scale <= 0.0:
            out.fill(0.0 if scale == 0.0 else math.nan)
        else:
            _fill_exp(self.state, EXP_Q, out, scale)
        return out

    def rgamma(self, n: int, shape: float, *, scale: float = 1.0) -> np.ndarray:
        """``rgamma(n, shape, scale = scale)``."""
        out = np.empty(int(n))
        _fill_gamma(self.state, EXP_Q, out, float(shape), float(scale))
        return out

    def rchisq(self, n: int, df: float) -> np.ndarray:
        """``rchisq(n, df)`` = ``rgamma(n, df / 2, scale = 2)``."""
        if not math.isfinite(df) or df < 0.0:
            return np.full(int(n), math.nan)
        return self.rgamma(n, df / 2.0, scale=2.0)
