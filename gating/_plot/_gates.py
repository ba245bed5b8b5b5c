"""Headless gate plots: one population's gate drawn over its parent's events.

Plots are drawn in the gate's own (compensated, transformed) axes with the values the gating
core computed: :func:`gating._evaluate._apply.evaluate_plan` runs the plan exactly as
:func:`gating.apply_plan` does, and its evaluator supplies the populations (counts,
highlighted events) and the per-parent feature values (the axes). Nothing is re-gated here.

Figures are plain :class:`matplotlib.figure.Figure` objects rendered by the Agg canvas: no
``matplotlib.use()``, no pyplot state, safe in worker processes and on machines with no
display.
"""

from __future__ import annotations

import hashlib
import logging
import re
from collections.abc import Sequence
from pathlib import Path

import numpy as np
from matplotlib.axes import Axes
from matplotlib.figure import Figure

from gating._evaluate import evaluate_plan
from gating._fcs import FCSData
from gating._plan import Plan, PlanGate
from gating._plot._draw import DPI as DPI  # re-exported, as are FIGSIZE and the colours
from gating._plot._draw import FIGSIZE as FIGSIZE
from gating._plot._draw import GATE_COLOUR as GATE_COLOUR
from gating._plot._draw import OPERAND_COLOUR as OPERAND_COLOUR
from gating._plot._draw import draw_gate
from gating._plot._draw import new_axes as new_axes  # re-exported (tests/gating/test_plot.py)

__all__ = ["plot_gate", "plot_gates"]

log = logging.getLogger(__name__)

_MAX_NAME = 150  # characters of a file stem


def plot_gate(
    plan: Plan,
    sample: FCSData,
    population: str,
    *,
    path: str | Path | None = None,
    ax: Axes | None = None,
    bins: int = 256,
    events: int | None = None,
) -> Figure:
    """Draw one population's gate over its parent's events.

    Geometric gates are drawn in their own transformed axes: a log-scaled 2-D histogram of
    the parent's events (a histogram for one-dimensional gates) with the gate on top, polygons
    closed, rectangle sides that are open running to the plot edge, ellipsoids as their
    contour (the shadow on the first two axes when they have more), quadrants as split lines
    with every sibling quadrant's percentage of the parent written in its cell. Gates with
    more than two dimensions are shown on their first two.

    Boolean gates have no outline of their own: the parent's events are drawn in grey on the
    first two axes of the gates the Boolean combines (searched depth first through nested
    Booleans), the population's events on top in colour, and the bounds of those operand
    rectangles that lie on the plotted axes as dashed lines.

    Parameters
    ----------
    plan
        From :func:`gating.compile_plan`.
    sample
        The events (a sample the plan fits).
    population
        Population id, full path, or a display name that ends exactly one path.
    path
        Where to write the figure: ``.png``, or ``.svg`` (then a ``.png`` beside it too).
    ax
        Axes to draw into (the caller's figure); default a new figure.
    bins
        Histogram bins per axis; a 2-D density of a small parent uses fewer (about twice
        the square root of its event count, at least 64) so that it does not dissolve into
        single events.
    events
        Draw at most this many of the parent's events (a fixed-seed random subset); counts
        and percentages in the annotations always use every event.

    Returns
    -------
    Figure
        The figure drawn on.

    Raises
    ------
    ValueError
        Unknown or ambiguous ``population``, a Boolean gate with no geometric operand, bad
        ``bins``/``events``, or a ``path`` suffix other than ``.png``/``.svg``.
    """
    _check_options(bins, events)
    step = _find(plan, population)
    out = Path(path) if path is not None else None
    if out is not None:
        _suffix(out)
    ev = evaluate_plan(plan, sample)
    fig = draw_gate(ev, sample, step, ax=ax, bins=bins, events=events)
    if out is not None:
        _save(fig, out)
    return fig


def plot_gates(
    plan: Plan,
    sample: FCSData,
    out_dir: str | Path,
    *,
    populations: Sequence[str] | None = None,
) -> list[Path]:
    """Write one PNG per population (see :func:`plot_gate`) into ``out_dir``.

    File names are the population path made safe: path separators, control characters and
    other characters that are unsafe in file names become ``_``; a name that would repeat
    another gets a short hash of the full path.

    Parameters
    ----------
    plan
        From :func:`gating.compile_plan`.
    sample
        The events.
    out_dir
        Folder to write into (created if needed).
    populations
        Ids, paths or unique names; default every population of the plan, in plan order.

    Returns
    -------
    list of Path
        The PNG files, in the order of ``populations``.
    """
    steps = list(plan.gates) if populations is None else [_find(plan, p) for p in populations]
    folder = Path(out_dir)
    folder.mkdir(parents=True, exist_ok=True)
    ev = evaluate_plan(plan, sample)
    written: list[Path] = []
    used: set[str] = set()
    for step in steps:
        stem = _safe_stem(step.path)
        if stem.lower() in used:
            stem = f"{stem[: _MAX_NAME - 9]}-{hashlib.sha1(step.path.encode()).hexdigest()[:8]}"
        used.add(stem.lower())
        target = folder / f"{stem}.png"
        _save(draw_gate(ev, sample, step, ax=None, bins=256, events=None), target)
        written.append(target)
    log.info("wrote %d gate plots to %s", len(written), folder)
    return written


# ---- resolving and saving --------------------------------------------------------------------
def _check_options(bins: int, events: int | None) -> None:
    if isinstance(bins, bool) or not isinstance(bins, int | np.integer) or bins < 1:
        raise ValueError(f"bins must be a positive integer, got {bins!r}")
    if events is not None and (
        isinstance(events, bool) or not isinstance(events, int | np.integer) or events < 1
    ):
        raise ValueError(f"events must be a positive integer or None, got {events!r}")


def _find(plan: Plan, population: str) -> PlanGate:
    for attr in ("population", "path"):
        found = [g for g in plan.gates if getattr(g, attr) == population]
        if found:
            return found[0]
    ends = [g for g in plan.gates if g.path.endswith("/" + population)]
    if len(ends) == 1:
        return ends[0]
    if ends:
        raise ValueError(
            f"population {population!r} is ambiguous: " + ", ".join(g.path for g in ends)
        )
    raise ValueError(f"no population {population!r} in plan {plan.strategy_name!r}")


def _suffix(path: Path) -> str:
    suffix = path.suffix.lower()
    if suffix not in (".png", ".svg"):
        raise ValueError(f"{path}: plots are written as .png or .svg, not {path.suffix!r}")
    return suffix


def _save(fig: Figure, path: Path) -> None:
    suffix = _suffix(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path.with_suffix(".png"), format="png")
    if suffix == ".svg":
        fig.savefig(path, format="svg")
    log.debug("wrote %s", path)


#: Names Windows reserves for devices (case-insensitive, also with any extension).
_WINDOWS_DEVICES = frozenset(
    {"CON", "PRN", "AUX", "NUL"} | {f"{kind}{i}" for kind in ("COM", "LPT") for i in range(1, 10)}
)


def _safe_stem(population_path: str) -> str:
    """A file stem for a population path: word characters and ``.+-=,()#@`` only.

    Windows device names (``CON``, ``NUL.x``, ``COM1``...) get a leading ``_``.
    """
    parts = [p for p in population_path.split("/") if p]
    stem = re.sub(r"[^\w.+\-=,()#@]", "_", "_".join(parts))
    stem = stem.strip("._ ")[:_MAX_NAME] or "population"
    if stem.split(".", 1)[0].upper() in _WINDOWS_DEVICES:
        stem = f"_{stem}"[:_MAX_NAME]  # Windows matches the part before the first dot
    return stem
