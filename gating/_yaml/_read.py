"""The strategy-format reader: a loaded document (plain data) to a :class:`Strategy`.

:class:`Reader` reads the top level (version, name, description, compensation, matrices,
transforms, dimensions), has :class:`~gating._yaml._syntax._SyntaxReader` check the gate
entries, then resolves parents (in any order) and Boolean references and builds the gates.
"""

from __future__ import annotations

import difflib
from collections import defaultdict
from typing import Any

from gating._strategy import (
    BooleanGate,
    Dimension,
    Gate,
    Matrix,
    Quadrant,
    QuadrantGate,
    Ratio,
    Strategy,
    StrategyError,
)
from gating._transforms import Transform
from gating._yaml._format import (
    COMPENSATION,
    OPTIONAL_PARAMETERS,
    RESERVED,
    TERM_NOTE,
    TOP_KEYS,
    TRANSFORMS,
    VERSION,
    StrategyFormatError,
)
from gating._yaml._syntax import Entry, SyntaxReader

__all__ = ["Reader"]


def _child(parent_id: str | None, name: str) -> str:
    return f"{parent_id or ''}/{name}"


class Reader(SyntaxReader):
    """Parses one document; ``fail`` raises with the current gate and a field."""

    # ---- top level -----------------------------------------------------------------------
    def strategy(self, data: Any) -> Strategy:
        if not isinstance(data, dict) or "phenoflow-strategy" not in data:
            self.fail("not a phenoflow strategy: it must be a mapping starting with "
                      "'phenoflow-strategy: 1'")
        top = self.mapping(data, "", TOP_KEYS)
        version = top["phenoflow-strategy"]
        if isinstance(version, bool) or version != VERSION:
            self.fail(f"unsupported format version {version!r}; this phenoflow reads version "
                      f"{VERSION}", "phenoflow-strategy")
        matching = top.get("channel_matching", "exact")
        if matching not in ("exact", "flowjo"):
            self.fail(f"expected 'exact' or 'flowjo' (workspace names with '/' written as '_'), "
                      f"got {matching!r}", "channel_matching")
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
                            matrices=self.matrices, name=name, source=self.source, notes=notes,
                            channel_matching=matching)
        except StrategyFormatError:
            raise
        except StrategyError as exc:
            owner = self.owners.get(exc.gate)
            self.index, self.gate = owner if owner else (None, exc.gate)
            self.fail(exc.detail)

    def compensation(self, value: Any, field: str) -> str:
        if value in COMPENSATION:
            return COMPENSATION[value]
        if isinstance(value, str) and value in self.matrices:
            return value
        self.fail(f"unknown compensation {value!r}; use none, spillover or a matrix name "
                  f"({', '.join(self.matrices) or 'no matrices defined'})", field)

    def read_matrices(self, value: Any) -> dict[str, Matrix]:
        out = {}
        for key, spec in self.mapping(value, "matrices", optional=True).items():
            field = f"matrices.{key}"
            if key in RESERVED:
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
            if kind not in TRANSFORMS:
                self.fail(f"unknown transform type {kind!r}; known: {', '.join(TRANSFORMS)}",
                          f"{field}.type")
            cls, letters = TRANSFORMS[kind]
            self.mapping(spec, field, ("type", *letters, "bound_min", "bound_max"),
                         tuple(k for k in letters if k not in OPTIONAL_PARAMETERS))
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

    # ---- gates: references and construction ----------------------------------------------
    def build(self, entries: list[Entry], notes: dict[str, str]) -> tuple[list[Gate],
                                                                         dict[str, str]]:
        by_name: dict[str, list[Entry]] = defaultdict(list)
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

    def resolve_parent(self, e: Entry, by_name: dict[str, list[Entry]], done: set[int],
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

    def gate_of(self, e: Entry, gid: str, notes: dict[str, str],
                taken: dict[tuple[str | None, str], int]) -> list[Gate]:
        spec = dict(e.spec)
        kind = spec.pop("kind")
        common = {"parent": e.parent_id, "name": e.name}
        if kind is QuadrantGate:
            quads = tuple(Quadrant(_child(e.parent_id, c), pos, c) for c, pos in spec["cells"])
            return [QuadrantGate(gid, spec["dividers"], quads, **common,
                                 inclusive=spec.get("inclusive", "min"))]
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
                notes[term_id] = TERM_NOTE + gid
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
