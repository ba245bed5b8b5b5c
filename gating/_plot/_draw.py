"""Drawing one gate plot: the parent's density, the gate's outline, labels and title.

:func:`draw_gate` renders one population of an evaluated plan (:func:`gating._evaluate._apply.evaluate_plan`)
into a figure on the Agg canvas; :func:`gating._plot._gates.plot_gate` and
:func:`gating._plot._gates.plot_gates` resolve populations, call it and save the figures.
"""

from __future__ import annotations

import dataclasses
import functools
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

import numpy as np

from engine.runtime import DPI, new_figure, thread_limit
from gating._evaluate import Evaluator
from gating._fcs import FCSData
from gating._plan import PlanGate
from gating._plot._axes import set_ticks
from gating._transforms import Transform

if TYPE_CHECKING:  # pragma: no cover - typing only; matplotlib is imported when drawing
    from matplotlib.axes import Axes
    from matplotlib.colors import Colormap
    from matplotlib.figure import Figure

__all__ = [
    "DPI", "FIGSIZE", "GATE_COLOUR", "OPERAND_COLOUR", "BackgateAxis", "axis_label",
    "backgate_axis", "channel_text", "display", "draw_backgate", "draw_gate", "new_axes", "scale_axes",
]

FIGSIZE = (7.0, 6.0)  # inches
GATE_COLOUR = "#d62728"
OPERAND_COLOUR = "#1f4e9c"


@functools.cache
def _greys() -> Colormap:
    """Greys from light to black, without the white end (a bin with one event must show)."""
    from matplotlib.colors import ListedColormap

    return ListedColormap([(g, g, g) for g in np.linspace(0.75, 0.0, 256)], name="phenoflow_greys")


def new_axes(ax: Axes | None) -> tuple[Figure, Axes]:
    """The root figure of ``ax``, or a new house figure (:func:`engine.runtime.new_figure`)."""
    from matplotlib.figure import Figure

    if ax is not None:
        fig: Any = ax.figure
        while not isinstance(fig, Figure):  # a SubFigure: its root figure
            fig = fig.figure
        return fig, ax
    fig = new_figure(figsize=FIGSIZE)
    return fig, fig.add_subplot()


def draw_gate(
    ev: Evaluator, sample: FCSData, step: PlanGate, *, ax: Axes | None, bins: int,
    events: int | None,
) -> Figure:
    fig, ax = new_axes(ax)
    plan = ev.plan
    by_id = {g.population: g for g in plan.gates}
    if step.kind == "boolean":
        keys = _operand_features(step, by_id)
        if not keys:
            raise ValueError(f"Boolean gate {step.path!r} has no geometric operand to plot")
    else:
        keys = list(step.features[:2])
    parent_rows = ev.rows(step.parent)
    m = ev.n if parent_rows is None else len(parent_rows)
    take = None
    if events is not None and m > events:
        take = np.sort(np.random.default_rng(0).choice(m, size=events, replace=False))
    with thread_limit(None):
        values = [ev.feature(k, step.parent) for k in keys]
        mine = ev.mask(step.population)
    if take is not None:
        values = [v[take] for v in values]
    limits = [_limits(v, _geometry_extent(step, i)) for i, v in enumerate(values)]
    mine = mine if parent_rows is None else mine[parent_rows]
    if take is not None:
        mine = mine[take]
    highlight = step.kind == "boolean"
    image = _density(ax, values, limits, bins, grey=highlight)
    if highlight:
        _highlight(ax, values, mine, bins, limits[0])
        _operand_lines(ax, step, keys, by_id)
    else:
        _outline(ax, step, limits, ev, by_id)
    if image is not None:
        from matplotlib.ticker import FuncFormatter, LogLocator, NullLocator

        bar = fig.colorbar(image, ax=ax, label="events per bin", pad=0.02)
        bar.ax.yaxis.set_major_locator(LogLocator(subs=(1.0, 2.0, 5.0)))
        bar.ax.yaxis.set_major_formatter(FuncFormatter(lambda v, _pos: f"{v:g}"))
        bar.ax.yaxis.set_minor_locator(NullLocator())
    ax.set_xlim(limits[0])
    if len(limits) > 1:
        ax.set_ylim(limits[1])
    scale_axes(ax, ev, keys)
    ax.set_xlabel(axis_label(ev, sample, keys[0]))
    ax.set_ylabel(axis_label(ev, sample, keys[1]) if len(keys) > 1 else "events")
    ax.set_title(_title(ev, sample, step, by_id), fontsize=10, loc="left")
    return fig


