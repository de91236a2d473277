"""Profiles as JSON:API resource objects (API-NOTES §4.2), for segment members and get_profiles.

Pages of profiles are the emulator's bulk output, so a resource is spliced from bytes: the
encoded attributes (generated straight to JSON for the usual shape) between a template that
holds everything else. Only a resource whose relationships carry data of its own (included
segments) is built as a dict.
"""

from __future__ import annotations

from collections.abc import Hashable, Mapping, Sequence
from typing import Any

import orjson

from ..backend.account import Account
from ..spec.dates import render_epoch
from .render import relationship_links
from .request import Context, Request


def relationship_names(ctx: Context, conversations: bool) -> tuple[str, ...]:
    """A profile's relationships at the request's revision, in the order the API renders them.

    Args:
        ctx: The request's context.
        conversations: The operation's profiles may have `conversations` (get_profiles and
            get_profile, from the revision that added it; segment members never do).
    """
    names = ["lists", "segments"]
    if ctx.push_tokens:
        names.append("push-tokens")
    if conversations and ctx.conversations:
        names.append("conversations")
    return tuple(names)


def profile_attributes(account: Account, request: Request, index: int) -> dict[str, Any]:
    """A profile's attributes in the request's shape: `additional-fields`, then `fields`."""
    query = request.query
    attributes = account.profile_attributes(index)
    if query.additional:
        attributes = dict(attributes)
        trees = request.ctx.profile_trees
        factory = account.factory
        if "subscriptions" in query.additional:
            attributes["subscriptions"] = factory.subscriptions(index, trees)
        if "predictive_analytics" in query.additional:
            attributes["predictive_analytics"] = factory.predictive_analytics(index, trees)
    fields = query.fields.get("profile")
    if fields is not None:
        fields = tuple(f for f in fields if f != "joined_group_at")
    return select_profile_attributes(attributes, fields)


def profile_json(
    account: Account, request: Request, template: list[bytes], index: int, joined: int | None
) -> bytes:
    """A profile resource as JSON, spliced into the response's `profile_template`.

    Args:
        account: The account holding the profile.
        request: The request, whose query shapes the attributes.
        template: `profile_template` of the response.
        index: The profile's index.
        joined: `joined_group_at` (epoch seconds) of a segment member; None for a profile.
    """
    query = request.query
    default_shape = query.fields.get("profile") is None and not query.additional
    if default_shape and not account.is_mutated_profile(index):
        # A generated profile in the usual shape: straight to JSON, no dict in between.
        profile_id, created = account.factory.identity(index)
        encoded = account.factory.attributes_json(index, created)
        return profile_resource_json(template, profile_id, encoded, joined)
    encoded = orjson.dumps(profile_attributes(account, request, index))
    return profile_resource_json(template, account.profile_id(index), encoded, joined)


def profile_resource(
    account: Account,
    request: Request,
    index: int,
    names: Sequence[str],
    data: Mapping[str, list[dict[str, str]]],
) -> bytes:
    """A profile resource as JSON whose relationships named in `data` carry that linkage."""
    ctx = request.ctx
    profile_id = account.profile_id(index)
    path = f"/api/profiles/{profile_id}"
    relationships: dict[str, Any] = {}
    for name in names:
        links = {"links": relationship_links(ctx, path, name)}
        relationships[name] = {"data": data[name], **links} if name in data else links
    attributes = orjson.dumps(profile_attributes(account, request, index))
    resource = {
        "type": "profile",
        "id": profile_id,
        "attributes": orjson.Fragment(attributes),
        "relationships": relationships,
        "links": {"self": ctx.link(path)},
    }
    return orjson.dumps(resource)


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
_PROFILE_TEMPLATES: dict[tuple[Context, tuple[str, ...], frozenset[str]], list[bytes]] = {}


def profile_template(
    ctx: Context, names: tuple[str, ...], empty: frozenset[str] = frozenset()
) -> list[bytes]:
    """The JSON after a profile's attributes, split where the profile id goes.

    Args:
        ctx: The request's context.
        names: The profile's relationships (`relationship_names`).
        empty: Relationships rendered with empty linkage data (`"data": []`): included types
            the emulated account has none of.

    The first piece starts with the `}` that closes the attributes.
    """
    cache_key = (ctx, names, empty)
    template = _PROFILE_TEMPLATES.get(cache_key)
    if template is None:
        path = f"/api/profiles/{_PID}"
        relationships: dict[str, Any] = {}
        for name in names:
            links = {"links": relationship_links(ctx, path, name)}
            relationships[name] = {"data": [], **links} if name in empty else links
        rest = orjson.dumps({"relationships": relationships, "links": {"self": ctx.link(path)}})
        template = (b"}," + rest[1:]).split(b"\\u0000")
        if len(_PROFILE_TEMPLATES) > 64:
            _PROFILE_TEMPLATES.clear()
        _PROFILE_TEMPLATES[cache_key] = template
    return template


def profile_resource_json(
    template: list[bytes], profile_id: str, attributes_json: bytes, joined_epoch: int | None
) -> bytes:
    """A profile resource as JSON, spliced around its encoded attributes.

    Args:
        template: `profile_template` of the response.
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
