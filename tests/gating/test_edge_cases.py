"""Numeric edge cases of gating: the defined results documented in ``apply_plan``.

NaN and infinite values, zero and one event, events exactly on gate boundaries, degenerate
polygons, singular compensation and out-of-range transform parameters. Each membership test
runs twice, on a small sample (the serial kernels) and on the same events padded past
``SERIAL_BELOW`` (the parallel kernels), and compares both with a NumPy reference of the rule.
"""

from __future__ import annotations

import copy
import json

import numpy as np
import pandas as pd
import pytest

from engine.runtime import SERIAL_BELOW
from gating import (
    BooleanGate,
    Dimension,
    Divider,
    EllipsoidGate,
    Hyperlog,
    Linear,
    Logicle,
    Matrix,
    PlanError,
    PolygonGate,
    Quadrant,
    QuadrantGate,
    RectangleGate,
    Strategy,
    StrategyError,
    apply_plan,
    compile_plan,
    plan_from_dict,
    read_fcs,
    write_fcs,
)
from gating._transforms import Asinh

A, B = Dimension("A"), Dimension("B")
TA, TB = Dimension("A", transform="l"), Dimension("B", transform="l")
LOGICLE = Logicle(t=262144.0, w=0.5, m=4.5, a=0.0)
INF = np.inf
# every kind of awkward value, on both axes
SPECIAL = np.array(
    [[np.nan, 5], [5, np.nan], [np.nan, np.nan], [INF, 5], [-INF, 5], [5, INF], [5, -INF],
     [INF, INF], [-INF, -INF], [0, 0], [10, 10], [5, 5], [0, 5], [10, 5], [5, 0], [5, 10],
     [1e6, 5], [-1e6, 5], [5, 1e30]],
    dtype=np.float32,
)
PAD = SERIAL_BELOW + 10_000


def _sample(tmp_path, values, name, spill=None):
    values = np.asarray(values, dtype=np.float32).reshape(-1, 2)
    return read_fcs(write_fcs(tmp_path / name, values, ["A", "B"], spill=spill))


def _membership(tmp_path, strategy, values, name="s.fcs", **kw):
    sample = _sample(tmp_path, values, name)
    return apply_plan(compile_plan(strategy, sample), sample, membership=True, **kw)


def _both_paths(tmp_path, strategy, values):
    """Membership of ``values`` gated alone (serial kernels) and padded (parallel kernels)."""
    small = _membership(tmp_path, strategy, values, "small.fcs").membership
    padded = np.vstack([values, np.full((PAD, 2), 1e9, dtype=np.float32)])
    big = _membership(tmp_path, strategy, padded, "big.fcs").membership.iloc[: len(values)]
    pd.testing.assert_frame_equal(small, big.reset_index(drop=True))
    return small


def _half_open(v, lo, hi):
    """The documented rule: ``lo <= v < hi``; an open side holds its infinity; NaN never."""
    with np.errstate(invalid="ignore"):
        inside = np.ones(len(v), dtype=bool) if lo is None else v >= lo
        if hi is not None:
            inside &= v < hi
    return inside & ~np.isnan(v)


