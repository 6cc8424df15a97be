"""The layering rules of issue 9, checked by reading the source with `ast` (nothing is imported).

Every `import` counts, wherever it stands (module level, inside a function, under TYPE_CHECKING): a
lazy import still ties the two modules together. The rules:
- no import cycles between aonode's modules;
- the engine never imports `modules/` or `server/` (the catalogue reaches the Node as a resolver);
- `server/` never imports `engine.store` or `engine.wasm` (the Node is its only door);
- devices exchange data through the typed per-slot context, not a `scratch` dict;
- no .py file in engine/ or server/ over 400 lines;
- no `Any` in the NodeAPI, the Node, its answer types, the Store protocol or the device contract;
- a test never imports another test module or conftest (shared code lives in tests/helpers/).
"""
from __future__ import annotations

import ast
import re
from dataclasses import dataclass
from functools import cache
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
PACKAGES = {"engine": "aonode.engine", "server": "aonode.server", "modules": "aonode.modules"}
MAX_LINES = 400


@dataclass(frozen=True)
class Source:
    name: str  # dotted module name, e.g. aonode.engine.wasm.runtime
    path: Path
    is_package: bool  # an __init__.py

    def rel(self) -> str:
        return str(self.path.relative_to(ROOT))


def sources() -> dict[str, Source]:
    found: dict[str, Source] = {}
    for folder, dotted in PACKAGES.items():
        for path in sorted((ROOT / folder).rglob("*.py")):
            parts = path.relative_to(ROOT / folder).with_suffix("").parts
            is_package = parts[-1] == "__init__"
            name = ".".join((dotted, *(parts[:-1] if is_package else parts)))
            found[name] = Source(name, path, is_package)
    return found


MODULES = sources()
MODULE_NAMES = set(MODULES)


@cache
def parsed(path: Path) -> ast.Module:
    return ast.parse(path.read_text(), filename=str(path))


