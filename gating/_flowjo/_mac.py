"""FlowJo 8/9 (Mac) workspaces: the ``.xml`` layout before FlowJo 10, read into the same model.

A FlowJo 9 workspace has no Gating-ML elements. Each ``<Sample>`` lists its ``<Parameter>``
scales (``log="1"`` with ``lowValue`` and ``decades``, else linear) and a ``<SampleNode>``
whose ``<Population>`` elements nest directly (no ``<Subpopulations>``). A population's gate
is a ``<PolygonGate>`` wrapper around one shape, every shape a list of ``<Vertex x= y=>`` in
**raw** channel units:

* ``<Polygon>``: a polygon (straight on the display scale, as in FlowJo 10);
* ``<PolyRect>``: a rectangle (its four corners; quadrant gates are written this way too);
* ``<Range>``: a 1-D range (the ``x`` of its two vertices);
* ``<Ellipse>``: four points on the ellipse, FlowJo's handles (the ends of one axis, then
  of the other), mapped here to display pixels so that the FlowJo 10 construction applies;

Known limit: the ellipses of the LabKey FlowJo 9.6.4 workspace come out 1.5-3.5% larger
than FlowJo 9 counted (its four points read as the ends of the two axes; the other
pairings are 25-35% off), while its rectangles, ranges, quadrants and Booleans match
exactly and polygons within 0.5%; a warning is logged for each such ellipse.

Boolean populations are ``<BooleanGate specification="G1 & ! G0">`` over the
``<GatePaths>`` strings (``G0`` the first path). The sample's DATA location is a Mac alias
(binary), so a sample is found by its node name, which is the FCS file name.
"""

from __future__ import annotations

import logging
import math
import re
import xml.etree.ElementTree as ET

from gating._flowjo._xml import DISPLAY_LENGTH, FlowJoError, FlowJoSample, WsNode
from gating._transforms import FlowJoLog, Transform

__all__ = ["is_mac_workspace", "mac_workspace"]

logger = logging.getLogger(__name__)

_SHAPES = {"Polygon": "polygon", "PolyRect": "rectangle", "Range": "range", "Ellipse": "ellipse"}
_TOKEN = re.compile(r"\s*(!|&|\||G\d+)")


def is_mac_workspace(root: ET.Element) -> bool:
    """Whether a ``<Workspace>`` is in the FlowJo 8/9 Mac layout (populations hold their
    gate directly, as ``<PolygonGate>`` or ``<BooleanGate>``, not in a ``<Gate>``)."""
    for pop in root.iter("Population"):
        tags = {c.tag for c in pop}
        if "Gate" in tags:
            return False
        if tags & {"PolygonGate", "BooleanGate"}:
            return True
    return False


def _float(text: str | None, what: str, src: str, gate: str = "") -> float:
    try:
        value = float(text)  # type: ignore[arg-type]
    except (TypeError, ValueError):
        raise FlowJoError(f"{what} is not a number: {text!r}", source=src, gate=gate) from None
    if not math.isfinite(value):
        raise FlowJoError(f"{what} is not finite: {text!r}", source=src, gate=gate)
    return value


def _scales(sample: ET.Element, src: str) -> tuple[dict[str, Transform], dict[str, str]]:
    """Display transform per parameter from ``<Parameter>``: FlowJo log for ``log="1"``."""
    transforms: dict[str, Transform] = {}
    bad: dict[str, str] = {}
    for p in sample.findall("Parameter"):
        name = p.get("name") or ""
        if p.get("log") != "1":
            continue
        try:
            transforms[name] = FlowJoLog(
                offset=_float(p.get("lowValue"), f"parameter {name!r} lowValue", src),
                decades=_float(p.get("decades"), f"parameter {name!r} decades", src),
            )
        except (ValueError, FlowJoError) as exc:
            bad[name] = f"log scale: {exc}"
    return transforms, bad


def _vertices(shape: ET.Element, src: str, gid: str) -> list[tuple[float, float]]:
    inner = shape.find("Polygon")
    holder = shape if inner is None else inner
    return [
        (_float(v.get("x"), "vertex x", src, gid), _float(v.get("y"), "vertex y", src, gid))
        for v in holder.findall("Vertex")
    ]


