"""Compile a :class:`~gating._strategy.Strategy` against one sample into a frozen plan.

Compilation resolves, once, everything the kernels need: every dimension becomes a
:class:`Feature` (sample columns, compensation coefficients, ratio parameters, transform), and
gates become :class:`PlanGate` steps in an order where parents and Boolean operands come first.
The plan is plain data (``to_dict``/``plan_from_dict`` round-trip through JSON) so the batch
engine can ship it to workers with a file path, never an event array.
"""

from __future__ import annotations

import dataclasses
import logging
from collections.abc import Callable, Mapping, Sequence
from typing import Any, Literal

import numpy as np

from gating._compensation import near_misses, unmixing_matrix
from gating._fcs import FCSData
from gating._strategy import (
    FILE_SPILLOVER,
    INCLUSIVE,
    UNCOMPENSATED,
    BooleanGate,
    Dimension,
    EllipsoidGate,
    PolygonGate,
    QuadrantGate,
    RectangleGate,
    Strategy,
    StrategyError,
)
from gating._transforms import Transform, transform_from_dict

__all__ = [
    "UNCOMPENSATED_MODES",
    "AmbiguousChannelError",
    "Channel",
    "CompensationError",
    "Feature",
    "Plan",
    "PlanError",
    "PlanGate",
    "compile_plan",
    "flowjo_channel_name",
    "plan_from_dict",
]

logger = logging.getLogger(__name__)


class PlanError(StrategyError):
    """A strategy does not fit a sample (missing channel, singular matrix, bad spillover)."""


class AmbiguousChannelError(PlanError):
    """A strategy's channel name matches more than one channel of the sample.

    ``candidates`` lists the sample's ``$PnN`` names that could be meant.
    """

    def __init__(
        self, message: str, *, source: str = "", gate: str = "", candidates: tuple[str, ...] = ()
    ) -> None:
        super().__init__(message, source=source, gate=gate)
        self.candidates = candidates

    def __reduce__(self):  # keep the candidates across process boundaries
        return (_rebuild_ambiguous, (self.detail, self.source, self.gate, self.candidates))


def _rebuild_ambiguous(
    message: str, source: str, gate: str, candidates: tuple[str, ...]
) -> AmbiguousChannelError:
    return AmbiguousChannelError(message, source=source, gate=gate, candidates=candidates)


#: What :func:`compile_plan` does with compensation that cannot be applied: refuse the sample
#: (``"error"``, the default) or gate it uncompensated and say so (``"allow"``).
UNCOMPENSATED_MODES = ("error", "allow")

#: Channels that no spillover matrix holds: an ``FCS``-compensated axis on one of these needs no
#: matrix (a file without ``$SPILLOVER`` is still fine for a scatter or time gate).
_NEVER_COMPENSATED = ("fsc", "ssc", "time")

#: The fix printed with a :class:`CompensationError`, by reason.
_COMPENSATION_FIX = {
    "none": "fix: use a file that has its spillover matrix, or give the strategy a compensation "
            "matrix",
    "labels": "fix: correct the file's $SPILLOVER labels (or the strategy's matrix) so that they "
              "name the file's channels",
    "singular": "fix: correct the matrix's values",
}
_ALLOW_HINT = ("or gate it uncompensated on purpose with uncompensated='allow' "
               "(phenoflow gate --allow-uncompensated)")


