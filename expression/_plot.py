"""Headless expression plots: size factors, mean-SD, volcano and paired pre/post scores.

Every function draws on plain :class:`matplotlib.figure.Figure` objects with the Agg canvas
(:func:`engine.runtime.new_figure`: no ``matplotlib.use()``, no pyplot state, the house DPI),
returns the figure and, given ``out=``, writes it as ``.png`` or ``.svg``. matplotlib is
imported when a plot is drawn, not when :mod:`expression` is imported. :func:`paired_slope_plot` draws into axes the caller owns, so other
figures (the study report's clinical scores and flow populations) reuse it.
"""

from __future__ import annotations

import logging
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from os import PathLike
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import pandas as pd

from engine.runtime import DPI, format_p, new_figure

if TYPE_CHECKING:  # pragma: no cover - typing only; matplotlib is imported when drawing
    from matplotlib.axes import Axes
    from matplotlib.figure import Figure

__all__ = [
    "paired_slope_plot",
    "plot_mean_sd",
    "plot_paired_scores",
    "plot_size_factors",
    "plot_volcano",
]

log = logging.getLogger(__name__)

UP, DOWN, FLAT = "#c0392b", "#1f5fa8", "#7f7f7f"  # increase, decrease, no change / NA
_STYLE = {"font.size": 9, "axes.titlesize": 10, "axes.labelsize": 9, "legend.fontsize": 8,
          "xtick.labelsize": 8, "ytick.labelsize": 8, "svg.fonttype": "none"}  # fmt: skip

PathArg = str | PathLike[str] | None
_MAX_LABELS = 150  # sample names on a size-factor plot


@contextmanager
def _style() -> Iterator[None]:
    import matplotlib as mpl

    with mpl.rc_context(_STYLE):
        yield


def _figure(
    width: float, height: float, ncols: int = 1, nrows: int = 1, **kw: Any
) -> tuple[Figure, Any]:
    fig = new_figure(figsize=(width, height))
    return fig, fig.subplots(nrows, ncols, squeeze=False, **kw)


def _check_out(out: PathArg) -> Path | None:
    if out is None:
        return None
    path = Path(out)
    if path.suffix.lower() not in (".png", ".svg"):
        raise ValueError(f"{path}: plots are written as .png or .svg, not {path.suffix!r}")
    return path


def _save(fig: Figure, path: Path | None) -> Figure:
    if path is not None:
        from engine.runtime import atomic_path

        path.parent.mkdir(parents=True, exist_ok=True)
        fmt = path.suffix.lower()
        with atomic_path(path, suffix=fmt) as tmp:  # never a truncated figure
            fig.savefig(tmp, format=fmt[1:], dpi=DPI)
        log.debug("wrote %s", path)
    return fig


