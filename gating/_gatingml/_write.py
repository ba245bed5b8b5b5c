"""Gating-ML 2.0 output: the writer behind :func:`gating._gatingml._api.write_gatingml`.

Builds the document from small :class:`_Node` trees and serialises them with four-space
indentation. Numbers are written with ``repr`` (they read back to the same float); notes go
verbatim when they are XML that reads back to the same string, else as escaped text. Display
names, the strategy name and notes with no Gating-ML home (quadrants) go into phenoflow
extension elements inside ``custom_info`` (see :mod:`gating._gatingml._api`).
"""

from __future__ import annotations

import math
import re
from collections.abc import Iterable
from typing import Any
from xml.etree.ElementTree import ParseError
from xml.sax.saxutils import escape, quoteattr

import defusedxml.ElementTree as safe_et
from defusedxml import DefusedXmlException

from gating._gatingml._xml import (
    DATATYPE_NS,
    GATING_NS,
    PHENOFLOW_NS,
    TRANSFORMS_NS,
    GatingMLError,
    inner_xml,
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
)
from gating._transforms import Asinh, Hyperlog, Linear, Log, Logicle, Transform

__all__ = ["render"]

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
    return quoteattr(_checked(str(value)), {"\r": "&#13;", "\n": "&#10;", "\t": "&#9;"})


def _num(value: float) -> str:
    value = float(value)
    if not math.isfinite(value):
        raise GatingMLError(f"{value!r} cannot be written in Gating-ML (finite numbers only)")
    return repr(value)


def _text(text: str) -> str:
    return escape(_checked(text)).replace("\r", "&#13;")


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


class _Writer:
    """One strategy being written; notes are taken as they find their element."""

    def __init__(self, strategy: Strategy) -> None:
        self.s = strategy
        self.notes = dict(strategy.notes)
        self.uses_pf = False

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
        ext = [_Node(_pf("strategy"), [("name", s.name)])] if s.name else []
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
            raise self.fail(
                f"transform {tid!r} ({type(t).__name__}, kind {t.kind!r}) cannot be expressed in "
                "Gating-ML 2.0 (only flin, flog, fasinh, logicle and hyperlog)",
                "transforms:transformation",
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
    try:
        return _Writer(strategy).write()
    except GatingMLError as exc:
        if exc.source or not strategy.source:
            raise
        raise GatingMLError(
            exc.detail, source=strategy.source, gate=exc.gate, element=exc.element
        ) from exc
