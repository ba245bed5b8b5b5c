"""Numba kernels of the cytometry transforms: arrays and scalars in, arrays out.

The logicle, hyperlog and FlowJo biex scales share one shape. Around the point ``x1`` that
data value 0 maps to, each is an odd reflection ``B(x1 - δ) = -B(x1 + δ)`` of

.. math::

    h(δ) = A_1\\,\\mathrm{expm1}(bδ) - C_1\\,\\mathrm{expm1}(-dδ) + Lδ, \\qquad δ \\ge 0,

with ``L = 0`` for the biexponentials (logicle, FlowJo biex) and ``C_1 = 0`` for hyperlog.
Writing the functions in this ``expm1`` form (``A_1 = a e^{b x_1}``, ``C_1 = c e^{-d x_1}``)
instead of ``a e^{by} - c e^{-dy} + f`` removes the cancellation near zero: both terms are
non-negative for ``δ >= 0``, so ``h`` is accurate to a few ulps everywhere, including for raw
values near zero. ``h`` is increasing; for the logicle it is also convex on ``δ >= 0``.

Near the largest doubles ``expm1(bδ)`` overflows while ``A_1 e^{bδ}`` is still finite (``A_1``
is small), and the Halley terms ``h'``, ``r h''`` overflow while the step is finite. Only
there (raw magnitudes above ``1e150``, where nothing that was finite before changes) the term
becomes ``exp(bδ + log A_1) - A_1`` and the step is computed from derivatives scaled by
``2^-600``, so the transform stays increasing up to ``±1.8e308``.

The inverse transform (scale value to raw value) is this closed form. The forward transform
solves ``h(δ) = |x|`` by Halley's method, safeguarded by a bracket ``[0, t]`` where
``t = log1p(|x| / A_1) / b`` is an upper bound (``h(t) >= A_1 expm1(bt) = |x|``). The starting
point comes from a small table of ``δ`` against ``t`` at equally spaced ``t`` (an O(1) lookup
and a cubic Hermite interpolation, accurate to ~1e-9), so one Halley step normally reaches full
double precision; outside the table, or without one, the iteration starts from
``min(t, |x| / h'(0))`` (both are upper bounds of the root when ``h`` is convex) and runs to
convergence, falling back to bisection whenever a step leaves the bracket.

Parameter layout
----------------
The per-parameter-set constants are a ``float64`` array ``p`` (built once, in Python, by
``gating._transforms``), indexed by the ``P_*`` constants of this module:

``p[P_X1]``
    ``x1``, the scale position of raw 0, in the kernel's internal units ``u``.
``p[P_A1]``, ``p[P_B]``, ``p[P_C1]``, ``p[P_D]``, ``p[P_LIN]``
    ``A_1, b, C_1, d, L`` of ``h`` above.
``p[P_SCALE]``
    Output scale: the transform's value is ``y = u * scale`` (1 for logicle/hyperlog).
``p[P_SLOPE0]``
    ``h'(0) = A_1 b + C_1 d + L``.
``p[P_INV_DT]``
    ``1 / Δt`` of the start table (0 means: no table).

The start table ``knots`` is ``float64[n + 1, 2]``: ``knots[k] = (δ(t_k), dδ/dt(t_k))`` at
``t_k = k Δt``. Build it with :func:`biex_start_table`.

All kernels are exact (no fastmath) and release the GIL; the ``parallel`` ones follow the
thread cap of :func:`engine.runtime.thread_limit`.
"""

from __future__ import annotations

import math

import numba
import numpy as np

from engine.runtime import njit

__all__ = [
    "N_PARAMS",
    "P_A1",
    "P_B",
    "P_C1",
    "P_D",
    "P_INV_DT",
    "P_LIN",
    "P_SCALE",
    "P_SLOPE0",
    "P_X1",
    "asinh_forward",
    "asinh_inverse",
    "biex_eval",
    "biex_forward",
    "biex_inverse",
    "biex_solve",
    "biex_start_table",
]

P_X1 = 0
P_A1 = 1
P_B = 2
P_C1 = 3
P_D = 4
P_LIN = 5
P_SCALE = 6
P_SLOPE0 = 7
P_INV_DT = 8
N_PARAMS = 9

#: Halley stops once a step is below this fraction of the current ``δ``. Near the root the
#: step equals the error it removes, and Halley's error contracts as ``e' ~ (b^2 / 12) e^3``
#: for these exponentials, so the error left is ``~(b^2/12) δ^2 1e-18`` relative to ``δ``:
#: below an ulp for any ``b`` up to ~25 (``M + A`` up to ~11 decades) and ``δ <= 1.5``.
_REL_STEP_TOL = 1e-6
#: Above this raw magnitude ``r h''`` can overflow (``~(b s)^2``): the guarded iteration.
_HUGE = 1e150
#: Scale (an exact power of two) of the Halley terms when they overflow, and its log.
_SCALE = 2.0**-600
_SCALE_LOG = -600.0 * math.log(2.0)
#: Hard cap on iterations (bisection guarantees progress; ~60 halvings exhaust a double).
_MAX_ITER = 200


