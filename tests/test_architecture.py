"""The architecture of docs/architecture.md, checked: imports point one way, from the CLI down to the
foundations, and no module imports (even lazily, inside a function) one that imports it back."""

from __future__ import annotations

import ast
from pathlib import Path

import networkx as nx

ROOT = Path(__file__).resolve().parents[1]
SOURCES = {"optkit": ROOT / "optkit", "optkit.passes": ROOT / "passes",
           "optkit.reference_models": ROOT / "reference_models"}

# Each layer may import the layers after it, never one before it.
LAYERS = ["cli", "api", "harness", "reference_models", "backend", "passes", "pass_infra", "graph", "core"]


def module_files() -> dict[str, Path]:
    modules = {}
    for package, folder in SOURCES.items():
        for path in folder.rglob("*.py"):
            parts = path.relative_to(folder).with_suffix("").parts
            if parts[-1] == "__init__":
                parts = parts[:-1]
            name = ".".join((package, *parts))
            if package == "optkit" and parts and parts[0] in ("passes", "reference_models"):
                continue
            modules[name] = path
    return modules


def imports(name: str, path: Path, known: set[str]) -> set[str]:
    """Every optkit module `name` imports, at the top or inside a function."""
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    found = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            candidates = [a.name for a in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                anchor = package.split(".")[: len(package.split(".")) - node.level + 1]
                base = ".".join([*anchor, *([base] if base else [])])
            candidates = [base, *(f"{base}.{a.name}" for a in node.names)]
        else:
            continue
        found |= {c for c in candidates if c in known and c != name}
    return found


def import_graph() -> nx.DiGraph:
    modules = module_files()
    graph = nx.DiGraph()
    graph.add_nodes_from(modules)
    for name, path in modules.items():
        graph.add_edges_from((name, dep) for dep in imports(name, path, set(modules)))
    return graph


def layer(module: str) -> str:
    parts = module.split(".")
    return parts[1] if len(parts) > 1 else "api"    # optkit/__init__.py sits with the API


def test_no_module_imports_one_that_imports_it_back():
    graph = import_graph()
    # A package's __init__ re-exporting its own modules is not a cycle a reader has to untangle.
    graph.remove_edges_from([(a, b) for a, b in list(graph.edges) if b.startswith(a + ".")])
    cycles = list(nx.simple_cycles(graph))
    assert not cycles, f"import cycles: {cycles[:5]}"


def test_imports_point_down_the_layers():
    graph = import_graph()
    upward = [(a, b) for a, b in graph.edges
              if layer(a) in LAYERS and layer(b) in LAYERS and LAYERS.index(layer(b)) < LAYERS.index(layer(a))]
    assert not upward, "imports against the layering (docs/architecture.md): " + ", ".join(
        f"{a} -> {b}" for a, b in upward)


def test_every_subpackage_says_what_lives_there():
    for folder in [p.parent for p in (ROOT / "optkit").rglob("__init__.py") if p.parent != ROOT / "optkit"]:
        doc = ast.get_docstring(ast.parse((folder / "__init__.py").read_text()))
        assert doc and "May import" in doc, f"{folder}/__init__.py needs a docstring saying what it may import"


def test_the_checker_sees_lazy_imports_and_cycles(tmp_path):
    """The checks above could pass by seeing nothing; they must see an import inside a function."""
    path = tmp_path / "m.py"
    path.write_text("def f():\n    from optkit.harness.gate import run_check\n")
    assert imports("optkit.graph.stats", path, {"optkit.harness.gate"}) == {"optkit.harness.gate"}
    graph = import_graph()
    assert ("optkit.backend.tuning", "optkit.backend.compiler") in graph.edges
    assert len(graph) > 60
