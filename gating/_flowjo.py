"""FlowJo 10 workspaces (``.wsp``) as :class:`~gating._strategy.Strategy` objects.

:func:`read_flowjo` parses a workspace once (``defusedxml``: no DTDs, no entities, no network)
into a :class:`FlowJoWorkspace`: its samples (FlowJo sample id, name, FCS file and URI, the
compensation matrix, one scale transform per parameter, FlowJo's own recorded counts), its
groups, and the gate trees of samples and group templates. :meth:`FlowJoWorkspace.strategy_for`
and :meth:`FlowJoWorkspace.group_strategy` turn a tree into a strategy. Population ids are
FlowJo paths (``/Lymphocytes/Singlets/CD3+``), display names the FlowJo gate names, so
``Strategy.path(id) == id``.

Where FlowJo stores coordinates (established against FlowJo's counts)
---------------------------------------------------------------------
* Rectangle bounds and polygon vertices are in **raw channel units**, compensated when the
  parameter is a compensated one (``Comp-CD4 PE-Cy7 FLR-A``), whatever the axis scale: the
  rectangles of the biex and asinh workspaces have bounds like ``127585.76`` on axes whose scale
  values run from 0 to 1 (or 0 to 256), and counting raw events with ``min <= x < max`` gives
  FlowJo's counts exactly (50605, 50559 and 50699 of 200000; quadrants 49671/50596/50330/49403).
  A rectangle is the same set whichever monotone scale it is drawn on, so rectangles (and the
  quadrant gates FlowJo writes as four open-sided rectangles) keep raw bounds and no transform.
* A polygon's edges are straight on the **display scale** (the parameter's transform), not in
  raw units, so its dimensions carry the parameter's transform and its vertices are mapped
  through it (identical sets for linear scales; different, and FlowJo's, for biex or log).
* Ellipses are the exception: foci and edge points are stored in **display pixels**, the
  transform's scale times its ``length`` (256 unless the transform says otherwise). The four
  edge points are FlowJo's handles: the two ends of the major axis, then the two minor-axis
  handles (only their distance counts; FlowJo derives the foci from it). The ellipse is
  ``|p - f1| + |p - f2| <= 2a`` with ``a`` half the major-axis length, so ``b^2 = a^2 - c^2``
  (``c`` half the focal distance) and the covariance is ``a^2 u u' + b^2 v v'`` with
  ``distance_square = 1``, rescaled from pixels to scale units. The 51-event workspace gives 51.
  FlowJo itself evaluates polygons and ellipses on 256-bin data, so their counts may differ
  from the exact geometry by events within a bin of an edge.

Compensation: the sample's ``transforms:spilloverMatrix`` becomes a :class:`Matrix` (rows the
spilling parameters, columns the detectors; non-square spectral matrices are unmixed by least
squares). A gate parameter named ``prefix + name + suffix`` (or a ``userProvidedCompInfix``) is
channel ``name`` compensated with that matrix; a ``Comp-`` parameter of a sample without a
matrix uses the file's own spillover (``"FCS"``); anything else is uncompensated.
Gates with ``eventsInside="0"`` are the complement of their shape: the shape becomes a helper
population ``<id>#inside`` and the FlowJo population a Boolean ``not`` of it.
"""

from __future__ import annotations

import dataclasses
import logging
import math
import os
import re
import xml.etree.ElementTree as ET
from collections import defaultdict
from collections.abc import Callable, Iterator, Mapping
from urllib.parse import unquote, urlparse

import defusedxml.ElementTree as SafeET
import numpy as np
from defusedxml import DefusedXmlException

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
from gating._transforms import Transform, transform_from_flowjo

__all__ = ["FlowJoError", "FlowJoSample", "FlowJoWorkspace", "read_flowjo"]

logger = logging.getLogger(__name__)

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


@dataclasses.dataclass(frozen=True)
class _Context:
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


