"""phenoflow's own readable gating-strategy format (YAML or JSON), version 1.

A strategy file is a YAML (or JSON) mapping; :func:`read_strategy_yaml` parses it into a
:class:`~gating._strategy.Strategy`, :func:`write_strategy_yaml` writes any strategy the format
can express back, and :func:`preset` loads the files shipped in ``gating/presets/``. Gate
coordinates are in the *transformed* space of each dimension (after compensation and the
dimension's transform). Example (``gating/presets/study_panel.yaml`` is a complete one)::

    phenoflow-strategy: 1            # required; the format version
    name: my-panel                   # optional display name
    description: free text           # optional (kept as the strategy's notes)
    compensation: spillover          # default for every dimension: none | spillover | <matrix>
    matrices:                        # optional named compensation / spectrum matrices
      lab: {fluorochromes: [FITC, PE], detectors: [FITC-A, PE-A],
            values: [[1, 0.2], [0.01, 1]], inverted: false}
    transforms:
      scatter: {type: linear, T: 262144, A: 0}
      fluor: {type: logicle, T: 262144, W: 0.5, M: 4.5, A: 0, bound_min: -0.1}
    dimensions:
      FSC-A: {transform: scatter, compensation: none}
      CD3: {transform: fluor}                       # a $PnN name or a unique $PnS marker
      CD4: {transform: fluor, channel: BV605-A}     # key is a label, channel the $PnN
      CD4/CD8: {ratio: [BV605-A, PerCP-Cy5.5-A], A: 1, B: 0, C: 0}
    gates:
      - name: Lymphocytes
        polygon: {dims: [FSC-A, SSC-A], vertices: [[0.1, 0], [0.5, 0], [0.5, 0.2]]}
      - {name: CD3+, parent: Lymphocytes, range: {dim: CD3, min: 0.45}}
      - {name: Tc17, parent: CD8+, boolean: "CCR6+ and CXCR3+ and not CCR4+"}

Top level
---------
Keys: ``phenoflow-strategy`` (required, must be ``1``), ``name``, ``description``,
``compensation``, ``matrices``, ``transforms``, ``dimensions`` and ``gates``; anything else is an
error. ``compensation`` is ``none`` (raw values), ``spillover`` (the file's ``$SPILLOVER``) or the
name of a matrix; it defaults to ``none`` and applies to every dimension that does not set its
own, so scatter and time dimensions of a compensated strategy say ``compensation: none``.

``matrices``: name -> ``{fluorochromes, detectors, values, inverted}``; ``values`` is
fluorochromes x detectors (the spillover of each fluorochrome into each detector; a non-square
spectrum matrix is unmixed by least squares), or detectors x fluorochromes when ``inverted:
true`` (the values are already the compensation matrix). Names ``none``, ``spillover``,
``uncompensated`` and ``FCS`` are reserved.

``transforms``: name -> ``{type, parameters..., bound_min, bound_max}`` with the parameters
users know: ``linear`` (Gating-ML ``flin``: ``T``, ``A``), ``log`` (``flog``: ``T``, ``M``),
``asinh`` (``T``, ``M``, ``A``), ``logicle`` and ``hyperlog`` (``T``, ``W``, ``M``, ``A``),
``flowjo-linear`` (``minRange``, ``maxRange``), ``flowjo-log`` (``offset``, ``decades``),
``flowjo-biex`` (``maxRange``, ``width``, ``pos``, ``neg``, optional ``channels`` and
``interpolate``). ``A`` defaults to 0; every other parameter is required. ``bound_min`` /
``bound_max`` clamp the transformed value.

``dimensions``: name -> ``{transform, compensation, channel}`` (all optional; an empty entry
means raw, default-compensated values of the channel named by the key). ``channel`` gives the
``$PnN`` when the key is a label. A ratio dimension (Gating-ML ``fratio``,
``A * (numerator - B) / (denominator - C)``) is ``{ratio: [numerator, denominator], A, B, C,
bound_min, bound_max, transform, compensation}`` whose inputs are channel names (not dimension
keys). Gates may only use declared dimensions.

Gates
-----
``gates`` is a list; each entry has a ``name``, an optional ``parent``, an optional
``description`` and exactly one shape:

* ``range: {dim, min, max}``: ``min <= x < max``; either side may be left out.
* ``rectangle: {<dim>: [min, max], ...}``: the same per dimension; ``null`` leaves a side open.
* ``polygon: {dims: [x, y], vertices: [[x, y], ...]}``: at least 3 vertices; points on an edge
  are inside.
* ``ellipse: {dims: [...], center: [...], covariance: [[...]], distance_square: 1.0}``:
  Mahalanobis distance ``<= distance_square`` in any number of dimensions (``covariance``
  symmetric positive definite). For 2-D, ``radii: [a, b]`` and ``angle`` (degrees,
  counter-clockwise from the x axis to the first radius) may replace ``covariance`` and
  ``distance_square``.
* ``quadrant: {x, y, x_split, y_split, names: {"+,+": ..., "-,+": ..., "-,-": ..., "+,-": ...}}``
  (``"x sign,y sign"``; ``+`` is ``>= split``); or the general form ``quadrant: {dividers:
  {<dim>: [split, ...]}, cells: {<name>: {<dim>: k, ...}}}`` where ``k`` counts the splits at or
  below the cell (``0`` = below the first split; ``-``/``+`` for a single split) and a
  dimension left out of a cell is unconstrained. Each named cell is a population, a child of
  the quadrant gate's ``parent``; the quadrant gate's own name is not a population.
* ``boolean: "CCR6+ and CXCR3+ and not CCR4+"``: ``and``, ``or``, ``not`` (any case) and
  parentheses over population references; quote names that contain spaces, parentheses or
  keywords (``"CD4 T" and not 'or'``). A lone reference (``boolean: CD3+``) copies a population.

References: a ``parent`` is a population name when that name is unique in the file, else a path
suffix such as ``CD3+/CD8+`` or a full path ``/Lymphocytes/.../CD8+``; gates may be listed in
any order. A Boolean reference is first a sibling (same parent as the Boolean gate), then a
full path, then a unique path suffix or name.

Populations get their full path as id (``/Lymphocytes/Singlets/Live/CD3+/CD8+/Tc17``) and their
name as display name, so one name may repeat under different parents (never under one parent).
A Boolean expression becomes one :class:`~gating._strategy.BooleanGate` when it is a single
``and``/``or`` of (possibly negated) references after ``not`` is pushed inwards (De Morgan);
each nested group becomes an extra Boolean population named ``<name> [term k]`` beside the
gate, marked in :attr:`Strategy.notes` (the model has no hidden gates, so these appear in
counts). The writer folds them back into the expression.

Errors are :class:`StrategyFormatError` naming the file, the gate (``gates[i]`` and its name)
and the field. Files are read with ``yaml.safe_load`` (JSON with :mod:`json`); duplicate keys
are errors. Numbers may be written as strings (YAML 1.1 reads ``1e5`` as text) but must be
finite.
"""

from __future__ import annotations

import bisect
import dataclasses
import difflib
import importlib.resources
import itertools
import json
import logging
import math
import os
import re
from collections import Counter, defaultdict
from pathlib import Path
from typing import Any, NoReturn