class CompensationError(PlanError):
    """A gate needs compensation that cannot be applied to a sample.

    The sample has no spillover matrix, its matrix labels do not name its channels, or the
    matrix cannot be inverted. Only :func:`compile_plan`'s ``uncompensated="allow"`` gates such
    a sample, uncompensated (and :attr:`Plan.uncompensated` says why).

    Attributes
    ----------
    path
        The FCS file.
    matrix
        The compensation reference (``"FCS"`` for the file's spillover, or a matrix id).
    reason
        ``"none"`` (no matrix), ``"labels"`` (labels that are not channels) or ``"singular"``.
    labels
        The matrix labels that name no channel of the file.
    hints
        ``(label, channel)`` for labels that differ from a channel only by ``-``, ``_``,
        spaces or case.
    """

    def __init__(
        self, message: str, *, source: str = "", gate: str = "", path: str = "",
        matrix: str = "", reason: str = "", labels: tuple[str, ...] = (),
        hints: tuple[tuple[str, str], ...] = (),
    ) -> None:
        super().__init__(message, source=source, gate=gate)
        self.path = path
        self.matrix = matrix
        self.reason = reason
        self.labels = labels
        self.hints = hints

    def __reduce__(self):  # keep the details across process boundaries
        return (
            _rebuild_compensation,
            (self.detail, self.source, self.gate, self.path, self.matrix, self.reason,
             self.labels, self.hints),
        )


def _rebuild_compensation(
    message: str, source: str, gate: str, path: str, matrix: str, reason: str,
    labels: tuple[str, ...], hints: tuple[tuple[str, str], ...],
) -> CompensationError:
    return CompensationError(message, source=source, gate=gate, path=path, matrix=matrix,
                             reason=reason, labels=labels, hints=hints)


def _label_problem(labels: Sequence[str], hints: Sequence[tuple[str, str]], n_labels: int) -> str:
    """``labels do not match (BV510_A, ...)`` with the hints, for messages and ``info``."""
    shown = ", ".join(labels[:6]) + (", ..." if len(labels) > 6 else "")
    text = f"{len(labels)} of its {n_labels} labels name no channel of the file ({shown})"
    if hints:
        near = "; ".join(f"{a!r} looks like channel {b!r}" for a, b in hints[:6])
        text += f"; near misses: {near}"
    return text


#: Characters FlowJo (10 and later) replaces by ``_`` in the parameter names it writes.
FLOWJO_MANGLED_CHARACTERS = "/"


def flowjo_channel_name(name: str) -> str:
    """The name FlowJo 10 writes in a workspace for FCS channel ``name`` (``/`` -> ``_``).

    Parameters
    ----------
    name
        A ``$PnN`` channel name.

    Returns
    -------
    str
        ``v-450_50-B-A`` for ``v-450/50-B-A``; names without such characters unchanged.
    """
    return "".join("_" if c in FLOWJO_MANGLED_CHARACTERS else c for c in name)


@dataclasses.dataclass(frozen=True)
class Channel:
    """A (possibly compensated) channel: ``sum(coefficients[k] * column[columns[k]])``.

    ``coefficients`` is ``None`` for an uncompensated channel (``columns`` has one entry).
    """

    columns: tuple[int, ...]
    coefficients: tuple[float, ...] | None = None


@dataclasses.dataclass(frozen=True)
class Feature:
    """One gate axis resolved against a sample: channel (or ratio), then transform."""

    key: str
    numerator: Channel
    denominator: Channel | None = None
    ratio: tuple[float, float, float] = (1.0, 0.0, 0.0)
    ratio_bounds: tuple[float | None, float | None] = (None, None)
    transform: Transform | None = None


@dataclasses.dataclass(frozen=True)
class PlanGate:
    """One population step of a plan.

    Attributes
    ----------
    population
        Population id (the gate id, or the quadrant id).
    path, parent
        Full path, and parent population id (``None`` at the root).
    kind
        ``rectangle``, ``polygon``, ``ellipsoid``, ``quadrant`` or ``boolean``.
    features
        Feature keys (the gate's axes, in order).
    params
        Geometry: ``bounds`` (rectangle), ``vertices`` (polygon), ``mean``/``precision``/
        ``distance_square`` (ellipsoid), ``splits``/``cells`` (quadrant: per feature the split
        points and the wanted interval index, -1 for unconstrained), ``op``/``operands``
        (boolean, operands as ``[population id, complement]``). Rectangles and quadrants
        also carry ``inclusive``: ``"min"`` (``min <= x < max``, Gating-ML; the default when
        absent) or ``"max"`` (``min < x <= max``, FlowJo).
    """

    population: str
    path: str
    parent: str | None
    kind: Literal["rectangle", "polygon", "ellipsoid", "quadrant", "boolean"]
    features: tuple[str, ...]
    params: Mapping[str, Any]


