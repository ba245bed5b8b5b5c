"""Figures of the study report: paired slope plots, correlation scatter, volcano, PCA, MA.

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
    "ma_figure",
    "pca_coordinates",
    "pca_figure",
    "save_figure",
    "slope_grid",
    "volcano_figure",
]

UP, DOWN = "#c0392b", "#1f5fa8"  # as expression's plots: increase, decrease
_TIME_COLOURS = ("#2471a3", "#e67e22", "#27ae60", "#8e44ad", "#7f8c8d")


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
    """Paired slope plots, one panel per variable, titled with the test's P and n pairs.

    Each panel is :func:`expression.paired_slope_plot`: a line per subject with values at both
    timepoints, the medians over those pairs only, unpaired values as hollow circles. The
    title's n is the number of pairs drawn (the n of a paired test), then how many of them
    rise and fall, and the count of unpaired values when there are any.

    Examples
    --------
    >>> import pandas as pd
    >>> long = pd.DataFrame({"patient": ["P1", "P1", "P2", "P2", "P3"],
    ...                      "timepoint": ["pre", "post", "pre", "post", "pre"],
    ...                      "variable": "MMRSS", "value": [20.0, 12.0, 9.0, 11.0, 30.0]})
    >>> fig = slope_grid(long, variables=["MMRSS"], subject="patient", time="timepoint",
    ...                  order=["pre", "post"], pvalues={"MMRSS": 0.5})
    >>> print(fig.axes[0].get_title())
    MMRSS
    P = 0.50, n = 2 pairs
    1 up, 1 down; 1 unpaired

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
    fig, axes = _panel_grid(len(variables), columns, width=3.1, height=3.2, title=title)
    for ax, name in zip(axes, variables, strict=False):
        part = long[long[variable] == name]
        paired_slope_plot(ax, part, subject=subject, time=time, value=value, order=list(order))
        ax.grid(axis="y", alpha=0.3)
        # n is the number of pairs drawn: the subjects the medians and the paired test use
        pairs = [line for line in ax.lines if line.get_gid() == "pair"]
        ups = sum(1 for line in pairs if line.get_ydata()[-1] > line.get_ydata()[0])
        downs = sum(1 for line in pairs if line.get_ydata()[-1] < line.get_ydata()[0])
        n_alone = sum(len(c.get_offsets()) for c in ax.collections if c.get_gid() == "unpaired")
        p = (pvalues or {}).get(name)
        extra = f"; {n_alone} unpaired" if n_alone else ""
        ax.set_title(f"{name}\nP = {format_p(p)}, n = {len(pairs)} pairs\n"
                     f"{ups} up, {downs} down{extra}", fontsize=9.5)
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


def pca_coordinates(
    values: np.ndarray, *, ntop: int = 500
) -> tuple[np.ndarray, np.ndarray]:
    """Principal components of samples as DESeq2's ``plotPCA`` computes them.

    The ``ntop`` genes of largest variance over the samples are kept (ties in R's ``order``
    order: first gene first), centred per gene, not scaled (``prcomp(t(assay[select, ]))``).

    Parameters
    ----------
    values
        Samples x genes, e.g. the VST layer of an AnnData.
    ntop
        Number of most variable genes used.

    Returns
    -------
    scores : numpy.ndarray
        Samples x components (at most ``min(samples, genes)`` columns); each component's sign
        is fixed so that its largest-magnitude gene loading is positive.
    percent_var : numpy.ndarray
        Each component's share of the total variance of the kept genes (``sdev^2 / sum``).

    Raises
    ------
    ValueError
        Fewer than two samples, no genes, non-finite values or ``ntop < 2``.

    Examples
    --------
    >>> import numpy as np
    >>> rng = np.random.default_rng(0)
    >>> x = rng.normal(size=(6, 40)); x[:3, :5] += 4.0  # three samples differ in five genes
    >>> scores, share = pca_coordinates(x, ntop=10)
    >>> bool(abs(scores[:3, 0].mean() - scores[3:, 0].mean()) > 3), bool(share[0] > 0.5)
    (True, True)
    """
    x = np.asarray(values, dtype=np.float64)
    if x.ndim != 2 or x.shape[0] < 2 or x.shape[1] < 1:
        raise ValueError(f"values must be samples x genes with two samples or more, got {x.shape}")
    if not np.isfinite(x).all():
        raise ValueError("values contain NaN or infinite values")
    if ntop < 2:
        raise ValueError(f"ntop must be at least 2, got {ntop}")
    variance = x.var(axis=0, ddof=1)
    keep = np.argsort(-variance, kind="stable")[: min(ntop, x.shape[1])]
    centred = x[:, keep] - x[:, keep].mean(axis=0)
    u, sdev, vt = np.linalg.svd(centred, full_matrices=False)
    signs = np.sign(vt[np.arange(len(vt)), np.argmax(np.abs(vt), axis=1)])
    signs[signs == 0] = 1.0
    scores = u * sdev * signs
    power = sdev**2
    total = power.sum()
    share = power / total if total > 0 else np.zeros_like(power)
    return scores, share


