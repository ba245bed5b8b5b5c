"""FlowJo 10 workspace XML: samples, spillover matrices, scale transforms and gate trees.

:func:`_sample` reads one ``<Sample>`` into a :class:`FlowJoSample` (its matrix, a transform per
parameter, keywords and recorded counts) and :func:`_tree` a ``<Subpopulations>`` into
:class:`_Node` objects, the gate geometry as plain numbers in FlowJo's units; turning a tree
into a strategy is :mod:`gating._flowjo_convert`'s job. Element and attribute names are
matched namespace-agnostically (FlowJo's prefixes are Gating-ML's).
"""

from __future__ import annotations

import dataclasses
import logging
import math
import re
import xml.etree.ElementTree as ET
from collections.abc import Iterator, Mapping
from urllib.parse import unquote, urlparse

from gating._strategy import Matrix, StrategyError
from gating._transforms import Transform, transform_from_flowjo

__all__ = [
    "_DISPLAY_LENGTH",
    "FlowJoError",
    "FlowJoSample",
    "_Node",
    "_attr",
    "_kid",
    "_kids",
    "_local",
    "_sample",
    "_tree",
]

logger = logging.getLogger("gating._flowjo")  # log under the public module's name

_BOOLEAN_NODES = {"AndNode": "and", "OrNode": "or", "NotNode": "not"}
_SHAPES = {"RectangleGate": "rectangle", "PolygonGate": "polygon", "EllipsoidGate": "ellipse"}
_DISPLAY_LENGTH = 256.0


class FlowJoError(StrategyError):
    """A workspace cannot be read or converted (unsupported gate, malformed element, ...).

    ``source`` is the workspace, ``gate`` the FlowJo path of the population concerned.
    """


# ---- XML helpers (namespace-agnostic: FlowJo's prefixes are Gating-ML's) ------------------
def _local(tag: str) -> str:
    return tag.rsplit("}", 1)[-1].rsplit(":", 1)[-1]


def _attr(el: ET.Element, name: str, default: str | None = None) -> str | None:
    for key, value in el.attrib.items():
        if _local(key) == name:
            return value
    return default


def _kids(el: ET.Element | None, name: str) -> list[ET.Element]:
    return [] if el is None else [c for c in el if _local(c.tag) == name]


def _kid(el: ET.Element | None, name: str) -> ET.Element | None:
    found = _kids(el, name)
    return found[0] if found else None


# ---- parsed (not yet converted) gate tree ---------------------------------------------------
@dataclasses.dataclass(frozen=True)
class _Node:
    """One FlowJo population or Boolean node, with its geometry as plain numbers."""

    path: tuple[str, ...]
    kind: str  # rectangle | polygon | ellipse | and | or | not
    params: tuple[str, ...] = ()
    bounds: tuple[tuple[float | None, float | None], ...] = ()
    vertices: tuple[tuple[float, ...], ...] = ()  # polygon; ellipse: 2 foci then 4 edge points
    dependents: tuple[str, ...] = ()
    inside: bool = True
    count: int = -1

    @property
    def id(self) -> str:
        return "/" + "/".join(self.path)


@dataclasses.dataclass(frozen=True)
class FlowJoSample:
    """One sample of a workspace.

    Attributes
    ----------
    sample_id
        FlowJo's ``sampleID``.
    name
        The sample node's name (usually the FCS file name).
    uri
        The ``DataSet`` URI as written.
    fcs_file
        File name of the URI (no folders).
    compensation
        The sample's spillover matrix, or ``None`` (uncompensated).
    transforms
        Scale transform per FlowJo parameter name (``FSC-A``, ``Comp-CD3 APC-H7 FLR-A``).
    counts
        FlowJo's recorded count per population id (-1 where FlowJo recorded none).
    keywords
        The FCS keywords FlowJo copied into the workspace.

    The other fields are internal: FlowJo names of compensated parameters, display lengths,
    transforms FlowJo wrote that phenoflow cannot build (with why), and the parsed gate tree.
    """

    sample_id: str
    name: str
    uri: str
    fcs_file: str
    compensation: Matrix | None
    transforms: Mapping[str, Transform]
    counts: Mapping[str, int]
    keywords: Mapping[str, str] = dataclasses.field(repr=False)
    comp_names: Mapping[str, str] = dataclasses.field(repr=False)
    lengths: Mapping[str, float] = dataclasses.field(repr=False)
    bad_transforms: Mapping[str, str] = dataclasses.field(repr=False)
    nodes: tuple[_Node, ...] = dataclasses.field(repr=False)


