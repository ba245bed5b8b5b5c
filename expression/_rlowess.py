"""R's ``lowess`` (Cleveland's 1979 robust locally weighted regression, R's ``clowess``).

DESeq2's independent filtering fits ``lowess(numRej ~ theta, f = 1/5)`` to the number of
rejections per filter quantile and picks the first quantile above the curve's maximum minus its
residual root mean square; the threshold therefore needs R's curve, which this module computes
from Cleveland (1979) with R's conventions:

* points sorted by ``x`` (ties kept in input order); ``ns = max(2, min(n, int(f * n + 1e-7)))``
  neighbours, the window ``[nleft, nright]`` moved right while that does not widen it;
* at each fitted point the radius ``h`` is the larger distance to the window's ends;
  weights are tricube ``(1 - (r / h)^3)^3`` for ``r <= 0.999 h`` (1 for ``r <= 0.001 h``,
  and the window extended to the right over points tied within ``0.999 h``), times the
  robustness weights after the first pass, normalised to sum 1; a weighted linear fit
  around the weighted mean of ``x`` unless the weighted spread is at most ``0.001 * range``;
  with all weights zero the fitted value is ``y``;
* points within ``delta`` of the last fitted one are skipped and linearly interpolated
  (exact ties copy the fitted value);
* ``iter`` robustness passes with bisquare weights of the residuals over six times their
  median absolute value (``1`` below 0.001, ``0`` above 0.999 of it), stopping early when
  that scale is below ``1e-7`` times the mean absolute residual.

Verified against R 4.2.2 ``lowess`` (default ``f``, ``iter``, ``delta``; and DESeq2's
``f = 1/5``) on rejection curves, noisy data with outliers, tied x, ``iter = 0`` and ``delta = 0``:
bit-for-bit equal (the tests require 1e-11)
(``tests/expression/test_r_numerics.py``).
"""

from __future__ import annotations

import math

import numpy as np

from engine.runtime import njit

__all__ = ["lowess"]


@njit()
def _lowest(x: np.ndarray, y: np.ndarray, n: int, xs: float, nleft: int, nright: int,
            w: np.ndarray, userw: bool, rw: np.ndarray) -> tuple[float, bool]:
    """Fitted value at ``xs`` from the window ``nleft..nright`` (0-based, inclusive)."""
    rng = x[n - 1] - x[0]
    h = max(xs - x[nleft], x[nright] - xs)
    h9 = 0.999 * h
    h1 = 0.001 * h
    a = 0.0
    j = nleft
    while j < n:
        w[j] = 0.0
        r = abs(x[j] - xs)
        if r <= h9:
            if r <= h1:
                w[j] = 1.0
            else:
                t = r / h
                t = 1.0 - t * t * t
                w[j] = t * t * t
            if userw:
                w[j] *= rw[j]
            a += w[j]
        elif x[j] > xs:
            break
        j += 1
    nrt = j - 1
    if a <= 0.0:
        return 0.0, False
    for j in range(nleft, nrt + 1):
        w[j] /= a
    if h > 0.0:
        a = 0.0
        for j in range(nleft, nrt + 1):
            a += w[j] * x[j]
        b = xs - a
        c = 0.0
        for j in range(nleft, nrt + 1):
            d = x[j] - a
            c += w[j] * (d * d)
        if math.sqrt(c) > 0.001 * rng:
            b /= c
            for j in range(nleft, nrt + 1):
                w[j] *= b * (x[j] - a) + 1.0
    ys = 0.0
    for j in range(nleft, nrt + 1):
        ys += w[j] * y[j]
    return ys, True


