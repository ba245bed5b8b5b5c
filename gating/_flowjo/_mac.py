"""FlowJo 8/9 (Mac) workspaces: the ``.xml`` layout before FlowJo 10, read into the same model.

A FlowJo 9 workspace has no Gating-ML elements. Each ``<Sample>`` lists its ``<Parameter>``
scales (``log="1"`` with ``lowValue`` and ``decades``, else linear from ``lowValue`` to
``highValue``) and a ``<SampleNode>`` whose ``<Population>`` elements nest directly (no
``<Subpopulations>``). A population's gate is a ``<PolygonGate>`` wrapper around one shape,
every shape a list of ``<Vertex x= y=>`` in **raw** channel units:

* ``<Polygon>``: a polygon (straight on the display scale, as in FlowJo 10);
* ``<PolyRect>``: a rectangle (its four corners; quadrant gates are written this way too);
* ``<Range>``: a 1-D range (the ``x`` of its two vertices);
* ``<Ellipse>``: four points, FlowJo's handles (the ends of one axis, then of the other).

FlowJo 9 gates on its **256-bin display** (established against the LabKey 9.6.4 workspace):
an event falls in the bin ``floor(256 * scale(x))`` of each axis and is inside a rectangle,
range or polygon when the centre of its bin is (a centre on the outline counts as inside).
Every vertex FlowJo 9 wrote there is a whole bin (an even channel of the 512-channel data),
so the gates are drawn on that grid too. Read this way, its polygons come within 5 events
of FlowJo's counts (0.09%; 15 events, 0.62%, when the events are not binned), the
rectangles under them within 2 events (11, 1.89%, before) and its rectangles, ranges,
quadrants and Booleans stay exact. On 512-channel data the bins make a rectangle
``lo <= channel < hi``; counted ``lo < x <= hi`` on the raw float32 bounds instead, the events
on a bound went in or out with the float32 rounding of that bound, which happened to agree
for every rectangle at the root and not for several under the polygons (``CD8 T/M2``: Fluor
channel 204 rounded up). A rectangle or range becomes the display-scale box of the
bins it selects, ``lo <= scale(x) < hi`` on bin edges; a polygon becomes the outline of the
bins whose centres it holds (:func:`_bin_outline`), a polygon with right angles on the
display scale. Both hold exactly the events FlowJo's binned test does; edges sit
``_EDGE`` bins below the bin edges so that an event on an edge (every even channel of such
data) stays in its own bin despite rounding.

An ellipse is evaluated on the same bins, as the bins that lie **wholly inside** the
ellipse through its four handles (all four corners of the bin inside or on it;
:func:`_ellipse_outline`), with no fitted number. The handles are the ends of two axes on
the display scale (their midpoints coincide, their directions are at right angles to 0.5
degrees, the ``bounds`` attribute is close to that ellipse's bounding box) and sit on bin
edges like every FlowJo 9 vertex. The ellipse is the smallest through all four handles: the
two pairs are conjugate diameters (:func:`_ellipse_inside`; FlowJo 10's construction, the
second axis forced perpendicular to the first, differs by those 0.5 degrees). Its bins are
the ones inside the drawn outline once the bins the outline passes through are left out. On
the LabKey workspace (two differently shaped ellipses, four samples) that comes within 12
events of FlowJo's counts, 0.64% (the Booleans of them 0.15%), up for one ellipse and
mostly down for the other, by a few events per row. Other rules with no free number,
per-row maximum there (events binned as above; the handles' ellipse built as FlowJo 10
does): the bins wholly inside 0.67%; the bins whose centres the ellipse holds 3.24% (3.22%
through all four handles; the events themselves, not binned, 3.49%); the bins with three
of four corners inside 1.91%; the bins wholly inside with the handles at bin centres
2.30%; the bins whose centres are inside with both semi-axes half a bin shorter 1.22% (a
bin shorter 2.64%; half a bin shorter with the handles at bin centres 2.79%); the bins
whose centres are inside with the handles at bin centres 4.39%; the bins whose
circumscribed circle is inside 0.88%; the bins whose centres are inside, less those with a
side or corner neighbour outside, 2.29% and 4.11%. FlowJo 9's own test is not documented:
this rule is the closest of these, not a reproduction. Before it, the handles' ellipse
scaled by 0.9725 about its centre, fitted on these same rows, came within 0.39%. The
ellipses read this way are named in one warning.

Boolean populations are ``<BooleanGate specification="G1 & ! G0">`` over the
``<GatePaths>`` strings (``G0`` the first path). The sample's DATA location is a Mac alias
(binary), so a sample is found by its node name, which is the FCS file name.
"""

