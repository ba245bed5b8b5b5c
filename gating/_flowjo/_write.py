"""FlowJo 10 workspace output: :func:`write_flowjo` and :func:`bind_channels`.

The workspace follows the layout FlowJo 10.7 writes (``Workspace version="20.0"``): one group
(``All Samples``) holding every sample, and per sample its ``DataSet`` (the FCS file as a
``file:`` URI), the compensation as ``transforms:spilloverMatrix`` (prefix ``Comp-``), one
display transform per parameter in ``Transformations`` (``transforms:linear``, ``log``,
``logicle``, ``fasinh``, ``biex``, ``hyperlog``), the FCS keywords, and the gate tree as nested
``Population`` elements whose ``Gate`` holds a ``gating:RectangleGate`` /
``gating:PolygonGate`` / ``gating:EllipsoidGate`` on ``data-type:fcs-dimension`` axes, and
``AndNode`` / ``OrNode`` / ``NotNode`` Boolean nodes whose ``Dependent`` names are paths from the
root. The group's ``Subpopulations`` repeat the tree as its template.

How phenoflow gates become FlowJo gates (FlowJo stores coordinates in raw channel units; see
:mod:`gating._flowjo._workspace`):

* rectangles and quadrants: bounds are mapped to raw units through the inverse of the
  dimension's transform. FlowJo counts ``min < x <= max``; a Gating-ML/YAML gate counts
  ``min <= x < max``, so its raw bounds are written as the next double below (``(b-, c-]`` is
  exactly ``[b, c)`` on raw values). Each quadrant becomes one rectangle population (open
  sides where the quadrant is open), as FlowJo writes its quadrant gates;
* polygons: vertices are mapped to raw units, and the parameter's display transform is the
  dimension's transform (a straight edge on that scale is FlowJo's edge); without a transform
  a linear display is written;
* ellipses (two dimensions, both with a transform): foci and the four handles in display
  pixels (scale value x 256), and ``gating:distance`` (FlowJo writes it on every ellipse;
  here the focal sum ``2a``).

Conventions checked against FlowJo's own files (``tests/gating/test_flowjo_layout.py``): every
element path and attribute written here occurs in a workspace saved by FlowJo 10 (10.7.1 for
the document, samples, polygons, rectangles, linear/biex/fasinh transforms; 10.6/10.0.7 for
ellipses and Boolean nodes), except the ``logicle``/``hyperlog`` transforms and the
``spilloverMatrix``, of which the shared FlowJo 10 files have no example. A FlowJo 10.8.1
workspace in FlowKit's public test data (``8_color_ICS_with_ellipse.wsp``) has that
``spilloverMatrix`` (its elements, and a subset of its attributes) under ``Sample`` before
``Transformations``, a ``logicle`` with our attributes, and each compensated parameter's
transform under both ``Comp-<detector>`` and ``<detector>``, as written here. Values as FlowJo
writes them: ``file:/...`` URIs, ``ID<digits>`` gate ids, population counts under each
``SampleNode`` (``-1`` in the group template), numbers without a needless fraction
(``maxRange="262144"``, a coefficient ``"1"``).

Refused with :class:`FlowJoError` naming the gate and the construct: ratio dimensions, a
parameter drawn on two different scales by polygons/ellipses, transforms with
``boundMin``/``boundMax`` clamps, Gating-ML ``flog`` (FlowJo's log is flat below its offset),
an inverted or non-square matrix, two different compensations, complemented Boolean operands,
a population name containing ``/`` or shared by two siblings. After writing, the workspace is
read back with :func:`gating.read_flowjo` and gated on every given FCS file: a population
whose count differs from the strategy's (an event on a transformed bound, for example) is
refused as well, so a written workspace always gives phenoflow's counts.
"""

from __future__ import annotations

import dataclasses
import math
import os
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from engine.runtime import atomic_write_text
from gating._flowjo._workspace import read_flowjo
from gating._flowjo._xml import FlowJoError
from gating._gatingml import xml_attribute
from gating._strategy import (
    FILE_SPILLOVER,
    UNCOMPENSATED,
    BooleanGate,
    Dimension,
    EllipsoidGate,
    Gate,
    Matrix,
    PolygonGate,
    QuadrantGate,
    RectangleGate,
    Strategy,
)
from gating._transforms import (
    Asinh,
    FlowJoBiex,
    FlowJoLinear,
    FlowJoLog,
    Hyperlog,
    Linear,
    Logicle,
    Transform,
)

