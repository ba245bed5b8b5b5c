"""The front-end neutral model of a gating strategy.

Gating-ML 2.0 documents, FlowJo workspaces and phenoflow's YAML files are all parsed into a
:class:`Strategy`; :func:`gating.compile_plan` then resolves it against one sample. The model
follows Gating-ML 2.0 closely because it is the most general of the three:

* a :class:`Dimension` names an FCS channel (``$PnN``, or a unique ``$PnS`` marker), or a
  fluorochrome of a spectrum matrix, or a ratio (``fratio``); it carries its own compensation
  source (``"uncompensated"``, ``"FCS"`` for the file's spillover, or a matrix id) and its own
  scale transform, so one gate may mix compensated and uncompensated axes;
* gates are rectangles (half-open ``min <= x < max``, either side optional; FlowJo's
  ``min < x <= max`` for gates read from FlowJo workspaces, see :attr:`RectangleGate.inclusive`), polygons (points on
  an edge are inside; crossing parity for non-simple polygons), ellipsoids (Mahalanobis
  distance ``<= distance_square``), quadrant gates (any number of dividers; each quadrant is a
  population of its own) and Boolean gates (``and``/``or``/``not`` over references that may
  be complemented);
* a gate with a ``parent`` is the AND of itself and its parent population.

Everything is a frozen dataclass with ``to_dict``/``strategy_from_dict`` JSON round trips.
"""

from __future__ import annotations

import dataclasses
import functools
import math
from collections.abc import Iterator, Mapping
from typing import Any, Literal

from gating._transforms import Transform, transform_from_dict

__all__ = [
    "FILE_SPILLOVER",
    "UNCOMPENSATED",
    "BooleanGate",
    "Dimension",
    "Divider",
    "EllipsoidGate",
    "Gate",
    "Matrix",
    "PolygonGate",
    "Quadrant",
    "QuadrantGate",
    "Ratio",
    "RectangleGate",
    "Strategy",
    "StrategyError",
    "strategy_from_dict",
]

UNCOMPENSATED = "uncompensated"
FILE_SPILLOVER = "FCS"


class StrategyError(ValueError):
    """A strategy is inconsistent (unknown references, cycles, bad geometry).

    Parameters
    ----------
    message
        What is wrong.
    source
        The strategy file, when known.
    gate
        The gate id (and path) concerned, when known.
    """

    def __init__(self, message: str, *, source: str = "", gate: str = "") -> None:
        self.source = source
        self.gate = gate
        self.detail = message
        where = " ".join(x for x in (source, f"gate {gate!r}" if gate else "") if x)
        super().__init__(f"{where}: {message}" if where else message)

    def __reduce__(self):  # keep the keyword arguments across process boundaries
        return (_rebuild, (type(self), self.detail, self.source, self.gate))


def _rebuild(cls: type[StrategyError], message: str, source: str, gate: str) -> StrategyError:
    return cls(message, source=source, gate=gate)


@dataclasses.dataclass(frozen=True)
class Dimension:
    """One axis of a gate.

    Attributes
    ----------
    name
        Channel ``$PnN`` (or unique ``$PnS``) name; a fluorochrome name of a spectrum matrix;
        or, when ``ratio`` is true, the id of a :class:`Ratio`.
    compensation
        ``"uncompensated"``, ``"FCS"`` (the file's spillover) or the id of a :class:`Matrix`.
    transform
        Id of a scale transform in :attr:`Strategy.transforms`, or ``None`` for raw values.
    ratio
        Whether ``name`` refers to a ratio dimension (Gating-ML ``new-dimension``).
    """

    name: str
    compensation: str = UNCOMPENSATED
    transform: str | None = None
    ratio: bool = False


@dataclasses.dataclass(frozen=True)
class Ratio:
    """Gating-ML ``fratio``: ``A * (numerator - B) / (denominator - C)``.

    The two inputs are channel names, compensated as the dimension using the ratio says.
    ``bound_min``/``bound_max`` clamp the ratio (Gating-ML ``boundMin``/``boundMax`` on the
    enclosing transformation); a dimension's own ``transform`` then applies to the result.
    """

    id: str
    numerator: str
    denominator: str
    a: float = 1.0
    b: float = 0.0
    c: float = 0.0
    bound_min: float | None = None
    bound_max: float | None = None


