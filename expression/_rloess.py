"""R's ``loess(y ~ x)`` + ``predict`` for one predictor, with R's default interpolated surface.

DESeq2 smooths its Kullback-Leibler curve with ``loess(klDivs ~ obsVarGrid, span = 0.2)`` and
takes the argmin of ``predict`` on a finer grid (:mod:`expression._rprior`). R's defaults there
are ``degree = 2``, ``family = "gaussian"`` (one pass, no robustness iterations),
``surface = "interpolate"``, ``cell = 0.2``, ``statistics = "approximate"``; the surface is not
the local regression evaluated at each new point but Cleveland & Grosse's (1991) k-d tree
interpolant, and this module computes that same surface:

1. **Bounding box**: the range of ``x`` widened on each side by 0.5% of its length.
2. **k-d tree** (1-D): a cell holding more than ``fc = floor(n * span * cell)`` points is split
   at the value of its lower median point (rank ``(l + u) // 2`` of the cell's ranks
   ``l..u``); when that value is tied with its neighbour in rank, the nearest untied rank
   pair (searching ``m, m + 1, m - 1, m + 2, ...``) gives the split, ties going to the upper
   cell; a split landing on the cell's own boundary makes the cell a leaf. Cells are
   processed in creation order, within R's limits of ``max(200, n)`` cells and vertices.
   The vertices are the box ends and the split values.
3. **Vertex fits**: at each vertex ``v``, a local polynomial of degree ``degree`` in
   ``x - v`` by weighted least squares on the ``q = floor(n * span)`` nearest points, with
   tricube weights ``(1 - (d / d_q)^3)^3`` (``d_q`` the ``q``-th smallest distance; points at
   ``d_q`` weigh 0); columns equilibrated to unit norm, solved through a QR decomposition and
   the SVD of its ``R`` with singular values below ``100 * eps * sigma_max`` dropped (R's
   pseudo-inverse rule). The intercept is the vertex value, the linear coefficient its slope.
4. **Evaluation**: a new ``x`` in the box falls in the leaf ``(v_i, v_{i+1}]`` (the first leaf
   includes its lower end); the value is the cubic Hermite interpolant of the two vertex
   values and slopes. Outside the range of the fitted ``x`` (not the wider box) R's
   ``predict`` gives ``NA``; so does this (NaN).

Verified against R 4.2.2 ``predict(loess(y ~ x, span = 0.2), newx)`` on DESeq2's KL curves
and on synthetic curves (uneven x, tied x, degree 1; ``tests/expression/test_r_numerics.py``):
within 4e-15 of R (the tests require 1e-10), the same argmin on the fine grid.
Only ``family = "gaussian"`` without weights and one predictor is implemented.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from engine.runtime import njit

__all__ = ["LoessFit", "loess_fit", "loess_predict"]

_EPS = 2.0 ** -52


@dataclass(frozen=True)
class LoessFit:
    """A fitted 1-D loess surface (R's ``kd`` component, flattened).

    Attributes
    ----------
    vertices
        Sorted vertex positions (the box ends and the k-d tree split values).
    values
        The local fit at each vertex.
    slopes
        The local fit's derivative at each vertex.
    x_min, x_max
        Range of the fitted ``x``: ``predict`` is NA outside it.
    span, degree, cell
        The settings it was fitted with.
    """

    vertices: np.ndarray
    values: np.ndarray
    slopes: np.ndarray
    x_min: float
    x_max: float
    span: float
    degree: int
    cell: float


def _kd_vertices(xs: np.ndarray, fc: int, nvmax: int) -> np.ndarray:
    """Vertices of R's 1-D k-d tree on the sorted values ``xs`` (``ehg126``/``ehg124``)."""
    n = xs.shape[0]
    alpha = float(xs[0])
    beta = float(xs[-1])
    margin = 0.005 * max(beta - alpha, 1e-10 * max(abs(alpha), abs(beta)) + 1e-30)
    lo_box = alpha - margin
    hi_box = beta + margin
    vertices = [lo_box, hi_box]
    ncmax = nvmax
    # cells in creation order: (first rank, last rank, lower vertex, upper vertex), 1-based
    cells = [(1, n, lo_box, hi_box)]
    p = 0
    nc = 1
    while p < len(cells):
        lo_rank, hi_rank, v_lo, v_hi = cells[p]
        p += 1
        if hi_rank - lo_rank + 1 <= fc:
            continue
        if abs(v_hi - v_lo) <= 0.0:  # R: diameter <= fd, and fd = 0 by default
            continue
        if ncmax < nc + 2 or nvmax < len(vertices) + 1:
            continue
        m = (lo_rank + hi_rank) // 2
        offset = 0
        while lo_rank <= m + offset < hi_rank:
            if xs[m + offset - 1] == xs[m + offset]:
                offset = -offset
                if offset >= 0:
                    offset += 1
            else:
                m = m + offset
                break
        split = float(xs[m - 1])
        if split in (v_lo, v_hi):
            continue
        nc += 2
        cells.append((lo_rank, m, v_lo, split))
        cells.append((m + 1, hi_rank, split, v_hi))
        if split not in vertices:
            vertices.append(split)
    return np.array(sorted(vertices))


@njit()
def _tricube_rows(x: np.ndarray, q: float, nf: int, span: float, degree: int,
                  design: np.ndarray, weights: np.ndarray, order: np.ndarray) -> None:
    """Weighted design rows of the local fit at ``q`` (``ehg127`` up to the solve).

    Fills ``design`` (nf x (degree + 1), rows already multiplied by the root weights),
    ``weights`` (the root weights) and ``order`` (the indices of the nf nearest points).
    """
    n = x.shape[0]
    dist = np.empty(n)
    for i in range(n):
        t = x[i] - q
        dist[i] = t * t
    idx = np.argsort(dist, kind="mergesort")
    rho = dist[idx[nf - 1]] * max(1.0, span)
    for i in range(nf):
        j = idx[i]
        order[i] = j
        w = math.sqrt(dist[j] / rho)
        c = 1.0 - w * w * w
        w = math.sqrt(c * c * c)
        weights[i] = w
        dx = x[j] - q
        design[i, 0] = w
        if degree >= 1:
            design[i, 1] = w * dx
        if degree >= 2:
            design[i, 2] = w * (dx * dx)


def _vertex_fit(x: np.ndarray, y: np.ndarray, q: float, nf: int, span: float,
                degree: int) -> tuple[float, float]:
    """Value and slope of the local polynomial fit at ``q``."""
    k = degree + 1
    design = np.empty((nf, k))
    weights = np.empty(nf)
    order = np.empty(nf, dtype=np.int64)
    _tricube_rows(x, q, nf, span, degree, design, weights, order)
    if not np.any(weights > 0.0):
        raise FloatingPointError(f"loess: all neighbourhood weights are zero at {q}")
    eta = weights * y[order]
    colnorm = np.sqrt(np.sum(design * design, axis=0))
    colnorm[colnorm <= 0.0] = 1.0
    design = design / colnorm
    qmat, rmat = np.linalg.qr(design, mode="reduced")
    qty = qmat.T @ eta
    u, sigma, vt = np.linalg.svd(rmat)
    tol = sigma[0] * (100.0 * _EPS)
    gamma = np.where(sigma > tol, (u.T @ qty) / np.where(sigma > tol, sigma, 1.0), 0.0)
    coef = (vt.T @ gamma) / colnorm
    slope = float(coef[1]) if degree >= 1 else 0.0
    return float(coef[0]), slope


def loess_fit(x: np.ndarray, y: np.ndarray, *, span: float = 0.75, degree: int = 2,
              cell: float = 0.2) -> LoessFit:
    """Fit R's ``loess(y ~ x, span, degree)`` interpolated surface (gaussian, no weights).

    Parameters
    ----------
    x, y
        Predictor and response (finite, same length).
    span
        R's ``span`` (fraction of points in each neighbourhood), at most 1.
    degree
        Local polynomial degree, 0, 1 or 2.
    cell
        R's ``loess.control(cell)``: a k-d cell holds at most ``floor(n * span * cell)``
        points.

    Returns
    -------
    LoessFit
        The vertices with their fitted values and slopes.

    Examples
    --------
    >>> x = np.linspace(0.0, 8.0, 200)
    >>> fit = loess_fit(x, (x - 3.0) ** 2, span=0.2)
    >>> abs(float(loess_predict(fit, np.array([3.0]))[0])) < 1e-9
    True
    """
    xa = np.ascontiguousarray(x, dtype=np.float64).ravel()
    ya = np.ascontiguousarray(y, dtype=np.float64).ravel()
    if xa.shape != ya.shape:
        raise ValueError("x and y must have the same length")
    if not (np.all(np.isfinite(xa)) and np.all(np.isfinite(ya))):
        raise ValueError("x and y must be finite")
    if degree not in (0, 1, 2):
        raise ValueError(f"degree must be 0, 1 or 2, got {degree}")
    if not 0.0 < span <= 1.0:
        raise ValueError(f"span must be in (0, 1], got {span}")
    n = xa.shape[0]
    nf = min(n, math.floor(n * span))
    if nf <= degree + 1:
        raise ValueError("span too small: fewer neighbours than polynomial coefficients + 1")
    fc = math.floor(n * (span * cell))
    vertices = _kd_vertices(np.sort(xa), fc, max(200, n))
    values = np.empty(vertices.shape[0])
    slopes = np.empty(vertices.shape[0])
    for i, v in enumerate(vertices):
        values[i], slopes[i] = _vertex_fit(xa, ya, float(v), nf, span, degree)
    return LoessFit(vertices, values, slopes, float(np.min(xa)), float(np.max(xa)), float(span),
                    int(degree), float(cell))


@njit()
def _hermite(vertices: np.ndarray, values: np.ndarray, slopes: np.ndarray, x_min: float,
             x_max: float, z: np.ndarray, out: np.ndarray) -> None:
    for i in range(z.shape[0]):
        zi = z[i]
        if not (zi >= x_min and zi <= x_max):
            out[i] = math.nan
            continue
        j = np.searchsorted(vertices, zi) - 1  # leaf (v_j, v_j+1]
        if j < 0:
            j = 0
        v0 = vertices[j]
        v1 = vertices[j + 1]
        width = v1 - v0
        h = (zi - v0) / width
        phi0 = (1.0 - h) * (1.0 - h) * (1.0 + 2.0 * h)
        phi1 = h * h * (3.0 - 2.0 * h)
        psi0 = h * ((1.0 - h) * (1.0 - h))
        psi1 = h * h * (h - 1.0)
        out[i] = phi0 * values[j] + phi1 * values[j + 1] + (
            psi0 * slopes[j] + psi1 * slopes[j + 1]) * width


def loess_predict(fit: LoessFit, newx: np.ndarray) -> np.ndarray:
    """R's ``predict(<loess>, newx)`` on the interpolated surface.

    Parameters
    ----------
    fit
        From :func:`loess_fit`.
    newx
        Points to evaluate.

    Returns
    -------
    numpy.ndarray
        The surface at ``newx``; NaN outside the range of the fitted ``x`` (R's ``NA``).

    Examples
    --------
    >>> x = np.linspace(0.0, 1.0, 50)
    >>> fit = loess_fit(x, 2.0 * x + 1.0, span=0.5)
    >>> np.allclose(loess_predict(fit, np.array([0.25, 0.5])), [1.5, 2.0])
    True
    """
    z = np.ascontiguousarray(newx, dtype=np.float64).ravel()
    out = np.empty(z.shape[0])
    _hermite(fit.vertices, fit.values, fit.slopes, fit.x_min, fit.x_max, z, out)
    return out
