"""FlowJo gate trees to :class:`~gating._strategy.Strategy` objects.

:func:`tree_strategy` converts the parsed :class:`~gating._flowjo._xml._Node` tree of a sample or a
group template under a :class:`Context` (the matrix and scales it is read with; see
:func:`group_context` for a group's): rectangles keep raw bounds, polygon vertices go through
the parameter's display transform, ellipses are rescaled from display pixels, FlowJo 9's
binned rectangles, polygons and ellipses (given in display bins) become display-scale
boxes and bin outlines, four sibling open-sided rectangles become one quadrant gate and
``eventsInside="0"`` shapes a Boolean ``not``. Where FlowJo stores what is described in
:mod:`gating._flowjo._workspace`.
"""

from __future__ import annotations

import dataclasses
import math
from collections import defaultdict
from collections.abc import Callable, Mapping

import numpy as np

from gating._flowjo._xml import DISPLAY_LENGTH, FlowJoError, FlowJoSample, WsNode
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
    RectangleGate,
    Strategy,
    StrategyError,
)
from gating._transforms import Transform

__all__ = ["Context", "group_context", "tree_strategy"]


@dataclasses.dataclass(frozen=True)
class Context:
    """What a tree needs to become a strategy: compensation and scales per parameter."""

    source: str
    label: str
    matrix: Matrix | None
    comp_names: Mapping[str, str]
    transforms: Mapping[str, Transform]
    lengths: Mapping[str, float]
    bad: Mapping[str, str]
    comp_problem: str = ""
    scale_problem: str = ""


def group_context(source: str, group: str, members: list[FlowJoSample]) -> Context:
    matrices = {s.compensation for s in members}
    problem = ""
    if len(matrices) > 1:
        problem = f"the samples of group {group!r} use different compensation"
    matrix = next(iter(matrices)) if len(matrices) == 1 else None
    comp_names = dict(members[0].comp_names) if members and not problem else {}
    transforms: dict[str, Transform] = {}
    lengths: dict[str, float] = {}
    bad: dict[str, str] = {}
    for param in {p for s in members for p in (*s.transforms, *s.bad_transforms)}:
        seen = [(s.transforms.get(param), s.lengths.get(param)) for s in members]
        if seen[0][0] is not None and all(x == seen[0] for x in seen):
            transforms[param], lengths[param] = seen[0][0], seen[0][1] or DISPLAY_LENGTH
        else:
            bad[param] = f"the samples of group {group!r} disagree on its transform"
    no_samples = "" if members else f"group {group!r} has no samples to take display scales from"
    return Context(
        source,
        f"group {group!r}",
        matrix,
        comp_names,
        transforms,
        lengths,
        bad,
        problem,
        no_samples,
    )