def _sample(el: ET.Element, src: str) -> FlowJoSample:
    data = _kid(el, "DataSet")
    node = _kid(el, "SampleNode")
    if data is None or node is None:
        raise FlowJoError("a <Sample> lacks its <DataSet> or <SampleNode>", source=src)
    uri = _attr(data, "uri") or ""
    name = _attr(node, "name") or ""
    matrices = _kids(el, "spilloverMatrix")
    if len(matrices) > 1:
        raise FlowJoError(f"sample {name!r} has {len(matrices)} spillover matrices", source=src)
    matrix, comp_names = _matrix(matrices[0], src) if matrices else (None, {})
    transforms: dict[str, Transform] = {}
    lengths: dict[str, float] = {}
    bad: dict[str, str] = {}
    for t in [t for block in _kids(el, "Transformations") for t in block]:
        target = _kid(t, "parameter")
        param = _attr(t if target is None else target, "name") or ""
        try:
            transforms[param] = transform_from_flowjo(_local(t.tag), t.attrib)
            lengths[param] = float(_attr(t, "length") or _DISPLAY_LENGTH)
        except (ValueError, TypeError) as exc:
            bad[param] = f"transform {_local(t.tag)!r}: {exc}"
            logger.debug("%s: sample %s parameter %s: %s", src, name, param, exc)
    keywords = {
        _attr(k, "name") or "": _attr(k, "value") or ""
        for k in _kids(_kid(el, "Keywords"), "Keyword")
    }
    nodes = tuple(_tree(_kid(node, "Subpopulations"), (), src))
    return FlowJoSample(
        sample_id=_attr(data, "sampleID") or _attr(node, "sampleID") or "",
        name=name,
        uri=uri,
        fcs_file=re.split(r"[\\/]", unquote(urlparse(uri).path))[-1],
        compensation=matrix,
        transforms=transforms,
        counts={n.id: n.count for n in nodes},
        keywords=keywords,
        comp_names=comp_names,
        lengths=lengths,
        bad_transforms=bad,
        nodes=nodes,
    )


def _number(text: str | None, what: str, src: str, gate: str = "") -> float:
    try:
        value = float(text)  # type: ignore[arg-type]
    except (TypeError, ValueError):
        raise FlowJoError(f"{what} is not a number: {text!r}", source=src, gate=gate) from None
    if not math.isfinite(value):
        raise FlowJoError(f"{what} is not finite: {text!r}", source=src, gate=gate)
    return value


def _matrix(el: ET.Element, src: str) -> tuple[Matrix, dict[str, str]]:
    mid = _attr(el, "id") or _attr(el, "name") or "FlowJo matrix"
    if _attr(el, "spectral") == "1" and (_attr(el, "weightOptAlgorithmType") or "OLS") != "OLS":
        raise FlowJoError(
            f"spectral matrix {mid!r}: only ordinary least squares unmixing is supported",
            source=src,
        )
    fluors, rows, detectors = [], [], None
    for row in _kids(el, "spillover"):
        coeffs = _kids(row, "coefficient")
        dets = tuple(_attr(c, "parameter") or "" for c in coeffs)
        if detectors is None:
            detectors = dets
        values = dict(
            zip(
                dets,
                (_number(_attr(c, "value"), f"matrix {mid!r}", src) for c in coeffs),
                strict=True,
            )
        )
        if set(dets) != set(detectors) or len(dets) != len(detectors):
            raise FlowJoError(f"matrix {mid!r}: rows list different detectors", source=src)
        fluors.append(_attr(row, "parameter") or "")
        rows.append(tuple(values[d] for d in detectors))
    if not rows or detectors is None:
        raise FlowJoError(f"matrix {mid!r} has no spillover rows", source=src)
    prefix, suffix = _attr(el, "prefix", "Comp-") or "", _attr(el, "suffix", "") or ""
    names = {f"{prefix}{f}{suffix}": f for f in fluors}
    for p in [*_kids(_kid(el, "parameters"), "parameter"), *_kids(el, "spillover")]:
        infix, pname = _attr(p, "userProvidedCompInfix"), _attr(p, "name") or _attr(p, "parameter")
        if infix and pname in fluors:
            names[infix] = pname
    return Matrix(
        id=mid, fluorochromes=tuple(fluors), detectors=detectors, values=tuple(rows)
    ), names


