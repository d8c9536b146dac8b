"""The package's import graph: one way down the layers, no circle (docs/ARCHITECTURE.md). Imports
inside functions count too; `if TYPE_CHECKING:` imports do not."""

from __future__ import annotations

import ast
from collections import defaultdict
from pathlib import Path

PACKAGE = Path(__file__).resolve().parent.parent / "onnxprune"
# Top to bottom; a module may import its own layer (without a circle) and the layers below.
LAYERS = [
    {"__main__"},
    {"cli"},
    {"api", "validation"},
    {"strategies", "sensitivity"},
    {"passes"},
    {"latency", "importance", "repair", "quantize", "finetune"},
    {"report", "cost", "analysis", "runtime"},
    {"graph"},
    {"config", "alignment", "shapes", "io", "progress", "memo"},
    {"errors"},
]


def _modules() -> dict[str, Path]:
    out = {}
    for path in PACKAGE.rglob("*.py"):
        parts = path.relative_to(PACKAGE.parent).with_suffix("").parts
        out[".".join(parts[:-1] if parts[-1] == "__init__" else parts)] = path
    return out


def import_graph() -> dict[str, set[str]]:
    """module -> the package's modules it imports (a name imported from a package counts as the
    module of that name where there is one, else as the package)."""
    modules = _modules()
    edges: dict[str, set[str]] = defaultdict(set)
    for name, path in modules.items():
        tree = ast.parse(path.read_text())
        package = name if path.name == "__init__.py" else name.rpartition(".")[0]
        skipped = {id(n) for node in ast.walk(tree) if isinstance(node, ast.If)
                   and getattr(node.test, "id", None) == "TYPE_CHECKING" for n in ast.walk(node)}
        for node in ast.walk(tree):
            if id(node) in skipped:
                continue
            if isinstance(node, ast.ImportFrom):
                if node.level:
                    base = package.split(".")[:len(package.split(".")) - node.level + 1]
                    target = ".".join(base + ([node.module] if node.module else []))
                elif (node.module or "").startswith("onnxprune"):
                    target = node.module
                else:
                    continue
                for alias in node.names:
                    sub = f"{target}.{alias.name}"
                    edges[name].add(sub if sub in modules else target)
            elif isinstance(node, ast.Import):
                edges[name].update(a.name for a in node.names if a.name.startswith("onnxprune."))
    # A submodule reading its own package (a registry: analysis/rules' `register`) is no circle.
    return {m: {t for t in ts if t in modules and t != m and not m.startswith(t + ".")} for m, ts in edges.items()}


def layer(module: str) -> int | None:
    top = module.split(".")[1] if "." in module else None
    return next((i for i, names in enumerate(LAYERS) if top in names), None)


def test_every_module_has_a_layer():
    assert [m for m in _modules() if m != "onnxprune" and layer(m) is None] == []


def test_no_import_runs_up_the_layers():
    upward = sorted(f"{m} -> {t}" for m, ts in import_graph().items() if m != "onnxprune"
                    for t in ts if layer(t) < layer(m))
    assert upward == []


def test_no_circle():
    graph = import_graph()
    index, low, stack, on, cycles = {}, {}, [], set(), []

    def visit(v):  # Tarjan's strongly connected components
        index[v] = low[v] = len(index)
        stack.append(v)
        on.add(v)
        for w in graph.get(v, ()):
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            comp = []
            while True:
                w = stack.pop()
                on.discard(w)
                comp.append(w)
                if w == v:
                    break
            if len(comp) > 1:
                cycles.append(sorted(comp))

    for v in sorted(graph):
        if v not in index:
            visit(v)
    assert cycles == []