def pca_figure(
    values: np.ndarray,
    samples: pd.DataFrame,
    *,
    subject: str,
    time: str,
    order: Sequence[str],
    ntop: int = 500,
    title: str | None = None,
) -> Figure:
    """PCA of the samples (PC1 vs PC2), coloured by timepoint, each subject's samples joined.

    Parameters
    ----------
    values
        Samples x genes (the VST values), rows in the order of ``samples``.
    samples
        One row per sample with the ``subject`` and ``time`` columns.
    subject, time
        Column names.
    order
        Timepoints in order: colours, and the direction of each subject's arrow.
    ntop
        Most variable genes used (DESeq2's default 500).
    title
        Axes title.

    Returns
    -------
    matplotlib.figure.Figure
        Points per timepoint (gid ``"samples"``, labelled with the timepoint), one grey
        line per subject with samples at two or more timepoints (gid ``"subject"``).

    Examples
    --------
    >>> import numpy as np, pandas as pd
    >>> rng = np.random.default_rng(1)
    >>> sheet = pd.DataFrame({"patient": ["P1", "P1", "P2", "P2"],
    ...                       "timepoint": ["pre", "post", "pre", "post"]})
    >>> fig = pca_figure(rng.normal(size=(4, 50)), sheet, subject="patient",
    ...                  time="timepoint", order=["pre", "post"])
    >>> fig.axes[0].get_xlabel().startswith("PC1")
    True
    """
    if len(samples) != len(values):
        raise ValueError(f"{len(values)} rows of values but {len(samples)} samples")
    scores, share = pca_coordinates(values, ntop=ntop)
    if scores.shape[1] < 2:
        scores = np.column_stack([scores, np.zeros(len(scores))])
        share = np.r_[share, 0.0]
    who = samples[subject].astype(str).to_numpy()
    when = samples[time].astype(str).to_numpy()
    rank = {str(t): i for i, t in enumerate(order)}
    fig = new_figure(figsize=(6.4, 5.2))
    ax = fig.add_subplot()
    for name in dict.fromkeys(who):
        idx = np.flatnonzero(who == name)
        idx = idx[np.argsort([rank.get(when[i], len(rank)) for i in idx], kind="stable")]
        if len(idx) < 2:
            continue
        ax.plot(scores[idx, 0], scores[idx, 1], color="#9a9a9a", linewidth=0.9, zorder=1,
                gid="subject")
        ax.annotate("", xy=(scores[idx[-1], 0], scores[idx[-1], 1]),
                    xytext=(scores[idx[-2], 0], scores[idx[-2], 1]),
                    arrowprops={"arrowstyle": "-|>", "color": "#9a9a9a", "lw": 0.9,
                                "shrinkA": 0, "shrinkB": 5})
        ax.annotate(name, (scores[idx[0], 0], scores[idx[0], 1]), xytext=(3, 3),
                    textcoords="offset points", fontsize=7, color="#555555")
    levels = [str(t) for t in order] + sorted(set(when) - {str(t) for t in order})
    for k, level in enumerate(levels):
        mask = when == level
        if mask.any():
            ax.scatter(scores[mask, 0], scores[mask, 1], s=42, zorder=3, edgecolor="white",
                       linewidths=0.6, color=_TIME_COLOURS[k % len(_TIME_COLOURS)],
                       label=f"{level} ({int(mask.sum())})", gid="samples")
    n_genes = min(ntop, np.asarray(values).shape[1])
    ax.set_xlabel(f"PC1: {100 * share[0]:.0f}% variance")
    ax.set_ylabel(f"PC2: {100 * share[1]:.0f}% variance")
    ax.set_title(title or f"PCA of {len(who)} samples, top {n_genes} variable genes",
                 fontsize=10)
    ax.legend(title=time, fontsize=8, title_fontsize=8, loc="best")
    ax.grid(alpha=0.3)
    return fig


