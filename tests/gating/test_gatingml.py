"""Gating-ML 2.0 reader and writer.

The conformance documents are checked against facts read from the same XML with a different
parser (lxml + XPath, written here independently of the reader); written documents are
validated against the Gating-ML 2.0 XML schemas (the ISAC XSDs shipped with FlowKit).
"""

from __future__ import annotations

import copy
import csv
import dataclasses
import importlib.resources
import json
import logging
from pathlib import Path
from typing import Any

import pytest
from lxml import etree

from gating._gatingml._api import (
    DATATYPE_NS,
    GATING_NS,
    TRANSFORMS_NS,
    GatingMLError,
    read_gatingml,
    write_gatingml,
)
from gating._strategy import (
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
    Transform,
)
from tests.conftest import CONFORMANCE, require_shared

SUITE = CONFORMANCE / "gatingml2"
SETS = ["1", "2", "3", "5"]
NS = {"gating": GATING_NS, "transforms": TRANSFORMS_NS, "data-type": DATATYPE_NS}
G, T, D = (f"{{{ns}}}" for ns in (GATING_NS, TRANSFORMS_NS, DATATYPE_NS))
KIND = {
    "RectangleGate": RectangleGate,
    "PolygonGate": PolygonGate,
    "EllipsoidGate": EllipsoidGate,
    "QuadrantGate": QuadrantGate,
    "BooleanGate": BooleanGate,
}
TRANSFORM_KIND = {
    "flin": "linear",
    "flog": "log",
    "fasinh": "asinh",
    "logicle": "logicle",
    "hyperlog": "hyperlog",
}


def _xml(set_id: str) -> Path:
    return require_shared(SUITE / "xml" / f"gates{set_id}.xml")


def _plain(obj: Any) -> Any:
    """Dataclass -> JSON-shaped lists and dicts, for comparison with XPath-built facts."""
    return json.loads(json.dumps(dataclasses.asdict(obj)))


def _schema() -> etree.XMLSchema:
    # flowkit is a dependency of phenoflow and ships the official Gating-ML 2.0 schema files
    xsd = importlib.resources.files("flowkit") / "_resources" / "Gating-ML.v2.0.xsd"
    assert xsd.is_file(), "the Gating-ML 2.0 XSDs are not shipped with this flowkit"
    return etree.XMLSchema(etree.parse(str(xsd)))


def _assert_valid(text: str) -> None:
    schema = _schema()
    ok = schema.validate(etree.fromstring(text.encode()))
    assert ok, f"not valid Gating-ML 2.0: {schema.error_log}"


# ---- facts from the XML, by XPath -------------------------------------------------------------


def _f(value: str | None) -> float | None:
    return None if value is None else float(value)


def _x_dimension(d: etree._Element) -> dict[str, Any]:
    fcs = d.xpath("data-type:fcs-dimension/@data-type:name", namespaces=NS)
    new = d.xpath("data-type:new-dimension/@data-type:transformation-ref", namespaces=NS)
    assert len(fcs) + len(new) == 1
    return {
        "name": (fcs or new)[0],
        "compensation": d.get(G + "compensation-ref"),
        "transform": d.get(G + "transformation-ref"),
        "ratio": bool(new),
    }


def _x_values(el: etree._Element, path: str) -> list[float]:
    return [float(v) for v in el.xpath(path, namespaces=NS)]


