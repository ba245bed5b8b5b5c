"""phenoflow's YAML/JSON strategy format: the shipped preset, round trips, errors, gating."""

from __future__ import annotations

import copy
import json
import math
from pathlib import Path

import numpy as np
import pytest
import yaml

import gating
from gating._strategy import (
    FILE_SPILLOVER,
    UNCOMPENSATED,
    BooleanGate,
    Dimension,
    Divider,
    EllipsoidGate,
    Matrix,
    PolygonGate,
    Quadrant,
    QuadrantGate,
    Ratio,
    RectangleGate,
    Strategy,
    StrategyError,
)
from gating._transforms import (
    Asinh,
    FlowJoBiex,
    FlowJoLinear,
    FlowJoLog,
    Hyperlog,
    Linear,
    Log,
    Logicle,
)
from gating._yaml._api import (
    StrategyFormatError,
    preset,
    preset_path,
    presets,
    read_strategy_yaml,
    write_strategy_yaml,
)

CD3 = "/Lymphocytes/Singlets/Live/CD3+"
CD8 = f"{CD3}/CD8+"
CD4 = f"{CD3}/CD4+"


def _doc(gates: str, top: str = "") -> str:
    """A small document: raw dimensions X, Y, Z and the given gates (YAML list items)."""
    return (
        "phenoflow-strategy: 1\nname: small\n" + top
        + "transforms:\n  lin: {type: linear, T: 10, A: 0}\n"
        + "dimensions:\n  X: {transform: lin}\n  Y: {}\n  Z: {}\n"
        + "gates:\n" + gates
    )


# ---------------------------------------------------------------------------------------------
# The shipped preset
# ---------------------------------------------------------------------------------------------


def test_presets_are_listed_and_found():
    assert "study_panel" in presets()
    path = preset_path("study_panel")
    assert path.is_file() and path.name == "study_panel.yaml"
    assert preset_path("study_panel.yaml") == path
    with pytest.raises(ValueError, match="unknown preset"):
        preset_path("../_yaml")


def test_study_preset_hierarchy():
    s = preset("study_panel")
    paths = {s.path(pid) for pid in s.populations()}
    for expected in (
        "/Lymphocytes",
        "/Lymphocytes/Singlets/Live/CD3-/CD19+",
        f"{CD8}/Tc17",
        f"{CD8}/Tc1",
        f"{CD8}/Tc2",
        f"{CD8}/Tc17_classical",
        f"{CD8}/CXCR3+",
        f"{CD4}/CXCR3+",
        f"{CD4}/Th1-17",
        f"{CD8}/Naive",
        f"{CD4}/Naive",
        f"{CD4}/TEMRA",
    ):
        assert expected in paths
    # population ids are full paths, names are display names
    assert all(s.path(pid) == pid for pid in s.populations())
    assert len(paths) == 30  # 21 gates + 2 quadrant gates x 4 cells - the 2 quadrant gates
    tc17 = s.populations()[f"{CD8}/Tc17"]
    assert isinstance(tc17, BooleanGate)
    assert tc17.name == "Tc17" and tc17.parent == CD8 and tc17.op == "and"
    assert set(tc17.operands) == {
        (f"{CD8}/CCR6+", False),
        (f"{CD8}/CXCR3+", False),
        (f"{CD8}/CCR4+", True),
    }
    th1 = s.populations()[f"{CD4}/Th1"]
    assert set(th1.operands) == {
        (f"{CD4}/CXCR3+", False), (f"{CD4}/CCR6+", True), (f"{CD4}/CCR4+", True)
    }
    cd8 = s.populations()[CD8]
    assert isinstance(cd8, RectangleGate) and cd8.bounds == ((0.45, None), (None, 0.45))
    assert [d.name for d in cd8.dimensions] == ["CD8", "CD4"]
    memory = s.populations()[f"{CD8}/Naive"]
    assert isinstance(memory, QuadrantGate) and memory.name == "Memory"
    assert [d.dimension.name for d in memory.dividers] == ["CD45RA", "CCR7"]
    assert {q.name for q in memory.quadrants} == {"Naive", "CM", "EM", "TEMRA"}
    fsc = s.populations()["/Lymphocytes"].dimensions[0]
    assert fsc == Dimension("FSC-A", UNCOMPENSATED, "scatter")
    assert cd8.dimensions[0] == Dimension("CD8", FILE_SPILLOVER, "fluor")
    assert s.transforms == {
        "scatter": Linear(t=262144, a=0),
        "fluor": Logicle(t=262144, w=0.5, m=4.5, a=0),
    }
    assert s.name == "scleromyxedema-pbmc" and "Tc17" in s.notes[""]
    assert s.source == str(preset_path("study_panel"))