import numpy as np
import yaml

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
    Ratio,
    RectangleGate,
    Strategy,
    StrategyError,
)
from gating._transforms import (
    Asinh,
    FlowJoBiex,
    FlowJoLinear,
    FlowJoLog,
    Hyperlog,
    Linear,
    Log,
    Logicle,
    Transform,
)

__all__ = [
    "StrategyFormatError",
    "preset",
    "preset_path",
    "presets",
    "read_strategy_yaml",
    "write_strategy_yaml",
]

logger = logging.getLogger(__name__)

VERSION = 1
_TOP_KEYS = ("phenoflow-strategy", "name", "description", "compensation", "matrices",
             "transforms", "dimensions", "gates")
_SHAPES = ("range", "rectangle", "polygon", "ellipse", "quadrant", "boolean")
_GATE_KEYS = ("name", "parent", "description", *_SHAPES)
_COMPENSATION = {"none": UNCOMPENSATED, "spillover": FILE_SPILLOVER}
_RESERVED = {"none", "spillover", UNCOMPENSATED, FILE_SPILLOVER}
_QUADRANT_SIGNS = ("+,+", "-,+", "-,-", "+,-")
_SUFFIXES = (".yaml", ".yml", ".json")
_TERM_NOTE = "phenoflow: a term of the Boolean expression of "
_TRANSFORMS: dict[str, tuple[type[Transform], dict[str, str]]] = {
    "linear": (Linear, {"T": "t", "A": "a"}),
    "log": (Log, {"T": "t", "M": "m"}),
    "asinh": (Asinh, {"T": "t", "M": "m", "A": "a"}),
    "logicle": (Logicle, {"T": "t", "W": "w", "M": "m", "A": "a"}),
    "hyperlog": (Hyperlog, {"T": "t", "W": "w", "M": "m", "A": "a"}),
    "flowjo-linear": (FlowJoLinear, {"minRange": "min_range", "maxRange": "max_range"}),
    "flowjo-log": (FlowJoLog, {"offset": "offset", "decades": "decades"}),
    "flowjo-biex": (FlowJoBiex, {"maxRange": "max_range", "width": "width", "pos": "positive",
                                 "neg": "negative", "channels": "channels",
                                 "interpolate": "interpolate"}),
}
_OPTIONAL_PARAMETERS = {"A", "channels", "interpolate"}
_TOKEN = re.compile(r"\s*(?:(\()|(\))|\"([^\"]*)\"|'([^']*)'|([^\s()\"']+))")
_KEYWORDS = ("and", "or", "not")


class StrategyFormatError(StrategyError):
    """A phenoflow strategy file is malformed or inconsistent.

    Parameters
    ----------
    message
        What is wrong.
    source
        The file (or ``<text>``).
    gate
        The gate's name, when the problem is in a gate.
    index
        The gate's position in ``gates`` (0-based).
    field
        The key concerned, dotted (``transforms.fluor.T``, ``range.min``).
    """

    def __init__(self, message: str, *, source: str = "", gate: str = "",
                 index: int | None = None, field: str = "") -> None:
        super().__init__(message, source=source, gate=gate)
        self.index = index
        self.field = field
        where = [source] if source else []
        if index is not None:
            where.append(f"gates[{index}]" + (f" {gate!r}" if gate else ""))
        elif gate:
            where.append(f"gate {gate!r}")
        if field:
            where.append(f"field {field!r}")
        self.args = (f"{', '.join(where)}: {message}" if where else message,)

    def __reduce__(self):  # keep every keyword across process boundaries
        return (_rebuild, (type(self), self.detail, self.source, self.gate, self.index,
                           self.field))


def _rebuild(cls: type[StrategyFormatError], message: str, source: str, gate: str,
             index: int | None, field: str) -> StrategyFormatError:
    return cls(message, source=source, gate=gate, index=index, field=field)


# ---------------------------------------------------------------------------------------------
# Loading
# ---------------------------------------------------------------------------------------------


def _is_path(value: str) -> bool:
    if "\n" in value or not value.strip():
        return False
    if value.lower().endswith(_SUFFIXES):
        return True
    try:
        return Path(value).is_file()
    except OSError:  # e.g. a name too long for the file system
        return False


def _check_yaml_keys(node: yaml.Node | None, source: str) -> None:
    """Reject duplicate mapping keys (``safe_load`` silently keeps the last one)."""
    stack, seen = [node], set()
    while stack:
        current = stack.pop()
        if current is None or id(current) in seen:
            continue
        seen.add(id(current))
        if isinstance(current, yaml.MappingNode):
            keys: set[tuple[str, str]] = set()
            for key, value in current.value:
                if isinstance(key, yaml.ScalarNode):
                    if (key.tag, key.value) in keys:
                        raise StrategyFormatError(
                            f"duplicate key {key.value!r} at line {key.start_mark.line + 1}",
                            source=source)
                    keys.add((key.tag, key.value))
                stack += [key, value]
        elif isinstance(current, yaml.SequenceNode):
            stack += current.value


def _load(text: str, source: str, as_json: bool | None) -> Any:
    if as_json or (as_json is None and text.lstrip().startswith("{")):

        def pairs(items: list[tuple[str, Any]]) -> dict[str, Any]:
            out: dict[str, Any] = {}
            for key, value in items:
                if key in out:
                    raise StrategyFormatError(f"duplicate key {key!r}", source=source)
                out[key] = value
            return out

        try:
            return json.loads(text, object_pairs_hook=pairs, parse_constant=lambda c: c)
        except json.JSONDecodeError as exc:
            if as_json:
                raise StrategyFormatError(
                    f"invalid JSON at line {exc.lineno} column {exc.colno}: {exc.msg}",
                    source=source) from None
    try:
        _check_yaml_keys(yaml.compose(text, Loader=yaml.SafeLoader), source)
        return yaml.safe_load(text)
    except yaml.YAMLError as exc:
        raise StrategyFormatError(f"invalid YAML: {exc}", source=source) from None


def read_strategy_yaml(path_or_text: str | os.PathLike[str], *,
                       source: str | None = None) -> Strategy:
    """Read a phenoflow strategy file (YAML or JSON, format version 1).

    Parameters
    ----------
    path_or_text
        A path (a :class:`~pathlib.Path`, or a one-line string ending in ``.yaml``, ``.yml``
        or ``.json`` or naming an existing file) or the document text itself.
    source
        Name used in errors and as :attr:`Strategy.source` (default: the path, or
        ``<text>``).

    Returns
    -------
    Strategy
        The validated strategy; population ids are full paths.

    Raises
    ------
    StrategyFormatError
        The document is malformed or inconsistent (the message names file, gate and field).
    OSError
        The file cannot be read.
    """
    if isinstance(path_or_text, os.PathLike) or (
        isinstance(path_or_text, str) and _is_path(path_or_text)
    ):
        path = Path(path_or_text)
        text = path.read_text(encoding="utf-8")
        name, as_json = source or str(path), (path.suffix.lower() == ".json") or None
    elif isinstance(path_or_text, str):
        text, name, as_json = path_or_text, source or "<text>", None
    else:
        raise TypeError(f"expected a path or text, got {type(path_or_text).__name__}")
    strategy = _Reader(name).strategy(_load(text, name, as_json))
    logger.debug("read strategy %r from %s: %d gates", strategy.name, name, len(strategy.gates))
    return strategy


