"""The fused counting pass (``apply_plan`` without membership, MFIs or statistics) against the
general evaluator (``evaluate_plan``): the same count for every population, on awkward values,
every storage layout, the serial and parallel kernels, and the official Gating-ML vectors; and
a clean fall-back to the evaluator for what the fused pass does not cover."""

from __future__ import annotations

import csv
import dataclasses

import numpy as np
import pandas as pd
import pytest

from gating import (
    BooleanGate,
    Dimension,
    Divider,
    EllipsoidGate,
    Linear,
    Log,
    Logicle,
    PolygonGate,
    Quadrant,
    QuadrantGate,
    Ratio,
    RectangleGate,
    Strategy,
    apply_plan,
    compile_plan,
    evaluate_plan,
    load_strategy,
    read_fcs,
    write_fcs,
)
from gating._evaluate._fused import fused_program
from gating._transforms import Asinh
from tests.conftest import CONFORMANCE, require_shared
from tests.gating.test_edge_cases import PAD, SPECIAL

A, B = Dimension("A"), Dimension("B")
TA, TB = Dimension("A", transform="l"), Dimension("B", transform="l")
CA, CB = Dimension("A", "FCS"), Dimension("B", "FCS", "l")
TRANSFORMS = {
    "l": Logicle(t=262144.0, w=0.5, m=4.5, a=0.0),
    "lin": Linear(t=20.0, a=2.0),
    "clamped": Logicle(t=262144.0, w=0.5, m=4.5, a=0.0, bound_min=0.2, bound_max=0.7),
    "as": Asinh(t=262144.0, m=4.5, a=0.5),
}
SPILL = pd.DataFrame([[1.0, 0.25], [0.1, 1.0]], index=["A", "B"], columns=["A", "B"])
GATES = (
    RectangleGate("Rc", (A, B), ((0.0, 10.0), (0.0, 10.0))),
    RectangleGate("Rhi", (A,), ((0.0, None),)),
    RectangleGate("Ropen", (A, B), ((None, None), (None, None))),
    RectangleGate("Tc", (TA,), ((0.1, 0.9),)),
    RectangleGate("Tlo", (TA,), ((None, 0.9),), parent="Rhi"),
    RectangleGate("Lin", (Dimension("A", transform="lin"),), ((0.2, 0.6),)),
    RectangleGate("Clamp", (Dimension("B", transform="clamped"),), ((0.2, 0.5),)),
    RectangleGate("As", (Dimension("A", transform="as"), Dimension("B", transform="as")),
                  ((0.1, 0.8), (None, 0.5))),
    PolygonGate("P", (A, B), ((0, 0), (10, 0), (10, 10), (0, 10))),
    PolygonGate("PT", (TA, TB), ((0.1, 0.1), (0.9, 0.1), (0.9, 0.9), (0.1, 0.9))),
    PolygonGate("PLin", (Dimension("A", transform="lin"), B), ((0.1, 0), (0.9, 0), (0.5, 9))),
    RectangleGate("C", (CA, CB), ((-1.0, 20.0), (0.05, None))),
    PolygonGate("CP", (CA, B), ((0, 0), (10, 0), (10, 10), (0, 10)), parent="Tc"),
    RectangleGate("CC", (CB,), ((0.115, None),), parent="CP"),
    BooleanGate("NotRc", "not", (("Rc", False),)),
    BooleanGate("Or", "or", (("P", False), ("C", True))),
    BooleanGate("AndIn", "and", (("PT", False), ("Rc", True)), parent="Tc"),
    # ratios: A / (B - 5) divides by zero at B == 5 (inf, -inf or NaN, as NumPy gives them)
    RectangleGate("Rat", (Dimension("rat", ratio=True),), ((-2.0, 3.0),)),
    RectangleGate("RatT", (Dimension("rat", ratio=True, transform="lin"),), ((None, 0.5),), parent="Rc"),
    PolygonGate("RatP", (Dimension("cr", "FCS", ratio=True), B), ((-5, 0), (5, 0), (0, 10))),
)
RATIOS = {"rat": Ratio("rat", "A", "B", a=1.0, b=0.0, c=5.0),
          "cr": Ratio("cr", "A", "B", a=2.0, b=1.0, c=5.0, bound_min=-3.0, bound_max=4.0)}
STRATEGY = Strategy(gates=GATES, transforms=TRANSFORMS, ratios=RATIOS)


