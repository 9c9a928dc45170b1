"""The tree's shape, checked with `ast` (nothing imported): no import circle between our modules,
imports inside functions only for optional heavy dependencies, no module over the size limit, and
the library never importing the command line."""
import ast
import pathlib

import pytest

REPO = pathlib.Path(__file__).resolve().parents[1]
# Folder -> package name as installed (tasks/ installs as t5x_sbs.tasks, see setup.py).
PACKAGES = {"t5x_sbs": "t5x_sbs", "tasks": "t5x_sbs.tasks"}
# Imported when used, so that `t5x-sbs --help` and the trainer do not pay for them.
LAZY_ALLOWED = {"torch", "transformers", "tensorflow_datasets", "tensorstore", "apache_beam"}
MAX_LINES = 400


def modules() -> dict[str, pathlib.Path]:
    found = {}
    for folder, package in PACKAGES.items():
        for path in sorted((REPO / folder).rglob("*.py")):
            parts = list(path.relative_to(REPO / folder).with_suffix("").parts)
            if parts[-1] == "__init__":
                parts = parts[:-1]
            found[".".join([package, *parts])] = path
    return found


MODULES = modules()


def _resolve(name: str) -> str | None:
    """The longest module of ours that `name` (a module or module.attribute) is in."""
    while name and name not in MODULES:
        name = name.rpartition(".")[0]
    return name or None


def _targets(node: ast.AST, module: str) -> list[str]:
    if isinstance(node, ast.Import):
        return [a.name for a in node.names]
    if isinstance(node, ast.ImportFrom):
        base = node.module or ""
        if node.level:
            package = module if MODULES[module].name == "__init__.py" else module.rpartition(".")[0]
            for _ in range(node.level - 1):
                package = package.rpartition(".")[0]
            base = f"{package}.{base}" if base else package
        return [f"{base}.{a.name}" for a in node.names] + [base]
    return []


def _imports(module: str) -> tuple[set[str], list[tuple[int, str]]]:
    """(our modules it imports anywhere, [(line, name)] of imports inside functions)."""
    tree = ast.parse(MODULES[module].read_text())
    ours, inner = set(), []
    functions = [n for n in ast.walk(tree) if isinstance(n, (ast.FunctionDef, ast.AsyncFunctionDef))]
    inside = {id(sub) for f in functions for sub in ast.walk(f) if isinstance(sub, (ast.Import, ast.ImportFrom))}
    for node in ast.walk(tree):
        names = _targets(node, module)
        if id(node) in inside and names:
            inner.append((node.lineno, names[-1] if isinstance(node, ast.ImportFrom) else names[0]))
        for name in names:
            target = _resolve(name) if name.split(".")[0] == "t5x_sbs" else None
            if target and target != module and not module.startswith(target + "."):
                ours.add(target)
    return ours, inner


GRAPH = {m: _imports(m) for m in MODULES}


def _cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """Strongly connected components with more than one module (Tarjan)."""
    index, low, stack, on_stack, found = {}, {}, [], set(), []

    def visit(v):
        index[v] = low[v] = len(index)
        stack.append(v)
        on_stack.add(v)
        for w in graph[v]:
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on_stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            component = []
            while True:
                w = stack.pop()
                on_stack.discard(w)
                component.append(w)
                if w == v:
                    break
            if len(component) > 1:
                found.append(sorted(component))

    for v in graph:
        if v not in index:
            visit(v)
    return found


def test_the_checker_sees_a_circle():
    assert _cycles({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}) == [["a", "b", "c"]]
    assert _cycles({"a": {"b"}, "b": set()}) == []


def test_no_import_circle():
    assert _cycles({m: ours for m, (ours, _) in GRAPH.items()}) == []


def test_imports_inside_functions_only_for_optional_heavy_dependencies():
    offenders = [f"{MODULES[m].relative_to(REPO)}:{line} imports {name}"
                 for m, (_, inner) in GRAPH.items() for line, name in inner
                 if name.split(".")[0] not in LAZY_ALLOWED]
    assert offenders == []


def test_the_library_never_imports_the_command_line():
    offenders = [m for m, (ours, _) in GRAPH.items()
                 if not m.startswith("t5x_sbs.cli") and any(t.startswith("t5x_sbs.cli") for t in ours)]
    assert offenders == []


@pytest.mark.parametrize("module", sorted(MODULES))
def test_module_size(module):
    lines = len(MODULES[module].read_text().splitlines())
    assert lines <= MAX_LINES, f"{MODULES[module].relative_to(REPO)}: {lines} lines (limit {MAX_LINES})"
