"""The import layers of backend/: read from the source (ast); runtime/ also imported.

    config/   the composition root (settings, urls, celery, gunicorn conf)
    apps/     the Django apps, on top of runtime/; never import config
    runtime/  Django-free: the probe, the gunicorn master and the entrypoint import
              it without settings; never imports apps or config, nor Django at
              import time

Every import statement counts, wherever it stands: at module level, inside a
function (a late import is still a dependency, and circles hide in them), under
`if TYPE_CHECKING:`. The one exception is the Django rule of runtime/, which is about
import *time*: an import inside a function or under TYPE_CHECKING does not load
Django when the module is imported. `importlib.import_module(...)`, Django's
`import_string(...)` and `__import__(...)` with a literal name count as imports of it.

An import names the most specific project module it reaches, as import-linter does:
`from a.b import c` is an import of a.b.c when that is a module, else of a.b. Like
import-linter, it does not count the package __init__ files Python runs on the way
(importing a.b.c runs a/__init__ and a/b/__init__): a circle closed only through
such an implicit import is not seen.

Each rule returns messages, empty when the rule holds. A layer without modules is a
violation itself: a check over nothing would pass.
"""

from __future__ import annotations

import ast
import itertools
import json
import os
import subprocess
import sys
from collections import deque
from dataclasses import dataclass
from pathlib import Path

LAYERS = ("apps", "config", "runtime")
# Calls that import the module their literal first argument names.
IMPORTING_CALLS = {"import_module", "import_string", "__import__"}


@dataclass(frozen=True)
class Import:
    importer: str
    target: str
    path: Path
    line: int
    # False inside a function or under `if TYPE_CHECKING:`: not run on import.
    at_import_time: bool

    def where(self, root: Path) -> str:
        return f"{self.path.relative_to(root)}:{self.line}"


def layer_modules(root: Path, layer: str) -> dict[str, Path]:
    """Every module of one top-level package under root: dotted name -> file."""
    found: dict[str, Path] = {}
    base = root / layer
    if not base.is_dir():
        return found
    for path in sorted(base.rglob("*.py")):
        parts = path.relative_to(root).with_suffix("").parts
        if "__pycache__" in parts:
            continue
        if parts[-1] == "__init__":
            parts = parts[:-1]
        found[".".join(parts)] = path
    return found


def project_modules(root: Path) -> dict[str, Path]:
    modules: dict[str, Path] = {}
    for layer in LAYERS:
        modules.update(layer_modules(root, layer))
    return modules


def missing_layer(root: Path, layer: str) -> list[str]:
    """A layer that has no module besides its package's __init__."""
    if [name for name in layer_modules(root, layer) if name != layer]:
        return []
    return [
        f"{layer}/ has no modules under {root}: the layer checks would pass "
        "vacuously (was it moved or renamed?)"
    ]


def _is_type_checking(test: ast.expr) -> bool:
    return (isinstance(test, ast.Name) and test.id == "TYPE_CHECKING") or (
        isinstance(test, ast.Attribute) and test.attr == "TYPE_CHECKING"
    )


def _resolve_relative(module: str, is_package: bool, level: int, name: str) -> str:
    parts = module.split(".") if is_package else module.split(".")[:-1]
    if level > 1:
        parts = parts[: len(parts) - (level - 1)]
    return ".".join([*parts, name] if name else parts)