def test_preset_round_trip():
    s = preset("study_panel")
    text = write_strategy_yaml(s)
    assert "phenoflow-strategy: 1" in text
    assert read_strategy_yaml(text, source=s.source) == s


# ---------------------------------------------------------------------------------------------
# Every feature, round trips, JSON
# ---------------------------------------------------------------------------------------------

FULL = """
phenoflow-strategy: 1
name: everything
description: all features
compensation: lab
matrices:
  lab: {fluorochromes: [FITC, PE], detectors: [FITC-A, PE-A], values: [[1, 0.2], [0.01, 1]]}
  inv: {fluorochromes: [FITC, PE, APC], detectors: [D1, D2], values: [[1, 0, 0.5], [0, 1, 0.5]],
        inverted: true}
transforms:
  lin: {type: linear, T: 1000, A: 10, bound_min: 0}
  lg: {type: log, T: 100000, M: 5}
  as: {type: asinh, T: 262144, M: 4.5}
  lc: {type: logicle, T: 262144, W: 0.5, M: 4.5, A: 1, bound_min: -0.1, bound_max: 1.1}
  hl: {type: hyperlog, T: 262144, W: 0.5, M: 4.5, A: 0}
  fl: {type: flowjo-linear, minRange: -100, maxRange: 262144}
  fg: {type: flowjo-log, offset: 1, decades: 5}
  fb: {type: flowjo-biex, maxRange: 262144, width: -10, pos: 4.42, neg: 0, channels: 1024}
dimensions:
  FSC-A: {transform: lin, compensation: none}
  SSC-A: {transform: fl, compensation: none}
  CD3: {transform: lc, channel: FITC}
  CD4: {transform: as, channel: PE, compensation: spillover}
  PE-A: {transform: hl}
  APC: {compensation: inv, transform: lg}
  FITC-A: {transform: fg, compensation: none}
  B: {transform: fb}
  ratio34: {ratio: [FITC-A, PE-A], A: 2, B: 1, C: 0.5, bound_min: 0, transform: lin}
gates:
  - name: Cells
    description: scatter gate
    ellipse: {dims: [FSC-A, SSC-A], center: [0.3, 0.2], radii: [0.2, 0.1], angle: 30}
  - name: Round
    parent: Cells
    ellipse:
      dims: [FSC-A, SSC-A, CD3]
      center: [0.3, 0.2, 0.5]
      covariance: [[0.01, 0, 0], [0, 0.02, 0.001], [0, 0.001, 0.03]]
      distance_square: 2.5
  - name: T
    parent: Cells
    polygon: {dims: [CD3, CD4], vertices: [[0, 0], [1, 0], [1, 1], [0.5, 1.5e0]]}
  - name: Q
    parent: T
    quadrant:
      dividers: {CD4: [0.2, 0.6], PE-A: [0.5]}
      cells:
        low: {CD4: 0}
        mid plus: {CD4: 1, PE-A: +}
        high: {CD4: 2, PE-A: 0}
  - name: Box
    parent: T
    rectangle: {APC: [null, 0.5], FITC-A: [0.1, 0.9], B: [0.2, null], ratio34: [1, 2]}
  - name: Any
    parent: T
    range: {dim: CD4}
  - name: Combo
    parent: T
    boolean: "Box and (low or not 'mid plus') and not (Any and (high or Box))"
  - name: Copy
    parent: T
    boolean: Box
  - name: Neither
    parent: Cells
    boolean: not (T or Round)
"""


