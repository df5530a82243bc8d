"""The shape of the package, kept: no import cycle (lazy imports included), few top-level
modules, no long function, and the catalog's document parsers never loaded at run time."""

from __future__ import annotations

import ast
import importlib.util
import subprocess
import sys
from pathlib import Path
from types import ModuleType

from tests.support import REPO

ROOT = REPO
TOP_LEVEL_MODULES_MAX = 8
FUNCTION_LINES_MAX = 100
# The hot-path formatter factories build their closures in one place on purpose.
LONG_ON_PURPOSE = {"make_json_formatter", "make_tabtext_formatter"}


def _import_graph() -> ModuleType:
    spec = importlib.util.spec_from_file_location("import_graph", ROOT / "scripts/import_graph.py")
    assert spec is not None
    assert spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_no_module_imports_itself_through_others() -> None:
    graph = _import_graph()
    edges = graph.edges()
    assert "exporter.catalog.tree" in edges["exporter.event"]  # the graph sees lazy imports too
    assert graph.cycles(edges) == []


def test_the_cycle_check_finds_a_cycle_hidden_in_a_function(tmp_path: Path) -> None:
    graph = _import_graph()
    for name, text in {
        "exporter/__init__.py": "",
        "exporter/a.py": "import exporter.b\n",
        "exporter/b.py": "def f() -> None:\n    from exporter import a\n",
        "drivers/__init__.py": "",
    }.items():
        (tmp_path / name).parent.mkdir(exist_ok=True)
        (tmp_path / name).write_text(text)
    assert graph.cycles(graph.edges(tmp_path)) == [["exporter.a", "exporter.b"]]


def test_the_package_has_a_few_top_level_modules_and_a_folder_per_stage() -> None:
    top = sorted(path.name for path in (ROOT / "exporter").glob("*.py"))
    assert len(top) <= TOP_LEVEL_MODULES_MAX, top
    for stage in ("sources", "formats", "filter", "delivery", "config", "catalog", "observe"):
        assert (ROOT / "exporter" / stage / "__init__.py").is_file(), stage


def test_no_function_is_longer_than_a_hundred_lines() -> None:
    long = []
    for path in sorted([*ROOT.glob("exporter/**/*.py"), *ROOT.glob("drivers/*.py")]):
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef):
                assert node.end_lineno is not None
                lines = node.end_lineno - node.lineno + 1
                if lines > FUNCTION_LINES_MAX and node.name not in LONG_ON_PURPOSE:
                    long.append(f"{path.relative_to(ROOT)}:{node.lineno} {node.name}: {lines}")
    assert long == []


def test_the_document_parsers_are_not_loaded_to_run_or_check() -> None:
    probe = (
        "import sys, exporter.cli, exporter.cli.run, exporter.catalog.lint;"
        "exporter.cli.build_parser();"
        "print(sorted(m for m in sys.modules if m.startswith('exporter.catalog.build')))"
    )
    out = subprocess.run(
        [sys.executable, "-c", probe], capture_output=True, text=True, check=True, timeout=60
    ).stdout
    assert out.strip() == "[]"
