"""Gating-ML 2.0 documents: the top level, transformations and spectrum matrices.

:class:`Reader` walks the children of ``gating:Gating-ML`` (``custom_info``,
``transforms:transformation``, ``transforms:spectrumMatrix`` and the gates, which
:class:`~gating._gatingml._gates._GateReader` reads) and builds the strategy; see
:func:`gating._gatingml._api.read_gatingml`.
"""

from __future__ import annotations

import logging
from xml.etree.ElementTree import Element

from gating._gatingml._gates import GateReader, named
from gating._gatingml._write import rename_ids
from gating._gatingml._xml import (
    DATATYPE_NS,
    GATING_NS,
    GML,
    PHENOFLOW_NS,
    TRANSFORMS_NS,
    GatingMLError,
    inner_xml,
    is_element,
    qname,
    split_tag,
)
from gating._strategy import Matrix, Ratio, Strategy, StrategyError
from gating._transforms import Transform
from gating._transforms import transform_from_gatingml as _transform_from_gatingml

__all__ = ["Reader"]

logger = logging.getLogger(__name__)

_GATES = ("RectangleGate", "PolygonGate", "EllipsoidGate", "QuadrantGate", "BooleanGate")


class Reader(GateReader):
    """One document being read: the collected transforms, matrices, notes and gates."""

    def __init__(self, source: str) -> None:
        self.source = source
        self.transforms: dict[str, Transform] = {}
        self.ratios: dict[str, Ratio] = {}
        self.matrices: dict[str, Matrix] = {}
        self.notes: dict[str, str] = {}
        self.name = ""
        self.channel_matching = "exact"
        self.originals: dict[str, str] = {}  # XML id -> phenoflow id (phenoflow:id)

    # -- document ---------------------------------------------------------------------------
    def read(self, root: Element) -> Strategy:
        ns, local = split_tag(root.tag)
        if local != "Gating-ML" or ns != GATING_NS:
            raise self.fail(
                f"the root element must be Gating-ML in namespace {GATING_NS}", qname(root.tag)
            )
        gates: list[tuple[Element, str]] = []
        seen: dict[str, int] = {}
        for child in root:
            ns, local = split_tag(child.tag)
            seen[child.tag] = seen.get(child.tag, 0) + 1
            where = f"{qname(child.tag)}[{seen[child.tag]}]"  # an XPath step
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
            elif ns in GML:
                raise self.fail(f"unknown Gating-ML element {local!r} at the top level", where)
            else:
                logger.debug("%s: ignoring extension element <%s>", self.source, child.tag)
        names: dict[str, str] = {}
        built = [self.gate(el, where, names) for el, where in gates]
        built = [named(g, names) for g in built]
        try:
            strategy = Strategy(
                gates=tuple(built),
                transforms=self.transforms,
                ratios=self.ratios,
                matrices=self.matrices,
                name=self.name,
                source=self.source,
                notes=self.notes,
                channel_matching=self.channel_matching,  # type: ignore[arg-type]
            )
            if not self.originals:
                return strategy
            back = self.originals.get
            return rename_ids(
                strategy,
                population=lambda x: back(x, x),
                divider=lambda _, x: back(x, x),
                transform=lambda x: back(x, x),
                matrix=lambda x: back(x, x),
            )
        except GatingMLError:
            raise
        except StrategyError as exc:
            raise GatingMLError(exc.detail, source=self.source, gate=exc.gate) from exc

    def document_extensions(self, ext: list[Element], where: str) -> None:
        for el in ext:
            if is_element(el, PHENOFLOW_NS, "strategy"):
                self.name = self.attr(el, "name", where, required=False) or ""
                matching = self.attr(el, "channel-matching", where, required=False)
                if matching is not None:
                    self.channel_matching = matching
            elif is_element(el, PHENOFLOW_NS, "id"):
                ref = self.attr(el, "ref", where) or ""
                if ref in self.originals:
                    raise self.fail(f"a second original id for {ref!r}", where)
                self.originals[ref] = self.attr(el, "original", where) or ""
            elif is_element(el, PHENOFLOW_NS, "note"):
                self.note(self.attr(el, "ref", where) or "", inner_xml(el), where)
            else:
                raise self.fail(f"unknown phenoflow extension <{qname(el.tag)}>", where)

    # -- transformations and matrices -------------------------------------------------------
    def transformation(self, el: Element, where: str) -> None:
        tid = self.attr(el, "id", where) or ""
        if tid in self.transforms or tid in self.ratios:
            raise self.fail(f"duplicate transformation id {tid!r}", where)
        lo = self.opt_num(el, "boundMin", where)
        hi = self.opt_num(el, "boundMax", where)
        if lo is not None and hi is not None and lo > hi:
            raise self.fail(f"transformation {tid!r}: boundMin {lo} exceeds boundMax {hi}", where)
        funcs = [c for c in el if not is_element(c, DATATYPE_NS, "custom_info")]
        for c in el:
            if is_element(c, DATATYPE_NS, "custom_info"):
                self.custom_info(c, tid, f"{where}/{qname(c.tag)}")
        if len(funcs) != 1 or split_tag(funcs[0].tag)[0] != TRANSFORMS_NS:
            found = ", ".join(qname(c.tag) for c in funcs) or "nothing"
            raise self.fail(
                f"transformation {tid!r} needs exactly one transforms:* function, found {found}",
                where,
            )
        func = funcs[0]
        name = split_tag(func.tag)[1]
        fwhere = f"{where}/{qname(func.tag)}"
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
            local = split_tag(key)[1]
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
