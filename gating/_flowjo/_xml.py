"""FlowJo 10 workspace XML: samples, spillover matrices, scale transforms and gate trees.

:func:`sample_node` reads one ``<Sample>`` into a :class:`FlowJoSample` (its matrix, a transform per
parameter, keywords and recorded counts) and :func:`workspace_tree` a ``<Subpopulations>`` into
:class:`WsNode` objects, the gate geometry as plain numbers in FlowJo's units; turning a tree
into a strategy is :mod:`gating._flowjo._convert`'s job. Element and attribute names are
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
    "DISPLAY_LENGTH",
    "FlowJoError",
    "FlowJoSample",
    "WsNode",
    "attr_of",
    "kid",
    "kids",
    "local",
    "sample_node",
    "workspace_tree",
]

logger = logging.getLogger(__name__)

_BOOLEAN_NODES = {"AndNode": "and", "OrNode": "or", "NotNode": "not"}
_SHAPES = {"RectangleGate": "rectangle", "PolygonGate": "polygon", "EllipsoidGate": "ellipse"}
DISPLAY_LENGTH = 256.0


class FlowJoError(StrategyError):
    """A workspace cannot be read or converted (unsupported gate, malformed element, ...).

    ``source`` is the workspace, ``gate`` the FlowJo path of the population concerned.
    """


# ---- XML helpers (namespace-agnostic: FlowJo's prefixes are Gating-ML's) ------------------
def local(tag: str) -> str:
    return tag.rsplit("}", 1)[-1].rsplit(":", 1)[-1]


def attr_of(el: ET.Element, name: str, default: str | None = None) -> str | None:
    for key, value in el.attrib.items():
        if local(key) == name:
            return value
    return default


def kids(el: ET.Element | None, name: str) -> list[ET.Element]:
    return [] if el is None else [c for c in el if local(c.tag) == name]


def kid(el: ET.Element | None, name: str) -> ET.Element | None:
    found = kids(el, name)
    return found[0] if found else None


# ---- parsed (not yet converted) gate tree ---------------------------------------------------
@dataclasses.dataclass(frozen=True)
class WsNode:
    """One FlowJo population or Boolean node, with its geometry as plain numbers."""

    path: tuple[str, ...]
    kind: str  # rectangle | polygon | ellipse | and | or | not
    params: tuple[str, ...] = ()
    bounds: tuple[tuple[float | None, float | None], ...] = ()
    vertices: tuple[tuple[float, ...], ...] = ()  # polygon; ellipse: 2 foci then 4 edge points
    dependents: tuple[str, ...] = ()
    inside: bool = True
    count: int = -1
    negated: tuple[bool, ...] = ()  # per dependent: complemented (FlowJo 9 ``! G0``)
    # FlowJo 9: bounds/vertices are display bins (0 to 256) and a rectangle is lo <= x < hi
    binned: bool = False

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
    nodes: tuple[WsNode, ...] = dataclasses.field(repr=False)


def sample_node(el: ET.Element, src: str) -> FlowJoSample:
    data = kid(el, "DataSet")
    node = kid(el, "SampleNode")
    if data is None or node is None:
        raise FlowJoError("a <Sample> lacks its <DataSet> or <SampleNode>", source=src)
    uri = attr_of(data, "uri") or ""
    name = attr_of(node, "name") or ""
    matrices = kids(el, "spilloverMatrix")
    if len(matrices) > 1:
        raise FlowJoError(f"sample {name!r} has {len(matrices)} spillover matrices", source=src)
    matrix, comp_names = _matrix(matrices[0], src) if matrices else (None, {})
    transforms: dict[str, Transform] = {}
    lengths: dict[str, float] = {}
    bad: dict[str, str] = {}
    for t in [t for block in kids(el, "Transformations") for t in block]:
        target = kid(t, "parameter")
        param = attr_of(t if target is None else target, "name") or ""
        try:
            transforms[param] = transform_from_flowjo(local(t.tag), t.attrib)
            lengths[param] = float(attr_of(t, "length") or DISPLAY_LENGTH)
        except (ValueError, TypeError) as exc:
            bad[param] = f"transform {local(t.tag)!r}: {exc}"
            logger.debug("%s: sample %s parameter %s: %s", src, name, param, exc)
    keywords = {
        attr_of(k, "name") or "": attr_of(k, "value") or ""
        for k in kids(kid(el, "Keywords"), "Keyword")
    }
    nodes = tuple(workspace_tree(kid(node, "Subpopulations"), (), src))
    return FlowJoSample(
        sample_id=attr_of(data, "sampleID") or attr_of(node, "sampleID") or "",
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
    mid = attr_of(el, "id") or attr_of(el, "name") or "FlowJo matrix"
    if attr_of(el, "spectral") == "1" and (attr_of(el, "weightOptAlgorithmType") or "OLS") != "OLS":
        raise FlowJoError(
            f"spectral matrix {mid!r}: only ordinary least squares unmixing is supported",
            source=src,
        )
    fluors, rows, detectors = [], [], None
    for row in kids(el, "spillover"):
        coeffs = kids(row, "coefficient")
        dets = tuple(attr_of(c, "parameter") or "" for c in coeffs)
        if detectors is None:
            detectors = dets
        values = dict(
            zip(
                dets,
                (_number(attr_of(c, "value"), f"matrix {mid!r}", src) for c in coeffs),
                strict=True,
            )
        )
        if set(dets) != set(detectors) or len(dets) != len(detectors):
            raise FlowJoError(f"matrix {mid!r}: rows list different detectors", source=src)
        fluors.append(attr_of(row, "parameter") or "")
        rows.append(tuple(values[d] for d in detectors))
    if not rows or detectors is None:
        raise FlowJoError(f"matrix {mid!r} has no spillover rows", source=src)
    prefix, suffix = attr_of(el, "prefix", "Comp-") or "", attr_of(el, "suffix", "") or ""
    names = {f"{prefix}{f}{suffix}": f for f in fluors}
    for p in [*kids(kid(el, "parameters"), "parameter"), *kids(el, "spillover")]:
        infix, pname = attr_of(p, "userProvidedCompInfix"), attr_of(p, "name") or attr_of(p, "parameter")
        if infix and pname in fluors:
            names[infix] = pname
    return Matrix(
        id=mid, fluorochromes=tuple(fluors), detectors=detectors, values=tuple(rows)
    ), names


def workspace_tree(subpops: ET.Element | None, parent: tuple[str, ...], src: str) -> Iterator[WsNode]:
    """Population and Boolean nodes under a ``<Subpopulations>``, depth first."""
    for el in [] if subpops is None else list(subpops):
        tag = local(el.tag)
        if tag != "Population" and tag not in _BOOLEAN_NODES:
            if tag.endswith("Node"):
                raise FlowJoError(
                    f"unsupported FlowJo node <{tag}>",
                    source=src,
                    gate="/" + "/".join((*parent, attr_of(el, "name") or "?")),
                )
            continue
        path = (*parent, attr_of(el, "name") or "")
        count = int(_number(attr_of(el, "count", "-1"), "count", src, "/" + "/".join(path)))
        if tag == "Population":
            yield _shape(el, path, count, src)
        else:
            deps = tuple(attr_of(d, "name") or "" for d in kids(kid(el, "Dependents"), "Dependent"))
            yield WsNode(path, _BOOLEAN_NODES[tag], dependents=deps, count=count)
        yield from workspace_tree(kid(el, "Subpopulations"), path, src)


def _shape(pop: ET.Element, path: tuple[str, ...], count: int, src: str) -> WsNode:
    gid = "/" + "/".join(path)
    wrapper = kid(pop, "Gate")
    gates = [] if wrapper is None else list(wrapper)
    if len(gates) != 1:
        raise FlowJoError(f"expected one gate element, found {len(gates)}", source=src, gate=gid)
    el = gates[0]
    kind = _SHAPES.get(local(el.tag))
    if kind is None:
        raise FlowJoError(f"unsupported FlowJo gate type {local(el.tag)!r}", source=src, gate=gid)
    params, bounds = [], []
    for dim in kids(el, "dimension"):
        # FlowJo 10.1+ writes <data-type:fcs-dimension>, FlowJo 7 and 10.0 <data-type:parameter>
        fcs = kid(dim, "fcs-dimension")
        if fcs is None:
            fcs = kid(dim, "parameter")
        if fcs is None:
            found = [local(c.tag) for c in dim]
            raise FlowJoError(
                f"gate axis <{found[0] if found else 'dimension'}> is not supported: only "
                "<data-type:fcs-dimension> and <data-type:parameter> axes name an FCS channel "
                "(derived or ratio parameters are not read; gate on the FCS channels instead)",
                source=src,
                gate=gid,
            )
        params.append(attr_of(fcs, "name") or "")
        lo, hi = attr_of(dim, "min"), attr_of(dim, "max")
        bounds.append(
            (
                None if lo is None else _number(lo, "min", src, gid),
                None if hi is None else _number(hi, "max", src, gid),
            )
        )

    def points(parent: ET.Element | None) -> tuple[tuple[float, ...], ...]:
        return tuple(
            tuple(
                _number(attr_of(c, "value"), "coordinate", src, gid) for c in kids(v, "coordinate")
            )
            for v in kids(parent, "vertex")
        )

    vertices: tuple[tuple[float, ...], ...] = ()
    if kind == "polygon":
        vertices = points(el)
    elif kind == "ellipse":
        vertices = points(kid(el, "foci")) + points(kid(el, "edge"))
        if len(params) != 2 or len(vertices) != 6:
            raise FlowJoError(
                "a FlowJo ellipse needs 2 axes, 2 foci and 4 edge points", source=src, gate=gid
            )
    if any(len(v) != len(params) for v in vertices):
        raise FlowJoError("vertex coordinates do not match the gate axes", source=src, gate=gid)
    return WsNode(
        path,
        kind,
        tuple(params),
        tuple(bounds),
        vertices,
        inside=attr_of(el, "eventsInside", "1") != "0",
        count=count,
    )