def imports_of(module: str, path: Path, modules: dict[str, Path]) -> list[Import]:
    """The imports one module makes, each resolved to an absolute dotted name."""
    tree = ast.parse(path.read_text(encoding="utf-8"), filename=str(path))
    is_package = path.name == "__init__.py"
    found: list[Import] = []

    def add(target: str, node: ast.AST, at_import_time: bool) -> None:
        found.append(Import(module, target, path, node.lineno, at_import_time))

    def visit(node: ast.AST, at_import_time: bool) -> None:
        if isinstance(node, ast.Import):
            for alias in node.names:
                add(alias.name, node, at_import_time)
        elif isinstance(node, ast.ImportFrom):
            base = (
                _resolve_relative(module, is_package, node.level, node.module or "")
                if node.level
                else node.module or ""
            )
            targets = {
                f"{base}.{alias.name}" if f"{base}.{alias.name}" in modules else base
                for alias in node.names
            }
            for target in sorted(targets):
                add(target, node, at_import_time)
        elif (
            isinstance(node, ast.Call)
            and node.args
            and isinstance(node.args[0], ast.Constant)
            and isinstance(node.args[0].value, str)
            and not node.args[0].value.startswith(".")
            and (
                (isinstance(node.func, ast.Name) and node.func.id in IMPORTING_CALLS)
                or (
                    isinstance(node.func, ast.Attribute)
                    and node.func.attr in IMPORTING_CALLS
                )
            )
        ):
            # import_string("a.b.Name") names an attribute: its module is a.b
            # when a.b.Name is no module; _project_target finds the longest one.
            add(node.args[0].value, node, at_import_time)
        if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef | ast.Lambda):
            at_import_time = False
        if isinstance(node, ast.If) and _is_type_checking(node.test):
            for child in node.body:
                visit(child, False)
            for child in node.orelse:
                visit(child, at_import_time)
            return
        for child in ast.iter_child_nodes(node):
            visit(child, at_import_time)

    visit(tree, True)
    return found


def _project_target(target: str, modules: dict[str, Path]) -> str | None:
    """The most specific project module an imported name reaches, if any."""
    parts = target.split(".")
    for end in range(len(parts), 0, -1):
        name = ".".join(parts[:end])
        if name in modules:
            return name
    return None


def all_imports(root: Path) -> list[Import]:
    modules = project_modules(root)
    return [
        found
        for module, path in modules.items()
        for found in imports_of(module, path, modules)
    ]


def _in_package(name: str, package: str) -> bool:
    return name == package or name.startswith(package + ".")


def _late(found: Import) -> str:
    return "" if found.at_import_time else " (not at import time)"


def forbidden_imports(root: Path, layer: str, forbidden: tuple[str, ...]) -> list[str]:
    """Imports from modules of `layer` of any package in `forbidden`."""
    problems = missing_layer(root, layer)
    for found in all_imports(root):
        if not _in_package(found.importer, layer):
            continue
        for package in forbidden:
            if _in_package(found.target, package):
                problems.append(
                    f"{found.where(root)}: {found.importer} imports {found.target}"
                    f"{_late(found)}; {layer}/ must not import {package}"
                )
    return problems


def apps_import_config(root: Path) -> list[str]:
    """config is the composition root: nothing in apps/ imports it."""
    return forbidden_imports(root, "apps", ("config",))


def runtime_imports_upward(root: Path) -> list[str]:
    """runtime/ is the bottom layer: it imports neither apps nor config."""
    return forbidden_imports(root, "runtime", ("apps", "config"))


def runtime_imports_django_at_import_time(root: Path) -> list[str]:
    """Import-time django imports written in runtime/ itself, with file and line."""
    problems = missing_layer(root, "runtime")
    for found in all_imports(root):
        if (
            _in_package(found.importer, "runtime")
            and found.at_import_time
            and _in_package(found.target, "django")
        ):
            problems.append(
                f"{found.where(root)}: {found.importer} imports {found.target} at "
                "import time; runtime/ must import without Django"
            )
    return problems


# Run in a fresh interpreter: imports each module named in argv[1:] and reports, as
# JSON, the first module whose import loaded django and the project frames of that
# moment (the chain of imports that reached it).
_PROBE = """
import importlib, json, sys, traceback

root, names = sys.argv[1], sys.argv[2:]
chain = []

class Watch:
    def find_spec(self, name, path=None, target=None):
        if (name == "django" or name.startswith("django.")) and not chain:
            chain.extend(
                f"{frame.filename[len(root) + 1:]}:{frame.lineno}"
                for frame in traceback.extract_stack()
                if frame.filename.startswith(root + "/")
            )
        return None

sys.meta_path.insert(0, Watch())
culprit = None
for name in names:
    importlib.import_module(name)
    if culprit is None and any(
        loaded == "django" or loaded.startswith("django.") for loaded in sys.modules
    ):
        culprit = name
print(json.dumps({"culprit": culprit, "chain": chain}))
"""