from __future__ import annotations

import functools
import logging
import math
import re
import xml.etree.ElementTree as ET
from collections import defaultdict

import numpy as np

from gating._flowjo._xml import DISPLAY_LENGTH, FlowJoError, FlowJoSample, WsNode
from gating._transforms import FlowJoLinear, FlowJoLog, Transform

__all__ = ["is_mac_workspace", "mac_workspace"]

logger = logging.getLogger(__name__)

_SHAPES = {"Polygon": "polygon", "PolyRect": "rectangle", "Range": "range", "Ellipse": "ellipse"}
_TOKEN = re.compile(r"\s*(!|&|\||G\d+)")
BINS = DISPLAY_LENGTH  # FlowJo 9's display has 256 bins per axis
_EDGE = 1e-4  # bins: bin edges move this far down so an event on an edge stays in its bin
_ON_GRID = 1e-3  # a vertex this close to a bin edge is on it (FlowJo writes float32 values)
_ON_ELLIPSE = 1e-9  # a bin corner this close to the ellipse (in its equation) is on it


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


def _float32(text: str | None, what: str, src: str) -> float:
    """A scale number FlowJo 9 wrote as a float32 with 16 digits (``0.2000000029802322``),
    back to the shortest decimal of that float32 (``0.2``), the number it was given: the
    display bins of the events are exact only then."""
    return float(str(np.float32(_float(text, what, src))))


def _scales(sample: ET.Element, src: str) -> tuple[dict[str, Transform], dict[str, str]]:
    """Display transform per parameter from ``<Parameter>``: FlowJo log for ``log="1"``,
    else linear from ``lowValue`` (0) to ``highValue`` (1). A linear parameter without a
    usable range gets none: its gates keep raw units and are not binned."""
    transforms: dict[str, Transform] = {}
    bad: dict[str, str] = {}
    for p in sample.findall("Parameter"):
        name = p.get("name") or ""
        if p.get("log") != "1":
            try:
                transforms[name] = FlowJoLinear(
                    min_range=_float32(p.get("lowValue"), f"parameter {name!r} lowValue", src),
                    max_range=_float32(p.get("highValue"), f"parameter {name!r} highValue", src),
                )
            except (ValueError, FlowJoError) as exc:
                logger.debug("%s: parameter %s: no linear display scale: %s", src, name, exc)
            continue
        try:
            transforms[name] = FlowJoLog(
                offset=_float32(p.get("lowValue"), f"parameter {name!r} lowValue", src),
                decades=_float32(p.get("decades"), f"parameter {name!r} decades", src),
            )
        except (ValueError, FlowJoError) as exc:
            bad[name] = f"log scale: {exc}"
    return transforms, bad


def _to_bins(transform: Transform, raw: list[float]) -> list[float]:
    """Raw values to display bins (0 to 256), snapped to a bin edge when on it."""
    out = []
    for v in transform.apply(np.asarray(raw, dtype=np.float64)) * BINS:
        edge = round(float(v))
        out.append(float(edge) if abs(v - edge) < _ON_GRID else float(v))
    return out


def _bin_range(lo: float, hi: float) -> tuple[float, float]:
    """The display interval ``[first, last + 1)`` (bins) of the bins whose centres lie in
    ``[lo, hi]``, its edges moved ``_EDGE`` down; empty (``first == last + 1``) when none."""
    lo, hi = sorted((lo, hi))
    first, last = math.ceil(lo - 0.5), math.floor(hi - 0.5)
    last = max(last, first - 1)
    return first - _EDGE, last + 1 - _EDGE


