"""Agreement of two gating strategies on the same files."""

from engine._compare._run import (
    Comparison,
    compare_strategies,
    format_score,
    pair_labels,
    parse_mapping,
    plot_agreement,
    read_mapping,
)

__all__ = ["Comparison", "compare_strategies", "format_score", "pair_labels", "parse_mapping", "plot_agreement", "read_mapping"]