def scale_axes(ax: Axes, ev: Evaluator, keys: Sequence[str]) -> None:
    """Raw-value ticks (decades, or channel units) on the axes showing features ``keys``
    (x, then y when there are two); ratio axes keep matplotlib's ticks."""
    for axis, key in zip("xy", keys, strict=False):
        feature = ev.features[key]
        set_ticks(ax, axis, feature.transform, raw=feature.denominator is None)


def _operand_features(step: PlanGate, by_id: dict[str, PlanGate]) -> list[str]:
    keys: list[str] = []
    for ref, _complement in step.params["operands"]:
        operand = by_id[ref]
        more = (
            _operand_features(operand, by_id) if operand.kind == "boolean" else operand.features
        )
        keys.extend(k for k in more if k not in keys)
    return keys[:2]


def _geometry_extent(step: PlanGate, axis: int) -> list[float]:
    """Finite gate coordinates along one plotted axis (kept inside the plot limits)."""
    p = step.params
    if step.kind == "rectangle":
        return [b for b in p["bounds"][axis] if b is not None]
    if step.kind == "polygon":
        return [float(v[axis]) for v in p["vertices"]]
    if step.kind == "quadrant":
        return [float(s) for s in p["splits"][axis]]
    if step.kind == "ellipsoid":
        centre, half = _ellipse_span(step, axis)
        return [centre - half, centre + half]
    return []


def _limits(values: np.ndarray, extent: Sequence[float]) -> tuple[float, float]:
    finite = values[np.isfinite(values)]
    points = list(np.quantile(finite, [0.002, 0.998])) if len(finite) else []
    points += [float(e) for e in extent]
    if not points:
        return (0.0, 1.0)
    lo, hi = float(min(points)), float(max(points))
    pad = 0.05 * (hi - lo) if hi > lo else 0.5 * max(1.0, abs(lo))
    return (lo - pad, hi + pad)


def _density(
    ax: Axes, values: list[np.ndarray], limits: list[tuple[float, float]], bins: int, *,
    grey: bool,
) -> Any:
    """Histogram of the parent's events; returns the image of a 2-D density (else None)."""
    from matplotlib.colors import LogNorm

    if len(values) == 1:
        counts, edges = np.histogram(values[0], bins=bins, range=limits[0])
        ax.stairs(counts, edges, fill=True, color="#9a9a9a" if grey else "#4c72b0",
                  alpha=0.8, label="parent")
        ax.set_ylim(0, max(1, int(counts.max(initial=0))) * 1.08)
        return None
    bins = min(bins, max(64, round(2.0 * np.sqrt(len(values[0])))))
    counts2, _, _ = np.histogram2d(values[0], values[1], bins=bins, range=limits)
    if not counts2.any():
        ax.text(0.5, 0.5, "no events", transform=ax.transAxes, ha="center", va="center")
        return None
    return ax.imshow(
        np.ma.masked_equal(counts2.T, 0), origin="lower", aspect="auto",
        extent=(*limits[0], *limits[1]), cmap=_greys() if grey else "viridis",
        norm=LogNorm(vmin=1, vmax=max(2.0, float(counts2.max()))), interpolation="nearest",
        label="parent",
    )


def _highlight(
    ax: Axes, values: list[np.ndarray], mine: np.ndarray, bins: int,
    xlimits: tuple[float, float],
) -> None:
    if len(values) == 1:  # same bins as the parent's histogram
        counts, edges = np.histogram(values[0][mine], bins=bins, range=xlimits)
        ax.stairs(counts, edges, fill=True, color=GATE_COLOUR, alpha=0.8, label="population")
        return
    ax.scatter(values[0][mine], values[1][mine], s=10, color=GATE_COLOUR, alpha=0.9,
               linewidths=0, rasterized=True, label="population")


def _operand_lines(
    ax: Axes, step: PlanGate, keys: list[str], by_id: dict[str, PlanGate]
) -> None:
    for ref, _complement in step.params["operands"]:
        operand = by_id[ref]
        if operand.kind != "rectangle":
            continue
        for key, (lo, hi) in zip(operand.features, operand.params["bounds"], strict=True):
            if key not in keys:
                continue
            line = ax.axvline if keys.index(key) == 0 else ax.axhline
            for b in (lo, hi):
                if b is not None:
                    line(b, color=OPERAND_COLOUR, linestyle="--", linewidth=1.2, label="operand")