@dataclasses.dataclass(frozen=True)
class Matrix:
    """A compensation (spillover) or spectrum matrix.

    Attributes
    ----------
    id
        Referenced by :attr:`Dimension.compensation`.
    fluorochromes
        Row labels (what compensation produces).
    detectors
        Column labels (measured channels).
    values
        ``len(fluorochromes) x len(detectors)`` coefficients, row-major: the spillover of each
        fluorochrome into each detector. Non-square matrices are unmixed by least squares.
    inverted
        ``True`` when ``values`` is already the inverse (Gating-ML
        ``matrix-inverted-already``): ``detectors x fluorochromes`` applied directly.
    """

    id: str
    fluorochromes: tuple[str, ...]
    detectors: tuple[str, ...]
    values: tuple[tuple[float, ...], ...]
    inverted: bool = False


#: Which bound of a rectangle (or quadrant interval) holds its boundary events: ``"min"`` is
#: Gating-ML's ``min <= x < max``, ``"max"`` FlowJo's ``min < x <= max``.
Inclusive = Literal["min", "max"]
INCLUSIVE = ("min", "max")


@dataclasses.dataclass(frozen=True)
class RectangleGate:
    """Half-open box per dimension; ``None`` leaves a side open.

    ``inclusive`` says which bound is closed: ``"min"`` (Gating-ML and YAML, the default) is
    ``min <= x < max``; ``"max"`` (gates read from FlowJo workspaces: FlowJo counts this way)
    is ``min < x <= max``. NaN is never inside.
    """

    id: str
    dimensions: tuple[Dimension, ...]
    bounds: tuple[tuple[float | None, float | None], ...]
    parent: str | None = None
    name: str | None = None
    kind: Literal["rectangle"] = "rectangle"
    inclusive: Inclusive = "min"


@dataclasses.dataclass(frozen=True)
class PolygonGate:
    """2-D polygon; points on an edge are inside, crossing parity decides elsewhere."""

    id: str
    dimensions: tuple[Dimension, Dimension]
    vertices: tuple[tuple[float, float], ...]
    parent: str | None = None
    name: str | None = None
    kind: Literal["polygon"] = "polygon"


@dataclasses.dataclass(frozen=True)
class EllipsoidGate:
    """``(x - mean)^T inv(covariance) (x - mean) <= distance_square`` in any dimension."""

    id: str
    dimensions: tuple[Dimension, ...]
    mean: tuple[float, ...]
    covariance: tuple[tuple[float, ...], ...]
    distance_square: float
    parent: str | None = None
    name: str | None = None
    kind: Literal["ellipsoid"] = "ellipsoid"


@dataclasses.dataclass(frozen=True)
class Divider:
    """A quadrant divider: split points along one dimension (sorted, any number)."""

    id: str
    dimension: Dimension
    values: tuple[float, ...]


@dataclasses.dataclass(frozen=True)
class Quadrant:
    """One population of a quadrant gate.

    ``positions`` gives, per divider id, a location inside the wanted interval (Gating-ML
    ``position``/``location``); the quadrant is the half-open interval of each divider that
    contains its location. Dividers not listed are unconstrained.
    """

    id: str
    positions: tuple[tuple[str, float], ...]
    name: str | None = None


@dataclasses.dataclass(frozen=True)
class QuadrantGate:
    """Dividers that split the parent's events into the listed quadrants.

    ``inclusive`` as for :class:`RectangleGate`: with ``"min"`` (Gating-ML) an event on a
    split value belongs to the interval above it, with ``"max"`` (FlowJo) to the one below,
    and a quadrant's ``positions`` are located the same way.
    """

    id: str
    dividers: tuple[Divider, ...]
    quadrants: tuple[Quadrant, ...]
    parent: str | None = None
    name: str | None = None
    kind: Literal["quadrant"] = "quadrant"
    inclusive: Inclusive = "min"


@dataclasses.dataclass(frozen=True)
class BooleanGate:
    """``and``/``or``/``not`` over other populations; ``operands`` are ``(id, complement)``."""

    id: str
    op: Literal["and", "or", "not"]
    operands: tuple[tuple[str, bool], ...]
    parent: str | None = None
    name: str | None = None
    kind: Literal["boolean"] = "boolean"


Gate = RectangleGate | PolygonGate | EllipsoidGate | QuadrantGate | BooleanGate
_GATE_TYPES: dict[str, type] = {
    "rectangle": RectangleGate,
    "polygon": PolygonGate,
    "ellipsoid": EllipsoidGate,
    "quadrant": QuadrantGate,
    "boolean": BooleanGate,
}