def _counts_both_ways(plan, sample, **kw):
    assert fused_program(plan) is not None
    fused = apply_plan(plan, sample, **kw).counts.set_index("id")["count"].to_dict()
    ev = evaluate_plan(plan, sample, **kw)
    general = {g.population: ev.count(g.population) for g in plan.gates}
    return fused, general


def _events(rng, n):
    """Values around every gate (raw 0..10 and logicle-scale raw values), with the awkward ones."""
    small = rng.uniform(-2, 12, size=(n, 2))
    wide = rng.uniform(-500, 200_000, size=(n, 2))
    return np.vstack([SPECIAL, small, wide]).astype(np.float32)


@pytest.mark.parametrize("pad", [0, PAD], ids=["serial", "parallel"])
def test_fused_counts_equal_the_evaluator_on_awkward_values(tmp_path, pad):
    rng = np.random.default_rng(5)
    values = _events(rng, 3000 + pad // 2)
    sample = read_fcs(write_fcs(tmp_path / "s.fcs", values, ["A", "B"], spill=SPILL))
    plan = compile_plan(STRATEGY, sample)
    fused, general = _counts_both_ways(plan, sample)
    assert fused == general
    assert all(0 < fused[g] < len(values) for g in (
        "Rc", "Tc", "PT", "C", "CP", "CC", "AndIn", "Clamp", "Rat", "RatT", "RatP"))


@pytest.mark.parametrize("threads", [1, 2])
def test_fused_counts_do_not_depend_on_threads_or_chunks(tmp_path, monkeypatch, threads):
    rng = np.random.default_rng(6)
    values = _events(rng, 60_000)
    sample = read_fcs(write_fcs(tmp_path / "s.fcs", values, ["A", "B"], spill=SPILL))
    plan = compile_plan(STRATEGY, sample)
    whole, general = _counts_both_ways(plan, sample, threads=threads)
    # several chunks, the last one short: the same counts
    monkeypatch.setattr("gating._fcs._data.CHUNK_BYTES", 8 * 10_007)
    chunked = read_fcs(sample.path)
    assert chunked._chunk_events < chunked.n_events
    again, _ = _counts_both_ways(plan, chunked, threads=threads)
    assert whole == general == again


@pytest.mark.parametrize("unaligned_loads", [True, False], ids=["word-loads", "byte-loads"])
@pytest.mark.parametrize(
    "datatype, order, bits",
    [("F", "4,3,2,1", 32), ("D", "1,2,3,4,5,6,7,8", 64), ("D", "8,7,6,5,4,3,2,1", 64),
     ("I", "1,2,3,4", 16), ("I", "4,3,2,1", 32), ("I", "1,2,3,4", 24), ("flowio", None, 32)],
)
def test_fused_counts_equal_the_evaluator_in_every_layout(
    tmp_path, monkeypatch, datatype, order, bits, unaligned_loads
):
    from tests.fcs_factory import build_dataset

    monkeypatch.setattr("gating._fcs._data.UNALIGNED_LOADS", unaligned_loads)
    rng = np.random.default_rng(7)
    spill_text = "2,A,B," + ",".join(repr(float(v)) for v in SPILL.to_numpy().ravel())
    for n in (2000, PAD):
        if datatype == "I":  # integers: values masked to $PnR
            values = np.vstack([rng.integers(0, 12, size=(n, 2)), rng.integers(0, 60_000, size=(n, 2))])
        else:
            values = _events(rng, n).astype(np.float64)
        path = tmp_path / "layout.fcs"
        if datatype == "flowio":
            flowio = pytest.importorskip("flowio")
            with open(path, "wb") as fh:
                flowio.create_fcs(fh, values.astype(np.float32).ravel(), ["A", "B"],
                                  metadata_dict={"spillover": spill_text})
        else:
            extra = {"$SPILLOVER": spill_text}
            if datatype == "I":
                extra.update({"$P1R": "65536", "$P2R": "40000"})
            path.write_bytes(build_dataset(
                values.astype(np.float64), version="FCS3.0", datatype=datatype, byteorder=order,
                bits=[bits, bits], names=["A", "B"], extra=extra,
            ))
        sample = read_fcs(path)
        fused, general = _counts_both_ways(compile_plan(STRATEGY, sample), sample)
        assert fused == general, (datatype, order, bits, n)


def test_zero_one_and_empty_parents(tmp_path):
    for values in (np.zeros((0, 2)), [[5.0, 5.0]], [[1e9, 1e9], [-1e9, 5.0]]):
        sample = read_fcs(write_fcs(tmp_path / "s.fcs", np.asarray(values, dtype=np.float32).reshape(-1, 2),
                                    ["A", "B"], spill=SPILL))
        plan = compile_plan(STRATEGY, sample)
        fused, general = _counts_both_ways(plan, sample)
        assert fused == general
        counts = apply_plan(plan, sample).counts.set_index("id")
        if sample.n_events == 0:
            assert (counts["count"] == 0).all() and counts["percent_of_total"].isna().all()


@pytest.mark.parametrize(
    "gate",
    [
        EllipsoidGate("E", (A, B), (5.0, 5.0), ((25.0, 0.0), (0.0, 25.0)), 1.0),
        QuadrantGate("Q", dividers=(Divider("dA", A, (5.0,)),),
                     quadrants=(Quadrant("Qlo", (("dA", 0.0),)), Quadrant("Qhi", (("dA", 9.0),)))),
        RectangleGate("Lg", (Dimension("A", transform="log"),), ((0.5, None),)),
    ],
    ids=["ellipsoid", "quadrant", "log"],
)
def test_plans_the_fused_pass_does_not_cover_use_the_evaluator(tmp_path, gate):
    rng = np.random.default_rng(8)
    values = _events(rng, 2000)
    sample = read_fcs(write_fcs(tmp_path / "s.fcs", values, ["A", "B"], spill=SPILL))
    strategy = Strategy(gates=(*GATES, gate), transforms={**TRANSFORMS, "log": Log(t=262144.0, m=4.5)},
                        ratios=RATIOS)
    plan = compile_plan(strategy, sample)
    assert fused_program(plan) is None
    ev = evaluate_plan(plan, sample)
    counts = apply_plan(plan, sample).counts.set_index("id")["count"].to_dict()
    assert counts == {g.population: ev.count(g.population) for g in plan.gates}


def test_membership_mfi_and_stats_use_the_evaluator_with_the_same_counts(tmp_path):
    rng = np.random.default_rng(9)
    values = _events(rng, 2000)
    values = values[np.isfinite(values).all(axis=1)]
    sample = read_fcs(write_fcs(tmp_path / "s.fcs", values, ["A", "B"], spill=SPILL))
    plan = compile_plan(STRATEGY, sample)
    plain = apply_plan(plan, sample).counts
    for kw in ({"membership": True}, {"mfi": ["A"]}, {"stats": True}):
        pd.testing.assert_frame_equal(apply_plan(plan, sample, **kw).counts, plain)


SUITE = CONFORMANCE / "gatingml2"
FCS_OF_SET = {"set_1": "data1.fcs", "set_2": "data2.fcs", "set_3": "9399_1_3_NKR.fcs", "set_5": "9399_1_3_NKR.fcs"}


def _covered(plan):
    """The plan restricted to the gates the fused pass evaluates (and their ancestors)."""
    kept: list = []
    for step in plan.gates:
        refs = [r for r, _ in step.params.get("operands", [])] if step.kind == "boolean" else []
        names = {g.population for g in kept}
        if (step.parent is None or step.parent in names) and all(r in names for r in refs):
            trial = dataclasses.replace(plan, gates=(*kept, step))
            if fused_program(trial) is not None:
                kept.append(step)
    return dataclasses.replace(plan, gates=tuple(kept))


@pytest.mark.parametrize("set_name", sorted(FCS_OF_SET))
def test_fused_counts_match_the_gatingml_compliance_vectors(set_name):
    table = require_shared(SUITE / "gate_to_expected.csv")
    with open(table, newline="") as fh:
        expected = {r["gate_id_in_xml"]: r["expected_results_file"]
                    for r in csv.DictReader(fh) if r["set"] == set_name}
    strategy = load_strategy(SUITE / "xml" / f"gates{set_name.split('_')[1]}.xml")
    sample = read_fcs(SUITE / "fcs" / FCS_OF_SET[set_name])
    plan = _covered(compile_plan(strategy, sample, uncompensated="allow"))
    assert plan.gates
    fused, general = _counts_both_ways(plan, sample)
    assert fused == general
    checked = 0
    for gate, count in fused.items():
        if gate in expected:
            vector = np.loadtxt(SUITE / "expected" / set_name / expected[gate], dtype=np.int8)
            assert count == int(vector.sum()), gate
            checked += 1
    assert checked >= 5


SPILL4 = pd.DataFrame([[1.0, 0.2, 0.05], [0.1, 1.0, 0.3], [0.02, 0.15, 1.0]],
                      index=["B", "C", "D"], columns=["B", "C", "D"])


@pytest.mark.parametrize("pad", [0, PAD], ids=["serial", "parallel"])
def test_compensated_channels_of_descendants_computed_once_per_block(tmp_path, pad):
    """A population's events get every compensated channel of its descendants at once (the
    columns decoded once per block): the deep gates still count as the evaluator does."""
    rng = np.random.default_rng(10)
    n = 4000 + pad // 2
    special = np.hstack([SPECIAL, SPECIAL[::-1]])
    values = np.vstack([special, np.column_stack([
        rng.uniform(-2, 12, n), rng.uniform(-500, 200_000, (n, 3))])]).astype(np.float32)
    names = ["A", "B", "C", "D"]
    sample = read_fcs(write_fcs(tmp_path / "s.fcs", values, names, spill=SPILL4))
    cb, cc, cd = (Dimension(c, "FCS", "l") for c in ("B", "C", "D"))
    gates = (
        PolygonGate("S", (A, B), ((0, -1000), (10, -1000), (10, 150_000), (0, 150_000))),
        RectangleGate("L", (cd,), ((None, 0.7),), parent="S"),
        RectangleGate("T", (cb,), ((0.3, None),), parent="L"),
        RectangleGate("U", (cc, B), ((0.2, 0.8), (None, 120_000.0)), parent="T"),
        RectangleGate("V", (cc,), ((None, 0.6),), parent="T"),
        BooleanGate("UV", "and", (("U", False), ("V", True)), parent="T"),
    )
    plan = compile_plan(Strategy(gates=gates, transforms=TRANSFORMS), sample)
    program = fused_program(plan)
    assert program is not None
    pre_nch, pre_nwant = program.arrays[5], program.arrays[6]
    assert (pre_nch > pre_nwant).any()  # compensated B and C computed with D, on S's events
    fused, general = _counts_both_ways(plan, sample)
    assert fused == general
    assert all(0 < fused[g] < len(values) for g in ("S", "L", "T", "U", "V", "UV"))


@pytest.mark.parametrize("pad", [0, PAD], ids=["serial", "parallel"])
def test_rectangular_polygons_count_their_closed_box(tmp_path, pad):
    """A polygon that is an axis-aligned rectangle skips the crossing rule (its inside is its
    closed bounding box); a bow tie on the same corners does not."""
    from gating._evaluate._fused import _is_box

    box = ((2.0, 1.0), (8.0, 1.0), (8.0, 6.0), (2.0, 6.0))
    tie = ((2.0, 1.0), (8.0, 6.0), (8.0, 1.0), (2.0, 6.0))
    assert _is_box(np.array(box)) and _is_box(np.array(box[::-1]))
    assert not _is_box(np.array(tie)) and not _is_box(np.array([(0, 0), (1, 0), (1, 1), (0, 2)]))
    rng = np.random.default_rng(11)
    n = 3000 + pad // 2
    grid = np.array([(x, y) for x in (1.0, 2.0, 5.0, 8.0, 9.0) for y in (0.0, 1.0, 3.0, 6.0, 7.0)])
    values = np.vstack([SPECIAL, grid, rng.integers(0, 11, size=(n, 2)),
                        rng.uniform(0, 10, size=(n, 2))]).astype(np.float32)
    sample = read_fcs(write_fcs(tmp_path / "s.fcs", values, ["A", "B"], spill=SPILL))
    gates = (PolygonGate("Box", (A, B), box), PolygonGate("Tie", (A, B), tie),
             PolygonGate("Rev", (A, B), box[::-1], parent="Tie"))
    plan = compile_plan(Strategy(gates=gates), sample)
    assert list(fused_program(plan).arrays[28]) == [True, False, True]
    fused, general = _counts_both_ways(plan, sample)
    assert fused == general
    a, b = values[:, 0].astype(np.float64), values[:, 1].astype(np.float64)
    assert fused["Box"] == int(((a >= 2) & (a <= 8) & (b >= 1) & (b <= 6)).sum())