def _x_gate(el: etree._Element) -> dict[str, Any]:
    kind = etree.QName(el).localname
    out: dict[str, Any] = {"id": el.get(G + "id"), "parent": el.get(G + "parent_id"), "name": None}
    dims = el.xpath("gating:dimension", namespaces=NS)
    if kind == "RectangleGate":
        out["kind"] = "rectangle"
        out["bounds"] = [[_f(d.get(G + "min")), _f(d.get(G + "max"))] for d in dims]
    elif kind == "PolygonGate":
        out["kind"] = "polygon"
        out["vertices"] = [
            _x_values(v, "gating:coordinate/@data-type:value")
            for v in el.xpath("gating:vertex", namespaces=NS)
        ]
    elif kind == "EllipsoidGate":
        out["kind"] = "ellipsoid"
        out["mean"] = _x_values(el, "gating:mean/gating:coordinate/@data-type:value")
        out["covariance"] = [
            _x_values(r, "gating:entry/@data-type:value")
            for r in el.xpath("gating:covarianceMatrix/gating:row", namespaces=NS)
        ]
        out["distance_square"] = _x_values(el, "gating:distanceSquare/@data-type:value")[0]
    elif kind == "QuadrantGate":
        out["kind"] = "quadrant"
        out["dividers"] = [
            {
                "id": div.get(G + "id"),
                "dimension": _x_dimension(div),
                "values": sorted(_x_values(div, "gating:value/text()")),
            }
            for div in el.xpath("gating:divider", namespaces=NS)
        ]
        out["quadrants"] = [
            {
                "id": q.get(G + "id"),
                "name": None,
                "positions": [
                    [p.get(G + "divider_ref"), float(p.get(G + "location"))]
                    for p in q.xpath("gating:position", namespaces=NS)
                ],
            }
            for q in el.xpath("gating:Quadrant", namespaces=NS)
        ]
    else:
        (op,) = el.xpath("gating:and | gating:or | gating:not", namespaces=NS)
        out["kind"] = "boolean"
        out["op"] = etree.QName(op).localname
        out["operands"] = [
            [r.get(G + "ref"), r.get(G + "use-as-complement", "false") == "true"]
            for r in op.xpath("gating:gateReference", namespaces=NS)
        ]
    if kind in ("RectangleGate", "PolygonGate", "EllipsoidGate"):
        out["dimensions"] = [_x_dimension(d) for d in dims]
    if kind in ("RectangleGate", "QuadrantGate"):
        out["inclusive"] = "min"  # Gating-ML 2.0: min <= x < max
    return out


def _x_gates(tree: etree._ElementTree) -> list[etree._Element]:
    return tree.xpath("/gating:Gating-ML/gating:*", namespaces=NS)


def _text_of(note_or_xml: str) -> str:
    """The words of a note, whether plain text or inner XML."""
    try:
        text = "".join(etree.fromstring(f"<r>{note_or_xml}</r>".encode()).itertext())
    except etree.XMLSyntaxError:
        text = note_or_xml
    return " ".join(text.split())


# ---- the conformance documents ---------------------------------------------------------------


@pytest.mark.parametrize("set_id", SETS)
def test_gate_types_and_ids_match_the_xml(set_id: str) -> None:
    path = _xml(set_id)
    tree = etree.parse(str(path))
    strategy = read_gatingml(path)
    for local, cls in KIND.items():
        n_xml = len(tree.xpath(f"/gating:Gating-ML/gating:{local}", namespaces=NS))
        assert sum(isinstance(g, cls) for g in strategy.gates) == n_xml, local
    assert [g.id for g in strategy.gates] == [el.get(G + "id") for el in _x_gates(tree)]
    quadrants = tree.xpath("//gating:Quadrant/@gating:id", namespaces=NS)
    assert [
        q.id for g in strategy.gates if isinstance(g, QuadrantGate) for q in g.quadrants
    ] == quadrants
    assert strategy.source == str(path)


@pytest.mark.parametrize("set_id", SETS)
def test_every_expected_gate_is_a_population(set_id: str) -> None:
    strategy = read_gatingml(_xml(set_id))
    tree = etree.parse(str(_xml(set_id)))
    with open(require_shared(SUITE / "gate_to_expected.csv"), newline="") as fh:
        ids = [r["gate_id_in_xml"] for r in csv.DictReader(fh) if r["set"] == f"set_{set_id}"]
    assert ids
    populations = strategy.populations()
    complements = {"Not_myPolygon1": "myPolygon1", "Not_myPolygon2": "myPolygon2"}
    for gid in ids:
        if set_id == "5" and gid in complements:
            # No gate of its own in the XML: the expected result is the complement of another.
            assert gid not in populations
            assert not tree.xpath(f"//*[@gating:id='{gid}']", namespaces=NS)
            assert complements[gid] in populations
        else:
            assert gid in populations, gid


