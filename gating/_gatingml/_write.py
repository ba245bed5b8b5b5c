"""Gating-ML 2.0 output: the writer behind :func:`gating._gatingml._api.write_gatingml`.

Builds the document from small :class:`_Node` trees and serialises them with four-space
indentation. Numbers are written with ``repr`` (they read back to the same float); notes go
verbatim when they are XML that reads back to the same string, else as escaped text. Display
names, the strategy name and notes with no Gating-ML home (quadrants) go into phenoflow
extension elements inside ``custom_info`` (see :mod:`gating._gatingml._api`).

Ids: Gating-ML ids (gates, quadrants, dividers, transformations, spectrum matrices) are
``xs:ID``, so each must be an XML NCName unique in the whole document. An id that already is
one (and is not taken) is written as it is; any other (``/Lymphocytes/CD3+``, ``CD4 naive``,
a divider id two quadrant gates share) gets a readable NCName made from the gate's display name
or the id (``CD3_pos``, ``CD4_naive``, ``d1_2`` on a collision), every reference follows it,
and the original is kept as ``<phenoflow:id ref="CD3_pos" original="/Lymphocytes/CD3+"/>`` in
the document's ``custom_info``, from which :func:`gating.read_gatingml` restores it
(:func:`xml_ids`, :func:`rename_ids`).
"""

from __future__ import annotations

import math
import re
import unicodedata
from collections.abc import Callable, Iterable, Mapping
from typing import Any
from xml.etree.ElementTree import ParseError

import defusedxml.ElementTree as safe_et
from defusedxml import DefusedXmlException

from gating._gatingml._xml import (
    DATATYPE_NS,
    GATING_NS,
    PHENOFLOW_NS,
    TRANSFORMS_NS,
    GatingMLError,
    inner_xml,
    xml_attribute,
    xml_escape,
)
from gating._strategy import (
    Dimension,
    EllipsoidGate,
    Gate,
    Matrix,
    PolygonGate,
    QuadrantGate,
    Ratio,
    RectangleGate,
    Strategy,
    strategy_from_dict,
)
from gating._transforms import Asinh, Hyperlog, Linear, Log, Logicle, Transform

__all__ = ["is_ncname", "rename_ids", "render", "xml_ids"]

_SCHEMA_LOCATION = " ".join(
    f"{ns} http://flowcyt.sourceforge.net/gating/2.0/xsd/{xsd}"
    for ns, xsd in (
        (GATING_NS, "Gating-ML.v2.0.xsd"),
        (TRANSFORMS_NS, "Transformations.v2.0.xsd"),
        (DATATYPE_NS, "DataTypes.v2.0.xsd"),
    )
)
_XML_CHAR = re.compile("[^\t\n\r\x20-\ud7ff\ue000-\ufffd\U00010000-\U0010ffff]")


class _Node:
    """A minimal XML element for the writer: prefixed tag, ordered attributes, content."""

    __slots__ = ("attrs", "children", "raw", "tag")

    def __init__(
        self,
        tag: str,
        attrs: Iterable[tuple[str, Any]] = (),
        children: Iterable[_Node] = (),
        raw: str | None = None,
    ) -> None:
        self.tag = tag
        self.attrs = [(k, v) for k, v in attrs if v is not None]
        self.children = list(children)
        self.raw = raw  # already-escaped content, written verbatim on one line

    def lines(self, depth: int, out: list[str]) -> None:
        pad = "    " * depth
        attrs = "".join(f" {k}={_attr_text(v)}" for k, v in self.attrs)
        if self.raw is not None:
            out.append(f"{pad}<{self.tag}{attrs}>{self.raw}</{self.tag}>")
        elif self.children:
            out.append(f"{pad}<{self.tag}{attrs}>")
            for child in self.children:
                child.lines(depth + 1, out)
            out.append(f"{pad}</{self.tag}>")
        else:
            out.append(f"{pad}<{self.tag}{attrs} />")