# ---------------------------------------------------------------------------------------------
# Parsing
# ---------------------------------------------------------------------------------------------


@dataclasses.dataclass
class _Entry:
    """One item of ``gates`` after the syntax pass."""

    index: int
    name: str
    parent: str | None
    shape: str
    spec: dict[str, Any]
    description: str | None = None
    cells: tuple[str, ...] = ()  # quadrant cell names (the gate's populations)
    parent_id: str | None = None

    @property
    def populations(self) -> tuple[str, ...]:
        return self.cells if self.shape == "quadrant" else (self.name,)


def _what(value: Any) -> str:
    return {dict: "a mapping", list: "a list", str: "text", type(None): "null"}.get(
        type(value), type(value).__name__)


def _child(parent_id: str | None, name: str) -> str:
    return f"{parent_id or ''}/{name}"


class _Reader:
    """Parses one document; ``fail`` raises with the current gate and a field."""

    def __init__(self, source: str) -> None:
        self.source = source
        self.index: int | None = None
        self.gate = ""

    def fail(self, message: str, field: str = "") -> NoReturn:
        raise StrategyFormatError(message, source=self.source, gate=self.gate,
                                  index=self.index, field=field)

    # ---- values --------------------------------------------------------------------------
    def mapping(self, value: Any, field: str, allowed: tuple[str, ...] | None = None,
                required: tuple[str, ...] = (), *, optional: bool = False) -> dict[Any, Any]:
        if value is None and optional:
            return {}
        if not isinstance(value, dict):
            self.fail(f"expected a mapping, got {_what(value)}", field)
        for key in value:
            if not isinstance(key, str):
                self.fail(f"key {key!r} must be text (quote it)", field)
            if allowed is not None and key not in allowed:
                hint = difflib.get_close_matches(key, allowed, n=1)
                self.fail(f"unknown key {key!r}" + (f" (did you mean {hint[0]!r}?)" if hint
                          else "") + f"; allowed: {', '.join(allowed)}", field)
        for key in required:
            if key not in value:
                self.fail(f"missing required key {key!r}", field)
        return value

    def text(self, value: Any, field: str, *, population: bool = False) -> str:
        if not isinstance(value, str) or not value.strip():
            self.fail(f"expected a non-empty name, got {value!r} (quote names YAML reads "
                      "as numbers or booleans)", field)
        if population and (value != value.strip() or "/" in value):
            self.fail(f"population name {value!r} may not contain '/' or surrounding spaces",
                      field)
        return value

    def number(self, value: Any, field: str) -> float:
        if isinstance(value, bool) or not isinstance(value, int | float | str):
            self.fail(f"expected a number, got {value!r}", field)
        try:
            x = float(value)
        except ValueError:
            self.fail(f"expected a number, got {value!r}", field)
        if not math.isfinite(x):
            self.fail(f"{value!r} is not a finite number", field)
        return x

    def optional_number(self, value: Any, field: str) -> float | None:
        return None if value is None else self.number(value, field)

    def items(self, value: Any, field: str, n: int | None = None,
              minimum: int = 1) -> list[Any]:
        if not isinstance(value, list):
            self.fail(f"expected a list, got {_what(value)}", field)
        if (n is not None and len(value) != n) or len(value) < minimum:
            want = f"{n}" if n is not None else f"at least {minimum}"
            self.fail(f"expected {want} items, got {len(value)}", field)
        return value

    def numbers(self, value: Any, field: str, n: int | None = None) -> tuple[float, ...]:
        return tuple(self.number(v, f"{field}[{i}]")
                     for i, v in enumerate(self.items(value, field, n)))

    def names(self, value: Any, field: str, n: int | None = None) -> tuple[str, ...]:
        out = tuple(self.text(v, f"{field}[{i}]")
                    for i, v in enumerate(self.items(value, field, n)))
        if len(set(out)) != len(out):
            self.fail(f"names repeat: {list(out)}", field)
        return out

    # ---- top level -----------------------------------------------------------------------
    def strategy(self, data: Any) -> Strategy:
        if not isinstance(data, dict) or "phenoflow-strategy" not in data:
            self.fail("not a phenoflow strategy: it must be a mapping starting with "
                      "'phenoflow-strategy: 1'")
        top = self.mapping(data, "", _TOP_KEYS)
        version = top["phenoflow-strategy"]
        if isinstance(version, bool) or version != VERSION:
            self.fail(f"unsupported format version {version!r}; this phenoflow reads version "
                      f"{VERSION}", "phenoflow-strategy")
        name = top.get("name", "")
        if name != "":
            name = self.text(name, "name")
        notes = {}
        if top.get("description") is not None:
            if not isinstance(top["description"], str):
                self.fail("expected text", "description")
            notes[""] = top["description"]
        self.matrices = self.read_matrices(top.get("matrices"))
        self.default = self.compensation(top.get("compensation", "none"), "compensation")
        self.transforms = self.read_transforms(top.get("transforms"))
        self.dims, self.ratios = self.read_dimensions(top.get("dimensions"))
        gates = self.items(top.get("gates", []), "gates", minimum=0)
        entries = [self.entry(i, item) for i, item in enumerate(gates)]
        self.index, self.gate = None, ""
        built, notes = self.build(entries, notes)
        try:
            return Strategy(gates=tuple(built), transforms=self.transforms, ratios=self.ratios,
                            matrices=self.matrices, name=name, source=self.source, notes=notes)
        except StrategyFormatError:
            raise
        except StrategyError as exc:
            owner = self.owners.get(exc.gate)
            self.index, self.gate = owner if owner else (None, exc.gate)
            self.fail(exc.detail)

    def compensation(self, value: Any, field: str) -> str:
        if value in _COMPENSATION:
            return _COMPENSATION[value]
        if isinstance(value, str) and value in self.matrices:
            return value
        self.fail(f"unknown compensation {value!r}; use none, spillover or a matrix name "
                  f"({', '.join(self.matrices) or 'no matrices defined'})", field)

    def read_matrices(self, value: Any) -> dict[str, Matrix]:
        out = {}
        for key, spec in self.mapping(value, "matrices", optional=True).items():
            field = f"matrices.{key}"
            if key in _RESERVED:
                self.fail(f"the matrix name {key!r} is reserved", field)
            spec = self.mapping(spec, field, ("fluorochromes", "detectors", "values", "inverted"),
                                ("fluorochromes", "detectors", "values"))
            fluor = self.names(spec["fluorochromes"], f"{field}.fluorochromes")
            det = self.names(spec["detectors"], f"{field}.detectors")
            inverted = spec.get("inverted", False)
            if not isinstance(inverted, bool):
                self.fail("expected true or false", f"{field}.inverted")
            rows, cols = (det, fluor) if inverted else (fluor, det)
            values = tuple(self.numbers(row, f"{field}.values[{i}]", len(cols))
                           for i, row in enumerate(self.items(spec["values"], f"{field}.values",
                                                              len(rows))))
            out[key] = Matrix(id=key, fluorochromes=fluor, detectors=det, values=values,
                              inverted=inverted)
        return out

    def read_transforms(self, value: Any) -> dict[str, Transform]:
        out = {}
        for key, spec in self.mapping(value, "transforms", optional=True).items():
            field = f"transforms.{key}"
            kind = self.mapping(spec, field, required=("type",))["type"]
            if kind not in _TRANSFORMS:
                self.fail(f"unknown transform type {kind!r}; known: {', '.join(_TRANSFORMS)}",
                          f"{field}.type")
            cls, letters = _TRANSFORMS[kind]
            self.mapping(spec, field, ("type", *letters, "bound_min", "bound_max"),
                         tuple(k for k in letters if k not in _OPTIONAL_PARAMETERS))
            kwargs: dict[str, Any] = {"a": 0.0} if "A" in letters else {}
            for letter, attr in letters.items():
                if letter not in spec:
                    continue
                if letter == "interpolate":
                    if not isinstance(spec[letter], bool):
                        self.fail("expected true or false", f"{field}.{letter}")
                    kwargs[attr] = spec[letter]
                    continue
                kwargs[attr] = self.number(spec[letter], f"{field}.{letter}")
                if letter == "channels":
                    if not kwargs[attr].is_integer():
                        self.fail("expected a whole number", f"{field}.{letter}")
                    kwargs[attr] = int(kwargs[attr])
            for bound in ("bound_min", "bound_max"):
                kwargs[bound] = self.optional_number(spec.get(bound), f"{field}.{bound}")
            try:
                out[key] = cls(**kwargs)
            except (TypeError, ValueError) as exc:
                self.fail(str(exc), field)
        return out

    def read_dimensions(self, value: Any) -> tuple[dict[str, Dimension], dict[str, Ratio]]:
        dims, ratios = {}, {}
        ratio_keys = ("ratio", "A", "B", "C", "bound_min", "bound_max")
        for key, spec in self.mapping(value, "dimensions", optional=True).items():
            field = f"dimensions.{key}"
            spec = self.mapping(spec, field, ("transform", "compensation", "channel",
                                              *ratio_keys), optional=True)
            transform = spec.get("transform")
            if transform is not None and transform not in self.transforms:
                self.fail(f"unknown transform {transform!r}; defined: "
                          f"{', '.join(self.transforms) or 'none'}", f"{field}.transform")
            comp = (self.compensation(spec["compensation"], f"{field}.compensation")
                    if "compensation" in spec else self.default)
            if "ratio" in spec:
                if "channel" in spec:
                    self.fail("a ratio dimension takes its channels from 'ratio'", field)
                num, den = self.names(spec["ratio"], f"{field}.ratio", 2)
                a, b, c = (self.number(spec.get(k, d), f"{field}.{k}")
                           for k, d in (("A", 1.0), ("B", 0.0), ("C", 0.0)))
                lo, hi = (self.optional_number(spec.get(k), f"{field}.{k}")
                          for k in ("bound_min", "bound_max"))
                if lo is not None and hi is not None and lo > hi:
                    self.fail("bound_min exceeds bound_max", field)
                ratios[key] = Ratio(id=key, numerator=num, denominator=den, a=a, b=b, c=c,
                                    bound_min=lo, bound_max=hi)
                dims[key] = Dimension(key, comp, transform, ratio=True)
                continue
            extra = [k for k in ratio_keys if k in spec]
            if extra:
                self.fail(f"{extra[0]!r} is only for ratio dimensions", field)
            channel = self.text(spec.get("channel", key), f"{field}.channel")
            dims[key] = Dimension(channel, comp, transform)
        return dims, ratios

    def dim(self, value: Any, field: str) -> Dimension:
        if not isinstance(value, str) or value not in self.dims:
            hint = difflib.get_close_matches(str(value), list(self.dims), n=1)
            self.fail(f"unknown dimension {value!r}" + (f" (did you mean {hint[0]!r}?)" if hint
                      else "") + "; declare it under 'dimensions'", field)
        return self.dims[value]

    # ---- gates: syntax -------------------------------------------------------------------
    def entry(self, index: int, item: Any) -> _Entry:
        self.index, self.gate = index, ""
        if isinstance(item, dict) and isinstance(item.get("name"), str):
            self.gate = item["name"]
        item = self.mapping(item, "", _GATE_KEYS, ("name",))
        name = self.text(item["name"], "name", population=True)
        parent = item.get("parent")
        if parent is not None:
            parent = self.text(parent, "parent")
            if any(not p.strip() for p in parent.strip("/").split("/")):
                self.fail(f"malformed path {parent!r}", "parent")
        if item.get("description") is not None and not isinstance(item["description"], str):
            self.fail("expected text", "description")
        shapes = [k for k in _SHAPES if k in item]
        if len(shapes) != 1:
            self.fail(f"a gate needs exactly one shape ({', '.join(_SHAPES)}), got "
                      f"{' and '.join(map(repr, shapes)) or 'none'}")
        shape = shapes[0]
        spec = getattr(self, f"shape_{shape}")(item[shape], shape)
        entry = _Entry(index, name, parent, shape, spec, item.get("description"))
        if shape == "quadrant":
            entry.cells = tuple(name for name, _ in spec["cells"])
        return entry

    def shape_range(self, value: Any, field: str) -> dict[str, Any]:
        spec = self.mapping(value, field, ("dim", "min", "max"), ("dim",))
        bounds = tuple(self.optional_number(spec.get(k), f"{field}.{k}") for k in ("min", "max"))
        return self.bounded((self.dim(spec["dim"], f"{field}.dim"),), (bounds,), field)

    def shape_rectangle(self, value: Any, field: str) -> dict[str, Any]:
        spec = self.mapping(value, field)
        if not spec:
            self.fail("a rectangle needs at least one dimension", field)
        dims = tuple(self.dim(k, field) for k in spec)
        bounds = tuple(tuple(self.optional_number(v, f"{field}.{k}[{i}]") for i, v in
                             enumerate(self.items(b, f"{field}.{k}", 2))) for k, b in spec.items())
        return self.bounded(dims, bounds, field)

    def bounded(self, dims: tuple[Dimension, ...], bounds: Any, field: str) -> dict[str, Any]:
        for lo, hi in bounds:
            if lo is not None and hi is not None and lo > hi:
                self.fail(f"min {lo} is above max {hi}", field)
        return {"kind": RectangleGate, "dimensions": dims, "bounds": bounds}

    def dims_of(self, value: Any, field: str, n: int | None = None) -> tuple[Dimension, ...]:
        keys = self.names(value, field, n)
        return tuple(self.dim(k, f"{field}[{i}]") for i, k in enumerate(keys))

    def shape_polygon(self, value: Any, field: str) -> dict[str, Any]:
        spec = self.mapping(value, field, ("dims", "vertices"), ("dims", "vertices"))
        dims = self.dims_of(spec["dims"], f"{field}.dims", 2)
        field = f"{field}.vertices"
        vertices = tuple(self.numbers(v, f"{field}[{i}]", 2)
                         for i, v in enumerate(self.items(spec["vertices"], field, minimum=3)))
        return {"kind": PolygonGate, "dimensions": dims, "vertices": vertices}

    def shape_ellipse(self, value: Any, field: str) -> dict[str, Any]:
        spec = self.mapping(value, field, ("dims", "center", "covariance", "distance_square",
                                           "radii", "angle"), ("dims", "center"))
        dims = self.dims_of(spec["dims"], f"{field}.dims")
        n = len(dims)
        mean = self.numbers(spec["center"], f"{field}.center", n)
        if ("radii" in spec) == ("covariance" in spec):
            self.fail("give either 'covariance' (and 'distance_square') or 'radii' (and "
                      "'angle')", field)
        if "radii" in spec:
            extra = "distance_square" if "distance_square" in spec else None
            if n != 2 or extra:
                self.fail("'radii' is for 2-D ellipses without distance_square", field)
            r = self.numbers(spec["radii"], f"{field}.radii", 2)
            if min(r) <= 0:
                self.fail("radii must be positive", f"{field}.radii")
            t = math.radians(self.number(spec.get("angle", 0.0), f"{field}.angle"))
            rot = np.array([[math.cos(t), -math.sin(t)], [math.sin(t), math.cos(t)]])
            cov = rot @ np.diag(np.square(r)) @ rot.T
            covariance = tuple(tuple(float(v) for v in row) for row in cov)
            dsq = 1.0
        else:
            if "angle" in spec:
                self.fail("'angle' goes with 'radii'", field)
            covariance = tuple(self.numbers(row, f"{field}.covariance[{i}]", n) for i, row in
                               enumerate(self.items(spec["covariance"], f"{field}.covariance", n)))
            cov = np.array(covariance)
            if not np.allclose(cov, cov.T, rtol=1e-9, atol=0.0) or np.linalg.eigvalsh(
                (cov + cov.T) / 2
            ).min() <= 0:
                self.fail("covariance must be symmetric positive definite",
                          f"{field}.covariance")
            dsq = self.number(spec.get("distance_square", 1.0), f"{field}.distance_square")
            if dsq <= 0:
                self.fail("must be positive", f"{field}.distance_square")
        return {"kind": EllipsoidGate, "dimensions": dims, "mean": mean,
                "covariance": covariance, "distance_square": dsq}

    def shape_quadrant(self, value: Any, field: str) -> dict[str, Any]:
        simple = ("x", "y", "x_split", "y_split", "names")
        spec = self.mapping(value, field, (*simple, "dividers", "cells"))
        if any(k in spec for k in simple):
            spec = self.mapping(spec, field, simple, simple)
            keys = self.names([spec["x"], spec["y"]], f"{field}.x/y", 2)
            splits = {keys[0]: (self.number(spec["x_split"], f"{field}.x_split"),),
                      keys[1]: (self.number(spec["y_split"], f"{field}.y_split"),)}
            names = self.mapping(spec["names"], f"{field}.names")
            cells, signs = {}, set()
            for sign, cell in names.items():
                norm = sign.replace(" ", "")
                if norm not in _QUADRANT_SIGNS or norm in signs:
                    self.fail(f"quadrant key {sign!r} is not one of "
                              f"{', '.join(_QUADRANT_SIGNS)} or repeats", f"{field}.names")
                cell = self.text(cell, f"{field}.names.{sign}", population=True)
                if cell in cells:
                    self.fail(f"cell name {cell!r} repeats", f"{field}.names")
                signs.add(norm)
                cells[cell] = dict(zip(keys, norm.split(","), strict=True))
        else:
            spec = self.mapping(spec, field, ("dividers", "cells"), ("dividers", "cells"))
            dividers = self.mapping(spec["dividers"], f"{field}.dividers")
            splits = {k: self.numbers(v, f"{field}.dividers.{k}") for k, v in dividers.items()}
            cells = self.mapping(spec["cells"], f"{field}.cells")
        if not splits or not cells:
            self.fail("a quadrant gate needs dividers and at least one named cell", field)
        out_dividers, ids = [], {}
        for key, values in splits.items():
            if any(b <= a for a, b in itertools.pairwise(values)):
                self.fail("splits must be strictly increasing", f"{field}.dividers.{key}")
            dim = self.dim(key, f"{field}.{key}")
            ids[key] = dim.name if dim.name not in ids.values() else f"{dim.name}~{len(ids)}"
            out_dividers.append(Divider(ids[key], dim, values))
        out_cells = []
        for cell, where in cells.items():
            cell_field = f"{field}.cells.{cell}"
            cell = self.text(cell, cell_field, population=True)
            positions = []
            for key, k in self.mapping(where, cell_field, tuple(splits)).items():
                s = splits[key]
                if k in ("-", "+") and len(s) == 1:
                    k = int(k == "+")
                if isinstance(k, bool) or not isinstance(k, int) or not 0 <= k <= len(s):
                    self.fail(f"cell position {k!r} is not an interval 0..{len(s)}"
                              + (" or -/+" if len(s) == 1 else ""), f"{cell_field}.{key}")
                low = s[0] - 1.0 if s[0] - 1.0 < s[0] else math.nextafter(s[0], -math.inf)
                positions.append((ids[key], low if k == 0 else s[k - 1]))
            out_cells.append((cell, tuple(positions)))
        return {"kind": QuadrantGate, "dividers": tuple(out_dividers), "cells": out_cells}

    def shape_boolean(self, value: Any, field: str) -> dict[str, Any]:
        if not isinstance(value, str):
            self.fail(f"expected an expression in text, got {_what(value)}", field)
        tokens: list[tuple[str, str]] = []
        pos = 0
        while value[pos:].strip():
            m = _TOKEN.match(value, pos)
            if m is None:
                self.fail(f"unbalanced quote at character {pos + 1} of {value!r}", field)
            lpar, rpar, dq, sq, bare = m.groups()
            if bare is not None and bare.lower() in _KEYWORDS:
                tokens.append((bare.lower(), bare))
            elif lpar or rpar:
                tokens.append((lpar or rpar, lpar or rpar))  # type: ignore[arg-type]
            else:
                tokens.append(("name", next(t for t in (dq, sq, bare) if t is not None)))
            pos = m.end()
        parser = _BooleanParser(tokens, lambda msg: self.fail(f"{msg} in {value!r}", field))
        return {"kind": BooleanGate, "expr": _nnf(parser.parse())}

    # ---- gates: references and construction ----------------------------------------------
    def build(self, entries: list[_Entry], notes: dict[str, str]) -> tuple[list[Gate],
                                                                         dict[str, str]]:
        by_name: dict[str, list[_Entry]] = defaultdict(list)
        for e in entries:
            for pop in e.populations:
                by_name[pop].append(e)
        quadrants = {e.name for e in entries if e.shape == "quadrant"}
        pending, done = list(entries), set()
        waits: dict[int, set[int]] = {}  # gate -> unresolved candidates it waits for
        excluded: dict[int, set[int]] = defaultdict(set)
        while pending:
            left = []
            for e in pending:
                self.index, self.gate = e.index, e.name
                waits[e.index] = self.resolve_parent(e, by_name, done, quadrants,
                                                     excluded[e.index])
                if waits[e.index]:
                    left.append(e)
                else:
                    done.add(e.index)
            if len(left) == len(pending):
                # a candidate that (transitively) waits for this gate cannot be its parent
                new = False
                for e in left:
                    for c in waits[e.index]:
                        seen, stack = set(), [c]
                        while stack:
                            for nxt in waits.get(stack.pop(), ()):
                                if nxt not in seen:
                                    seen.add(nxt)
                                    stack.append(nxt)
                        if e.index in seen and c not in excluded[e.index]:
                            excluded[e.index].add(c)
                            new = True
                if not new:
                    self.index, self.gate = left[0].index, left[0].name
                    self.fail(f"parent {left[0].parent!r} cannot be resolved: the parents "
                              "form a cycle", "parent")
            pending = left
        # one name per parent (gate names, quadrant cells and quadrant gate names)
        self.siblings: dict[tuple[str | None, str], str] = {}
        self.owners: dict[str, tuple[int, str]] = {}
        taken: dict[tuple[str | None, str], int] = {}
        for e in entries:
            self.index, self.gate = e.index, e.name
            for pop in {e.name, *e.populations}:
                if (e.parent_id, pop) in taken:
                    self.fail(f"another population named {pop!r} under the same parent "
                              f"(gates[{taken[e.parent_id, pop]}])", "name")
                taken[e.parent_id, pop] = e.index
            for pop in e.populations:
                self.siblings[e.parent_id, pop] = _child(e.parent_id, pop)
            self.owners[_child(e.parent_id, e.name)] = (e.index, e.name)
            for pop in e.populations:
                self.owners.setdefault(_child(e.parent_id, pop), (e.index, e.name))
        self.paths = set(self.siblings.values())
        gates: list[Gate] = []
        for e in entries:
            self.index, self.gate = e.index, e.name
            gid = _child(e.parent_id, e.name)
            if e.description is not None:
                notes[gid] = e.description
            gates += self.gate_of(e, gid, notes, taken)
        return gates, notes

    def resolve_parent(self, e: _Entry, by_name: dict[str, list[_Entry]], done: set[int],
                       quadrants: set[str], excluded: set[int]) -> set[int]:
        """Set ``e.parent_id``; return the unresolved candidates to wait for (empty: done)."""
        if e.parent is None:
            return set()
        parts = e.parent.strip("/").split("/")
        named = [c for c in by_name.get(parts[-1], []) if c is not e]
        candidates = [c for c in named if c.index not in excluded]
        if named and not candidates:
            self.fail(f"parent {e.parent!r} cannot be resolved: the parents form a cycle",
                      "parent")
        if not candidates:
            hint = difflib.get_close_matches(parts[-1], list(by_name), n=1)
            why = (" is a quadrant gate; use one of its cells" if parts[-1] in quadrants
                   else " is not defined" + (f" (did you mean {hint[0]!r}?)" if hint else ""))
            self.fail(f"parent {parts[-1]!r}{why}", "parent")
        if len(parts) == 1 and not e.parent.startswith("/") and len(candidates) > 1:
            self.fail(f"parent {e.parent!r} is ambiguous: "
                      f"{', '.join(f'gates[{c.index}]' for c in candidates)} define it; write a "
                      f"path such as 'PARENT/{e.parent}'", "parent")
        waiting = {c.index for c in candidates if c.index not in done}
        if waiting:
            return waiting
        paths = [_child(c.parent_id, parts[-1]) for c in candidates]
        want = "/" + "/".join(parts)
        hits = [p for p in paths if (p == want if e.parent.startswith("/")
                                     else p.endswith(want))]
        if len(hits) != 1:
            self.fail(f"parent {e.parent!r} " + ("matches no population" if not hits else
                      f"is ambiguous: {', '.join(hits)}"), "parent")
        e.parent_id = hits[0]
        return set()

    def reference(self, token: str, parent_id: str | None, field: str) -> str:
        if not token.startswith("/") and (parent_id, token) in self.siblings:
            return self.siblings[parent_id, token]
        if token.startswith("/"):
            hits = [token] if token in self.paths else []
        else:
            hits = [p for p in self.paths if p.endswith("/" + token)]
        if len(hits) != 1:
            self.fail(f"{token!r} " + ("is not a population" if not hits else
                      f"is ambiguous: {', '.join(sorted(hits))}; write a path"), field)
        return hits[0]

    def gate_of(self, e: _Entry, gid: str, notes: dict[str, str],
                taken: dict[tuple[str | None, str], int]) -> list[Gate]:
        spec = dict(e.spec)
        kind = spec.pop("kind")
        common = {"parent": e.parent_id, "name": e.name}
        if kind is QuadrantGate:
            quads = tuple(Quadrant(_child(e.parent_id, c), pos, c) for c, pos in spec["cells"])
            return [QuadrantGate(gid, spec["dividers"], quads, **common)]
        if kind is not BooleanGate:
            return [kind(gid, **spec, **common)]
        expr, out = spec["expr"], []

        def emit(node: tuple[Any, ...], gate_id: str, name: str) -> None:
            operands = []
            for child in node[1]:
                if child[0] == "lit":
                    operands.append((self.reference(child[1], e.parent_id, "boolean"), child[2]))
                    continue
                self.terms += 1
                term = f"{e.name} [term {self.terms}]"
                if (e.parent_id, term) in taken:
                    self.fail(f"the helper population name {term!r} is already used", "boolean")
                term_id = _child(e.parent_id, term)
                notes[term_id] = _TERM_NOTE + gid
                self.owners[term_id] = (e.index, e.name)
                emit(child, term_id, term)
                operands.append((term_id, False))
            out.append(BooleanGate(gate_id, node[0], tuple(operands), e.parent_id, name))

        self.terms = 0
        if expr[0] == "lit":  # a lone (possibly negated) reference
            ref = self.reference(expr[1], e.parent_id, "boolean")
            return [BooleanGate(gid, "not", ((ref, not expr[2]),), **common)]
        emit(expr, gid, e.name)
        return out


