"""Cytometry axes: ticks at the transformed positions of round raw values, as FlowJo draws them.

Gate plots are drawn in transformed coordinates (the values the gates are defined on), but an
analyst reads raw values: :func:`scale_ticks` places ticks at ``transform.apply(raw)`` for
round raw values and labels them with the raw value.

- Decade scales (logicle, FlowJo biex, hyperlog, asinh, log): major ticks at ``0`` (where the
  scale reaches it) and ``±10^k``, minor ticks at ``±m·10^k`` (``m = 2..9``). Near zero a
  logicle-type scale squeezes the low decades together: a decade label is written only where
  it does not crowd a label already placed (``0`` first, then the decades from the largest
  magnitude down); the crowded decades keep a minor tick.
- Linear scales (linear, FlowJo linear, and untransformed values): round raw values in channel
  units, labelled ``0, 50K, 100K, ... 250K`` (``M`` for millions).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np

from gating._transforms import Transform

if TYPE_CHECKING:  # pragma: no cover - typing only; matplotlib is imported when drawing
    from matplotlib.axes import Axes

__all__ = ["DECADE_KINDS", "LINEAR_KINDS", "Ticks", "channel_units", "scale_ticks", "set_ticks"]

#: Transform kinds drawn with decade ticks.
DECADE_KINDS = frozenset({"logicle", "biex", "flowjo_biex", "hyperlog", "asinh", "log",
                          "flowjo_log"})
#: Transform kinds drawn with ticks in channel units.
LINEAR_KINDS = frozenset({"linear", "flowjo_linear"})

_LABEL_GAP = 0.045  # least distance between two decade labels, as a fraction of the axis
_MINOR_GAP = 0.004  # least distance between two minor ticks, as a fraction of the axis


@dataclass(frozen=True)
class Ticks:
    """Tick positions (in transformed units) and labels of one axis."""

    major: tuple[float, ...]
    labels: tuple[str, ...]
    minor: tuple[float, ...]


def channel_units(value: float) -> str:
    """A raw value written as FlowJo labels a linear axis: ``0``, ``500``, ``50K``, ``1.5M``.

    Examples
    --------
    >>> [channel_units(v) for v in (0.0, 500.0, 50_000.0, 262_144.0, 1_500_000.0, -25_000.0)]
    ['0', '500', '50K', '262.1K', '1.5M', '-25K']
    """
    if value == 0:
        return "0"
    sign = "-" if value < 0 else ""
    v = abs(float(value))
    for size, suffix in ((1e6, "M"), (1e3, "K")):
        if v >= size:
            return f"{sign}{round(v / size, 1):g}{suffix}"
    return f"{sign}{v:g}"


def _decade_label(sign: int, k: int) -> str:
    return ("$-10^{%d}$" if sign < 0 else "$10^{%d}$") % k


def _finite(transform: Transform, raw: np.ndarray) -> np.ndarray:
    with np.errstate(divide="ignore", invalid="ignore", over="ignore"):
        return np.asarray(transform.apply(raw), dtype=np.float64)


def _spaced(positions: list[float], keep: list[float], gap: float) -> list[float]:
    """``positions`` (in priority order) that lie at least ``gap`` from every kept one."""
    out: list[float] = []
    for p in positions:
        if all(abs(p - q) >= gap for q in keep + out):
            out.append(p)
    return out


def _decades(transform: Transform, lo: float, hi: float) -> Ticks:
    span = hi - lo
    with np.errstate(all="ignore"):
        raw_lo, raw_hi = (float(v) for v in transform.inverse(np.array([lo, hi])))
    if not np.isfinite(raw_hi):
        raw_hi = np.finfo(np.float64).max
    if not np.isfinite(raw_lo):
        raw_lo = -raw_hi
    top = max(abs(raw_lo), abs(raw_hi), 1.0)
    ks = range(int(np.ceil(np.log10(top))), -1, -1)  # largest magnitude first
    candidates: list[tuple[float, str]] = [(0.0, "0")]
    for k in ks:
        candidates += [(10.0**k, _decade_label(1, k)), (-(10.0**k), _decade_label(-1, k))]
    raw = np.array([c[0] for c in candidates])
    pos = _finite(transform, raw)
    inside = np.isfinite(pos) & (pos >= lo) & (pos <= hi) & (raw >= raw_lo) & (raw <= raw_hi)
    labelled: list[tuple[float, str]] = []
    crowded: list[float] = []
    for (value, text), p, ok in zip(candidates, pos, inside, strict=True):
        if not ok:
            continue
        if value != 0 and all(abs(p - q) >= _LABEL_GAP * span for q, _ in labelled):
            labelled.append((float(p), text))
        elif value == 0:
            labelled.append((float(p), text))
        else:
            crowded.append(float(p))
    minor_raw = [sign * m * 10.0**k for k in ks for m in range(2, 10) for sign in (1, -1)]
    minor_pos = _finite(transform, np.array(minor_raw))
    mr = np.array(minor_raw)
    ok = np.isfinite(minor_pos) & (minor_pos >= lo) & (minor_pos <= hi) & (mr >= raw_lo) & (
        mr <= raw_hi)
    majors = [p for p, _ in labelled]
    minor = _spaced(crowded + [float(p) for p in minor_pos[ok]], majors, _MINOR_GAP * span)
    order = np.argsort(majors)
    return Ticks(major=tuple(majors[i] for i in order),
                 labels=tuple(labelled[i][1] for i in order), minor=tuple(sorted(minor)))


def _linear(transform: Transform | None, lo: float, hi: float) -> Ticks:
    from matplotlib.ticker import MaxNLocator

    if transform is None:
        raw_lo, raw_hi = lo, hi
    else:
        raw_lo, raw_hi = (float(v) for v in transform.inverse(np.array([lo, hi])))
    if not (np.isfinite(raw_lo) and np.isfinite(raw_hi)) or raw_hi <= raw_lo:
        return Ticks((), (), ())
    values = MaxNLocator(nbins=6, steps=[1, 2, 2.5, 5, 10]).tick_values(raw_lo, raw_hi)
    values = values[(values >= raw_lo) & (values <= raw_hi)]
    pos = values if transform is None else _finite(transform, values)
    return Ticks(major=tuple(float(p) for p in pos),
                 labels=tuple(channel_units(float(v)) for v in values), minor=())


def scale_ticks(transform: Transform | None, lo: float, hi: float) -> Ticks | None:
    """Ticks of an axis showing ``transform``-ed values from ``lo`` to ``hi``.

    Parameters
    ----------
    transform
        The axis's transform; ``None`` for untransformed values (drawn in channel units).
    lo, hi
        The axis limits, in transformed units.

    Returns
    -------
    Ticks or None
        Major positions and labels and minor positions, all in transformed units; ``None``
        for a transform kind without a raw-value scale (matplotlib's own ticks are kept).

    Examples
    --------
    >>> import numpy as np
    >>> from gating import Linear, Logicle
    >>> logicle = Logicle(t=262144, w=0.5, m=4.5, a=0)
    >>> ticks = scale_ticks(logicle, 0.0, 1.0)
    >>> ticks.labels
    ('$-10^{2}$', '0', '$10^{2}$', '$10^{3}$', '$10^{4}$', '$10^{5}$')
    >>> raw = [-1e2, 0.0, 1e2, 1e3, 1e4, 1e5]
    >>> bool(np.allclose(ticks.major, logicle.apply(np.array(raw))))
    True
    >>> scale_ticks(Linear(t=262144, a=0), 0.0, 1.0).labels
    ('0', '50K', '100K', '150K', '200K', '250K')
    """
    if not (np.isfinite(lo) and np.isfinite(hi)) or hi <= lo:
        return None
    if transform is None or transform.kind in LINEAR_KINDS:
        return _linear(transform, lo, hi)
    if transform.kind in DECADE_KINDS:
        return _decades(transform, lo, hi)
    return None


def set_ticks(ax: Axes, axis: str, transform: Transform | None, *, raw: bool = True) -> None:
    """Put :func:`scale_ticks` on the ``"x"`` or ``"y"`` axis of ``ax`` (its current limits).

    ``raw=False`` (a ratio or other derived axis) leaves matplotlib's ticks.
    """
    if not raw:
        return
    lo, hi = ax.get_xlim() if axis == "x" else ax.get_ylim()
    ticks = scale_ticks(transform, float(lo), float(hi))
    if ticks is None or not ticks.major:
        return
    target = ax.xaxis if axis == "x" else ax.yaxis
    setter = ax.set_xticks if axis == "x" else ax.set_yticks
    setter(list(ticks.major), list(ticks.labels))
    setter(list(ticks.minor), minor=True)
    target.set_tick_params(which="minor", length=2.5, width=0.6)
    target.set_tick_params(which="major", length=5.0)
