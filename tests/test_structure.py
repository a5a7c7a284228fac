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
    allowed = {"bounds/ops", "bounds/frontends", "bounds/graph.py"}
    from verifriend.bounds import ops

    names = {n for n in dir(ops) if n.endswith("Node") and n != "Node"}
    assert {"ReLUNode", "InputNode", "LeakyReLUNode", "PadNode"} <= names
    offenders = []
    for path in PKG.rglob("*.py"):
        rel = path.relative_to(PKG).as_posix()
        if any(rel.startswith(a) for a in allowed):
            continue
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.Name) and node.id in names:
                offenders.append(f"{rel}:{node.lineno} {node.id}")
    assert not offenders, offenders


MAX_FILE_LINES = 500
MAX_FUNCTION_LINES = 80


def test_modules_and_functions_stay_small():
    """No module under src/ over 500 lines, no function over 80 (docstring included)."""
    too_long = []
    for path in sorted(PKG.rglob("*.py")):
        text = path.read_text()
        lines = text.count("\n")
        if lines > MAX_FILE_LINES:
            too_long.append(f"{path.relative_to(SRC)}: {lines} lines")
        for node in ast.walk(ast.parse(text)):
            if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
                n = node.end_lineno - node.lineno + 1
                if n > MAX_FUNCTION_LINES:
                    too_long.append(f"{path.relative_to(SRC)}:{node.lineno} {node.name}: {n} lines")
    assert not too_long, "too long:\n" + "\n".join(too_long)


def test_the_readme_names_only_files_that_exist():
    """Every module or folder the README's layout section and paper -> module table name
    exists (paths relative to src/verifriend, or to the repository for top-level folders)."""
    import re

    root = SRC.parent
    text = (root / "README.md").read_text()
    layout = text[text.index("## Layout"):]
    named = set(re.findall(r"`([a-z_]+/(?:[a-z_]+/)*(?:[a-z_]+\.py)?)`", layout))
    named |= set(re.findall(r"^\s+([a-z_]+(?:/|\.py))\s", layout, re.MULTILINE))
    def exists(n: str) -> bool:  # a bare file name is looked for under its section's folders
        return (PKG / n).exists() or (root / n).exists() or (
            "/" not in n.rstrip("/") and any(PKG.rglob(n.rstrip("/"))))

    missing = [n for n in sorted(named) if not exists(n)]
    assert len(named) > 20 and not missing, f"README names missing paths: {missing}"