# ---------------------------------------------------------------------------------------------
# Boolean expressions: a small recursive-descent parser (no eval), then negation normal form
# ---------------------------------------------------------------------------------------------


class _BooleanParser:
    """``or`` < ``and`` < ``not`` < atoms; nodes ``("ref", name)``, ``("not", x)``,
    ``("and" | "or", [x, ...])``."""

    def __init__(self, tokens: list[tuple[str, str]], fail: Any) -> None:
        self.tokens, self.pos, self.fail = tokens, 0, fail

    def peek(self) -> str | None:
        return self.tokens[self.pos][0] if self.pos < len(self.tokens) else None

    def parse(self) -> tuple[Any, ...]:
        if not self.tokens:
            self.fail("empty expression")
        try:
            node = self.chain("or", self.chain_and)
        except RecursionError:
            self.fail("expression nested too deeply")
        if self.pos < len(self.tokens):
            self.fail(f"expected 'and' or 'or' before {self.tokens[self.pos][1]!r}")
        return node

    def chain(self, op: str, operand: Any) -> tuple[Any, ...]:
        items = [operand()]
        while self.peek() == op:
            self.pos += 1
            items.append(operand())
        return items[0] if len(items) == 1 else (op, items)

    def chain_and(self) -> tuple[Any, ...]:
        return self.chain("and", self.negation)

    def negation(self) -> tuple[Any, ...]:
        if self.peek() == "not":
            self.pos += 1
            return ("not", self.negation())
        kind = self.peek()
        if kind == "(":
            self.pos += 1
            node = self.chain("or", self.chain_and)
            if self.peek() != ")":
                self.fail("missing ')'")
            self.pos += 1
            return node
        if kind != "name":
            self.fail("expected a population name" + (
                f", got {self.tokens[self.pos][1]!r}" if kind else " at the end"))
        self.pos += 1
        return ("ref", self.tokens[self.pos - 1][1])