def _outline(
    ax: Axes, step: PlanGate, limits: list[tuple[float, float]], ev: Evaluator,
    by_id: dict[str, PlanGate],
) -> None:
    p = step.params
    style = {"color": GATE_COLOUR, "linewidth": 1.8, "label": "gate"}
    if step.kind == "polygon":
        v = np.asarray(p["vertices"], dtype=np.float64)
        closed = np.vstack([v, v[:1]])
        ax.plot(closed[:, 0], closed[:, 1], **style)
    elif step.kind == "rectangle":
        _box(ax, [tuple(b) for b in p["bounds"][:2]], limits, style)
    elif step.kind == "ellipsoid":
        _ellipse(ax, step, style)
    elif step.kind == "quadrant":
        _quadrants(ax, step, limits, ev, by_id, style)


def _box(
    ax: Axes, bounds: list[tuple[float | None, float | None]],
    limits: list[tuple[float, float]], style: dict[str, Any],
) -> None:
    """Closed sides of a box; a side's extent runs to the plot edge where the box is open."""
    if len(bounds) == 1:
        lo, hi = bounds[0]
        ax.axvspan(limits[0][0] if lo is None else lo, limits[0][1] if hi is None else hi,
                   color=style["color"], alpha=0.12, linewidth=0, zorder=0)
        for b in (lo, hi):
            if b is not None:
                ax.axvline(b, **style)
        return
    (x0, x1), (y0, y1) = bounds
    xs = (limits[0][0] if x0 is None else x0, limits[0][1] if x1 is None else x1)
    ys = (limits[1][0] if y0 is None else y0, limits[1][1] if y1 is None else y1)
    for x in (x0, x1):
        if x is not None:
            ax.plot([x, x], list(ys), **style)
    for y in (y0, y1):
        if y is not None:
            ax.plot(list(xs), [y, y], **style)


def _ellipse_span(step: PlanGate, axis: int) -> tuple[float, float]:
    cov = np.linalg.inv(np.asarray(step.params["precision"], dtype=np.float64))
    d = float(step.params["distance_square"])
    return float(step.params["mean"][axis]), float(np.sqrt(max(d * cov[axis, axis], 0.0)))


def _ellipse(ax: Axes, step: PlanGate, style: dict[str, Any]) -> None:
    """Contour ``(x - m)^T S^-1 (x - m) = d`` with ``S`` the covariance on the plotted axes.

    For more than two dimensions this is the ellipsoid's shadow on the first two axes.
    """
    if len(step.features) == 1:
        centre, half = _ellipse_span(step, 0)
        for b in (centre - half, centre + half):
            ax.axvline(b, **style)
        return
    cov = np.linalg.inv(np.asarray(step.params["precision"], dtype=np.float64))[:2, :2]
    mean = np.asarray(step.params["mean"][:2], dtype=np.float64)
    chol = np.linalg.cholesky(cov)
    t = np.linspace(0.0, 2.0 * np.pi, 361)
    circle = np.vstack([np.cos(t), np.sin(t)])
    pts = mean[:, None] + np.sqrt(float(step.params["distance_square"])) * (chol @ circle)
    ax.plot(pts[0], pts[1], **style)


def _cell_bounds(splits: Sequence[float], cell: int) -> tuple[float | None, float | None]:
    if cell < 0:
        return (None, None)
    return (splits[cell - 1] if cell > 0 else None, splits[cell] if cell < len(splits) else None)


def _quadrants(
    ax: Axes, step: PlanGate, limits: list[tuple[float, float]], ev: Evaluator,
    by_id: dict[str, PlanGate], style: dict[str, Any],
) -> None:
    splits = step.params["splits"][:2]
    for axis, values in enumerate(splits):
        line = ax.axvline if axis == 0 else ax.axhline
        for s in values:
            line(s, color="#444444", linestyle="--", linewidth=1.0, label="split")
    _box(ax, [_cell_bounds(s, c) for s, c in zip(splits, step.params["cells"], strict=False)],
         limits, style)
    total = ev.count(step.parent)
    siblings = [
        g for g in by_id.values()
        if g.kind == "quadrant" and g.parent == step.parent and g.features == step.features
        and g.params["splits"] == step.params["splits"]
    ]
    for g in siblings:
        count = ev.count(g.population)
        pct = 100.0 * count / total if total else float("nan")
        xy, align = [], []
        for axis, (s, c) in enumerate(zip(splits, g.params["cells"], strict=False)):
            lo, hi = _cell_bounds(s, c)
            a, b = limits[axis]
            inset = 0.02 * (b - a)
            if lo is None and hi is not None:
                xy.append(a + inset)
                align.append("left" if axis == 0 else "bottom")
            elif hi is None and lo is not None:
                xy.append(b - inset)
                align.append("right" if axis == 0 else "top")
            else:
                xy.append(((a if lo is None else lo) + (b if hi is None else hi)) / 2)
                align.append("center")
        if len(xy) == 1:
            xy.append(0.92 * ax.get_ylim()[1])
            align.append("top")
        name = display(g.path.rsplit("/", 1)[-1])
        ax.text(
            xy[0], xy[1], f"{name}\n{pct:.1f}%", ha=align[0], va=align[1], fontsize=9, fontweight="bold" if g is step else "normal", label="cell",
            bbox={"boxstyle": "round,pad=0.25", "facecolor": "white", "alpha": 0.8,
                  "edgecolor": GATE_COLOUR if g is step else "#999999"},
        )


