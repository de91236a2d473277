"""Handlers of a segment's members: get_segment_profiles and get_segment_relationships_profiles
(API-NOTES §5.6-5.7)."""

from __future__ import annotations

from typing import Any, cast

import orjson

from ..backend.account import Account
from ..backend.memberships import INDEX_MASK, key_epoch
from ..backend.models import Segment
from ..spec.dates import epoch_to_datetime
from . import cursors, filters, paging
from .base import Responses, page_links
from .errors import invalid_cursor
from .profile_render import ProfileFragments, profile_json, profile_template, relationship_names
from .request import Request, Result


class MemberResponses(Responses):
    """Pages of a segment's members; rendered profiles are cached by response shape."""

    def __init__(self, account: Account) -> None:
        super().__init__(account)
        self.fragments = ProfileFragments()

    def get_segment_profiles(self, request: Request) -> Result:
        segment = self.segment(request)
        page = self._member_page(request, segment, "profiles")
        query, ctx = request.query, request.ctx
        fields = query.fields.get("profile")
        with_joined = fields is None or "joined_group_at" in fields
        shape = (
            ctx.base,
            ctx.slash,
            ctx.push_tokens,
            ctx.profile_trees,
            fields,
            query.additional,
            with_joined,
        )
        cache, mutated = self.fragments, self.account.mutated_profiles()
        base = cache.shape_base(shape)
        template = profile_template(ctx, relationship_names(ctx, conversations=False))
        chunks = cache.get_many([base | key for key in page.keys])
        for position, key in enumerate(page.keys):
            fresh = mutated and (key & INDEX_MASK) in mutated
            if chunks[position] is None or fresh:
                joined = key_epoch(key) if with_joined else None
                chunk = profile_json(self.account, request, template, key & INDEX_MASK, joined)
                if not fresh:
                    cache.put(base | key, chunk)
                chunks[position] = chunk
        links = orjson.dumps(page_links(request, page))
        data = b",".join(cast("list[bytes]", chunks))
        return 200, b'{"data":[' + data + b'],"links":' + links + b"}"

    def get_segment_relationships_profiles(self, request: Request) -> Result:
        segment = self.segment(request)
        page = self._member_page(request, segment, "relationships")
        profile_id = self.account.profile_id
        data = [{"type": "profile", "id": profile_id(key & INDEX_MASK)} for key in page.keys]
        return 200, orjson.dumps({"data": data, "links": page_links(request, page)})

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
        attributes = self.account.profile_attributes(index)
        return {
            "joined_group_at": epoch_to_datetime(key_epoch(key)),
            "email": attributes.get("email"),
            "phone_number": attributes.get("phone_number"),
            "profile_id": self.account.profile_id(index),
            "push_token": None,
            "_kx": None,
        }