def _tree(subpops: ET.Element | None, parent: tuple[str, ...], src: str) -> Iterator[_Node]:
    """Population and Boolean nodes under a ``<Subpopulations>``, depth first."""
    for el in [] if subpops is None else list(subpops):
        tag = _local(el.tag)
        if tag != "Population" and tag not in _BOOLEAN_NODES:
            if tag.endswith("Node"):
                raise FlowJoError(
                    f"unsupported FlowJo node <{tag}>",
                    source=src,
                    gate="/" + "/".join((*parent, _attr(el, "name") or "?")),
                )
            continue
        path = (*parent, _attr(el, "name") or "")
        count = int(_number(_attr(el, "count", "-1"), "count", src, "/" + "/".join(path)))
        if tag == "Population":
            yield _shape(el, path, count, src)
        else:
            deps = tuple(_attr(d, "name") or "" for d in _kids(_kid(el, "Dependents"), "Dependent"))
            yield _Node(path, _BOOLEAN_NODES[tag], dependents=deps, count=count)
        yield from _tree(_kid(el, "Subpopulations"), path, src)


def _shape(pop: ET.Element, path: tuple[str, ...], count: int, src: str) -> _Node:
    gid = "/" + "/".join(path)
    wrapper = _kid(pop, "Gate")
    gates = [] if wrapper is None else list(wrapper)
    if len(gates) != 1:
        raise FlowJoError(f"expected one gate element, found {len(gates)}", source=src, gate=gid)
    el = gates[0]
    kind = _SHAPES.get(_local(el.tag))
    if kind is None:
        raise FlowJoError(f"unsupported FlowJo gate type {_local(el.tag)!r}", source=src, gate=gid)
    params, bounds = [], []
    for dim in _kids(el, "dimension"):
        fcs = _kid(dim, "fcs-dimension")
        if fcs is None:
            raise FlowJoError("only fcs-dimension gate axes are supported", source=src, gate=gid)
        params.append(_attr(fcs, "name") or "")
        lo, hi = _attr(dim, "min"), _attr(dim, "max")
        bounds.append(
            (
                None if lo is None else _number(lo, "min", src, gid),
                None if hi is None else _number(hi, "max", src, gid),
            )
        )

    def points(parent: ET.Element | None) -> tuple[tuple[float, ...], ...]:
        return tuple(
            tuple(
                _number(_attr(c, "value"), "coordinate", src, gid) for c in _kids(v, "coordinate")
            )
            for v in _kids(parent, "vertex")
        )

    vertices: tuple[tuple[float, ...], ...] = ()
    if kind == "polygon":
        vertices = points(el)
    elif kind == "ellipse":
        vertices = points(_kid(el, "foci")) + points(_kid(el, "edge"))
        if len(params) != 2 or len(vertices) != 6:
            raise FlowJoError(
                "a FlowJo ellipse needs 2 axes, 2 foci and 4 edge points", source=src, gate=gid
            )
    if any(len(v) != len(params) for v in vertices):
        raise FlowJoError("vertex coordinates do not match the gate axes", source=src, gate=gid)
    return _Node(
        path,
        kind,
        tuple(params),
        tuple(bounds),
        vertices,
        inside=_attr(el, "eventsInside", "1") != "0",
        count=count,
    )
