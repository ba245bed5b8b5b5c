"""Gate plots (matplotlib is imported only when a plot is drawn)."""

from gating._plot._gates import plot_gate, plot_gates

__all__ = ["plot_gate", "plot_gates"]