@pytest.mark.parametrize("set_id", SETS)
def test_gates_match_the_xml(set_id: str) -> None:
    strategy = read_gatingml(_xml(set_id))
    tree = etree.parse(str(_xml(set_id)))
    for gate, el in zip(strategy.gates, _x_gates(tree), strict=True):
        assert _plain(gate) == _x_gate(el), gate.id


@pytest.mark.parametrize("set_id", SETS)
def test_transforms_ratios_and_matrices_match_the_xml(set_id: str) -> None:
    strategy = read_gatingml(_xml(set_id))
    tree = etree.parse(str(_xml(set_id)))
    seen_t, seen_r = set(), set()
    for el in tree.xpath("/gating:Gating-ML/transforms:transformation", namespaces=NS):
        tid = el.get(T + "id")
        bounds = {"bound_min": _f(el.get(T + "boundMin")), "bound_max": _f(el.get(T + "boundMax"))}
        (func,) = el.xpath("transforms:*", namespaces=NS)
        local = etree.QName(func).localname
        params = {k[len(T) :].lower(): float(v) for k, v in func.attrib.items()}
        if local == "fratio":
            names = func.xpath("data-type:fcs-dimension/@data-type:name", namespaces=NS)
            expected = {
                "id": tid,
                "numerator": names[0],
                "denominator": names[1],
                **params,
                **bounds,
            }
            assert _plain(strategy.ratios[tid]) == expected
            seen_r.add(tid)
        else:
            assert strategy.transforms[tid].to_dict() == {
                "kind": TRANSFORM_KIND[local],
                **params,
                **bounds,
            }
            seen_t.add(tid)
    assert set(strategy.transforms) == seen_t
    assert set(strategy.ratios) == seen_r
    matrices = tree.xpath("/gating:Gating-ML/transforms:spectrumMatrix", namespaces=NS)
    assert set(strategy.matrices) == {m.get(T + "id") for m in matrices}
    for m in matrices:
        ours = strategy.matrices[m.get(T + "id")]
        names = "data-type:fcs-dimension/@data-type:name"
        assert list(ours.fluorochromes) == m.xpath(
            f"transforms:fluorochromes/{names}", namespaces=NS
        )
        assert list(ours.detectors) == m.xpath(f"transforms:detectors/{names}", namespaces=NS)
        assert [list(r) for r in ours.values] == [
            _x_values(s, "transforms:coefficient/@transforms:value")
            for s in m.xpath("transforms:spectrum", namespaces=NS)
        ]
        assert ours.inverted == (m.get(T + "matrix-inverted-already") == "true")


@pytest.mark.parametrize("set_id", SETS)
def test_custom_info_becomes_notes(set_id: str) -> None:
    strategy = read_gatingml(_xml(set_id))
    tree = etree.parse(str(_xml(set_id)))
    expected: dict[str, str] = {}
    for info in tree.xpath("//data-type:custom_info", namespaces=NS):
        owner = info.xpath("ancestor::*[@gating:id or @transforms:id][1]", namespaces=NS)
        key = (owner[0].get(G + "id") or owner[0].get(T + "id")) if owner else ""
        expected[key] = " ".join("".join(info.itertext()).split())
    assert {k: _text_of(v) for k, v in strategy.notes.items()} == expected


def test_notes_keep_inner_xml() -> None:
    strategy = read_gatingml(_xml("1"))
    assert (
        "<author>" in strategy.notes[""]
        and "<email>jspidlen@bccrc.ca</email>" in strategy.notes[""]
    )
    assert strategy.notes["Range1"].startswith("FSC-H is stored with $P1G = 3.67")


@pytest.mark.parametrize("set_id", SETS)
def test_export_reimport_is_identical_and_valid(set_id: str, tmp_path: Path) -> None:
    strategy = read_gatingml(_xml(set_id))
    out = tmp_path / "out.xml"
    text = write_gatingml(strategy, out)
    assert out.read_text(encoding="utf-8") == text
    again = read_gatingml(out, source=strategy.source)
    assert again.to_dict() == strategy.to_dict()
    assert write_gatingml(again) == text
    _assert_valid(text)


# ---- a hand-built strategy using everything ----------------------------------------------------

LOGICLE = "logicle"