def imported_names(source: Source) -> list[tuple[str, int]]:
    """Every module name `source` imports (absolute, relative resolved), with its line number."""
    tree = parsed(source.path)
    package = source.name if source.is_package else source.name.rpartition(".")[0]
    names: list[tuple[str, int]] = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            names += [(alias.name, node.lineno) for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.split(".")
                base = base[: len(base) - (node.level - 1)]
                module = ".".join([*base, node.module] if node.module else base)
            else:
                module = node.module or ""
            # `from pkg import sub` imports the submodule pkg.sub when there is one, else a name of pkg
            for alias in node.names:
                sub = f"{module}.{alias.name}"
                names.append((sub if sub in MODULE_NAMES else module, node.lineno))
    return names


def internal_edges(modules: dict[str, Source]) -> dict[str, dict[str, int]]:
    """module -> {imported aonode module: first line}, only names that are modules of this tree."""
    edges: dict[str, dict[str, int]] = {}
    for name, source in modules.items():
        targets: dict[str, int] = {}
        for imported, line in imported_names(source):
            if imported in modules and imported != name:
                targets.setdefault(imported, line)
        edges[name] = targets
    return edges


def cycles(edges: dict[str, dict[str, int]]) -> list[list[str]]:
    """Strongly connected components with more than one module (Tarjan, iterative)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    found: list[list[str]] = []
    counter = 0
    for root in sorted(edges):
        if root in index:
            continue
        work: list[tuple[str, list[str]]] = [(root, sorted(edges[root]))]
        index[root] = low[root] = counter
        counter += 1
        stack.append(root)
        on_stack.add(root)
        while work:
            node, pending = work[-1]
            if pending:
                nxt = pending.pop()
                if nxt not in index:
                    index[nxt] = low[nxt] = counter
                    counter += 1
                    stack.append(nxt)
                    on_stack.add(nxt)
                    work.append((nxt, sorted(edges[nxt])))
                elif nxt in on_stack:
                    low[node] = min(low[node], index[nxt])
                continue
            work.pop()
            if work:
                parent = work[-1][0]
                low[parent] = min(low[parent], low[node])
            if low[node] == index[node]:
                component = []
                while True:
                    member = stack.pop()
                    on_stack.discard(member)
                    component.append(member)
                    if member == node:
                        break
                if len(component) > 1:
                    found.append(sorted(component))
    return found


def forbidden_imports(modules: dict[str, Source], importer: str, banned: tuple[str, ...]) -> list[str]:
    bad: dict[tuple[str, int], str] = {}  # one finding per import statement
    for name, source in modules.items():
        if name != importer and not name.startswith(importer + "."):
            continue
        for imported, line in imported_names(source):
            if any(imported == b or imported.startswith(b + ".") for b in banned):
                bad.setdefault((source.rel(), line), imported)
    return [f"{rel}:{line} imports {imported}" for (rel, line), imported in sorted(bad.items())]




def test_the_walk_sees_the_tree() -> None:
    # guards the walk itself: a rule over no files would pass vacuously
    assert {"aonode.engine.node", "aonode.server.app", "aonode.modules.catalogue"} <= set(MODULES)
    edges = internal_edges(MODULES)
    assert "aonode.engine.message" in edges["aonode.engine.node"] or any(
        "aonode.engine" in target for target in edges["aonode.engine.node"])


def test_no_import_cycles() -> None:
    edges = internal_edges(MODULES)
    found = cycles(edges)
    detail = [" <-> ".join(c) + "\n    " + "\n    ".join(
        f"{a} -> {b} (line {edges[a][b]})" for a in c for b in c if b in edges[a]) for c in found]
    assert not found, "import cycles:\n" + "\n".join(detail)


def test_engine_imports_neither_modules_nor_server() -> None:
    bad = forbidden_imports(MODULES, "aonode.engine", ("aonode.modules", "aonode.server"))
    assert not bad, "the engine must not import the catalogue or the server:\n" + "\n".join(bad)


def test_server_reaches_store_and_wasm_only_through_the_node() -> None:
    bad = forbidden_imports(MODULES, "aonode.server", ("aonode.engine.store", "aonode.engine.wasm"))
    assert not bad, "server/ must go through the Node:\n" + "\n".join(bad)


def test_only_engine_wasm_imports_wasmtime() -> None:
    bad = [line for name in MODULES if not name.startswith("aonode.engine.wasm")
           for line in forbidden_imports({name: MODULES[name]}, name, ("wasmtime",))]
    assert not bad, "wasmtime belongs to engine/wasm (use its public surface):\n" + "\n".join(bad)


NODE_INTERNALS = {"store", "scheduler", "runtime"}


def test_server_never_reaches_into_the_node() -> None:
    """`node.store`, `node.scheduler`, `node.runtime` (on anything called node) stay engine-side."""
    bad = []
    for source in MODULES.values():
        if not source.name.startswith("aonode.server"):
            continue
        for node in ast.walk(parsed(source.path)):
            if isinstance(node, ast.Attribute) and node.attr in NODE_INTERNALS:
                owner = node.value
                owner_name = owner.id if isinstance(owner, ast.Name) else getattr(owner, "attr", "")
                if owner_name.endswith("node"):
                    bad.append(f"{source.rel()}:{node.lineno}: {ast.unparse(node)}")
    assert not bad, "server/ asks the Node (NodeAPI), not its internals:\n" + "\n".join(bad)


INTERFACES = ("server/api.py", "engine/node.py", "engine/answers.py", "engine/store/base.py",
              "engine/devices/base.py")


def test_no_any_at_the_seams() -> None:
    """The NodeAPI, the Node, its answers, the Store protocol and the device contract are fully typed."""
    bad = [f"{rel}:{node.lineno}" for rel in INTERFACES
           for node in ast.walk(parsed(ROOT / rel))
           if (isinstance(node, ast.Name) and node.id == "Any")
           or (isinstance(node, ast.Attribute) and node.attr == "Any")]
    assert not bad, "Any at an interface (name the type):\n" + "\n".join(bad)


SCRATCH = re.compile(r"scratch\[|scratch\.get\(")


def test_no_scratch_side_channel_in_the_engine() -> None:
    bad = [f"{s.rel()}:{n}: {line.strip()}" for s in MODULES.values() if s.name.startswith("aonode.engine.")
           for n, line in enumerate(s.path.read_text().splitlines(), 1) if SCRATCH.search(line)]
    assert not bad, "devices exchange data through the typed slot context, not scratch:\n" + "\n".join(bad)


def test_no_long_files_in_engine_or_server() -> None:
    long = [f"{s.rel()}: {n} lines" for s in MODULES.values()
            if s.name.startswith(("aonode.engine.", "aonode.server."))
            and (n := len(s.path.read_text().splitlines())) > MAX_LINES]
    assert not long, f"files over {MAX_LINES} lines (split them by what they do):\n" + "\n".join(long)


def test_tests_share_code_only_through_helpers() -> None:
    test_modules = {p.stem for p in (ROOT / "tests").glob("test_*.py")} | {"conftest"}
    bad = []
    for path in sorted((ROOT / "tests").rglob("*.py")):
        for node in ast.walk(ast.parse(path.read_text(), filename=str(path))):
            names = ([a.name for a in node.names] if isinstance(node, ast.Import)
                     else [node.module or ""] if isinstance(node, ast.ImportFrom) else [])
            for name in names:
                if name.removeprefix("tests.") in test_modules:
                    bad.append(f"{path.relative_to(ROOT)}:{node.lineno} imports {name}")
    assert not bad, "tests import shared code from tests/helpers/, not from other tests:\n" + "\n".join(bad)


@pytest.mark.parametrize(("edges", "expected"), [
    ({"a": {"b": 1}, "b": {"a": 1}, "c": {"a": 1}}, [["a", "b"]]),
    ({"a": {"b": 1}, "b": {"c": 1}, "c": {}}, []),
    ({"a": {"b": 1}, "b": {"c": 1}, "c": {"a": 1}, "d": {"d": 1}}, [["a", "b", "c"]]),
])
def test_cycle_finder(edges: dict[str, dict[str, int]], expected: list[list[str]]) -> None:
    assert cycles(edges) == expected
