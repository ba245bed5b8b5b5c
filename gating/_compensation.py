"""Compensation: per-dimension coefficient rows from a spillover or spectrum matrix.

Compensating event matrix ``X`` (events x detectors) with spillover ``S`` (fluorochromes x
detectors) gives ``X @ inv(S)``; one compensated channel therefore needs only one column of
the inverse, a dot product per event. Non-square spectrum matrices are unmixed by ordinary
least squares, ``X @ S.T @ inv(S @ S.T)``; Gating-ML's ``matrix-inverted-already`` matrices
are used as given (detectors x fluorochromes).
"""

from __future__ import annotations

import numpy as np

__all__ = ["unmixing_matrix"]


def unmixing_matrix(values: np.ndarray, *, inverted: bool) -> np.ndarray:
    """The ``detectors x fluorochromes`` matrix ``W`` such that compensated = ``X @ W``.

    Parameters
    ----------
    values
        Spillover/spectrum coefficients, fluorochromes x detectors (or, when ``inverted``,
        already the detectors x fluorochromes inverse).
    inverted
        Whether ``values`` is already the inverse.

    Returns
    -------
    numpy.ndarray
        ``float64`` unmixing matrix.
    """
    m = np.asarray(values, dtype=np.float64)
    if not np.isfinite(m).all():
        raise np.linalg.LinAlgError("the compensation matrix has values that are not finite")
    if inverted:
        return m
    n_fluor, n_det = m.shape
    if n_fluor > n_det:
        raise np.linalg.LinAlgError(
            f"a spectrum matrix with more fluorochromes ({n_fluor}) than detectors ({n_det}) "
            "cannot be unmixed"
        )
    try:
        with np.errstate(all="ignore"):
            w = np.linalg.inv(m) if n_fluor == n_det else m.T @ np.linalg.inv(m @ m.T)
    except np.linalg.LinAlgError:
        raise np.linalg.LinAlgError("the compensation matrix is singular") from None
    if not np.isfinite(w).all():  # an inverse beyond float64: singular in all but name
        raise np.linalg.LinAlgError("the compensation matrix is numerically singular")
    return w
