"""FlowJo 10 workspace front-end: parsing, the mapping to the neutral model, and its errors.

Small workspaces are written here by hand (the XML FlowJo 10 writes, trimmed to what the
reader uses) with FCS files whose gated counts are worked out in the comments. The shared
FlowJo workspaces are parsed too; their counts are checked in
``tests/conformance/test_flowjo_conformance.py``.
"""

from __future__ import annotations

import json
import math
import re
import xml.etree.ElementTree as ET

import numpy as np
import pandas as pd
import pytest

from gating import (
    Asinh,
    BooleanGate,
    EllipsoidGate,
    FlowJoBiex,
    FlowJoLinear,
    PolygonGate,
    QuadrantGate,
    RectangleGate,
    StrategyError,
    apply_plan,
    compile_plan,
    read_fcs,
    strategy_from_dict,
    write_fcs,
)
from gating._flowjo._workspace import FlowJoError, read_flowjo
from gating._strategy import FILE_SPILLOVER, UNCOMPENSATED
from tests.conftest import CONFORMANCE, require_shared

FLOWJO = CONFORMANCE / "flowjo"
NS = (
    'xmlns:gating="http://www.isac-net.org/std/Gating-ML/v2.0/gating" '
    'xmlns:transforms="http://www.isac-net.org/std/Gating-ML/v2.0/transformations" '
    'xmlns:data-type="http://www.isac-net.org/std/Gating-ML/v2.0/datatypes"'
)


# ---- builders for hand-written workspaces -------------------------------------------------
def rect(
    name: str,
    dims: dict[str, tuple[float | None, float | None]],
    children: str = "",
    inside: int = 1,
) -> str:
    def bound(key: str, value: float | None) -> str:
        return "" if value is None else f' gating:{key}="{value}"'

    axes = "".join(
        f"<gating:dimension{bound('min', lo)}{bound('max', hi)}>"
        f'<data-type:fcs-dimension data-type:name="{p}"/></gating:dimension>'
        for p, (lo, hi) in dims.items()
    )
    return (
        f'<Population name="{name}" count="-1"><Gate gating:id="g{name}">'
        f'<gating:RectangleGate eventsInside="{inside}">{axes}</gating:RectangleGate></Gate>'
        f"{f'<Subpopulations>{children}</Subpopulations>' if children else ''}</Population>"
    )


def polygon(name: str, dims: tuple[str, str], vertices: list[tuple[float, float]]) -> str:
    axes = "".join(
        f'<gating:dimension><data-type:fcs-dimension data-type:name="{p}"/></gating:dimension>'
        for p in dims
    )
    points = "".join(
        f'<gating:vertex><gating:coordinate data-type:value="{x}"/>'
        f'<gating:coordinate data-type:value="{y}"/></gating:vertex>'
        for x, y in vertices
    )
    return (
        f'<Population name="{name}" count="-1"><Gate><gating:PolygonGate eventsInside="1" '
        f'quadId="-1">{axes}{points}</gating:PolygonGate></Gate></Population>'
    )


def boolean(tag: str, name: str, deps: list[str]) -> str:
    items = "".join(f'<Dependent name="{d}"/>' for d in deps)
    return f'<{tag} name="{name}" count="-1"><Dependents>{items}</Dependents></{tag}>'


def linear(param: str, lo: float = 0, hi: float = 262144) -> str:
    return (
        f'<transforms:linear transforms:minRange="{lo}" transforms:maxRange="{hi}" gain="1">'
        f'<data-type:parameter data-type:name="{param}"/></transforms:linear>'
    )


def sample(sid: str, fcs: str, gates: str, *, extra: str = "", transforms: str = "") -> str:
    return (
        f'<Sample><DataSet uri="file:/data/some%20folder/{fcs}" sampleID="{sid}"/>{extra}'
        f"<Transformations>{transforms}</Transformations><Keywords>"
        f'<Keyword name="$TOT" value="7"/></Keywords>'
        f'<SampleNode name="{fcs}" count="7" sampleID="{sid}">'
        f"<Subpopulations>{gates}</Subpopulations></SampleNode></Sample>"
    )