def _checked(text: str) -> str:
    bad = _XML_CHAR.search(text)
    if bad:
        raise GatingMLError(f"character {bad.group()!r} in {text!r} cannot be written in XML 1.0")
    return text


def _attr_text(value: Any) -> str:
    if isinstance(value, bool):
        return '"true"' if value else '"false"'
    if isinstance(value, int | float):
        return f'"{_num(value)}"'
    return xml_attribute(_checked(str(value)))


def _num(value: float) -> str:
    value = float(value)
    if not math.isfinite(value):
        raise GatingMLError(f"{value!r} cannot be written in Gating-ML (finite numbers only)")
    return repr(value)


def _text(text: str) -> str:
    return xml_escape(_checked(text)).replace("\r", "&#13;")


def _content(note: str) -> str:
    """A note as ``custom_info`` content: its XML verbatim if it reads back identically, else text."""
    try:
        wrapper = safe_et.fromstring(f"<r>{note}</r>", forbid_dtd=True)
    except (ParseError, DefusedXmlException):
        return _text(note)
    ours = any(el.tag.startswith(f"{{{PHENOFLOW_NS}}}") for el in wrapper.iter())
    return note if len(wrapper) and not ours and inner_xml(wrapper) == note else _text(note)


def _pf(local: str) -> str:
    return f"phenoflow:{local}"


_WRITERS: dict[type, tuple[str, tuple[tuple[str, str], ...]]] = {
    Linear: ("flin", (("T", "t"), ("A", "a"))),
    Log: ("flog", (("T", "t"), ("M", "m"))),
    Asinh: ("fasinh", (("T", "t"), ("M", "m"), ("A", "a"))),
    Logicle: ("logicle", (("T", "t"), ("W", "w"), ("M", "m"), ("A", "a"))),
    Hyperlog: ("hyperlog", (("T", "t"), ("W", "w"), ("M", "m"), ("A", "a"))),
}



# ---- ids: xs:ID needs NCNames unique in the document --------------------------------------------

_SIMPLE_NCNAME = re.compile(r"[A-Za-z_][A-Za-z0-9._-]*")
_NOT_NAME = re.compile(r"[^A-Za-z0-9._-]+")


def is_ncname(text: str) -> bool:
    """Whether ``text`` is an NCName of the conservative ASCII form the writer keeps as is.

    Examples
    --------
    >>> is_ncname("CD3_pos"), is_ncname("/Lymphocytes"), is_ncname("CD4 naive")
    (True, False, False)
    """
    return _SIMPLE_NCNAME.fullmatch(text) is not None


def _readable(text: str) -> str:
    """A readable ASCII NCName made from a name or id (``CD3+`` -> ``CD3_pos``)."""
    text = text.rstrip("/").rpartition("/")[2] or text
    text = unicodedata.normalize("NFKD", text)
    text = "".join(c for c in text if not unicodedata.combining(c))
    text = text.replace("+", "_pos")
    text = _NOT_NAME.sub("_", text)
    text = re.sub("_+", "_", text).strip("_") or "id"
    return text if re.match("[A-Za-z_]", text) else f"_{text}"