@dataclasses.dataclass(frozen=True)
class FlowJoWorkspace:
    """A parsed FlowJo 10 workspace; see :func:`read_flowjo`.

    Attributes
    ----------
    source
        The workspace file (or the ``source`` given).
    version
        ``flowJoVersion`` of the writer.
    samples
        The samples, in document order.
    groups
        Group name to the names of its samples.
    group_nodes
        Internal: each group's parsed template tree.
    """

    source: str
    version: str
    samples: tuple[FlowJoSample, ...]
    groups: Mapping[str, tuple[str, ...]]
    group_nodes: Mapping[str, tuple[_Node, ...]] = dataclasses.field(repr=False)

    def sample(self, name_or_fcs_file: str) -> FlowJoSample:
        """The sample with this node name, else this FCS file name, else this sample id.

        Raises
        ------
        KeyError
            No sample (or several) match.
        """
        for field in ("name", "fcs_file", "sample_id"):
            hits = [s for s in self.samples if getattr(s, field) == name_or_fcs_file]
            if len(hits) == 1:
                return hits[0]
            if len(hits) > 1:
                raise KeyError(
                    f"{self.source}: {len(hits)} samples have {field} {name_or_fcs_file!r}"
                )
        raise KeyError(
            f"{self.source}: no sample {name_or_fcs_file!r}; samples: {[s.name for s in self.samples]}"
        )

    def strategy_for(self, sample_name_or_fcs_file: str) -> Strategy:
        """The gating strategy of one sample (its own gate tree, matrix and transforms).

        Parameters
        ----------
        sample_name_or_fcs_file
            Sample name, FCS file name, or FlowJo sample id.

        Returns
        -------
        Strategy
            Population ids are FlowJo paths.
        """
        s = self.sample(sample_name_or_fcs_file)
        ctx = _Context(
            self.source,
            f"sample {s.name!r}",
            s.compensation,
            s.comp_names,
            s.transforms,
            s.lengths,
            s.bad_transforms,
        )
        return _strategy(s.nodes, ctx, name=s.name, version=self.version)

    def group_strategy(self, group_name: str) -> Strategy:
        """The template gate tree of a group, with its samples' common matrix and transforms.

        Parameters
        ----------
        group_name
            A key of :attr:`groups`.

        Returns
        -------
        Strategy
            The group's template; a parameter whose transform differs between the group's
            samples (or a compensated one whose matrix differs) fails where a gate needs it.
        """
        if group_name not in self.group_nodes:
            raise KeyError(f"{self.source}: no group {group_name!r}; groups: {list(self.groups)}")
        members = [self.sample(n) for n in self.groups.get(group_name, ())]
        ctx = _group_context(self.source, group_name, members)
        return _strategy(self.group_nodes[group_name], ctx, name=group_name, version=self.version)