@dataclasses.dataclass(frozen=True)
class Plan:
    """A strategy compiled for samples with one channel layout.

    ``channel_map`` reports every channel name of the strategy that is not literally a
    ``$PnN`` of the sample, with the ``$PnN`` it was resolved to and how: ``(name, $PnN,
    rule)``, the rule one of ``"case"`` (case-insensitive ``$PnN``), ``"marker"`` (a unique
    ``$PnS``) or ``"flowjo"`` (FlowJo's mangled form, see :func:`flowjo_channel_name`).

    ``uncompensated`` is empty unless the plan was compiled with ``uncompensated="allow"``
    and some compensation could not be applied: then it holds why (one line per matrix), and
    the axes it concerns read the raw channels.
    """

    strategy_name: str
    strategy_hash: str
    channel_names: tuple[str, ...]
    features: tuple[Feature, ...]
    gates: tuple[PlanGate, ...]
    channel_map: tuple[tuple[str, str, str], ...] = ()
    uncompensated: tuple[str, ...] = ()

    @property
    def columns(self) -> tuple[int, ...]:
        """Sample columns the plan reads, sorted."""
        cols: set[int] = set()
        for f in self.features:
            for ch in (f.numerator, f.denominator):
                if ch is not None:
                    cols.update(ch.columns)
        return tuple(sorted(cols))

    def to_dict(self) -> dict[str, Any]:
        """JSON-serialisable form; :func:`plan_from_dict` inverts it."""
        out = dataclasses.asdict(self)
        for f, plain in zip(self.features, out["features"], strict=True):
            plain["transform"] = f.transform.to_dict() if f.transform is not None else None
        return out


def plan_from_dict(d: Mapping[str, Any]) -> Plan:
    """Rebuild a :class:`Plan` from :meth:`Plan.to_dict` output.

    Raises :class:`PlanError` for a malformed or inconsistent plan (missing fields, columns
    outside the channel list, geometry that does not fit the gate's features).
    """
    try:
        plan = _plan_from_dict(d)
    except PlanError:
        raise
    except (KeyError, TypeError, ValueError, IndexError) as exc:
        raise PlanError(f"malformed plan: {type(exc).__name__}: {exc}") from None
    _check_plan(plan)
    return plan


def _plan_from_dict(d: Mapping[str, Any]) -> Plan:
    """The plan as written, unchecked (see :func:`plan_from_dict`)."""

    def channel(c: Mapping[str, Any] | None) -> Channel | None:
        if c is None:
            return None
        coef = c["coefficients"]
        return Channel(tuple(c["columns"]), tuple(coef) if coef is not None else None)

    features = tuple(
        Feature(
            key=f["key"],
            numerator=channel(f["numerator"]),  # type: ignore[arg-type]
            denominator=channel(f["denominator"]),
            ratio=tuple(f["ratio"]),  # type: ignore[arg-type]
            ratio_bounds=tuple(f["ratio_bounds"]),  # type: ignore[arg-type]
            transform=transform_from_dict(f["transform"]) if f["transform"] else None,
        )
        for f in d["features"]
    )
    gates = tuple(
        PlanGate(
            population=g["population"], path=g["path"], parent=g["parent"], kind=g["kind"],
            features=tuple(g["features"]), params=g["params"],
        )
        for g in d["gates"]
    )
    return Plan(
        strategy_name=d["strategy_name"], strategy_hash=d["strategy_hash"],
        channel_names=tuple(d["channel_names"]), features=features, gates=gates,
        channel_map=tuple(
            (str(a), str(b), str(c)) for a, b, c in d.get("channel_map", ())
        ),
        uncompensated=tuple(str(u) for u in d.get("uncompensated", ())),
    )