# ---- NaN and infinities ------------------------------------------------------------------------
def test_nan_and_infinities_follow_the_documented_rules_on_every_path(tmp_path):
    gates = (
        RectangleGate("Rc", (A, B), ((0.0, 10.0), (0.0, 10.0))),
        RectangleGate("Rhi", (A,), ((0.0, None),)),
        RectangleGate("Rlo", (A,), ((None, 10.0),)),
        RectangleGate("Ropen", (A, B), ((None, None), (None, None))),
        # on a strictly increasing transform: compared in raw space with an exact band
        RectangleGate("Tc", (TA,), ((0.1, 0.9),)),
        RectangleGate("Thi", (TA,), ((0.1, None),)),
        RectangleGate("Tlo", (TA,), ((None, 0.9),)),
        PolygonGate("P", (A, B), ((0, 0), (10, 0), (10, 10), (0, 10))),
        # on a transform: pre-filtered by a raw-space bounding box
        PolygonGate("PT", (TA, TB), ((0.1, 0.1), (0.9, 0.1), (0.9, 0.9), (0.1, 0.9))),
        EllipsoidGate("E", (A, B), (5.0, 5.0), ((25.0, 0.0), (0.0, 25.0)), 1.0),
        QuadrantGate(
            "Q", dividers=(Divider("dA", A, (5.0,)),),
            quadrants=(Quadrant("Qlo", (("dA", 0.0),)), Quadrant("Qhi", (("dA", 9.0),))),
        ),
        BooleanGate("NotRc", "not", (("Rc", False),)),
    )
    m = _both_paths(tmp_path, Strategy(gates=gates, transforms={"l": LOGICLE}), SPECIAL)
    x, y = SPECIAL[:, 0].astype(np.float64), SPECIAL[:, 1].astype(np.float64)
    with np.errstate(invalid="ignore"):
        tx, ty = LOGICLE.apply(x), LOGICLE.apply(y)
        finite = np.isfinite(x) & np.isfinite(y)
        square = finite & (x >= 0) & (x <= 10) & (y >= 0) & (y <= 10)  # edges inside
        t_square = finite & (tx >= 0.1) & (tx <= 0.9) & (ty >= 0.1) & (ty <= 0.9)
        ellipse = finite & (((x - 5) ** 2 + (y - 5) ** 2) / 25 <= 1)
    expected = {
        "Rc": _half_open(x, 0, 10) & _half_open(y, 0, 10),
        "Rhi": _half_open(x, 0, None),
        "Rlo": _half_open(x, None, 10),
        "Ropen": ~np.isnan(x) & ~np.isnan(y),
        "Tc": _half_open(tx, 0.1, 0.9),
        "Thi": _half_open(tx, 0.1, None),
        "Tlo": _half_open(tx, None, 0.9),
        "P": square,
        "PT": t_square,
        "E": ellipse,
        "Qlo": _half_open(x, None, 5.0),
        "Qhi": _half_open(x, 5.0, None),
        "NotRc": ~(_half_open(x, 0, 10) & _half_open(y, 0, 10)),
    }
    for gate, want in expected.items():
        assert m[gate].tolist() == want.tolist(), gate
    # the rules spelled out on single events
    nan_row, pos_inf, neg_inf = 0, 3, 4
    assert not m.iloc[nan_row][["Rc", "Rhi", "Rlo", "Ropen", "P", "E", "Qlo", "Qhi"]].any()
    assert m.iloc[nan_row]["NotRc"]  # a Boolean NOT holds what its operand does not
    assert m.iloc[pos_inf]["Rhi"] and not m.iloc[pos_inf]["Rlo"] and m.iloc[pos_inf]["Qhi"]
    assert m.iloc[neg_inf]["Rlo"] and not m.iloc[neg_inf]["Rhi"] and m.iloc[neg_inf]["Qlo"]
    assert not m.iloc[[pos_inf, neg_inf]][["Rc", "P", "E"]].to_numpy().any()


def test_nan_from_compensation_and_ratio_of_infinities_is_in_no_gate(tmp_path):
    # inf - inf inside the compensation sum is NaN: the event then lies in no gate
    spill = pd.DataFrame([[1.0, 0.5], [0.5, 1.0]], index=["A", "B"], columns=["A", "B"])
    values = np.array([[INF, INF], [1.0, 2.0]], dtype=np.float32)
    sample = read_fcs(write_fcs(tmp_path / "c.fcs", values, ["A", "B"], spill=spill))
    gate = RectangleGate("R", (Dimension("A", "FCS"),), ((None, None),))
    m = apply_plan(compile_plan(Strategy(gates=(gate,)), sample), sample, membership=True).membership
    with np.errstate(invalid="ignore"):
        comp = values.astype(np.float64) @ np.linalg.inv(spill.to_numpy())
    assert np.isnan(comp[0, 0]) and m["R"].tolist() == [False, True]