def runtime_loads_django(root: Path) -> list[str]:
    """Import every runtime/ module, without Django settings, in a fresh interpreter,
    and fail when any `django` module got loaded (directly or transitively)."""
    problems = missing_layer(root, "runtime")
    # __main__ modules run their program when imported; the ast rules cover them.
    names = [
        name
        for name in layer_modules(root, "runtime")
        if name.rsplit(".", 1)[-1] != "__main__"
    ]
    if not names:
        return problems
    env = {k: v for k, v in os.environ.items() if k != "DJANGO_SETTINGS_MODULE"}
    root_text = str(root.resolve())
    env["PYTHONPATH"] = root_text
    result = subprocess.run(
        # -P: the modules come from root alone, by absolute paths the chain can name.
        [sys.executable, "-P", "-c", _PROBE, root_text, *names],
        cwd=root,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    if result.returncode != 0:
        return [
            *problems,
            "importing runtime/ without DJANGO_SETTINGS_MODULE failed:\n"
            + result.stderr.strip(),
        ]
    report = json.loads(result.stdout.strip().splitlines()[-1])
    if report["culprit"]:
        problems.append(
            f"importing {report['culprit']} loaded django (runtime/ must import "
            "without it); the imports that reached it: " + " -> ".join(report["chain"])
        )
    return problems


def _strongly_connected(graph: dict[str, dict[str, Import]]) -> list[list[str]]:
    """Tarjan's algorithm: the components of more than one module."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    components: list[list[str]] = []

    def connect(node: str) -> None:
        index[node] = low[node] = len(index)
        stack.append(node)
        on_stack.add(node)
        for successor in sorted(graph.get(node, {})):
            if successor not in index:
                connect(successor)
                low[node] = min(low[node], low[successor])
            elif successor in on_stack:
                low[node] = min(low[node], index[successor])
        if low[node] == index[node]:
            component = []
            while True:
                member = stack.pop()
                on_stack.discard(member)
                component.append(member)
                if member == node:
                    break
            if len(component) > 1:
                components.append(sorted(component))

    for node in sorted(graph):
        if node not in index:
            connect(node)
    return components


def _shortest_cycle(
    graph: dict[str, dict[str, Import]], start: str, members: set[str]
) -> list[str]:
    """The shortest path start -> ... -> start inside one component."""
    came_from: dict[str, str] = {}
    queue = deque([start])
    while queue:
        node = queue.popleft()
        for successor in sorted(graph.get(node, {})):
            if successor not in members:
                continue
            if successor == start:
                path = [node]
                while path[-1] != start:
                    path.append(came_from[path[-1]])
                return [*reversed(path), start]
            if successor not in came_from:
                came_from[successor] = node
                queue.append(successor)
    raise AssertionError(f"{start} is on no cycle of its component")


def import_cycles(root: Path) -> list[str]:
    """Circles among project modules, each named with the import lines closing it."""
    modules = project_modules(root)
    problems = [problem for layer in LAYERS for problem in missing_layer(root, layer)]
    graph: dict[str, dict[str, Import]] = {}
    for found in all_imports(root):
        target = _project_target(found.target, modules)
        if target is None or target == found.importer:
            continue
        edges = graph.setdefault(found.importer, {})
        # The first import of a module in the file names the edge.
        if target not in edges or found.line < edges[target].line:
            edges[target] = found
    for component in _strongly_connected(graph):
        cycle = _shortest_cycle(graph, component[0], set(component))
        lines = [
            f"  {graph[a][b].where(root)}: {a} imports {graph[a][b].target}"
            f"{_late(graph[a][b])}"
            for a, b in itertools.pairwise(cycle)
        ]
        others = sorted(set(component) - set(cycle))
        also = f"\n  (same circle also holds: {', '.join(others)})" if others else ""
        problems.append(
            "import cycle: " + " -> ".join(cycle) + "\n" + "\n".join(lines) + also
        )
    return problems