def test_every_feature_parses():
    s = read_strategy_yaml(FULL)
    assert s.source == "<text>" and s.notes[""] == "all features"
    assert s.notes["/Cells"] == "scatter gate"
    assert s.matrices["lab"] == Matrix("lab", ("FITC", "PE"), ("FITC-A", "PE-A"),
                                       ((1.0, 0.2), (0.01, 1.0)))
    assert s.matrices["inv"].inverted and len(s.matrices["inv"].values) == 2
    assert s.transforms == {
        "lin": Linear(t=1000, a=10, bound_min=0),
        "lg": Log(t=100000, m=5),
        "as": Asinh(t=262144, m=4.5, a=0),
        "lc": Logicle(t=262144, w=0.5, m=4.5, a=1, bound_min=-0.1, bound_max=1.1),
        "hl": Hyperlog(t=262144, w=0.5, m=4.5, a=0),
        "fl": FlowJoLinear(min_range=-100, max_range=262144),
        "fg": FlowJoLog(offset=1, decades=5),
        "fb": FlowJoBiex(max_range=262144, width=-10, positive=4.42, negative=0, channels=1024),
    }
    assert s.ratios == {"ratio34": Ratio("ratio34", "FITC-A", "PE-A", 2.0, 1.0, 0.5, 0.0, None)}
    pops = s.populations()
    box = pops["/Cells/T/Box"]
    assert box.dimensions == (
        Dimension("APC", "inv", "lg"),
        Dimension("FITC-A", UNCOMPENSATED, "fg"),
        Dimension("B", "lab", "fb"),
        Dimension("ratio34", "lab", "lin", ratio=True),
    )
    assert box.bounds == ((None, 0.5), (0.1, 0.9), (0.2, None), (1.0, 2.0))
    t = pops["/Cells/T"]
    assert t.dimensions == (Dimension("FITC", "lab", "lc"), Dimension("PE", FILE_SPILLOVER, "as"))
    assert t.vertices[-1] == (0.5, 1.5)  # YAML 1.1 reads 1.5e0 as text; accepted as a number
    assert pops["/Cells/T/Any"].bounds == ((None, None),)
    round3 = pops["/Cells/Round"]
    assert round3.distance_square == 2.5 and round3.covariance[1] == (0.0, 0.02, 0.001)


def test_ellipse_radii_and_angle_give_the_rotated_covariance():
    s = read_strategy_yaml(_doc(
        "  - name: E\n    ellipse: {dims: [Y, Z], center: [1, 2], radii: [2, 1], angle: 90}\n"
    ))
    e = s.populations()["/E"]
    assert isinstance(e, EllipsoidGate) and e.distance_square == 1.0 and e.mean == (1.0, 2.0)
    # the first radius (2) turned onto the y axis: variance 1 along x, 4 along y
    np.testing.assert_allclose(e.covariance, [[1.0, 0.0], [0.0, 4.0]], atol=1e-12)


def test_general_quadrant_cells():
    s = read_strategy_yaml(FULL)
    q = s.populations()["/Cells/T/low"]
    assert isinstance(q, QuadrantGate) and q.name == "Q" and q.parent == "/Cells/T"
    assert [d.values for d in q.dividers] == [(0.2, 0.6), (0.5,)]
    cells = {c.name: dict(c.positions) for c in q.quadrants}
    ids = [d.id for d in q.dividers]
    assert set(cells) == {"low", "mid plus", "high"}
    assert set(cells["low"]) == {ids[0]} and cells["low"][ids[0]] < 0.2
    assert 0.2 <= cells["mid plus"][ids[0]] < 0.6 and cells["mid plus"][ids[1]] >= 0.5
    assert cells["high"][ids[0]] >= 0.6 and cells["high"][ids[1]] < 0.5
    assert s.path("/Cells/T/mid plus") == "/Cells/T/mid plus"


def test_boolean_expressions_map_onto_the_model():
    s = read_strategy_yaml(FULL)
    pops = s.populations()
    t = "/Cells/T"
    # not (T or Round) -> De Morgan: one 'and' of two complements
    neither = pops["/Cells/Neither"]
    assert (neither.op, neither.operands) == ("and", (("/Cells/T", True), ("/Cells/Round", True)))
    copy_gate = pops[f"{t}/Copy"]
    assert (copy_gate.op, copy_gate.operands) == ("not", ((f"{t}/Box", True),))
    combo = pops[f"{t}/Combo"]
    assert combo.op == "and"
    terms = [ref for ref, _ in combo.operands if "[term" in ref]
    assert combo.operands[0] == (f"{t}/Box", False) and len(combo.operands) == 3
    assert all(c is False for ref, c in combo.operands if ref in terms)
    first, second = (pops[ref] for ref in terms)
    # (low or not 'mid plus')
    assert (first.op, first.operands) == ("or", ((f"{t}/low", False), (f"{t}/mid plus", True)))
    # not (Any and (high or Box)) -> not Any or (not high and not Box)
    assert second.op == "or" and second.operands[0] == (f"{t}/Any", True)
    inner = pops[second.operands[1][0]]
    assert (inner.op, inner.operands) == ("and", ((f"{t}/high", True), (f"{t}/Box", True)))
    for term in (first, second, inner):
        assert term.parent == t and term.name.startswith("Combo [term ")
        assert s.notes[term.id].endswith(f"{t}/Combo")


