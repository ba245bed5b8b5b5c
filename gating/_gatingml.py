"""Gating-ML 2.0 input and output: :func:`read_gatingml` and :func:`write_gatingml`.

The reader covers the whole Gating-ML 2.0 specification (Spidlen et al., ISAC 2013) and maps
it onto the neutral :class:`~gating._strategy.Strategy` model:

* ``RectangleGate`` (``min``/``max`` optional per dimension), ``PolygonGate``,
  ``EllipsoidGate``, ``QuadrantGate`` (dividers with any number of split values, quadrants by
  ``position``/``location``) and ``BooleanGate`` (``and``/``or``/``not`` over gate
  references, each optionally ``use-as-complement``); ``parent_id`` on any gate;
* dimensions on an FCS channel (``fcs-dimension``), on a ratio (``new-dimension`` naming an
  ``fratio`` transformation), with a ``compensation-ref`` (``uncompensated``, ``FCS`` or a
  ``spectrumMatrix`` id) and an optional ``transformation-ref``; names are kept as written
  (a name may be a fluorochrome of the referenced matrix; :func:`gating.compile_plan`
  resolves that);
* ``transformation`` elements (``flin``, ``flog``, ``fasinh``, ``logicle``, ``hyperlog`` and
  ``fratio``) with their ``boundMin``/``boundMax``, and ``spectrumMatrix`` elements (square or
  not, ``matrix-inverted-already`` or not);
* ``custom_info`` on the document, a gate, a transformation or a matrix becomes
  :attr:`Strategy.notes` under ``""``, the gate id, the transformation id or the matrix id:
  its content as a string (plain text when it holds only text, else the inner XML), with
  surrounding white space stripped.

Gating-ML has no display names, so phenoflow keeps what it needs for exact round trips in its
own namespace (:data:`PHENOFLOW_NS`) inside ``custom_info`` elements, which the schema allows
to hold anything: ``<phenoflow:strategy name=...>`` and ``<phenoflow:note ref=...>`` (notes on
quadrants, which cannot carry ``custom_info``) in the document's ``custom_info``, and
``<phenoflow:name ref=...>`` (the gate's or a quadrant's display name) in a gate's. Other
readers ignore them.

Input is parsed with :mod:`defusedxml`: a document type declaration (and with it entity
expansion, external entities and external DTDs) is refused with :class:`GatingMLError`, and
nothing is ever fetched. Every error names the file, the element and, where there is one, the
gate id.
"""

from __future__ import annotations

import dataclasses
import logging
import math
import os
import re
from collections.abc import Callable, Iterable, Mapping
from pathlib import Path
from typing import Literal
from xml.etree.ElementTree import Element, ParseError, tostring
from xml.sax.saxutils import escape

import defusedxml.ElementTree as safe_et
from defusedxml import DefusedXmlException, DTDForbidden

from gating._strategy import (
    FILE_SPILLOVER,
    UNCOMPENSATED,
    BooleanGate,
    Dimension,
    Divider,
    EllipsoidGate,
    Gate,
    Matrix,
    PolygonGate,
    Quadrant,
    QuadrantGate,
    Ratio,
    RectangleGate,
    Strategy,
    StrategyError,
)
from gating._transforms import Transform
from gating._transforms import transform_from_gatingml as _transform_from_gatingml

__all__ = [
    "DATATYPE_NS",
    "GATING_NS",
    "PHENOFLOW_NS",
    "TRANSFORMS_NS",
    "GatingMLError",
    "read_gatingml",
    "write_gatingml",
]

logger = logging.getLogger(__name__)

GATING_NS = "http://www.isac-net.org/std/Gating-ML/v2.0/gating"
TRANSFORMS_NS = "http://www.isac-net.org/std/Gating-ML/v2.0/transformations"
DATATYPE_NS = "http://www.isac-net.org/std/Gating-ML/v2.0/datatypes"
#: phenoflow's extension namespace (a URN: nothing to fetch).
PHENOFLOW_NS = "urn:phenoflow:gating-ml:1"