@dataclasses.dataclass(frozen=True)
class Strategy:
    """A complete gating strategy, independent of the file format it came from.

    Attributes
    ----------
    gates
        Gates in document order (any order; :meth:`population_order` sorts them).
    transforms, ratios, matrices
        Referenced by id from dimensions.
    name, source
        Display name and the file it was read from.
    notes
        Free text kept from the source (Gating-ML ``custom_info``): key ``""`` for the
        document, else a gate or population id.
    channel_matching
        How :func:`gating.compile_plan` finds a dimension's channel in a sample:
        ``"exact"`` (the default: ``$PnN``, then case-insensitively, then a unique ``$PnS``)
        or ``"flowjo"`` (strategies read from FlowJo workspaces: the same, then FlowJo's
        mangled form of a ``$PnN``, e.g. ``v-450_50-B-A`` for ``v-450/50-B-A``; two candidate
        channels are an error, never a guess).
    """

    gates: tuple[Gate, ...]
    transforms: Mapping[str, Transform] = dataclasses.field(default_factory=dict)
    ratios: Mapping[str, Ratio] = dataclasses.field(default_factory=dict)
    matrices: Mapping[str, Matrix] = dataclasses.field(default_factory=dict)
    name: str = ""
    source: str = ""
    notes: Mapping[str, str] = dataclasses.field(default_factory=dict)
    channel_matching: Literal["exact", "flowjo"] = "exact"

    def __post_init__(self) -> None:
        self.validate()

    # ---- populations --------------------------------------------------------------------
    def populations(self) -> dict[str, Gate]:
        """Every population id (gates, and each quadrant of quadrant gates) to its gate."""
        return dict(self._populations)

    @functools.cached_property
    def _content_hash(self) -> str:
        """:func:`gating.strategy_hash`, computed once per strategy object (it is frozen):
        compiling a plan per file no longer serialises the whole strategy each time."""
        import hashlib
        import json

        content = self.to_dict()
        content.pop("source", None)
        blob = json.dumps(content, sort_keys=True, default=repr).encode()
        return hashlib.sha256(blob).hexdigest()

    @functools.cached_property
    def _populations(self) -> dict[str, Gate]:
        out: dict[str, Gate] = {}
        for gate in self.gates:
            ids = [q.id for q in gate.quadrants] if isinstance(gate, QuadrantGate) else [gate.id]
            for pid in ids:
                if pid in out:
                    raise StrategyError("duplicate population id", source=self.source, gate=pid)
                out[pid] = gate
        return out

    def parent_of(self, population: str) -> str | None:
        """The parent population id of a population (``None`` at the root)."""
        return self._populations[population].parent

    def display_name(self, population: str) -> str:
        """The name used in paths: the gate's (or quadrant's) ``name``, else its id."""
        gate = self._populations[population]
        if isinstance(gate, QuadrantGate):
            quadrant = next(q for q in gate.quadrants if q.id == population)
            return quadrant.name or quadrant.id
        return gate.name or gate.id

    def path(self, population: str) -> str:
        """Full path of a population, e.g. ``/Lymphocytes/Singlets/Live/CD3+``."""
        parts = []
        current: str | None = population
        while current is not None:
            parts.append(self.display_name(current))
            current = self.parent_of(current)
        return "/" + "/".join(reversed(parts))

    def population_order(self) -> list[str]:
        """Population ids in an order where parents and Boolean operands come first."""
        pops = self._populations
        order: list[str] = []
        state: dict[str, int] = {}

        def visit(pid: str, trail: tuple[str, ...]) -> None:
            if state.get(pid) == 2:
                return
            if state.get(pid) == 1:
                raise StrategyError(
                    "cycle through " + " -> ".join((*trail, pid)), source=self.source, gate=pid
                )
            state[pid] = 1
            for dep in _dependencies(pops[pid]):
                if dep not in pops:
                    raise StrategyError(
                        f"refers to unknown population {dep!r}", source=self.source, gate=pid
                    )
                visit(dep, (*trail, pid))
            state[pid] = 2
            order.append(pid)

        for pid in pops:
            visit(pid, ())
        return order

    def dimensions(self) -> Iterator[Dimension]:
        """Every dimension used by any gate (with repeats)."""
        for gate in self.gates:
            if isinstance(gate, QuadrantGate):
                yield from (d.dimension for d in gate.dividers)
            elif not isinstance(gate, BooleanGate):
                yield from gate.dimensions

    # ---- checks -------------------------------------------------------------------------
    def validate(self) -> None:
        """Raise :class:`StrategyError` for unknown references, cycles or bad geometry."""
        if self.channel_matching not in ("exact", "flowjo"):
            raise StrategyError(
                f"channel_matching must be 'exact' or 'flowjo', not {self.channel_matching!r}",
                source=self.source,
            )
        for gate in self.gates:
            _check_gate(gate, self)
        for dim in self.dimensions():
            if dim.transform is not None and dim.transform not in self.transforms:
                raise StrategyError(
                    f"dimension {dim.name!r} uses unknown transform {dim.transform!r}",
                    source=self.source,
                )
            if dim.compensation not in (UNCOMPENSATED, FILE_SPILLOVER) and (
                dim.compensation not in self.matrices
            ):
                raise StrategyError(
                    f"dimension {dim.name!r} uses unknown compensation {dim.compensation!r}",
                    source=self.source,
                )
            if dim.ratio and dim.name not in self.ratios:
                raise StrategyError(f"unknown ratio {dim.name!r}", source=self.source)
        for matrix in self.matrices.values():
            rows, cols = len(matrix.fluorochromes), len(matrix.detectors)
            shape = (cols, rows) if matrix.inverted else (rows, cols)
            if len(matrix.values) != shape[0] or any(len(r) != shape[1] for r in matrix.values):
                raise StrategyError(
                    f"matrix {matrix.id!r} values are not {shape[0]} x {shape[1]}",
                    source=self.source,
                )
            if not all(math.isfinite(v) for row in matrix.values for v in row):
                raise StrategyError(
                    f"matrix {matrix.id!r} has values that are not finite", source=self.source
                )
        self.population_order()

    # ---- serialisation ------------------------------------------------------------------
    def to_dict(self) -> dict[str, Any]:
        """A JSON-serialisable description; :func:`strategy_from_dict` inverts it."""
        out = {
            "name": self.name,
            "source": self.source,
            "transforms": {k: t.to_dict() for k, t in self.transforms.items()},
            "ratios": {k: dataclasses.asdict(r) for k, r in self.ratios.items()},
            "matrices": {k: dataclasses.asdict(m) for k, m in self.matrices.items()},
            "gates": [_gate_dict(g) for g in self.gates],
            "notes": dict(self.notes),
        }
        if self.channel_matching != "exact":  # absent by default: earlier hashes still hold
            out["channel_matching"] = self.channel_matching
        return out