def workspace(tmp_path, samples: str, groups: str = "", name: str = "w.wsp"):
    text = (
        f'<?xml version="1.0" encoding="UTF-8"?><Workspace version="20.0" flowJoVersion="10.8.1" '
        f"{NS}><Groups>{groups}</Groups><SampleList>{samples}</SampleList></Workspace>"
    )
    path = tmp_path / name
    path.write_text(text)
    return path


def fcs(tmp_path, rows, names=("FSC-A", "FL1-A", "FL2-A"), name="s.fcs"):
    return read_fcs(write_fcs(tmp_path / name, np.asarray(rows, dtype=np.float32), list(names)))


def counts(strategy, data) -> dict[str, int]:
    table = apply_plan(compile_plan(strategy, data), data).counts
    return dict(zip(table["id"], table["count"], strict=True))


# ---- hand-written workspaces ----------------------------------------------------------------
SPILL = (
    '<transforms:spilloverMatrix spectral="0" prefix="Comp-" suffix="" name="Acquisition-defined" '
    'transforms:id="m-1"><data-type:parameters>'
    '<data-type:parameter data-type:name="FL1-A" userProvidedCompInfix="Comp-FL1-A"/>'
    '<data-type:parameter data-type:name="FL2-A" userProvidedCompInfix="FL2 unmixed"/>'
    "</data-type:parameters>"
    '<transforms:spillover data-type:parameter="FL1-A">'
    '<transforms:coefficient data-type:parameter="FL1-A" transforms:value="1"/>'
    '<transforms:coefficient data-type:parameter="FL2-A" transforms:value="0.5"/>'
    "</transforms:spillover>"
    '<transforms:spillover data-type:parameter="FL2-A">'
    '<transforms:coefficient data-type:parameter="FL1-A" transforms:value="0"/>'
    '<transforms:coefficient data-type:parameter="FL2-A" transforms:value="1"/>'
    "</transforms:spillover></transforms:spilloverMatrix>"
)


def test_compensated_parameters_use_the_sample_matrix(tmp_path):
    gates = rect("comp", {"Comp-FL1-A": (50, None), "FL2 unmixed": (10, None)}) + rect(
        "raw", {"FL2-A": (10, None), "FSC-A": (None, None)}
    )
    ws = read_flowjo(workspace(tmp_path, sample("1", "s.fcs", gates, extra=SPILL)))
    s = ws.samples[0]
    assert s.compensation.fluorochromes == ("FL1-A", "FL2-A")
    assert s.compensation.detectors == ("FL1-A", "FL2-A")
    assert s.compensation.values == ((1.0, 0.5), (0.0, 1.0))
    strategy = ws.strategy_for("s.fcs")
    comp, raw = strategy.populations()["/comp"], strategy.populations()["/raw"]
    assert [(d.name, d.compensation) for d in comp.dimensions] == [
        ("FL1-A", "m-1"),
        ("FL2-A", "m-1"),
    ]
    assert [d.compensation for d in raw.dimensions] == [UNCOMPENSATED, UNCOMPENSATED]
    assert strategy.matrices["m-1"] == s.compensation
    # FL1 spills half its signal into FL2. Observed (FL1, FL2) -> compensated:
    # (100, 50) -> (100, 0); (100, 100) -> (100, 50); (0, 40) -> (0, 40).
    data = fcs(tmp_path, [[1, 100, 50], [1, 100, 100], [1, 0, 40]])
    assert counts(strategy, data) == {"/comp": 1, "/raw": 3}


def test_comp_prefix_without_a_matrix_means_the_file_spillover(tmp_path):
    ws = read_flowjo(workspace(tmp_path, sample("1", "s.fcs", rect("g", {"Comp-FL1-A": (1, 2)}))))
    (dim,) = ws.strategy_for("s.fcs").gates[0].dimensions
    assert (dim.name, dim.compensation) == ("FL1-A", FILE_SPILLOVER)