_PREFIX = {GATING_NS: "gating", TRANSFORMS_NS: "transforms", DATATYPE_NS: "data-type"}
_GML = frozenset(_PREFIX)
_GATES = ("RectangleGate", "PolygonGate", "EllipsoidGate", "QuadrantGate", "BooleanGate")
_DOUBLE = re.compile(r"[+-]?(?:\d+(?:\.\d*)?|\.\d+)(?:[eE][+-]?\d+)?")
_BOOL = {"true": True, "1": True, "false": False, "0": False}


class GatingMLError(StrategyError):
    """A Gating-ML document is hostile, malformed, or cannot be mapped (or written).

    Parameters
    ----------
    message
        What is wrong.
    source
        The file (or the ``source`` given for bytes).
    gate
        The gate id concerned, when there is one.
    element
        The element concerned, e.g. ``gating:RectangleGate/gating:dimension[2]``.
    """

    def __init__(
        self, message: str, *, source: str = "", gate: str = "", element: str = ""
    ) -> None:
        super().__init__(message, source=source, gate=gate)
        self.element = element
        where = " ".join(
            x
            for x in (source, f"gate {gate!r}" if gate else "", f"<{element}>" if element else "")
            if x
        )
        self.args = (f"{where}: {message}" if where else message,)

    def __reduce__(self):  # keep the keyword arguments across process boundaries
        return (_rebuild, (type(self), self.detail, self.source, self.gate, self.element))


def _rebuild(
    cls: type[GatingMLError], message: str, source: str, gate: str, element: str
) -> GatingMLError:
    return cls(message, source=source, gate=gate, element=element)


# ---------------------------------------------------------------------------------------------
# Reading
# ---------------------------------------------------------------------------------------------


def _split(tag: str) -> tuple[str, str]:
    if tag.startswith("{"):
        ns, local = tag[1:].split("}", 1)
        return ns, local
    return "", tag


def _qname(tag: str) -> str:
    ns, local = _split(tag)
    prefix = _PREFIX.get(ns, "phenoflow" if ns == PHENOFLOW_NS else ns)
    return f"{prefix}:{local}" if prefix else local


def _is(el: Element, ns: str, *names: str) -> bool:
    el_ns, local = _split(el.tag)
    return el_ns == ns and local in names


def _inner(el: Element, *, skip: Callable[[Element], bool] = lambda _: False) -> str:
    """Content of ``el`` as a string: its text when it holds no element, else its inner XML."""
    kids = [k for k in el if not skip(k)]
    if not kids:
        return ((el.text or "") + "".join(k.tail or "" for k in el)).strip()
    parts = [escape(el.text or "")]
    for k in el:
        parts.append(escape(k.tail or "") if skip(k) else tostring(k, encoding="unicode"))
    return "".join(parts).strip()