def _gate_dict(gate: Gate) -> dict[str, Any]:
    """A gate as a plain dict; the default ``inclusive="min"`` is left out, so strategies
    without FlowJo's convention keep the dicts (and :func:`gating.strategy_hash`) they had."""
    out = dataclasses.asdict(gate)
    if out.get("inclusive") == "min":
        del out["inclusive"]
    return out


def _dependencies(gate: Gate) -> list[str]:
    deps = [gate.parent] if gate.parent is not None else []
    if isinstance(gate, BooleanGate):
        deps += [ref for ref, _ in gate.operands]
    return deps


def _check_gate(gate: Gate, strategy: Strategy) -> None:
    def fail(message: str) -> None:
        raise StrategyError(message, source=strategy.source, gate=gate.id)

    if isinstance(gate, RectangleGate | QuadrantGate) and gate.inclusive not in INCLUSIVE:
        fail(f"inclusive must be one of {INCLUSIVE}, not {gate.inclusive!r}")
    if isinstance(gate, RectangleGate):
        if not gate.dimensions or len(gate.bounds) != len(gate.dimensions):
            fail("a rectangle needs one (min, max) per dimension")
        for lo, hi in gate.bounds:
            if any(b is not None and math.isnan(b) for b in (lo, hi)):
                fail("rectangle bounds must be numbers or None (open), not NaN")
            if lo is not None and hi is not None and lo > hi:
                fail(f"min {lo} is above max {hi}")
    elif isinstance(gate, PolygonGate):
        if len(gate.dimensions) != 2:
            fail("a polygon needs exactly two dimensions")
        if len(gate.vertices) < 3:
            fail(f"a polygon needs at least 3 vertices, got {len(gate.vertices)}")
        if not all(len(v) == 2 and all(math.isfinite(c) for c in v) for v in gate.vertices):
            fail("polygon vertices must be finite (x, y) pairs")
        distinct = {(float(x), float(y)) for x, y in gate.vertices}
        if len(distinct) < 3:
            fail(
                f"a polygon needs at least 3 distinct vertices, got {len(distinct)}: it would "
                "enclose nothing"
            )
    elif isinstance(gate, EllipsoidGate):
        n = len(gate.dimensions)
        if n < 1 or len(gate.mean) != n or len(gate.covariance) != n:
            fail("ellipsoid mean and covariance must match its dimensions")
        if any(len(row) != n for row in gate.covariance):
            fail("ellipsoid covariance must be square")
        if not all(math.isfinite(v) for v in (*gate.mean, *(c for row in gate.covariance for c in row))):
            fail("ellipsoid mean and covariance must be finite")
        if not (gate.distance_square > 0 and math.isfinite(gate.distance_square)):
            fail("ellipsoid distance_square must be positive and finite")
    elif isinstance(gate, QuadrantGate):
        ids = {d.id for d in gate.dividers}
        if not gate.dividers or not gate.quadrants:
            fail("a quadrant gate needs dividers and quadrants")
        for divider in gate.dividers:
            if any(math.isnan(v) for v in divider.values):
                fail(f"divider {divider.id!r} has a NaN split value")
            if list(divider.values) != sorted(divider.values) or not divider.values:
                fail(f"divider {divider.id!r} needs sorted split values")
        for quadrant in gate.quadrants:
            for ref, _ in quadrant.positions:
                if ref not in ids:
                    fail(f"quadrant {quadrant.id!r} refers to unknown divider {ref!r}")
    elif isinstance(gate, BooleanGate):
        if gate.op not in ("and", "or", "not"):
            fail(f"unknown Boolean operator {gate.op!r}")
        if gate.op == "not" and len(gate.operands) != 1:
            fail("'not' takes exactly one operand")
        if gate.op != "not" and len(gate.operands) < 2:
            fail(f"'{gate.op}' needs at least two operands")
    else:  # pragma: no cover - type system
        fail(f"unknown gate type {type(gate).__name__}")


