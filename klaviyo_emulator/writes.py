"""create_segment, update_segment and delete_segment (API-NOTES §5.3-5.5)."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import orjson

from . import settings as s
from .errors import ApiError, invalid, not_found
from .render import segment_resource
from .store import NotFound, Store

if TYPE_CHECKING:
    from .api import Request

CREATE_ATTRIBUTES = frozenset({"name", "definition", "is_starred"})
UPDATE_ATTRIBUTES = frozenset({"name", "definition", "is_starred"})


def create_segment(store: Store, request: Request) -> tuple[int, bytes]:
    data = _data(request.body)
    _check_type(data)
    attributes = _attributes(data, CREATE_ATTRIBUTES)
    for required in ("name", "definition"):
        if required not in attributes:
            raise invalid(
                f"'{required}' is a required attribute.", None, f"/data/attributes/{required}"
            )
    _check_values(attributes)
    segment = store.create_segment(
        attributes["name"],
        definition=attributes["definition"],
        is_starred=bool(attributes.get("is_starred", False)),
    )
    fields = request.query.fields.get("segment")
    return 201, orjson.dumps({"data": segment_resource(request.ctx, segment, fields)})


def update_segment(store: Store, request: Request) -> tuple[int, bytes]:
    segment_id = request.segment_id or ""
    if segment_id not in store.segments:
        raise not_found(f"A segment with id {segment_id} does not exist.")
    data = _data(request.body)
    _check_type(data)
    if data.get("id") != segment_id:
        raise ApiError(
            409,
            "conflict",
            "Conflict.",
            "The id in the request body does not match the id in the URL.",
            {"pointer": "/data/id"},
        )
    allowed = UPDATE_ATTRIBUTES
    if request.ctx.revision >= s.REVISION_2026_ATTRIBUTES:
        allowed = allowed | {"is_active"}
    attributes = _attributes(data, allowed)
    _check_values(attributes)
    segment = store.update_segment(segment_id, **attributes)
    fields = request.query.fields.get("segment")
    return 200, orjson.dumps({"data": segment_resource(request.ctx, segment, fields)})


def delete_segment(store: Store, request: Request) -> tuple[int, bytes]:
    try:
        store.delete_segment(request.segment_id or "")
    except NotFound:
        raise not_found(f"A segment with id {request.segment_id} does not exist.") from None
    return 204, b""


def _data(body: bytes) -> dict[str, Any]:
    try:
        document = orjson.loads(body or b"null")
    except orjson.JSONDecodeError:
        raise ApiError(
            400, "parse_error", "Malformed request.", "JSON parse error.", {"pointer": "/data/"}
        ) from None
    data = document.get("data") if isinstance(document, dict) else None
    if not isinstance(data, dict):
        raise invalid("'data' is a required object.", None, "/data/")
    return data


def _check_type(data: dict[str, Any]) -> None:
    if data.get("type") != "segment":
        raise ApiError(
            409,
            "conflict",
            "Conflict.",
            f"The type '{data.get('type')}' does not match the resource 'segment'.",
            {"pointer": "/data/type"},
        )


def _attributes(data: dict[str, Any], allowed: frozenset[str]) -> dict[str, Any]:
    attributes = data.get("attributes", {})
    if not isinstance(attributes, dict):
        raise invalid("'attributes' must be an object.", None, "/data/attributes")
    for name in attributes:
        if name not in allowed:
            raise invalid(
                f"'{name}' is not a valid field for the resource 'segment'.",
                None,
                f"/data/attributes/{name}",
            )
    return attributes


def _check_values(attributes: dict[str, Any]) -> None:
    name = attributes.get("name")
    if "name" in attributes and (not isinstance(name, str) or not name.strip()):
        raise invalid("'name' must be a non-empty string.", None, "/data/attributes/name")
    definition = attributes.get("definition")
    if "definition" in attributes and not (
        isinstance(definition, dict) and isinstance(definition.get("condition_groups"), list)
    ):
        raise invalid(
            "'definition' must be an object with 'condition_groups'.",
            None,
            "/data/attributes/definition",
        )
    for flag in ("is_starred", "is_active"):
        if flag in attributes and not isinstance(attributes[flag], bool):
            raise invalid(f"'{flag}' must be a boolean.", None, f"/data/attributes/{flag}")