def _check_plan(plan: Plan) -> None:
    """Refuse a plan whose shapes the kernels would index out of bounds (a hand-edited or
    corrupted plan file): every size a kernel relies on is checked here, in Python."""

    def fail(message: str, gate: str = "") -> None:
        raise PlanError(f"inconsistent plan: {message}", source=plan.strategy_name, gate=gate)

    try:
        _check_shapes(plan, fail)
    except PlanError:
        raise
    except (KeyError, TypeError, ValueError, IndexError) as exc:
        fail(f"{type(exc).__name__}: {exc}")


def _check_shapes(plan: Plan, fail: Callable[..., None]) -> None:
    n_channels = len(plan.channel_names)
    for f in plan.features:
        for ch in (f.numerator, f.denominator):
            if ch is None:
                continue
            if not ch.columns or not all(0 <= int(c) < n_channels for c in ch.columns):
                fail(f"feature {f.key!r} reads columns {list(ch.columns)} of {n_channels}")
            if ch.coefficients is not None and len(ch.coefficients) != len(ch.columns):
                fail(f"feature {f.key!r} has {len(ch.coefficients)} coefficients for "
                     f"{len(ch.columns)} columns")
    keys = {f.key for f in plan.features}
    seen: set[str] = set()
    for g in plan.gates:
        pid, n, p = g.population, len(g.features), g.params
        if g.parent is not None and g.parent not in seen:
            fail(f"parent {g.parent!r} is not an earlier population", pid)
        if not set(g.features) <= keys:
            fail(f"unknown features {sorted(set(g.features) - keys)}", pid)
        if g.kind in ("rectangle", "quadrant") and p.get("inclusive", "min") not in INCLUSIVE:
            fail(f"inclusive must be one of {INCLUSIVE}, not {p.get('inclusive')!r}", pid)
        if g.kind == "rectangle":
            ok = n >= 1 and len(p["bounds"]) == n and all(len(b) == 2 for b in p["bounds"])
        elif g.kind == "polygon":
            v = np.asarray(p["vertices"], dtype=np.float64)
            ok = n == 2 and v.ndim == 2 and v.shape[1] == 2 and v.shape[0] >= 3
            ok = ok and bool(np.isfinite(v).all())
        elif g.kind == "ellipsoid":
            mean = np.asarray(p["mean"], dtype=np.float64)
            precision = np.asarray(p["precision"], dtype=np.float64)
            ok = n >= 1 and mean.shape == (n,) and precision.shape == (n, n)
        elif g.kind == "quadrant":
            ok = n >= 1 and len(p["splits"]) == n and len(p["cells"]) == n
        elif g.kind == "boolean":
            refs = [ref for ref, _ in p["operands"]]
            ok = n == 0 and bool(refs) and all(ref in seen for ref in refs)
            ok = ok and p["op"] in ("and", "or", "not")
        else:
            ok = False
        if not ok:
            fail(f"{g.kind} step has parameters that do not fit its {n} features", pid)
        seen.add(pid)


def strategy_hash(strategy: Strategy) -> str:
    """A stable SHA-256 of the strategy's content (not of its file name).

    Computed once per strategy object (the SHA-256 of its sorted JSON :meth:`Strategy.to_dict`
    without ``source``) and kept on it.
    """
    return strategy._content_hash