def _everything() -> Strategy:
    fl = Dimension("FITC", "spill", LOGICLE)
    pe = Dimension("PE", "spill", LOGICLE)
    return Strategy(
        gates=(
            RectangleGate(
                "cells",
                (Dimension("FSC-A", "uncompensated", "lin"), Dimension("SSC-A", "FCS")),
                ((0.1 + 0.2, None), (None, 5e-324)),
                name="Cells & <debris>",
            ),
            PolygonGate(
                "poly",
                (Dimension("FSC-A"), Dimension("SSC-H", "FCS", "log")),
                ((0.0, 0.0), (1e300, 0.0), (1e300, -2.5e-7)),
                parent="cells",
            ),
            EllipsoidGate(
                "ell",
                (fl, pe, Dimension("P1", "unmix", "asinh")),
                (1.0, 2.0, 3.0),
                ((1.0, 0.1, 0.0), (0.1, 2.0, 0.0), (0.0, 0.0, 3.0)),
                2.5,
                parent="poly",
                name="Élan",
            ),
            QuadrantGate(
                "quad",
                (
                    Divider("d1", Dimension("r1", "FCS", None, ratio=True), (0.5, 1.5)),
                    Divider("d2", Dimension("r1", "uncompensated", "hyper", ratio=True), (0.25,)),
                ),
                (
                    Quadrant("q1", (("d1", 0.0), ("d2", 0.0)), name="low/low"),
                    Quadrant("q2", (("d1", 1.0),)),
                    Quadrant("q3", (("d2", 9.0), ("d1", 2.0)), name=""),
                ),
                parent="cells",
                name="Quadrants",
            ),
            BooleanGate("both", "and", (("q1", False), ("ell", True)), parent="poly"),
            BooleanGate("neither", "not", (("both", True),)),
            BooleanGate("any", "or", (("q2", False), ("q3", True), ("cells", False))),
        ),
        transforms={
            LOGICLE: Logicle(t=262144, w=0.5, m=4.5, a=0, bound_min=0.05, bound_max=0.95),
            "lin": Linear(t=1000, a=-0.1, bound_max=2),
            "log": Log(t=262144, m=4.5, bound_min=0.0),
            "asinh": Asinh(t=10000, m=4, a=1),
            "hyper": Hyperlog(t=10000, w=1, m=4.5, a=0.25),
        },
        ratios={
            "r1": Ratio("r1", "FL2-H", "FL2-A", a=2.7, b=-100, c=-300, bound_min=-1, bound_max=15.3)
        },
        matrices={
            "spill": Matrix(
                "spill",
                ("FITC", "PE"),
                ("FL1-H", "FL2-H"),
                ((1.0, 0.02), (0.11, 1.0)),
                inverted=True,
            ),
            "unmix": Matrix(
                "unmix", ("P1", "P2"), ("A", "B", "C"), ((0.78, 0.13, 0.22), (0.05, 0.57, 0.89))
            ),
        },
        name='Panel 7 \u2014 "main" & more',
        source="hand-built",
        notes={
            "": "Strategy note with a < sign & an ampersand",
            "cells": "Gate note with <b>inline</b> XML &amp; text",
            "q1": "quadrants cannot carry custom_info in Gating-ML",
            "r1": "ratio note",
            LOGICLE: "transform note",
            "spill": "matrix note\nover two lines",
            "elsewhere": "a note under a key that is no id",
        },
    )


def test_everything_round_trips_and_is_valid() -> None:
    strategy = _everything()
    text = write_gatingml(strategy)
    _assert_valid(text)
    again = read_gatingml(text.encode(), source="hand-built")
    assert again.to_dict() == strategy.to_dict()
    assert again.path("q1") == "/Cells & <debris>/low/low"


def test_names_and_phenoflow_notes_hide_from_plain_readers() -> None:
    """A reader that ignores phenoflow's namespace still sees ordinary custom_info."""
    text = write_gatingml(_everything())
    tree = etree.fromstring(text.encode())
    (cells,) = tree.xpath(
        "//gating:RectangleGate[@gating:id='cells']/data-type:custom_info", namespaces=NS
    )
    assert cells.text == "Gate note with "
    assert (
        tree.xpath("//gating:Quadrant[@gating:id='q1']/*", namespaces=NS)[0].tag == G + "position"
    )


