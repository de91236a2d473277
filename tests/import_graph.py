"""The import graph of one of the project's packages, for the layout tests.

A layout test names the package's layers (lowest first) and checks three things with these
helpers: imports go down the layers only, there is no import cycle, no module is long.
"""

from __future__ import annotations

import ast
from collections.abc import Mapping
from pathlib import Path

MAX_LINES = 400


def modules(package: Path, name: str) -> dict[str, Path]:
    """Every module of the package by dotted name (a package's `__init__` by its own name)."""
    found = {}
    for path in sorted(package.rglob("*.py")):
        parts = list(path.relative_to(package).with_suffix("").parts)
        if parts[-1] == "__init__":
            parts.pop()
        found[".".join([name, *parts])] = path
    return found


def imports(module: str, path: Path, known: Mapping[str, Path]) -> set[str]:
    """The package's modules that `module` imports (its own parent packages left out)."""
    package = module if path.name == "__init__.py" else module.rpartition(".")[0]
    found: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text("utf-8"))):
        if isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                anchor = package.split(".")[: len(package.split(".")) - node.level + 1]
                base = ".".join([*anchor, *([base] if base else [])])
            for alias in node.names:
                submodule = f"{base}.{alias.name}"
                found.add(submodule if submodule in known else base)
    # a module's own packages are imported before it, whatever it imports
    own = {".".join(module.split(".")[:end]) for end in range(1, module.count(".") + 1)}
    return {name for name in found if name in known and name != module and name not in own}


def graph(package: Path, name: str) -> dict[str, set[str]]:
    """Module -> the package's modules it imports."""
    known = modules(package, name)
    return {module: imports(module, path, known) for module, path in known.items()}


def upward_imports(edges: Mapping[str, set[str]], layer: dict[str, int], name: str) -> list[str]:
    """Imports from a module to one in a higher layer; `layer` maps the first name part
    below the package `name` ("" for the package's `__init__`)."""

    def of(module: str) -> int:
        parts = module.removeprefix(name).lstrip(".").split(".")
        return layer[parts[0]]

    return [
        f"{module} -> {target}"
        for module, targets in edges.items()
        for target in sorted(targets)
        if of(target) > of(module)
    ]


def first_cycle(edges: Mapping[str, set[str]]) -> list[str] | None:
    """One import cycle as a list of modules, or None."""
    state: dict[str, int] = {}  # 1: on the current path, 2: done

    def visit(module: str, path: list[str]) -> list[str] | None:
        state[module] = 1
        for target in sorted(edges[module]):
            if state.get(target) == 1:
                return [*path[path.index(target) :], target] if target in path else [target]
            if target not in state:
                cycle = visit(target, [*path, target])
                if cycle:
                    return cycle
        state[module] = 2
        return None

    for module in sorted(edges):
        if module not in state:
            cycle = visit(module, [module])
            if cycle:
                return cycle
    return None


def long_modules(package: Path, name: str, limit: int = MAX_LINES) -> list[str]:
    """Modules over `limit` lines, with their length."""
    long = []
    for module, path in modules(package, name).items():
        lines = len(path.read_text("utf-8").splitlines())
        if lines > limit:
            long.append(f"{module}: {lines} lines")
    return long


def imports_of_other_packages(package: Path, name: str, others: tuple[str, ...]) -> list[str]:
    """Absolute imports of any of the `others` top-level packages."""
    found = []
    for module, path in modules(package, name).items():
        for node in ast.walk(ast.parse(path.read_text("utf-8"))):
            names = []
            if isinstance(node, ast.Import):
                names = [alias.name for alias in node.names]
            elif isinstance(node, ast.ImportFrom) and not node.level:
                names = [node.module or ""]
            found += [f"{module} -> {n}" for n in names if n.split(".")[0] in others]
    return found
