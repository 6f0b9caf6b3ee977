"""The frontend's modules import each other in layers: no cycle among module-level imports.

Function-local imports are not counted (they run on call, after every module has loaded);
they are the documented exceptions, e.g. Tensor(data) calling creation.tensor().
"""
from __future__ import annotations

import ast
from pathlib import Path

import kiln.frontend

FRONTEND = Path(kiln.frontend.__file__).parent
PACKAGE = "kiln.frontend"


def _module_name(path: Path) -> str:
    parts = list(path.relative_to(FRONTEND).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join([PACKAGE] + parts)


def _module_level_imports(tree: ast.Module):
    """Import statements run at import time: the module body, and `if`/`try` blocks in it."""
    todo = list(tree.body)
    while todo:
        node = todo.pop(0)
        if isinstance(node, (ast.Import, ast.ImportFrom)):
            yield node
        elif isinstance(node, (ast.If, ast.Try)):
            todo.extend(ast.iter_child_nodes(node))


def import_graph() -> dict[str, set[str]]:
    """kiln.frontend module -> the kiln.frontend modules its module-level imports load."""
    modules = {_module_name(p): p for p in FRONTEND.rglob("*.py")}
    graph: dict[str, set[str]] = {m: set() for m in modules}
    for name, path in modules.items():
        is_package = path.name == "__init__.py"
        here = name.split(".") if is_package else name.split(".")[:-1]
        for node in _module_level_imports(ast.parse(path.read_text(), str(path))):
            if isinstance(node, ast.Import):
                targets = [a.name for a in node.names]
            else:
                base = here[:len(here) - node.level + 1] if node.level else []
                mod = ".".join(base + ([node.module] if node.module else []))
                # `from pkg import name` loads pkg, and pkg.name when that is a module
                targets = [mod] + [f"{mod}.{a.name}" for a in node.names if f"{mod}.{a.name}" in modules]
            for target in targets:
                # importing a.b.c first runs the __init__ of every package above it
                parts = target.split(".")
                for k in range(len(parts), 1, -1):
                    t = ".".join(parts[:k])
                    inside = name == t or name.startswith(t + ".")  # a package's own modules don't re-enter it
                    if t in modules and t != name and not inside:
                        graph[name].add(t)
    return graph


def find_cycle(graph: dict[str, set[str]]) -> list[str] | None:
    """One cycle of `graph` as [a, b, ..., a], or None."""
    state: dict[str, int] = {}  # 1: on the current path, 2: finished
    path: list[str] = []

    def visit(n: str) -> list[str] | None:
        state[n] = 1
        path.append(n)
        for m in sorted(graph.get(n, ())):
            if state.get(m) == 1:
                return path[path.index(m):] + [m]
            if m not in state:
                found = visit(m)
                if found:
                    return found
        path.pop()
        state[n] = 2
        return None

    for n in sorted(graph):
        if n not in state:
            found = visit(n)
            if found:
                return found
    return None


def test_find_cycle_reports_a_cycle():
    assert find_cycle({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}) == ["a", "b", "c", "a"]
    assert find_cycle({"a": {"b"}, "b": set(), "c": {"a", "b"}}) is None


def test_import_graph_sees_the_layers():
    g = import_graph()
    assert "kiln.frontend.tensor" in g["kiln.frontend.operands"]
    assert "kiln.frontend.ops.shape" in g["kiln.frontend.ops.reductions"]
    assert "kiln.frontend.ops" in g["kiln.frontend.methods"]
    assert "kiln.frontend.ops" not in g["kiln.frontend.ops.shape"]  # a package's own modules don't re-enter it


def test_frontend_module_level_imports_have_no_cycle():
    cycle = find_cycle(import_graph())
    assert cycle is None, "import cycle among kiln.frontend modules: " + " -> ".join(cycle)