def xml_ids(strategy: Strategy) -> dict[tuple[str, ...], str]:
    """The Gating-ML id of every id of ``strategy``: valid, unique NCNames.

    Keys are ``("population", id)``, ``("divider", gate id, divider id)``,
    ``("transform", id)`` (transforms and ratios) and ``("matrix", id)``. Ids that are
    already NCNames keep themselves (the first of equal ones); the others get a readable
    name (from the display name when the gate has one) with ``_2``, ``_3``... on collision.

    Parameters
    ----------
    strategy
        The strategy to be written.

    Returns
    -------
    dict
        Slot to its XML id.

    Examples
    --------
    >>> from gating import Dimension, RectangleGate, Strategy
    >>> gate = RectangleGate("/Lymphocytes/CD3+", (Dimension("FL1-H"),), ((1.0, None),))
    >>> xml_ids(Strategy(gates=(gate,)))
    {('population', '/Lymphocytes/CD3+'): 'CD3_pos'}
    """
    slots: list[tuple[tuple[str, ...], str, str]] = []  # (slot, id, readable source)
    slots += [(("matrix", m), m, m) for m in strategy.matrices]
    slots += [(("transform", t), t, t) for t in (*strategy.transforms, *strategy.ratios)]
    for gate in strategy.gates:
        slots.append((("population", gate.id), gate.id, gate.name or gate.id))
        if isinstance(gate, QuadrantGate):
            slots += [(("divider", gate.id, d.id), d.id, d.id) for d in gate.dividers]
            slots += [(("population", q.id), q.id, q.name or q.id) for q in gate.quadrants]
    ids = {sid for _, sid, _ in slots}
    taken = {k for k in strategy.notes if k not in ids}  # a note key is never a new id
    out: dict[tuple[str, ...], str] = {}
    for slot, sid, _ in slots:
        if slot not in out and is_ncname(sid) and sid not in taken:
            out[slot] = sid
            taken.add(sid)
    parents = {g.id: g.parent for g in strategy.gates}
    parents.update(
        {q.id: g.parent for g in strategy.gates if isinstance(g, QuadrantGate) for q in g.quadrants}
    )
    for slot, _, source in slots:
        if slot in out:
            continue
        base = _readable(source)
        parent = parents.get(slot[1]) if slot[0] == "population" else None
        above = out.get(("population", parent)) if parent is not None else None
        new, n = base, 1
        if new in taken and above is not None:  # CXCR3+ under CD8+ and under CD4+
            base = new = f"{above}_{base}"
        while new in taken:
            n += 1
            new = f"{base}_{n}"
        out[slot] = new
        taken.add(new)
    return out


def rename_ids(
    strategy: Strategy,
    *,
    population: Callable[[str], str],
    divider: Callable[[str, str], str],
    transform: Callable[[str], str],
    matrix: Callable[[str], str],
) -> Strategy:
    """``strategy`` with every id (and every reference to it) renamed.

    Notes keyed by a renamed population, transform or matrix follow it; channel names,
    ``"FCS"`` and ``"uncompensated"`` are kept.

    Parameters
    ----------
    strategy
        The strategy.
    population, divider, transform, matrix
        The new id of a population id; of a divider (by its gate's id and its own);
        of a transform or ratio; of a matrix.

    Returns
    -------
    Strategy
        The renamed strategy.

    Examples
    --------
    >>> from gating import Dimension, RectangleGate, Strategy
    >>> s = Strategy(gates=(RectangleGate("a b", (Dimension("FL1-H"),), ((1.0, None),)),))
    >>> same = lambda x, *rest: x
    >>> rename_ids(s, population=lambda x: x.replace(" ", "_"), divider=same, transform=same,
    ...            matrix=same).gates[0].id
    'a_b'
    """
    d = strategy.to_dict()
    comp = {m: matrix(m) for m in strategy.matrices}
    tids = {t: transform(t) for t in (*strategy.transforms, *strategy.ratios)}

    def dim(x: dict[str, Any]) -> dict[str, Any]:
        x = dict(x)
        x["compensation"] = comp.get(x["compensation"], x["compensation"])
        if x["transform"] is not None:
            x["transform"] = tids[x["transform"]]
        if x["ratio"]:
            x["name"] = tids[x["name"]]
        return x

    gates = []
    for g in d["gates"]:
        g = dict(g)
        gid = g["id"]
        g["id"] = population(gid)
        if g["parent"] is not None:
            g["parent"] = population(g["parent"])
        if "dimensions" in g:
            g["dimensions"] = [dim(x) for x in g["dimensions"]]
        if g["kind"] == "quadrant":
            g["dividers"] = [
                {**x, "id": divider(gid, x["id"]), "dimension": dim(x["dimension"])}
                for x in g["dividers"]
            ]
            g["quadrants"] = [
                {
                    **q,
                    "id": population(q["id"]),
                    "positions": [(divider(gid, r), loc) for r, loc in q["positions"]],
                }
                for q in g["quadrants"]
            ]
        if g["kind"] == "boolean":
            g["operands"] = [(population(r), c) for r, c in g["operands"]]
        gates.append(g)
    pops = set(strategy.populations())
    notes = {}
    for key, text in d["notes"].items():
        if key in pops:
            key = population(key)
        elif key in tids:
            key = tids[key]
        elif key in comp:
            key = comp[key]
        notes[key] = text
    d.update(
        gates=gates,
        notes=notes,
        transforms={tids[k]: v for k, v in d["transforms"].items()},
        ratios={tids[k]: {**v, "id": tids[k]} for k, v in d["ratios"].items()},
        matrices={comp[k]: {**v, "id": comp[k]} for k, v in d["matrices"].items()},
    )
    return strategy_from_dict(d)


