"""Multiple-testing adjustment shared by the DE results and the statistics layer (numpy only)."""

from __future__ import annotations

import numpy as np

__all__ = ["benjamini_hochberg", "bh_decreasing"]


def benjamini_hochberg(pvalues: np.ndarray) -> np.ndarray:
    """R's ``p.adjust(p, "BH")`` of the non-NaN p-values (NaN stays NaN).

    Examples
    --------
    >>> benjamini_hochberg(np.array([0.01, 0.04, np.nan, 0.03])).round(3).tolist()
    [0.03, 0.04, nan, 0.04]
    """
    p = np.asarray(pvalues, dtype=np.float64)
    out = np.full(p.shape, np.nan)
    ok = np.flatnonzero(~np.isnan(p))
    m = ok.size
    if m == 0:
        return out
    order = np.argsort(p[ok], kind="stable")[::-1]  # decreasing, as R's order(p, TRUE)
    out[ok[order]] = bh_decreasing(p[ok][order])
    return out


def bh_decreasing(p_desc: np.ndarray) -> np.ndarray:
    """The BH step of :func:`benjamini_hochberg` on p-values already in its order (decreasing,
    ties in reverse order of position, no NaN), returned in that order: for a caller that
    adjusts many subsets of one sorted vector (R's independent filtering adjusts 50).

    Examples
    --------
    >>> bh_decreasing(np.array([0.04, 0.03, 0.01])).round(3).tolist()
    [0.04, 0.04, 0.03]
    """
    m = p_desc.size
    i = np.arange(m, 0, -1, dtype=np.float64)
    return np.minimum(1.0, np.minimum.accumulate((m / i) * p_desc))