if TYPE_CHECKING:  # the reader (pandas, its kernels) loads when files are read, not to convert
    from gating._fcs import FCSData

__all__ = ["bind_channels", "write_flowjo"]

GROUP = "All Samples"
PREFIX = "Comp-"
LENGTH = 256.0  # FlowJo's display length (pixels of a scale from 0 to 1)
_NS = {
    "xmlns:xsi": "http://www.w3.org/2001/XMLSchema-instance",
    "xmlns:gating": "http://www.isac-net.org/std/Gating-ML/v2.0/gating",
    "xmlns:transforms": "http://www.isac-net.org/std/Gating-ML/v2.0/transformations",
    "xmlns:data-type": "http://www.isac-net.org/std/Gating-ML/v2.0/datatypes",
}


# ---- channels ---------------------------------------------------------------------------------
def bind_channels(strategy: Strategy, samples: Iterable[FCSData]) -> Strategy:
    """``strategy`` with every channel name replaced by the ``$PnN`` it resolves to.

    phenoflow finds a dimension's channel by ``$PnN``, case-insensitively, by a unique
    ``$PnS`` marker or (workspaces) in FlowJo's mangled form; other programs need the
    ``$PnN`` itself. The names are resolved by :func:`gating.compile_plan` on each sample and
    must resolve the same way on all of them.

    Parameters
    ----------
    strategy
        The strategy.
    samples
        FCS files read with :func:`gating.read_fcs`.

    Returns
    -------
    Strategy
        The same gates on ``$PnN`` names (the strategy itself when nothing changes).

    Raises
    ------
    FlowJoError
        A name resolves to different channels in two samples.

    Examples
    --------
    >>> import gating  # doctest: +SKIP
    >>> data = gating.read_fcs("P01_pre.fcs")  # doctest: +SKIP
    >>> bound = bind_channels(gating.preset("study_panel"), [data])  # doctest: +SKIP
    >>> bound.gates[2].dimensions[0].name  # doctest: +SKIP
    'BV510-A'
    """
    from gating._plan import compile_plan  # at call time: gating._plan imports much of gating

    names: dict[str, tuple[str, str]] = {}
    for data in samples:
        plan = compile_plan(strategy, data)
        found = {name: pnn for name, pnn, _ in plan.channel_map}
        for name in {*names, *found}:
            pnn = found.get(name, name)
            if name in names and names[name][0] != pnn:
                raise FlowJoError(
                    f"channel {name!r} is {names[name][0]!r} in {names[name][1]} but {pnn!r} in "
                    f"{data.path}: the files do not share one channel layout",
                    source=strategy.source,
                )
            names.setdefault(name, (pnn, str(data.path)))
    mapping = {k: v for k, (v, _) in names.items() if k != v}
    if not mapping:
        return strategy

    def dim(d: Dimension) -> Dimension:
        fluor = d.compensation in strategy.matrices and d.name in (
            strategy.matrices[d.compensation].fluorochromes
        )
        if d.ratio or fluor:
            return d
        return dataclasses.replace(d, name=mapping.get(d.name, d.name))

    gates: list[Gate] = []
    for g in strategy.gates:
        if isinstance(g, QuadrantGate):
            divs = tuple(dataclasses.replace(v, dimension=dim(v.dimension)) for v in g.dividers)
            g = dataclasses.replace(g, dividers=divs)
        elif not isinstance(g, BooleanGate):
            g = dataclasses.replace(g, dimensions=tuple(dim(d) for d in g.dimensions))
        gates.append(g)
    ratios = {
        k: dataclasses.replace(
            r,
            numerator=mapping.get(r.numerator, r.numerator),
            denominator=mapping.get(r.denominator, r.denominator),
        )
        for k, r in strategy.ratios.items()
    }
    return dataclasses.replace(strategy, gates=tuple(gates), ratios=ratios)