class _Reader:
    """One document being read: the collected transforms, matrices, notes and gates."""

    def __init__(self, source: str) -> None:
        self.source = source
        self.transforms: dict[str, Transform] = {}
        self.ratios: dict[str, Ratio] = {}
        self.matrices: dict[str, Matrix] = {}
        self.notes: dict[str, str] = {}
        self.name = ""

    # -- errors and attributes --------------------------------------------------------------
    def fail(self, message: str, where: str, gate: str = "") -> GatingMLError:
        return GatingMLError(message, source=self.source, gate=gate, element=where)

    def attr(
        self, el: Element, name: str, where: str, gate: str = "", *, required: bool = True
    ) -> str | None:
        for key, value in el.attrib.items():
            ns, local = _split(key)
            if local == name and (ns in _GML or not ns):
                return value
        if required:
            raise self.fail(f"missing required attribute {name!r}", where, gate)
        return None

    def number(self, text: str | None, what: str, where: str, gate: str = "") -> float:
        s = (text or "").strip()
        value = float(s) if _DOUBLE.fullmatch(s) else math.nan
        if not math.isfinite(value):
            raise self.fail(
                f"malformed number {text!r} for {what} (a finite decimal is required)", where, gate
            )
        return value

    def num_attr(self, el: Element, name: str, where: str, gate: str = "") -> float:
        text = self.attr(el, name, where, gate)
        return self.number(text, name, where, gate)

    def opt_num(self, el: Element, name: str, where: str, gate: str = "") -> float | None:
        text = self.attr(el, name, where, gate, required=False)
        return None if text is None else self.number(text, name, where, gate)

    def flag(self, el: Element, name: str, where: str, gate: str = "") -> bool:
        text = self.attr(el, name, where, gate, required=False)
        if text is None:
            return False
        if text.strip() not in _BOOL:
            raise self.fail(f"malformed boolean {text!r} for {name}", where, gate)
        return _BOOL[text.strip()]

    def children(
        self, el: Element, where: str, gate: str, allowed: Mapping[str, tuple[str, ...]]
    ) -> dict[str, list[Element]]:
        """Group children by local name; anything not in ``allowed`` (ns -> names) raises."""
        out: dict[str, list[Element]] = {}
        for child in el:
            ns, local = _split(child.tag)
            if local not in allowed.get(ns, ()):
                raise self.fail(f"unexpected element <{_qname(child.tag)}>", where, gate)
            out.setdefault(local, []).append(child)
        return out

    def note(self, key: str, text: str, where: str, gate: str = "") -> None:
        if not text:
            return
        if key in self.notes:
            raise self.fail(f"a second custom_info for id {key!r}", where, gate)
        self.notes[key] = text

    def custom_info(self, el: Element, key: str, where: str, gate: str = "") -> list[Element]:
        """Record the note of a ``custom_info``; return its phenoflow extension elements."""
        ext = [k for k in el if _split(k.tag)[0] == PHENOFLOW_NS]
        self.note(key, _inner(el, skip=lambda k: _split(k.tag)[0] == PHENOFLOW_NS), where, gate)
        return ext

    # -- document ---------------------------------------------------------------------------
    def read(self, root: Element) -> Strategy:
        ns, local = _split(root.tag)
        if local != "Gating-ML" or ns != GATING_NS:
            raise self.fail(
                f"the root element must be Gating-ML in namespace {GATING_NS}", _qname(root.tag)
            )
        gates: list[tuple[Element, str]] = []
        seen: dict[str, int] = {}
        for child in root:
            ns, local = _split(child.tag)
            seen[child.tag] = seen.get(child.tag, 0) + 1
            where = f"{_qname(child.tag)}[{seen[child.tag]}]"  # an XPath step
            if ns == DATATYPE_NS and local == "custom_info":
                self.document_extensions(self.custom_info(child, "", where), where)
            elif ns == TRANSFORMS_NS and local == "transformation":
                self.transformation(child, where)
            elif ns == TRANSFORMS_NS and local == "spectrumMatrix":
                self.matrix(child, where)
            elif ns == GATING_NS and local in _GATES:
                gates.append((child, where))
            elif ns == GATING_NS:
                raise self.fail(f"unknown gate type {local!r}", where)
            elif ns in _GML:
                raise self.fail(f"unknown Gating-ML element {local!r} at the top level", where)
            else:
                logger.debug("%s: ignoring extension element <%s>", self.source, child.tag)
        names: dict[str, str] = {}
        built = [self.gate(el, where, names) for el, where in gates]
        built = [_named(g, names) for g in built]
        try:
            return Strategy(
                gates=tuple(built),
                transforms=self.transforms,
                ratios=self.ratios,
                matrices=self.matrices,
                name=self.name,
                source=self.source,
                notes=self.notes,
            )
        except GatingMLError:
            raise
        except StrategyError as exc:
            raise GatingMLError(exc.detail, source=self.source, gate=exc.gate) from exc

    def document_extensions(self, ext: list[Element], where: str) -> None:
        for el in ext:
            if _is(el, PHENOFLOW_NS, "strategy"):
                self.name = self.attr(el, "name", where) or ""
            elif _is(el, PHENOFLOW_NS, "note"):
                self.note(self.attr(el, "ref", where) or "", _inner(el), where)
            else:
                raise self.fail(f"unknown phenoflow extension <{_qname(el.tag)}>", where)

    # -- transformations and matrices -------------------------------------------------------
    def transformation(self, el: Element, where: str) -> None:
        tid = self.attr(el, "id", where) or ""
        if tid in self.transforms or tid in self.ratios:
            raise self.fail(f"duplicate transformation id {tid!r}", where)
        lo = self.opt_num(el, "boundMin", where)
        hi = self.opt_num(el, "boundMax", where)
        if lo is not None and hi is not None and lo > hi:
            raise self.fail(f"transformation {tid!r}: boundMin {lo} exceeds boundMax {hi}", where)
        funcs = [c for c in el if not _is(c, DATATYPE_NS, "custom_info")]
        for c in el:
            if _is(c, DATATYPE_NS, "custom_info"):
                self.custom_info(c, tid, f"{where}/{_qname(c.tag)}")
        if len(funcs) != 1 or _split(funcs[0].tag)[0] != TRANSFORMS_NS:
            found = ", ".join(_qname(c.tag) for c in funcs) or "nothing"
            raise self.fail(
                f"transformation {tid!r} needs exactly one transforms:* function, found {found}",
                where,
            )
        func = funcs[0]
        name = _split(func.tag)[1]
        fwhere = f"{where}/{_qname(func.tag)}"
        kids = self.children(func, fwhere, "", {DATATYPE_NS: ("custom_info", "fcs-dimension")})
        for info in kids.get("custom_info", []):
            self.custom_info(info, tid, f"{fwhere}/data-type:custom_info")
        if name == "fratio":
            dims = kids.get("fcs-dimension", [])
            if len(dims) != 2:
                raise self.fail(
                    f"fratio {tid!r} needs exactly two fcs-dimension elements, found {len(dims)}",
                    fwhere,
                )
            num, den = (
                self.attr(d, "name", f"{fwhere}/data-type:fcs-dimension") or "" for d in dims
            )
            a, b, c = (self.num_attr(func, k, fwhere) for k in ("A", "B", "C"))
            self.ratios[tid] = Ratio(
                id=tid, numerator=num, denominator=den, a=a, b=b, c=c, bound_min=lo, bound_max=hi
            )
            return
        if "fcs-dimension" in kids:
            raise self.fail(f"unexpected data-type:fcs-dimension in {name}", fwhere)
        attrs = {}
        for key, value in func.attrib.items():
            local = _split(key)[1]
            attrs[local] = (
                repr(self.number(value, local, fwhere)) if local in {"T", "W", "M", "A"} else value
            )
        try:
            self.transforms[tid] = _transform_from_gatingml(name, attrs, bound_min=lo, bound_max=hi)
        except ValueError as exc:
            raise self.fail(f"transformation {tid!r}: {exc}", fwhere) from exc

    def matrix(self, el: Element, where: str) -> None:
        mid = self.attr(el, "id", where) or ""
        if mid in self.matrices:
            raise self.fail(f"duplicate spectrumMatrix id {mid!r}", where)
        inverted = self.flag(el, "matrix-inverted-already", where)
        kids = self.children(
            el,
            where,
            "",
            {
                DATATYPE_NS: ("custom_info",),
                TRANSFORMS_NS: ("fluorochromes", "detectors", "spectrum"),
            },
        )
        for info in kids.get("custom_info", []):
            self.custom_info(info, mid, f"{where}/data-type:custom_info")
        labels: dict[str, tuple[str, ...]] = {}
        for part in ("fluorochromes", "detectors"):
            pwhere = f"{where}/transforms:{part}"
            if len(kids.get(part, [])) != 1:
                raise self.fail(
                    f"spectrumMatrix {mid!r} needs exactly one transforms:{part}", pwhere
                )
            dims = self.children(kids[part][0], pwhere, "", {DATATYPE_NS: ("fcs-dimension",)}).get(
                "fcs-dimension", []
            )
            labels[part] = tuple(
                self.attr(d, "name", f"{pwhere}/data-type:fcs-dimension") or "" for d in dims
            )
            if not labels[part]:
                raise self.fail(f"spectrumMatrix {mid!r} lists no {part}", pwhere)
        rows = []
        for r, spectrum in enumerate(kids.get("spectrum", []), 1):
            swhere = f"{where}/transforms:spectrum[{r}]"
            coeffs = self.children(spectrum, swhere, "", {TRANSFORMS_NS: ("coefficient",)}).get(
                "coefficient", []
            )
            rows.append(
                tuple(self.num_attr(c, "value", f"{swhere}/transforms:coefficient") for c in coeffs)
            )
        fl, det = labels["fluorochromes"], labels["detectors"]
        n_rows, n_cols = (len(det), len(fl)) if inverted else (len(fl), len(det))
        if len(rows) != n_rows or any(len(row) != n_cols for row in rows):
            shape = (
                "detectors x fluorochromes (matrix-inverted-already)"
                if inverted
                else "fluorochromes x detectors"
            )
            found = (
                f"{len(rows)} spectra of "
                + "/".join(sorted({str(len(row)) for row in rows}))
                + " coefficients"
            )
            raise self.fail(
                f"spectrumMatrix {mid!r} must be {n_rows} x {n_cols} ({shape}); found {found}",
                where,
            )
        self.matrices[mid] = Matrix(
            id=mid, fluorochromes=fl, detectors=det, values=tuple(rows), inverted=inverted
        )

    # -- gates ------------------------------------------------------------------------------
    def dimension(
        self, el: Element, where: str, gate: str, *, extra: tuple[str, ...] = ()
    ) -> Dimension:
        comp = self.attr(el, "compensation-ref", where, gate) or ""
        if comp not in (UNCOMPENSATED, FILE_SPILLOVER) and comp not in self.matrices:
            raise self.fail(
                f"unknown compensation-ref {comp!r} (not 'uncompensated', 'FCS' or a spectrumMatrix id)",
                where,
                gate,
            )
        tref = self.attr(el, "transformation-ref", where, gate, required=False)
        if tref is not None and tref not in self.transforms:
            kind = "an fratio (use data-type:new-dimension)" if tref in self.ratios else "unknown"
            raise self.fail(f"transformation-ref {tref!r} is {kind}", where, gate)
        kids = self.children(
            el, where, gate, {DATATYPE_NS: ("fcs-dimension", "new-dimension"), GATING_NS: extra}
        )
        axes = kids.get("fcs-dimension", []) + kids.get("new-dimension", [])
        if len(axes) != 1:
            raise self.fail(
                f"needs exactly one fcs-dimension or new-dimension, found {len(axes)}", where, gate
            )
        axis = axes[0]
        awhere = f"{where}/{_qname(axis.tag)}"
        if _is(axis, DATATYPE_NS, "fcs-dimension"):
            name = self.attr(axis, "name", awhere, gate) or ""
            if not name:
                raise self.fail("empty fcs-dimension name", awhere, gate)
            return Dimension(name=name, compensation=comp, transform=tref)
        ref = self.attr(axis, "transformation-ref", awhere, gate) or ""
        if ref not in self.ratios:
            kind = "not an fratio transformation" if ref in self.transforms else "unknown"
            raise self.fail(f"new-dimension transformation-ref {ref!r} is {kind}", awhere, gate)
        return Dimension(name=ref, compensation=comp, transform=tref, ratio=True)

    def values(self, els: Iterable[Element], name: str, where: str, gate: str) -> tuple[float, ...]:
        return tuple(
            self.num_attr(c, "value", f"{where}/{name}[{i}]", gate) for i, c in enumerate(els, 1)
        )

    def gate(self, el: Element, where: str, names: dict[str, str]) -> Gate:
        kind = _split(el.tag)[1]
        gid = self.attr(el, "id", where) or ""
        parent = self.attr(el, "parent_id", where, gid, required=False)
        body = {
            "RectangleGate": ("dimension",),
            "PolygonGate": ("dimension", "vertex"),
            "EllipsoidGate": ("dimension", "mean", "covarianceMatrix", "distanceSquare"),
            "QuadrantGate": ("divider", "Quadrant"),
            "BooleanGate": ("and", "or", "not"),
        }[kind]
        kids = self.children(el, where, gid, {DATATYPE_NS: ("custom_info",), GATING_NS: body})
        for info in kids.pop("custom_info", []):
            iwhere = f"{where}/data-type:custom_info"
            for ext in self.custom_info(info, gid, iwhere, gid):
                if not _is(ext, PHENOFLOW_NS, "name"):
                    raise self.fail(f"unknown phenoflow extension <{_qname(ext.tag)}>", iwhere, gid)
                ref = self.attr(ext, "ref", iwhere, gid) or ""
                if ref in names:
                    raise self.fail(f"a second name for {ref!r}", iwhere, gid)
                names[ref] = ext.text or ""
        build = getattr(self, f"_{kind}")
        return build(kids, where, gid, parent)

    def dims(self, kids: dict[str, list[Element]], where: str, gid: str) -> tuple[Dimension, ...]:
        return tuple(
            self.dimension(d, f"{where}/gating:dimension[{i}]", gid)
            for i, d in enumerate(kids.get("dimension", []), 1)
        )

    def _RectangleGate(
        self, kids: dict[str, list[Element]], where: str, gid: str, parent: str | None
    ) -> Gate:
        dims = self.dims(kids, where, gid)
        if not dims:
            raise self.fail("a RectangleGate needs at least one gating:dimension", where, gid)
        bounds = []
        for i, d in enumerate(kids["dimension"], 1):
            dwhere = f"{where}/gating:dimension[{i}]"
            lo, hi = (self.opt_num(d, k, dwhere, gid) for k in ("min", "max"))
            if lo is not None and hi is not None and lo > hi:
                raise self.fail(f"min {lo!r} is above max {hi!r}", dwhere, gid)
            bounds.append((lo, hi))
        return RectangleGate(id=gid, dimensions=dims, bounds=tuple(bounds), parent=parent)

    def _PolygonGate(
        self, kids: dict[str, list[Element]], where: str, gid: str, parent: str | None
    ) -> Gate:
        dims = self.dims(kids, where, gid)
        if len(dims) != 2:
            raise self.fail(
                f"a PolygonGate needs exactly two gating:dimension elements, found {len(dims)}",
                where,
                gid,
            )
        vertices = []
        for i, v in enumerate(kids.get("vertex", []), 1):
            vwhere = f"{where}/gating:vertex[{i}]"
            coords = self.children(v, vwhere, gid, {GATING_NS: ("coordinate",)}).get(
                "coordinate", []
            )
            if len(coords) != 2:
                raise self.fail(
                    f"a vertex needs exactly two gating:coordinate elements, found {len(coords)}",
                    vwhere,
                    gid,
                )
            vertices.append(self.values(coords, "gating:coordinate", vwhere, gid))
        if len(vertices) < 3:
            raise self.fail(
                f"a PolygonGate needs at least three gating:vertex elements, found {len(vertices)}",
                where,
                gid,
            )
        xy = tuple((x, y) for x, y in vertices)
        return PolygonGate(id=gid, dimensions=(dims[0], dims[1]), vertices=xy, parent=parent)

    def _one(self, kids: dict[str, list[Element]], name: str, where: str, gid: str) -> Element:
        found = kids.get(name, [])
        if len(found) != 1:
            raise self.fail(f"needs exactly one gating:{name}, found {len(found)}", where, gid)
        return found[0]

    def _EllipsoidGate(
        self, kids: dict[str, list[Element]], where: str, gid: str, parent: str | None
    ) -> Gate:
        dims = self.dims(kids, where, gid)
        n = len(dims)
        if n < 1:
            raise self.fail("an EllipsoidGate needs gating:dimension elements", where, gid)
        mwhere = f"{where}/gating:mean"
        mean_el = self.children(
            self._one(kids, "mean", where, gid), mwhere, gid, {GATING_NS: ("coordinate",)}
        )
        mean = self.values(mean_el.get("coordinate", []), "gating:coordinate", mwhere, gid)
        if len(mean) != n:
            raise self.fail(f"the mean has {len(mean)} coordinates for {n} dimensions", mwhere, gid)
        cwhere = f"{where}/gating:covarianceMatrix"
        rows_el = self.children(
            self._one(kids, "covarianceMatrix", where, gid), cwhere, gid, {GATING_NS: ("row",)}
        )
        cov = []
        for i, row in enumerate(rows_el.get("row", []), 1):
            rwhere = f"{cwhere}/gating:row[{i}]"
            entries = self.children(row, rwhere, gid, {GATING_NS: ("entry",)}).get("entry", [])
            cov.append(self.values(entries, "gating:entry", rwhere, gid))
        if len(cov) != n or any(len(r) != n for r in cov):
            raise self.fail(f"the covariance matrix must be {n} x {n}", cwhere, gid)
        dwhere = f"{where}/gating:distanceSquare"
        d2 = self.num_attr(self._one(kids, "distanceSquare", where, gid), "value", dwhere, gid)
        if not d2 or d2 <= 0:
            raise self.fail(f"distanceSquare must be positive, got {d2!r}", dwhere, gid)
        return EllipsoidGate(
            id=gid,
            dimensions=dims,
            mean=mean,
            covariance=tuple(cov),
            distance_square=d2,
            parent=parent,
        )

    def _QuadrantGate(
        self, kids: dict[str, list[Element]], where: str, gid: str, parent: str | None
    ) -> Gate:
        dividers: dict[str, Divider] = {}
        for i, d in enumerate(kids.get("divider", []), 1):
            dwhere = f"{where}/gating:divider[{i}]"
            did = self.attr(d, "id", dwhere, gid) or ""
            if did in dividers:
                raise self.fail(f"duplicate divider id {did!r}", dwhere, gid)
            dim = self.dimension(d, dwhere, gid, extra=("value",))
            values = [
                self.number(v.text, "gating:value", f"{dwhere}/gating:value", gid)
                for v in d
                if _is(v, GATING_NS, "value")
            ]
            if not values:
                raise self.fail(f"divider {did!r} has no gating:value", dwhere, gid)
            dividers[did] = Divider(id=did, dimension=dim, values=tuple(sorted(values)))
        quadrants = []
        for i, q in enumerate(kids.get("Quadrant", []), 1):
            qwhere = f"{where}/gating:Quadrant[{i}]"
            qid = self.attr(q, "id", qwhere, gid) or ""
            positions: dict[str, float] = {}
            for j, p in enumerate(
                self.children(q, qwhere, gid, {GATING_NS: ("position",)}).get("position", []), 1
            ):
                pwhere = f"{qwhere}/gating:position[{j}]"
                ref = self.attr(p, "divider_ref", pwhere, gid) or ""
                if ref not in dividers:
                    raise self.fail(
                        f"quadrant {qid!r} refers to unknown divider {ref!r}", pwhere, gid
                    )
                if ref in positions:
                    raise self.fail(
                        f"quadrant {qid!r} has two positions on divider {ref!r}", pwhere, gid
                    )
                positions[ref] = self.num_attr(p, "location", pwhere, gid)
            if not positions:
                raise self.fail(f"quadrant {qid!r} has no gating:position", qwhere, gid)
            quadrants.append(Quadrant(id=qid, positions=tuple(positions.items())))
        if not dividers or not quadrants:
            raise self.fail(
                "a QuadrantGate needs gating:divider and gating:Quadrant elements", where, gid
            )
        return QuadrantGate(
            id=gid, dividers=tuple(dividers.values()), quadrants=tuple(quadrants), parent=parent
        )

    def _BooleanGate(
        self, kids: dict[str, list[Element]], where: str, gid: str, parent: str | None
    ) -> Gate:
        names: tuple[Literal["and", "or", "not"], ...] = ("and", "or", "not")
        ops = [(op, el) for op in names for el in kids.get(op, [])]
        if len(ops) != 1:
            raise self.fail(
                "a BooleanGate needs exactly one of gating:and, gating:or, gating:not", where, gid
            )
        op, el = ops[0]
        owhere = f"{where}/gating:{op}"
        refs = self.children(el, owhere, gid, {GATING_NS: ("gateReference",)}).get(
            "gateReference", []
        )
        need = "exactly one" if op == "not" else "at least two"
        if (op == "not") != (len(refs) == 1) or not refs:
            raise self.fail(
                f"'{op}' needs {need} gating:gateReference, found {len(refs)}", owhere, gid
            )
        operands = []
        for i, r in enumerate(refs, 1):
            rwhere = f"{owhere}/gating:gateReference[{i}]"
            operands.append(
                (
                    self.attr(r, "ref", rwhere, gid) or "",
                    self.flag(r, "use-as-complement", rwhere, gid),
                )
            )
        return BooleanGate(id=gid, op=op, operands=tuple(operands), parent=parent)