class _Resolver:
    """Turns dimensions into features for one sample, caching shared work."""

    def __init__(self, strategy: Strategy, sample: FCSData, *, uncompensated: str = "error") -> None:
        self.strategy = strategy
        self.sample = sample
        self.features: dict[str, Feature] = {}
        self._unmixing: dict[str, tuple[np.ndarray, list[str], list[str]] | None] = {}
        self._columns: dict[str, int | None] = {}
        self.channel_map: dict[str, tuple[str, str]] = {}
        self.allow_uncompensated = uncompensated == "allow"
        self.uncompensated: dict[str, str] = {}  # matrix ref -> why it was not applied

    def fail(self, message: str, gate: str = "") -> PlanError:
        return PlanError(f"{self.sample.path}: {message}", source=self.strategy.source, gate=gate)

    def lookup(self, name: str, gate: str) -> int | None:
        """The column of a channel name, or ``None``; see :attr:`Strategy.channel_matching`.

        Raises :class:`AmbiguousChannelError` when FlowJo's form of the name fits two
        channels (or a channel other than the one the name matches exactly).
        """
        if name in self._columns:
            return self._columns[name]
        names = [str(n) for n in self.sample.names]
        try:
            found: int | None = self.sample.channel_index(name)
        except KeyError:
            found = None
        rule = ""
        if found is not None and names[found] != name:
            rule = "case" if names[found].lower() == name.lower() else "marker"
        if self.strategy.channel_matching == "flowjo":
            mangled = flowjo_channel_name(name)
            hits = [i for i, n in enumerate(names) if flowjo_channel_name(n) == mangled]
            candidates = list(dict.fromkeys([*([] if found is None else [found]), *hits]))
            if len(candidates) > 1:
                both = tuple(names[i] for i in candidates)
                raise AmbiguousChannelError(
                    f"{self.sample.path}: channel {name!r} of the workspace could be any of the "
                    f"sample's channels {list(both)} (FlowJo writes '/' as '_'); rename one "
                    "of them in the FCS files or the workspace so that one name fits",
                    source=self.strategy.source,
                    gate=gate,
                    candidates=both,
                )
            if found is None and hits:
                found, rule = hits[0], "flowjo"
        if rule and found is not None:
            self.channel_map[name] = (names[found], rule)
            logger.info(
                "%s: channel %r of %s resolved to %r (%s)",
                self.sample.path, name, self.strategy.source or "the strategy", names[found], rule,
            )
        self._columns[name] = found
        return found

    def column(self, name: str, gate: str) -> int:
        found = self.lookup(name, gate)
        if found is None:
            hint = (
                "; FlowJo's form of the sample's names ('/' as '_') was tried too"
                if self.strategy.channel_matching == "flowjo"
                else ""
            )
            raise self.fail(
                f"the sample has no channel {name!r} (needed by the strategy){hint}; channels: "
                f"{list(self.sample.names)}",
                gate,
            )
        return found

    def refuse(self, ref: str, gate: str, reason: str, problem: str, *,
               labels: tuple[str, ...] = (), hints: tuple[tuple[str, str], ...] = ()) -> None:
        """Compensation ``ref`` cannot be applied: a :class:`CompensationError`, or (allowed)
        a logged, recorded uncompensated gate."""
        which = "the file's spillover" if ref == FILE_SPILLOVER else f"matrix {ref!r}"
        if self.allow_uncompensated:
            if ref not in self.uncompensated:
                self.uncompensated[ref] = f"{which}: {problem}"
                logger.warning("%s: gated UNCOMPENSATED as asked (%s: %s)", self.sample.path,
                               which, problem)
            return
        raise CompensationError(
            f"{self.sample.path}: compensation {ref!r} ({which}) cannot be applied: {problem}; "
            f"{_COMPENSATION_FIX[reason]}, {_ALLOW_HINT}",
            source=self.strategy.source, gate=gate, path=str(self.sample.path), matrix=ref,
            reason=reason, labels=labels, hints=hints,
        )

    def matrix(self, ref: str, gate: str) -> tuple[np.ndarray, list[str], list[str]] | None:
        """(unmixing W detectors x fluorochromes, fluorochrome labels, detector labels), or
        ``None`` for the file's spillover of a file that has none; a matrix that cannot be
        applied is refused (:meth:`refuse`), or ``None`` when that is allowed."""
        if ref in self._unmixing:
            return self._unmixing[ref]
        if ref == FILE_SPILLOVER:
            spill = self.sample.spill
            if spill is None:
                self._unmixing[ref] = None
                return None
            values, fluor, det = spill.to_numpy(), list(spill.index), list(spill.columns)
            inverted = False
        else:
            m = self.strategy.matrices[ref]
            values, fluor, det, inverted = np.array(m.values), list(m.fluorochromes), list(
                m.detectors
            ), m.inverted
        missing = tuple(str(d) for d in det if self.lookup(str(d), gate) is None)
        if missing:
            hints = near_misses(missing, [str(n) for n in self.sample.names])
            self._unmixing[ref] = None
            self.refuse(ref, gate, "labels", _label_problem(missing, hints, len(det)),
                        labels=missing, hints=hints)
            return None
        try:
            w = unmixing_matrix(values, inverted=inverted)
        except np.linalg.LinAlgError as exc:
            self._unmixing[ref] = None
            self.refuse(ref, gate, "singular", str(exc))
            return None
        self._unmixing[ref] = (w, fluor, det)
        return self._unmixing[ref]

    def channel(self, name: str, compensation: str, gate: str) -> Channel:
        if compensation == UNCOMPENSATED or self.scatter_outside_spillover(name, compensation, gate):
            return Channel((self.column(name, gate),))
        resolved = self.matrix(compensation, gate)
        if resolved is None:
            if compensation == FILE_SPILLOVER and self.sample.spill is None:
                self.refuse(compensation, gate, "none",
                            "the file has no spillover matrix ($SPILLOVER, SPILL or $SPILL)")
            return Channel((self.column(name, gate),))
        w, fluor, det = resolved
        # the dimension may name a fluorochrome of the matrix, a detector, or a channel by
        # its marker ($PnS) while the matrix is labelled by $PnN
        names = [name]
        found = self.lookup(name, gate)
        if found is not None:  # else not a channel of the file: a fluorochrome name
            names.append(self.sample.names[found])
        j = next((fluor.index(n) for n in names if n in fluor), None)
        if j is None and len(fluor) == len(det):
            j = next((det.index(n) for n in names if n in det), None)
        if j is None:  # e.g. a scatter channel on a compensated gate: not part of the matrix
            return Channel((self.column(name, gate),))
        cols = tuple(self.column(d, gate) for d in det)
        return Channel(cols, tuple(float(c) for c in w[:, j]))

    def scatter_outside_spillover(self, name: str, compensation: str, gate: str) -> bool:
        """Whether ``name`` is a scatter or time channel that the file's spillover does not
        list (so an ``FCS``-compensated axis on it reads the raw channel, matrix or not)."""
        if compensation != FILE_SPILLOVER:
            return False
        pnn = self.column_name(name, gate)
        if not pnn.lower().startswith(_NEVER_COMPENSATED):
            return False
        spill = self.sample.spill
        return spill is None or not ({name, pnn} & {str(c) for c in spill.columns})

    def column_name(self, name: str, gate: str) -> str:
        """The ``$PnN`` a strategy channel name resolves to (``name`` itself if none)."""
        found = self.lookup(name, gate)
        return str(self.sample.names[found]) if found is not None else name

    def feature(self, dim: Dimension, gate: str) -> str:
        key = f"{dim.name}|{dim.compensation}|{dim.transform}|{'ratio' if dim.ratio else 'ch'}"
        if key in self.features:
            return key
        transform = self.strategy.transforms[dim.transform] if dim.transform else None
        if dim.ratio:
            r = self.strategy.ratios[dim.name]
            feature = Feature(
                key=key,
                numerator=self.channel(r.numerator, dim.compensation, gate),
                denominator=self.channel(r.denominator, dim.compensation, gate),
                ratio=(float(r.a), float(r.b), float(r.c)),
                ratio_bounds=(r.bound_min, r.bound_max),
                transform=transform,
            )
        else:
            feature = Feature(
                key=key, numerator=self.channel(dim.name, dim.compensation, gate),
                transform=transform,
            )
        self.features[key] = feature
        return key