# ---- zero and one event --------------------------------------------------------------------------
STRATEGY = Strategy(
    gates=(
        RectangleGate("R", (A, B), ((0.0, 10.0), (0.0, 10.0))),
        PolygonGate("P", (A, B), ((0, 0), (10, 0), (10, 10), (0, 10)), parent="R"),
        EllipsoidGate("E", (A, B), (5.0, 5.0), ((25.0, 0.0), (0.0, 25.0)), 1.0),
        QuadrantGate(
            "Q", dividers=(Divider("dA", A, (5.0,)),),
            quadrants=(Quadrant("Qlo", (("dA", 0.0),)), Quadrant("Qhi", (("dA", 9.0),))),
        ),
        BooleanGate("N", "not", (("R", False),)),
        BooleanGate("X", "and", (("P", False), ("E", True)), parent="R"),
    )
)


def test_zero_events(tmp_path):
    result = _membership(tmp_path, STRATEGY, np.zeros((0, 2)), mfi=["A"])
    counts = result.counts.set_index("id")
    assert result.n_events == 0 and (counts["count"] == 0).all() and (counts["parent_count"] == 0).all()
    assert counts["percent_of_parent"].isna().all() and counts["percent_of_total"].isna().all()
    assert result.membership.shape == (0, 7) and result.membership.dtypes.eq(bool).all()
    assert result.mfi["median"].isna().all() and len(result.mfi) == 7


def test_one_event(tmp_path):
    result = _membership(tmp_path, STRATEGY, [[5.0, 5.0]], mfi=["A"])
    counts = result.counts.set_index("id")["count"].to_dict()
    assert counts == {"R": 1, "P": 1, "E": 1, "Qlo": 0, "Qhi": 1, "N": 0, "X": 0}
    pct = result.counts.set_index("id")["percent_of_parent"]
    assert pct["R"] == 100.0 and pct["Qlo"] == 0.0
    medians = result.mfi.set_index("population")["median"]
    assert medians["/R"] == 5.0 and np.isnan(medians["/Qlo"])  # empty population: NaN


def test_child_of_an_empty_population(tmp_path):
    strategy = Strategy(gates=(
        RectangleGate("R", (A,), ((100.0, None),)),
        RectangleGate("C", (A,), ((None, None),), parent="R"),
    ))
    result = _membership(tmp_path, strategy, [[1.0, 1.0], [2.0, 2.0]], mfi=["A"])
    counts = result.counts.set_index("id")
    assert counts.loc["R", "percent_of_parent"] == 0.0 and counts.loc["C", "count"] == 0
    assert np.isnan(counts.loc["C", "percent_of_parent"]) and counts.loc["C", "percent_of_total"] == 0.0
    assert result.mfi["median"].isna().all()