def test_boolean_nodes_and_their_dependents(tmp_path):
    children = (
        rect("A", {"FL1-A": (50, None)})
        + rect("B", {"FL2-A": (50, None)})
        + boolean("AndNode", "A and B", ["All/A", "All/B"])
        + boolean("OrNode", "A or B", ["All/A", "All/B"])
        + boolean("NotNode", "not A", ["All/A"])
    )
    gates = rect("All", {"FSC-A": (10, None)}, children)
    strategy = read_flowjo(workspace(tmp_path, sample("1", "s.fcs", gates))).strategy_for("1")
    pops = strategy.populations()
    assert pops["/All/A and B"] == BooleanGate(
        "/All/A and B", "and", (("/All/A", False), ("/All/B", False)), "/All", "A and B"
    )
    assert pops["/All/not A"].op == "not" and pops["/All/A or B"].op == "or"
    assert strategy.path("/All/A and B") == "/All/A and B"
    # FSC, FL1, FL2: the last event is outside All, so Boolean nodes (children of All) skip it.
    data = fcs(tmp_path, [[20, 60, 60], [20, 60, 0], [20, 0, 60], [20, 0, 0], [0, 60, 60]])
    assert counts(strategy, data) == {
        "/All": 4,
        "/All/A": 2,
        "/All/B": 2,
        "/All/A and B": 1,
        "/All/A or B": 3,
        "/All/not A": 2,
    }


def test_events_outside_a_gate(tmp_path):
    gates = rect("out", {"FSC-A": (10, 20)}, inside=0)
    strategy = read_flowjo(workspace(tmp_path, sample("1", "s.fcs", gates))).strategy_for("1")
    assert isinstance(strategy.populations()["/out"], BooleanGate)
    data = fcs(tmp_path, [[5, 0, 0], [10, 0, 0], [19, 0, 0], [20, 0, 0], [25, 0, 0]])
    # inside (10, 20] (FlowJo's convention): 19 and 20; outside: 5, 10, 25
    assert counts(strategy, data) == {"/out#inside": 2, "/out": 3}
    member = apply_plan(compile_plan(strategy, data), data, membership=True).membership
    assert list(np.flatnonzero(member["/out"].to_numpy())) == [0, 1, 4]


def test_quadrant_rectangles_become_one_quadrant_gate(tmp_path):
    quads = "".join(
        rect(f"Q{i}", {"FL1-A": x, "FL2-A": y})
        for i, (x, y) in enumerate(
            [
                ((None, 30), (40, None)),
                ((30, None), (40, None)),
                ((30, None), (None, 40)),
                ((None, 30), (None, 40)),
            ],
            start=1,
        )
    )
    strategy = read_flowjo(workspace(tmp_path, sample("1", "s.fcs", quads))).strategy_for("1")
    (gate,) = strategy.gates
    assert isinstance(gate, QuadrantGate)
    assert [d.values for d in gate.dividers] == [(30.0,), (40.0,)]
    assert [q.id for q in gate.quadrants] == ["/Q1", "/Q2", "/Q3", "/Q4"]
    # events exactly on a split belong to the lower side (FlowJo's min < x <= max)
    assert gate.inclusive == "max"
    data = fcs(tmp_path, [[0, 31, 41], [0, 30, 41], [0, 31, 40], [0, 30, 40], [0, 0, 0]])
    assert counts(strategy, data) == {"/Q1": 1, "/Q2": 1, "/Q3": 1, "/Q4": 2}


