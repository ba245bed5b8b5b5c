"""Headless gate plots: one population's gate drawn over its parent's events.

Plots are drawn in the gate's own (compensated, transformed) axes with the values the gating
core computed: :func:`gating.evaluate_plan` runs the plan exactly as :func:`gating.apply_plan`
does, and its :class:`gating.Evaluator` supplies the populations (counts, highlighted events)
and the per-parent feature values (the axes). Nothing is re-gated here: a caller that draws
several figures of one sample evaluates it once and passes ``evaluation=`` to each.

Figures are plain :class:`matplotlib.figure.Figure` objects rendered by the Agg canvas
(:func:`engine.runtime.new_figure`): no ``matplotlib.use()``, no pyplot state, safe in worker
processes and on machines with no display. matplotlib is imported when a plot is drawn, not
when :mod:`gating` is imported.
"""

from __future__ import annotations

import hashlib
import logging
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from engine.runtime import atomic_path, safe_name
from gating._evaluate import Evaluator, evaluate_plan
from gating._fcs import FCSData
from gating._plan import Plan, PlanGate
from gating._plot._draw import DPI as DPI  # re-exported, as are FIGSIZE and the colours
from gating._plot._draw import FIGSIZE as FIGSIZE
from gating._plot._draw import GATE_COLOUR as GATE_COLOUR
from gating._plot._draw import OPERAND_COLOUR as OPERAND_COLOUR
from gating._plot._draw import backgate_axis, draw_backgate, draw_gate
from gating._plot._draw import new_axes as new_axes  # re-exported (tests/gating/test_plot.py)

if TYPE_CHECKING:  # pragma: no cover - typing only; matplotlib is imported when drawing
    from matplotlib.axes import Axes
    from matplotlib.figure import Figure

    from gating._transforms import Transform

__all__ = ["plot_backgate", "plot_gate", "plot_gates"]

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
    evaluation: Evaluator | None = None,
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
    evaluation
        ``plan`` already evaluated on ``sample`` by :func:`gating.evaluate_plan`: reused, so
        the sample is not gated again (draw many figures of one sample from one evaluation).
        Default: the plan is evaluated here.

    Returns
    -------
    Figure
        The figure drawn on.

    Raises
    ------
    ValueError
        Unknown or ambiguous ``population``, a Boolean gate with no geometric operand, bad
        ``bins``/``events``, a ``path`` suffix other than ``.png``/``.svg``, or an
        ``evaluation`` of another plan or sample.

    Examples
    --------
    >>> from gating import compile_plan, evaluate_plan, plot_gate, preset, read_fcs
    >>> sample = read_fcs("P01_pre.fcs")  # doctest: +SKIP
    >>> plan = compile_plan(preset("study_panel"), sample)  # doctest: +SKIP
    >>> ev = evaluate_plan(plan, sample)  # doctest: +SKIP
    >>> for pop in ("/Lymphocytes", "/Lymphocytes/Singlets"):  # doctest: +SKIP
    ...     plot_gate(plan, sample, pop, evaluation=ev, path=f"{pop.rsplit('/', 1)[-1]}.png")
    """
    _check_options(bins, events)
    step = _find(plan, population)
    out = Path(path) if path is not None else None
    if out is not None:
        _suffix(out)
    ev = _evaluation(plan, sample, evaluation)
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
    evaluation: Evaluator | None = None,
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
    evaluation
        ``plan`` already evaluated on ``sample`` (:func:`gating.evaluate_plan`), reused;
        default: the plan is evaluated here, once for all the figures.

    Returns
    -------
    list of Path
        The PNG files, in the order of ``populations``.

    Raises
    ------
    ValueError
        An unknown or ambiguous population, or an ``evaluation`` of another plan or sample.

    Examples
    --------
    >>> from gating import compile_plan, plot_gates, preset, read_fcs
    >>> sample = read_fcs("P01_pre.fcs")  # doctest: +SKIP
    >>> plan = compile_plan(preset("study_panel"), sample)  # doctest: +SKIP
    >>> plot_gates(plan, sample, "gates/P01_pre")  # doctest: +SKIP
    [PosixPath('gates/P01_pre/Lymphocytes.png'), ...]
    """
    steps = list(plan.gates) if populations is None else [_find(plan, p) for p in populations]
    ev = _evaluation(plan, sample, evaluation)
    folder = Path(out_dir)
    folder.mkdir(parents=True, exist_ok=True)
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