# ---- boundaries ----------------------------------------------------------------------------------
@pytest.mark.parametrize("pad", [0, PAD])
def test_every_event_on_a_gate_boundary(tmp_path, pad):
    # rectangle: min edge in, max edge out; polygon: edges and vertices in; ellipsoid:
    # the boundary (distance exactly distanceSquare) in; quadrant: a split value belongs above
    on_min = [[0.0, 3.0], [3.0, 0.0], [0.0, 0.0]]
    on_max = [[10.0, 3.0], [3.0, 10.0], [10.0, 10.0]]
    ellipse_edge = [[0.0, 5.0], [10.0, 5.0], [5.0, 0.0], [5.0, 10.0]]
    values = np.array(on_min + on_max + ellipse_edge, dtype=np.float32)
    values = np.tile(values, (max(1, pad // len(values)), 1))
    m = _membership(tmp_path, STRATEGY, values).membership
    k = len(on_min) + len(on_max) + len(ellipse_edge)
    r = np.tile([True] * 3 + [False] * 3 + [True, False, True, False], len(values) // k)
    assert m["R"].to_numpy().tolist() == r.tolist()
    # every point lies on the square's edges: the polygon (a child of R) keeps all of R
    assert m["P"].tolist() == m["R"].tolist()
    # only the four points at distance exactly 1 lie on the ellipse; (0, 3): (25 + 4) / 25 > 1
    ellipse = np.tile([False] * 6 + [True] * 4, len(values) // k)
    assert m["E"].tolist() == ellipse.tolist()
    assert m["Qhi"].tolist() == (values[:, 0] >= 5.0).tolist()


# ---- degenerate polygons ---------------------------------------------------------------------------
def test_collinear_polygon_holds_only_points_on_its_segment(tmp_path):
    pts = np.array([[0, 0], [5, 5], [10, 10], [2, 2.0001], [3, 3], [5, 0], [11, 11], [np.nan, 1]])
    gate = PolygonGate("P", (A, B), ((0, 0), (5, 5), (10, 10)))
    m = _both_paths(tmp_path, Strategy(gates=(gate,)), pts.astype(np.float32))
    assert m["P"].tolist() == [True, True, True, False, True, False, False, False]


def test_repeated_vertices_change_nothing(tmp_path):
    rng = np.random.default_rng(3)
    pts = np.vstack([rng.uniform(-2, 12, size=(400, 2)), [[0, 0], [10, 0], [10, 5], [0, 10]]])
    plain = PolygonGate("P", (A, B), ((0, 0), (10, 0), (10, 10), (0, 10)))
    repeated = PolygonGate("P2", (A, B), ((0, 0), (0, 0), (10, 0), (10, 0), (10, 10), (0, 10), (0, 10)))
    m = _both_paths(tmp_path, Strategy(gates=(plain, repeated)), pts.astype(np.float32))
    assert m["P"].tolist() == m["P2"].tolist() and 0 < m["P"].sum() < len(pts)


@pytest.mark.parametrize(
    "vertices",
    [((0, 0), (10, 10), (0, 0)), ((0, 0), (0, 0), (10, 10)), ((1, 1), (1, 1), (1, 1)), ((0, 0), (1, 1))],
)
def test_polygon_with_fewer_than_three_distinct_vertices_is_refused(vertices):
    with pytest.raises(StrategyError, match="at least 3") as err:
        Strategy(gates=(PolygonGate("P", (A, B), vertices),))
    assert err.value.gate == "P"


# ---- compensation ----------------------------------------------------------------------------------
@pytest.mark.parametrize(
    "values, match",
    [
        (((1.0, 1.0), (1.0, 1.0)), "singular"),
        (((2.0, 4.0), (1.0, 2.0)), "singular"),
        (((1e-320, 0.0), (0.0, 1.0)), "numerically singular"),  # its inverse overflows
    ],
)
def test_singular_compensation_matrix_is_a_plan_error(tmp_path, values, match):
    sample = _sample(tmp_path, [[1.0, 2.0]], "m.fcs")
    strategy = Strategy(
        gates=(RectangleGate("R", (Dimension("A", "M"),), ((0.0, None),)),),
        matrices={"M": Matrix("M", ("A", "B"), ("A", "B"), values)},
    )
    with pytest.raises(PlanError, match=match) as err:
        compile_plan(strategy, sample)
    assert "compensation 'M'" in str(err.value) and "m.fcs" in str(err.value) and err.value.gate == "R"


def test_singular_file_spillover_is_a_plan_error_for_gates_and_mfis(tmp_path):
    spill = pd.DataFrame([[1.0, 1.0], [1.0, 1.0]], index=["A", "B"], columns=["A", "B"])
    sample = _sample(tmp_path, [[1.0, 2.0], [3.0, 4.0]], "f.fcs", spill=spill)
    with pytest.raises(PlanError, match="singular"):
        compile_plan(Strategy(gates=(RectangleGate("R", (Dimension("A", "FCS"),), ((0.0, None),)),)), sample)
    plan = compile_plan(Strategy(gates=(RectangleGate("R", (A,), ((0.0, None),)),)), sample)
    with pytest.raises(PlanError, match=r"f\.fcs.*MFI.*singular"):
        apply_plan(plan, sample, mfi=["A"])


@pytest.mark.parametrize("bad", [np.nan, np.inf])
def test_non_finite_matrix_is_a_strategy_error(bad):
    with pytest.raises(StrategyError, match="not finite"):
        Strategy(
            gates=(RectangleGate("R", (Dimension("A", "M"),), ((0.0, None),)),),
            matrices={"M": Matrix("M", ("A", "B"), ("A", "B"), ((1.0, bad), (0.0, 1.0)))},
        )


# ---- non-finite gate geometry ------------------------------------------------------------------------
@pytest.mark.parametrize(
    "gate, match",
    [
        (RectangleGate("G", (A,), ((np.nan, 1.0),)), "NaN"),
        (EllipsoidGate("G", (A, B), (np.nan, 0.0), ((1.0, 0.0), (0.0, 1.0)), 1.0), "finite"),
        (EllipsoidGate("G", (A, B), (0.0, 0.0), ((1.0, np.inf), (0.0, 1.0)), 1.0), "finite"),
        (EllipsoidGate("G", (A, B), (0.0, 0.0), ((1.0, 0.0), (0.0, 1.0)), np.inf), "finite"),
        (QuadrantGate("G", (Divider("d", A, (np.nan,)),), (Quadrant("q", (("d", 0.0),)),)), "NaN"),
    ],
)
def test_non_finite_gate_geometry_is_a_strategy_error(gate, match):
    with pytest.raises(StrategyError, match=match):
        Strategy(gates=(gate,))


def test_infinite_rectangle_bounds_are_open_sides(tmp_path):
    values = np.array([[-INF, 0], [0, 0], [INF, 0], [np.nan, 0]], dtype=np.float32)
    gate = RectangleGate("R", (A,), ((-INF, INF),))
    m = _both_paths(tmp_path, Strategy(gates=(gate,)), values)
    # an explicit +inf maximum is still exclusive (inf < inf is false); None is the open side
    assert m["R"].tolist() == [True, True, False, False]


# ---- transform parameters ------------------------------------------------------------------------------
@pytest.mark.parametrize(
    "cls, kw, match",
    [
        (Logicle, {"t": 0.0, "w": 0.5, "m": 4.5, "a": 0.0}, "T and M must be > 0"),
        (Logicle, {"t": 262144.0, "w": 0.5, "m": -1.0, "a": 0.0}, "T and M must be > 0"),
        (Logicle, {"t": 262144.0, "w": -0.1, "m": 4.5, "a": 0.0}, "W must satisfy"),
        (Logicle, {"t": 262144.0, "w": 2.3, "m": 4.5, "a": 0.0}, "W must satisfy"),
        (Logicle, {"t": 262144.0, "w": 0.5, "m": 4.5, "a": -0.6}, "A must satisfy"),
        (Logicle, {"t": 262144.0, "w": 0.5, "m": 4.5, "a": 3.6}, "A must satisfy"),
        (Logicle, {"t": np.nan, "w": 0.5, "m": 4.5, "a": 0.0}, "must be finite"),
        (Logicle, {"t": 262144.0, "w": 0.5, "m": np.inf, "a": 0.0}, "must be finite"),
        (Logicle, {"t": 262144.0, "w": 0.5, "m": 400.0, "a": 0.0}, "at most 100 decades"),
        (Hyperlog, {"t": 262144.0, "w": 0.0, "m": 4.5, "a": 0.0}, "W must satisfy 0 <"),
        (Hyperlog, {"t": 262144.0, "w": 0.5, "m": 350.0, "a": 0.0}, "at most 100 decades"),
        (Asinh, {"t": 262144.0, "m": 400.0, "a": 0.0}, "at most 100 decades"),
        (Linear, {"t": 1e308, "a": 1e308}, "overflows"),
    ],
)
def test_transform_parameters_out_of_range_are_value_errors(cls, kw, match):
    with pytest.raises(ValueError, match=match):
        cls(**kw)


@pytest.mark.parametrize(
    "kw",
    [
        {"t": 262144.0, "w": 0.0, "m": 4.5, "a": 0.0},  # W = 0: no linear region
        {"t": 262144.0, "w": 2.25, "m": 4.5, "a": 0.0},  # W = M/2
        {"t": 262144.0, "w": 0.5, "m": 4.5, "a": -0.5},  # A = -W
        {"t": 262144.0, "w": 0.5, "m": 4.5, "a": 3.5},  # A = M - 2W
        {"t": 262144.0, "w": 0.5, "m": 100.0, "a": 0.0},  # the most decades allowed
    ],
)
def test_logicle_at_the_edges_of_its_parameter_range_is_finite_and_invertible(kw):
    t = Logicle(**kw)
    x = np.array([-3.4e38, -1e6, -10.0, 0.0, 10.0, 262144.0, 1e30, 3.4e38])  # float32 range
    y = t.apply(x)
    assert np.isfinite(y).all() and (np.diff(y) > 0).all()
    np.testing.assert_allclose(t.inverse(y), x, rtol=1e-9, atol=1e-9)
    assert t.apply(np.array([np.nan]))[0] != t.apply(np.array([np.nan]))[0]  # NaN stays NaN


# ---- plans read back from JSON: the kernels' shapes are checked first ------------------------------
def _plan_dict(tmp_path):
    sample = _sample(tmp_path, np.random.default_rng(0).uniform(0, 10, (200, 2)), "p.fcs")
    strategy = Strategy(gates=(
        RectangleGate("R", (A,), ((1.0, None),)),
        EllipsoidGate("E", (A, B), (5.0, 5.0), ((4.0, 0.0), (0.0, 4.0)), 1.0, parent="R"),
        PolygonGate("P", (A, B), ((0, 0), (5, 0), (5, 5))),
        BooleanGate("N", "not", (("P", False),)),
    ))
    plan = compile_plan(strategy, sample)
    return sample, plan, json.loads(json.dumps(plan.to_dict()))


def _edit(d, where, value):
    d = copy.deepcopy(d)
    target = d
    for key in where[:-1]:
        target = target[key]
    target[where[-1]] = value
    return d


@pytest.mark.parametrize(
    "where, value, match",
    [
        (("gates", 1, "params", "mean"), [5.0, 5.0, 5.0], "ellipsoid step"),  # would read a 3rd column
        (("gates", 1, "params", "precision"), [[1.0]], "ellipsoid step"),
        (("features", 0, "numerator", "columns"), [7], "reads columns"),
        (("features", 0, "numerator", "columns"), [-1], "reads columns"),
        (("gates", 2, "params", "vertices"), [[0, 0], [1, 1]], "polygon step"),
        (("gates", 2, "params", "vertices"), [[0, 0], [1, 1], ["x", 2]], "polygon step|ValueError"),
        (("gates", 1, "parent"), "Z", "not an earlier population"),
        (("gates", 3, "params", "operands"), [["Q", False]], "boolean step"),
        (("gates", 0, "params", "bounds"), [[1.0, None], [2.0, None]], "rectangle step"),
        (("gates", 0, "kind"), "hexagon", "hexagon step"),
        (("features",), None, "malformed plan"),
    ],
)
def test_inconsistent_plan_is_a_plan_error(tmp_path, where, value, match):
    sample, plan, d = _plan_dict(tmp_path)
    assert apply_plan(plan_from_dict(d), sample).counts["count"].tolist() == (
        apply_plan(plan, sample).counts["count"].tolist()
    )
    with pytest.raises(PlanError, match=match):
        plan_from_dict(_edit(d, where, value))


# ---- the same awkward values in every float storage layout -----------------------------------
@pytest.mark.parametrize("unaligned_loads", [True, False], ids=["word-loads", "byte-loads"])
@pytest.mark.parametrize(
    "datatype, order",
    [("F", "4,3,2,1"), ("D", "1,2,3,4,5,6,7,8"), ("D", "8,7,6,5,4,3,2,1"), ("flowio", None)],
)
def test_special_values_gate_identically_from_every_float_layout(
    tmp_path, monkeypatch, datatype, order, unaligned_loads
):
    """NaN, infinities, -0.0, subnormals and huge values stored big-endian, as float64 or at an
    unaligned offset (read without a float64 copy) give the aligned float32 file's populations,
    on the serial and the parallel kernels, with and without compensation."""
    from tests.fcs_factory import build_dataset

    monkeypatch.setattr("gating._fcs._data.UNALIGNED_LOADS", unaligned_loads)
    extra = np.array([[-0.0, 5], [1e-42, 5], [5, -1e-42], [3.4e38, 5], [-3.4e38, -3.4e38]],
                     dtype=np.float32)
    values = np.vstack([SPECIAL, extra])
    padded = np.vstack([values, np.full((PAD, 2), 1e9, dtype=np.float32)])
    spill = pd.DataFrame([[1.0, 0.25], [0.1, 1.0]], index=["A", "B"], columns=["A", "B"])
    spill_text = "2,A,B," + ",".join(repr(float(v)) for v in spill.to_numpy().ravel())
    ca, cb = Dimension("A", "FCS"), Dimension("B", "FCS", "l")
    gates = (
        RectangleGate("Rc", (A, B), ((0.0, 10.0), (0.0, 10.0))),
        RectangleGate("Thi", (TA,), ((0.1, None),)),
        PolygonGate("PT", (TA, TB), ((0.1, 0.1), (0.9, 0.1), (0.9, 0.9), (0.1, 0.9))),
        EllipsoidGate("E", (A, B), (5.0, 5.0), ((25.0, 0.0), (0.0, 25.0)), 1.0),
        RectangleGate("C", (ca, cb), ((-1.0, 20.0), (0.05, None))),
        PolygonGate("CP", (ca, B), ((0, 0), (10, 0), (10, 10), (0, 10)), parent="Thi"),
        BooleanGate("NotRc", "not", (("Rc", False),)),
    )
    strategy = Strategy(gates=gates, transforms={"l": LOGICLE})
    for rows in (values, padded):
        ref = read_fcs(write_fcs(tmp_path / "ref.fcs", rows, ["A", "B"], spill=spill))
        path = tmp_path / "layout.fcs"
        if datatype == "flowio":
            flowio = pytest.importorskip("flowio")
            with open(path, "wb") as fh:
                flowio.create_fcs(fh, rows.ravel(), ["A", "B"], metadata_dict={"spillover": spill_text})
        else:
            path.write_bytes(build_dataset(
                rows.astype(np.float64), version="FCS3.0", datatype=datatype, byteorder=order,
                names=["A", "B"], extra={"$SPILLOVER": spill_text},
            ))
        sample = read_fcs(path)
        assert sample.event_source([0, 1]).stored is not None or not sample.event_source([0, 1]).x.flags.owndata
        want = apply_plan(compile_plan(strategy, ref), ref, membership=True).membership
        got = apply_plan(compile_plan(strategy, sample), sample, membership=True).membership
        assert 0 < want["C"].sum() < len(rows) and want["CP"].any()
        pd.testing.assert_frame_equal(got, want)
