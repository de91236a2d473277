"""Handlers of tags: get_tags, get_tag and get_tag_relationships_segments (API-NOTES §5.10).

Every tag of the emulated account belongs to its one Default Tag Group, which `include=tag-group`
adds to `included`.
"""

from __future__ import annotations

from typing import Any

import orjson

from ..backend.models import Tag
from . import cursors, filters, paging
from .base import Responses, page_links
from .errors import invalid_cursor
from .render import tag_group_resource, tag_resource
from .request import Request, Result


class TagResponses(Responses):
    """The account's tags and the segments that carry them."""

    def get_tags(self, request: Request) -> Result:
        """The account's tags, `name`-filtered and sorted, 50 a page."""
        query = request.query
        sort = query.sort or "id"
        scope = f"tags:{sort}:{query.filter_scope()}"
        cursor = cursors.decode(query.cursor, scope) if query.cursor is not None else None
        by_key = {
            _sort_key(tag, sort.lstrip("-")): tag
            for tag in self.account.tags.values()
            if not query.conditions or filters.matches(query.conditions, {"name": tag.name})
        }
        try:
            page = paging.list_page(
                sorted(by_key), sort.startswith("-"), query.page_size, cursor, scope
            )
        except TypeError:
            raise invalid_cursor() from None
        tags = [by_key[key] for key in page.keys]
        document: dict[str, Any] = {
            "data": self._resources(request, tags),
            "links": page_links(request, page),
        }
        self._add_included(request, document, tags)
        return 200, orjson.dumps(document)

    def get_tag(self, request: Request) -> Result:
        """One tag; 404 for an id the account does not hold."""
        tag = self.tag(request)
        document: dict[str, Any] = {
            "data": self._resources(request, [tag])[0],
            "links": {"self": request.self_link},
        }
        self._add_included(request, document, [tag])
        return 200, orjson.dumps(document)

    def get_tag_relationships_segments(self, request: Request) -> Result:
        """The ids of the segments that carry a tag, in one page."""
        tag = self.tag(request)
        segment_ids = self.account.tag_segment_ids(tag.id)
        data = [{"type": "segment", "id": segment_id} for segment_id in segment_ids]
        return 200, orjson.dumps({"data": data, "links": request.unpaged_links})

    def _resources(self, request: Request, tags: list[Tag]) -> list[dict[str, Any]]:
        group = self.account.tag_group if "tag-group" in request.query.include else None
        fields = request.query.fields.get("tag")
        return [tag_resource(request.ctx, tag, fields, group) for tag in tags]

    def _add_included(self, request: Request, document: dict[str, Any], tags: list[Tag]) -> None:
        if "tag-group" not in request.query.include:
            return
        fields = request.query.fields.get("tag-group")
        group = self.account.tag_group
        document["included"] = [tag_group_resource(request.ctx, group, fields)] if tags else []


def _sort_key(tag: Tag, field_name: str) -> tuple[str, str]:
    return (tag.name, tag.id) if field_name == "name" else (tag.id, tag.id)