def display(text: str) -> str:
    """Text safe to draw: control characters escaped, ``$`` kept literal (no mathtext)."""
    shown = "".join(c if c.isprintable() else f"\\x{ord(c):02x}" for c in text)
    return shown.replace("$", r"\$")


def channel_text(sample: FCSData, name: str) -> str:
    """``marker (channel)`` of a channel of ``sample`` (the channel alone without a marker;
    ``name`` itself when the sample has no such channel)."""
    try:
        row = sample.channels.iloc[sample.channel_index(name)]
    except KeyError:
        return name
    channel, marker = str(row["name"]), row["marker"]
    has_marker = isinstance(marker, str) and marker.strip() and marker != channel
    return f"{marker} ({channel})" if has_marker else channel


def axis_label(
    ev: Evaluator, sample: FCSData, key: str, *, transform: Transform | str | None = "plan"
) -> str:
    """``marker (channel)`` (the channel alone without a marker), then the transform and
    whether the values are compensated, e.g. ``CD3 (APC-H7-A)  [logicle, compensated]``;
    ``transform`` names another transform than the plan's."""
    feature = ev.features[key]
    name, _compensation, _transform, kind = key.rsplit("|", 3)
    label = f"{name} (ratio)" if kind == "ratio" else channel_text(sample, name)
    shown = feature.transform if isinstance(transform, str) else transform
    notes = [shown.kind if shown is not None else "raw"]
    if feature.numerator.coefficients is not None:
        notes.append("compensated")
    return display(f"{label}  [{', '.join(notes)}]")


def _title(ev: Evaluator, sample: FCSData, step: PlanGate, by_id: dict[str, PlanGate]) -> str:
    count, parent = ev.count(step.population), ev.count(step.parent)
    pct = f"{100.0 * count / parent:.2f}%" if parent else "n/a"
    name = sample.path.stem + (f"#{sample.dataset}" if sample.dataset else "")
    lines = [step.path, f"{name}: {count:,} events, {pct} of parent ({parent:,})"]
    if step.kind == "boolean":
        words = [
            ("not " if complement else "") + by_id[ref].path.rsplit("/", 1)[-1]
            for ref, complement in step.params["operands"]
        ]
        op = step.params["op"]
        lines.append(f"not {words[0]}" if op == "not" else f" {op} ".join(words))
    if len(step.features) > 2:
        lines.append(f"first 2 of {len(step.features)} dimensions shown")
    return "\n".join(display(line) for line in lines)


# ---- backgating ------------------------------------------------------------------------------
@dataclasses.dataclass(frozen=True)
class BackgateAxis:
    """One axis of a backgating plot: every event's value, its transform, its label."""

    values: np.ndarray  # transformed values of all events of the sample
    transform: Transform | None
    label: str
    raw_scale: bool = True  # False: a ratio (matplotlib's ticks)