@pytest.mark.parametrize(
    "transform",
    [
        FlowJoBiex(max_range=262144, width=-10, positive=4.42, negative=0),
        FlowJoLog(offset=1, decades=4.5),
        FlowJoLinear(min_range=0, max_range=262144),
    ],
)
def test_flowjo_transforms_cannot_be_written(transform: Transform) -> None:
    strategy = Strategy(
        gates=(RectangleGate("g", (Dimension("FL1-A", "FCS", "fj"),), ((0.2, 0.8),)),),
        transforms={"fj": transform},
    )
    with pytest.raises(GatingMLError, match=rf"'fj' \({type(transform).__name__}") as info:
        write_gatingml(strategy)
    assert info.value.element == "transforms:transformation"


def test_one_dimensional_ellipsoid_cannot_be_written() -> None:
    gate = EllipsoidGate("e", (Dimension("FL1-A"),), (1.0,), ((2.0,),), 1.0)
    with pytest.raises(GatingMLError, match="at least two dimensions") as info:
        write_gatingml(Strategy(gates=(gate,)))
    assert info.value.gate == "e"


# ---- hostile and malformed input ---------------------------------------------------------------

HEAD = (
    f'<gating:Gating-ML xmlns:gating="{GATING_NS}" xmlns:transforms="{TRANSFORMS_NS}" '
    f'xmlns:data-type="{DATATYPE_NS}">'
)
RECT = (
    '<gating:RectangleGate gating:id="R1"><gating:dimension gating:compensation-ref="FCS" '
    'gating:min="1" gating:max="2"><data-type:fcs-dimension data-type:name="FL1-H"/>'
    "</gating:dimension></gating:RectangleGate>"
)


def _doc(body: str, prolog: str = "") -> bytes:
    return f'<?xml version="1.0"?>{prolog}{HEAD}{body}</gating:Gating-ML>'.encode()


def test_a_minimal_document_reads() -> None:
    strategy = read_gatingml(_doc(RECT), source="mini.xml")
    assert strategy.gates == (RectangleGate("R1", (Dimension("FL1-H", "FCS"),), ((1.0, 2.0),)),)
    assert strategy.source == "mini.xml"


LAUGHS = (
    '<!DOCTYPE lolz [<!ENTITY lol "lol"><!ENTITY lol1 "&lol;&lol;&lol;&lol;&lol;&lol;&lol;">'
    '<!ENTITY lol2 "&lol1;&lol1;&lol1;&lol1;&lol1;&lol1;&lol1;">]>'
)


@pytest.mark.parametrize(
    ("prolog", "body", "mentions"),
    [
        (LAUGHS, "<data-type:custom_info>&lol2;</data-type:custom_info>", "entity expansion"),
        (
            '<!DOCTYPE x [<!ENTITY xxe SYSTEM "file:///{secret}">]>',
            "<data-type:custom_info>&xxe;</data-type:custom_info>",
            "external references are forbidden",
        ),
        (
            '<!DOCTYPE x SYSTEM "http://127.0.0.1:9/evil.dtd">',
            "",
            "'http://127.0.0.1:9/evil.dtd' was not fetched",
        ),
        (
            '<!DOCTYPE x PUBLIC "-//EVIL//DTD//EN" "http://127.0.0.1:9/p.dtd">',
            "",
            "was not fetched",
        ),
        ('<!DOCTYPE x [<!ENTITY % p SYSTEM "http://127.0.0.1:9/p.ent"> %p;]>', "", "DTD"),
    ],
    ids=["billion-laughs", "external-entity", "external-dtd", "public-dtd", "parameter-entity"],
)
def test_hostile_documents_are_refused(
    prolog: str, body: str, mentions: str, tmp_path: Path
) -> None:
    secret = tmp_path / "secret.txt"
    secret.write_text("TOP-SECRET-CONTENT")
    path = tmp_path / "hostile.xml"
    path.write_bytes(_doc(body + RECT, prolog.replace("{secret}", str(secret))))
    with pytest.raises(GatingMLError, match="DTD") as info:
        read_gatingml(path)
    message = str(info.value)
    assert str(path) in message and mentions in message
    assert "TOP-SECRET-CONTENT" not in message
    assert isinstance(info.value, StrategyError)


