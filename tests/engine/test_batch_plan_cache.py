"""Plans reused across the files of a batch: only for files with the very same layout.

The batch worker compiles a strategy once per channel layout (names, markers, spillover) and
reuses the plan for the next file with the same layout; files whose spillover or channel
order differ in the same batch (even in the same chunk) must each get their own plan and their
own counts. Also: the fused encoding, made once per plan.
"""

from __future__ import annotations

import dataclasses
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow.parquet as pq
import pytest

from engine import BatchOptions, ExecutorSpec, prepare_batch, resolve_inputs, run_batch
from engine._batch import _run, gate_chunk
from gating import (
    Dimension,
    Linear,
    Logicle,
    PolygonGate,
    RectangleGate,
    Strategy,
    apply_plan,
    compile_plan,
    read_fcs,
    write_fcs,
)

NAMES = ["FSC-A", "SSC-A", "FL1-A", "FL2-A"]


def _strategy() -> Strategy:
    scatter = (Dimension("FSC-A", transform="lin"), Dimension("SSC-A", transform="lin"))
    return Strategy(
        transforms={"lin": Linear(t=262144.0, a=0.0), "lgcl": Logicle(t=262144.0, w=0.5, m=4.5, a=0.0)},
        gates=(
            PolygonGate("Cells", scatter, ((0.1, 0.05), (0.6, 0.05), (0.6, 0.5), (0.1, 0.5)), name="Cells"),
            RectangleGate("FL1pos", (Dimension("FL1-A", compensation="FCS", transform="lgcl"),),
                          ((0.45, None),), parent="Cells", name="FL1pos"),
            RectangleGate("FL2pos", (Dimension("FL2-A", compensation="FCS", transform="lgcl"),),
                          ((0.45, None),), parent="FL1pos", name="FL2pos"),
            RectangleGate("Big", (Dimension("FSC-A"),), ((80_000.0, None),), name="Big"),
        ),
    )


def _events(seed: int, n: int = 20_000) -> np.ndarray:
    rng = np.random.default_rng(seed)
    x = np.empty((n, 4), dtype=np.float32)
    x[:, 0] = rng.normal(0.35, 0.15, n) * 262144  # FSC-A
    x[:, 1] = rng.normal(0.2, 0.12, n) * 262144  # SSC-A: another distribution than FSC-A
    x[:, 2:] = rng.lognormal(6.0, 1.8, size=(n, 2))
    return x


def _spill(cross: float) -> pd.DataFrame:
    fl = ["FL1-A", "FL2-A"]
    return pd.DataFrame([[1.0, cross], [cross / 2, 1.0]], index=fl, columns=fl)


