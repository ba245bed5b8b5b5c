"""A Boolean ``not`` gate with a parent is the parent's events outside its operand (it used to
count the operand itself: /A/notB == /A/B, silently)."""

from __future__ import annotations

import numpy as np
import pytest

import gating
from gating import BooleanGate, Dimension, RectangleGate, Strategy


@pytest.mark.parametrize("form", ["not", "and-complement"])
def test_not_under_a_parent_is_the_complement_within_the_parent(tmp_path, form):
    rng = np.random.default_rng(0)
    events = rng.uniform(0, 10, (5000, 2))
    sample = gating.read_fcs(gating.write_fcs(tmp_path / "s.fcs", events, ["X", "Y"]))
    negated = (BooleanGate("notB", "not", (("B", False),), parent="A") if form == "not"
               else BooleanGate("notB", "and", (("B", True), ("A", False)), parent="A"))
    strategy = Strategy(gates=(
        RectangleGate("A", (Dimension("X"),), ((None, 5.0),)),
        RectangleGate("B", (Dimension("Y"),), ((None, 3.0),), parent="A"),
        negated,
    ))
    result = gating.apply_plan(gating.compile_plan(strategy, sample), sample, membership=True)
    counts = dict(zip(result.counts["population"], result.counts["count"], strict=True))
    in_a = events[:, 0] < 5.0
    in_b = in_a & (events[:, 1] < 3.0)
    assert counts["/A"] == in_a.sum() and counts["/A/B"] == in_b.sum()
    assert counts["/A/notB"] == (in_a & ~in_b).sum()
    assert counts["/A/notB"] + counts["/A/B"] == counts["/A"]