def test_undeclared_entity_is_an_error() -> None:
    with pytest.raises(GatingMLError, match="not well-formed XML"):
        read_gatingml(_doc("<data-type:custom_info>&xxe;</data-type:custom_info>"), source="e.xml")


BAD_RECT = RECT.replace('gating:min="1"', 'gating:min="1O0"')


@pytest.mark.parametrize(
    ("body", "gate", "element", "words"),
    [
        (BAD_RECT, "R1", "gating:RectangleGate[1]/gating:dimension[1]", "malformed number '1O0'"),
        (RECT.replace('gating:max="2"', 'gating:max="nan"'), "R1", "gating:dimension[1]", "'nan'"),
        (
            RECT.replace('gating:max="2"', 'gating:max="1_000"'),
            "R1",
            "gating:dimension[1]",
            "'1_000'",
        ),
        (
            RECT.replace('gating:min="1"', 'gating:min="3"'),
            "R1",
            "gating:dimension[1]",
            "min 3.0 is above max 2.0",
        ),
        (
            RECT.replace(' gating:compensation-ref="FCS"', ""),
            "R1",
            "gating:dimension[1]",
            "'compensation-ref'",
        ),
        (RECT.replace('"FCS"', '"NoSuchMatrix"'), "R1", "gating:dimension[1]", "'NoSuchMatrix'"),
        (
            RECT.replace('gating:min="1"', 'gating:transformation-ref="nope" gating:min="1"'),
            "R1",
            "gating:dimension[1]",
            "transformation-ref 'nope' is unknown",
        ),
        (RECT.replace('data-type:name="FL1-H"', ""), "R1", "data-type:fcs-dimension", "'name'"),
        (
            RECT.replace("</gating:RectangleGate>", "<gating:circle/></gating:RectangleGate>"),
            "R1",
            "gating:RectangleGate[1]",
            "unexpected element <gating:circle>",
        ),
        (
            '<gating:CircleGate gating:id="C1"/>',
            "",
            "gating:CircleGate[1]",
            "unknown gate type 'CircleGate'",
        ),
        (
            '<transforms:warp transforms:id="w"/>',
            "",
            "transforms:warp[1]",
            "unknown Gating-ML element",
        ),
        (RECT + RECT, "R1", "", "duplicate population id"),
        (
            RECT
            + '<gating:BooleanGate gating:id="B"><gating:and><gating:gateReference gating:ref="R1"/>'
            '<gating:gateReference gating:ref="ghost"/></gating:and></gating:BooleanGate>',
            "B",
            "",
            "unknown population 'ghost'",
        ),
        (
            RECT
            + '<gating:BooleanGate gating:id="B"><gating:and><gating:gateReference gating:ref="R1"/>'
            "</gating:and></gating:BooleanGate>",
            "B",
            "gating:BooleanGate[1]/gating:and",
            "'and' needs at least two",
        ),
        (
            RECT
            + '<gating:BooleanGate gating:id="B"><gating:not><gating:gateReference gating:ref="R1" '
            'gating:use-as-complement="yes"/></gating:not></gating:BooleanGate>',
            "B",
            "gating:gateReference[1]",
            "malformed boolean 'yes'",
        ),
        (
            '<gating:PolygonGate gating:id="P"><gating:dimension gating:compensation-ref="FCS">'
            '<data-type:fcs-dimension data-type:name="A"/></gating:dimension>'
            '<gating:dimension gating:compensation-ref="FCS"><data-type:fcs-dimension data-type:name="B"/>'
            '</gating:dimension><gating:vertex><gating:coordinate data-type:value="1"/>'
            '<gating:coordinate data-type:value="2"/><gating:coordinate data-type:value="3"/></gating:vertex>'
            "</gating:PolygonGate>",
            "P",
            "gating:vertex[1]",
            "exactly two gating:coordinate",
        ),
        (
            '<gating:QuadrantGate gating:id="Q"><gating:divider gating:id="d" gating:compensation-ref="FCS">'
            '<data-type:fcs-dimension data-type:name="A"/><gating:value>1</gating:value></gating:divider>'
            '<gating:Quadrant gating:id="q"><gating:position gating:divider_ref="e" gating:location="0"/>'
            "</gating:Quadrant></gating:QuadrantGate>",
            "Q",
            "gating:Quadrant[1]/gating:position[1]",
            "unknown divider 'e'",
        ),
        (
            '<transforms:transformation transforms:id="r"><transforms:fratio transforms:A="1" transforms:B="0" '
            'transforms:C="0"><data-type:fcs-dimension data-type:name="A"/></transforms:fratio>'
            "</transforms:transformation>",
            "",
            "transforms:fratio",
            "exactly two fcs-dimension",
        ),
        (
            '<transforms:transformation transforms:id="L"><transforms:logicle transforms:T="1000" '
            'transforms:W="3" transforms:M="4.5" transforms:A="0"/></transforms:transformation>',
            "",
            "transforms:logicle",
            "transformation 'L'",
        ),
        (
            '<transforms:transformation transforms:id="L"><transforms:flog transforms:T="1000"/>'
            "</transforms:transformation>",
            "",
            "transforms:flog",
            "missing attribute(s) ['M']",
        ),
        (
            '<transforms:transformation transforms:id="L"><transforms:flog transforms:T="10" transforms:M="1"/>'
            '</transforms:transformation><gating:RectangleGate gating:id="N"><gating:dimension '
            'gating:compensation-ref="FCS"><data-type:new-dimension data-type:transformation-ref="L"/>'
            "</gating:dimension></gating:RectangleGate>",
            "N",
            "data-type:new-dimension",
            "is not an fratio transformation",
        ),
        (
            '<transforms:spectrumMatrix transforms:id="M"><transforms:fluorochromes>'
            '<data-type:fcs-dimension data-type:name="a"/><data-type:fcs-dimension data-type:name="b"/>'
            '</transforms:fluorochromes><transforms:detectors><data-type:fcs-dimension data-type:name="A"/>'
            '<data-type:fcs-dimension data-type:name="B"/></transforms:detectors><transforms:spectrum>'
            '<transforms:coefficient transforms:value="1"/><transforms:coefficient transforms:value="0"/>'
            "</transforms:spectrum></transforms:spectrumMatrix>",
            "",
            "transforms:spectrumMatrix[1]",
            "must be 2 x 2",
        ),
    ],
)
def test_malformed_documents_name_file_gate_and_element(
    body: str, gate: str, element: str, words: str
) -> None:
    with pytest.raises(GatingMLError) as info:
        read_gatingml(_doc(body), source="bad.xml")
    error = info.value
    message = str(error)
    assert message.startswith("bad.xml"), message
    assert words in message
    assert error.gate == gate
    assert element in error.element
    if gate:
        assert f"gate {gate!r}" in message
    if element:
        assert element in message