def test_polygon_vertices_move_to_the_display_scale(tmp_path):
    biex = (
        '<transforms:biex transforms:length="256" transforms:maxRange="262144" transforms:neg="0" '
        'transforms:width="-100" transforms:pos="4.418539922">'
        '<data-type:parameter data-type:name="FL1-A"/></transforms:biex>'
    )
    verts = [(-100.0, 0.0), (5000.0, 0.0), (5000.0, 2000.0)]
    ws = read_flowjo(
        workspace(
            tmp_path,
            sample(
                "1",
                "s.fcs",
                polygon("p", ("FL1-A", "FSC-A"), verts),
                transforms=biex + linear("FSC-A", 0, 1000),
            ),
        )
    )
    (gate,) = ws.strategy_for("1").gates
    assert isinstance(gate, PolygonGate)
    fl1, fsc = (ws.samples[0].transforms[p] for p in ("FL1-A", "FSC-A"))
    assert fl1 == FlowJoBiex(max_range=262144, width=-100, positive=4.418539922, negative=0)
    assert fsc == FlowJoLinear(min_range=0, max_range=1000)
    assert [d.transform for d in gate.dimensions] == ["FL1-A", "FSC-A"]
    expected_x = fl1.apply([x for x, _ in verts])
    assert np.array_equal([x for x, _ in gate.vertices], expected_x)
    assert [y for _, y in gate.vertices] == [0.0, 0.0, 2.0]


def test_group_template_uses_the_groups_common_transforms(tmp_path):
    poly = polygon("p", ("FL1-A", "FSC-A"), [(0, 0), (10, 0), (10, 10)])
    both = '<SampleRefs><SampleRef sampleID="1"/><SampleRef sampleID="2"/></SampleRefs>'
    groups = (
        f'<GroupNode name="same"><Group name="same"><SampleRefs><SampleRef sampleID="1"/>'
        f"</SampleRefs></Group><Subpopulations>{poly}</Subpopulations></GroupNode>"
        f'<GroupNode name="mixed"><Group name="mixed">{both}</Group>'
        f"<Subpopulations>{poly}</Subpopulations></GroupNode>"
        f'<GroupNode name="rects"><Group name="rects">{both}</Group>'
        f"<Subpopulations>{rect('r', {'FL1-A': (0, 1)})}</Subpopulations></GroupNode>"
    )
    samples = sample("1", "a.fcs", "", transforms=linear("FL1-A", 0, 100)) + sample(
        "2", "b.fcs", "", transforms=linear("FL1-A", 0, 200)
    )
    ws = read_flowjo(workspace(tmp_path, samples, groups))
    assert ws.groups == {
        "same": ("a.fcs",),
        "mixed": ("a.fcs", "b.fcs"),
        "rects": ("a.fcs", "b.fcs"),
    }
    (gate,) = ws.group_strategy("same").gates
    assert gate.vertices[1] == (0.1, 0.0)  # 10 on a 0..100 axis; FSC-A has no transform
    with pytest.raises(FlowJoError, match="disagree") as err:
        ws.group_strategy("mixed")
    assert err.value.gate == "/p"
    assert isinstance(ws.group_strategy("rects").gates[0], RectangleGate)
    with pytest.raises(KeyError):
        ws.group_strategy("nope")


def test_scales_that_cannot_be_known_fail_where_needed(tmp_path):
    poly = polygon("p", ("Time", "FSC-A"), [(0, 0), (10, 0), (10, 10)])
    # FlowJo writes gain != 1 for Time; phenoflow does not build that scale
    odd = (
        '<transforms:linear transforms:minRange="1.27" transforms:maxRange="69" gain="0.0102">'
        '<data-type:parameter data-type:name="Time"/></transforms:linear>'
    )
    groups = f'<GroupNode name="empty"><Subpopulations>{poly}</Subpopulations></GroupNode>'
    gates = poly.replace('"p"', '"q"') + rect("r", {"Time": (0, 5)})
    ws = read_flowjo(workspace(tmp_path, sample("1", "s.fcs", gates, transforms=odd), groups))
    assert "Time" not in ws.samples[0].transforms
    with pytest.raises(FlowJoError, match="no usable transform") as err:
        ws.strategy_for("1")
    assert err.value.gate == "/q"
    with pytest.raises(FlowJoError, match="no samples"):
        ws.group_strategy("empty")
    assert ws.groups["empty"] == ()
    only_rect = read_flowjo(
        workspace(
            tmp_path,
            sample("1", "s.fcs", rect("r", {"Time": (0, 5)}), transforms=odd),
            name="r.wsp",
        )
    )
    (gate,) = only_rect.strategy_for("1").gates
    assert gate.bounds == ((0.0, 5.0),) and gate.dimensions[0].transform is None