def _boolean(
    gate: ET.Element, path: tuple[str, ...], count: int, src: str
) -> WsNode:
    """A ``<BooleanGate>``: one operator over ``G<i>`` operands, each optionally ``!``."""
    gid = "/" + "/".join(path)
    spec = gate.get("specification") or ""
    paths = [s.text or "" for s in gate.iterfind("GatePaths/StringArray/String")]
    tokens: list[str] = []
    pos = 0
    while pos < len(spec.rstrip()):
        m = _TOKEN.match(spec, pos)
        if m is None:
            raise FlowJoError(
                f"Boolean specification {spec!r} is not supported: only one operator (& or |) "
                "over G<n> operands, each optionally negated with !, is read (rebuild the "
                "gate in FlowJo as nested Boolean gates)",
                source=src,
                gate=gid,
            )
        tokens.append(m.group(1))
        pos = m.end()
    operands: list[tuple[str, bool]] = []
    ops: set[str] = set()
    negate = False
    expect_operand = True
    for tok in tokens:
        if expect_operand and tok == "!":
            negate = not negate
        elif expect_operand and tok.startswith("G"):
            index = int(tok[1:])
            if index >= len(paths):
                raise FlowJoError(
                    f"Boolean specification {spec!r} names {tok} but the gate lists "
                    f"{len(paths)} paths",
                    source=src,
                    gate=gid,
                )
            operands.append((paths[index], negate))
            negate, expect_operand = False, False
        elif not expect_operand and tok in "&|":
            ops.add(tok)
            expect_operand = True
        else:
            raise FlowJoError(f"malformed Boolean specification {spec!r}", source=src, gate=gid)
    if expect_operand or not operands or len(ops) > 1:
        raise FlowJoError(
            f"Boolean specification {spec!r} is not supported: it must be one operator "
            "(& or |) over G<n> operands (mixed & and | need nested Boolean gates)",
            source=src,
            gate=gid,
        )
    if len(operands) == 1:
        ref, negated = operands[0]
        if not negated:
            raise FlowJoError(
                f"Boolean specification {spec!r} has one operand and no !", source=src, gate=gid
            )
        return WsNode(path, "not", dependents=(ref,), count=count)
    kind = "and" if ops == {"&"} else "or"
    return WsNode(
        path,
        kind,
        dependents=tuple(r for r, _ in operands),
        negated=tuple(n for _, n in operands),
        count=count,
    )


def _shape(
    wrapper: ET.Element,
    path: tuple[str, ...],
    count: int,
    transforms: dict[str, Transform],
    src: str,
) -> WsNode:
    gid = "/" + "/".join(path)
    shapes = [c for c in wrapper if c.tag in _SHAPES]
    if len(shapes) != 1:
        other = [c.tag for c in wrapper if c.tag not in ("Graph", "ParameterNames")]
        raise FlowJoError(
            f"unsupported FlowJo 9 gate: expected one of {sorted(_SHAPES)} in <PolygonGate>, "
            f"found {other or 'none'}",
            source=src,
            gate=gid,
        )
    shape = shapes[0]
    kind = _SHAPES[shape.tag]
    x, y = shape.get("xAxisName") or "", shape.get("yAxisName") or ""
    vertices = _vertices(shape, src, gid)
    if kind == "range":
        if not x or len(vertices) != 2:
            raise FlowJoError("a Range needs an x axis and two vertices", source=src, gate=gid)
        xs = sorted(v[0] for v in vertices)
        return WsNode(path, "rectangle", (x,), ((xs[0], xs[1]),), count=count)
    if not x or not y:
        raise FlowJoError(f"a {shape.tag} needs two axes", source=src, gate=gid)
    if kind == "rectangle":
        if len(vertices) < 2:
            raise FlowJoError("a PolyRect needs its corners", source=src, gate=gid)
        xs, ys = [v[0] for v in vertices], [v[1] for v in vertices]
        bounds = ((min(xs), max(xs)), (min(ys), max(ys)))
        return WsNode(path, "rectangle", (x, y), bounds, count=count)
    if kind == "polygon":
        return WsNode(path, "polygon", (x, y), vertices=tuple(vertices), count=count)
    # ellipse: raw points to display pixels, where FlowJo 10's construction applies
    if len(vertices) != 4:
        raise FlowJoError(
            f"a FlowJo 9 Ellipse needs 4 points, found {len(vertices)}", source=src, gate=gid
        )
    missing = [p for p in (x, y) if p not in transforms]
    if missing:
        raise FlowJoError(
            f"ellipse on {missing}: only ellipses on log-scaled axes are read from FlowJo 9 "
            "workspaces (a linear axis has no recorded display range); redraw it as a polygon",
            source=src,
            gate=gid,
        )
    pixels = [
        tuple(
            float(transforms[p].apply([c])[0]) * DISPLAY_LENGTH for p, c in zip((x, y), v, strict=True)
        )
        for v in vertices
    ]
    logger.warning(
        "%s: %s: FlowJo 9 ellipse read from its four points; on the LabKey workspace such "
        "ellipses hold 1.5-3.5%% more events than FlowJo 9 counted (see gating._flowjo._mac)",
        src, gid,
    )
    centre = tuple(sum(c) / 4.0 for c in zip(*pixels, strict=True))
    return WsNode(path, "ellipse", (x, y), vertices=(centre, centre, *pixels), count=count)