def _dimension(d: Mapping[str, Any]) -> Dimension:
    return Dimension(**d)


def _gate_from_dict(d: Mapping[str, Any]) -> Gate:
    d = dict(d)
    kind = d.get("kind")
    if kind not in _GATE_TYPES:
        raise StrategyError(f"unknown gate kind {kind!r}")
    if kind in ("rectangle", "polygon", "ellipsoid"):
        d["dimensions"] = tuple(_dimension(x) for x in d["dimensions"])
    if kind == "rectangle":
        d["bounds"] = tuple((lo, hi) for lo, hi in d["bounds"])
    elif kind == "polygon":
        d["vertices"] = tuple((float(x), float(y)) for x, y in d["vertices"])
    elif kind == "ellipsoid":
        d["mean"] = tuple(d["mean"])
        d["covariance"] = tuple(tuple(r) for r in d["covariance"])
    elif kind == "quadrant":
        d["dividers"] = tuple(
            Divider(id=x["id"], dimension=_dimension(x["dimension"]), values=tuple(x["values"]))
            for x in d["dividers"]
        )
        d["quadrants"] = tuple(
            Quadrant(
                id=q["id"],
                positions=tuple((ref, float(loc)) for ref, loc in q["positions"]),
                name=q.get("name"),
            )
            for q in d["quadrants"]
        )
    elif kind == "boolean":
        d["operands"] = tuple((ref, bool(c)) for ref, c in d["operands"])
    return _GATE_TYPES[kind](**d)


def strategy_from_dict(d: Mapping[str, Any]) -> Strategy:
    """Rebuild a :class:`Strategy` from :meth:`Strategy.to_dict` output.

    Parameters
    ----------
    d
        The dictionary (e.g. parsed from JSON).

    Returns
    -------
    Strategy
        The validated strategy.
    """
    return Strategy(
        gates=tuple(_gate_from_dict(g) for g in d["gates"]),
        transforms={k: transform_from_dict(t) for k, t in d.get("transforms", {}).items()},
        ratios={k: Ratio(**r) for k, r in d.get("ratios", {}).items()},
        matrices={
            k: Matrix(
                id=m["id"],
                fluorochromes=tuple(m["fluorochromes"]),
                detectors=tuple(m["detectors"]),
                values=tuple(tuple(float(v) for v in row) for row in m["values"]),
                inverted=bool(m.get("inverted", False)),
            )
            for k, m in d.get("matrices", {}).items()
        },
        name=d.get("name", ""),
        source=d.get("source", ""),
        notes=dict(d.get("notes", {})),
        channel_matching=d.get("channel_matching", "exact"),
    )