class _Builder:
    """Turns one tree into gates, collecting the transforms and matrices they use."""

    def __init__(self, ctx: Context) -> None:
        self.ctx = ctx
        self.transforms: dict[str, Transform] = {}
        self.matrices: dict[str, Matrix] = {}

    def fail(self, message: str, gate: str) -> FlowJoError:
        return FlowJoError(f"{self.ctx.label}: {message}", source=self.ctx.source, gate=gate)

    def dimension(self, param: str, gate: str, *, scaled: bool) -> tuple[Dimension, float]:
        """The axis of a FlowJo parameter; with ``scaled``, on the parameter's display scale."""
        ctx = self.ctx
        if param in ctx.comp_names and ctx.matrix is not None:
            name, comp = ctx.comp_names[param], ctx.matrix.id
            self.matrices[comp] = ctx.matrix
        elif ctx.comp_problem and param.startswith("Comp-"):
            raise self.fail(f"parameter {param!r}: {ctx.comp_problem}", gate)
        elif param.startswith("Comp-") and ctx.matrix is None:
            name, comp = param[len("Comp-") :], FILE_SPILLOVER
        else:
            name, comp = param, UNCOMPENSATED
        if not scaled:
            return Dimension(name, comp), 1.0
        if ctx.scale_problem:
            raise self.fail(f"parameter {param!r}: {ctx.scale_problem}", gate)
        key = next((k for k in (param, name) if k in ctx.transforms or k in ctx.bad), None)
        if key is not None and key in ctx.bad:
            raise self.fail(f"parameter {param!r} has no usable transform ({ctx.bad[key]})", gate)
        if key is None:
            return Dimension(name, comp), DISPLAY_LENGTH
        self.transforms[key] = ctx.transforms[key]
        return Dimension(name, comp, key), ctx.lengths.get(key, DISPLAY_LENGTH)

    def shape(self, node: WsNode, gid: str, parent: str | None, name: str) -> Gate:
        if node.binned:
            return self.binned(node, gid, parent, name)
        if node.kind == "rectangle":
            dims = tuple(self.dimension(p, node.id, scaled=False)[0] for p in node.params)
            return RectangleGate(gid, dims, node.bounds, parent, name, inclusive="max")
        if node.kind == "polygon":
            resolved = [self.dimension(p, node.id, scaled=True)[0] for p in node.params]
            if len(resolved) != 2:
                raise self.fail("a polygon needs two axes", node.id)
            cols = [
                self.transforms[d.transform].apply(np.array([v[i] for v in node.vertices]))
                if d.transform
                else np.array([v[i] for v in node.vertices])
                for i, d in enumerate(resolved)
            ]
            vertices = tuple((float(x), float(y)) for x, y in zip(*cols, strict=True))
            return PolygonGate(gid, (resolved[0], resolved[1]), vertices, parent, name)
        scaled = [self.dimension(p, node.id, scaled=True) for p in node.params]
        if any(d.transform is None for d, _ in scaled):
            raise self.fail("ellipse axes need a display transform (FlowJo stores pixels)", node.id)
        mean, cov = _ellipse(node, [length for _, length in scaled], self.fail)
        return EllipsoidGate(gid, tuple(d for d, _ in scaled), mean, cov, 1.0, parent, name)

    def binned(self, node: WsNode, gid: str, parent: str | None, name: str) -> Gate:
        """A FlowJo 9 rectangle, polygon or ellipse given in display bins, on the display
        scale: a box, or the outline of the bins (a polygon) for the other two."""
        scaled = [self.dimension(p, node.id, scaled=True) for p in node.params]
        if any(d.transform is None for d, _ in scaled):
            raise self.fail("a FlowJo 9 gate's axes need a display scale (it gates on bins)", node.id)
        dims = tuple(d for d, _ in scaled)
        lengths = [length for _, length in scaled]
        if node.kind == "rectangle":
            bounds = tuple(
                (None if lo is None else lo / n, None if hi is None else hi / n)
                for (lo, hi), n in zip(node.bounds, lengths, strict=True)
            )
            return RectangleGate(gid, dims, bounds, parent, name, inclusive="min")
        if node.kind not in ("polygon", "ellipse") or len(dims) != 2:
            raise self.fail(f"a binned {node.kind} is not supported", node.id)
        vertices = tuple((x / lengths[0], y / lengths[1]) for x, y in node.vertices)
        return PolygonGate(gid, (dims[0], dims[1]), vertices, parent, name)


def _ellipse(
    node: WsNode, lengths: list[float], fail: Callable[[str, str], FlowJoError]
) -> tuple[tuple[float, ...], tuple[tuple[float, ...], ...]]:
    """Mean and covariance (scale units) of a FlowJo ellipse given in display pixels.

    Built from FlowJo's four handles alone, in display space: the first two edge points are
    the ends of one axis (direction and semi-axis ``a``), the last two the ends of the
    other (semi-axis ``b``, perpendicular to the first); the centre is the mean of the four.
    The foci are not used (FlowJo derives them from the handles).
    """
    e0, e1, e2, e3 = (np.asarray(v, dtype=np.float64) for v in node.vertices[2:])
    centre = (e0 + e1 + e2 + e3) / 4.0
    a = float(np.linalg.norm(e1 - e0)) / 2.0
    b = float(np.linalg.norm(e3 - e2)) / 2.0
    if not (a > 0.0 and b > 0.0):
        raise fail(
            f"ellipse handles give semi-axes {a} and {b}: both must be positive "
            "(redraw the ellipse in FlowJo)",
            node.id,
        )
    u = (e1 - e0) / (2.0 * a)
    v = np.array([-u[1], u[0]])
    cov = a * a * np.outer(u, u) + b * b * np.outer(v, v)
    scale = np.asarray(lengths, dtype=np.float64)
    cov = cov / np.outer(scale, scale)
    return tuple(map(float, centre / scale)), tuple(tuple(map(float, r)) for r in cov)


