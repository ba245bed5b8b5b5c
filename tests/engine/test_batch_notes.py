"""How a foreign strategy was read travels with the counts: ``run.json`` ``strategy_notes``."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from engine import ExecutorSpec, resolve_inputs, run_batch
from tests.conftest import SHARED, require_shared


@pytest.mark.filterwarnings("ignore:.*BEGINDATA")  # a known quirk of these real files
def test_flowjo9_display_bin_model_is_recorded_with_the_counts(tmp_path: Path) -> None:
    folder = require_shared(SHARED / "realworld" / "flowjo" / "labkey_advanced")
    fcs = folder / "fcs" / "931115-B02- Sample 01.fcs"
    run = run_batch(folder / "advanced-v9.6.4.xml", resolve_inputs([fcs]), out_dir=tmp_path / "o",
                    executor=ExecutorSpec(kind="inprocess"))
    assert run.ok
    meta = json.loads((tmp_path / "o" / "run.json").read_text())
    (notes,) = meta["strategy_notes"].values()  # one strategy: the sample's own
    assert "FlowJo 9.6.4" in notes[""]
    assert "wholly inside the ellipse" in notes["/CD4, CD8 ellipse"]  # the modelled ellipses
    assert sum("display bins" in n for n in notes.values()) > 2


def test_own_strategies_record_only_their_own_descriptions(tmp_path: Path) -> None:
    from engine.demo import make_demo_study

    demo = make_demo_study(tmp_path / "d", n_events=1000, n_genes=100)
    run = run_batch(demo.strategy, resolve_inputs([demo.fcs[0]]), out_dir=tmp_path / "o",
                    executor=ExecutorSpec(kind="inprocess"))
    assert run.ok
    (notes,) = json.loads((tmp_path / "o" / "run.json").read_text())["strategy_notes"].values()
    assert not any("display bins" in n or "FlowJo" in n for n in notes.values())
