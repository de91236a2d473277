"""The operations: each turns a validated request into (status, JSON body bytes)."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, cast

import orjson

from . import cursor as cursors
from . import filters, paging
from . import settings as s
from .errors import ApiError, invalid, invalid_cursor, not_found
from .memberships import INDEX_MASK, key_epoch
from .model import Segment
from .params import Query
from .render import (
    Context,
    ProfileFragments,
    profile_resource_json,
    profile_template,
    segment_resource,
    select_profile_attributes,
    tag_resource,
)
from .store import NotFound, Store
from .tags import get_tag, get_tag_relationships_segments, get_tags
from .timefmt import epoch_to_datetime
from .writes import create_segment, delete_segment, update_segment


@dataclass
class Request:
    """What an operation needs to know about the request."""

    ctx: Context
    path: str  # as received, without the query string
    raw_query: str
    query: Query
    segment_id: str | None
    body: bytes
    tag_id: str | None = None

    @property
    def self_link(self) -> str:
        query = f"?{self.raw_query}" if self.raw_query else ""
        return f"{self.ctx.base}{self.path}{query}"

    @property
    def unpaged_links(self) -> dict[str, str | None]:
        """`links` of a collection served in one page (API-NOTES §3: next and prev as null)."""
        return {"self": self.self_link, "next": None, "prev": None}

    def page_link(self, token: str | None) -> str | None:
        if token is None:
            return None
        return paging.page_link(self.ctx.base, self.path, self.query.pairs, token)


Result = tuple[int, bytes]


class Operations:
    """The emulated endpoints over one store."""

    def __init__(self, store: Store) -> None:
        self.store = store
        self.fragments = ProfileFragments()
        self.handlers: dict[str, Callable[[Request], Result]] = {
            s.GET_SEGMENTS: self.get_segments,
            s.GET_SEGMENT: self.get_segment,
            s.GET_SEGMENT_PROFILES: self.get_segment_profiles,
            s.GET_SEGMENT_RELATIONSHIPS_PROFILES: self.get_segment_relationships_profiles,
            s.GET_SEGMENT_TAGS: self.get_segment_tags,
            s.GET_SEGMENT_RELATIONSHIPS_TAGS: self.get_segment_relationships_tags,
            s.CREATE_SEGMENT: lambda request: create_segment(self.store, request),
            s.UPDATE_SEGMENT: lambda request: update_segment(self.store, request),
            s.DELETE_SEGMENT: lambda request: delete_segment(self.store, request),
            s.GET_SEGMENT_FLOW_TRIGGERS: self.get_segment_flow_triggers,
            s.GET_SEGMENT_RELATIONSHIPS_FLOW_TRIGGERS: self.get_segment_flow_triggers,
            s.GET_TAGS: lambda request: get_tags(self.store, request),
            s.GET_TAG: lambda request: get_tag(self.store, request),
            s.GET_TAG_RELATIONSHIPS_SEGMENTS: lambda request: get_tag_relationships_segments(
                self.store, request
            ),
        }

    def run(self, operation: str, request: Request) -> Result:
        with self.store.lock:
            return self.handlers[operation](request)

    # --- segments -------------------------------------------------------------------------------

    def get_segments(self, request: Request) -> Result:
        query = request.query
        sort = query.sort or "id"
        field_name = sort.lstrip("-")
        scope = f"segments:{sort}:{query.filter_scope()}"
        cursor = cursors.decode(query.cursor, scope) if query.cursor is not None else None
        by_key = {
            _segment_sort_key(segment, field_name): segment
            for segment in self.store.segments.values()
            if not query.conditions or filters.matches(query.conditions, _segment_record(segment))
        }
        ordered = sorted(by_key)
        try:
            page = paging.list_page(
                ordered,
                sort.startswith("-"),
                query.page_size or s.SEGMENTS_PAGE_SIZE,
                cursor,
                scope,
            )
        except TypeError:
            raise invalid_cursor() from None
        segments = [by_key[key] for key in page.keys]
        fields = query.fields.get("segment")
        document: dict[str, Any] = {
            "data": [
                segment_resource(request.ctx, segment, fields, query.include)
                for segment in segments
            ],
            "links": self._links(request, page),
        }
        if query.include:
            document["included"] = self._included(request, segments)
        return 200, orjson.dumps(document)

    def get_segment(self, request: Request) -> Result:
        segment = self._segment(request)
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

    def _included(self, request: Request, segments: list[Segment]) -> list[dict[str, Any]]:
        if "tags" not in request.query.include:
            return []
        fields = request.query.fields.get("tag")
        seen: dict[str, dict[str, Any]] = {}
        for segment in segments:
            for tag_id in segment.tag_ids:
                if tag_id not in seen and tag_id in self.store.tags:
                    seen[tag_id] = tag_resource(request.ctx, self.store.tags[tag_id], fields)
        return list(seen.values())

    # --- tags -----------------------------------------------------------------------------------

    def get_segment_tags(self, request: Request) -> Result:
        segment = self._segment(request)
        fields = request.query.fields.get("tag")
        data = [
            tag_resource(request.ctx, self.store.tags[tag_id], fields)
            for tag_id in segment.tag_ids
            if tag_id in self.store.tags
        ]
        return 200, orjson.dumps({"data": data, "links": request.unpaged_links})

    def get_segment_relationships_tags(self, request: Request) -> Result:
        segment = self._segment(request)
        data = [{"type": "tag", "id": t} for t in segment.tag_ids if t in self.store.tags]
        return 200, orjson.dumps({"data": data, "links": request.unpaged_links})

    # --- flow triggers --------------------------------------------------------------------------

    def get_segment_flow_triggers(self, request: Request) -> Result:
        """Both flow-trigger operations: the emulated account has no flows, so none is listed."""
        self._segment(request)
        return 200, orjson.dumps({"data": [], "links": request.unpaged_links})

    # --- members --------------------------------------------------------------------------------

    def get_segment_profiles(self, request: Request) -> Result:
        segment = self._segment(request)
        page = self._member_page(request, segment, "profiles")
        query, ctx = request.query, request.ctx
        fields = query.fields.get("profile")
        with_joined = fields is None or "joined_group_at" in fields
        shape = (ctx.base, ctx.slash, ctx.newer, fields, query.additional, with_joined)
        cache, mutated = self.fragments, self.store.mutated_profiles()
        base, template = cache.shape_base(shape), profile_template(ctx)
        chunks = cache.get_many([base | key for key in page.keys])
        for position, key in enumerate(page.keys):
            fresh = mutated and (key & INDEX_MASK) in mutated
            if chunks[position] is None or fresh:
                chunk = self._profile_json(request, template, key, with_joined)
                if not fresh:
                    cache.put(base | key, chunk)
                chunks[position] = chunk
        links = orjson.dumps(self._links(request, page))
        data = b",".join(cast("list[bytes]", chunks))
        return 200, b'{"data":[' + data + b'],"links":' + links + b"}"

    def get_segment_relationships_profiles(self, request: Request) -> Result:
        segment = self._segment(request)
        page = self._member_page(request, segment, "relationships")
        profile_id = self.store.profile_id
        data = [{"type": "profile", "id": profile_id(key & INDEX_MASK)} for key in page.keys]
        return 200, orjson.dumps({"data": data, "links": self._links(request, page)})

    def _member_page(self, request: Request, segment: Segment, kind: str) -> paging.Page:
        query = request.query
        scope = f"{kind}:{segment.id}:{query.sort or ''}:{query.filter_scope()}"
        cursor = cursors.decode(query.cursor, scope) if query.cursor is not None else None
        if cursor is not None and not (
            len(cursor.position) == 1 and type(cursor.position[0]) is int
        ):
            raise invalid_cursor()
        others = [c for c in query.conditions if c.field != "joined_group_at"]
        predicate = None
        if others:

            def predicate(key: int) -> bool:
                return filters.matches(others, self._member_record(key))

        return paging.member_page(
            segment.members,
            query.conditions,
            query.sort == "-joined_group_at",
            query.page_size,
            cursor,
            scope,
            predicate,
        )

    def _member_record(self, key: int) -> dict[str, Any]:
        index = key & INDEX_MASK
        attributes = self.store.profile_attributes(index)
        return {
            "joined_group_at": epoch_to_datetime(key_epoch(key)),
            "email": attributes.get("email"),
            "phone_number": attributes.get("phone_number"),
            "profile_id": self.store.profile_id(index),
            "push_token": None,
            "_kx": None,
        }

    def _profile_json(
        self, request: Request, template: list[bytes], key: int, with_joined: bool
    ) -> bytes:
        index = key & INDEX_MASK
        query, store = request.query, self.store
        joined = key_epoch(key) if with_joined else None
        default_shape = query.fields.get("profile") is None and not query.additional
        if default_shape and not store.is_mutated_profile(index):
            # A generated profile in the usual shape: straight to JSON, no dict in between.
            profile_id, created = store.factory.identity(index)
            encoded = store.factory.attributes_json(index, created)
            return profile_resource_json(template, profile_id, encoded, joined)
        encoded = orjson.dumps(self._profile_attributes(request, index))
        return profile_resource_json(template, store.profile_id(index), encoded, joined)

    def _profile_attributes(self, request: Request, index: int) -> dict[str, Any]:
        query = request.query
        attributes = self.store.profile_attributes(index)
        if query.additional:
            attributes = dict(attributes)
            newer = request.ctx.newer
            if "subscriptions" in query.additional:
                attributes["subscriptions"] = self.store.factory.subscriptions(index, newer)
            if "predictive_analytics" in query.additional:
                attributes["predictive_analytics"] = self.store.factory.predictive_analytics(
                    index, newer
                )
        fields = query.fields.get("profile")
        if fields is not None:
            fields = tuple(f for f in fields if f != "joined_group_at")
        return select_profile_attributes(attributes, fields)

    # --- helpers --------------------------------------------------------------------------------

    def _segment(self, request: Request) -> Segment:
        try:
            return self.store.segment(request.segment_id or "")
        except NotFound:
            raise not_found(f"A segment with id {request.segment_id} does not exist.") from None

    def _links(self, request: Request, page: paging.Page) -> dict[str, str | None]:
        return {
            "self": request.self_link,
            "next": request.page_link(page.next),
            "prev": request.page_link(page.prev),
        }


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


__all__ = ["ApiError", "Operations", "Request", "invalid"]
