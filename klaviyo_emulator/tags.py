"""get_tags, get_tag and get_tag_relationships_segments (API-NOTES §5.10).

Every tag of the emulated account belongs to its one Default Tag Group, which `include=tag-group`
adds to `included`.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import orjson

from . import cursor as cursors
from . import filters, paging
from . import settings as s
from .errors import invalid_cursor, not_found
from .model import Tag
from .render import tag_group_resource, tag_resource
from .store import NotFound, Store

if TYPE_CHECKING:
    from .api import Request


def get_tags(store: Store, request: Request) -> tuple[int, bytes]:
    """The account's tags, `name`-filtered and sorted, 50 a page."""
    query = request.query
    sort = query.sort or "id"
    scope = f"tags:{sort}:{query.filter_scope()}"
    cursor = cursors.decode(query.cursor, scope) if query.cursor is not None else None
    by_key = {
        _sort_key(tag, sort.lstrip("-")): tag
        for tag in store.tags.values()
        if not query.conditions or filters.matches(query.conditions, {"name": tag.name})
    }
    try:
        page = paging.list_page(
            sorted(by_key),
            sort.startswith("-"),
            query.page_size or s.TAGS_PAGE_SIZE,
            cursor,
            scope,
        )
    except TypeError:
        raise invalid_cursor() from None
    tags = [by_key[key] for key in page.keys]
    document: dict[str, Any] = {
        "data": _resources(store, request, tags),
        "links": {
            "self": request.self_link,
            "next": request.page_link(page.next),
            "prev": request.page_link(page.prev),
        },
    }
    _add_included(store, request, document, tags)
    return 200, orjson.dumps(document)


def get_tag(store: Store, request: Request) -> tuple[int, bytes]:
    """One tag; 404 for an id the account does not hold."""
    tag = _tag(store, request)
    document: dict[str, Any] = {
        "data": _resources(store, request, [tag])[0],
        "links": {"self": request.self_link},
    }
    _add_included(store, request, document, [tag])
    return 200, orjson.dumps(document)


def get_tag_relationships_segments(store: Store, request: Request) -> tuple[int, bytes]:
    """The ids of the segments that carry a tag, in one page."""
    tag = _tag(store, request)
    data = [{"type": "segment", "id": segment_id} for segment_id in store.tag_segment_ids(tag.id)]
    return 200, orjson.dumps({"data": data, "links": request.unpaged_links})


def _tag(store: Store, request: Request) -> Tag:
    try:
        return store.tag(request.tag_id or "")
    except NotFound:
        raise not_found(f"A tag with id {request.tag_id} does not exist.") from None


def _resources(store: Store, request: Request, tags: list[Tag]) -> list[dict[str, Any]]:
    group = store.tag_group if "tag-group" in request.query.include else None
    fields = request.query.fields.get("tag")
    return [tag_resource(request.ctx, tag, fields, group) for tag in tags]


def _add_included(
    store: Store, request: Request, document: dict[str, Any], tags: list[Tag]
) -> None:
    if "tag-group" not in request.query.include:
        return
    fields = request.query.fields.get("tag-group")
    document["included"] = (
        [tag_group_resource(request.ctx, store.tag_group, fields)] if tags else []
    )


def _sort_key(tag: Tag, field_name: str) -> tuple[str, str]:
    return (tag.name, tag.id) if field_name == "name" else (tag.id, tag.id)