def test_full_round_trip_yaml_and_json(tmp_path):
    s = read_strategy_yaml(FULL, source="full")
    assert read_strategy_yaml(write_strategy_yaml(s), source="full") == s
    as_json = json.dumps(yaml.safe_load(FULL), indent=1)
    assert read_strategy_yaml(as_json, source="full") == s
    path = tmp_path / "full.json"
    path.write_text(as_json)
    from_file = read_strategy_yaml(path)
    assert from_file.source == str(path) and from_file.gates == s.gates
    yaml_path = tmp_path / "full.yml"
    yaml_path.write_text(FULL)
    assert read_strategy_yaml(str(yaml_path)).gates == s.gates


def test_foreign_strategy_writes_with_path_ids():
    x, y = Dimension("FL1", FILE_SPILLOVER, "t"), Dimension("FL2", FILE_SPILLOVER, "t")
    s = Strategy(
        gates=(
            PolygonGate("G1", (Dimension("FSC"), Dimension("SSC")),
                        ((0, 0), (5, 0), (5, 5)), name="cells"),
            RectangleGate("G2", (x,), ((1.0, None),), parent="G1", name="pos"),
            QuadrantGate("G3", (Divider("d1", x, (2.0,)), Divider("d2", y, (3.0,))),
                         (Quadrant("q1", (("d1", 7.0), ("d2", 0.0)), "x+y-"),
                          Quadrant("q2", (("d1", -7.0), ("d2", 9.0)), "x-y+")),
                         parent="G1", name="quad"),
            BooleanGate("G4", "or", (("G2", True), ("q1", False)), parent="G1", name="mix"),
            BooleanGate("G5", "not", (("G4", False),), parent="G1", name="not mix"),
            RectangleGate("G6", (Dimension("FSC"),), ((0.0, 1.0),), parent="G2", name="pos"),
        ),
        transforms={"t": Logicle(t=1000, w=0.5, m=4, a=0)},
        name="foreign",
        notes={"": "from Gating-ML", "G2": "positive"},
    )
    text = write_strategy_yaml(s)
    back = read_strategy_yaml(text)
    paths = {back.path(p): back.populations()[p] for p in back.populations()}
    assert set(paths) == {s.path(p) for p in s.populations()}
    assert paths["/cells/pos"].bounds == ((1.0, None),) and back.notes["/cells/pos"] == "positive"
    assert paths["/cells/pos/pos"].parent == "/cells/pos"  # a repeated name under another parent
    quad = paths["/cells/x+y-"]
    assert [d.values for d in quad.dividers] == [(2.0,), (3.0,)]
    cells = {q.name: [loc >= d.values[0] for (_, loc), d in zip(q.positions, quad.dividers,
                                                                strict=True)]
             for q in quad.quadrants}
    assert cells == {"x+y-": [True, False], "x-y+": [False, True]}
    assert paths["/cells/mix"].operands == (("/cells/pos", True), ("/cells/x+y-", False))
    assert paths["/cells/not mix"].op == "not"
    assert paths["/cells/not mix"].operands == (("/cells/mix", False),)
    assert back.notes[""] == "from Gating-ML" and back.transforms == s.transforms


