"""Gate plots and backgating plots (matplotlib is imported only when a plot is drawn)."""

from gating._plot._axes import scale_ticks
from gating._plot._gates import plot_backgate, plot_gate, plot_gates

__all__ = ["plot_backgate", "plot_gate", "plot_gates", "scale_ticks"]