def ma_figure(
    de: pd.DataFrame,
    *,
    alpha: float,
    label: int = 10,
    title: str | None = None,
) -> Figure:
    """MA plot: each gene's log2 fold change against the log2 of its mean normalised count.

    Genes with ``padj < alpha`` are coloured (red up, blue down) and drawn on top; the
    others grey, those whose ``padj`` is NA (independent filtering) light grey. Genes with a
    mean of 0 or no fold change cannot be placed and are counted in the title.

    Parameters
    ----------
    de
        DESeq2-style table: ``baseMean``, ``log2FoldChange``, ``padj`` (index = gene).
    alpha
        Significance level for ``padj``.
    label
        Name this many of the significant genes with the smallest ``padj``.
    title
        Axes title.

    Returns
    -------
    matplotlib.figure.Figure
        Point collections with gids ``"significant"``, ``"not_significant"``, ``"padj_na"``.

    Examples
    --------
    >>> import pandas as pd
    >>> de = pd.DataFrame({"baseMean": [10.0, 200.0, 5.0], "log2FoldChange": [-2.0, 0.1, 1.5],
    ...                    "padj": [0.001, 0.8, None]}, index=["IFI27", "ACTB", "X"])
    >>> fig = ma_figure(de, alpha=0.1)
    >>> [len(c.get_offsets()) for c in fig.axes[0].collections]
    [1, 1, 1]
    """
    mean = pd.to_numeric(de["baseMean"], errors="coerce").to_numpy(float)
    lfc = pd.to_numeric(de["log2FoldChange"], errors="coerce").to_numpy(float)
    padj = pd.to_numeric(de["padj"], errors="coerce").to_numpy(float)
    placed = np.isfinite(lfc) & np.isfinite(mean) & (mean > 0)
    x = np.log2(np.where(placed, mean, 1.0))
    sig = placed & (padj < alpha)
    na = placed & np.isnan(padj)
    rest = placed & ~sig & ~na
    fig = new_figure(figsize=(6.4, 5.2))
    ax = fig.add_subplot()
    ax.scatter(x[na], lfc[na], s=4, color="#cfcfcf", linewidths=0, rasterized=True,
               label=f"padj NA ({int(na.sum()):,})", gid="padj_na")
    ax.scatter(x[rest], lfc[rest], s=4, color="#6b6b6b", linewidths=0, rasterized=True,
               label=f"not significant ({int(rest.sum()):,})", gid="not_significant")
    ax.scatter(x[sig], lfc[sig], s=10, c=np.where(lfc[sig] > 0, UP, DOWN), linewidths=0,
               rasterized=True, zorder=3,
               label=f"padj < {alpha:g} ({int((sig & (lfc > 0)).sum())} up, "
                     f"{int((sig & (lfc < 0)).sum())} down)", gid="significant")
    ax.axhline(0.0, color="black", linewidth=0.7)
    top = np.flatnonzero(sig)
    top = top[np.argsort(padj[top], kind="stable")][:label]
    for i in top:
        ax.annotate(str(de.index[i]), (x[i], lfc[i]), xytext=(3, 3), textcoords="offset points",
                    fontsize=7, gid="gene_label")
    unplaced = int((~placed).sum())
    note = f"; {unplaced:,} with mean 0 or no fold change not shown" if unplaced else ""
    ax.set_title(title or f"MA plot ({int(placed.sum()):,} genes{note})", fontsize=10)
    ax.set_xlabel("log2 mean of normalised counts")
    ax.set_ylabel("log2 fold change")
    ax.grid(alpha=0.3)
    ax.legend(loc="upper right", fontsize=8, markerscale=2)
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