def plot_backgate(
    plan: Plan,
    sample: FCSData,
    population: str,
    x: str,
    y: str,
    *,
    start: str | None = None,
    transforms: Mapping[str, Transform | None] | None = None,
    path: str | Path | None = None,
    ax: Axes | None = None,
    events: int | None = 100_000,
    evaluation: Evaluator | None = None,
) -> Figure:
    """Backgating: a population's events in colour over its ancestors' events, on any two
    channels.

    Each event is drawn once, in the colour of the deepest gate of the population's path it
    falls in: the events outside the first gate in light grey, each gate further down the path
    darker, the population itself in red on top. This shows where a population sits in views
    that did not gate it (for example Tc17 cells on FSC-A x SSC-A, or on CD3 x CD19).

    Parameters
    ----------
    plan
        From :func:`gating.compile_plan`.
    sample
        The events.
    population
        Population id, full path, or a display name that ends exactly one path.
    x, y
        The channels to plot (``$PnN`` names or markers). A channel a gate of the plan uses is
        shown as the plan's axis: compensated and transformed as the gates see it; any other
        channel is shown as stored (uncompensated), transformed by ``transforms`` if given.
    start
        The ancestor whose events form the background (id, path or name); default all events
        of the sample.
    transforms
        Channel to transform for the axes (``None``: raw values), overriding the plan's.
    path
        Where to write the figure: ``.png``, or ``.svg`` (then a ``.png`` beside it too).
    ax
        Axes to draw into (the caller's figure); default a new figure.
    events
        Draw at most this many events (a fixed-seed random subset that keeps the population's
        events first); ``None`` draws all. Counts in the legend and title use every event.
    evaluation
        ``plan`` already evaluated on ``sample`` by :func:`gating.evaluate_plan`, reused.

    Returns
    -------
    Figure
        The figure drawn on; the scatter of level ``k`` (0 = the background) has the gid
        ``"level{k}"``, the population's is the last.

    Raises
    ------
    ValueError
        Unknown or ambiguous ``population``/``start``, a ``start`` that is not an ancestor of
        ``population``, bad ``events``, a ``path`` suffix other than ``.png``/``.svg``, or an
        ``evaluation`` of another plan or sample.
    KeyError
        ``x`` or ``y`` is not a channel of the sample.

    Examples
    --------
    >>> from gating import compile_plan, evaluate_plan, preset, read_fcs
    >>> from gating._plot import plot_backgate
    >>> sample = read_fcs("P01_pre.fcs")  # doctest: +SKIP
    >>> plan = compile_plan(preset("study_panel"), sample)  # doctest: +SKIP
    >>> plot_backgate(plan, sample, "Tc17", "FSC-A", "SSC-A", path="tc17_fsc_ssc.png")  # doctest: +SKIP
    <Figure size 700x600 with 1 Axes>
    """
    _check_options(1, events)
    step = _find(plan, population)
    first = None if start is None else _find(plan, start)
    if first is not None:
        ancestors, node = set(), step
        by_id = {g.population: g for g in plan.gates}
        while node.parent is not None:
            ancestors.add(node.parent)
            node = by_id[node.parent]
        if first.population not in ancestors:
            raise ValueError(f"{first.path!r} is not an ancestor of {step.path!r}")
    out = Path(path) if path is not None else None
    if out is not None:
        _suffix(out)
    ev = _evaluation(plan, sample, evaluation)
    given = dict(transforms or {})
    axes_ = tuple(
        backgate_axis(ev, sample, channel, given.get(channel), override=channel in given)
        for channel in (x, y)
    )
    fig = draw_backgate(ev, sample, step, first, (axes_[0], axes_[1]), ax=ax, events=events)
    if out is not None:
        _save(fig, out)
    return fig


# ---- resolving and saving --------------------------------------------------------------------
def _evaluation(plan: Plan, sample: FCSData, evaluation: Evaluator | None) -> Evaluator:
    """``evaluation`` when it is ``plan`` evaluated on ``sample``; a new evaluation if None."""
    if evaluation is None:
        return evaluate_plan(plan, sample)
    if not isinstance(evaluation, Evaluator):
        raise TypeError(f"evaluation must come from gating.evaluate_plan, got {type(evaluation).__name__}")
    if evaluation.plan is not plan or evaluation.sample is not sample:
        raise ValueError("evaluation was made for another plan or sample: pass "
                         "evaluate_plan(plan, sample) of the plan and sample drawn")
    return evaluation


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
    with atomic_path(path.with_suffix(".png"), suffix=".png") as tmp:
        fig.savefig(tmp, format="png")
    if suffix == ".svg":
        with atomic_path(path, suffix=".svg") as tmp:
            fig.savefig(tmp, format="svg")
    log.debug("wrote %s", path)


def _safe_stem(population_path: str) -> str:
    """A file stem for a population path: its parts joined by ``_``, made safe by the house
    rule (:func:`engine.runtime.safe_name`)."""
    return safe_name("_".join(p for p in population_path.split("/") if p) or "population",
                     max_length=_MAX_NAME)
