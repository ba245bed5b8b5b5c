"""The demo PBMC panel: channels, spillover matrix, expression levels and the logicle inverse.

Everything the flow generator and the shipped gating preset (``gating/presets/study_panel.yaml``)
must agree on lives here. Populations are placed in *logicle space* (the same
``T=262144, W=0.5, M=4.5, A=0`` logicle the preset uses, mapped to 0..1) and mapped back to
linear intensities with :func:`logicle_inverse`, so that the distance between a population and a
gate boundary is a known number of standard deviations.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from functools import lru_cache

import numpy as np
import pandas as pd
from scipy.optimize import brentq

__all__ = [
    "FLUOR",
    "FLUOR_DETECTORS",
    "FLUOR_MARKERS",
    "LOGICLE",
    "NEG",
    "POS",
    "RANGE",
    "SCATTER",
    "TIMESTEP",
    "Fluor",
    "channel_table",
    "logicle_inverse",
    "spillover_matrix",
]

RANGE = 262144.0
"""$PnR of every channel; also the logicle T and the linear scatter scale."""

TIMESTEP = 0.01
"""Seconds per Time tick, written as ``$TIMESTEP``."""

LOGICLE = {"T": RANGE, "W": 0.5, "M": 4.5, "A": 0.0}
"""Logicle parameters shared with the preset's ``fluor`` transform."""

NEG = 0.20
"""Logicle-space centre of a negative population (about 85 linear units)."""

POS = 0.62
"""Logicle-space centre of a positive chemokine-receptor or memory-marker population."""

SCATTER = ("FSC-A", "FSC-H", "SSC-A")


@dataclass(frozen=True)
class Fluor:
    """One fluorescence parameter of the panel.

    Parameters
    ----------
    detector
        The channel name ($PnN), named after the fluorochrome's primary detector.
    marker
        The stain ($PnS).
    """

    detector: str
    marker: str


FLUOR: tuple[Fluor, ...] = (
    Fluor("BV510-A", "LiveDead"),
    Fluor("APC-H7-A", "CD3"),
    Fluor("BV605-A", "CD4"),
    Fluor("PerCP-Cy5.5-A", "CD8"),
    Fluor("PE-A", "CXCR3"),
    Fluor("PE-Cy7-A", "CCR4"),
    Fluor("BV421-A", "CCR6"),
    Fluor("FITC-A", "CD45RA"),
    Fluor("APC-A", "CCR7"),
    Fluor("BV711-A", "CD19"),
)
FLUOR_DETECTORS: tuple[str, ...] = tuple(f.detector for f in FLUOR)
FLUOR_MARKERS: tuple[str, ...] = tuple(f.marker for f in FLUOR)

# Fraction of a fluorochrome's primary-detector signal seen in another detector:
# (fluorochrome detector, receiving detector) -> coefficient. Typical of a 3-laser instrument.
_SPILL: dict[tuple[str, str], float] = {
    ("FITC-A", "PE-A"): 0.21,
    ("FITC-A", "PerCP-Cy5.5-A"): 0.04,
    ("FITC-A", "BV510-A"): 0.03,
    ("PE-A", "PerCP-Cy5.5-A"): 0.16,
    ("PE-A", "PE-Cy7-A"): 0.03,
    ("PE-A", "FITC-A"): 0.01,
    ("PE-A", "BV605-A"): 0.05,
    ("PerCP-Cy5.5-A", "PE-Cy7-A"): 0.12,
    ("PerCP-Cy5.5-A", "BV711-A"): 0.06,
    ("PerCP-Cy5.5-A", "APC-A"): 0.02,
    ("PE-Cy7-A", "APC-H7-A"): 0.08,
    ("PE-Cy7-A", "PE-A"): 0.02,
    ("APC-A", "APC-H7-A"): 0.13,
    ("APC-A", "BV711-A"): 0.02,
    ("APC-H7-A", "APC-A"): 0.03,
    ("APC-H7-A", "PE-Cy7-A"): 0.05,
    ("BV421-A", "BV510-A"): 0.18,
    ("BV421-A", "BV605-A"): 0.02,
    ("BV421-A", "FITC-A"): 0.02,
    ("BV510-A", "BV605-A"): 0.10,
    ("BV510-A", "FITC-A"): 0.08,
    ("BV510-A", "BV421-A"): 0.01,
    ("BV605-A", "BV711-A"): 0.14,
    ("BV605-A", "PE-A"): 0.06,
    ("BV605-A", "BV510-A"): 0.02,
    ("BV711-A", "PerCP-Cy5.5-A"): 0.04,
    ("BV711-A", "BV605-A"): 0.03,
}


def spillover_matrix() -> pd.DataFrame:
    """Return the panel's spillover matrix.

    Returns
    -------
    pandas.DataFrame
        Square, rows = fluorochromes (named by their primary detector), columns = detectors,
        diagonal 1 and off-diagonal coefficients in 0..0.3; ``observed = true @ S``.
    """
    names = list(FLUOR_DETECTORS)
    spill = pd.DataFrame(np.eye(len(names)), index=names, columns=names)
    for (source, target), value in _SPILL.items():
        spill.loc[source, target] = value
    return spill


def channel_table() -> list[dict[str, object]]:
    """Return the ``write_fcs`` channel descriptions in file order.

    Returns
    -------
    list of dict
        ``{"name", "marker", "range"}`` for FSC-A, FSC-H, SSC-A, the ten fluorescence
        detectors and Time (last).
    """
    channels: list[dict[str, object]] = [{"name": s, "range": RANGE} for s in SCATTER]
    channels += [{"name": f.detector, "marker": f.marker, "range": RANGE} for f in FLUOR]
    channels.append({"name": "Time", "range": RANGE})
    return channels


@lru_cache(maxsize=8)
def _logicle_coefficients(t: float, w: float, m: float, a: float) -> tuple[float, ...]:
    """Solve the logicle biexponential's coefficients (Parks et al. 2006, Moore & Parks 2012)."""
    w_frac = w / (m + a)
    x2 = a / (m + a)
    x1 = x2 + w_frac
    x0 = x2 + 2.0 * w_frac
    b = (m + a) * math.log(10.0)
    if w_frac == 0.0:
        d = b
    else:
        # d solves w = 2 ln(d / b) / (b + d) on (0, b].
        d = brentq(lambda v: 2.0 * (math.log(v) - math.log(b)) + w_frac * (b + v), 1e-12, b)
    c_a = math.exp(x0 * (b + d))
    mf_a = math.exp(b * x1) - c_a / math.exp(d * x1)
    scale = t / ((math.exp(b) - mf_a) - c_a / math.exp(d))
    return scale, b, c_a * scale, d, -mf_a * scale, x1


def logicle_inverse(y: np.ndarray) -> np.ndarray:
    """Map logicle-space values (0..1 display scale) back to linear intensities.

    Parameters
    ----------
    y
        Values on the panel's logicle scale (:data:`LOGICLE`); 1.0 maps to ``T``.

    Returns
    -------
    numpy.ndarray
        Linear intensities, same shape; values below the logicle zero point are negative.
    """
    a, b, c, d, f, x1 = _logicle_coefficients(
        LOGICLE["T"], LOGICLE["W"], LOGICLE["M"], LOGICLE["A"]
    )
    y = np.asarray(y, dtype=np.float64)
    reflected = y < x1
    yy = np.where(reflected, 2.0 * x1 - y, y)
    value = a * np.exp(b * yy) - c * np.exp(-d * yy) + f
    return np.where(reflected, -value, value)
