"""The package's shape: layers by folder, every import points down them, every import resolves, no circles.

Imports are read from the source (every ``import``/``from`` statement, inside functions too), not from what
Python happens to have loaded, so a lazy import that closes a circle, climbs a layer or names a module that
does not exist is caught as well."""

import ast
import importlib
from pathlib import Path

import pytest

import raymeta

PACKAGE = Path(raymeta.__file__).resolve().parent

FOLDERS = ["method", "config", "io", "stages", "drivers"]
"""The sub-packages, bottom up: each may import only those before it (and the core). Every module of a folder
is in its folder's layer: there are no per-file exceptions."""

CORE = {"raymeta", "raymeta.errors", "raymeta.seeds"}
"""Modules of the package root below every folder: no raymeta imports beyond each other."""

SHELL = {"raymeta.cli", "raymeta.__main__"}
"""Modules of the package root above every folder: parse and dispatch."""


def module_name(path: Path) -> str:
    parts = ["raymeta", *path.relative_to(PACKAGE).with_suffix("").parts]
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def raymeta_imports(path: Path) -> list[tuple[int, str, list[str]]]:
    """(line, module, imported names) of every absolute raymeta import in ``path``'s source."""
    found = []
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            found += [(node.lineno, alias.name, []) for alias in node.names if alias.name.split(".")[0] == "raymeta"]
        elif (
            isinstance(node, ast.ImportFrom)
            and node.level == 0
            and node.module
            and node.module.split(".")[0] == "raymeta"
        ):
            found.append((node.lineno, node.module, [alias.name for alias in node.names]))
        elif isinstance(node, ast.ImportFrom) and node.level > 0:
            found.append((node.lineno, "." * node.level + (node.module or ""), []))
    return found


def unresolved_imports(path: Path, modules: set[str]) -> list[str]:
    """The raymeta imports in ``path`` that name no module of the package, or a name its module does not define."""
    problems = []
    for line, module, names in raymeta_imports(path):
        if module.startswith("."):
            problems.append(f"{path.name}:{line}: relative import {module} (use absolute raymeta.… imports)")
            continue
        if module not in modules:
            problems.append(f"{path.name}:{line}: {module} is no module of the package")
            continue
        for name in names:
            if f"{module}.{name}" in modules:
                continue
            if not hasattr(importlib.import_module(module), name):
                problems.append(f"{path.name}:{line}: {module} defines no {name}")
    return problems


def all_modules() -> dict[str, Path]:
    return {module_name(path): path for path in sorted(PACKAGE.rglob("*.py"))}


def imports_of(path: Path, modules: set[str]) -> set[str]:
    """The raymeta modules that ``path`` imports anywhere in its source (``from a import b`` names a.b when b is a
    module of its own)."""
    found = set()
    for _, module, names in raymeta_imports(path):
        found |= {name for name in [module, *(f"{module}.{n}" for n in names)] if name in modules}
    return found


def import_graph() -> dict[str, set[str]]:
    paths = all_modules()
    modules = set(paths)
    graph = {}
    for name, path in paths.items():
        targets = imports_of(path, modules) - {name}
        # importing raymeta.io.files runs raymeta/io/__init__.py too: only a package's own code counts, and the
        # sub-package __init__ files hold docstrings only (checked below)
        graph[name] = {t for t in targets if not (paths[t].name == "__init__.py" and t != "raymeta")}
    return graph


def layer(name: str) -> int:
    """A module's layer: the core 0, each folder its place in FOLDERS (from 1), the shell above them all."""
    if name in CORE:
        return 0
    if name in SHELL:
        return len(FOLDERS) + 1
    parts = name.split(".")
    if len(parts) >= 2 and parts[1] in FOLDERS:
        return FOLDERS.index(parts[1]) + 1
    raise AssertionError(
        f"{name} is in no layer: put it in a folder of FOLDERS, or in CORE/SHELL if it is a "
        f"module of the package root (tests/test_structure.py)"
    )


def test_every_module_has_a_layer_and_imports_only_below_or_beside_it():
    graph = import_graph()
    upward = [
        f"{source} ({layer(source)}) imports {target} ({layer(target)})"
        for source, targets in graph.items()
        for target in targets
        if layer(target) > layer(source)
    ]
    assert not upward, "imports pointing up the layers:\n" + "\n".join(sorted(upward))


def test_the_core_and_the_method_import_nothing_of_the_files_stages_or_drivers():
    graph = import_graph()
    low = [name for name in graph if layer(name) <= layer("raymeta.method.models")]
    high = ("raymeta.config", "raymeta.io", "raymeta.stages", "raymeta.drivers", "raymeta.cli")
    bad = [f"{name} imports {target}" for name in low for target in graph[name] if target.startswith(high)]
    assert not bad, "\n".join(bad)


def test_every_raymeta_import_resolves():
    paths = all_modules()
    problems = [problem for path in paths.values() for problem in unresolved_imports(path, set(paths))]
    assert not problems, "imports that do not resolve:\n" + "\n".join(problems)


@pytest.mark.parametrize("name", sorted(all_modules()))
def test_every_module_imports(name):
    importlib.import_module(name)


def test_the_resolution_check_sees_a_missing_module_and_a_missing_name(tmp_path):
    # the checker itself: a lazy import of a module that does not exist (as stages/export.py once shipped
    # `from raymeta.runtime import load_data`), and of a name a real module does not define, are both found
    source = tmp_path / "broken.py"
    source.write_text(
        "def f():\n    from raymeta.runtime import load_data\n"
        "    from raymeta.errors import NoSuchError\n    from raymeta.errors import ConfigError\n"
    )
    problems = unresolved_imports(source, set(all_modules()))
    assert len(problems) == 2
    assert "raymeta.runtime is no module" in problems[0] and "defines no NoSuchError" in problems[1]


def test_no_module_imports_one_that_imports_it_back():
    graph = import_graph()
    circles, state = [], {}

    def visit(node: str, trail: list[str]) -> None:
        state[node] = "open"
        for target in sorted(graph[node]):
            if state.get(target) == "open":
                circles.append(
                    " → ".join(trail[trail.index(target) :] + [node, target])
                    if target in trail
                    else f"{node} → {target}"
                )
            elif target not in state:
                visit(target, trail + [node])
        state[node] = "done"

    for node in sorted(graph):
        if node not in state:
            visit(node, [])
    assert not circles, "import circles:\n" + "\n".join(circles)


def test_the_layer_check_sees_a_lazy_upward_import(tmp_path):
    # the checker itself: an import inside a function is read, and a method module importing a stage climbs
    source = tmp_path / "a.py"
    source.write_text("def f():\n    from raymeta.cli import main\n")
    assert imports_of(source, {"raymeta.cli", "raymeta.io.files"}) == {"raymeta.cli"}
    assert (
        layer("raymeta.stages.train")
        > layer("raymeta.io.files")
        > layer("raymeta.config.schema")
        > layer("raymeta.method.models")
        > layer("raymeta.errors")
    )


def test_subpackage_init_files_hold_no_code():
    for path in PACKAGE.rglob("__init__.py"):
        body = ast.parse(path.read_text()).body
        assert all(isinstance(node, ast.Expr) and isinstance(node.value, ast.Constant) for node in body), path
