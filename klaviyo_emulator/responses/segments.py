"""Handlers of segments: listing, reading, writing, and their tags and flow triggers
(API-NOTES §5.1-5.5, §5.8-5.9)."""

from __future__ import annotations

from typing import Any

import orjson

from ..backend.account import NotFound
from ..backend.models import Segment
from ..spec.dates import epoch_to_datetime
from ..spec.revisions import SEGMENT_IS_ACTIVE_WRITABLE_FROM, since
from . import cursors, filters, paging
from .base import Responses, page_links
from .errors import ApiError, invalid, invalid_cursor, not_found
from .render import segment_resource, tag_resource
from .request import Request, Result

CREATE_ATTRIBUTES = frozenset({"name", "definition", "is_starred"})
UPDATE_ATTRIBUTES = frozenset({"name", "definition", "is_starred"})


class SegmentResponses(Responses):
    """get_segments, get_segment, create/update/delete_segment, the segment's tags and flows."""

    def get_segments(self, request: Request) -> Result:
        query = request.query
        sort = query.sort or "id"
        field_name = sort.lstrip("-")
        scope = f"segments:{sort}:{query.filter_scope()}"
        cursor = cursors.decode(query.cursor, scope) if query.cursor is not None else None
        by_key = {
            _segment_sort_key(segment, field_name): segment
            for segment in self.account.segments.values()
            if not query.conditions or filters.matches(query.conditions, _segment_record(segment))
        }
        ordered = sorted(by_key)
        try:
            page = paging.list_page(ordered, sort.startswith("-"), query.page_size, cursor, scope)
        except TypeError:
            raise invalid_cursor() from None
        segments = [by_key[key] for key in page.keys]
        fields = query.fields.get("segment")
        document: dict[str, Any] = {
            "data": [
                segment_resource(request.ctx, segment, fields, query.include)
                for segment in segments
            ],
            "links": page_links(request, page),
        }
        if query.include:
            document["included"] = self._included(request, segments)
        return 200, orjson.dumps(document)

    def get_segment(self, request: Request) -> Result:
        segment = self.segment(request)
        query = request.query
        fields = query.fields.get("segment")
        count = None
        if "profile_count" in query.additional and (fields is None or "profile_count" in fields):
            count = len(segment.members)
        document: dict[str, Any] = {
            "data": segment_resource(request.ctx, segment, fields, query.include, count),
            "links": {"self": request.self_link},
        }
        if query.include:
            document["included"] = self._included(request, [segment])
        return 200, orjson.dumps(document)

    def create_segment(self, request: Request) -> Result:
        data = _data(request.body)
        _check_type(data)
        attributes = _attributes(data, CREATE_ATTRIBUTES)
        for required in ("name", "definition"):
            if required not in attributes:
                raise invalid(
                    f"'{required}' is a required attribute.", None, f"/data/attributes/{required}"
                )
        _check_values(attributes)
        segment = self.account.create_segment(
            attributes["name"],
            definition=attributes["definition"],
            is_starred=bool(attributes.get("is_starred", False)),
        )
        fields = request.query.fields.get("segment")
        return 201, orjson.dumps({"data": segment_resource(request.ctx, segment, fields)})

    def update_segment(self, request: Request) -> Result:
        segment_id = request.segment_id or ""
        if segment_id not in self.account.segments:
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
        if since(request.ctx.revision, SEGMENT_IS_ACTIVE_WRITABLE_FROM):
            allowed = allowed | {"is_active"}
        attributes = _attributes(data, allowed)
        _check_values(attributes)
        segment = self.account.update_segment(segment_id, **attributes)
        fields = request.query.fields.get("segment")
        return 200, orjson.dumps({"data": segment_resource(request.ctx, segment, fields)})

    def delete_segment(self, request: Request) -> Result:
        try:
            self.account.delete_segment(request.segment_id or "")
        except NotFound:
            raise not_found(f"A segment with id {request.segment_id} does not exist.") from None
        return 204, b""

    def get_segment_tags(self, request: Request) -> Result:
        segment = self.segment(request)
        tags = self.account.tags
        fields = request.query.fields.get("tag")
        data = [
            tag_resource(request.ctx, tags[tag_id], fields)
            for tag_id in segment.tag_ids
            if tag_id in tags
        ]
        return 200, orjson.dumps({"data": data, "links": request.unpaged_links})

    def get_segment_relationships_tags(self, request: Request) -> Result:
        segment = self.segment(request)
        tags = self.account.tags
        data = [{"type": "tag", "id": t} for t in segment.tag_ids if t in tags]
        return 200, orjson.dumps({"data": data, "links": request.unpaged_links})

    def get_segment_flow_triggers(self, request: Request) -> Result:
        """The emulated account has no flows, so none is listed."""
        self.segment(request)
        return 200, orjson.dumps({"data": [], "links": request.unpaged_links})

    get_segment_relationships_flow_triggers = get_segment_flow_triggers

    def _included(self, request: Request, segments: list[Segment]) -> list[dict[str, Any]]:
        if "tags" not in request.query.include:
            return []
        tags = self.account.tags
        fields = request.query.fields.get("tag")
        seen: dict[str, dict[str, Any]] = {}
        for segment in segments:
            for tag_id in segment.tag_ids:
                if tag_id not in seen and tag_id in tags:
                    seen[tag_id] = tag_resource(request.ctx, tags[tag_id], fields)
        return list(seen.values())


def _segment_sort_key(segment: Segment, field_name: str) -> tuple[Any, str]:
    if field_name == "name":
        return (segment.name or "", segment.id)
    if field_name in ("created", "updated"):
        return (getattr(segment, field_name), segment.id)
    return (segment.id, segment.id)


def _segment_record(segment: Segment) -> dict[str, Any]:
    return {
        "id": segment.id,
        "name": segment.name,
        "created": epoch_to_datetime(segment.created),
        "updated": epoch_to_datetime(segment.updated),
        "is_active": segment.is_active,
        "is_starred": segment.is_starred,
    }


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
