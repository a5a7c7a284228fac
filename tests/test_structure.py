"""The code's shape: no import cycles in ``src/verifriend`` (imports inside functions count),
and no operator named outside its module by an analysis."""

from __future__ import annotations

import ast
from pathlib import Path

SRC = Path(__file__).resolve().parents[1] / "src"
PKG = SRC / "verifriend"


def _module_name(path: Path) -> str:
    parts = list(path.relative_to(SRC).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def _imports(path: Path, modules: set[str]) -> set[str]:
    """The verifriend modules ``path`` imports, anywhere in the file (a ``from pkg import
    mod`` of a submodule counts as importing that submodule)."""
    tree = ast.parse(path.read_text(), str(path))
    me = _module_name(path)
    package = me if path.name == "__init__.py" else me.rpartition(".")[0]
    out: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            out.update(a.name for a in node.names if a.name in modules)
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                anchor = package.split(".")[: len(package.split(".")) - node.level + 1]
                base = ".".join(anchor + ([base] if base else []))
            if base in modules:
                out.add(base)
            out.update(f"{base}.{a.name}" for a in node.names if f"{base}.{a.name}" in modules)
    out.discard(me)
    return out


def import_graph() -> dict[str, set[str]]:
    files = {_module_name(p): p for p in PKG.rglob("*.py")}
    return {m: _imports(p, set(files)) for m, p in files.items()}


def find_cycle(graph: dict[str, set[str]]) -> list[str] | None:
    """One import cycle as a list of modules (first == last), or None. A package's
    ``__init__`` importing its own submodules is not a cycle by itself, so edges from a
    module to a package that contains it are left out."""
    def edges(m):
        return [d for d in graph[m] if not m.startswith(d + ".")]

    state: dict[str, int] = {}
    stack: list[str] = []

    def visit(m: str) -> list[str] | None:
        state[m] = 1
        stack.append(m)
        for d in sorted(edges(m)):
            if state.get(d) == 1:
                return stack[stack.index(d):] + [d]
            if d not in state:
                found = visit(d)
                if found:
                    return found
        stack.pop()
        state[m] = 2
        return None

    for m in sorted(graph):
        if m not in state:
            found = visit(m)
            if found:
                return found
    return None


def test_no_import_cycles():
    graph = import_graph()
    assert len(graph) > 50  # the walk found the package
    cycle = find_cycle(graph)
    assert cycle is None, "import cycle: " + " -> ".join(cycle)


def test_the_cycle_finder_finds_cycles():
    assert find_cycle({"a": {"b"}, "b": {"c"}, "c": {"a"}}) == ["a", "b", "c", "a"]
    assert find_cycle({"a": {"b"}, "b": set(), "c": {"a", "b"}}) is None
    # a package importing its submodule, which imports the package's sibling: no cycle
    assert find_cycle({"p": {"p.x"}, "p.x": {"p"}}) is None


def test_analyses_never_name_an_operator():
    """Only the operator modules, the frontends that build them, and the IR's own output
    map name node classes; every analysis reads the operators' rules and traits."""
    allowed = {"bounds/ops", "bounds/frontends", "bounds/graph.py", "bounds/patches.py"}
    names = {"LinearNode", "Conv2dNode", "AffineNode", "ReLUNode", "FlattenNode", "AddNode",
             "AvgPoolNode", "MaxPoolNode", "SigmoidNode", "TanhNode"}
    offenders = []
    for path in PKG.rglob("*.py"):
        rel = path.relative_to(PKG).as_posix()
        if any(rel.startswith(a) for a in allowed):
            continue
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.Name) and node.id in names:
                offenders.append(f"{rel}:{node.lineno} {node.id}")
    assert not offenders, offenders