@njit()
def biex_eval(delta: float, p: np.ndarray) -> float:
    """``h(δ)`` for ``δ >= 0`` (see the module docstring); ``inf`` maps to ``inf``.

    Parameters
    ----------
    delta
        Distance from ``x1`` in internal units, non-negative.
    p
        The parameter array.

    Returns
    -------
    float
        The raw-scale magnitude ``h(δ)``.
    """
    val = p[P_A1] * math.expm1(p[P_B] * delta)
    if val == np.inf and p[P_A1] > 0.0:  # expm1 overflowed; A_1 e^{bδ} may not have
        val = math.exp(p[P_B] * delta + math.log(p[P_A1])) - p[P_A1]
    if p[P_C1] != 0.0:
        val -= p[P_C1] * math.expm1(-p[P_D] * delta)
    if p[P_LIN] != 0.0:
        val += p[P_LIN] * delta
    return val


@njit()
def biex_solve(s: float, p: np.ndarray, knots: np.ndarray) -> float:
    """Solve ``h(δ) = s`` for ``δ >= 0`` given ``s >= 0`` (``inf`` gives ``inf``).

    Parameters
    ----------
    s
        Raw-scale magnitude, non-negative and not NaN.
    p
        The parameter array.
    knots
        The start table (may have zero rows when ``p[P_INV_DT] == 0``).

    Returns
    -------
    float
        ``δ`` to full double precision.
    """
    if s == 0.0:
        return 0.0
    if s == np.inf:
        return np.inf
    a1 = p[P_A1]
    b = p[P_B]
    c1 = p[P_C1]
    d = p[P_D]
    lin = p[P_LIN]
    q = s / a1
    if q < 1e300:
        t = math.log1p(q) / b
    else:  # s / a1 would overflow: log1p(q) == log(q) to double precision here
        t = (math.log(s) - math.log(a1)) / b
    lin0 = s / p[P_SLOPE0]
    if lin0 * b < 1e-17:  # h(δ) = h'(0) δ (1 + O(bδ)): the linear term is exact to an ulp
        return lin0
    hi = t
    lo = 0.0
    inv_dt = p[P_INV_DT]
    n_int = knots.shape[0] - 1
    pos = t * inv_dt
    if inv_dt > 0.0 and pos < n_int:
        k = int(pos)
        f = pos - k
        h = 1.0 / inv_dt
        f2 = f * f
        f3 = f2 * f
        h00 = 2.0 * f3 - 3.0 * f2 + 1.0
        h10 = f3 - 2.0 * f2 + f
        h01 = -2.0 * f3 + 3.0 * f2
        h11 = f3 - f2
        delta = (
            h00 * knots[k, 0]
            + h10 * h * knots[k, 1]
            + h01 * knots[k + 1, 0]
            + h11 * h * knots[k + 1, 1]
        )
        if not (delta > 0.0 and delta <= hi):
            delta = min(t, lin0)
    else:
        delta = min(t, lin0)
    # beyond _HUGE, terms of h, h' or h'' may overflow while A_1 e^{bδ} and the Halley step are
    # finite: those terms are then computed as exp(bδ + log A_1) and from derivatives scaled by
    # 2^-600; otherwise (and always below _HUGE) the arithmetic is the plain iteration's
    huge = s > _HUGE
    for _ in range(_MAX_ITER):
        eb = math.expm1(b * delta)
        if huge and eb == np.inf:  # beyond exp's range: A_1 e^{bδ} scaled inside the exponential
            big = math.exp(b * delta + math.log(a1))
            r = (big - a1) - s
            g1 = big * b
        else:
            r = a1 * eb - s
            g1 = a1 * b * (eb + 1.0)
        g2 = g1 * b
        cd = 0.0
        if c1 != 0.0:
            ed = math.expm1(-d * delta)
            r -= c1 * ed
            cd = c1 * d * (ed + 1.0)
            g1 += cd
            g2 -= cd * d
        if lin != 0.0:
            r += lin * delta
            g1 += lin
        if r == 0.0:
            return delta
        if r > 0.0:
            hi = min(hi, delta)
        else:
            lo = max(lo, delta)
        denom = g1 - 0.5 * r * g2 / g1
        step = r / denom if denom > 0.0 else r / g1
        if huge and not abs(denom) < np.inf and abs(r) < np.inf:
            # h' or r h'' overflowed (s near the largest doubles): the same step, scaled
            big = math.exp(b * delta + math.log(a1) + _SCALE_LOG)
            rs = r * _SCALE
            g1s = big * b + cd * _SCALE + lin * _SCALE
            g2s = big * b * b - cd * _SCALE * d
            denom = g1s - 0.5 * rs * (g2s / g1s)
            step = rs / denom if denom > 0.0 else rs / g1s
        new = delta - step
        if abs(step) <= _REL_STEP_TOL * delta:  # converged (cubically): new is accurate
            return new if (new >= lo and new <= hi) else delta
        if not (new > lo and new < hi):
            new = 0.5 * (lo + hi)
            if new == lo or new == hi:  # bracket exhausted at double resolution
                return new
        delta = new
    return delta


