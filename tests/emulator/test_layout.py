"""The emulator's package layout: layers import downwards only, no cycles, modules stay small.

Layers, lowest first: `settings`; `spec` (what the API is); `backend` (the account's state);
`responses` (one handler per operation); `urls` and `wire` (routing, server, limiter, faults);
the `emulator` facade; the package's `__init__` and `__main__`.
"""

from __future__ import annotations

from pathlib import Path

import import_graph

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


def test_imports_go_down_the_layers_only() -> None:
    assert not import_graph.upward_imports(import_graph.graph(PACKAGE, NAME), LAYERS, NAME)


def test_no_import_cycle() -> None:
    assert import_graph.first_cycle(import_graph.graph(PACKAGE, NAME)) is None


def test_modules_stay_small() -> None:
    assert not import_graph.long_modules(PACKAGE, NAME)


def test_the_emulator_does_not_import_the_source() -> None:
    others = ("sources", "pipelines")
    assert not import_graph.imports_of_other_packages(PACKAGE, NAME, others)