def test_samples_are_found_by_name_file_or_id(tmp_path):
    ws = read_flowjo(workspace(tmp_path, sample("7", "x y.fcs", rect("g", {"FSC-A": (0, 1)}))))
    (s,) = ws.samples
    assert (s.sample_id, s.name, s.fcs_file) == ("7", "x y.fcs", "x y.fcs")
    assert s.uri == "file:/data/some%20folder/x y.fcs"
    assert s.keywords == {"$TOT": "7"}
    assert ws.strategy_for("7") == ws.strategy_for("x y.fcs")
    with pytest.raises(KeyError, match="no sample"):
        ws.strategy_for("other.fcs")


def test_strategy_round_trips_through_json(tmp_path):
    gates = rect("All", {"FSC-A": (10, None)}, rect("A", {"Comp-FL1-A": (1, 2)}))
    strategy = read_flowjo(
        workspace(tmp_path, sample("1", "s.fcs", gates, extra=SPILL))
    ).strategy_for("1")
    assert strategy_from_dict(json.loads(json.dumps(strategy.to_dict()))) == strategy


# ---- errors ---------------------------------------------------------------------------------
def test_unknown_gate_type_names_its_path(tmp_path):
    gates = rect("All", {"FSC-A": (10, None)}, rect("A", {"FL1-A": (1, 2)}))
    path = workspace(tmp_path, sample("1", "s.fcs", gates))
    text = path.read_text()
    inner = text.index('<Population name="A"')
    path.write_text(text[:inner] + text[inner:].replace("RectangleGate", "CurlyQuadGate", 2))
    with pytest.raises(FlowJoError, match="CurlyQuadGate") as err:
        read_flowjo(path)
    assert err.value.gate == "/All/A"
    assert "/All/A" in str(err.value) and str(path) in str(err.value)
    assert isinstance(err.value, StrategyError)


def test_a_shared_workspace_with_a_renamed_gate_fails_with_its_path(tmp_path):
    wsp = require_shared(FLOWJO / "simple_line_example" / "simple_poly_and_rect_v2_poly50.wsp")
    text = wsp.read_text()
    sample_part = text.index("<SampleList>")
    changed = text[:sample_part] + text[sample_part:].replace(
        "gating:PolygonGate", "gating:LassoGate"
    )
    (tmp_path / "bad.wsp").write_text(changed)
    with pytest.raises(FlowJoError, match="LassoGate") as err:
        read_flowjo(tmp_path / "bad.wsp", source="renamed.wsp")
    assert err.value.gate == "/poly1" and err.value.source == "renamed.wsp"


@pytest.mark.parametrize(
    "body, message",
    [
        (boolean("AndNode", "x", ["nowhere", "either"]), "not a population"),
        (rect("a", {"FSC-A": (0, 1)}) + boolean("NotNode", "x", ["a", "a"]), "2 dependents"),
        (rect("a", {"FSC-A": (0, 1)}) + rect("a", {"FSC-A": (0, 2)}), "share this path"),
        (rect("a", {"FSC-A": (3, 1)}), "above max"),
    ],
)
def test_malformed_trees_raise(tmp_path, body, message):
    ws = read_flowjo(workspace(tmp_path, sample("1", "s.fcs", body)))
    with pytest.raises(FlowJoError, match=message):
        ws.strategy_for("1")