@pytest.fixture(scope="module")
def layouts(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """One folder, in input order: two files of layout A, one with another spillover, one with
    the channels in another order, one with markers, then layout A again."""
    root = tmp_path_factory.mktemp("layouts")
    x = _events(1)
    order = [1, 0, 3, 2]  # SSC-A, FSC-A, FL2-A, FL1-A
    write_fcs(root / "a1.fcs", x, NAMES, spill=_spill(0.05))
    write_fcs(root / "a2.fcs", _events(2), NAMES, spill=_spill(0.05))
    write_fcs(root / "b_spill.fcs", x, NAMES, spill=_spill(0.6))
    write_fcs(root / "c_order.fcs", x[:, order], [NAMES[i] for i in order], spill=_spill(0.05))
    marked = [{"name": n, "marker": m} for n, m in zip(NAMES, ["", "", "CD3", "CD4"], strict=True)]
    write_fcs(root / "d_markers.fcs", x, marked, spill=_spill(0.05))
    write_fcs(root / "e_again.fcs", _events(3), NAMES, spill=_spill(0.05))
    return root


def _expected(folder: Path) -> dict[str, dict[str, int]]:
    strategy = _strategy()
    out = {}
    for path in sorted(folder.glob("*.fcs")):
        sample = read_fcs(path)
        counts = apply_plan(compile_plan(strategy, sample), sample).counts
        out[path.stem] = dict(zip(counts["id"], counts["count"], strict=True))
    return out


def _got(populations: pd.DataFrame) -> dict[str, dict[str, int]]:
    out: dict[str, dict[str, int]] = {}
    for sample, pid, count in zip(populations["sample"], populations["id"], populations["count"],
                                  strict=True):
        out.setdefault(sample, {})[pid] = int(count)
    return out


def test_each_layout_gets_its_own_plan_in_one_batch(layouts: Path, tmp_path: Path) -> None:
    expected = _expected(layouts)
    # the variants do change the counts: a plan reused across them would be caught
    assert expected["b_spill"] != expected["a1"]
    assert expected["c_order"] == expected["a1"]  # the same events, only stored in another order
    assert expected["d_markers"] == expected["a1"]
    _run._plans.clear()
    run = run_batch(_strategy(), resolve_inputs([layouts]), out_dir=tmp_path / "out",
                    executor=ExecutorSpec(kind="inprocess"))
    assert run.ok
    assert _got(run.populations) == expected
    # one plan per layout: a1, a2 and e_again share one; spillover, order and markers differ
    assert len(_run._plans) == 4


def test_one_chunk_of_mixed_layouts_gets_each_file_its_counts(layouts: Path, tmp_path: Path) -> None:
    """Every file in one task (as a worker gates a chunk), layouts interleaved."""
    tasks, texts = prepare_batch(_strategy(), resolve_inputs([layouts]), out_dir=tmp_path,
                                 options=BatchOptions())
    chunk = tuple(dataclasses.replace(t, strategy=texts[t.strategy_hash]) for t in tasks)
    (tmp_path / "parts").mkdir()
    _run._plans.clear()
    outcomes = gate_chunk(chunk)
    assert [o.error for o in outcomes] == [None] * len(chunk)
    (part,) = (tmp_path / "parts").glob("chunk-*.parquet")
    assert _got(pq.read_table(part).to_pandas()) == _expected(layouts)
    assert len(_run._plans) == 4


def test_a_plan_that_resolved_names_is_not_reused(tmp_path: Path) -> None:
    """A plan whose channel names were resolved by a rule (here: case) logs it per file, so
    it is compiled per file and never kept."""
    x = _events(4)
    for k in range(2):
        spill = _spill(0.05).rename(index=str.lower, columns=str.lower)
        write_fcs(tmp_path / f"f{k}.fcs", x, [n.lower() for n in NAMES], spill=spill)
    _run._plans.clear()
    run = run_batch(_strategy(), resolve_inputs([tmp_path]), out_dir=tmp_path / "out",
                    executor=ExecutorSpec(kind="inprocess"))
    assert run.ok and not _run._plans
    sample = read_fcs(tmp_path / "f0.fcs")
    counts = apply_plan(compile_plan(_strategy(), sample), sample).counts
    assert _got(run.populations)["f0"] == dict(zip(counts["id"], counts["count"], strict=True))


def test_layout_key_separates_what_compile_plan_reads(layouts: Path) -> None:
    keys = {p.stem: _run._layout_key("s", read_fcs(p), "error") for p in sorted(layouts.glob("*.fcs"))}
    assert keys["a1"] == keys["a2"] == keys["e_again"]
    assert len({keys[k] for k in ("a1", "b_spill", "c_order", "d_markers")}) == 4
    assert _run._layout_key("s", read_fcs(layouts / "a1.fcs"), "allow") != keys["a1"]
    assert _run._layout_key("t", read_fcs(layouts / "a1.fcs"), "error") != keys["a1"]


def test_fused_encoding_is_made_once_per_plan(layouts: Path) -> None:
    from gating._evaluate import _apply

    sample = read_fcs(layouts / "a1.fcs")
    plan = compile_plan(_strategy(), sample)
    first = apply_plan(plan, sample).counts
    program = _apply._program_of(plan)
    assert program is not None and _apply._program_of(plan) is program
    pd.testing.assert_frame_equal(apply_plan(plan, sample).counts, first)
    # an equal plan, another object (compile_plan called per file): the same encoding
    other = compile_plan(_strategy(), sample)
    assert other is not plan and _apply._program_of(other) is program
    pd.testing.assert_frame_equal(apply_plan(other, sample).counts, first)
    # another spillover or channel order: another plan, its own encoding and counts
    for name in ("b_spill", "c_order"):
        moved = read_fcs(layouts / f"{name}.fcs")
        own = compile_plan(_strategy(), moved)
        assert _apply._program_of(own) is not program
        assert apply_plan(own, moved).counts["count"].tolist() == _expected_one(moved)


def _expected_one(sample: object) -> list[int]:
    """Counts of ``sample`` by the general evaluator (no fused encoding involved)."""
    from gating import evaluate_plan

    plan = compile_plan(_strategy(), sample)  # type: ignore[arg-type]
    ev = evaluate_plan(plan, sample)
    return [ev.count(g.population) for g in plan.gates]