def _nnf(node: tuple[Any, ...], negate: bool = False) -> tuple[Any, ...]:
    """Push ``not`` down to the references (De Morgan) and flatten nested same operators."""
    if node[0] == "ref":
        return ("lit", node[1], negate)
    if node[0] == "not":
        return _nnf(node[1], not negate)
    op = {"and": "or", "or": "and"}[node[0]] if negate else node[0]
    children: list[tuple[Any, ...]] = []
    for child in node[1]:
        sub = _nnf(child, negate)
        children += sub[1] if sub[0] == op else [sub]
    return (op, children)


# ---------------------------------------------------------------------------------------------
# Writing
# ---------------------------------------------------------------------------------------------

_KIND_TO_TYPE = {cls.kind: (name, letters) for name, (cls, letters) in _TRANSFORMS.items()}


class _Block(dict):  # type: ignore[type-arg]
    """A mapping written in block style (one key a line), whatever its values."""


class _Expression(str):
    """A Boolean expression, written single-quoted."""

    __slots__ = ()


class _Dumper(yaml.SafeDumper):
    """``SafeDumper`` plus block-style gate entries and quoted expressions."""


_Dumper.add_representer(_Block, lambda dumper, data: dumper.represent_mapping(
    "tag:yaml.org,2002:map", data, flow_style=False))
