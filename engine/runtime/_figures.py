"""The house figure conventions: one resolution, one way to build a figure, one P-value text.

Every figure of phenoflow (gate plots, expression plots, the study report, the strategy
comparison) is a plain :class:`matplotlib.figure.Figure` on the Agg canvas built by
:func:`new_figure`: no ``matplotlib.use()``, no pyplot state, safe in worker threads and
processes and on machines without a display. matplotlib is imported inside
:func:`new_figure` only, so importing a package that can plot does not import matplotlib.
"""

from __future__ import annotations

import math
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:  # pragma: no cover - typing only
    from matplotlib.figure import Figure

__all__ = ["DPI", "format_p", "new_figure"]

#: Resolution of every figure (dots per inch), on screen and in the PNG files written.
DPI = 100


def new_figure(
    *, figsize: tuple[float, float], layout: str | None = "constrained", dpi: float = DPI
) -> Figure:
    """A figure on the Agg canvas, built without pyplot.

    Parameters
    ----------
    figsize
        Width and height in inches.
    layout
        matplotlib's layout engine (``"constrained"`` by default; ``None`` for none).
    dpi
        Resolution; the house :data:`DPI` unless a caller has a reason to differ.

    Returns
    -------
    matplotlib.figure.Figure
        An empty figure with an Agg canvas attached (``savefig`` and ``canvas.draw`` work).

    Examples
    --------
    >>> from engine.runtime import DPI, new_figure
    >>> fig = new_figure(figsize=(4.0, 3.0))
    >>> ax = fig.add_subplot()
    >>> fig.dpi == DPI and fig.canvas.__class__.__name__
    'FigureCanvasAgg'
    """
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    fig = Figure(figsize=figsize, dpi=dpi, layout=layout)
    FigureCanvasAgg(fig)
    return fig


def format_p(p: Any) -> str:
    """A P value as text, the one rule of figures, tables and the terminal.

    Parameters
    ----------
    p
        The P value (``None``, NaN, ``pandas.NA`` and other non-numbers read ``NA``).

    Returns
    -------
    str
        Below 0.001 in scientific notation with two significant digits (``4.0e-06``), below
        0.1 with three decimals (``0.012``), else with two (``0.54``); ``NA`` when missing.

    Examples
    --------
    >>> from engine.runtime import format_p
    >>> [format_p(p) for p in (4e-6, 0.0123, 0.0625, 0.5432, float("nan"), None)]
    ['4.0e-06', '0.012', '0.062', '0.54', 'NA', 'NA']
    """
    try:
        value = float(p)
    except (TypeError, ValueError):
        return "NA"
    if not math.isfinite(value):
        return "NA"
    if value < 0.001:
        return f"{value:.1e}"
    return f"{value:.3f}" if value < 0.1 else f"{value:.2f}"
