"""The statistics layer: paired tests, subgroup summaries, correlations, FDR."""

from engine._stats._corr import correlations
from engine._stats._paired import (
    PairedTest,
    Summary,
    bh_adjust,
    paired_test,
    paired_tests,
    subgroup_summary,
)

__all__ = ["PairedTest", "Summary", "bh_adjust", "correlations", "paired_test", "paired_tests", "subgroup_summary"]