_Dumper.add_representer(_Expression, lambda dumper, data: dumper.represent_scalar(
    "tag:yaml.org,2002:str", str(data), style="'"))


def _quote(token: str) -> str | None:
    if re.fullmatch(r"[^\s()\"']+", token) and token.lower() not in _KEYWORDS:
        return token
    return next((q + token + q for q in "\"'" if q not in token), None)


class _Writer:
    """Turns a :class:`Strategy` into the plain data of a version-1 document."""

    def __init__(self, strategy: Strategy) -> None:
        self.s = strategy
        self.pops = strategy.populations()
        self.paths = {pid: strategy.path(pid) for pid in self.pops}
        self.gates = {g.id: g for g in strategy.gates}
        self.terms = {
            g.id: strategy.notes[g.id][len(_TERM_NOTE):] for g in strategy.gates
            if isinstance(g, BooleanGate) and strategy.notes.get(g.id, "").startswith(_TERM_NOTE)
            and strategy.notes[g.id][len(_TERM_NOTE):] in self.gates
        }
        self.visible = [p for p in self.pops if p not in self.terms]

    def fail(self, message: str, gate: str = "") -> NoReturn:
        raise StrategyFormatError(f"cannot be written in the phenoflow format: {message}",
                                  source=self.s.source, gate=gate)

    def compensation(self, comp: str) -> str:
        names = {v: k for k, v in _COMPENSATION.items()}
        if comp in names:
            return names[comp]
        if comp in _RESERVED:
            self.fail(f"matrix id {comp!r} is a reserved word")
        return comp

    def transform(self, tid: str, t: Transform) -> dict[str, Any]:
        if t.kind not in _KIND_TO_TYPE:
            self.fail(f"transform {tid!r} of kind {t.kind!r} has no type in the format")
        name, letters = _KIND_TO_TYPE[t.kind]
        defaults = {f.name: f.default for f in dataclasses.fields(t)}
        out: dict[str, Any] = {"type": name}
        for letter, attr in letters.items():
            value = getattr(t, attr)
            if letter in _OPTIONAL_PARAMETERS and letter != "A" and value == defaults[attr]:
                continue
            out[letter] = value if isinstance(value, bool | int) else float(value)
        for bound in ("bound_min", "bound_max"):
            if getattr(t, bound) is not None:
                out[bound] = float(getattr(t, bound))
        return out

    def dimensions(self) -> dict[str, dict[str, Any]]:
        used = list(self.s.dimensions())
        comps = Counter(d.compensation for d in used)
        self.default = comps.most_common(1)[0][0] if comps else UNCOMPENSATED
        self.keys: dict[Dimension, str] = {}
        entries: dict[str, dict[str, Any]] = {}

        def ratio(rid: str) -> dict[str, Any]:
            r = self.s.ratios[rid]
            if r.id != rid:
                self.fail(f"ratio {rid!r} is stored under id {r.id!r}")
            out: dict[str, Any] = {"ratio": [r.numerator, r.denominator],
                                   "A": float(r.a), "B": float(r.b), "C": float(r.c)}
            for bound in ("bound_min", "bound_max"):
                if getattr(r, bound, None) is not None:
                    out[bound] = float(getattr(r, bound))
            return out

        for d in used:
            if d in self.keys:
                continue
            key = d.name
            if d.ratio:
                if key in entries:
                    self.fail(f"ratio {key!r} is used with two compensations or transforms")
                entry = entries[key] = ratio(key)
            else:
                n = 1
                while key in entries or key in self.s.ratios:
                    n += 1
                    key = f"{d.name}~{n}"
                entry = entries[key] = {} if key == d.name else {"channel": d.name}
            if d.transform is not None:
                entry["transform"] = d.transform
            if d.compensation != self.default:
                entry["compensation"] = self.compensation(d.compensation)
            self.keys[d] = key
        for rid in self.s.ratios:
            if rid not in entries:
                entries[rid] = ratio(rid)
        return entries

    def dim_keys(self, dims: Any, gate: str) -> list[str]:
        keys = [self.keys[d] for d in dims]
        if len(set(keys)) != len(keys):
            self.fail("a gate uses one dimension twice", gate)
        return keys

    def parent(self, pid: str) -> str:
        path = self.paths[pid]
        parts = path.strip("/").split("/")
        for n in range(1, len(parts) + 1):
            suffix = "/".join(parts[-n:])
            if sum(1 for p in self.visible if self.paths[p].endswith("/" + suffix)) == 1:
                return suffix
        return path

    def token(self, ref: str, parent: str | None) -> str:
        text = (self.s.display_name(ref) if self.s.parent_of(ref) == parent
                else self.paths[ref])
        quoted = _quote(text)
        if quoted is None:
            self.fail(f"population {text!r} has both kinds of quotes in its name")
        return quoted

    def expression(self, gate: BooleanGate, owner: str) -> str:
        def operand(ref: str, complement: bool) -> str:
            if self.terms.get(ref) == owner:
                term = self.gates[ref]
                assert isinstance(term, BooleanGate)
                inner = f"({self.expression(term, owner)})"
            else:
                inner = self.token(ref, gate.parent)
            return f"not {inner}" if complement else inner

        if gate.op == "not":
            ref, complement = gate.operands[0]
            return operand(ref, False) if complement else operand(ref, True)
        return f" {gate.op} ".join(operand(ref, c) for ref, c in gate.operands)

    def gate(self, g: Gate) -> dict[str, Any]:
        name = g.name or (g.id.rsplit("/", 1)[-1] if isinstance(g, QuadrantGate) else g.id)
        out: dict[str, Any] = _Block(name=name)
        if g.parent is not None:
            out["parent"] = self.parent(g.parent)
        if isinstance(g, RectangleGate):
            keys = self.dim_keys(g.dimensions, g.id)
            if len(keys) == 1:
                lo, hi = g.bounds[0]
                out["range"] = {"dim": keys[0], **({"min": float(lo)} if lo is not None else {}),
                                **({"max": float(hi)} if hi is not None else {})}
            else:
                out["rectangle"] = {k: [None if v is None else float(v) for v in b]
                                    for k, b in zip(keys, g.bounds, strict=True)}
        elif isinstance(g, PolygonGate):
            out["polygon"] = {"dims": self.dim_keys(g.dimensions, g.id),
                              "vertices": [[float(x), float(y)] for x, y in g.vertices]}
        elif isinstance(g, EllipsoidGate):
            out["ellipse"] = {"dims": self.dim_keys(g.dimensions, g.id),
                              "center": [float(v) for v in g.mean],
                              "covariance": [[float(v) for v in r] for r in g.covariance],
                              "distance_square": float(g.distance_square)}
        elif isinstance(g, QuadrantGate):
            out["quadrant"] = self.quadrant(g)
        else:
            out["boolean"] = _Expression(self.expression(g, g.id))
        if g.id in self.s.notes:
            out["description"] = self.s.notes[g.id]
        return out

    def quadrant(self, g: QuadrantGate) -> dict[str, Any]:
        keys = self.dim_keys([d.dimension for d in g.dividers], g.id)
        key_of = {d.id: k for d, k in zip(g.dividers, keys, strict=True)}
        splits = {d.id: [float(v) for v in d.values] for d in g.dividers}
        cells = {
            (q.name or q.id): {key_of[ref]: bisect.bisect_right(splits[ref], loc)
                               for ref, loc in q.positions}
            for q in g.quadrants
        }
        if len(cells) != len(g.quadrants):
            self.fail("two quadrants share a name", g.id)
        if len(keys) == 2 and all(len(s) == 1 for s in splits.values()) and all(
            len(c) == 2 for c in cells.values()
        ):
            x, y = keys
            (xs,), (ys,) = splits.values()
            names = {f"{'-+'[c[x]]},{'-+'[c[y]]}": name for name, c in cells.items()}
            return {"x": x, "y": y, "x_split": xs, "y_split": ys, "names": names}
        return {"dividers": {key_of[i]: s for i, s in splits.items()}, "cells": cells}

    def document(self) -> dict[str, Any]:
        doc: dict[str, Any] = {"phenoflow-strategy": VERSION}
        if self.s.name:
            doc["name"] = self.s.name
        for key in self.s.notes:
            if key and key not in self.terms and key not in self.gates:
                self.fail(f"the note on {key!r} belongs to no gate")
        if self.s.notes.get(""):
            doc["description"] = self.s.notes[""]
        dims = self.dimensions()
        doc["compensation"] = self.compensation(self.default)
        for key, m in self.s.matrices.items():
            if key != m.id:
                self.fail(f"matrix {key!r} is stored under id {m.id!r}")
        if self.s.matrices:
            doc["matrices"] = {
                k: {"fluorochromes": list(m.fluorochromes), "detectors": list(m.detectors),
                    "values": [[float(v) for v in r] for r in m.values], "inverted": m.inverted}
                for k, m in self.s.matrices.items()
            }
        if self.s.transforms:
            doc["transforms"] = {k: self.transform(k, t) for k, t in self.s.transforms.items()}
        if dims:
            doc["dimensions"] = dims
        doc["gates"] = [self.gate(g) for g in self.s.gates if g.id not in self.terms]
        return doc


