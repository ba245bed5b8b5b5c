"""The strategy-format writer: a :class:`Strategy` to the plain data of a document.

:class:`Writer` turns a strategy into version-1 data (folding the helper populations of
nested Boolean terms back into their expressions); :class:`StrategyDumper` writes it as YAML with
block-style gate entries and single-quoted expressions.
"""

from __future__ import annotations

import bisect
import dataclasses
from collections import Counter
from typing import Any, NoReturn

import yaml

from gating._strategy import (
    UNCOMPENSATED,
    BooleanGate,
    Dimension,
    EllipsoidGate,
    Gate,
    PolygonGate,
    QuadrantGate,
    RectangleGate,
    Strategy,
)
from gating._transforms import Transform
from gating._yaml._bool import quote_operand
from gating._yaml._format import (
    COMPENSATION,
    OPTIONAL_PARAMETERS,
    RESERVED,
    TERM_NOTE,
    TRANSFORMS,
    VERSION,
    StrategyFormatError,
)

__all__ = ["StrategyDumper", "Writer"]

_KIND_TO_TYPE = {cls.kind: (name, letters) for name, (cls, letters) in TRANSFORMS.items()}


class _Block(dict):  # type: ignore[type-arg]
    """A mapping written in block style (one key a line), whatever its values."""


class _Expression(str):
    """A Boolean expression, written single-quoted."""

    __slots__ = ()


class StrategyDumper(yaml.SafeDumper):
    """``SafeDumper`` plus block-style gate entries and quoted expressions."""


StrategyDumper.add_representer(_Block, lambda dumper, data: dumper.represent_mapping(
    "tag:yaml.org,2002:map", data, flow_style=False))
StrategyDumper.add_representer(_Expression, lambda dumper, data: dumper.represent_scalar(
    "tag:yaml.org,2002:str", str(data), style="'"))


class Writer:
    """Turns a :class:`Strategy` into the plain data of a version-1 document."""

    def __init__(self, strategy: Strategy) -> None:
        self.s = strategy
        self.pops = strategy.populations()
        self.paths = {pid: strategy.path(pid) for pid in self.pops}
        self.gates = {g.id: g for g in strategy.gates}
        self.terms = {
            g.id: strategy.notes[g.id][len(TERM_NOTE):] for g in strategy.gates
            if isinstance(g, BooleanGate) and strategy.notes.get(g.id, "").startswith(TERM_NOTE)
            and strategy.notes[g.id][len(TERM_NOTE):] in self.gates
        }
        self.visible = [p for p in self.pops if p not in self.terms]

    def fail(self, message: str, gate: str = "") -> NoReturn:
        raise StrategyFormatError(f"cannot be written in the phenoflow format: {message}",
                                  source=self.s.source, gate=gate)

    def compensation(self, comp: str) -> str:
        names = {v: k for k, v in COMPENSATION.items()}
        if comp in names:
            return names[comp]
        if comp in RESERVED:
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
            if letter in OPTIONAL_PARAMETERS and letter != "A" and value == defaults[attr]:
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
        quoted = quote_operand(text)
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
        if isinstance(g, RectangleGate | QuadrantGate) and g.inclusive != "min":
            out["inclusive"] = g.inclusive
        if g.id in self.s.notes:
            out["description"] = self.s.notes[g.id]
        return out

    def quadrant(self, g: QuadrantGate) -> dict[str, Any]:
        keys = self.dim_keys([d.dimension for d in g.dividers], g.id)
        key_of = {d.id: k for d, k in zip(g.dividers, keys, strict=True)}
        splits = {d.id: [float(v) for v in d.values] for d in g.dividers}
        # the interval holding each cell's position, under the gate's boundary convention
        locate = bisect.bisect_right if g.inclusive == "min" else bisect.bisect_left
        cells = {
            (q.name or q.id): {key_of[ref]: locate(splits[ref], loc) for ref, loc in q.positions}
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
        if self.s.channel_matching != "exact":
            doc["channel_matching"] = self.s.channel_matching
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
