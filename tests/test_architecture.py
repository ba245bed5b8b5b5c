"""The layer rule, checked by walking every import of the code base (module level and inside
functions): see the README's "Development" section.

- ``engine.runtime`` (the runtime layer) imports nothing of phenoflow outside itself;
- ``gating`` and ``expression`` use only ``engine.runtime`` of ``engine``, and not each other;
- no module imports a private module (``_name``) of a package it is not inside;
- no module imports an underscore name from another module (private modules talk through their
  non-underscore names; a package may import its own private sub-modules);
- no import cycle between modules.
"""

from __future__ import annotations

import ast
from dataclasses import dataclass
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
PACKAGES = ("engine", "gating", "expression")
CHECKED = (*PACKAGES, "benchmarks")
RUNTIME = "engine.runtime"


@dataclass(frozen=True)
class Import:
    importer: str  # module doing the import
    target: str  # module imported (resolved to a module when the name is a sub-module)
    name: str | None  # the name taken from it (``from target import name``), or None
    line: int


def _module_name(path: Path) -> str:
    parts = list(path.relative_to(REPO).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def _modules() -> dict[str, Path]:
    found = {}
    for top in CHECKED:
        for path in sorted((REPO / top).rglob("*.py")):
            found[_module_name(path)] = path
    return found


MODULES = _modules()


def _is_package(module: str) -> bool:
    return MODULES.get(module, Path()).name == "__init__.py"


def _imports(module: str, path: Path) -> list[Import]:
    tree = ast.parse(path.read_text(encoding="utf-8"), filename=str(path))
    package = module if _is_package(module) else module.rpartition(".")[0]
    found: list[Import] = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            found += [Import(module, a.name, None, node.lineno) for a in node.names
                      if a.name.split(".")[0] in CHECKED]
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.split(".")
                base = base[: len(base) - node.level + 1]
                target = ".".join([*base, *([node.module] if node.module else [])])
            else:
                target = node.module or ""
            if target.split(".")[0] not in CHECKED:
                continue
            for alias in node.names:
                sub = f"{target}.{alias.name}"
                if sub in MODULES:  # ``from package import module``
                    found.append(Import(module, sub, None, node.lineno))
                else:
                    found.append(Import(module, target, alias.name, node.lineno))
    return found


IMPORTS = [imp for module, path in MODULES.items() for imp in _imports(module, path)]


def _where(imp: Import) -> str:
    what = f"{imp.target}:{imp.name}" if imp.name else imp.target
    return f"{MODULES[imp.importer].relative_to(REPO)}:{imp.line} imports {what}"


def _inside(module: str, package: str) -> bool:
    return module == package or module.startswith(package + ".")


def test_the_walk_sees_the_code_base():
    # guards the test itself: an empty walk would pass every rule below
    assert len(MODULES) > 80
    assert any(i.importer.startswith("gating.") and i.target == RUNTIME for i in IMPORTS)


def test_runtime_layer_imports_nothing_of_phenoflow():
    bad = [_where(i) for i in IMPORTS
           if _inside(i.importer, RUNTIME) and not _inside(i.target, RUNTIME)]
    assert not bad, "\n".join(bad)


@pytest.mark.parametrize("package", ["gating", "expression"])
def test_domain_packages_use_only_the_runtime_layer(package):
    others = [p for p in PACKAGES if p != package]
    bad = [_where(i) for i in IMPORTS if _inside(i.importer, package)
           and any(_inside(i.target, o) for o in others) and not _inside(i.target, RUNTIME)]
    assert not bad, "\n".join(bad)


def test_no_module_imports_another_packages_private_module():
    bad = []
    for imp in IMPORTS:
        package = imp.importer if _is_package(imp.importer) else imp.importer.rpartition(".")[0]
        parts = imp.target.split(".")
        for i, part in enumerate(parts):
            if part.startswith("_") and not part.startswith("__"):
                owner = ".".join(parts[:i])
                if not _inside(package, owner):
                    bad.append(_where(imp))
                    break
    assert not bad, "\n".join(bad)


def test_no_underscore_names_imported_across_modules():
    bad = [_where(i) for i in IMPORTS
           if i.name is not None and i.name.startswith("_") and not i.name.startswith("__")]
    assert not bad, "\n".join(bad)


def test_no_import_cycles():
    graph: dict[str, set[str]] = {m: set() for m in MODULES}
    for imp in IMPORTS:
        if imp.target in MODULES and imp.target != imp.importer:
            graph[imp.importer].add(imp.target)
    # Tarjan's strongly connected components, iteratively
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    on_stack: set[str] = set()
    stack: list[str] = []
    cycles: list[list[str]] = []
    counter = 0
    for root in graph:
        if root in index:
            continue
        work = [(root, iter(sorted(graph[root])))]
        index[root] = low[root] = counter
        counter += 1
        stack.append(root)
        on_stack.add(root)
        while work:
            node, children = work[-1]
            child = next(children, None)
            if child is not None:
                if child not in index:
                    index[child] = low[child] = counter
                    counter += 1
                    stack.append(child)
                    on_stack.add(child)
                    work.append((child, iter(sorted(graph[child]))))
                elif child in on_stack:
                    low[node] = min(low[node], index[child])
                continue
            work.pop()
            if work:
                low[work[-1][0]] = min(low[work[-1][0]], low[node])
            if low[node] == index[node]:
                component = []
                while True:
                    member = stack.pop()
                    on_stack.discard(member)
                    component.append(member)
                    if member == node:
                        break
                if len(component) > 1:
                    cycles.append(sorted(component))
    assert not cycles, "\n".join(" <-> ".join(c) for c in cycles)


def test_gating_shows_its_rooms():
    entries = [p for p in (REPO / "gating").iterdir() if p.name != "__pycache__"]
    assert len(entries) <= 16, sorted(p.name for p in entries)


def test_public_namespaces_export_only_public_names():
    import importlib

    for package in (*PACKAGES, RUNTIME, "engine.cli", "engine.demo"):
        module = importlib.import_module(package)
        exported = list(getattr(module, "__all__", []))
        assert exported, f"{package} has no __all__"
        assert not [n for n in exported if n.startswith("_") and not n.startswith("__")], package
        for name in exported:  # every exported name resolves (lazy namespaces included)
            assert getattr(module, name) is not None or name == "__version__", (package, name)