def _interval(splits: Sequence[float], x: float, inclusive: str = "min") -> int:
    """Index of the half-open interval of ``splits`` holding ``x``: the count of splits
    ``<= x`` (``inclusive="min"``, Gating-ML) or ``< x`` (``"max"``, FlowJo)."""
    side = "right" if inclusive == "min" else "left"
    return int(np.searchsorted(np.asarray(splits, dtype=np.float64), x, side=side))


def compile_plan(
    strategy: Strategy, sample: FCSData, *, uncompensated: Literal["error", "allow"] = "error"
) -> Plan:
    """Resolve ``strategy`` against ``sample``: columns, compensation, transforms, order.

    Parameters
    ----------
    strategy
        A parsed strategy (Gating-ML, FlowJo or YAML).
    sample
        The sample whose channel layout the plan is for.
    uncompensated
        What to do when a gate needs compensation that cannot be applied (the file has no
        spillover matrix for an ``FCS``-compensated fluorescence axis, the matrix's labels
        are not the file's channels, or the matrix is singular): ``"error"`` (the default)
        raises :class:`CompensationError`; ``"allow"`` gates those axes uncompensated, logs a
        warning and records why in :attr:`Plan.uncompensated`. Scatter and time axes
        (``FSC*``, ``SSC*``, ``Time*``) with ``FCS`` compensation need no matrix.

    Returns
    -------
    Plan
        A frozen, JSON-serialisable plan.

    Raises
    ------
    CompensationError
        Compensation a gate needs cannot be applied (see ``uncompensated``).
    PlanError
        A channel the strategy needs is missing, or a covariance matrix cannot be inverted.
    """
    if uncompensated not in UNCOMPENSATED_MODES:
        raise ValueError(f"uncompensated must be one of {UNCOMPENSATED_MODES}, not {uncompensated!r}")
    res = _Resolver(strategy, sample, uncompensated=uncompensated)
    pops = strategy.populations()
    steps: list[PlanGate] = []
    for pid in strategy.population_order():
        gate = pops[pid]
        path = strategy.path(pid)
        params: dict[str, Any]
        if isinstance(gate, RectangleGate):
            keys = tuple(res.feature(d, pid) for d in gate.dimensions)
            params = {
                "bounds": [[lo, hi] for lo, hi in gate.bounds],
                "inclusive": gate.inclusive,
            }
            kind = "rectangle"
        elif isinstance(gate, PolygonGate):
            keys = tuple(res.feature(d, pid) for d in gate.dimensions)
            params = {"vertices": [[float(x), float(y)] for x, y in gate.vertices]}
            kind = "polygon"
        elif isinstance(gate, EllipsoidGate):
            keys = tuple(res.feature(d, pid) for d in gate.dimensions)
            cov = np.asarray(gate.covariance, dtype=np.float64)
            try:
                precision = np.linalg.inv(cov)
            except np.linalg.LinAlgError:
                raise res.fail("ellipsoid covariance matrix is singular", pid) from None
            params = {
                "mean": [float(v) for v in gate.mean],
                "precision": precision.tolist(),
                "distance_square": float(gate.distance_square),
            }
            kind = "ellipsoid"
        elif isinstance(gate, QuadrantGate):
            quadrant = next(q for q in gate.quadrants if q.id == pid)
            keys = tuple(res.feature(d.dimension, pid) for d in gate.dividers)
            where = dict(quadrant.positions)
            params = {
                "splits": [list(map(float, d.values)) for d in gate.dividers],
                "cells": [
                    _interval(d.values, where[d.id], gate.inclusive) if d.id in where else -1
                    for d in gate.dividers
                ],
                "inclusive": gate.inclusive,
            }
            kind = "quadrant"
        elif isinstance(gate, BooleanGate):
            keys = ()
            params = {"op": gate.op, "operands": [[ref, bool(c)] for ref, c in gate.operands]}
            kind = "boolean"
        else:  # pragma: no cover - the model has no other gate types
            raise res.fail(f"unsupported gate type {type(gate).__name__}", pid)
        steps.append(
            PlanGate(
                population=pid, path=path, parent=gate.parent, kind=kind,  # type: ignore[arg-type]
                features=keys, params=params,
            )
        )
    return Plan(
        strategy_name=strategy.name,
        strategy_hash=strategy_hash(strategy),
        channel_names=tuple(sample.names),
        features=tuple(res.features.values()),
        gates=tuple(steps),
        channel_map=tuple((k, pnn, rule) for k, (pnn, rule) in res.channel_map.items()),
        uncompensated=tuple(res.uncompensated.values()),
    )
