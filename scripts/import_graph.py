"""The import graph of the package: which of our modules imports which, and whether any of
them import each other in a circle.

Every import counts, wherever it is written: at the top, inside a function (a lazy import
hides a cycle from Python, not from a reader), under ``TYPE_CHECKING``. Importing
``a.b.c`` is an edge to ``a.b.c`` only, not to the packages above it.

    python scripts/import_graph.py            # every cycle, exit 1 if there is one
    python scripts/import_graph.py --edges    # the graph, one "module -> module" a line
"""

from __future__ import annotations

import argparse
import ast
import sys
from collections.abc import Iterator
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
PACKAGES = ("exporter", "drivers")


def modules(root: Path = ROOT) -> dict[str, Path]:
    """Dotted name -> file, for every module of our packages."""
    found: dict[str, Path] = {}
    for package in PACKAGES:
        for path in sorted((root / package).rglob("*.py")):
            parts = list(path.relative_to(root).with_suffix("").parts)
            if parts[-1] == "__init__":
                parts.pop()
            found[".".join(parts)] = path
    return found


def _imported(node: ast.AST, module: str, is_package: bool) -> Iterator[str]:
    """The dotted names one import statement names (``from a import b`` gives ``a.b`` too,
    for when ``b`` is a module)."""
    if isinstance(node, ast.Import):
        for alias in node.names:
            yield alias.name
    elif isinstance(node, ast.ImportFrom):
        base = node.module or ""
        if node.level:
            parent = module.split(".")
            keep = len(parent) - node.level + (1 if is_package else 0)
            base = ".".join(parent[:keep] + ([base] if base else []))
        yield base
        for alias in node.names:
            yield f"{base}.{alias.name}"


def edges(root: Path = ROOT) -> dict[str, set[str]]:
    """Module -> the modules of ours it imports."""
    known = modules(root)
    graph: dict[str, set[str]] = {name: set() for name in known}
    for name, path in known.items():
        tree = ast.parse(path.read_text(encoding="utf-8"), str(path))
        for node in ast.walk(tree):
            for target in _imported(node, name, path.name == "__init__.py"):
                if target in known and target != name:
                    graph[name].add(target)
    # ``from a import b`` names ``a`` as well as ``a.b``: where ``a.b`` is a module, the
    # edge to ``a`` is only the package it lives in, so keep the module alone.
    for name, path in known.items():
        tree = ast.parse(path.read_text(encoding="utf-8"), str(path))
        for node in ast.walk(tree):
            if isinstance(node, ast.ImportFrom) and node.module in known:
                names = {f"{node.module}.{alias.name}" for alias in node.names}
                if names <= set(known):
                    graph[name].discard(node.module)
    return graph


def cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """The strongly connected components of more than one module (Tarjan), each sorted."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    found: list[list[str]] = []

    def visit(node: str) -> None:
        index[node] = low[node] = len(index)
        stack.append(node)
        on_stack.add(node)
        for target in sorted(graph[node]):
            if target not in index:
                visit(target)
                low[node] = min(low[node], low[target])
            elif target in on_stack:
                low[node] = min(low[node], index[target])
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

    sys.setrecursionlimit(max(sys.getrecursionlimit(), 10 * len(graph)))
    for node in sorted(graph):
        if node not in index:
            visit(node)
    return sorted(found)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--edges", action="store_true", help="print the graph")
    args = parser.parse_args()
    graph = edges()
    if args.edges:
        for name in sorted(graph):
            for target in sorted(graph[name]):
                print(f"{name} -> {target}")
    found = cycles(graph)
    for component in found:
        print("cycle: " + " <-> ".join(component))
    print(f"{len(graph)} modules, {sum(map(len, graph.values()))} imports, {len(found)} cycles")
    return 1 if found else 0


if __name__ == "__main__":
    sys.exit(main())
