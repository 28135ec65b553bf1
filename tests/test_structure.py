"""The package's shape: every import points down the layers, and no module imports one that imports it back.

Imports are read from the source (every ``import``/``from`` statement, inside functions too), not from what
Python happens to have loaded, so a lazy import that closes a circle is caught as well."""

import ast
from pathlib import Path

import raymeta

PACKAGE = Path(raymeta.__file__).resolve().parent

LAYERS = [
    ("raymeta", "raymeta.errors", "raymeta.io.files"),  # the core: no raymeta imports
    ("raymeta.config", "raymeta.io.progress"),
    ("raymeta.io",),  # files in and out: data, checkpoints, result tables
    ("raymeta.method",),  # the method: plain PyTorch
    ("raymeta.stages",),  # the pipeline's stages, each a function of a Config
    ("raymeta.drivers",),  # Ray Train, Ray Tune, the whole pipeline
    ("raymeta.cli", "raymeta.__main__"),  # the shell: parse and dispatch
]


def module_name(path: Path) -> str:
    parts = ["raymeta", *path.relative_to(PACKAGE).with_suffix("").parts]
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def imports_of(path: Path, modules: set[str]) -> set[str]:
    """The raymeta modules that ``path`` imports anywhere in its source."""
    found = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            names = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            names = [node.module] + [f"{node.module}.{alias.name}" for alias in node.names]
        else:
            continue
        found |= {name for name in names if name in modules}
    return found


def import_graph() -> dict[str, set[str]]:
    paths = {module_name(path): path for path in PACKAGE.rglob("*.py")}
    modules = set(paths)
    graph = {}
    for name, path in paths.items():
        targets = imports_of(path, modules) - {name}
        # importing raymeta.io.files runs raymeta/io/__init__.py too: only a package's own code counts, and the
        # package modules here hold docstrings only (checked below)
        graph[name] = {t for t in targets if not (paths[t].name == "__init__.py" and t != "raymeta")}
    return graph


def layer(name: str) -> int:
    """A module's layer: an exact entry of LAYERS first, then the package it is in."""
    for index, entries in enumerate(LAYERS):
        if name in entries:
            return index
    for index, entries in enumerate(LAYERS):
        if any(name.startswith(entry + ".") for entry in entries if entry != "raymeta"):
            return index
    raise AssertionError(f"{name} is in no layer of tests/test_structure.py: place it")


def test_every_module_has_a_layer_and_imports_only_below_or_beside_it():
    graph = import_graph()
    upward = [f"{source} ({layer(source)}) imports {target} ({layer(target)})"
              for source, targets in graph.items() for target in targets if layer(target) > layer(source)]
    assert not upward, "imports pointing up the layers:\n" + "\n".join(sorted(upward))


def test_no_module_imports_one_that_imports_it_back():
    graph = import_graph()
    circles, state = [], {}

    def visit(node: str, trail: list[str]) -> None:
        state[node] = "open"
        for target in sorted(graph[node]):
            if state.get(target) == "open":
                circles.append(" → ".join(trail[trail.index(target):] + [node, target]) if target in trail
                               else f"{node} → {target}")
            elif target not in state:
                visit(target, trail + [node])
        state[node] = "done"

    for node in sorted(graph):
        if node not in state:
            visit(node, [])
    assert not circles, "import circles:\n" + "\n".join(circles)


def test_the_circle_check_sees_a_lazy_import(tmp_path):
    # the checker itself: an import inside a function, closing a circle, is found
    source = tmp_path / "a.py"
    source.write_text("def f():\n    from raymeta.cli import main\n")
    assert imports_of(source, {"raymeta.cli", "raymeta.io.files"}) == {"raymeta.cli"}


def test_subpackage_init_files_hold_no_code():
    for path in PACKAGE.rglob("__init__.py"):
        body = ast.parse(path.read_text()).body
        assert all(isinstance(node, ast.Expr) and isinstance(node.value, ast.Constant) for node in body), path