@pytest.mark.parametrize(
    ("strategy", "match"),
    [
        (Strategy(gates=(RectangleGate("a/b", (Dimension("X"),), ((0.0, 1.0),)),)), "'/'"),
        (Strategy(gates=(RectangleGate("a", (Dimension("X"),), ((0.0, math.inf),)),)),
         "finite"),
        (Strategy(gates=(RectangleGate("a", (Dimension("X"),), ((0.0, 1.0),), name="n"),
                         RectangleGate("b", (Dimension("Y"),), ((0.0, 1.0),), name="n"))),
         "duplicate population id|same parent"),
        (Strategy(gates=(QuadrantGate("q", (Divider("d", Dimension("X"), (1.0,)),),
                                      (Quadrant("c", (("d", 2.0),), "c"),)),),
                  notes={"c": "a note on a cell"}), "belongs to no gate"),
    ],
)
def test_writer_refuses_what_the_format_cannot_express(strategy, match):
    with pytest.raises(StrategyFormatError, match=match):
        write_strategy_yaml(strategy)


# ---------------------------------------------------------------------------------------------
# Reference resolution
# ---------------------------------------------------------------------------------------------


def test_parents_by_name_or_path_in_any_order():
    s = read_strategy_yaml(_doc(
        "  - {name: C, parent: P/A, range: {dim: Z, min: 1}}\n"
        "  - {name: A, parent: P, range: {dim: Y, min: 1}}\n"
        "  - {name: A, parent: Q, range: {dim: Y, min: 2}}\n"
        "  - {name: D, parent: /Q/A, range: {dim: Z, max: 1}}\n"
        "  - {name: P, range: {dim: X, min: 0.1}}\n"
        "  - {name: Q, range: {dim: X, max: 0.1}}\n"
    ))
    pops = s.populations()
    assert pops["/P/A/C"].parent == "/P/A" and pops["/Q/A/D"].parent == "/Q/A"
    assert pops["/Q/A"].bounds == ((2.0, None),)


def test_boolean_references_prefer_siblings_then_paths():
    s = read_strategy_yaml(_doc(
        "  - {name: P, range: {dim: X, min: 0.1}}\n"
        "  - {name: Q, range: {dim: X, max: 0.1}}\n"
        "  - {name: A, parent: P, range: {dim: Y, min: 1}}\n"
        "  - {name: A, parent: Q, range: {dim: Y, min: 2}}\n"
        "  - {name: B, parent: Q, range: {dim: Z, min: 2}}\n"
        "  - {name: S, parent: P, boolean: \"A AND NOT /Q/A and Q/B\"}\n"
        "  - {name: T, boolean: \"P or Q/A OR B\"}\n"
    ))
    pops = s.populations()
    assert pops["/P/S"].operands == (("/P/A", False), ("/Q/A", True), ("/Q/B", False))
    assert pops["/T"].operands == (("/P", False), ("/Q/A", False), ("/Q/B", False))


# ---------------------------------------------------------------------------------------------
# Errors
# ---------------------------------------------------------------------------------------------

_GOOD = ("  - {name: P, range: {dim: X, min: 0.1}}\n"
         "  - {name: A, parent: P, range: {dim: Y, min: 1}}\n")