# ---- XML ----------------------------------------------------------------------------------------
class _El:
    """An element: tag, attributes (in order), children; written FlowJo-style."""

    def __init__(self, tag: str, attrs: Mapping[str, Any] | None = None, kids: Iterable[_El] = ()):
        self.tag = tag
        self.attrs = {k: v for k, v in (attrs or {}).items() if v is not None}
        self.kids = list(kids)

    def lines(self, depth: int, out: list[str]) -> None:
        pad = " " * (depth + 1)
        attrs = "".join(f" {k}={_q(v)} " for k, v in self.attrs.items())
        if not self.kids:
            out.append(f"{pad}<{self.tag}{attrs}/>")
            return
        out.append(f"{pad}<{self.tag}{attrs}>")
        for kid in self.kids:
            kid.lines(depth + 2, out)
        out.append(f"{pad}</{self.tag}>")


def _q(value: Any) -> str:
    if isinstance(value, bool):
        value = "1" if value else "0"
    elif isinstance(value, float):
        value = repr(value)
    return xml_attribute(str(value))


def _num(value: float) -> str:
    """A transform parameter or matrix coefficient as FlowJo writes it: integral values without
    a fraction (``maxRange="262144"``, ``value="1"``, never ``-0.0``), others in full
    precision."""
    v = float(value)
    if v.is_integer() and abs(v) < 2.0**53:
        return str(int(v))
    return repr(v)


def _transform_el(t: Transform, param: str) -> _El:
    el = _transform_kind(t, param)
    el.attrs = {k: v if isinstance(v, str) else _num(v) for k, v in el.attrs.items()}
    return el


def _transform_kind(t: Transform, param: str) -> _El:
    dim = [_El("data-type:parameter", {"data-type:name": param})]
    if isinstance(t, FlowJoLinear):
        attrs = {"transforms:minRange": t.min_range, "transforms:maxRange": t.max_range,
                 "gain": t.gain}
        return _El("transforms:linear", attrs, dim)
    if isinstance(t, Linear):  # (x + a) / (t + a): FlowJo's minRange -a, maxRange t
        attrs = {"transforms:minRange": -t.a, "transforms:maxRange": t.t, "gain": 1}
        return _El("transforms:linear", attrs, dim)
    if isinstance(t, FlowJoLog):
        return _El("transforms:log", {"transforms:offset": t.offset,
                                      "transforms:decades": t.decades}, dim)
    if isinstance(t, Asinh):
        attrs = {"transforms:length": int(LENGTH), "transforms:maxRange": t.t,
                 "transforms:T": t.t, "transforms:M": t.m, "transforms:A": t.a,
                 "transforms:W": -(10.0**t.m)}
        return _El("transforms:fasinh", attrs, dim)
    if isinstance(t, Logicle | Hyperlog):
        tag = "transforms:logicle" if isinstance(t, Logicle) else "transforms:hyperlog"
        attrs = {"transforms:length": int(LENGTH), "transforms:T": t.t, "transforms:A": t.a,
                 "transforms:W": t.w, "transforms:M": t.m}  # FlowJo 10.8's order
        return _El(tag, attrs, dim)
    if isinstance(t, FlowJoBiex):
        attrs = {"transforms:length": int(LENGTH), "transforms:maxRange": t.max_range,
                 "transforms:neg": t.negative, "transforms:width": t.width,
                 "transforms:pos": t.positive}
        return _El("transforms:biex", attrs, dim)
    raise TypeError(type(t).__name__)  # pragma: no cover - checked before


def _matrix_el(m: Matrix, mid: str) -> _El:
    params = _El(
        "data-type:parameters",
        None,
        [_El("data-type:parameter", {"data-type:name": f}) for f in m.fluorochromes],
    )
    rows = [
        _El(
            "transforms:spillover",
            {"data-type:parameter": f},
            [
                _El("transforms:coefficient",
                    {"data-type:parameter": d, "transforms:value": _num(v)})
                for d, v in zip(m.detectors, row, strict=True)
            ],
        )
        for f, row in zip(m.fluorochromes, m.values, strict=True)
    ]
    attrs = {"spectral": "0", "prefix": PREFIX, "suffix": "", "name": m.id,
             "transforms:id": mid}
    return _El("transforms:spilloverMatrix", attrs, [params, *rows])


# ---- the conversion -------------------------------------------------------------------------------
@dataclasses.dataclass(frozen=True)
class _Shape:
    """One FlowJo population: its path, the gate element, or a Boolean node."""

    path: tuple[str, ...]
    gate: _El | None = None
    boolean: tuple[str, tuple[str, ...]] | None = None  # (AndNode|OrNode|NotNode, dependents)