def _centres_inside(vertices: list[tuple[float, float]], x: np.ndarray, y: np.ndarray) -> np.ndarray:
    """Whether each point is inside the polygon or on its outline (crossing parity)."""
    inside = np.zeros(x.shape, dtype=bool)
    on = np.zeros(x.shape, dtype=bool)
    for (x1, y1), (x2, y2) in zip(vertices, vertices[1:] + vertices[:1], strict=True):
        cross = (x2 - x1) * (y - y1) - (y2 - y1) * (x - x1)
        on |= (
            (cross == 0)
            & (np.minimum(x1, x2) <= x) & (x <= np.maximum(x1, x2))
            & (np.minimum(y1, y2) <= y) & (y <= np.maximum(y1, y2))
        )
        if y1 != y2:
            spans = (y1 > y) != (y2 > y)
            inside ^= spans & (x < x1 + (y - y1) * (x2 - x1) / (y2 - y1))
    return inside | on


@functools.lru_cache(maxsize=1024)  # the same gate recurs in every sample of a workspace
def _bin_outline(vertices: tuple[tuple[float, float], ...]) -> tuple[tuple[float, float], ...] | None:
    """The outline, in display bins, of the bins whose centres a polygon holds.

    One closed path of horizontal and vertical edges (counter-clockwise, corners ``_EDGE``
    below the bin edges); bins that touch only at a corner stay in the same path. ``None``
    when the bins do not form one region without holes (or there are none).
    """
    xs, ys = [v[0] for v in vertices], [v[1] for v in vertices]
    x0, y0 = math.floor(min(xs) - 0.5), math.floor(min(ys) - 0.5)
    nx, ny = math.ceil(max(xs) + 0.5) - x0, math.ceil(max(ys) + 0.5) - y0
    cx, cy = np.meshgrid(np.arange(x0, x0 + nx) + 0.5, np.arange(y0, y0 + ny) + 0.5)
    return _outline(_centres_inside(list(vertices), cx, cy), x0, y0)


def _ellipse_inside(
    handles: tuple[tuple[float, float], ...], x: np.ndarray, y: np.ndarray
) -> np.ndarray:
    """Whether each point is inside or on the ellipse through four handles (display bins).

    The smallest ellipse centred on the mean of the handles through all four: the one with
    the two pairs as conjugate diameters, ``centre + p cos t + q sin t`` with ``p`` and
    ``q`` half of each pair's difference (FlowJo 10's ellipse when they are perpendicular).
    """
    h = np.asarray(handles, dtype=np.float64)
    centre = h.mean(axis=0)
    to_unit = np.linalg.inv(np.column_stack([(h[1] - h[0]) / 2.0, (h[3] - h[2]) / 2.0]))
    dx, dy = x - centre[0], y - centre[1]
    s, t = to_unit[0, 0] * dx + to_unit[0, 1] * dy, to_unit[1, 0] * dx + to_unit[1, 1] * dy
    return s * s + t * t <= 1.0 + _ON_ELLIPSE


@functools.lru_cache(maxsize=1024)
def _ellipse_outline(
    handles: tuple[tuple[float, float], ...],
) -> tuple[tuple[float, float], ...] | None:
    """The outline, in display bins, of the bins wholly inside the ellipse through four
    handles: all four corners of the bin inside or on it (:func:`_ellipse_inside`).

    As :func:`_bin_outline`; ``None`` also when the two pairs of handles are parallel.
    """
    h = np.asarray(handles, dtype=np.float64)
    p, q = (h[1] - h[0]) / 2.0, (h[3] - h[2]) / 2.0
    if p[0] * q[1] - p[1] * q[0] == 0.0:
        return None
    reach = math.hypot(*p, *q)  # no point of the ellipse is farther from its centre
    centre = h.mean(axis=0)
    x0, y0 = math.floor(centre[0] - reach) - 1, math.floor(centre[1] - reach) - 1
    nx, ny = math.ceil(centre[0] + reach) + 1 - x0, math.ceil(centre[1] + reach) + 1 - y0
    gx, gy = np.meshgrid(np.arange(x0, x0 + nx + 1.0), np.arange(y0, y0 + ny + 1.0))
    corner = _ellipse_inside(handles, gx, gy)  # bin (j, i) has corners [j:j+2, i:i+2]
    wholly = corner[:-1, :-1] & corner[:-1, 1:] & corner[1:, :-1] & corner[1:, 1:]
    return _outline(wholly, x0, y0)