def _group_context(source: str, group: str, members: list[FlowJoSample]) -> _Context:
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
            transforms[param], lengths[param] = seen[0][0], seen[0][1] or _DISPLAY_LENGTH
        else:
            bad[param] = f"the samples of group {group!r} disagree on its transform"
    no_samples = "" if members else f"group {group!r} has no samples to take display scales from"
    return _Context(
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


# ---- reading --------------------------------------------------------------------------------
def read_flowjo(path: str | os.PathLike[str], *, source: str | None = None) -> FlowJoWorkspace:
    """Parse a FlowJo 10 workspace.

    Parameters
    ----------
    path
        The ``.wsp`` file.
    source
        Name used in errors and as :attr:`Strategy.source` (default: ``path``).

    Returns
    -------
    FlowJoWorkspace
        Samples, groups and gate trees.

    Raises
    ------
    FlowJoError
        Not well-formed or forbidden XML (DTDs, entities), an unsupported gate type (the error
        names its path), or a malformed gate, matrix or Boolean node.
    """
    src = str(path) if source is None else source
    try:
        root = SafeET.parse(os.fspath(path), forbid_dtd=True).getroot()
    except (ET.ParseError, DefusedXmlException) as exc:
        raise FlowJoError(f"not a readable workspace: {exc}", source=src) from None
    if _local(root.tag) != "Workspace":
        raise FlowJoError(f"root element is <{_local(root.tag)}>, not <Workspace>", source=src)
    samples = tuple(_sample(el, src) for el in _kids(_kid(root, "SampleList"), "Sample"))
    by_id = {s.sample_id: s.name for s in samples}
    groups: dict[str, tuple[str, ...]] = {}
    group_nodes: dict[str, tuple[_Node, ...]] = {}
    for node in _kids(_kid(root, "Groups"), "GroupNode"):
        name = _attr(node, "name") or ""
        refs = _kids(_kid(_kid(node, "Group"), "SampleRefs"), "SampleRef")
        groups[name] = tuple(by_id[r] for i in refs if (r := _attr(i, "sampleID") or "") in by_id)
        group_nodes[name] = tuple(_tree(_kid(node, "Subpopulations"), (), src))
    return FlowJoWorkspace(src, _attr(root, "flowJoVersion") or "", samples, groups, group_nodes)


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


# ---- conversion to the neutral model --------------------------------------------------------
class _Builder:
    """Turns one tree into gates, collecting the transforms and matrices they use."""

    def __init__(self, ctx: _Context) -> None:
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
            return Dimension(name, comp), _DISPLAY_LENGTH
        self.transforms[key] = ctx.transforms[key]
        return Dimension(name, comp, key), ctx.lengths.get(key, _DISPLAY_LENGTH)

    def shape(self, node: _Node, gid: str, parent: str | None, name: str) -> Gate:
        if node.kind == "rectangle":
            dims = tuple(self.dimension(p, node.id, scaled=False)[0] for p in node.params)
            return RectangleGate(gid, dims, node.bounds, parent, name)
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


def _ellipse(
    node: _Node, lengths: list[float], fail: Callable[[str, str], FlowJoError]
) -> tuple[tuple[float, ...], tuple[tuple[float, ...], ...]]:
    """Mean and covariance (scale units) of a FlowJo ellipse given in display pixels."""
    f1, f2, e0, e1, _, _ = (np.asarray(v, dtype=np.float64) for v in node.vertices)
    centre = (f1 + f2) / 2.0
    c = float(np.linalg.norm(f1 - f2)) / 2.0
    a = float(np.linalg.norm(e0 - e1)) / 2.0
    if not a > c:
        raise fail(
            f"ellipse major semi-axis {a} is not longer than the focal distance {c}", node.id
        )
    if c == 0.0:
        cov = np.eye(2) * a * a
    else:
        u = (f1 - f2) / (2.0 * c)
        v = np.array([-u[1], u[0]])
        cov = a * a * np.outer(u, u) + (a * a - c * c) * np.outer(v, v)
    scale = np.asarray(lengths, dtype=np.float64)
    cov = cov / np.outer(scale, scale)
    return tuple(map(float, centre / scale)), tuple(tuple(map(float, r)) for r in cov)


def _quadrant_sets(nodes: tuple[_Node, ...]) -> dict[str, list[_Node]]:
    """Sibling open-sided rectangles that tile a plane into 4 quadrants (FlowJo quad gates)."""
    groups: dict[tuple, list[_Node]] = defaultdict(list)
    for n in nodes:
        if n.kind != "rectangle" or not n.inside or len(n.params) != 2:
            continue
        if all((lo is None) != (hi is None) for lo, hi in n.bounds):
            splits = tuple(lo if hi is None else hi for lo, hi in n.bounds)
            groups[(n.path[:-1], n.params, splits)].append(n)
    out: dict[str, list[_Node]] = {}
    for members in groups.values():
        sides = {tuple(hi is None for _, hi in m.bounds) for m in members}
        if len(members) == 4 and len(sides) == 4:
            out.update({m.id: members for m in members})
    return out


def _strategy(nodes: tuple[_Node, ...], ctx: _Context, *, name: str, version: str) -> Strategy:
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
            operands = tuple(
                (_dependent(d, node, parent, ids, build), False) for d in node.dependents
            )
            if (node.kind == "not") != (len(operands) == 1) or not operands:
                raise build.fail(f"{node.kind} node with {len(operands)} dependents", node.id)
            gates.append(BooleanGate(node.id, node.kind, operands, parent, label))  # type: ignore[arg-type]
        elif node.inside:
            gates.append(build.shape(node, node.id, parent, label))
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
        )
    except FlowJoError:
        raise
    except StrategyError as exc:
        raise FlowJoError(exc.detail, source=ctx.source, gate=exc.gate) from None


def _dependent(dep: str, node: _Node, parent: str | None, ids: set[str], build: _Builder) -> str:
    """A Boolean dependent: a path from the root (FlowJo's form), else relative to the parent."""
    for candidate in ("/" + dep.strip("/"), f"{parent or ''}/{dep}"):
        if candidate in ids and candidate != node.id:
            return candidate
    raise build.fail(f"Boolean dependent {dep!r} is not a population", node.id)


def _quadrant_gate(members: list[_Node], build: _Builder, parent: str | None) -> QuadrantGate:
    first = members[0]
    dims = [build.dimension(p, first.id, scaled=False)[0] for p in first.params]
    splits = [lo if hi is None else hi for lo, hi in first.bounds]
    dividers = tuple(
        Divider(f"split {i}: {p}", d, (float(s),))
        for i, (p, d, s) in enumerate(zip(first.params, dims, splits, strict=True))
    )
    quadrants = tuple(
        Quadrant(
            m.id,
            tuple(
                (div.id, lo if hi is None else math.nextafter(hi, -math.inf))
                for div, (lo, hi) in zip(dividers, m.bounds, strict=True)
            ),
            m.path[-1],
        )
        for m in members
    )
    return QuadrantGate(f"{first.id}#quadrants", dividers, quadrants, parent, None)