def write_strategy_yaml(strategy: Strategy) -> str:
    """Write a strategy as a phenoflow YAML document (format version 1).

    Reading the text back with :func:`read_strategy_yaml` (``source=strategy.source``) gives a
    strategy equal to one read from this format. A strategy from another format comes back
    with full paths as ids, dimension names as dimension keys and canonical quadrant
    locations: the same populations and gates.

    Parameters
    ----------
    strategy
        Any strategy the format can express.

    Returns
    -------
    str
        The YAML text.

    Raises
    ------
    StrategyFormatError
        The strategy uses something the format cannot express (population names with ``/``,
        two populations with one name under one parent, non-finite numbers, notes on quadrant
        cells, a ratio used with two compensations...). The text is re-read before it is
        returned, so anything the reader would reject is reported here.
    """
    data = _Writer(strategy).document()
    text = "# phenoflow gating strategy, format version 1 (documented in gating/_yaml.py)\n"
    text += yaml.dump(data, Dumper=_Dumper, sort_keys=False, default_flow_style=None,
                      allow_unicode=True, width=100)
    try:
        read_strategy_yaml(text, source=strategy.source or "<written>")
    except StrategyFormatError as exc:
        raise StrategyFormatError(f"cannot be written in the phenoflow format: {exc.detail}",
                                  source=strategy.source, gate=exc.gate,
                                  field=exc.field) from exc
    return text


