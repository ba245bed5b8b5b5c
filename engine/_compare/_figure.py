"""The agreement figure and the labels it shows (also used by ``phenoflow compare``)."""

from __future__ import annotations

import os
from collections.abc import Iterable
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
import pandas as pd

from engine._compare._tables import Comparison
from engine.runtime import new_figure

if TYPE_CHECKING:  # pragma: no cover - typing only; matplotlib is imported when drawing
    from matplotlib.figure import Figure

__all__ = ["format_score", "pair_labels", "plot_agreement"]


def _short(paths: Iterable[str]) -> dict[str, str]:
    """Each path's shortest trailing part (whole components) that no other path ends with."""
    parts = {p: [c for c in p.split("/") if c] for p in dict.fromkeys(paths)}
    out: dict[str, str] = {}
    for p, comps in parts.items():
        out[p] = p
        for k in range(1, len(comps) + 1):
            if sum(q[-k:] == comps[-k:] for q in parts.values()) == 1:
                out[p] = "/".join(comps[-k:])
                break
    return out


def format_score(value: float, *, digits: int = 4) -> str:
    """An F1 or Jaccard value as text that never rounds up to 1.

    Parameters
    ----------
    value
        A score in [0, 1] (or NaN).
    digits
        Decimals shown.

    Returns
    -------
    str
        ``"1"`` for exactly 1; otherwise the value truncated to ``digits`` decimals, so
        ``0.99996`` reads ``0.9999``, not ``1.0000``.
    """
    if value == 1.0:
        return "1"
    if not np.isfinite(value):
        return "nan"
    scale = 10**digits
    return f"{np.floor(value * scale) / scale:.{digits}f}"


def pair_labels(summary: pd.DataFrame) -> list[str]:
    """Short readable labels for the rows of a comparison summary.

    Parameters
    ----------
    summary
        :attr:`Comparison.summary` (``population_a`` and ``population_b`` columns).

    Returns
    -------
    list of str
        Per row, the shortest unambiguous tail of the A path (``CD8+/CXCR3+``), followed by
        ``↔`` and the B one when the two paths differ.
    """
    short_a = _short(summary["population_a"])
    short_b = _short(summary["population_b"])
    return [
        short_a[a] if a == b else f"{short_a[a]} ↔ {short_b[b]}"
        for a, b in zip(summary["population_a"], summary["population_b"], strict=True)
    ]


def plot_agreement(comparison: Comparison, *, path: str | os.PathLike[str] | None = None) -> Figure:
    """F1 per matched population: one dot per file, a bar for the mean over files.

    Parameters
    ----------
    comparison
        From :func:`compare_strategies`.
    path
        Also write the figure as PNG here.

    Returns
    -------
    matplotlib.figure.Figure
        A figure on the Agg canvas (no pyplot, no global state; :func:`engine.runtime.new_figure`).
    """
    summary, per_file = comparison.summary, comparison.per_file
    n = len(summary)
    fig = new_figure(figsize=(8.0, 1.8 + 0.3 * max(n, 1)))
    ax = fig.add_subplot()
    a, b = comparison.labels
    if n == 0:
        ax.text(
            0.5, 0.5, "no populations compared", ha="center", va="center", transform=ax.transAxes
        )
        ax.set_axis_off()
    else:
        key = ["population_a", "population_b", "match"]
        where = {k: i for i, k in enumerate(summary[key].itertuples(index=False, name=None))}
        ypos = np.array([where[k] for k in per_file[key].itertuples(index=False, name=None)], float)
        jitter = np.random.default_rng(0).uniform(-0.22, 0.22, len(ypos))
        ax.barh(
            np.arange(n), summary["f1_mean"], height=0.7, color="#c6dbef", label="mean over files",
            zorder=1,
        )
        ax.scatter(
            per_file["f1"], ypos + jitter, s=12, color="#08519c", alpha=0.7, label="one file",
            zorder=2, linewidths=0,
        )
        for i, mean in enumerate(summary["f1_mean"]):
            ax.text(1.02, i, format_score(mean, digits=3), va="center", fontsize=8)
        ax.set_yticks(np.arange(n), pair_labels(summary), fontsize=9)
        ax.set_ylim(n - 0.5, -0.5)
        ax.set_xlim(0.0, 1.1)
        ax.set_xticks(np.linspace(0.0, 1.0, 6))
        ax.grid(axis="x", color="#dddddd", zorder=0)
        ax.set_xlabel("F1 = 2|A∩B| / (|A| + |B|), per event (1 when both are empty)")
        fig.legend(loc="outside lower center", ncols=2, frameon=False, fontsize=8)
    n_files = per_file["file"].nunique()
    plural = "" if n_files == 1 else "s"
    ax.set_title(f"Agreement of {a} and {b}: F1 per population ({n_files} file{plural})")
    if path is not None:
        fig.savefig(Path(path), format="png")
    return fig