def _outline(inside: np.ndarray, x0: int, y0: int) -> tuple[tuple[float, float], ...] | None:
    """The outline of the bins marked in ``inside`` (rows ``y0 + j``, columns ``x0 + i``),
    as :func:`_bin_outline` describes it."""
    ny, nx = inside.shape
    full = np.zeros((ny + 2, nx + 2), dtype=bool)  # a margin of bins outside
    full[1:-1, 1:-1] = inside
    inner = full[1:-1, 1:-1]
    if not inner.any():
        return None
    # directed unit edges between a bin inside and one outside, the inside on their left:
    # below, right of, above and left of a bin inside (from, to as offsets of its corner)
    sides = (
        (~full[:-2, 1:-1], (0, 0), (1, 0)),
        (~full[1:-1, 2:], (1, 0), (1, 1)),
        (~full[2:, 1:-1], (1, 1), (0, 1)),
        (~full[1:-1, :-2], (0, 1), (0, 0)),
    )
    step: dict[tuple[int, int], list[tuple[int, int]]] = defaultdict(list)
    for outside, (fx, fy), (tx, ty) in sides:
        for j, i in zip(*np.nonzero(inner & outside), strict=True):
            x, y = int(i) + x0, int(j) + y0
            step[(x + fx, y + fy)].append((x + tx, y + ty))
    total = sum(len(v) for v in step.values())
    start = min(step)
    path, here, heading = [start], start, (0, 0)
    for _ in range(total):
        options = step[here]
        if not options:
            return None
        # where two regions touch at a corner, turn right: they stay one path
        nxt = min(options, key=lambda p: _turn(heading, (p[0] - here[0], p[1] - here[1])))
        options.remove(nxt)
        heading = (nxt[0] - here[0], nxt[1] - here[1])
        here = nxt
        if here == start:
            break
        path.append(here)
    if here != start or any(step.values()):
        return None  # a hole, or a second region
    corners = [
        p for k, p in enumerate(path)
        if (path[k - 1][0] - p[0]) * (path[(k + 1) % len(path)][1] - p[1])
        != (path[k - 1][1] - p[1]) * (path[(k + 1) % len(path)][0] - p[0])
    ]
    return tuple((x - _EDGE, y - _EDGE) for x, y in corners)