# ---------------------------------------------------------------------------------------------
# Presets
# ---------------------------------------------------------------------------------------------


def _preset_dir() -> Any:
    return importlib.resources.files("gating").joinpath("presets")


def presets() -> list[str]:
    """Names of the strategies shipped in ``gating/presets/`` (file names without suffix).

    Returns
    -------
    list of str
        Sorted preset names, e.g. ``["study_panel"]``.
    """
    return sorted(p.name.rsplit(".", 1)[0] for p in _preset_dir().iterdir()
                  if p.name.lower().endswith(_SUFFIXES))


def preset_path(name: str) -> Path:
    """Path of a shipped preset.

    Parameters
    ----------
    name
        A name from :func:`presets` (a ``.yaml``/``.yml``/``.json`` suffix is allowed).

    Returns
    -------
    Path
        The file (inside the installed ``gating`` package).

    Raises
    ------
    ValueError
        No preset of that name.
    """
    stem = name[: -len(Path(name).suffix)] if name.lower().endswith(_SUFFIXES) else name
    if stem in presets():
        for suffix in _SUFFIXES:
            entry = _preset_dir().joinpath(stem + suffix)
            if entry.is_file():
                return Path(str(entry))
    raise ValueError(f"unknown preset {name!r}; available: {', '.join(presets()) or 'none'}")


def preset(name: str) -> Strategy:
    """Read a shipped preset, e.g. ``preset("study_panel")``.

    Parameters
    ----------
    name
        A name from :func:`presets`.

    Returns
    -------
    Strategy
        The parsed strategy.
    """
    return read_strategy_yaml(preset_path(name))