class _Converter:
    def __init__(self, strategy: Strategy) -> None:
        self.s = strategy
        self.scales: dict[str, tuple[Transform | None, str]] = {}  # FlowJo parameter -> (scale, gate)
        self.compensation: str | None = None
        self.siblings: dict[tuple[str, ...], str] = {}  # population path -> id
        self.helpers: dict[tuple[tuple[str, ...], tuple[str, ...]], tuple[str, ...]] = {}
        self.extra: list[_Shape] = []

    def fail(self, message: str, gate: str) -> FlowJoError:
        return FlowJoError(
            f"cannot be written to a FlowJo workspace: {message}",
            source=self.s.source,
            gate=self.s.path(gate) if gate in self.s.populations() else gate,
        )

    def param(self, d: Dimension, gate: str) -> str:
        if d.ratio:
            raise self.fail(f"ratio dimension {d.name!r} (FlowJo derived parameters)", gate)
        if d.compensation == UNCOMPENSATED:
            return d.name
        if self.compensation not in (None, d.compensation):
            raise self.fail(
                f"compensations {self.compensation!r} and {d.compensation!r} (a FlowJo sample "
                "has one matrix)",
                gate,
            )
        if d.compensation != FILE_SPILLOVER:
            m = self.s.matrices[d.compensation]
            if m.inverted or set(m.fluorochromes) != set(m.detectors):
                raise self.fail(
                    f"matrix {m.id!r} is inverted or not square over the same channels "
                    "(FlowJo's spilloverMatrix is a square spillover matrix)",
                    gate,
                )
        self.compensation = d.compensation
        return PREFIX + d.name

    def transform(self, d: Dimension, gate: str) -> Transform | None:
        if d.transform is None:
            return None
        t = self.s.transforms[d.transform]
        if t.bound_min is not None or t.bound_max is not None:
            raise self.fail(f"transform {d.transform!r} clamps with boundMin/boundMax", gate)
        if not isinstance(t, Linear | FlowJoLinear | FlowJoLog | Asinh | Logicle | Hyperlog
                          | FlowJoBiex):
            raise self.fail(
                f"transform {d.transform!r} ({type(t).__name__}) has no FlowJo equivalent", gate
            )
        return t

    def scale(self, d: Dimension, gate: str, param: str, *, display: bool) -> Transform | None:
        """The dimension's transform; ``display``: it must be the parameter's FlowJo scale."""
        t = self.transform(d, gate)
        if not display:
            if t is not None:
                self.scales.setdefault(param, (t, ""))
            return t
        held, by = self.scales.get(param, (None, ""))
        if by and held != t:
            raise self.fail(
                f"parameter {param!r} is drawn on two scales (here {d.transform!r}, and by "
                f"{by}): a FlowJo sample has one scale per parameter",
                gate,
            )
        self.scales[param] = (t, self.s.path(gate))  # type: ignore[assignment]
        return t

    def raw(self, t: Transform | None, values: Sequence[float]) -> list[float]:
        if t is None:
            return [float(v) for v in values]
        return [float(v) for v in t.inverse(np.asarray(values, dtype=np.float64))]

    def dims_bounds(
        self, dims: Sequence[Dimension], bounds: Sequence[tuple[float | None, float | None]],
        inclusive: str, gate: str
    ) -> list[_El]:
        out = []
        for d, (lo, hi) in zip(dims, bounds, strict=True):
            param = self.param(d, gate)
            t = self.scale(d, gate, param, display=False)
            raw = [None if b is None else self.raw(t, [b])[0] for b in (lo, hi)]
            if inclusive == "min":  # [lo, hi) == (lo-, hi-] on doubles
                raw = [None if b is None else math.nextafter(b, -math.inf) for b in raw]
            if any(b is not None and not math.isfinite(b) for b in raw):
                raise self.fail(f"a bound on {d.name!r} has no finite raw value", gate)
            attrs = {"gating:min": raw[0], "gating:max": raw[1]}
            fcs = _El("data-type:fcs-dimension", {"data-type:name": param})
            out.append(_El("gating:dimension", attrs, [fcs]))
        return out

    def gate_el(self, kind: str, gate: str, body: list[_El], extra: Mapping[str, Any]) -> _El:
        attrs = {"eventsInside": "1", "annoOffsetX": "0", "annoOffsetY": "0",
                 "tint": "#000000", "isTinted": "0", "lineWeight": "Normal",
                 "userDefined": "1", **extra}
        return _El(f"gating:{kind}", attrs, body)

    def shapes(self) -> list[_Shape]:
        s = self.s
        pops = s.populations()
        out: list[_Shape] = []
        siblings = self.siblings
        for pid in s.population_order():
            name = s.display_name(pid)
            if "/" in name or not name:
                raise self.fail(f"population name {name!r} (FlowJo paths are names joined by '/')",
                                pid)
            path = tuple(s.path(pid).split("/")[1:])
            if path in siblings:
                raise self.fail(f"two sibling populations are named {name!r}", pid)
            siblings[path] = pid
        for pid in s.population_order():
            path = tuple(s.path(pid).split("/")[1:])
            out.append(self.shape(pops[pid], pid, path))
            out += self.extra
            self.extra = []
        return out

    def shape(self, gate: Gate, pid: str, path: tuple[str, ...]) -> _Shape:
        s = self.s
        if isinstance(gate, RectangleGate):
            body = self.dims_bounds(gate.dimensions, gate.bounds, gate.inclusive, pid)
            return _Shape(path, self.gate_el("RectangleGate", pid, body,
                                             {"percentX": "0", "percentY": "0"}))
        if isinstance(gate, QuadrantGate):
            q = next(q for q in gate.quadrants if q.id == pid)
            where = dict(q.positions)
            dims, bounds = [], []
            for div in gate.dividers:
                if div.id not in where:
                    continue
                loc, v = where[div.id], list(div.values)
                i = sum(x <= loc for x in v) if gate.inclusive == "min" else sum(x < loc for x in v)
                dims.append(div.dimension)
                bounds.append((v[i - 1] if i > 0 else None, v[i] if i < len(v) else None))
            body = self.dims_bounds(dims, bounds, gate.inclusive, pid)
            return _Shape(path, self.gate_el("RectangleGate", pid, body,
                                             {"percentX": "0", "percentY": "0"}))
        if isinstance(gate, PolygonGate):
            params = [self.param(d, pid) for d in gate.dimensions]
            scales = [self.scale(d, pid, p, display=True) for d, p in zip(gate.dimensions, params,
                                                                          strict=True)]
            cols = [self.raw(t, [v[i] for v in gate.vertices]) for i, t in enumerate(scales)]
            if any(not math.isfinite(c) for col in cols for c in col):
                raise self.fail("a vertex has no finite raw value", pid)
            body = [
                _El("gating:dimension", None,
                    [_El("data-type:fcs-dimension", {"data-type:name": p})]) for p in params
            ] + [
                _El("gating:vertex", None, [
                    _El("gating:coordinate", {"data-type:value": x}),
                    _El("gating:coordinate", {"data-type:value": y})])
                for x, y in zip(*cols, strict=True)
            ]
            return _Shape(path, self.gate_el("PolygonGate", pid, body,
                                             {"quadId": "-1", "gateResolution": "256"}))
        if isinstance(gate, EllipsoidGate):
            if len(gate.dimensions) != 2:
                raise self.fail(f"a {len(gate.dimensions)}-dimensional ellipsoid (FlowJo "
                                "ellipses are 2-D)", pid)
            params = [self.param(d, pid) for d in gate.dimensions]
            scales = [self.scale(d, pid, p, display=True) for d, p in zip(gate.dimensions, params,
                                                                          strict=True)]
            if any(t is None for t in scales):
                raise self.fail("an ellipse axis without a transform (FlowJo stores ellipses in "
                                "display pixels)", pid)
            handles, distance = _ellipse(gate)
            body = [
                _El("gating:dimension", None,
                    [_El("data-type:fcs-dimension", {"data-type:name": p})]) for p in params
            ] + handles
            return _Shape(path, self.gate_el("EllipsoidGate", pid, body,
                                             {"gating:distance": distance}))
        assert isinstance(gate, BooleanGate)
        deps = tuple(
            "/".join(self.complement(ref, path[:-1])) if c else s.path(ref).lstrip("/")
            for ref, c in gate.operands
        )
        node = {"and": "AndNode", "or": "OrNode", "not": "NotNode"}[gate.op]
        return _Shape(path, boolean=(node, deps))

    def complement(self, ref: str, parent: tuple[str, ...]) -> tuple[str, ...]:
        """A helper ``NotNode`` beside a Boolean gate: its parent AND NOT ``ref``.

        FlowJo 10 Boolean gates cannot complement an operand; ``parent AND NOT ref`` in its
        place gives the same population under ``and``, ``or`` and ``not`` (the gate is ANDed
        with its parent anyway).
        """
        target = tuple(self.s.path(ref).split("/")[1:])
        key = (parent, target)
        if key not in self.helpers:
            base = name = f"NOT {target[-1]}"
            n = 1
            while (*parent, name) in self.siblings:
                n += 1
                name = f"{base} ({n})"
            path = (*parent, name)
            self.siblings[path] = ""
            self.helpers[key] = path
            self.extra.append(_Shape(path, boolean=("NotNode", ("/".join(target),))))
        return self.helpers[key]