ERRORS = [
    # (document, gate index, gate name, field, message fragment)
    ("phenoflow-strategy: 2\ngates: []\n", None, "", "phenoflow-strategy", "version 2"),
    ("name: x\ngates: []\n", None, "", "", "phenoflow-strategy: 1"),
    ("phenoflow-strategy: true\ngates: []\n", None, "", "phenoflow-strategy", "version"),
    (_doc(_GOOD, "colour: red\n"), None, "", "", "unknown key 'colour'"),
    (_doc(_GOOD + "  - {name: B, parnet: P, range: {dim: Y}}\n"), 2, "B", "",
     "did you mean 'parent'"),
    (_doc(_GOOD + "  - {name: B, range: {dim: Y}, boolean: P}\n"), 2, "B", "",
     "'range' and 'boolean'"),
    (_doc(_GOOD + "  - {name: B, parent: P}\n"), 2, "B", "", "exactly one shape"),
    (_doc(_GOOD + "  - {name: B, range: {dim: W, min: 1}}\n"), 2, "B", "range.dim",
     "unknown dimension 'W'"),
    (_doc(_GOOD + "  - {name: B, range: {dim: Y, min: 1, mni: 2}}\n"), 2, "B", "range",
     "did you mean 'min'"),
    (_doc(_GOOD + "  - {name: B, parent: R, range: {dim: Y}}\n"), 2, "B", "parent",
     "'R' is not defined"),
    (_doc(_GOOD + "  - {name: A, range: {dim: Y}}\n  - {name: B, parent: A, range: {dim: Y}}\n"),
     3, "B", "parent", "ambiguous"),
    (_doc(_GOOD + "  - {name: B, parent: /A, range: {dim: Y}}\n"), 2, "B", "parent",
     "matches no population"),
    (_doc("  - {name: B, parent: C, range: {dim: Y}}\n  - {name: C, parent: B, range: {dim: Y}}\n"),
     0, "B", "parent", "cycle"),
    (_doc(_GOOD + "  - {name: B, range: {dim: Y, min: abc}}\n"), 2, "B", "range.min",
     "expected a number"),
    (_doc(_GOOD + "  - {name: B, range: {dim: Y, min: .inf}}\n"), 2, "B", "range.min",
     "finite"),
    (_doc(_GOOD + "  - {name: B, range: {dim: Y, max: .nan}}\n"), 2, "B", "range.max",
     "finite"),
    (_doc(_GOOD + "  - {name: B, range: {dim: Y, max: true}}\n"), 2, "B", "range.max",
     "expected a number"),
    (_doc(_GOOD + "  - {name: B, range: {dim: Y, min: 2, max: 1}}\n"), 2, "B", "range",
     "above max"),
    (_doc(_GOOD + "  - {name: A, parent: P, range: {dim: Z, min: 1}}\n"), 2, "A", "name",
     "same parent"),
    (_doc(_GOOD + "  - {name: a/b, range: {dim: Z}}\n"), 2, "a/b", "name", "'/'"),
    (_doc(_GOOD + "  - {name: 12, range: {dim: Z}}\n"), 2, "", "name", "quote"),
    (_doc(_GOOD + "  - {name: B, polygon: {dims: [X, Y], vertices: [[0, 0], [1, 1]]}}\n"),
     2, "B", "polygon.vertices", "at least 3"),
    (_doc(_GOOD + "  - {name: B, polygon: {dims: [X, Y], vertices: [[0, 0], [1, 1], [1]]}}\n"),
     2, "B", "polygon.vertices[2]", "expected 2 items"),
    (_doc(_GOOD + "  - name: B\n    ellipse: {dims: [X, Y], center: [0, 0], "
                  "covariance: [[1, 2], [2, 1]]}\n"), 2, "B", "ellipse.covariance",
     "positive definite"),
    (_doc(_GOOD + "  - name: B\n    quadrant: {x: X, y: Y, x_split: 1, y_split: 1, "
                  "names: {'+,0': C}}\n"), 2, "B", "quadrant.names", "'+,0'"),
    (_doc(_GOOD + "  - name: B\n    quadrant: {x: X, y: Y, x_split: 1, y_split: 1, "
                  "names: {'+,+': C, '-,-': C}}\n"), 2, "B", "quadrant.names", "'C' repeats"),
    (_doc(_GOOD + "  - name: B\n    quadrant: {dividers: {X: [2, 1]}, cells: {C: {X: 0}}}\n"),
     2, "B", "quadrant.dividers.X", "strictly increasing"),
    (_doc(_GOOD + "  - name: B\n    quadrant: {dividers: {X: [1, 2]}, cells: {C: {X: 3}}}\n"),
     2, "B", "quadrant.cells.C.X", "interval 0..2"),
    (_doc(_GOOD + "  - {name: M, quadrant: {x: X, y: Y, x_split: 1, y_split: 1, "
                  "names: {'+,+': C}}}\n  - {name: B, parent: M, range: {dim: Z}}\n"),
     3, "B", "parent", "quadrant gate"),
    (_doc(_GOOD + "  - {name: B, parent: P, boolean: 'A and'}\n"), 2, "B", "boolean",
     "at the end"),
    (_doc(_GOOD + "  - {name: B, parent: P, boolean: '(A or A'}\n"), 2, "B", "boolean",
     "missing ')'"),
    (_doc(_GOOD + "  - {name: B, parent: P, boolean: 'A A'}\n"), 2, "B", "boolean",
     "expected 'and' or 'or'"),
    (_doc(_GOOD + "  - {name: B, parent: P, boolean: 'A and \"C'}\n"), 2, "B", "boolean",
     "unbalanced quote"),
    (_doc(_GOOD + "  - {name: B, parent: P, boolean: ''}\n"), 2, "B", "boolean", "empty"),
    (_doc(_GOOD + "  - {name: B, parent: P, boolean: 'A and C'}\n"), 2, "B", "boolean",
     "'C' is not a population"),
    (_doc(_GOOD + "  - {name: C, boolean: 'D or P'}\n  - {name: D, boolean: 'C and P'}\n"),
     2, "C", "", "cycle"),
    (_doc(_GOOD + "  - {name: Q, range: {dim: X}}\n  - {name: A, parent: Q, range: {dim: X}}\n"
                  "  - {name: B, boolean: 'A and P'}\n"), 4, "B", "boolean", "ambiguous"),
    (_doc(_GOOD).replace("dimensions:", "dimensions:\n  W: {transform: log}"), None, "",
     "dimensions.W.transform", "unknown transform 'log'"),
    (_doc(_GOOD).replace("A: 0}", "A: 0, M: 3}"), None, "", "transforms.lin",
     "unknown key 'M'"),
    (_doc(_GOOD).replace("type: linear, T: 10", "type: linear, T: 0"), None, "",
     "transforms.lin", "T must be > 0"),
    (_doc(_GOOD).replace("type: linear", "type: biexp"), None, "", "transforms.lin.type",
     "unknown transform type"),
    (_doc(_GOOD).replace("Y: {}", "Y: {compensation: lab}"), None, "",
     "dimensions.Y.compensation", "unknown compensation 'lab'"),
    (_doc(_GOOD).replace("Y: {}", "Y: {A: 2}"), None, "", "dimensions.Y",
     "only for ratio"),
    (_doc(_GOOD, "matrices:\n  m: {fluorochromes: [a, b], detectors: [c, d], "
                 "values: [[1, 0]]}\n"), None, "", "matrices.m.values", "expected 2 items"),
    (_doc(_GOOD, "matrices:\n  spillover: {fluorochromes: [a], detectors: [c], "
                 "values: [[1]]}\n"), None, "", "matrices.spillover", "reserved"),
    (_doc(_GOOD).replace("Z: {}", "Z: {}\n  Z: {}"), None, "", "", "duplicate key 'Z'"),
    ("phenoflow-strategy: 1\ngates: [\n", None, "", "", "invalid YAML"),
    ('{"phenoflow-strategy": 1, "gates": [], "gates": []}', None, "", "", "duplicate key"),
    ('{"phenoflow-strategy": 1, "dimensions": {"X": {}}, "gates": '
     '[{"name": "B", "range": {"dim": "X", "min": NaN}}]}', 0, "B", "range.min", "finite"),
]


