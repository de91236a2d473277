"""JSON:API resource objects for segments and tags (API-NOTES §3, §4); profiles: `profile_render`."""

from __future__ import annotations

from typing import Any

from ..backend.models import Segment, Tag, TagGroup
from ..spec.dates import render_epoch
from .request import Context


def relationship_links(ctx: Context, path: str, name: str) -> dict[str, str]:
    return {
        "self": ctx.link(f"{path}/relationships/{name}"),
        "related": ctx.link(f"{path}/{name}"),
    }


def segment_attributes(
    segment: Segment, fields: tuple[str, ...] | None, profile_count: int | None
) -> dict[str, Any]:
    attributes: dict[str, Any] = {
        "name": segment.name,
        "definition": segment.definition,
        "created": render_epoch(segment.created),
        "updated": render_epoch(segment.updated),
        "is_active": segment.is_active,
        "is_processing": segment.is_processing,
        "is_starred": segment.is_starred,
    }
    if profile_count is not None:
        attributes["profile_count"] = profile_count
    if fields is None:
        return attributes
    chosen: dict[str, Any] = {}
    for name in fields:
        if name == "definition.condition_groups":
            definition = segment.definition or {}
            chosen["definition"] = {"condition_groups": definition.get("condition_groups", [])}
        elif name in attributes:
            chosen[name] = attributes[name]
    return chosen


def segment_resource(
    ctx: Context,
    segment: Segment,
    fields: tuple[str, ...] | None = None,
    include: tuple[str, ...] = (),
    profile_count: int | None = None,
) -> dict[str, Any]:
    path = f"/api/segments/{segment.id}"
    tags: dict[str, Any] = {"links": relationship_links(ctx, path, "tags")}
    if "tags" in include:
        tags = {"data": [{"type": "tag", "id": t} for t in segment.tag_ids], **tags}
    relationships: dict[str, Any] = {
        "profiles": {"links": relationship_links(ctx, path, "profiles")},
        "tags": tags,
    }
    if ctx.flows:
        flows: dict[str, Any] = {"links": relationship_links(ctx, path, "flow-triggers")}
        if "flow-triggers" in include:
            flows = {"data": [], **flows}
        relationships["flow-triggers"] = flows
    return {
        "type": "segment",
        "id": segment.id,
        "attributes": segment_attributes(segment, fields, profile_count),
        "relationships": relationships,
        "links": {"self": ctx.link(path)},
    }


def tag_resource(
    ctx: Context,
    tag: Tag,
    fields: tuple[str, ...] | None = None,
    tag_group: TagGroup | None = None,
) -> dict[str, Any]:
    """A tag; `tag_group` adds its `tag-group` relationship data (for `include=tag-group`)."""
    path = f"/api/tags/{tag.id}"
    attributes = {"name": tag.name}
    if fields is not None:
        attributes = {k: v for k, v in attributes.items() if k in fields}
    relationships: dict[str, Any] = {
        name: {"links": relationship_links(ctx, path, name)}
        for name in ("tag-group", "lists", "segments", "campaigns", "flows")
    }
    if tag_group is not None:
        data = {"type": "tag-group", "id": tag_group.id}
        relationships["tag-group"] = {"data": data, **relationships["tag-group"]}
    return {
        "type": "tag",
        "id": tag.id,
        "attributes": attributes,
        "relationships": relationships,
        "links": {"self": ctx.link(path)},
    }


def tag_group_resource(
    ctx: Context, group: TagGroup, fields: tuple[str, ...] | None = None
) -> dict[str, Any]:
    path = f"/api/tag-groups/{group.id}"
    attributes: dict[str, Any] = {
        "name": group.name,
        "exclusive": group.exclusive,
        "default": group.default,
    }
    if fields is not None:
        attributes = {k: v for k, v in attributes.items() if k in fields}
    return {
        "type": "tag-group",
        "id": group.id,
        "attributes": attributes,
        "relationships": {"tags": {"links": relationship_links(ctx, path, "tags")}},
        "links": {"self": ctx.link(path)},
    }