def _ellipse(gate: EllipsoidGate) -> tuple[list[_El], float]:
    """Foci and the four handles (major axis ends, minor axis ends) in display pixels, and
    ``gating:distance``, which FlowJo writes on every ellipse: here the sum of a boundary
    point's distances to the foci (``2a``). FlowJo does not document it; its own values are
    near that sum in FlowJo 10.0.7's ellipses, and neither phenoflow nor FlowKit read it."""
    mean = np.asarray(gate.mean, dtype=np.float64) * LENGTH
    cov = np.asarray(gate.covariance, dtype=np.float64) * gate.distance_square * LENGTH**2
    values, vectors = np.linalg.eigh(cov)
    b, a = np.sqrt(np.maximum(values, 0.0))
    v, u = vectors[:, 0], vectors[:, 1]
    c = math.sqrt(max(a * a - b * b, 0.0))

    def vertices(points: list[np.ndarray]) -> list[_El]:
        return [
            _El("gating:vertex", None,
                [_El("gating:coordinate", {"data-type:value": float(x)}) for x in p])
            for p in points
        ]

    foci = vertices([mean - c * u, mean + c * u])
    edge = vertices([mean - a * u, mean + a * u, mean - b * v, mean + b * v])
    return [_El("gating:foci", None, foci), _El("gating:edge", None, edge)], float(2.0 * a)