# ---- size factors ----------------------------------------------------------------------------
def plot_size_factors(
    size_factors: Any, *, sort: bool = False, title: str | None = None, out: PathArg = None
) -> Figure:
    """Size factors per sample as a dot plot on a log2 axis, one labelled row per sample.

    Parameters
    ----------
    size_factors
        A Series indexed by sample id, or an AnnData with ``obs["size_factors"]`` (as written
        by :func:`expression.normalize_counts`).
    sort
        Order the samples by factor (smallest at the bottom) instead of sheet order (first
        sample at the top). Every sample is named up to 150 samples; beyond that every
        k-th one, so the names stay legible.
    title
        Figure title (default "Size factors (n samples)").
    out
        Optional ``.png``/``.svg`` path.

    Returns
    -------
    Figure

    Raises
    ------
    KeyError
        An AnnData without ``obs["size_factors"]``.
    ValueError
        No samples, or a factor that is not a positive finite number.
    """
    path = _check_out(out)
    if hasattr(size_factors, "obs") and hasattr(size_factors, "obs_names"):
        if "size_factors" not in size_factors.obs:
            raise KeyError("adata.obs has no 'size_factors' column (run normalize_counts first)")
        size_factors = size_factors.obs["size_factors"]
    if not isinstance(size_factors, pd.Series):
        raise TypeError("size_factors must be a pandas Series (indexed by sample) or an AnnData")
    values = pd.to_numeric(size_factors, errors="coerce").astype(float)
    if values.empty:
        raise ValueError("no size factors to plot")
    bad = ~(np.isfinite(values.to_numpy()) & (values.to_numpy() > 0))
    if bad.any():
        raise ValueError(f"size factor of sample {values.index[bad][0]!r} is not a positive number")
    values = values.sort_values(ascending=True) if sort else values.iloc[::-1]
    n = len(values)
    with _style():
        fig, axes = _figure(6.0, min(2.0 + 0.2 * n, 40.0))
        ax: Axes = axes[0, 0]
        y = np.arange(n)
        ax.hlines(y, 1.0, values.to_numpy(), color="#b0b0b0", linewidth=1, zorder=1)
        ax.scatter(values.to_numpy(), y, s=22, color=DOWN, zorder=2, label="size factor")
        ax.axvline(1.0, color="black", linewidth=0.8)
        ax.set_xscale("log", base=2)
        lo, hi = np.log2(values.min()), np.log2(values.max())
        ticks = 2.0 ** (np.arange(np.floor(min(lo, 0.0) * 2), np.ceil(max(hi, 0.0) * 2) + 1) / 2)
        ax.set_xticks(ticks, [f"{t:.2g}" for t in ticks])
        ax.minorticks_off()
        step = -(-n // _MAX_LABELS)  # beyond _MAX_LABELS samples, name every step-th one
        ax.set_yticks(
            y[::step], [str(s) for s in values.index[::step]], fontsize=8 if n <= 60 else 6
        )
        ax.set_ylim(-0.7, n - 0.3)
        ax.set_xlabel("size factor (log2 axis)")
        ax.grid(axis="x", color="#e5e5e5", linewidth=0.6)
        ax.set_title(title or f"Size factors ({n} samples{', sorted' if sort else ''})")
    return _save(fig, path)


# ---- mean-SD -------------------------------------------------------------------------------
def _genes_by_samples(name: str, matrix: Any) -> np.ndarray:
    if hasattr(matrix, "obs_names") and hasattr(matrix, "X"):  # AnnData: samples x genes
        matrix = matrix.X.T
    if hasattr(matrix, "toarray"):
        matrix = matrix.toarray()
    values = np.asarray(matrix, dtype=float)
    if values.ndim != 2 or values.shape[0] < 1 or values.shape[1] < 2:
        raise ValueError(
            f"matrix {name!r} must be genes x samples with at least two samples, "
            f"got shape {values.shape}"
        )
    if not np.isfinite(values).all():
        raise ValueError(f"matrix {name!r} contains NaN or infinite values")
    return values


def _running_median(x: np.ndarray, y: np.ndarray, bins: int = 50) -> tuple[np.ndarray, np.ndarray]:
    order = np.argsort(x, kind="stable")
    groups = [g for g in np.array_split(order, min(bins, x.size)) if g.size]
    return np.array([np.median(x[g]) for g in groups]), np.array([np.median(y[g]) for g in groups])


def plot_mean_sd(
    matrices: Mapping[str, Any],
    *,
    ranks: bool = True,
    title: str | None = None,
    out: PathArg = None,
) -> Figure:
    """Per-gene standard deviation against mean, one panel per transform (like vsn's meanSdPlot).

    A variance-stabilised matrix shows a flat red running median; ``log2(x + 1)`` of
    normalised counts shows the SD rising then falling with the mean at low counts.

    Parameters
    ----------
    matrices
        Panel title to a genes x samples matrix (DataFrame or 2-D array), e.g.
        ``{"log2(norm + 1)": adata.layers["log2p1"].T, "VST": adata.layers["vst"].T}``, or to
        an AnnData (samples x genes; its ``X`` is used).
    ranks
        Put the rank of each gene's mean on the x axis (spreads genes evenly, as meanSdPlot
        does); ``False`` uses the mean itself.
    title
        Figure title.
    out
        Optional ``.png``/``.svg`` path.

    Returns
    -------
    Figure
        One point per gene in each panel (rasterised in SVG) and the running median of the SD
        over 50 bins of the x axis in red.

    Raises
    ------
    ValueError
        No matrices, a matrix that is not 2-D with at least two samples, or non-finite values.
    """
    path = _check_out(out)
    if not matrices:
        raise ValueError("give at least one matrix")
    data = {str(name): _genes_by_samples(str(name), m) for name, m in matrices.items()}
    with _style():
        fig, axes = _figure(4.2 * len(data), 4.0, ncols=len(data), sharey=True)
        for ax, (name, values) in zip(axes[0], data.items(), strict=True):
            mean = values.mean(axis=1)
            sd = values.std(axis=1, ddof=1)
            x = pd.Series(mean).rank(method="first").to_numpy() if ranks else mean
            ax.scatter(x, sd, s=3, color="#4a4a4a", alpha=0.35, linewidths=0, rasterized=True)
            mx, my = _running_median(x, sd)
            ax.plot(mx, my, color=UP, linewidth=2, label="running median")
            ax.set_title(f"{name} ({values.shape[0]:,} genes)")
            ax.set_xlabel("rank of mean" if ranks else "mean")
            ax.grid(color="#ececec", linewidth=0.6)
        axes[0, 0].set_ylabel("standard deviation over samples")
        axes[0, 0].legend(loc="upper right", frameon=False)
        if title:
            fig.suptitle(title)
    return _save(fig, path)


# ---- volcano -------------------------------------------------------------------------------
def plot_volcano(
    table: Any,
    *,
    alpha: float = 0.1,
    label_top: int = 10,
    title: str | None = None,
    out: PathArg = None,
) -> Figure:
    """Volcano plot of a DE table: log2 fold change against -log10 p-value.

    Genes with ``padj < alpha`` are highlighted (red up, blue down); genes whose ``padj`` is NA
    (independent filtering, outliers) are drawn in light grey; genes without a p-value or fold
    change cannot be placed and are left out (counted in the legend). P-values of 0 are drawn
    at 1e-300. The ``label_top`` significant genes with the smallest ``padj`` are named.

    Parameters
    ----------
    table
        A :class:`expression.DEResult` or its table: index = gene id, columns
        ``log2FoldChange``, ``pvalue``, ``padj``.
    alpha
        Significance threshold on ``padj`` (DESeq2's default 0.1).
    label_top
        How many significant genes to name (0 for none).
    title
        Axes title (default "Volcano (n genes)").
    out
        Optional ``.png``/``.svg`` path.

    Returns
    -------
    Figure
        Point collections labelled ``"padj < alpha"``, ``"not significant"`` and ``"padj NA"``
        (gid ``significant``, ``not_significant``, ``padj_na``).

    Raises
    ------
    KeyError
        A required column is missing.
    ValueError
        ``alpha`` outside (0, 1), a negative ``label_top`` or p-values outside [0, 1].
    """
    path = _check_out(out)
    frame = getattr(table, "table", table)
    if not isinstance(frame, pd.DataFrame):
        raise TypeError("table must be a DEResult or a DataFrame")
    missing = [c for c in ("log2FoldChange", "pvalue", "padj") if c not in frame.columns]
    if missing:
        raise KeyError(f"DE table lacks column(s) {missing}")
    if not 0 < alpha < 1:
        raise ValueError(f"alpha must be in (0, 1), got {alpha!r}")
    if label_top < 0:
        raise ValueError("label_top must be >= 0")
    lfc = pd.to_numeric(frame["log2FoldChange"], errors="coerce").to_numpy(float)
    pval = pd.to_numeric(frame["pvalue"], errors="coerce").to_numpy(float)
    padj = pd.to_numeric(frame["padj"], errors="coerce").to_numpy(float)
    for name, p in (("pvalue", pval), ("padj", padj)):
        if ((p < 0) | (p > 1)).any():
            raise ValueError(f"column {name!r} has values outside [0, 1]")
    placed = np.isfinite(lfc) & np.isfinite(pval)
    y = -np.log10(np.clip(pval, 1e-300, 1.0))
    na = placed & np.isnan(padj)
    sig = placed & (padj < alpha)
    rest = placed & ~na & ~sig
    with _style():
        fig, axes = _figure(6.0, 5.0)
        ax: Axes = axes[0, 0]
        ax.scatter(
            lfc[na],
            y[na],
            s=5,
            color="#c8c8c8",
            linewidths=0,
            rasterized=True,
            label=f"padj NA ({int(na.sum()):,})",
            gid="padj_na",
        )
        ax.scatter(
            lfc[rest],
            y[rest],
            s=5,
            color="#555555",
            linewidths=0,
            rasterized=True,
            label=f"not significant ({int(rest.sum()):,})",
            gid="not_significant",
        )
        colours = np.where(lfc[sig] > 0, UP, DOWN)
        ax.scatter(
            lfc[sig],
            y[sig],
            s=9,
            c=colours,
            linewidths=0,
            rasterized=True,
            label=f"padj < {alpha:g} ({int(sig.sum()):,})",
            gid="significant",
        )
        ax.axvline(0, color="black", linewidth=0.6)
        ax.set_xlabel("log2 fold change")
        ax.set_ylabel("-log10 p-value")
        ax.grid(color="#ececec", linewidth=0.6)
        top = np.flatnonzero(sig)
        top = top[np.lexsort((pval[top], padj[top]))][:label_top]
        for i in top:
            ax.annotate(
                str(frame.index[i]),
                (lfc[i], y[i]),
                xytext=(3, 3),
                textcoords="offset points",
                fontsize=7,
                gid="gene_label",
            )
        unplaced = int((~placed).sum())
        note = f"; {unplaced:,} without p-value not shown" if unplaced else ""
        ax.set_title(title or f"Volcano ({int(placed.sum()):,} genes{note})")
        fig.legend(loc="outside lower center", ncols=3, frameon=False, markerscale=2)
    return _save(fig, path)


# ---- paired pre/post -----------------------------------------------------------------------
def paired_slope_plot(
    ax: Axes,
    frame: pd.DataFrame,
    *,
    subject: str,
    time: str,
    value: str,
    order: Sequence[Any] | None = None,
    unpaired: bool = True,
) -> Axes:
    """Draw paired measurements: a line joining each subject's time points, medians of the pairs.

    Only complete subjects (a finite value at every time point of ``order``) are drawn as
    pairs: a line per subject, red where its value at the last time point is above the first,
    blue where below, grey where equal, and the points on it. The black bar at each time point
    is the median over these complete subjects only, so bars and lines describe the same
    subjects (and the same n as a paired test). Subjects without a complete pair are drawn, if
    ``unpaired``, as hollow grey circles that no median includes. Rows whose value is NaN are
    left out.

    Parameters
    ----------
    ax
        Axes to draw into (the caller's figure).
    frame
        Long table, one row per subject and time point.
    subject
        Column identifying the unit measured repeatedly (e.g. ``"patient"``).
    time
        Column of time points / conditions (e.g. ``"timepoint"``).
    value
        Numeric column to plot.
    order
        Time points in x-axis order (default: order of first appearance); rows at other time
        points are left out.
    unpaired
        Draw the values of subjects without a complete pair (hollow, grey); ``False`` leaves
        them out.

    Returns
    -------
    Axes
        ``ax``; one line per complete subject with the gid ``"pair"``, their points' collection
        ``"points"``, the unpaired values' collection ``"unpaired"`` (when drawn) and the
        median bars ``"median"``.

    Raises
    ------
    KeyError
        A named column is missing.
    ValueError
        A subject with two rows at one time point, a non-numeric ``value`` or an empty ``order``.

    Examples
    --------
    >>> import pandas as pd
    >>> from engine.runtime import new_figure
    >>> from expression import paired_slope_plot
    >>> long = pd.DataFrame({"patient": ["P1", "P1", "P2", "P2", "P3"],
    ...                      "timepoint": ["pre", "post"] * 2 + ["pre"],
    ...                      "score": [3.0, 5.0, 4.0, 6.0, 9.0]})
    >>> ax = new_figure(figsize=(3, 3)).add_subplot()
    >>> ax = paired_slope_plot(ax, long, subject="patient", time="timepoint", value="score",
    ...                        order=["pre", "post"])
    >>> sum(line.get_gid() == "pair" for line in ax.lines)  # P3 has no post value
    2
    """
    missing = [c for c in (subject, time, value) if c not in frame.columns]
    if missing:
        raise KeyError(f"table lacks column(s) {missing}")
    levels = list(dict.fromkeys(frame[time])) if order is None else list(order)
    if not levels:
        raise ValueError("order has no time points")
    data = frame[frame[time].isin(levels)][[subject, time, value]]
    if data.duplicated([subject, time]).any():
        dup = data[data.duplicated([subject, time])].iloc[0]
        raise ValueError(f"subject {dup[subject]!r} has more than one row at {time} {dup[time]!r}")
    try:
        values = data[value].astype(float)
    except (TypeError, ValueError) as err:
        raise ValueError(f"column {value!r} is not numeric") from err
    data = data.assign(_x=data[time].map({lv: i for i, lv in enumerate(levels)}), _y=values)
    data = data[np.isfinite(data["_y"])].sort_values("_x", kind="stable")
    complete = data.groupby(subject, sort=False)["_x"].transform("nunique") == len(levels)
    paired, alone = data[complete], data[~complete]
    if len(levels) > 1:
        for _, rows in paired.groupby(subject, sort=False):
            first, last = rows["_y"].iloc[0], rows["_y"].iloc[-1]
            colour = UP if last > first else DOWN if last < first else FLAT
            ax.plot(rows["_x"], rows["_y"], color=colour, linewidth=1, alpha=0.75, zorder=1,
                    gid="pair")
    ax.scatter(paired["_x"], paired["_y"], s=16, color="#333333", zorder=2, gid="points")
    if unpaired and len(alone):
        ax.scatter(alone["_x"], alone["_y"], s=16, facecolors="none", edgecolors="#9a9a9a",
                   linewidths=0.9, zorder=2, gid="unpaired", label="no pair")
    medians = paired.groupby("_x")["_y"].median()
    ax.hlines(
        medians.to_numpy(),
        medians.index - 0.18,
        medians.index + 0.18,
        color="black",
        linewidth=2.5,
        zorder=3,
        gid="median",
    )
    ax.set_xticks(range(len(levels)), [str(lv) for lv in levels])
    ax.set_xlim(-0.4, len(levels) - 0.6)
    ax.set_ylabel(value)
    return ax


def plot_paired_scores(
    scores: pd.DataFrame,
    sample_sheet: pd.DataFrame,
    *,
    pair: str = "patient",
    by: str = "timepoint",
    levels: Sequence[str] = ("pre", "post"),
    tests: pd.DataFrame | None = None,
    ncols: int = 3,
    out: PathArg = None,
) -> Figure:
    """Gene-set scores before and after, one panel per set, points joined per patient.

    Parameters
    ----------
    scores
        Sets x samples, as returned by :func:`expression.geneset_scores`.
    sample_sheet
        Indexed by sample id, with the ``pair`` and ``by`` columns for every scored sample.
    pair
        Column naming the patient.
    by
        Column holding the time point.
    levels
        Time points in x-axis order.
    tests
        Optional table from :func:`expression.paired_score_tests`: each panel's title then
        gives the paired t and Wilcoxon P of its set.
    ncols
        Panels per row.
    out
        Optional ``.png``/``.svg`` path.

    Returns
    -------
    Figure

    Raises
    ------
    KeyError
        A scored sample missing from the sheet, or a missing column.
    ValueError
        No sets to plot, or ``ncols < 1``.
    """
    path = _check_out(out)
    if scores.empty:
        raise ValueError("no gene-set scores to plot")
    if ncols < 1:
        raise ValueError("ncols must be at least 1")
    samples = scores.columns.astype(str)
    absent = samples.difference(sample_sheet.index.astype(str))
    if len(absent):
        raise KeyError(f"sample {absent[0]!r} is not in the sample sheet")
    sheet = sample_sheet.set_axis(sample_sheet.index.astype(str)).loc[samples]
    by_set = tests.set_index("gene_set") if tests is not None else None
    method = scores.attrs.get("method", "score")
    sizes = scores.attrs.get("n_genes", {})
    n = len(scores)
    cols = min(ncols, n)
    rows = -(-n // cols)
    with _style():
        fig, axes = _figure(3.4 * cols, 3.3 * rows, ncols=cols, nrows=rows)
        for ax, gene_set in zip(axes.flat, scores.index, strict=False):
            long = pd.DataFrame(
                {
                    pair: sheet[pair].to_numpy(),
                    by: sheet[by].astype(str).to_numpy(),
                    method: scores.loc[gene_set].to_numpy(float),
                }
            )
            paired_slope_plot(ax, long, subject=pair, time=by, value=method, order=list(levels))
            lines = [str(gene_set)]
            if gene_set in sizes:
                lines.append(f"{sizes[gene_set]} genes")
            if by_set is not None and gene_set in by_set.index:
                row = by_set.loc[gene_set]
                lines.append(
                    f"paired t P = {format_p(float(row['t_pvalue']))}, "
                    f"Wilcoxon P = {format_p(float(row['wilcoxon_pvalue']))}"
                )
            ax.set_title("\n".join(lines), fontsize=8 if len(lines[0]) > 32 else 9)
            ax.set_ylabel(f"{method} score")
        for ax in list(axes.flat)[n:]:
            ax.set_visible(False)
    return _save(fig, path)