def test_unknown_node_and_bad_numbers_raise_on_reading(tmp_path):
    odd = '<SpiderNode name="s" count="1"/>'
    with pytest.raises(FlowJoError, match="SpiderNode"):
        read_flowjo(workspace(tmp_path, sample("1", "s.fcs", odd), name="a.wsp"))
    with pytest.raises(FlowJoError, match="not a number") as err:
        read_flowjo(
            workspace(tmp_path, sample("1", "s.fcs", rect("r", {"FSC-A": ("x", 1)})), name="b.wsp")
        )
    assert err.value.gate == "/r"


def test_dtds_and_entities_are_refused(tmp_path):
    bomb = tmp_path / "bomb.wsp"
    bomb.write_text('<?xml version="1.0"?><!DOCTYPE w [<!ENTITY e "x">]><Workspace>&e;</Workspace>')
    with pytest.raises(FlowJoError, match="not a readable workspace"):
        read_flowjo(bomb)
    (tmp_path / "x.wsp").write_text("<Workspace><SampleList>")
    with pytest.raises(FlowJoError):
        read_flowjo(tmp_path / "x.wsp")


# ---- the shared FlowJo workspaces -----------------------------------------------------------
def _shared(name: str):
    return require_shared(FLOWJO / name)


def _xml_transforms(path) -> dict[str, tuple[str, dict[str, str]]]:
    """(element, attributes) per parameter of the first sample, read straight from the XML."""
    root = ET.parse(path).getroot()
    out = {}
    for t in root.find("SampleList/Sample/Transformations"):
        param = next(iter(t)).attrib["{http://www.isac-net.org/std/Gating-ML/v2.0/datatypes}name"]
        out[param] = (
            t.tag.rsplit("}", 1)[-1],
            {k.rsplit("}", 1)[-1]: v for k, v in t.attrib.items()},
        )
    return out


@pytest.mark.parametrize(
    "name",
    [
        "simple_diamond_example/simple_diamond_example_quad_gate.wsp",
        "simple_diamond_example/test_data_diamond_asinh_rect.wsp",
        "simple_diamond_example/test_data_diamond_asinh_rect2.wsp",
        "simple_diamond_example/test_data_diamond_biex_rect.wsp",
        "simple_line_example/simple_poly_and_rect.wsp",
        "simple_line_example/simple_poly_and_rect_v2_poly50.wsp",
        "simple_line_example/single_ellipse_51_events.wsp",
    ],
)
def test_every_shared_workspace_parses(name):
    path = _shared(name)
    ws = read_flowjo(path)
    (s,) = ws.samples
    assert s.fcs_file == s.name and (path.parent / s.fcs_file).exists()
    assert "All Samples" in ws.groups and ws.groups["All Samples"] == (s.name,)
    strategy = ws.strategy_for(s.fcs_file)
    assert set(strategy.populations()) >= set(s.counts)
    for pid in s.counts:
        assert strategy.path(pid) == pid and pid.count("/") == 1
    xml = _xml_transforms(path)
    assert set(s.transforms) == set(xml)
    kinds = {"linear": FlowJoLinear, "fasinh": Asinh, "biex": FlowJoBiex}
    for param, (element, attrs) in xml.items():
        t = s.transforms[param]
        assert isinstance(t, kinds[element])
        if element == "linear":
            assert (t.min_range, t.max_range) == (
                float(attrs["minRange"]),
                float(attrs["maxRange"]),
            )
        elif element == "fasinh":
            assert (t.t, t.m, t.a) == (float(attrs["T"]), float(attrs["M"]), float(attrs["A"]))
        else:
            assert (t.max_range, t.width, t.positive, t.negative) == tuple(
                float(attrs[k]) for k in ("maxRange", "width", "pos", "neg")
            )
    for group in ws.groups:
        ws.group_strategy(group)


