"""Work a plan needs once per strategy, not once per file: the strategy's hash is computed once
per strategy object, and compiling a strategy again for a file of the same layout gives an
equal plan whose fused encoding is reused (same counts)."""

from __future__ import annotations

import dataclasses
import hashlib
import json

import numpy as np
import pandas as pd

from gating import (
    Dimension,
    Logicle,
    RectangleGate,
    Strategy,
    apply_plan,
    compile_plan,
    strategy_hash,
)


def _strategy(source: str = "") -> Strategy:
    return Strategy(
        transforms={"lg": Logicle(t=262144.0, w=0.5, m=4.5, a=0.0)},
        gates=(RectangleGate("R", (Dimension("A", transform="lg"),), ((0.3, None),)),
               RectangleGate("S", (Dimension("B"),), ((None, 100.0),), parent="R")),
        source=source,
    )


def _recipe(strategy: Strategy) -> str:
    content = strategy.to_dict()
    content.pop("source", None)
    return hashlib.sha256(json.dumps(content, sort_keys=True, default=repr).encode()).hexdigest()


def test_strategy_hash_is_the_documented_digest_and_kept_on_the_strategy() -> None:
    strategy = _strategy("a.xml")
    first = strategy_hash(strategy)
    assert first == _recipe(strategy) == strategy_hash(strategy)
    assert strategy_hash(_strategy("elsewhere.yaml")) == first  # content, not the file name
    changed = dataclasses.replace(strategy, gates=strategy.gates[:1])  # a new object: its own
    assert strategy_hash(changed) == _recipe(changed) != first


def test_compiling_again_for_the_same_layout_gives_an_equal_plan_and_the_same_counts() -> None:
    rng = np.random.default_rng(3)
    events = pd.DataFrame({"A": rng.lognormal(6, 2, 5000), "B": rng.normal(100, 50, 5000)})
    strategy = _strategy()
    first = compile_plan(strategy, events)
    again = compile_plan(strategy, events)
    assert again is not first and again == first
    pd.testing.assert_frame_equal(apply_plan(again, events).counts, apply_plan(first, events).counts)