@njit()
def _clowess(x: np.ndarray, y: np.ndarray, f: float, nsteps: int, delta: float,
             ys: np.ndarray) -> None:
    """Cleveland's lowess on sorted ``x`` into ``ys`` (R's ``clowess``, 0-based)."""
    n = x.shape[0]
    if n < 2:
        ys[0] = y[0]
        return
    rw = np.zeros(n)
    res = np.zeros(n)
    ns = max(2, min(n, int(f * n + 1e-7)))
    iteration = 1
    while iteration <= nsteps + 1:
        nleft = 0
        nright = ns - 1
        last = -1
        i = 0
        while True:
            if nright < n - 1:
                d1 = x[i] - x[nleft]
                d2 = x[nright + 1] - x[i]
                if d1 > d2:
                    nleft += 1
                    nright += 1
                    continue
            fitted, ok = _lowest(x, y, n, x[i], nleft, nright, res, iteration > 1, rw)
            ys[i] = fitted if ok else y[i]
            if last < i - 1:
                denom = x[i] - x[last]
                for j in range(last + 1, i):
                    alpha = (x[j] - x[last]) / denom
                    ys[j] = alpha * ys[i] + (1.0 - alpha) * ys[last]
            last = i
            cut = x[last] + delta
            i = last + 1
            while i < n:
                if x[i] > cut:
                    break
                if x[i] == x[last]:
                    ys[i] = ys[last]
                    last = i
                i += 1
            i = max(last + 1, i - 1)
            if last >= n - 1:
                break
        for k in range(n):
            res[k] = y[k] - ys[k]
        sc = 0.0
        for k in range(n):
            sc += abs(res[k])
        sc /= n
        if iteration > nsteps:
            break
        for k in range(n):
            rw[k] = abs(res[k])
        srt = np.sort(rw)
        m1 = n // 2
        if n % 2 == 0:
            m2 = n - m1 - 1
            cmad = 3.0 * (srt[m1] + srt[m2])
        else:
            cmad = 6.0 * srt[m1]
        if cmad < 1e-7 * sc:
            break
        c9 = 0.999 * cmad
        c1 = 0.001 * cmad
        for k in range(n):
            r = abs(res[k])
            if r <= c1:
                rw[k] = 1.0
            elif r <= c9:
                t = r / cmad
                t = 1.0 - t * t
                rw[k] = t * t
            else:
                rw[k] = 0.0
        iteration += 1


def lowess(x: np.ndarray, y: np.ndarray, *, f: float = 2.0 / 3.0, iter: int = 3,
           delta: float | None = None) -> tuple[np.ndarray, np.ndarray]:
    """R's ``lowess(x, y, f, iter, delta)``.

    Parameters
    ----------
    x, y
        The scatter (same length, finite).
    f
        Smoother span: the fraction of points in each local fit.
    iter
        Robustness iterations.
    delta
        Points closer than this to the last fitted one are interpolated; R's default
        ``0.01 * diff(range(x))`` when None.

    Returns
    -------
    tuple of numpy.ndarray
        ``(x, fitted)`` with ``x`` sorted, as R's ``lowess(...)$x`` and ``$y``.

    Examples
    --------
    >>> x = np.arange(10.0)
    >>> sx, fy = lowess(x, 2.0 * x, f=0.5)
    >>> np.allclose(fy, 2.0 * sx)
    True
    """
    xa = np.asarray(x, dtype=np.float64).ravel()
    ya = np.asarray(y, dtype=np.float64).ravel()
    if xa.shape != ya.shape or xa.size == 0:
        raise ValueError("x and y must be non-empty and of the same length")
    if not (np.all(np.isfinite(xa)) and np.all(np.isfinite(ya))):
        raise ValueError("x and y must be finite")
    if not (math.isfinite(f) and f > 0):
        raise ValueError("'f' must be finite and > 0")
    if iter < 0:
        raise ValueError("'iter' must be >= 0")
    if delta is None:
        delta = 0.01 * (float(np.max(xa)) - float(np.min(xa)))
    if not (math.isfinite(delta) and delta >= 0):
        raise ValueError("'delta' must be finite and >= 0")
    order = np.argsort(xa, kind="stable")
    sx = np.ascontiguousarray(xa[order])
    sy = np.ascontiguousarray(ya[order])
    out = np.empty_like(sx)
    _clowess(sx, sy, float(f), int(iter), float(delta), out)
    return sx, out
