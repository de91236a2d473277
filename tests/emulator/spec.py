"""Klaviyo's OpenAPI specs as response validators for the emulator's output.

The segment fragments and the whole specs they were cut from live in `shared/klaviyo-api/`
beside the repository (CI puts a copy of `shared/` next to its clone); `KLAVIYO_API_SPECS_DIR`
may point at them instead. Operations outside the fragments (the flow-trigger endpoints) are
validated against the whole spec of the revision. References are inlined, and only the nulls
the spec gets wrong are relaxed (API-NOTES §12.11):

* `links.next` / `links.prev` are null in real responses but declared non-nullable strings;
* `nullable: true` beside a `$ref` or a `oneOf` is ignored by strict OAS 3.0 validators.

One more defect of the same kind, outside the notes: numeric values of segment definitions are
declared `oneOf: [{type: integer}, {type: number}]`, which no integer can satisfy (it matches
both branches); that `oneOf` is read as `anyOf`, so integers and fractions both pass.

Sparse fieldsets (`fields[...]`) legitimately omit required attributes, so a validator built
with `sparse=True` also drops `required` inside `attributes` objects, and nothing else.
"""

from __future__ import annotations

import copy
import functools
import json
import os
from pathlib import Path
from typing import Any

from openapi_schema_validator import OAS30Validator, oas30_format_checker

SPEC_FILES = {
    "2024-06-15": "openapi-segments.json",
    "2026-07-15": "openapi-segments-2026-07-15.json",
}
FULL_SPEC_FILES = {
    "2024-06-15": "openapi-2024-06-15.json",
    "2026-07-15": "openapi-2026-07-15.json",
}
SPECS_ENV = "KLAVIYO_API_SPECS_DIR"


def specs_dir() -> Path | None:
    """The folder holding the fragments, or None when neither place has them."""
    repo_root = Path(__file__).resolve().parents[2]
    candidates = [repo_root / ".." / "shared" / "klaviyo-api"]
    if os.environ.get(SPECS_ENV):
        configured = Path(os.environ[SPECS_ENV])
        candidates += [configured, configured / "klaviyo-api"]
    names = [*SPEC_FILES.values(), *FULL_SPEC_FILES.values()]
    for folder in candidates:
        if all((folder / name).is_file() for name in names):
            return folder.resolve()
    return None


@functools.cache
def load_spec(revision: str) -> dict[str, Any]:
    """The fragment of a revision with its `CollectionLinks` nulls relaxed."""
    return _load(SPEC_FILES[revision])


@functools.cache
def load_full_spec(revision: str) -> dict[str, Any]:
    """The whole spec of a revision with its `CollectionLinks` nulls relaxed."""
    return _load(FULL_SPEC_FILES[revision])


def _load(name: str) -> dict[str, Any]:
    folder = specs_dir()
    if folder is None:
        raise FileNotFoundError(f"no Klaviyo OpenAPI specs found (set {SPECS_ENV})")
    spec: dict[str, Any] = json.loads((folder / name).read_text("utf-8"))
    links = spec["components"]["schemas"]["CollectionLinks"]["properties"]
    for field in ("next", "prev"):
        links[field]["nullable"] = True
    return spec


def operation(spec: dict[str, Any], method: str, path: str) -> dict[str, Any]:
    """The operation object of a path template, with or without the trailing slash."""
    paths = spec["paths"]
    for candidate in (path, path.rstrip("/"), path.rstrip("/") + "/"):
        if candidate in paths and method.lower() in paths[candidate]:
            return dict(paths[candidate][method.lower()])
    raise KeyError(f"{method} {path} is not in the spec")


def response_schema(
    spec: dict[str, Any], method: str, path: str, status: int, *, sparse: bool = False
) -> dict[str, Any]:
    """The resolved, relaxed JSON schema of a response (a `4XX`/`5XX` range when no exact code)."""
    responses = operation(spec, method, path)["responses"]
    response = responses.get(str(status)) or responses[f"{str(status)[0]}XX"]
    response = _resolve(spec, response, ())
    content = response["content"]
    schema = next(iter(content.values()))["schema"]
    schema = _relax(schema)
    return _drop_attribute_requirements(schema) if sparse else schema


def validation_errors(instance: Any, schema: dict[str, Any]) -> list[str]:
    """Every way the instance breaks the schema, as `path: message` lines."""
    validator = OAS30Validator(schema, format_checker=oas30_format_checker)
    return [
        f"{'/'.join(str(part) for part in error.absolute_path) or '<root>'}: {error.message}"
        for error in validator.iter_errors(instance)
    ]


def _resolve(spec: dict[str, Any], node: Any, seen: tuple[str, ...]) -> Any:
    """Inlines every `$ref`, keeping keywords written beside it (they carry `nullable`)."""
    if isinstance(node, list):
        return [_resolve(spec, item, seen) for item in node]
    if not isinstance(node, dict):
        return node
    if "$ref" in node:
        reference = node["$ref"]
        if reference in seen:
            raise ValueError(f"cyclic reference {reference}")
        target = _pointer(spec, reference)
        merged = {**copy.deepcopy(target), **{k: v for k, v in node.items() if k != "$ref"}}
        return _resolve(spec, merged, (*seen, reference))
    return {key: _resolve(spec, value, seen) for key, value in node.items()}


def _pointer(spec: dict[str, Any], reference: str) -> Any:
    node: Any = spec
    for part in reference.removeprefix("#/").split("/"):
        node = node[part.replace("~1", "/").replace("~0", "~")]
    return node


def _relax(node: Any) -> Any:
    """Makes `nullable: true` work where no `type` sits beside it (a merged `$ref`, a `oneOf`)."""
    if isinstance(node, list):
        return [_relax(item) for item in node]
    if not isinstance(node, dict):
        return node
    relaxed = {key: _relax(value) for key, value in node.items()}
    if _is_integer_or_number(relaxed.get("oneOf")):
        relaxed["anyOf"] = relaxed.pop("oneOf")
    if relaxed.get("nullable") is True and "type" not in relaxed:
        relaxed.pop("nullable")
        return {"anyOf": [relaxed, {"enum": [None]}]}
    return relaxed


def _is_integer_or_number(branches: Any) -> bool:
    return isinstance(branches, list) and sorted(
        branch.get("type", "") if isinstance(branch, dict) and len(branch) == 1 else ""
        for branch in branches
    ) == ["integer", "number"]


def _drop_attribute_requirements(node: Any) -> Any:
    if isinstance(node, list):
        return [_drop_attribute_requirements(item) for item in node]
    if not isinstance(node, dict):
        return node
    result = {key: _drop_attribute_requirements(value) for key, value in node.items()}
    properties = result.get("properties")
    if isinstance(properties, dict) and isinstance(properties.get("attributes"), dict):
        properties["attributes"] = _without_required(properties["attributes"])
    return result


def _without_required(node: Any) -> Any:
    if isinstance(node, list):
        return [_without_required(item) for item in node]
    if not isinstance(node, dict):
        return node
    return {key: _without_required(value) for key, value in node.items() if key != "required"}
