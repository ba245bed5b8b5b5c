"""Figures of the study report: paired slope plots, correlation scatter, volcano.

Every function returns a matplotlib :class:`~matplotlib.figure.Figure` built without pyplot
by :func:`engine.runtime.new_figure` (no global state, safe in worker threads, the house DPI);
:func:`save_figure` writes it as PNG and SVG with fixed metadata so that re-running a study
gives the same files. P values are written by :func:`engine.runtime.format_p`.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
import pandas as pd

from engine.runtime import atomic_path, format_p, new_figure
from expression import paired_slope_plot, plot_volcano

if TYPE_CHECKING:  # pragma: no cover - typing only; matplotlib is imported when drawing
    from matplotlib.figure import Figure

__all__ = [
    "correlation_figure",
    "save_figure",
    "slope_grid",
    "volcano_figure",
]


def _panel_grid(
    n_panels: int, columns: int, *, width: float, height: float, title: str | None
) -> tuple[Figure, np.ndarray]:
    """A constrained-layout figure with ``n_panels`` axes in rows of ``columns``.

    Axes beyond ``n_panels`` are hidden; ``title`` (if any) is the figure's title.
    """
    n = max(n_panels, 1)
    cols = min(columns, n)
    rows = math.ceil(n / cols)
    fig = new_figure(figsize=(width * cols, height * rows + (0.4 if title else 0.0)))
    axes = np.atleast_1d(fig.subplots(rows, cols, squeeze=False)).ravel()
    for ax in axes[n_panels:]:
        ax.set_visible(False)
    if title:
        fig.suptitle(title, fontsize=12)
    return fig, axes


def slope_grid(
    long: pd.DataFrame,
    *,
    variables: Sequence[str],
    subject: str,
    time: str,
    order: Sequence[str],
    pvalues: Mapping[str, float] | None = None,
    value: str = "value",
    variable: str = "variable",
    ylabels: Mapping[str, str] | None = None,
    title: str | None = None,
    columns: int = 4,
) -> Figure:
    """Paired slope plots, one panel per variable, titled with the test's P.

    Parameters
    ----------
    long
        Long table with ``subject``, ``time``, ``variable`` and ``value`` columns.
    variables
        Which variables (panels), in order.
    subject, time, order
        Subject and time columns; the two timepoints, left to right.
    pvalues
        P value per variable, shown in the panel title.
    value, variable
        Value and variable columns.
    ylabels
        Y-axis label per variable (default the variable name).
    title
        Figure title.
    columns
        Panels per row.

    Returns
    -------
    matplotlib.figure.Figure
    """
    fig, axes = _panel_grid(len(variables), columns, width=3.1, height=3.0, title=title)
    for ax, name in zip(axes, variables, strict=False):
        part = long[long[variable] == name]
        paired_slope_plot(ax, part, subject=subject, time=time, value=value, order=list(order))
        ax.grid(axis="y", alpha=0.3)
        n_pairs = int(part.pivot_table(index=subject, columns=time, values=value,
                                       aggfunc="first").reindex(columns=list(order)).dropna().shape[0])
        p = (pvalues or {}).get(name)
        ax.set_title(f"{name}\nP = {format_p(p)}, n = {n_pairs}", fontsize=10)
        ax.set_ylabel((ylabels or {}).get(name, name), fontsize=9)
    return fig


def correlation_figure(
    table: pd.DataFrame,
    results: pd.DataFrame,
    *,
    labels: Mapping[str, str] | None = None,
    title: str | None = None,
    columns: int = 3,
) -> Figure:
    """Scatter plots with a least-squares line and r, its CI, P and n per correlation.

    Parameters
    ----------
    table
        One row per point of each correlation: ``panel``, ``x_value``, ``y_value``.
    results
        One row per panel (same order as the panels): ``x``, ``y``, ``method``,
        ``timepoint``, ``n``, ``r``, ``ci_low``, ``ci_high``, ``pvalue``, ``warning``.
    labels
        Axis label per variable (default the variable name).
    title
        Figure title.
    columns
        Panels per row.

    Returns
    -------
    matplotlib.figure.Figure
    """
    fig, axes = _panel_grid(len(results), columns, width=4.0, height=3.7, title=title)
    for k, (ax, row) in enumerate(zip(axes, results.itertuples(index=False), strict=False)):
        pts = table[table["panel"] == k]
        x = pts["x_value"].to_numpy(dtype=float)
        y = pts["y_value"].to_numpy(dtype=float)
        ok = np.isfinite(x) & np.isfinite(y)
        ax.scatter(x[ok], y[ok], s=26, color="#2471a3", alpha=0.8, edgecolor="white", lw=0.5)
        if ok.sum() >= 2 and np.ptp(x[ok]) > 0:
            slope, intercept = np.polyfit(x[ok], y[ok], 1)
            xs = np.linspace(x[ok].min(), x[ok].max(), 50)
            ax.plot(xs, intercept + slope * xs, "-", color="#c0392b", lw=1.5)
        symbol = "ρ" if row.method == "spearman" else "r"
        text = (f"{symbol} = {row.r:.2f} [{row.ci_low:.2f}, {row.ci_high:.2f}]\n"
                f"P = {format_p(row.pvalue)}, n = {int(row.n)}")
        ax.text(0.03, 0.97, text, transform=ax.transAxes, va="top", ha="left", fontsize=9,
                bbox={"boxstyle": "round", "fc": "white", "ec": "#bbbbbb", "alpha": 0.9})
        scope = "timepoints pooled" if row.timepoint == "pooled" else f"{row.timepoint}"
        ax.set_title(f"{row.x} vs {row.y} ({row.method}, {scope})", fontsize=10)
        ax.set_xlabel((labels or {}).get(str(row.x), str(row.x)))
        ax.set_ylabel((labels or {}).get(str(row.y), str(row.y)))
        ax.grid(alpha=0.3)
    return fig


def volcano_figure(
    de: pd.DataFrame,
    *,
    alpha: float,
    highlight: Mapping[str, Sequence[str]] | None = None,
    label: int = 12,
    title: str | None = None,
) -> Figure:
    """:func:`expression.plot_volcano` with the members of a few gene sets ringed in colour.

    Parameters
    ----------
    de
        DESeq2-style table indexed by gene: ``log2FoldChange``, ``pvalue``, ``padj``.
    alpha
        Significance level for ``padj``.
    highlight
        Gene-set name to genes, ringed in their own colours.
    label
        Name this many of the most significant genes.
    title
        Axes title.

    Returns
    -------
    matplotlib.figure.Figure
    """
    fig = plot_volcano(de, alpha=alpha, label_top=label, title=title)
    ax = fig.axes[0]
    placed = de[np.isfinite(de["pvalue"].to_numpy(dtype=float))
                & np.isfinite(de["log2FoldChange"].to_numpy(dtype=float))]
    y = -np.log10(np.clip(placed["pvalue"].to_numpy(dtype=float), 1e-300, 1.0))
    lfc = placed["log2FoldChange"].to_numpy(dtype=float)
    palette = ("#e67e22", "#27ae60", "#8e44ad", "#c0392b")
    handles = []
    for k, (name, genes) in enumerate((highlight or {}).items()):
        mask = placed.index.isin(list(genes))
        handles.append(ax.scatter(lfc[mask], y[mask], s=34, facecolors="none",
                                  edgecolors=palette[k % len(palette)], linewidths=1.1,
                                  label=f"{name} ({int(mask.sum())})", zorder=4))
    if handles:
        ax.legend(handles=handles, loc="upper right", fontsize=8, title="gene sets",
                  title_fontsize=8)
    return fig


def save_figure(fig: Figure, stem: str | Path) -> list[Path]:
    """Write ``stem.png`` and ``stem.svg`` with reproducible metadata.

    Parameters
    ----------
    fig
        The figure.
    stem
        Output path without suffix.

    Returns
    -------
    list of Path
        The PNG and the SVG.
    """
    import matplotlib as mpl

    stem = Path(stem)
    stem.parent.mkdir(parents=True, exist_ok=True)
    # appended, not with_suffix: a stem may contain dots (``gates_P1.a``) that are no suffix
    png, svg = stem.with_name(f"{stem.name}.png"), stem.with_name(f"{stem.name}.svg")
    # each file written atomically: a failed or killed run leaves no truncated figure
    with atomic_path(png, suffix=".png") as tmp:
        fig.savefig(tmp, format="png", metadata={"Software": None})
    with mpl.rc_context({"svg.hashsalt": "phenoflow", "svg.fonttype": "path"}), \
            atomic_path(svg, suffix=".svg") as tmp:
        fig.savefig(tmp, format="svg", metadata={"Date": None, "Creator": None})
    return [png, svg]