def _named(gate: Gate, names: Mapping[str, str]) -> Gate:
    """Apply phenoflow display names (``ref`` -> name) to a gate and its quadrants."""
    if isinstance(gate, QuadrantGate):
        quadrants = tuple(
            dataclasses.replace(q, name=names.get(q.id, q.name)) for q in gate.quadrants
        )
        gate = dataclasses.replace(gate, quadrants=quadrants)
    return dataclasses.replace(gate, name=names.get(gate.id, gate.name))


def _parse(data: bytes, source: str) -> Element:
    try:
        return safe_et.fromstring(data, forbid_dtd=True, forbid_entities=True, forbid_external=True)
    except DTDForbidden as exc:
        ext = exc.sysid or exc.pubid
        what = f"; its external reference {ext!r} was not fetched" if ext else ""
        raise GatingMLError(
            "refused a document type declaration (DTD): DTDs, entity expansion and external "
            f"references are forbidden in Gating-ML input{what}",
            source=source,
            element=f"!DOCTYPE {exc.name}",
        ) from exc
    except DefusedXmlException as exc:
        raise GatingMLError(f"refused hostile XML: {exc}", source=source) from exc
    except ParseError as exc:
        raise GatingMLError(f"not well-formed XML: {exc}", source=source) from exc


def read_gatingml(
    path_or_bytes: str | os.PathLike[str] | bytes, *, source: str | None = None
) -> Strategy:
    """Read a Gating-ML 2.0 document into a :class:`~gating._strategy.Strategy`.

    Parameters
    ----------
    path_or_bytes
        A file path, or the document itself as ``bytes``.
    source
        The name used in errors and as :attr:`Strategy.source`; defaults to the path, or
        ``"<bytes>"``.

    Returns
    -------
    Strategy
        The validated strategy, gates in document order.

    Raises
    ------
    GatingMLError
        Hostile input (any DTD: entity expansion, external entities, external DTDs), XML that
        is not well formed, malformed numbers or booleans, missing required attributes,
        unknown references, unknown gate types, unexpected elements inside a gate, or a
        strategy that fails validation. The message names the file, element and gate.
    """
    if isinstance(path_or_bytes, bytes | bytearray | memoryview):
        data = bytes(path_or_bytes)
        src = source if source is not None else "<bytes>"
    else:
        data = Path(path_or_bytes).read_bytes()
        src = source if source is not None else str(path_or_bytes)
    return _Reader(src).read(_parse(data, src))


def write_gatingml(strategy: Strategy, path: str | os.PathLike[str] | None = None) -> str:
    """Write a strategy as a Gating-ML 2.0 document.

    Numbers are written with ``repr`` so they read back exactly; display names, the strategy
    name and notes without a Gating-ML home go into phenoflow ``custom_info`` extensions, so
    ``read_gatingml(write_gatingml(s))`` reproduces ``s`` (notes up to surrounding white
    space; ``source`` comes from the reader's argument).

    Parameters
    ----------
    strategy
        The strategy.
    path
        Also write the document (UTF-8) to this file when given.

    Returns
    -------
    str
        The document.

    Raises
    ------
    GatingMLError
        A transform Gating-ML 2.0 cannot express (FlowJo ``biex``/``log``/``linear``), a
        one-dimensional ellipsoid, a quadrant without positions, a ratio and a transform
        sharing an id, a non-finite number, or text with characters XML 1.0 cannot hold.
    """
    from gating._gatingml_write import render

    text = render(strategy)
    if path is not None:
        Path(path).write_text(text, encoding="utf-8")
    return text