def _tree(
    shapes: list[_Shape], ids: Mapping[tuple[str, ...], str], group: str,
    counts: Mapping[str, int] | None = None,
) -> list[_El]:
    """Nested ``Population`` / Boolean elements of the shapes under the root, with each
    population's event count where known (FlowJo's ``count``; ``-1``: not computed)."""
    children: dict[tuple[str, ...], list[_Shape]] = {}
    for sh in shapes:
        children.setdefault(sh.path[:-1], []).append(sh)

    def build(parent: tuple[str, ...]) -> list[_El]:
        out = []
        for sh in children.get(parent, []):
            count = (counts or {}).get("/" + "/".join(sh.path), -1)
            attrs = {"name": sh.path[-1], "annotation": "", "owningGroup": group,
                     "expanded": "1", "sortPriority": "10", "count": str(count)}
            kids: list[_El] = []
            if sh.boolean is not None:
                node, deps = sh.boolean
                kids.append(_El("Dependents", None,
                                [_El("Dependent", {"name": d}) for d in deps]))
            else:
                assert sh.gate is not None
                gattrs = {"gating:id": ids[sh.path]}
                if parent in ids:
                    gattrs["gating:parent_id"] = ids[parent]
                kids.append(_El("Gate", gattrs, [sh.gate]))
                node = "Population"
            below = build(sh.path)
            if below:
                kids.append(_El("Subpopulations", None, below))
            out.append(_El(node, attrs, kids))
        return out

    return build(())


def _keywords(data: FCSData) -> _El:
    kw = [
        _El("Keyword", {"name": k, "value": v})
        for k, v in data.metadata.items()
        if k and all(c.isprintable() for c in f"{k}{v}")
    ]
    return _El("Keywords", None, kw)


def _file_matrix(data: FCSData, gate: str, source: str) -> Matrix:
    spill = data.spill
    if spill is None:
        raise FlowJoError(
            f"cannot be written to a FlowJo workspace: {data.path} has no spillover matrix for "
            "the gates compensated with the file's own spillover ('FCS')",
            source=source, gate=gate,
        )
    names = tuple(str(c) for c in spill.columns)
    rows = tuple(tuple(float(x) for x in row) for row in spill.to_numpy())
    return Matrix(id="Acquisition-defined", fluorochromes=names, detectors=names, values=rows)


