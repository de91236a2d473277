"""The source's package layout: layers import downwards only, no cycles, modules stay small.

Layers, lowest first: the vocabulary (`settings`, `dates`, `typing`, `exceptions`, `stats`);
`api` (requests, transport, errors, rate limits); `rows`, `state` and `options`; `walk`
(plan, workers, batches, reconciliation, reading the destination); `resources`; the package's
`__init__`, which only declares the source.
"""

from __future__ import annotations

import ast
from pathlib import Path

import import_graph

import pipelines
import sources.klaviyo

PACKAGE = Path(sources.klaviyo.__file__).resolve().parent
NAME = "sources.klaviyo"
LAYERS = {
    "settings": 0,
    "dates": 0,
    "typing": 0,
    "exceptions": 0,
    "stats": 0,
    "api": 1,
    "rows": 2,
    "state": 2,
    "options": 2,
    "walk": 3,
    "resources": 4,
    "": 5,  # the package's __init__
}


def test_imports_go_down_the_layers_only() -> None:
    edges = import_graph.graph(PACKAGE, NAME)
    assert not import_graph.upward_imports(edges, LAYERS, NAME)


def test_no_import_cycle() -> None:
    assert import_graph.first_cycle(import_graph.graph(PACKAGE, NAME)) is None
    pipelines_dir = Path(pipelines.__file__).resolve().parent
    assert import_graph.first_cycle(import_graph.graph(pipelines_dir, "pipelines")) is None


def test_modules_stay_small() -> None:
    assert not import_graph.long_modules(PACKAGE, NAME)
    assert not import_graph.long_modules(Path(pipelines.__file__).resolve().parent, "pipelines")


def test_the_source_does_not_import_the_emulator_or_the_pipelines() -> None:
    others = ("klaviyo_emulator", "pipelines")
    assert not import_graph.imports_of_other_packages(PACKAGE, NAME, others)


def test_init_declares_and_keeps_no_state() -> None:
    tree = ast.parse((PACKAGE / "__init__.py").read_text("utf-8"))
    touched = {
        node.attr
        for node in ast.walk(tree)
        if isinstance(node, ast.Attribute) and node.attr in ("resource_state", "source_state")
    }
    assert not touched