def backgate_axis(
    ev: Evaluator, sample: FCSData, channel: str, transform: Transform | None, *,
    override: bool,
) -> BackgateAxis:
    """Values of ``channel`` for every event: the plan's own (compensated, transformed) axis
    when a gate uses that channel, else the channel's stored values; ``override`` applies
    ``transform`` instead of the plan's."""
    column = sample.channel_index(channel)
    for key, feature in ev.features.items():
        if feature.denominator is not None:
            continue
        name = key.rsplit("|", 3)[0]
        try:
            same = sample.channel_index(name) == column
        except KeyError:
            same = False
        if not same:
            continue
        used = transform if override else feature.transform
        values = ev.untransformed(key, None)
        if used is not None:
            with np.errstate(divide="ignore", invalid="ignore"):
                values = used.apply(values)
        label = axis_label(ev, sample, key, transform=used)
        return BackgateAxis(np.asarray(values, dtype=np.float64), used, label)
    values = np.asarray(sample.columns([column], dtype=np.float64)[:, 0])
    if transform is not None:
        with np.errstate(divide="ignore", invalid="ignore"):
            values = transform.apply(values)
    note = transform.kind if transform is not None else "raw"
    return BackgateAxis(np.asarray(values, dtype=np.float64), transform,
                        display(f"{channel_text(sample, channel)}  [{note}, uncompensated]"))


def draw_backgate(
    ev: Evaluator, sample: FCSData, step: PlanGate, start: PlanGate | None,
    axes_: tuple[BackgateAxis, BackgateAxis], *, ax: Axes | None, events: int | None,
) -> Figure:
    """The population's events in colour over the events of each ancestor from ``start``
    (None: all events) down to its parent, each event drawn in the colour of the deepest
    level it belongs to."""
    from matplotlib.colors import to_hex

    fig, ax = new_axes(ax)
    by_id = {g.population: g for g in ev.plan.gates}
    chain: list[PlanGate] = []
    node: PlanGate | None = step
    while node is not None:
        chain.append(node)
        node = by_id.get(node.parent) if node.parent is not None else None
    chain.reverse()  # root gate ... step
    if start is not None:
        chain = chain[[g.population for g in chain].index(start.population):]
    levels: list[str | None] = ([] if start is not None else [None]) + [g.population for g in chain]
    with thread_limit(None):
        depth = np.full(ev.n, -1, dtype=np.int16)
        for k, level in enumerate(levels):
            if level is None:
                depth[:] = 0
            else:
                depth[ev.mask(level)] = k
    base = np.flatnonzero(depth >= 0)
    top = len(levels) - 1
    mine = np.flatnonzero(depth == top)
    take = base
    if events is not None and len(base) > events:
        rng = np.random.default_rng(0)
        keep_mine = mine if len(mine) <= events else rng.choice(mine, size=events, replace=False)
        rest = np.setdiff1d(base, keep_mine, assume_unique=True)
        more = max(0, events - len(keep_mine))
        take = np.sort(np.concatenate([keep_mine, rng.choice(rest, size=min(more, len(rest)),
                                                                 replace=False)]))
    x, y = axes_[0].values, axes_[1].values
    limits = [_limits(v[base], []) for v in (x, y)]
    from matplotlib import colormaps

    blues = colormaps["Blues"]
    n_back = max(top - 1, 1)
    for k, level in enumerate(levels):
        rows = take[depth[take] == k]
        name = "all events" if level is None else by_id[level].path.rsplit("/", 1)[-1]
        count = ev.count(level)
        if k == top:
            colour, size, order = GATE_COLOUR, 9.0, 3
        elif k == 0:
            colour, size, order = "#c4c4c4", 2.0, 1
        else:  # the gates between: light to dark blue going down the path
            colour, size, order = to_hex(blues(0.3 + 0.6 * (k - 1) / n_back)), 2.0, 1
        ax.scatter(x[rows], y[rows], s=size, color=colour, linewidths=0, rasterized=True,
                   zorder=order, label=display(f"{name} ({count:,})"), gid=f"level{k}")
    ax.set_xlim(limits[0])
    ax.set_ylim(limits[1])
    for axis, a in zip("xy", axes_, strict=True):
        set_ticks(ax, axis, a.transform, raw=a.raw_scale)
    ax.set_xlabel(axes_[0].label)
    ax.set_ylabel(axes_[1].label)
    ax.legend(loc="upper right", fontsize=8, markerscale=3, frameon=True, framealpha=0.85,
              title="deepest gate of each event", title_fontsize=8)
    count = ev.count(step.population)
    start_count = ev.count(levels[0])
    start_name = "all events" if levels[0] is None else by_id[levels[0]].path
    pct = f"{100.0 * count / start_count:.2f}%" if start_count else "n/a"
    name = sample.path.stem + (f"#{sample.dataset}" if sample.dataset else "")
    ax.set_title("\n".join(display(line) for line in (
        f"backgating {step.path}",
        f"{name}: {count:,} events, {pct} of {start_name} ({start_count:,})",
    )), fontsize=10, loc="left")
    return fig
