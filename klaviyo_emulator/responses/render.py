"""JSON:API resource objects for segments, tags and profiles (API-NOTES §3, §4)."""

from __future__ import annotations

from collections.abc import Hashable
from typing import Any

import orjson

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


def select_profile_attributes(
    document: dict[str, Any], fields: tuple[str, ...] | None
) -> dict[str, Any]:
    """Apply a sparse fieldset (dotted names select inside objects) to default attributes."""
    if fields is None:
        return document
    chosen: dict[str, Any] = {}
    for name in fields:
        head, _, rest = name.partition(".")
        if head not in document:
            continue
        if not rest:
            chosen[head] = document[head]
            continue
        _select_path(document[head], rest.split("."), chosen.setdefault(head, {}))
    return chosen


def _select_path(source: Any, parts: list[str], target: dict[str, Any]) -> None:
    if not isinstance(source, dict) or parts[0] not in source:
        return
    value = source[parts[0]]
    if len(parts) == 1:
        target[parts[0]] = value
    elif isinstance(value, dict):
        _select_path(value, parts[1:], target.setdefault(parts[0], {}))
    else:
        target[parts[0]] = None


class ProfileFragments:
    """Rendered profile resources by (membership key, response shape).

    The key holds joined_group_at, so a re-join renders afresh; profiles changed through the
    emulator are never cached. A shape (everything besides the profile that changes its JSON)
    gets a small number, so an entry is one int: `shape number << 64 | key`, cheap to hash.
    Two generations approximate LRU at the cost of a dict lookup: when the young one fills up
    it becomes the old one, and hits in the old one are promoted.
    """

    GENERATION_SIZE = 100_000
    MAX_SHAPES = 64

    def __init__(self) -> None:
        self._young: dict[int, bytes] = {}
        self._old: dict[int, bytes] = {}
        self._shapes: dict[Hashable, int] = {}

    def clear(self) -> None:
        self._young, self._old, self._shapes = {}, {}, {}

    def shape_base(self, shape: Hashable) -> int:
        """The number to add to a membership key to make the entry of a shape."""
        number = self._shapes.get(shape)
        if number is None:
            if len(self._shapes) >= self.MAX_SHAPES:
                self.clear()
            number = self._shapes[shape] = len(self._shapes) + 1
        return number << 64

    def get_many(self, entries: list[int]) -> list[bytes | None]:
        """The fragments of `entries` in order, None where there is none."""
        young = self._young
        found = [young.get(entry) for entry in entries]
        if self._old and None in found:
            old = self._old
            for position, entry in enumerate(entries):
                if found[position] is None and entry in old:
                    found[position] = fragment = old[entry]
                    self.put(entry, fragment)
        return found

    def put(self, entry: int, fragment: bytes) -> None:
        if len(self._young) >= self.GENERATION_SIZE:
            self._old, self._young = self._young, {}
        self._young[entry] = fragment


_PID = "\x00"
_PROFILE_TEMPLATES: dict[Context, list[bytes]] = {}


def profile_template(ctx: Context) -> list[bytes]:
    """The JSON after a profile's attributes, split where the profile id goes.

    The first piece starts with the `}` that closes the attributes.
    """
    template = _PROFILE_TEMPLATES.get(ctx)
    if template is None:
        path = f"/api/profiles/{_PID}"
        relationships = {
            "lists": {"links": relationship_links(ctx, path, "lists")},
            "segments": {"links": relationship_links(ctx, path, "segments")},
        }
        if ctx.push_tokens:
            relationships["push-tokens"] = {"links": relationship_links(ctx, path, "push-tokens")}
        rest = orjson.dumps({"relationships": relationships, "links": {"self": ctx.link(path)}})
        template = (b"}," + rest[1:]).split(b"\\u0000")
        if len(_PROFILE_TEMPLATES) > 64:
            _PROFILE_TEMPLATES.clear()
        _PROFILE_TEMPLATES[ctx] = template
    return template


def profile_resource_json(
    template: list[bytes], profile_id: str, attributes_json: bytes, joined_epoch: int | None
) -> bytes:
    """A profile resource as JSON, spliced around its encoded attributes.

    Args:
        template: `profile_template(ctx)` of the response.
        profile_id: The profile's id.
        attributes_json: Its attributes as a JSON object.
        joined_epoch: `joined_group_at` to add as the last attribute; None leaves it out.
    """
    encoded_id = profile_id.encode()
    tail = encoded_id.join(template)
    head = b'{"type":"profile","id":"' + encoded_id + b'","attributes":'
    if joined_epoch is None:
        return b"".join((head, attributes_json, tail[1:]))
    joined = f'"joined_group_at":"{render_epoch(joined_epoch)}"'.encode()
    if attributes_json == b"{}":
        return b"".join((head, b"{", joined, tail))
    return b"".join((head, attributes_json[:-1], b",", joined, tail))