def _quadrant_sets(nodes: tuple[WsNode, ...]) -> dict[str, list[WsNode]]:
    """Sibling open-sided rectangles that tile a plane into 4 quadrants (FlowJo quad gates)."""
    groups: dict[tuple, list[WsNode]] = defaultdict(list)
    for n in nodes:
        if n.kind != "rectangle" or not n.inside or len(n.params) != 2:
            continue
        if all((lo is None) != (hi is None) for lo, hi in n.bounds):
            splits = tuple(lo if hi is None else hi for lo, hi in n.bounds)
            groups[(n.path[:-1], n.params, splits)].append(n)
    out: dict[str, list[WsNode]] = {}
    for members in groups.values():
        sides = {tuple(hi is None for _, hi in m.bounds) for m in members}
        if len(members) == 4 and len(sides) == 4:
            out.update({m.id: members for m in members})
    return out


def tree_strategy(nodes: tuple[WsNode, ...], ctx: Context, *, name: str, version: str) -> Strategy:
    build = _Builder(ctx)
    ids = {n.id for n in nodes}
    if len(ids) != len(nodes):
        dup = next(n.id for n in nodes if sum(m.id == n.id for m in nodes) > 1)
        raise build.fail("two populations share this path", dup)
    quads = _quadrant_sets(nodes)
    gates: list[Gate] = []
    notes = {"": f"FlowJo {version} workspace, {ctx.label}"}
    done: set[str] = set()
    for node in nodes:
        parent = "/" + "/".join(node.path[:-1]) if len(node.path) > 1 else None
        label = node.path[-1]
        if node.id in quads:
            if node.id not in done:
                gates.append(_quadrant_gate(quads[node.id], build, parent))
                done.update(m.id for m in quads[node.id])
        elif node.kind in ("and", "or", "not"):
            negated = node.negated or (False,) * len(node.dependents)
            operands = tuple(
                (_dependent(d, node, parent, ids, build), bool(neg))
                for d, neg in zip(node.dependents, negated, strict=True)
            )
            if (node.kind == "not") != (len(operands) == 1) or not operands:
                raise build.fail(f"{node.kind} node with {len(operands)} dependents", node.id)
            gates.append(BooleanGate(node.id, node.kind, operands, parent, label))  # type: ignore[arg-type]
        elif node.inside:
            gates.append(build.shape(node, node.id, parent, label))
            if node.binned:
                notes[node.id] = (
                    "FlowJo 9: the display bins (256 per axis) wholly inside the ellipse "
                    "through FlowJo's four handles"
                    if node.kind == "ellipse"
                    else "FlowJo 9: the display bins (256 per axis) whose centres FlowJo's gate holds"
                )
        else:
            helper = f"{node.id}#inside"
            gates.append(build.shape(node, helper, parent, f"{label} (inside)"))
            gates.append(BooleanGate(node.id, "not", ((helper, False),), parent, label))
            notes[helper] = "shape of an eventsInside=0 gate; the population is its complement"
    try:
        return Strategy(
            tuple(gates),
            dict(build.transforms),
            {},
            dict(build.matrices),
            name=name,
            source=ctx.source,
            notes=notes,
            channel_matching="flowjo",
        )
    except FlowJoError:
        raise
    except StrategyError as exc:
        raise FlowJoError(exc.detail, source=ctx.source, gate=exc.gate) from None


def _dependent(dep: str, node: WsNode, parent: str | None, ids: set[str], build: _Builder) -> str:
    """A Boolean dependent: a path from the root (FlowJo's form), else relative to the parent."""
    for candidate in ("/" + dep.strip("/"), f"{parent or ''}/{dep}"):
        if candidate in ids and candidate != node.id:
            return candidate
    raise build.fail(f"Boolean dependent {dep!r} is not a population", node.id)


def _quadrant_gate(members: list[WsNode], build: _Builder, parent: str | None) -> QuadrantGate:
    first = members[0]
    dims = [build.dimension(p, first.id, scaled=False)[0] for p in first.params]
    splits = [lo if hi is None else hi for lo, hi in first.bounds]
    dividers = tuple(
        Divider(f"split {i}: {p}", d, (float(s),))
        for i, (p, d, s) in enumerate(zip(first.params, dims, splits, strict=True))
    )
    # FlowJo's intervals are (-inf, s] and (s, inf): s itself locates the lower quadrant
    quadrants = tuple(
        Quadrant(
            m.id,
            tuple(
                (div.id, math.nextafter(lo, math.inf) if hi is None else hi)
                for div, (lo, hi) in zip(dividers, m.bounds, strict=True)
            ),
            m.path[-1],
        )
        for m in members
    )
    return QuadrantGate(
        f"{first.id}#quadrants", dividers, quadrants, parent, None, inclusive="max"
    )