@njit(parallel=True)
def biex_forward(
    x: np.ndarray, out: np.ndarray, p: np.ndarray, knots: np.ndarray, lo: float, hi: float
) -> None:
    """Raw values to scale values: ``out = clamp(scale * (x1 ± h^{-1}(|x|)), lo, hi)``.

    Parameters
    ----------
    x
        ``float64[n]`` raw values (NaN propagates, ``±inf`` gives ``±inf`` before clamping).
    out
        ``float64[n]`` result.
    p
        The parameter array.
    knots
        The start table.
    lo, hi
        Clamp of the result (``-inf``/``inf`` for none).
    """
    x1 = p[P_X1]
    scale = p[P_SCALE]
    for i in numba.prange(x.shape[0]):
        v = x[i]
        if v != v:
            out[i] = np.nan
            continue
        delta = biex_solve(abs(v), p, knots)
        y = (x1 + delta) if v >= 0.0 else (x1 - delta)
        y *= scale
        if y < lo:
            y = lo
        if y > hi:
            y = hi
        out[i] = y


@njit(parallel=True)
def biex_inverse(y: np.ndarray, out: np.ndarray, p: np.ndarray) -> None:
    """Scale values to raw values (closed form): ``out = ±h(|y / scale - x1|)``.

    Parameters
    ----------
    y
        ``float64[n]`` scale values (NaN propagates; overflow gives ``±inf``).
    out
        ``float64[n]`` raw values.
    p
        The parameter array.
    """
    x1 = p[P_X1]
    scale = p[P_SCALE]
    for i in numba.prange(y.shape[0]):
        v = y[i]
        if v != v:
            out[i] = np.nan
            continue
        u = v if scale == 1.0 else v / scale
        delta = u - x1
        if delta >= 0.0:
            out[i] = biex_eval(delta, p)
        else:
            out[i] = -biex_eval(-delta, p)


@njit()
def biex_start_table(p: np.ndarray, n: int, dt: float) -> np.ndarray:
    """The start table of :func:`biex_solve`: ``δ`` and ``dδ/dt`` at ``t_k = k dt``.

    Parameters
    ----------
    p
        The parameter array; its ``P_INV_DT`` entry is ignored (roots are solved iteratively).
    n
        Number of intervals (the table has ``n + 1`` rows).
    dt
        Knot spacing in ``t = log1p(s / A_1) / b``.

    Returns
    -------
    np.ndarray
        ``float64[n + 1, 2]``.
    """
    q = p.copy()
    q[P_INV_DT] = 0.0
    empty = np.zeros((0, 2))
    table = np.empty((n + 1, 2))
    a1 = p[P_A1]
    b = p[P_B]
    c1 = p[P_C1]
    d = p[P_D]
    lin = p[P_LIN]
    for k in range(n + 1):
        t = k * dt
        s = a1 * math.expm1(b * t)
        delta = biex_solve(s, q, empty)
        # dδ/dt = (ds/dt) / h'(δ)
        dh = a1 * b * math.exp(b * delta) + c1 * d * math.exp(-d * delta) + lin
        table[k, 0] = delta
        table[k, 1] = a1 * b * math.exp(b * t) / dh
    return table


@njit(parallel=True)
def asinh_forward(
    x: np.ndarray,
    out: np.ndarray,
    s: float,
    shift: float,
    denom: float,
    lo: float,
    hi: float,
) -> None:
    """Gating-ML ``fasinh``: ``out = clamp((asinh(x s) + shift) / denom, lo, hi)``.

    Parameters
    ----------
    x, out
        ``float64[n]`` input and result.
    s
        ``sinh(M ln 10) / T``.
    shift
        ``A ln 10``.
    denom
        ``(M + A) ln 10``.
    lo, hi
        Clamp of the result (``-inf``/``inf`` for none).
    """
    for i in numba.prange(x.shape[0]):
        y = (math.asinh(x[i] * s) + shift) / denom
        if y < lo:
            y = lo
        if y > hi:
            y = hi
        out[i] = y


@njit(parallel=True)
def asinh_inverse(y: np.ndarray, out: np.ndarray, s: float, shift: float, denom: float) -> None:
    """Inverse of :func:`asinh_forward` (without clamping): ``sinh(y denom - shift) / s``.

    Parameters
    ----------
    y, out
        ``float64[n]`` input and result.
    s, shift, denom
        As in :func:`asinh_forward`.
    """
    for i in numba.prange(y.shape[0]):
        out[i] = math.sinh(y[i] * denom - shift) / s