def render_workspace(
    strategy: Strategy, samples: Sequence[FCSData], *, group: str = GROUP,
    counts: Sequence[Mapping[str, int]] | None = None,
) -> str:
    """The FlowJo 10 workspace text of ``strategy`` applied to ``samples`` (channels bound);
    ``counts``: per sample, events per population path (as FlowJo stores them under each
    ``SampleNode``; the group's template keeps ``-1``)."""
    conv = _Converter(strategy)
    shapes = conv.shapes()
    gated = [sh for sh in shapes if sh.gate is not None]
    ids = {sh.path: f"ID{1000000 + i}" for i, sh in enumerate(gated)}
    comp = conv.compensation
    first_comp = next(
        (pid for pid in strategy.populations()
         if any(d.compensation == comp for d in _dims(strategy.populations()[pid]))), ""
    )
    sample_els = []
    for n, data in enumerate(samples, 1):
        kids: list[_El] = [_El("DataSet", {"uri": _file_uri(data.path), "sampleID": str(n)})]
        if comp is not None:
            m = (_file_matrix(data, strategy.path(first_comp) if first_comp else "",
                              strategy.source)
                 if comp == FILE_SPILLOVER else strategy.matrices[comp])
            kids.append(_matrix_el(m, f"m{n}"))
        # a FlowJo sample has a transform for each of its parameters, the detectors behind the
        # Comp- ones included: readers that look a compensated axis up by its detector
        # (FlowKit) find the same scale there
        scales = {p: t for p, (t, _) in conv.scales.items()}
        for p, t in list(scales.items()):
            if p.startswith(PREFIX):
                scales.setdefault(p[len(PREFIX):], t)
        xforms = [
            _transform_el(t if t is not None else _linear_display(data, p), p)
            for p, t in sorted(scales.items())
        ]
        kids.append(_El("Transformations", None, xforms))
        kids.append(_keywords(data))
        tree = _tree(shapes, ids, group, counts[n - 1] if counts is not None else None)
        node_attrs = {"name": Path(data.path).name, "annotation": "", "owningGroup": "",
                      "expanded": "1", "sortPriority": "10", "count": str(data.n_events),
                      "sampleID": str(n)}
        kids.append(_El("SampleNode", node_attrs,
                        [_El("Subpopulations", None, tree)] if tree else []))
        sample_els.append(_El("Sample", None, kids))
    refs = [_El("SampleRef", {"sampleID": str(n)}) for n in range(1, len(samples) + 1)]
    group_el = _El("Group", {"name": group, "live": "1", "role": "ws.group.dlog.test",
                             "key": "", "synchronized": "0"},
                   [_El("Criteria"), _El("SampleRefs", None, refs), _El("Keywords")])
    template = _tree(shapes, ids, group)
    group_node = _El(
        "GroupNode",
        {"name": group, "annotation": "", "owningGroup": group, "expanded": "1",
         "sortPriority": "10", "count": "-1"},
        [*([_El("Subpopulations", None, template)] if template else []), group_el],
    )
    root = _El(
        "Workspace",
        {"version": "20.0", "flowJoVersion": "10.7.1", "curGroup": group, **_NS},
        [_El("Matrices"), _El("Cytometers"), _El("Groups", None, [group_node]),
         _El("SampleList", None, sample_els)],
    )
    out = ['<?xml version="1.0" encoding="UTF-8"?>',
           "<!-- written by phenoflow from strategy "
           + (strategy.name or strategy.source or "(unnamed)").replace("--", "- -")
           + " -->"]
    root.lines(0, out)
    return "\n".join(out) + "\n"


def _file_uri(path: str | os.PathLike[str]) -> str:
    """The FCS file as FlowJo writes ``DataSet/@uri``: ``file:/dir/name.fcs`` (Java's form of
    a file URI, one slash; percent-encoded as ``Path.as_uri``)."""
    return "file:" + Path(path).resolve().as_uri()[len("file://"):]


def _dims(gate: Gate) -> list[Dimension]:
    if isinstance(gate, QuadrantGate):
        return [d.dimension for d in gate.dividers]
    if isinstance(gate, BooleanGate):
        return []
    return list(gate.dimensions)


