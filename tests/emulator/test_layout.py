"""The emulator's package layout: layers import downwards only, no cycles, modules stay small.

Layers, lowest first: `settings`; `spec` (what the API is); `backend` (the account's state);
`responses` (one handler per operation); `urls` and `wire` (routing, server, limiter, faults);
the `emulator` facade; the package's `__init__` and `__main__`.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

import klaviyo_emulator

PACKAGE = Path(klaviyo_emulator.__file__).resolve().parent
NAME = "klaviyo_emulator"
LAYERS = {
    "settings": 0,
    "spec": 1,
    "backend": 2,
    "responses": 3,
    "urls": 4,
    "wire": 4,
    "emulator": 5,
    "__main__": 6,
    "": 6,  # the package's __init__
}
MAX_LINES = 400


def _modules() -> dict[str, Path]:
    modules = {}
    for path in sorted(PACKAGE.rglob("*.py")):
        parts = list(path.relative_to(PACKAGE).with_suffix("").parts)
        if parts[-1] == "__init__":
            parts.pop()
        modules[".".join([NAME, *parts])] = path
    return modules


def _imports(module: str, path: Path, modules: dict[str, Path]) -> set[str]:
    """The package's modules that `module` imports."""
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
                found.add(submodule if submodule in modules else base)
    # a module's own packages are imported before it, whatever it imports
    own = {".".join(module.split(".")[:end]) for end in range(1, module.count(".") + 1)}
    return {name for name in found if name in modules and name != module and name not in own}


def _graph() -> dict[str, set[str]]:
    modules = _modules()
    return {module: _imports(module, path, modules) for module, path in modules.items()}


def _layer(module: str) -> int:
    parts = module.split(".")[1:]
    return LAYERS[parts[0] if parts else ""]


def test_every_module_has_a_layer() -> None:
    for module in _modules():
        _layer(module)


def test_imports_go_down_the_layers_only() -> None:
    upward = [
        f"{module} -> {target}"
        for module, targets in _graph().items()
        for target in sorted(targets)
        if _layer(target) > _layer(module)
    ]
    assert not upward


def test_no_import_cycle() -> None:
    graph = _graph()
    state: dict[str, int] = {}  # 1: on the current path, 2: done

    def visit(module: str, path: list[str]) -> None:
        state[module] = 1
        for target in sorted(graph[module]):
            if state.get(target) == 1:
                cycle = [*path[path.index(target) :], target] if target in path else [target]
                pytest.fail("import cycle: " + " -> ".join(cycle))
            if target not in state:
                visit(target, [*path, target])
        state[module] = 2

    for module in sorted(graph):
        if module not in state:
            visit(module, [module])


@pytest.mark.parametrize("module", sorted(_modules()))
def test_modules_stay_small(module: str) -> None:
    lines = len(_modules()[module].read_text("utf-8").splitlines())
    assert lines <= MAX_LINES, f"{module}: {lines} lines"


def test_the_emulator_does_not_import_the_source() -> None:
    for module, path in _modules().items():
        for node in ast.walk(ast.parse(path.read_text("utf-8"))):
            names = []
            if isinstance(node, ast.Import):
                names = [alias.name for alias in node.names]
            elif isinstance(node, ast.ImportFrom) and not node.level:
                names = [node.module or ""]
            assert not any(name.split(".")[0] in ("sources", "pipelines") for name in names), module