@pytest.mark.parametrize(
    "data",
    [
        b"<Gating-ML/>",
        b'<g:Gating-ML xmlns:g="http://www.isac-net.org/std/Gating-ML/v1.5/gating"/>',
        b"<gating:Gating-ML",
    ],
    ids=["no-namespace", "gating-ml-1.5", "truncated"],
)
def test_not_gating_ml_2(data: bytes) -> None:
    with pytest.raises(GatingMLError, match=r"^x\.xml"):
        read_gatingml(data, source="x.xml")


def test_extension_elements_are_ignored_and_logged(caplog: pytest.LogCaptureFixture) -> None:
    body = f'<ext:thing xmlns:ext="urn:example"><ext:inner/></ext:thing>{RECT}'
    with caplog.at_level(logging.DEBUG, logger="gating._gatingml"):
        strategy = read_gatingml(_doc(body), source="ext.xml")
    assert [g.id for g in strategy.gates] == ["R1"]
    assert any("{urn:example}thing" in r.getMessage() for r in caplog.records)


def test_error_keeps_its_fields_when_copied() -> None:
    error = GatingMLError("broken", source="f.xml", gate="g1", element="gating:dimension[2]")
    clone = copy.deepcopy(error)
    assert (clone.source, clone.gate, clone.element, str(clone)) == (
        "f.xml",
        "g1",
        "gating:dimension[2]",
        "f.xml gate 'g1' <gating:dimension[2]>: broken",
    )