def _tree(
    parent_el: ET.Element,
    parent: tuple[str, ...],
    transforms: dict[str, Transform],
    src: str,
) -> list[WsNode]:
    nodes: list[WsNode] = []
    for pop in parent_el.findall("Population"):
        path = (*parent, pop.get("name") or "")
        gid = "/" + "/".join(path)
        count = int(_float(pop.get("count", "-1"), "count", src, gid))
        boolean, polygon = pop.find("BooleanGate"), pop.find("PolygonGate")
        if boolean is not None:
            nodes.append(_boolean(boolean, path, count, src))
        elif polygon is not None:
            nodes.append(_shape(polygon, path, count, transforms, src))
        else:
            raise FlowJoError(
                "a FlowJo 9 population without a <PolygonGate> or <BooleanGate> is not "
                "supported", source=src, gate=gid,
            )
        nodes.extend(_tree(pop, path, transforms, src))
    return nodes


def _sample(el: ET.Element, src: str) -> FlowJoSample:
    node = el.find("SampleNode")
    if node is None:
        raise FlowJoError("a FlowJo 9 <Sample> lacks its <SampleNode>", source=src)
    name = node.get("name") or ""
    transforms, bad = _scales(el, src)
    nodes = tuple(_tree(node, (), transforms, src))
    keywords = {
        k.get("name") or "": k.get("value") or "" for k in el.iterfind("Keywords/Keyword")
    }
    return FlowJoSample(
        sample_id=el.get("sampleID") or node.get("sampleID") or "",
        name=name,
        uri="",
        fcs_file=keywords.get("$FIL", "") or name,
        compensation=None,
        transforms=transforms,
        counts={n.id: n.count for n in nodes},
        keywords=keywords,
        comp_names={},
        lengths={p: DISPLAY_LENGTH for p in transforms},
        bad_transforms=bad,
        nodes=nodes,
    )


def mac_workspace(
    root: ET.Element, src: str
) -> tuple[tuple[FlowJoSample, ...], dict[str, tuple[str, ...]], dict[str, tuple[WsNode, ...]]]:
    """Samples, groups (name to sample names) and group templates of a FlowJo 9 workspace.

    Raises
    ------
    FlowJoError
        A construct this reader does not support (named, with the population's path).
    """
    sample_list = root.find("SampleList")
    samples = tuple(_sample(el, src) for el in ([] if sample_list is None else sample_list.findall("Sample")))
    by_id = {s.sample_id: s.name for s in samples}
    groups: dict[str, tuple[str, ...]] = {}
    group_nodes: dict[str, tuple[WsNode, ...]] = {}
    for node in root.iterfind("Groups/GroupNode"):
        name = node.get("name") or ""
        refs = node.iterfind("Group/SampleRefs/SampleRef")
        groups[name] = tuple(by_id[r] for ref in refs if (r := ref.get("sampleID") or "") in by_id)
        members = [s for s in samples if s.name in groups[name]]
        scales = dict(members[0].transforms) if members else {}
        group_nodes[name] = tuple(_tree(node, (), scales, src))
    return samples, groups, group_nodes
