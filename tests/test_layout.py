"""Package layout rules: no import cycle inside the package, no library file over ~400 lines, apps apart."""
import ast
import pathlib

ROOT = pathlib.Path(__file__).resolve().parent.parent
SOURCES = {"tokenprune": ROOT / "tokenprune", "tokenprune.integrations": ROOT / "integrations"}


def _modules() -> dict[str, pathlib.Path]:
    out = {}
    for pkg, base in SOURCES.items():
        for f in base.rglob("*.py"):
            parts = list(f.relative_to(base).with_suffix("").parts)
            if parts[-1] == "__init__":
                parts = parts[:-1]
            out[".".join([pkg] + parts)] = f
    return out


def _imports(name: str, path: pathlib.Path, modules: dict, is_pkg: bool) -> set[str]:
    found = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.ImportFrom):
            if node.level:
                base = name.split(".")[: len(name.split(".")) - node.level + (1 if is_pkg else 0)]
                target = ".".join(base + ([node.module] if node.module else []))
            else:
                target = node.module or ""
            for alias in node.names:
                full = f"{target}.{alias.name}"
                found.add(full if full in modules else target)
        elif isinstance(node, ast.Import):
            found.update(a.name for a in node.names)
    return {m for m in found if m in modules and m != name}


def _graph() -> dict[str, set[str]]:
    modules = _modules()
    return {m: _imports(m, p, modules, p.name == "__init__.py") for m, p in modules.items()}


def test_no_import_cycle():
    """Every import (module-level or inside a function) between package modules, package __init__ files excluded
    as targets (importing a subpackage runs its __init__, which only re-exports)."""
    graph = _graph()
    inits = {m for m, p in _modules().items() if p.name == "__init__.py"}
    edges = {m: {t for t in ts if t not in inits} for m, ts in graph.items() if m not in inits}
    state: dict[str, int] = {}
    stack: list[str] = []

    def visit(m: str) -> None:
        state[m] = 1
        stack.append(m)
        for t in sorted(edges.get(m, ())):
            assert state.get(t) != 1, "import cycle: " + " -> ".join(stack[stack.index(t):] + [t])
            if t not in state:
                visit(t)
        stack.pop()
        state[m] = 2

    for m in sorted(edges):
        if m not in state:
            visit(m)


def test_library_never_imports_apps_cli_or_fixtures():
    apps = ("tokenprune.apps", "tokenprune.cli", "tokenprune.testing")
    library = [m for m in _graph() if not m.startswith(apps + ("tokenprune.shapesvqa",))]
    graph = _graph()
    for m in library:
        bad = [t for t in graph[m] if t.startswith(apps)]
        assert not bad, f"{m} imports {bad}"


def test_files_stay_small():
    big = {str(p.relative_to(ROOT)): n for p in list((ROOT / "tokenprune").rglob("*.py")) + list(
        (ROOT / "integrations").rglob("*.py")) if (n := len(p.read_text().splitlines())) > 400}
    assert not big, big
