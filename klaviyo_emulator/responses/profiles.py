"""Handlers of the account's profiles: get_profiles and get_profile.

A profile renders as it does among a segment's members (the same attributes, the same
`updated`), without `joined_group_at`. The emulated account has no lists, push tokens or
conversations: including them adds empty linkage data (`"data": []`) and nothing to
`included`, as `include=flow-triggers` does on segments. `include=segments` links and includes
the segments the profile is a member of.
"""

from __future__ import annotations

from typing import Any

import orjson

from ..backend.account import Account, NotFound
from .base import Responses, page_links
from .errors import not_found
from .profile_pages import Listings, profile_page
from .profile_render import profile_json, profile_resource, profile_template, relationship_names
from .render import segment_resource
from .request import Request, Result


class ProfileResponses(Responses):
    """Every profile of the account, listed, sorted and filtered, or one by id."""

    def __init__(self, account: Account) -> None:
        super().__init__(account)
        self.listings = Listings()

    def get_profiles(self, request: Request) -> Result:
        query = request.query
        scope = f"profiles:{query.sort or 'id'}:{query.filter_scope()}"
        page = profile_page(self.account, query, scope, self.listings)
        data, included = self._render(request, [key[-1] for key in page.keys])
        links = orjson.dumps(page_links(request, page))
        body = b'{"data":[' + b",".join(data) + b'],"links":' + links
        if query.include:
            body += b',"included":' + orjson.dumps(included)
        return 200, body + b"}"

    def get_profile(self, request: Request) -> Result:
        try:
            index = self.account.profile_index(request.profile_id or "")
        except NotFound:
            raise not_found(f"A profile with id {request.profile_id} does not exist.") from None
        (data,), included = self._render(request, [index])
        body = b'{"data":' + data + b',"links":' + orjson.dumps({"self": request.self_link})
        if request.query.include:
            body += b',"included":' + orjson.dumps(included)
        return 200, body + b"}"

    def _render(self, request: Request, indexes: list[int]) -> tuple[list[bytes], list[Any]]:
        """The profiles' resources as JSON, and the resources they include."""
        ctx, include = request.ctx, request.query.include
        names = relationship_names(ctx, conversations=True)
        # `include=conversation` (2026-04-15) has no relationship to fill
        empty = frozenset(name for name in include if name in names and name != "segments")
        if "segments" not in include:
            template = profile_template(ctx, names, empty)
            return [profile_json(self.account, request, template, i, None) for i in indexes], []
        data: list[bytes] = []
        segments: dict[str, Any] = {}
        for index in indexes:
            segment_ids = self.account.profile_segment_ids(index)
            linkage: dict[str, list[dict[str, str]]] = {name: [] for name in empty}
            linkage["segments"] = [{"type": "segment", "id": sid} for sid in segment_ids]
            data.append(profile_resource(self.account, request, index, names, linkage))
            segments.update((sid, None) for sid in segment_ids)
        fields = request.query.fields.get("segment")
        included = [segment_resource(ctx, self.account.segment(sid), fields) for sid in segments]
        return data, included