@pytest.mark.parametrize(("text", "index", "gate", "field", "fragment"), ERRORS)
def test_errors_name_file_gate_and_field(text, index, gate, field, fragment):
    with pytest.raises(StrategyFormatError) as info:
        read_strategy_yaml(text, source="panel.yaml")
    err = info.value
    assert isinstance(err, StrategyError)
    assert fragment in str(err), str(err)
    assert str(err).startswith("panel.yaml")
    assert (err.index, err.field) == (index, field), str(err)
    if gate:
        assert err.gate == gate


def test_error_from_a_file_names_it_and_copies_keep_the_fields(tmp_path):
    path = tmp_path / "bad.yaml"
    path.write_text(_doc(_GOOD + "  - {name: B, range: {dim: Y, min: x}}\n"))
    with pytest.raises(StrategyFormatError) as info:
        read_strategy_yaml(path)
    err = info.value
    assert str(err).startswith(f"{path}, gates[2] 'B', field 'range.min'")
    clone = copy.copy(err)
    assert (clone.source, clone.gate, clone.index, clone.field) == (
        str(path), "B", 2, "range.min")
    assert str(clone) == str(err)
    with pytest.raises(FileNotFoundError):
        read_strategy_yaml(tmp_path / "missing.yaml")


def test_loading_never_constructs_python_objects():
    evil = _doc(_GOOD).replace("name: small", "name: !!python/object/apply:os.system [echo]")
    with pytest.raises(StrategyFormatError, match="invalid YAML"):
        read_strategy_yaml(evil)


# ---------------------------------------------------------------------------------------------
# Gating semantics through the compiled plan
# ---------------------------------------------------------------------------------------------


def _events(tmp_path: Path, values: list[list[float]], names: tuple[str, ...]) -> gating.FCSData:
    path = tmp_path / "events.fcs"
    gating.write_fcs(path, np.asarray(values, dtype=np.float32), list(names))
    return gating.read_fcs(path)