class _Writer:
    """One strategy being written; notes are taken as they find their element."""

    def __init__(self, strategy: Strategy, originals: Mapping[str, str]) -> None:
        self.s = strategy
        self.notes = dict(strategy.notes)
        self.uses_pf = False
        self.originals = originals  # XML id -> the strategy's id, where they differ

    def fail(self, message: str, element: str, gate: str = "") -> GatingMLError:
        return GatingMLError(message, source=self.s.source, gate=gate, element=element)

    def info(self, key: str, ext: Iterable[_Node] = ()) -> list[_Node]:
        """A ``custom_info`` node holding the note under ``key`` (taken) and extension nodes."""
        note = self.notes.pop(key, "")
        ext_lines: list[str] = []
        for node in ext:
            self.uses_pf = True
            node.lines(0, ext_lines)
        if not note and not ext_lines:
            return []
        return [_Node("data-type:custom_info", raw=_content(note) + "".join(ext_lines))]

    def write(self) -> str:
        s = self.s
        body = [self.matrix(m) for m in s.matrices.values()]
        for tid, t in s.transforms.items():
            body.append(self.transform(tid, t))
        for rid, r in s.ratios.items():
            if rid in s.transforms:
                raise self.fail(
                    f"ratio {rid!r} and a transform share the id (Gating-ML transformation "
                    "ids are one namespace)",
                    "transforms:transformation",
                )
            body.append(self.ratio(r))
        body += [self.gate(gate) for gate in s.gates]
        # Every note with a home (gate, transform, ratio, matrix) has been taken by now.
        matching = s.channel_matching if s.channel_matching != "exact" else None
        ext = (
            [_Node(_pf("strategy"), [("name", s.name), ("channel-matching", matching)])]
            if s.name or matching
            else []
        )
        ext += [
            _Node(_pf("id"), [("ref", ref), ("original", original)])
            for ref, original in self.originals.items()
        ]
        ext += [
            _Node(_pf("note"), [("ref", key)], raw=_content(self.notes[key]))
            for key in sorted(self.notes)
            if key != ""
        ]
        head = self.info("", ext)
        attrs = [
            ("xmlns:gating", GATING_NS),
            ("xmlns:transforms", TRANSFORMS_NS),
            ("xmlns:data-type", DATATYPE_NS),
            ("xmlns:xsi", "http://www.w3.org/2001/XMLSchema-instance"),
        ]
        if self.uses_pf:
            attrs.append(("xmlns:phenoflow", PHENOFLOW_NS))
        attrs.append(("xsi:schemaLocation", _SCHEMA_LOCATION))
        out = ['<?xml version="1.0" encoding="UTF-8"?>']
        _Node("gating:Gating-ML", attrs, head + body).lines(0, out)
        return "\n".join(out) + "\n"

    # -- transforms and matrices ------------------------------------------------------------
    def transform(self, tid: str, t: Transform) -> _Node:
        spec = _WRITERS.get(type(t))
        if spec is None:
            users = [
                g.id
                for g in self.s.gates
                for d in (
                    [v.dimension for v in g.dividers]
                    if isinstance(g, QuadrantGate)
                    else getattr(g, "dimensions", ())
                )
                if d.transform == tid
            ]
            raise self.fail(
                f"transform {tid!r} ({type(t).__name__}, kind {t.kind!r}) cannot be expressed in "
                "Gating-ML 2.0 (only flin, flog, fasinh, logicle and hyperlog)",
                "transforms:transformation",
                users[0] if users else "",
            )
        element, params = spec
        func = _Node(
            f"transforms:{element}",
            [(f"transforms:{x}", getattr(t, f)) for x, f in params],
            self.info(tid),
        )
        bounds = [("transforms:boundMin", t.bound_min), ("transforms:boundMax", t.bound_max)]
        return _Node("transforms:transformation", [("transforms:id", tid), *bounds], [func])

    def ratio(self, r: Ratio) -> _Node:
        dims = [
            _Node("data-type:fcs-dimension", [("data-type:name", n)])
            for n in (r.numerator, r.denominator)
        ]
        abc = [("transforms:A", r.a), ("transforms:B", r.b), ("transforms:C", r.c)]
        func = _Node("transforms:fratio", abc, self.info(r.id) + dims)
        bounds = [("transforms:boundMin", r.bound_min), ("transforms:boundMax", r.bound_max)]
        return _Node("transforms:transformation", [("transforms:id", r.id), *bounds], [func])

    def matrix(self, m: Matrix) -> _Node:
        def labels(tag: str, names: tuple[str, ...]) -> _Node:
            return _Node(
                tag, (), [_Node("data-type:fcs-dimension", [("data-type:name", n)]) for n in names]
            )

        spectra = [
            _Node(
                "transforms:spectrum",
                (),
                [_Node("transforms:coefficient", [("transforms:value", v)]) for v in row],
            )
            for row in m.values
        ]
        attrs = [
            ("transforms:id", m.id),
            ("transforms:matrix-inverted-already", True if m.inverted else None),
        ]
        children = [
            *self.info(m.id),
            labels("transforms:fluorochromes", m.fluorochromes),
            labels("transforms:detectors", m.detectors),
            *spectra,
        ]
        return _Node("transforms:spectrumMatrix", attrs, children)

    # -- gates ------------------------------------------------------------------------------
    def dimension(
        self,
        tag: str,
        dim: Dimension,
        attrs: Iterable[tuple[str, Any]] = (),
        values: Iterable[float] = (),
    ) -> _Node:
        axis = (
            _Node("data-type:new-dimension", [("data-type:transformation-ref", dim.name)])
            if dim.ratio
            else _Node("data-type:fcs-dimension", [("data-type:name", dim.name)])
        )
        base = [
            ("gating:compensation-ref", dim.compensation),
            ("gating:transformation-ref", dim.transform),
        ]
        split = [_Node("gating:value", raw=_num(v)) for v in values]
        return _Node(
            tag, [*attrs, *base] if tag == "gating:divider" else [*base, *attrs], [axis, *split]
        )

    def gate(self, gate: Gate) -> _Node:
        if isinstance(gate, RectangleGate | QuadrantGate) and gate.inclusive != "min":
            raise self.fail(
                "this gate counts events with min < x <= max (FlowJo's convention); Gating-ML "
                "2.0 defines min <= x < max, so a reader would count events on a bound "
                "differently. Write it as phenoflow YAML (write_strategy_yaml), which keeps the "
                "convention",
                f"gating:{type(gate).__name__}", gate.id,
            )
        names = [(gate.id, gate.name)]
        if isinstance(gate, QuadrantGate):
            names += [(q.id, q.name) for q in gate.quadrants]
        ext = [
            _Node(_pf("name"), [("ref", ref)], raw=_text(name))
            for ref, name in names
            if name is not None
        ]
        kind = type(gate).__name__
        attrs = [("gating:id", gate.id), ("gating:parent_id", gate.parent)]
        return _Node(f"gating:{kind}", attrs, self.info(gate.id, ext) + self.body(gate))

    def body(self, gate: Gate) -> list[_Node]:
        def coords(tag: str, values: Iterable[float], child: str = "gating:coordinate") -> _Node:
            return _Node(tag, (), [_Node(child, [("data-type:value", v)]) for v in values])

        if isinstance(gate, RectangleGate):
            return [
                self.dimension("gating:dimension", d, [("gating:min", lo), ("gating:max", hi)])
                for d, (lo, hi) in zip(gate.dimensions, gate.bounds, strict=True)
            ]
        if isinstance(gate, PolygonGate):
            return [self.dimension("gating:dimension", d) for d in gate.dimensions] + [
                coords("gating:vertex", v) for v in gate.vertices
            ]
        if isinstance(gate, EllipsoidGate):
            if len(gate.dimensions) < 2:
                raise self.fail(
                    "Gating-ML 2.0 ellipsoids need at least two dimensions",
                    "gating:EllipsoidGate",
                    gate.id,
                )
            return [
                *(self.dimension("gating:dimension", d) for d in gate.dimensions),
                coords("gating:mean", gate.mean),
                _Node(
                    "gating:covarianceMatrix",
                    (),
                    [coords("gating:row", r, "gating:entry") for r in gate.covariance],
                ),
                _Node("gating:distanceSquare", [("data-type:value", gate.distance_square)]),
            ]
        if isinstance(gate, QuadrantGate):
            out = [
                self.dimension("gating:divider", d.dimension, [("gating:id", d.id)], d.values)
                for d in gate.dividers
            ]
            for q in gate.quadrants:
                if not q.positions:
                    raise self.fail(
                        f"quadrant {q.id!r} has no position (Gating-ML requires one)",
                        "gating:Quadrant",
                        gate.id,
                    )
                pos = [
                    _Node(
                        "gating:position", [("gating:divider_ref", ref), ("gating:location", loc)]
                    )
                    for ref, loc in q.positions
                ]
                out.append(_Node("gating:Quadrant", [("gating:id", q.id)], pos))
            return out
        refs = [
            _Node(
                "gating:gateReference",
                [("gating:ref", ref), ("gating:use-as-complement", True if c else None)],
            )
            for ref, c in gate.operands
        ]
        return [_Node(f"gating:{gate.op}", (), refs)]


def render(strategy: Strategy) -> str:
    """The Gating-ML 2.0 document of ``strategy`` (see :func:`gating._gatingml._api.write_gatingml`).

    Parameters
    ----------
    strategy
        The strategy.

    Returns
    -------
    str
        The document, starting with the XML declaration.
    """
    slots = xml_ids(strategy)
    originals = {new: slot[-1] for slot, new in slots.items() if new != slot[-1]}
    renamed = strategy
    if originals:
        renamed = rename_ids(
            strategy,
            population=lambda x: slots[("population", x)],
            divider=lambda g, x: slots[("divider", g, x)],
            transform=lambda x: slots[("transform", x)],
            matrix=lambda x: slots[("matrix", x)],
        )
    try:
        return _Writer(renamed, originals).write()
    except GatingMLError as exc:
        gate = originals.get(exc.gate, exc.gate)
        if exc.source or not strategy.source:
            if gate == exc.gate:
                raise
            raise GatingMLError(
                exc.detail, source=exc.source, gate=gate, element=exc.element
            ) from exc
        raise GatingMLError(
            exc.detail, source=strategy.source, gate=gate, element=exc.element
        ) from exc
