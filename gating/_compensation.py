"""Compensation: per-dimension coefficient rows from a spillover or spectrum matrix.

Compensating event matrix ``X`` (events x detectors) with spillover ``S`` (fluorochromes x
detectors) gives ``X @ inv(S)``; one compensated channel therefore needs only one column of
the inverse, a dot product per event. Non-square spectrum matrices are unmixed by ordinary
least squares, ``X @ S.T @ inv(S @ S.T)``; Gating-ML's ``matrix-inverted-already`` matrices
are used as given (detectors x fluorochromes).

Also here: whether a sample's own spillover matrix fits its channels
(:func:`check_spillover`), which reads TEXT only and so loads none of the plan compiler or its
transforms' kernels (``phenoflow info`` uses it).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence
from typing import TYPE_CHECKING, Literal

import numpy as np

if TYPE_CHECKING:
    from gating._fcs import FCSData

__all__ = ["SpilloverCheck", "check_spillover", "near_misses", "unmixing_matrix"]


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


def _squash(label: str) -> str:
    """``label`` without ``-``, ``_``, spaces and case: the form near-miss labels share."""
    return "".join(c for c in label.lower() if c not in "-_ ")


def near_misses(labels: Sequence[str], channels: Sequence[str]) -> tuple[tuple[str, str], ...]:
    """``(label, channel)`` where ``label`` differs from exactly one channel only by ``-``,
    ``_``, spaces or case.

    Examples
    --------
    >>> near_misses(["BV510_A", "CD3"], ["BV510-A", "FSC-A"])
    (('BV510_A', 'BV510-A'),)
    """
    squashed: dict[str, list[str]] = {}
    for c in channels:
        squashed.setdefault(_squash(str(c)), []).append(str(c))
    out = []
    for label in labels:
        hits = squashed.get(_squash(label), [])
        if len(hits) == 1:
            out.append((label, hits[0]))
    return tuple(out)


@dataclasses.dataclass(frozen=True)
class SpilloverCheck:
    """Whether a sample's own spillover matrix can compensate it (:func:`check_spillover`).

    Attributes
    ----------
    status
        ``"ok"``, ``"none"`` (no ``$SPILLOVER``/``SPILL``), ``"labels"`` (labels that are not
        channels) or ``"singular"`` (cannot be inverted).
    shape
        The matrix's shape (``(0, 0)`` without one).
    labels
        The labels that name no channel.
    hints
        ``(label, channel)`` near misses.
    """

    status: Literal["ok", "none", "labels", "singular"]
    shape: tuple[int, int] = (0, 0)
    labels: tuple[str, ...] = ()
    hints: tuple[tuple[str, str], ...] = ()

    @property
    def ok(self) -> bool:
        """Whether the matrix exists and can be applied."""
        return self.status == "ok"

    @property
    def text(self) -> str:
        """One short phrase: ``ok (10x10)``, ``none``, ``labels do not match (BV510_A -> BV510-A)``,
        ``singular (10x10)``."""
        n, m = self.shape
        if self.status == "ok":
            return f"ok ({n}x{m})"
        if self.status == "none":
            return "none"
        if self.status == "singular":
            return f"singular ({n}x{m})"
        near = dict(self.hints)
        shown = ", ".join(f"{a} -> {near[a]}" if a in near else a for a in self.labels[:4])
        more = ", ..." if len(self.labels) > 4 else ""
        return f"labels do not match ({shown}{more})"


def check_spillover(sample: FCSData) -> SpilloverCheck:
    """Check that a sample's own spillover matrix fits its channels and can be inverted.

    Labels are matched as :func:`compile_plan` matches them: a ``$PnN`` name (exactly, then
    ignoring case) or a unique ``$PnS`` marker.

    Parameters
    ----------
    sample
        An FCS sample (only its TEXT is used).

    Returns
    -------
    SpilloverCheck
        The status, with the labels that name no channel and near-miss hints.

    Raises
    ------
    FCSKeywordError
        The spillover keyword is malformed.
    """
    spill = sample.spill
    if spill is None:
        return SpilloverCheck("none")
    shape = (int(spill.shape[0]), int(spill.shape[1]))
    labels = [str(c) for c in spill.columns]
    missing = []
    for label in labels:
        try:
            sample.channel_index(label)
        except KeyError:
            missing.append(label)
    if missing:
        return SpilloverCheck("labels", shape, tuple(missing),
                              near_misses(missing, [str(n) for n in sample.names]))
    try:
        unmixing_matrix(spill.to_numpy(), inverted=False)
    except np.linalg.LinAlgError:
        return SpilloverCheck("singular", shape)
    return SpilloverCheck("ok", shape)