def test_rectangle_bounds_are_raw_values_not_scale_values():
    # Bounds in the biex workspace are far beyond the transform's 0..1 scale, and their
    # images on that scale are inside it: FlowJo writes raw (compensated) values.
    ws = read_flowjo(_shared("simple_diamond_example/test_data_diamond_biex_rect.wsp"))
    (gate,) = ws.strategy_for("test_data_diamond_01.fcs").gates
    assert isinstance(gate, RectangleGate) and all(d.transform is None for d in gate.dimensions)
    for dim, (lo, hi) in zip(gate.dimensions, gate.bounds, strict=True):
        scale = ws.samples[0].transforms[dim.name].apply([lo, hi])
        assert lo > 1000 and hi > 1000 and np.all((scale > 0) & (scale < 1))


def test_quad_workspace_maps_to_a_quadrant_gate():
    path = _shared("simple_diamond_example/simple_diamond_example_quad_gate.wsp")
    (gate,) = read_flowjo(path).strategy_for("test_data_diamond_01.fcs").gates
    assert isinstance(gate, QuadrantGate) and len(gate.quadrants) == 4
    splits = sorted(
        {float(v) for v in re.findall(r'gating:m(?:in|ax)="([^"]+)"', path.read_text())}
    )
    assert sorted(v for d in gate.dividers for v in d.values) == splits
    assert [d.dimension.name for d in gate.dividers] == ["channel_A", "channel_B"]


def test_ellipse_follows_flowjos_handles():
    path = _shared("simple_line_example/single_ellipse_51_events.wsp")
    ws = read_flowjo(path)
    (gate,) = ws.strategy_for("data_set_simple_line_100.fcs").gates
    assert isinstance(gate, EllipsoidGate) and gate.distance_square == 1.0
    values = [float(v) for v in re.findall(r'data-type:value="([^"]+)"', path.read_text())]
    f1, f2, e0, e1, e2, e3 = np.array(values).reshape(6, 2)
    # In display pixels (linear 0..262144 on 256 pixels), from the four handles alone: the
    # centre is their mean, one semi-axis is half the distance e0-e1 (along e0-e1), the other
    # half the distance e2-e3 (perpendicular); the foci play no part.
    cov = np.array(gate.covariance) * 256.0**2
    centre = np.array(gate.mean) * 256.0
    assert np.allclose(centre, (e0 + e1 + e2 + e3) / 4, rtol=0, atol=1e-9)
    a, b = np.linalg.norm(e1 - e0) / 2, np.linalg.norm(e3 - e2) / 2
    u = (e1 - e0) / (2 * a)
    v = np.array([-u[1], u[0]])
    assert u @ cov @ u == pytest.approx(a * a, rel=1e-12)
    assert v @ cov @ v == pytest.approx(b * b, rel=1e-12)
    assert u @ cov @ v == pytest.approx(0.0, abs=1e-9 * a * a)
    # FlowJo derives the foci from the handles: they agree with this ellipse's
    assert math.sqrt(abs(a * a - b * b)) == pytest.approx(np.linalg.norm(f1 - f2) / 2, rel=1e-3)


def test_recorded_counts_and_owning_group_template():
    ws = read_flowjo(_shared("simple_line_example/simple_poly_and_rect_v2_poly50.wsp"))
    assert ws.samples[0].counts == {"/poly1": 0, "/rect1": 0}
    # The group's template still has the first version of the gates, the sample its own.
    template = ws.group_strategy("my_group").populations()["/rect1"]
    own = ws.strategy_for("1").populations()["/rect1"]
    assert template.bounds != own.bounds
    assert own.bounds[1] == pytest.approx((107397.66081871346, 129561.40350877192))


def test_gating_a_shared_workspace_returns_flowjo_paths():
    wsp = _shared("simple_line_example/simple_poly_and_rect_v2_poly50.wsp")
    data = read_fcs(wsp.parent / "data_set_simple_line_100.fcs")
    result = apply_plan(compile_plan(read_flowjo(wsp).strategy_for("1"), data), data)
    assert isinstance(result.counts, pd.DataFrame)
    assert list(result.counts["population"]) == ["/poly1", "/rect1"]