def _linear_display(data: FCSData, param: str) -> Transform:
    """A linear FlowJo display for a parameter a polygon uses without a transform."""
    top = 262144.0
    name = param[len(PREFIX):] if param.startswith(PREFIX) else param
    for ch in data.channels.itertuples():
        if str(ch.name) == name and float(getattr(ch, "range", 0) or 0) > 0:
            top = float(ch.range)
    return FlowJoLinear(min_range=0.0, max_range=top)


def _counts(strategy: Strategy, data: FCSData) -> dict[str, int]:
    # at call time: keeps this package importable before the evaluator (no import cycle)
    from gating._evaluate import apply_plan
    from gating._plan import compile_plan

    table = apply_plan(compile_plan(strategy, data), data).counts
    return {str(p): int(c) for p, c in zip(table["population"], table["count"], strict=True)}


def write_flowjo(
    strategy: Strategy,
    path: str | os.PathLike[str],
    *,
    fcs: Sequence[str | os.PathLike[str]],
    group: str = GROUP,
    verify: bool = True,
) -> str:
    """Write ``strategy`` as a FlowJo 10 workspace over the FCS files ``fcs``.

    Channel names are bound to each file's ``$PnN`` (:func:`bind_channels`); the samples are
    listed with their file URIs in one group; see the module docstring for how each gate is
    written and what is refused. The workspace is read back with :func:`gating.read_flowjo`
    and gated on every file, and each population's count is stored in it as FlowJo stores it
    (``Population/@count`` under each ``SampleNode``). With ``verify`` (the default) every
    population must give the strategy's count, else nothing is written.

    Parameters
    ----------
    strategy
        The strategy.
    path
        The ``.wsp`` file to write (atomically).
    fcs
        The FCS files (at least one): they become the workspace's samples.
    group
        The group's name.
    verify
        Refuse a workspace whose read-back counts differ from the strategy's (on by default).

    Returns
    -------
    str
        The workspace text.

    Raises
    ------
    FlowJoError
        Something FlowJo cannot hold (named with the gate and the construct), or a population
        whose count would change.

    Examples
    --------
    >>> import gating  # doctest: +SKIP
    >>> write_flowjo(gating.preset("study_panel"), "panel.wsp", fcs=["P01_pre.fcs"])  # doctest: +SKIP
    """
    if not fcs:
        raise FlowJoError("a FlowJo workspace needs at least one FCS file (its samples)",
                          source=strategy.source)
    names = [Path(f).name for f in fcs]
    if len(set(names)) != len(names):
        dup = next(n for n in names if names.count(n) > 1)
        raise FlowJoError(f"two FCS files are named {dup!r}: FlowJo samples are found by file "
                          "name", source=strategy.source)
    from gating._fcs import read_fcs

    samples = [read_fcs(f) for f in fcs]
    bound = bind_channels(strategy, samples)
    counts = _read_back(strategy, samples, render_workspace(bound, samples, group=group), path,
                        verify=verify)
    text = render_workspace(bound, samples, group=group, counts=counts)
    atomic_write_text(Path(path), text)
    return text


def _read_back(strategy: Strategy, samples: Sequence[FCSData], text: str,
               path: str | os.PathLike[str], *, verify: bool) -> list[dict[str, int]]:
    """Each sample's counts per population path as the workspace defines them (read back and
    gated, FlowJo's helper NOT nodes included); with ``verify``, every population of the
    strategy must have its own count."""
    import tempfile

    out = []
    with tempfile.TemporaryDirectory() as tmp:
        probe = Path(tmp) / "probe.wsp"
        probe.write_text(text, encoding="utf-8")
        ws = read_flowjo(probe, source=str(path))
        for data in samples:
            got = _counts(ws.strategy_for(Path(data.path).name), data)
            out.append(got)
            if not verify:
                continue
            want = _counts(strategy, data)
            for pop, n in want.items():
                if got.get(pop) != n:
                    raise FlowJoError(
                        f"cannot be written to a FlowJo workspace without changing its count on "
                        f"{Path(data.path).name}: {n} events in phenoflow, "
                        f"{got.get(pop, 'no population')} as FlowJo defines it (FlowJo counts "
                        "min < x <= max on raw values and draws polygons on its display scale; "
                        "events sit on a bound or the scale differs)",
                        source=strategy.source, gate=pop,
                    )
    return out