def test_boolean_membership_matches_the_expression(tmp_path):
    combos = [[a, b, c] for a in (0, 2) for b in (0, 2) for c in (0, 2)]
    sample = _events(tmp_path, combos, ("X", "Y", "Z"))
    expressions = {
        "E1": ("a and b and not c", lambda a, b, c: a and b and not c),
        "E2": ("not (a or b) or c", lambda a, b, c: (not (a or b)) or c),
        "E3": ("a and (b or not c)", lambda a, b, c: a and (b or not c)),
        "E4": ("not (a and (b or c))", lambda a, b, c: not (a and (b or c))),
        "E5": ("(a or b) and (b or c) and not (a and c)",
               lambda a, b, c: (a or b) and (b or c) and not (a and c)),
        "E6": ("not not b", lambda a, b, c: b),
        "E7": ("c", lambda a, b, c: c),
    }
    text = (
        "phenoflow-strategy: 1\ndimensions: {X: {}, Y: {}, Z: {}}\ngates:\n"
        "  - {name: a, range: {dim: X, min: 1}}\n"
        "  - {name: b, range: {dim: Y, min: 1}}\n"
        "  - {name: c, range: {dim: Z, min: 1}}\n"
        + "".join(f"  - {{name: {k}, boolean: '{e}'}}\n" for k, (e, _) in expressions.items())
    )
    s = read_strategy_yaml(text)
    members = gating.apply_plan(gating.compile_plan(s, sample), sample, membership=True).membership
    for key, (_, fn) in expressions.items():
        expected = [bool(fn(a > 1, b > 1, c > 1)) for a, b, c in combos]
        assert members[f"/{key}"].tolist() == expected, key


def test_quadrants_and_rectangles_are_half_open(tmp_path):
    xs = [0.5, 1.0, 1.5, 2.0, 3.0]
    sample = _events(tmp_path, [[x, 0.0 if i % 2 else 5.0] for i, x in enumerate(xs)], ("X", "Y"))
    s = read_strategy_yaml(
        "phenoflow-strategy: 1\ndimensions: {X: {}, Y: {}}\ngates:\n"
        "  - name: Q\n    quadrant:\n      dividers: {X: [1, 2], Y: [1]}\n"
        "      cells: {lo: {X: 0}, mid: {X: 1}, hi+: {X: 2, Y: +}, hi-: {X: 2, Y: '-'}}\n"
        "  - {name: R, rectangle: {X: [1, 2], Y: [null, 1]}}\n"
    )
    m = gating.apply_plan(gating.compile_plan(s, sample), sample, membership=True).membership
    assert m["/lo"].tolist() == [True, False, False, False, False]
    assert m["/mid"].tolist() == [False, True, True, False, False]
    assert m["/hi+"].tolist() == [False, False, False, False, True]  # Y = 5 at even positions
    assert m["/hi-"].tolist() == [False, False, False, True, False]
    assert m["/R"].tolist() == [False, True, False, False, False]


def test_study_demo_tc17_matches_truth(tmp_path):
    """Gate a demo study with the shipped preset; Tc17 % of CD8+ within 0.2 points of truth.

    The demo places populations at least 4 SD from every gate boundary, so gating and the
    generator's labels agree to a few events in ~2000 CD8+ cells (observed error < 0.01
    points); a wrong Boolean (e.g. without ``not CCR4+``) or missing compensation is off by
    about a point or more.
    """
    from engine.demo import make_demo_study

    study = make_demo_study(tmp_path, n_events=20_000, n_genes=200)
    files = json.loads(study.truth.read_text())["flow"]["files"]
    strategy = read_strategy_yaml(study.strategy)
    assert strategy.gates == preset("study_panel").gates
    tc17 = f"{CD8}/Tc17"
    for fcs in study.fcs:
        sample = gating.read_fcs(fcs)
        counts = gating.apply_plan(gating.compile_plan(strategy, sample), sample).counts
        row = counts.set_index("id").loc[tc17]
        assert row["population"] == tc17 and row["parent"] == CD8
        want = files[fcs.stem]["tc17_pct_of_cd8_generated"]
        assert row["percent_of_parent"] == pytest.approx(want, abs=0.2), fcs.stem
