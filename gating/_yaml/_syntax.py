"""The syntax pass of the strategy-format reader: checked values and gate entries.

:class:`SyntaxReader` checks the plain values of a document (mappings with known keys,
names, finite numbers, lists of a given length) and turns each item of ``gates`` into an
:class:`Entry` whose shape is checked and converted; resolving parents and Boolean
references and building the gates is left to :class:`gating._yaml._read._Reader`.
"""

from __future__ import annotations

import dataclasses
import difflib
import itertools
import math
from typing import Any, NoReturn

import numpy as np

from gating._strategy import (
    BooleanGate,
    Dimension,
    Divider,
    EllipsoidGate,
    PolygonGate,
    QuadrantGate,
    RectangleGate,
)
from gating._yaml._bool import bool_expression
from gating._yaml._format import (
    BOUNDED_SHAPES,
    GATE_KEYS,
    QUADRANT_SIGNS,
    SHAPES,
    StrategyFormatError,
)

__all__ = ["Entry", "SyntaxReader"]


@dataclasses.dataclass
class Entry:
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


class SyntaxReader:
    """Checks the values and gate entries of one document; ``fail`` raises with the current
    gate and a field."""

    dims: dict[str, Dimension]  # the declared dimensions (set by the document reader)

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

    # ---- dimension references ------------------------------------------------------------
    def dim(self, value: Any, field: str) -> Dimension:
        if not isinstance(value, str) or value not in self.dims:
            hint = difflib.get_close_matches(str(value), list(self.dims), n=1)
            self.fail(f"unknown dimension {value!r}" + (f" (did you mean {hint[0]!r}?)" if hint
                      else "") + "; declare it under 'dimensions'", field)
        return self.dims[value]

    # ---- gates: syntax -------------------------------------------------------------------
    def entry(self, index: int, item: Any) -> Entry:
        self.index, self.gate = index, ""
        if isinstance(item, dict) and isinstance(item.get("name"), str):
            self.gate = item["name"]
        item = self.mapping(item, "", GATE_KEYS, ("name",))
        name = self.text(item["name"], "name", population=True)
        parent = item.get("parent")
        if parent is not None:
            parent = self.text(parent, "parent")
            if any(not p.strip() for p in parent.strip("/").split("/")):
                self.fail(f"malformed path {parent!r}", "parent")
        if item.get("description") is not None and not isinstance(item["description"], str):
            self.fail("expected text", "description")
        shapes = [k for k in SHAPES if k in item]
        if len(shapes) != 1:
            self.fail(f"a gate needs exactly one shape ({', '.join(SHAPES)}), got "
                      f"{' and '.join(map(repr, shapes)) or 'none'}")
        shape = shapes[0]
        spec = getattr(self, f"shape_{shape}")(item[shape], shape)
        if "inclusive" in item:
            if shape not in BOUNDED_SHAPES:
                self.fail(f"'inclusive' applies to {', '.join(BOUNDED_SHAPES)} gates, not {shape}",
                          "inclusive")
            if item["inclusive"] not in ("min", "max"):
                self.fail(f"expected 'min' (min <= x < max, Gating-ML) or 'max' (min < x <= max, "
                          f"FlowJo), got {item['inclusive']!r}", "inclusive")
            spec["inclusive"] = item["inclusive"]
            if shape == "quadrant" and item["inclusive"] == "max":
                spec["cells"] = self.closed_above(spec)
        entry = Entry(index, name, parent, shape, spec, item.get("description"))
        if shape == "quadrant":
            entry.cells = tuple(name for name, _ in spec["cells"])
        return entry

    @staticmethod
    def closed_above(spec: dict[str, Any]) -> list[tuple[str, tuple[tuple[str, float], ...]]]:
        """Cell positions for ``min < x <= max`` intervals: a split closes the cell below it, so
        a cell above a split is located just above it."""
        splits = {d.id: d.values for d in spec["dividers"]}
        return [
            (cell, tuple((ref, math.nextafter(x, math.inf) if x in splits[ref] else x)
                         for ref, x in positions))
            for cell, positions in spec["cells"]
        ]

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
                if norm not in QUADRANT_SIGNS or norm in signs:
                    self.fail(f"quadrant key {sign!r} is not one of "
                              f"{', '.join(QUADRANT_SIGNS)} or repeats", f"{field}.names")
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
        return {"kind": BooleanGate, "expr": bool_expression(value, lambda msg: self.fail(msg, field))}
