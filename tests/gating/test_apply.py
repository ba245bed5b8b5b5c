"""compile_plan / apply_plan semantics on small files with hand-checked answers."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest

from gating import (
    Asinh,
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
    Ratio,
    RectangleGate,
    Strategy,
    StrategyError,
    apply_plan,
    compile_plan,
    plan_from_dict,
    read_fcs,
    write_fcs,
)

A, B = Dimension("A"), Dimension("B")


def _sample(tmp_path, values, names=("A", "B"), spill=None, name="s.fcs"):
    return read_fcs(write_fcs(tmp_path / name, np.asarray(values, dtype=np.float32), list(names), spill=spill))


def _members(strategy, sample, **kw):
    result = apply_plan(compile_plan(strategy, sample), sample, membership=True, **kw)
    return result, result.membership


def test_rectangle_is_half_open_and_excludes_nan(tmp_path):
    s = _sample(tmp_path, [[1, 0], [2, 0], [1.5, 0], [0.999, 0], [np.nan, 0], [5, 0]])
    strat = Strategy(gates=(RectangleGate("R", (A,), ((1.0, 2.0),)),
                            RectangleGate("Open", (A,), ((None, 1.5),))))
    result, m = _members(strat, s)
    assert m["R"].tolist() == [True, False, True, False, False, False]
    assert m["Open"].tolist() == [True, False, False, True, False, False]
    row = result.counts.set_index("id").loc["R"]
    assert row["count"] == 2 and row["parent_count"] == 6 and row["population"] == "/R"
    assert row["percent_of_total"] == pytest.approx(100 * 2 / 6)


def test_polygon_edges_vertices_and_parity(tmp_path):
    pts = [[0, 0], [10, 0], [5, 0], [5, 5], [10, 5], [0, 10], [11, 5], [5, -0.001], [2, 8], [5, 2]]
    s = _sample(tmp_path, pts)
    square = PolygonGate("Sq", (A, B), ((0, 0), (10, 0), (10, 10), (0, 10)))
    # a bow tie: two triangles meeting at (5, 5); parity decides the crossing region
    bow = PolygonGate("Bow", (A, B), ((0, 0), (10, 10), (10, 0), (0, 10)))
    _, m = _members(Strategy(gates=(square, bow)), s)
    assert m["Sq"].tolist() == [True, True, True, True, True, True, False, False, True, True]
    # bow tie: vertices, the crossing point and (2, 8) are on edges; (5, 0) and (5, 2) lie
    # between the lobes
    assert m["Bow"].tolist() == [True, True, False, True, True, True, False, False, True, False]


def test_ellipsoid_boundary_is_inside(tmp_path):
    s = _sample(tmp_path, [[2, 0], [0, 1], [2.0001, 0], [0, 0], [-2, 0]])
    gate = EllipsoidGate("E", (A, B), (0.0, 0.0), ((4.0, 0.0), (0.0, 1.0)), 1.0)
    _, m = _members(Strategy(gates=(gate,)), s)
    assert m["E"].tolist() == [True, True, False, True, True]


def test_quadrants_with_several_splits(tmp_path):
    s = _sample(tmp_path, [[0, 0], [5, 0], [10, 0], [5, 10], [np.nan, 1]])
    gate = QuadrantGate(
        "Q",
        dividers=(Divider("dA", A, (5.0, 10.0)), Divider("dB", B, (1.0,))),
        quadrants=(
            Quadrant("low", (("dA", 0.0), ("dB", 0.0))),
            Quadrant("mid", (("dA", 7.0),)),  # dB unconstrained
            Quadrant("high_up", (("dA", 99.0), ("dB", 2.0))),
        ),
    )
    result, m = _members(Strategy(gates=(gate,)), s)
    assert m["low"].tolist() == [True, False, False, False, False]
    assert m["mid"].tolist() == [False, True, False, True, False]
    assert m["high_up"].tolist() == [False, False, False, False, False]
    assert set(result.counts["id"]) == {"low", "mid", "high_up"}


def test_hierarchy_and_booleans(tmp_path):
    rng = np.random.default_rng(3)
    vals = rng.uniform(0, 10, size=(500, 2))
    s = _sample(tmp_path, vals)
    gates = (
        RectangleGate("P", (A,), ((2.0, 8.0),)),
        RectangleGate("C", (B,), ((None, 5.0),), parent="P"),
        RectangleGate("D", (B,), ((3.0, None),), parent="P"),
        BooleanGate("CandNotD", "and", (("C", False), ("D", True))),
        BooleanGate("CorD", "or", (("C", False), ("D", False)), parent="P"),
        BooleanGate("NotP", "not", (("P", False),)),
    )
    result, m = _members(Strategy(gates=gates), s)
    a = vals[:, 0].astype(np.float32).astype(float)
    b = vals[:, 1].astype(np.float32).astype(float)
    p = (a >= 2) & (a < 8)
    c = p & (b < 5)
    d = p & (b >= 3)
    assert np.array_equal(m["P"], p) and np.array_equal(m["C"], c) and np.array_equal(m["D"], d)
    assert np.array_equal(m["CandNotD"], c & ~d)
    assert np.array_equal(m["CorD"], p & (c | d))
    assert np.array_equal(m["NotP"], ~p)
    counts = result.counts.set_index("id")
    assert counts.loc["C", "parent"] == "/P" and counts.loc["C", "population"] == "/P/C"
    assert counts.loc["C", "parent_count"] == p.sum()
    assert counts.loc["C", "percent_of_parent"] == pytest.approx(100 * c.sum() / p.sum())


def test_file_spillover_compensation_matches_linear_algebra(tmp_path):
    rng = np.random.default_rng(5)
    true = rng.uniform(0, 1000, size=(300, 2))
    spill = pd.DataFrame([[1.0, 0.2], [0.1, 1.0]], index=["A", "B"], columns=["A", "B"])
    observed = (true @ spill.to_numpy()).astype(np.float32)
    s = _sample(tmp_path, np.column_stack([observed, rng.uniform(0, 1, 300)]), names=("A", "B", "FSC"), spill=spill)
    comp = observed.astype(float) @ np.linalg.inv(spill.to_numpy())
    gate = RectangleGate("R", (Dimension("A", "FCS"), Dimension("FSC", "FCS")), ((300.0, None), (None, 0.5)))
    _, m = _members(Strategy(gates=(gate,)), s)
    fsc = s.events[:, 2].astype(float)
    assert np.array_equal(m["R"], (comp[:, 0] >= 300) & (fsc < 0.5))


def test_custom_nonsquare_matrix_is_least_squares(tmp_path):
    rng = np.random.default_rng(9)
    spectrum = np.array([[1.0, 0.3, 0.1], [0.2, 1.0, 0.4]])  # 2 fluorochromes x 3 detectors
    x = rng.uniform(0, 100, size=(200, 3)).astype(np.float32)
    s = _sample(tmp_path, x, names=("D1", "D2", "D3"))
    unmixed = np.linalg.lstsq(spectrum.T, x.astype(float).T, rcond=None)[0].T
    matrix = Matrix("M", ("F1", "F2"), ("D1", "D2", "D3"), tuple(map(tuple, spectrum)))
    gate = RectangleGate("R", (Dimension("F2", "M"),), ((20.0, None),))
    _, m = _members(Strategy(gates=(gate,), matrices={"M": matrix}), s)
    inside = unmixed[:, 1] >= 20
    close = np.abs(unmixed[:, 1] - 20) < 1e-9
    assert np.array_equal(m["R"][~close], inside[~close])


def test_ratio_dimension_with_bounds_and_transform(tmp_path):
    s = _sample(tmp_path, [[10, 1], [30, 2], [100, 1], [1, 0]])
    ratio = Ratio("rat", "A", "B", a=1.0, b=0.0, c=-1.0, bound_max=20.0)  # A / (B + 1)
    strat = Strategy(
        gates=(RectangleGate("R", (Dimension("rat", ratio=True),), ((5.0, 20.0),)),
               RectangleGate("T", (Dimension("rat", ratio=True, transform="half"),), ((None, 5.0),))),
        ratios={"rat": ratio},
        transforms={"half": Linear(t=2.0, a=0.0)},
    )
    _, m = _members(strat, s)
    # ratios: 5, 10, 50 -> clamped to 20, 1; the rectangle is half-open, so 20 is outside
    assert m["R"].tolist() == [True, True, False, False]
    # transformed: ratio / 2 -> 2.5, 5, 10, 0.5
    assert m["T"].tolist() == [True, False, False, True]


def test_plan_round_trips_through_json(tmp_path):
    s = _sample(tmp_path, np.random.default_rng(1).uniform(0, 10, (100, 2)))
    strat = Strategy(
        gates=(PolygonGate("P", (A, Dimension("B", transform="lin")), ((1, 0.1), (9, 0.1), (5, 0.9))),),
        transforms={"lin": Linear(t=10.0, a=0.0)},
    )
    plan = compile_plan(strat, s)
    again = plan_from_dict(json.loads(json.dumps(plan.to_dict())))
    assert again == plan
    first = apply_plan(plan, s).counts
    pd.testing.assert_frame_equal(first, apply_plan(again, s).counts)


def test_missing_channel_and_wrong_layout_are_typed(tmp_path):
    s = _sample(tmp_path, [[1, 2]])
    with pytest.raises(PlanError, match="no channel 'Q'") as err:
        compile_plan(Strategy(gates=(RectangleGate("R", (Dimension("Q"),), ((0.0, 1.0),)),)), s)
    assert isinstance(err.value, StrategyError) and err.value.gate == "R"
    plan = compile_plan(Strategy(gates=(RectangleGate("R", (B,), ((0.0, 1.0),)),)), s)
    other = _sample(tmp_path, [[1, 2]], names=("A", "C"), name="o.fcs")
    with pytest.raises(PlanError, match="another channel layout"):
        apply_plan(plan, other)


def test_strategy_validation_is_typed():
    with pytest.raises(StrategyError, match="unknown population"):
        Strategy(gates=(RectangleGate("R", (A,), ((0.0, 1.0),), parent="nope"),))
    with pytest.raises(StrategyError, match="cycle"):
        Strategy(gates=(RectangleGate("R", (A,), ((0.0, 1.0),), parent="S"),
                        RectangleGate("S", (A,), ((0.0, 1.0),), parent="R")))
    with pytest.raises(StrategyError, match="at least 3 vertices"):
        Strategy(gates=(PolygonGate("P", (A, B), ((0, 0), (1, 1))),))


def test_mfi_medians(tmp_path):
    s = _sample(tmp_path, [[1, 10], [2, 20], [3, 30], [9, 90]])
    strat = Strategy(gates=(RectangleGate("R", (A,), ((None, 5.0),)),))
    result = apply_plan(compile_plan(strat, s), s, mfi=["B"])
    assert result.mfi.loc[0, "median"] == 20.0 and result.mfi.loc[0, "population"] == "/R"


@pytest.mark.parametrize(
    "transform",
    [
        Linear(t=262144.0, a=0.0),
        Logicle(t=262144.0, w=0.5, m=4.5, a=0.0),
        Asinh(t=262144.0, m=4.5, a=0.0),
        Hyperlog(t=262144.0, w=0.5, m=4.5, a=0.0),
        Logicle(t=262144.0, w=0.5, m=4.5, a=0.0, bound_min=0.2),
    ],
)
def test_raw_space_bounds_give_the_transformed_answer(tmp_path, transform):
    """Rectangles on monotone transforms compare raw values; the answer must not change."""
    lo_t, hi_t = 0.25, 0.7
    edges = transform.inverse(np.array([lo_t, hi_t]))
    e32 = edges.astype(np.float32)
    around = np.concatenate(
        [e32, np.nextafter(e32, np.float32(-np.inf)), np.nextafter(e32, np.float32(np.inf))]
    )
    rng = np.random.default_rng(2)
    values = np.concatenate(
        [around, rng.uniform(-2000, 262144, 20_000).astype(np.float32), [np.nan, np.inf, -np.inf]]
    ).astype(np.float32)
    s = _sample(tmp_path, np.column_stack([values, values]))
    gate = RectangleGate("R", (Dimension("A", transform="t"),), ((lo_t, hi_t),))
    _, m = _members(Strategy(gates=(gate,), transforms={"t": transform}), s)
    with np.errstate(invalid="ignore"):
        t = transform.apply(values.astype(np.float64))
        expected = (t >= lo_t) & (t < hi_t)
    assert np.array_equal(m["R"].to_numpy(), expected)


def test_compensated_dimension_named_by_marker(tmp_path):
    """Spillover matrices are labelled by $PnN; a dimension may use the $PnS marker."""
    rng = np.random.default_rng(8)
    spill = pd.DataFrame([[1.0, 0.3], [0.0, 1.0]], index=["FL1-A", "FL2-A"], columns=["FL1-A", "FL2-A"])
    true = rng.uniform(0, 1000, size=(400, 2))
    observed = (true @ spill.to_numpy()).astype(np.float32)
    channels = [{"name": "FL1-A", "marker": "CD3"}, {"name": "FL2-A", "marker": "CD8"}]
    s = read_fcs(write_fcs(tmp_path / "m.fcs", observed, channels, spill=spill))
    comp = observed.astype(float) @ np.linalg.inv(spill.to_numpy())
    by_marker = RectangleGate("M", (Dimension("CD8", "FCS"),), ((500.0, None),))
    by_name = RectangleGate("N", (Dimension("FL2-A", "FCS"),), ((500.0, None),))
    _, m = _members(Strategy(gates=(by_marker, by_name)), s)
    assert np.array_equal(m["M"], comp[:, 1] >= 500) and np.array_equal(m["M"], m["N"])


@pytest.mark.parametrize("kind", ["polygon", "ellipsoid"])
def test_bounding_box_prefilter_does_not_change_membership(tmp_path, kind):
    """Polygons/ellipsoids on monotone transforms skip events outside the raw-space box.

    The same gate on a clamped transform (clamp far outside the data, so the values are
    identical) cannot be pre-filtered; both must give the same events.
    """
    fast = Logicle(t=262144.0, w=0.5, m=4.5, a=0.0)
    slow = Logicle(t=262144.0, w=0.5, m=4.5, a=0.0, bound_min=-1e9)
    corners = np.array([0.3, 0.6])
    raw_corners = fast.inverse(corners).astype(np.float32)
    rng = np.random.default_rng(12)
    near = np.concatenate([raw_corners, np.nextafter(raw_corners, np.float32(0)), np.nextafter(raw_corners, np.float32(1e9))])
    xs = np.concatenate([rng.uniform(-500, 262144, 30_000).astype(np.float32), np.repeat(near, len(near))])
    ys = np.concatenate([rng.uniform(-500, 262144, 30_000).astype(np.float32), np.tile(near, len(near))])
    s = _sample(tmp_path, np.column_stack([xs, ys]))
    results = {}
    for name, t in (("fast", fast), ("slow", slow)):
        dims = (Dimension("A", transform=name), Dimension("B", transform=name))
        if kind == "polygon":
            gate = PolygonGate("G", dims, ((0.3, 0.3), (0.6, 0.3), (0.6, 0.6), (0.45, 0.5)))
        else:
            gate = EllipsoidGate("G", dims, (0.45, 0.45), ((0.0225, 0.0), (0.0, 0.0225)), 1.0)
        _, m = _members(Strategy(gates=(gate,), transforms={name: t}), s)
        results[name] = m["G"].to_numpy()
    assert 0 < results["fast"].sum() < len(xs) * 0.2  # the pre-filter engages
    assert np.array_equal(results["fast"], results["slow"])


def test_chunked_pass_over_the_mapping_gives_the_same_populations(tmp_path, monkeypatch):
    """Gating reads the file's mapping chunk by chunk (8 events here, pages dropped after each);
    root, child (compensated channels on the parent's rows) and polygon answers are exact."""
    monkeypatch.setattr("gating._fcs._data.CHUNK_BYTES", 1)
    rng = np.random.default_rng(11)
    true = rng.uniform(0, 1000, size=(1003, 2))
    spill = pd.DataFrame([[1.0, 0.2], [0.1, 1.0]], index=["A", "B"], columns=["A", "B"])
    observed = (true @ spill.to_numpy()).astype(np.float32)
    fsc = rng.uniform(0, 1, 1003).astype(np.float32)
    s = _sample(tmp_path, np.column_stack([observed, fsc]), names=("A", "B", "FSC"), spill=spill)
    assert len(list(s.chunk_ranges())) == 126  # many chunks, the last one short
    comp = observed.astype(float) @ np.linalg.inv(spill.to_numpy())
    ca, cb = Dimension("A", "FCS"), Dimension("B", "FCS")
    gates = (
        RectangleGate("P", (Dimension("FSC"),), ((None, 0.7),)),
        RectangleGate("C", (ca,), ((250.0, None),), parent="P"),
        PolygonGate("Q", (ca, cb), ((200.0, 100.0), (900.0, 150.0), (800.0, 900.0)), parent="C"),
    )
    _, m = _members(Strategy(gates=gates), s)
    p = fsc.astype(float) < 0.7
    c = p & (comp[:, 0] >= 250)
    assert 0 < c.sum() < p.sum() < len(p)
    assert np.array_equal(m["P"], p) and np.array_equal(m["C"], c)
    # the same strategy without chunks (one pass) gives the same polygon answer
    monkeypatch.setattr("gating._fcs._data.CHUNK_BYTES", 1 << 26)
    _, whole = _members(Strategy(gates=gates), _sample(tmp_path, s.events, names=s.names, spill=spill, name="t.fcs"))
    assert 0 < m["Q"].sum() < c.sum()
    assert np.array_equal(m["Q"], whole["Q"])


# ---- the same events in every storage layout gate identically ---------------------------
_LAYOUT_SPILL = pd.DataFrame(
    [[1.0, 0.2, 0.05], [0.1, 1.0, 0.15], [0.02, 0.3, 1.0]],
    index=["A", "B", "C"], columns=["A", "B", "C"],
)
_STORED_LAYOUTS = [  # (version, datatype, bits, byte order): read without a float64 copy
    ("FCS3.0", "F", None, "4,3,2,1"),  # big-endian float32
    ("FCS3.0", "D", None, "1,2,3,4,5,6,7,8"),
    ("FCS3.0", "D", None, "8,7,6,5,4,3,2,1"),
    ("FCS2.0", "I", [16] * 4, "4,3,2,1"),  # big-endian int16 (FCS 2.0 instruments)
    ("FCS2.0", "I", [16] * 4, "1,2"),
    ("FCS3.0", "I", [32] * 4, "1,2,3,4"),
    ("FCS3.0", "I", [32] * 4, "4,3,2,1"),
    ("FCS3.1", "I", [16, 32, 16, 64], "1,2,3,4,5,6,7,8"),  # mixed widths
    ("FCS3.0", "I", [24] * 4, "4,3,2,1"),  # 3-byte values
    ("FCS3.0", "I", [16, 32, 16, 32], "4,3,2,1"),  # mixed widths, big-endian
]
_DECODED_LAYOUTS = [  # decoded to float64 first (kept exact)
    ("FCS2.0", "I", [10, 12, 10, 11], "1,2,3,4"),  # bit-packed
    ("FCS2.0", "I", [32] * 4, "3,4,1,2"),  # middle-endian
]


def _layout_events(n=4000, seed=5):
    """Integer-valued events (exact in every layout) with a compensation-heavy structure."""
    rng = np.random.default_rng(seed)
    true = rng.gamma(2.0, 90.0, size=(n, 3))
    true[rng.random(n) < 0.4, 0] += 400
    observed = np.clip(np.rint(true @ _LAYOUT_SPILL.to_numpy()), 0, 1023)
    fsc = rng.integers(0, 1024, n)
    events = np.column_stack([fsc, observed]).astype(np.float64)
    events[::97, 1] = 1023  # range edge
    events[::89] = events[::89].round(-1)  # repeated values and gate boundaries
    return events


def _layout_strategy():
    ca, cb, cc = (Dimension(c, "FCS", "lg") for c in "ABC")
    gates = (
        PolygonGate("P", (Dimension("FSC"), Dimension("A")),
                    ((100.0, 0.0), (1000.0, 50.0), (900.0, 1023.0), (150.0, 900.0))),
        RectangleGate("C", (ca,), ((0.85, None),), parent="P"),
        RectangleGate("D", (cb, cc), ((0.76, 0.88), (None, 0.86)), parent="C"),
        RectangleGate("E", (cc,), ((0.82, None),), parent="C"),
        BooleanGate("DnotE", "and", (("D", False), ("E", True)), parent="C"),
        PolygonGate("Q", (cb, cc), ((0.7, 0.7), (0.95, 0.75), (0.85, 0.95)), parent="P"),
    )
    return Strategy(gates=gates, transforms={"lg": Logicle(t=1024.0, w=0.5, m=4.5, a=0.0)})


def _spill_text():
    s = _LAYOUT_SPILL
    return ",".join(["3", *s.columns, *(repr(float(v)) for v in s.to_numpy().ravel())])


def _build_layout(tmp_path, events, version, datatype, bits, order, name):
    from tests.fcs_factory import build_dataset

    values = events.astype(np.uint64) if datatype == "I" else events
    blob = build_dataset(
        values, version=version, datatype=datatype, bits=bits, byteorder=order,
        names=["FSC", "A", "B", "C"], ranges=[1024] * 4, extra={"$SPILLOVER": _spill_text()},
    )
    path = tmp_path / name
    path.write_bytes(blob)
    return read_fcs(path)


def _layout_memberships(sample):
    result, m = _members(_layout_strategy(), sample)
    return result.counts.set_index("id")["count"].to_dict(), {k: m[k].to_numpy() for k in m}


@pytest.mark.parametrize("unaligned_loads", [True, False], ids=["word-loads", "byte-loads"])
@pytest.mark.parametrize("chunk_bytes", [None, 1], ids=["one-chunk", "8-event-chunks"])
def test_every_storage_layout_gates_identically(tmp_path, monkeypatch, unaligned_loads, chunk_bytes):
    """Aligned float32 (our writer), unaligned float32 (flowio), big-endian floats and integer
    FCS 2.0/3.x layouts holding the same events give the same populations, event by event."""
    flowio = pytest.importorskip("flowio")
    monkeypatch.setattr("gating._fcs._data.UNALIGNED_LOADS", unaligned_loads)
    if chunk_bytes is not None:
        monkeypatch.setattr("gating._fcs._data.CHUNK_BYTES", chunk_bytes)
    events = _layout_events()
    names = ("FSC", "A", "B", "C")
    aligned = _sample(tmp_path, events, names=names, spill=_LAYOUT_SPILL, name="aligned.fcs")
    assert aligned.event_source([0, 1, 2, 3]).x.flags.aligned
    counts, ref = _layout_memberships(aligned)
    assert 0 < counts["DnotE"] < counts["D"] < counts["C"] < counts["P"] < len(events)
    assert 0 < counts["Q"] < counts["P"]

    path = tmp_path / "flowio.fcs"
    with open(path, "wb") as fh:
        flowio.create_fcs(fh, events.astype(np.float32).ravel(), list(names),
                          metadata_dict={"spillover": _spill_text()})
    samples = {"flowio": read_fcs(path)}
    assert samples["flowio"]._layout.start % 4  # DATA really starts at an unaligned offset
    for i, (version, datatype, bits, order) in enumerate(_STORED_LAYOUTS + _DECODED_LAYOUTS):
        samples[f"{version}-{datatype}-{bits}-{order}"] = _build_layout(
            tmp_path, events, version, datatype, bits, order, f"layout{i}.fcs"
        )
    for label, sample in samples.items():
        source = sample.event_source([0, 1, 2, 3])
        if label == "flowio":  # zero-copy (a view of the unaligned mapping) or bytes read as stored
            assert source.stored is not None or not source.x.flags.owndata
            assert unaligned_loads == (source.stored is None)
        elif any(label == f"{v}-{d}-{b}-{o}" for v, d, b, o in _STORED_LAYOUTS):
            assert source.stored is not None or not source.x.flags.owndata, label  # no copy
        else:
            assert source.stored is None and source.x.flags.owndata, label  # decoded first
        got_counts, got = _layout_memberships(sample)
        assert got_counts == counts, label
        for key, mask in ref.items():
            assert np.array_equal(got[key], mask), (label, key)


def test_rescaled_integer_channels_gate_as_their_preprocessed_values(tmp_path):
    """Log-amplified and gained integer channels are read through a table from the stored
    bytes; the populations equal those of a float file holding the preprocessed values."""
    from tests.fcs_factory import build_dataset

    events = _layout_events()
    blob = build_dataset(
        events.astype(np.uint64), version="FCS2.0", datatype="I", bits=[16] * 4,
        byteorder="4,3,2,1", names=["FSC", "A", "B", "C"], ranges=[1024] * 4,
        extra={"$SPILLOVER": _spill_text(), "$P2E": "4,1", "$P3G": "2.5", "$P4E": "3,0.5"},
    )
    (tmp_path / "log.fcs").write_bytes(blob)
    log = read_fcs(tmp_path / "log.fcs")
    assert log.event_source([0, 1, 2, 3]).stored is not None
    flat = _sample(tmp_path, log.columns(range(4)), names=("FSC", "A", "B", "C"),
                   spill=_LAYOUT_SPILL, name="pre.fcs")
    strategy = Strategy(
        gates=(
            RectangleGate("C", (Dimension("A", "FCS", "lg"),), ((0.45, None),)),
            RectangleGate("D", (Dimension("B", "FCS", "lg"), Dimension("C", "FCS", "lg")),
                          ((0.2, 0.7), (None, 0.8)), parent="C"),
        ),
        transforms={"lg": Logicle(t=1e4, w=0.5, m=4.5, a=0.0)},
    )
    _, a = _members(strategy, log)
    _, b = _members(strategy, flat)
    assert 0 < a["D"].sum() < a["C"].sum() < len(events)
    assert a.equals(b)