def _turn(heading: tuple[int, int], move: tuple[int, int]) -> int:
    """Rank of a move after ``heading``: right turn 0, straight 1, left 2 (first step: 1)."""
    cross = heading[0] * move[1] - heading[1] * move[0]
    return 1 - (cross < 0) + (cross > 0)


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
    notes: dict[str, set[str]],
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
        if x not in transforms:  # no display scale to bin on: the raw bounds
            return WsNode(path, "rectangle", (x,), ((xs[0], xs[1]),), count=count)
        return WsNode(
            path, "rectangle", (x,), (_bin_range(*_to_bins(transforms[x], xs)),),
            count=count, binned=True,
        )
    if not x or not y:
        raise FlowJoError(f"a {shape.tag} needs two axes", source=src, gate=gid)
    scaled = x in transforms and y in transforms
    if kind == "rectangle":
        if len(vertices) < 2:
            raise FlowJoError("a PolyRect needs its corners", source=src, gate=gid)
        xs, ys = [v[0] for v in vertices], [v[1] for v in vertices]
        if not scaled:
            bounds = ((min(xs), max(xs)), (min(ys), max(ys)))
            return WsNode(path, "rectangle", (x, y), bounds, count=count)
        bins = [_to_bins(transforms[x], [min(xs), max(xs)]), _to_bins(transforms[y], [min(ys), max(ys)])]
        bounds = tuple(_bin_range(lo, hi) for lo, hi in bins)
        return WsNode(path, "rectangle", (x, y), bounds, count=count, binned=True)
    if kind == "polygon":
        outline = None
        if scaled:
            bins = list(zip(
                _to_bins(transforms[x], [v[0] for v in vertices]),
                _to_bins(transforms[y], [v[1] for v in vertices]),
                strict=True,
            ))
            outline = _bin_outline(tuple(bins))
        if outline is None:
            why = "its bins do not form one region" if scaled else "an axis has no display scale"
            notes[f"polygons gated as drawn, not on FlowJo's display bins ({why})"].add(gid)
            return WsNode(path, "polygon", (x, y), vertices=tuple(vertices), count=count)
        return WsNode(path, "polygon", (x, y), vertices=tuple(outline), count=count, binned=True)
    # ellipse: the handles in display bins (FlowJo 10's pixels), evaluated as its bins
    if len(vertices) != 4:
        raise FlowJoError(
            f"a FlowJo 9 Ellipse needs 4 points, found {len(vertices)}", source=src, gate=gid
        )
    missing = [p for p in (x, y) if p not in transforms]
    if missing:
        raise FlowJoError(
            f"ellipse on {missing}: the parameter has no usable display scale (see its "
            "<Parameter> lowValue/highValue/decades); redraw the gate as a polygon",
            source=src,
            gate=gid,
        )
    handles = tuple(zip(
        _to_bins(transforms[x], [v[0] for v in vertices]),
        _to_bins(transforms[y], [v[1] for v in vertices]),
        strict=True,
    ))
    outline = _ellipse_outline(handles)
    if outline is None:  # as drawn: FlowJo 10's ellipse through the handles
        notes[
            "ellipses gated as drawn through their handles, not on FlowJo's display bins "
            "(no bins wholly inside, they do not form one region, or the handles are collinear)"
        ].add(gid)
        centre = tuple(sum(c) / 4.0 for c in zip(*handles, strict=True))
        return WsNode(path, "ellipse", (x, y), vertices=(centre, centre, *handles), count=count)
    notes[
        "FlowJo 9 ellipses: evaluated as the display bins wholly inside the ellipse through "
        "the four handles (a rule with no fitted number; within 0.7% of FlowJo 9 on the "
        "LabKey workspace, see gating._flowjo._mac)"
    ].add(gid)
    return WsNode(path, "ellipse", (x, y), vertices=outline, count=count, binned=True)


def _tree(
    parent_el: ET.Element,
    parent: tuple[str, ...],
    transforms: dict[str, Transform],
    src: str,
    notes: dict[str, set[str]],
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
            nodes.append(_shape(polygon, path, count, transforms, src, notes))
        else:
            raise FlowJoError(
                "a FlowJo 9 population without a <PolygonGate> or <BooleanGate> is not "
                "supported", source=src, gate=gid,
            )
        nodes.extend(_tree(pop, path, transforms, src, notes))
    return nodes


def _sample(el: ET.Element, src: str, notes: dict[str, set[str]]) -> FlowJoSample:
    node = el.find("SampleNode")
    if node is None:
        raise FlowJoError("a FlowJo 9 <Sample> lacks its <SampleNode>", source=src)
    name = node.get("name") or ""
    transforms, bad = _scales(el, src)
    nodes = tuple(_tree(node, (), transforms, src, notes))
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
    notes: dict[str, set[str]] = defaultdict(set)  # one warning per kind of approximation
    sample_list = root.find("SampleList")
    samples = tuple(
        _sample(el, src, notes)
        for el in ([] if sample_list is None else sample_list.findall("Sample"))
    )
    by_id = {s.sample_id: s.name for s in samples}
    groups: dict[str, tuple[str, ...]] = {}
    group_nodes: dict[str, tuple[WsNode, ...]] = {}
    for node in root.iterfind("Groups/GroupNode"):
        name = node.get("name") or ""
        refs = node.iterfind("Group/SampleRefs/SampleRef")
        groups[name] = tuple(by_id[r] for ref in refs if (r := ref.get("sampleID") or "") in by_id)
        members = [s for s in samples if s.name in groups[name]]
        scales = dict(members[0].transforms) if members else {}
        group_nodes[name] = tuple(_tree(node, (), scales, src, notes))
    for note, gates in notes.items():
        logger.warning("%s: %s: %s", src, note, ", ".join(sorted(gates)))
    return samples, groups, group_nodes
