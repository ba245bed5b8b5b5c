"""Gating-ML 2.0 gates: the gate elements of a document as :class:`~gating._strategy.Gate`.

:class:`GateReader` reads ``RectangleGate``, ``PolygonGate``, ``EllipsoidGate``,
``QuadrantGate`` and ``BooleanGate`` elements and their dimensions (against the
transformations and matrices read before them); :func:`named` applies phenoflow's display
names.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Iterable, Mapping
from typing import Literal
from xml.etree.ElementTree import Element

from gating._gatingml._xml import (
    DATATYPE_NS,
    GATING_NS,
    PHENOFLOW_NS,
    XmlReader,
    is_element,
    qname,
    split_tag,
)
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
)
from gating._transforms import Transform

__all__ = ["GateReader", "named"]


class GateReader(XmlReader):
    """Reads gate elements; dimensions refer to the transformations and matrices read so far."""

    transforms: dict[str, Transform]
    ratios: dict[str, Ratio]
    matrices: dict[str, Matrix]

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
        awhere = f"{where}/{qname(axis.tag)}"
        if is_element(axis, DATATYPE_NS, "fcs-dimension"):
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
        kind = split_tag(el.tag)[1]
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
                if not is_element(ext, PHENOFLOW_NS, "name"):
                    raise self.fail(f"unknown phenoflow extension <{qname(ext.tag)}>", iwhere, gid)
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
                if is_element(v, GATING_NS, "value")
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


def named(gate: Gate, names: Mapping[str, str]) -> Gate:
    """Apply phenoflow display names (``ref`` -> name) to a gate and its quadrants."""
    if isinstance(gate, QuadrantGate):
        quadrants = tuple(
            dataclasses.replace(q, name=names.get(q.id, q.name)) for q in gate.quadrants
        )
        gate = dataclasses.replace(gate, quadrants=quadrants)
    return dataclasses.replace(gate, name=names.get(gate.id, gate.name))
