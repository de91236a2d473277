"""Rows of `segments`, `tags` and `segment_tags`: plain dicts, from the segment list."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from dlt.common.schema.typing import TTableSchemaColumns

from ..dates import format_state_datetime, parse_datetime
from ..typing import Resource
from .values import dlt_json


def segment_row(segment: Resource) -> dict[str, Any]:
    """A `segments` row from a segment resource; `deleted_at` is null for a listed segment."""
    attributes = segment.get("attributes") or {}
    return {
        "id": segment["id"],
        "name": attributes.get("name"),
        "definition": dlt_json(attributes.get("definition")),
        "created": parse_datetime(attributes.get("created")),
        "updated": parse_datetime(attributes.get("updated")),
        "is_active": attributes.get("is_active"),
        "is_processing": attributes.get("is_processing"),
        "is_starred": attributes.get("is_starred"),
        "deleted_at": None,
    }


SEGMENT_COLUMNS: TTableSchemaColumns = {
    "id": {"data_type": "text", "nullable": False},
    "name": {"data_type": "text"},
    "definition": {"data_type": "json"},
    "created": {"data_type": "timestamp", "timezone": True},
    "updated": {"data_type": "timestamp", "timezone": True},
    "is_active": {"data_type": "bool"},
    "is_processing": {"data_type": "bool"},
    "is_starred": {"data_type": "bool"},
    "deleted_at": {"data_type": "timestamp", "timezone": True},
}


_SEGMENT_DATETIMES = ("created", "updated", "deleted_at")


def segment_state_row(row: dict[str, Any]) -> dict[str, Any]:
    """A `segments` row as kept in pipeline state (datetimes as ISO text), for tombstones."""
    return {
        name: format_state_datetime(value) if name in _SEGMENT_DATETIMES and value else value
        for name, value in row.items()
    }


def segment_tombstone(state_row: dict[str, Any], deleted_at: Any) -> dict[str, Any]:
    """The last `segments` row emitted for a segment, marked deleted at `deleted_at`.

    A merge replaces whole rows, so the tombstone repeats every attribute last seen.
    """
    row = {
        name: parse_datetime(value) if name in _SEGMENT_DATETIMES else value
        for name, value in state_row.items()
    }
    row["deleted_at"] = deleted_at
    return row


def segment_tag_ids(segment: Resource) -> list[str] | None:
    """Ids of the tags linked to a segment, from `relationships.tags.data` (with include=tags).

    Returns None when the answer carries no linkage at all, which is not the same as no tags.
    """
    relationship = (segment.get("relationships") or {}).get("tags") or {}
    if not isinstance(relationship.get("data"), list):
        return None
    return [link["id"] for link in relationship["data"] if link.get("id")]


def tag_row(tag: Resource) -> dict[str, Any]:
    """A `tags` row from an included tag resource."""
    return {"id": tag["id"], "name": (tag.get("attributes") or {}).get("name")}


TAG_COLUMNS: TTableSchemaColumns = {
    "id": {"data_type": "text", "nullable": False},
    "name": {"data_type": "text"},
}

SEGMENT_TAG_DELETED = "deleted"
"""Hard-delete flag of `segment_tags`: true rows remove a link that no longer exists."""

SEGMENT_TAG_COLUMNS: TTableSchemaColumns = {
    "segment_id": {"data_type": "text", "nullable": False},
    "tag_id": {"data_type": "text", "nullable": False},
    SEGMENT_TAG_DELETED: {"data_type": "bool", "hard_delete": True},
}


def segment_tag_row(segment_id: str, tag_id: str, deleted: bool = False) -> dict[str, Any]:
    """A `segment_tags` row; `deleted=True` makes dlt delete the link from the destination."""
    return {"segment_id": segment_id, "tag_id": tag_id, SEGMENT_TAG_DELETED: deleted}


def segment_tag_changes(
    known: Mapping[str, Sequence[str]],
    current: Mapping[str, Sequence[str]],
    gone: Sequence[str] = (),
) -> list[dict[str, Any]]:
    """Rows that make `segment_tags` equal `current` for its segments and empty for `gone`.

    Args:
        known: Links emitted by earlier runs, by segment id.
        current: Links Klaviyo lists now, by segment id.
        gone: Segments no longer listed, whose known links must all go.
    """
    rows = [segment_tag_row(s, t) for s, tag_ids in current.items() for t in tag_ids]
    for segment_id in [*current, *gone]:
        still = set(current.get(segment_id, ()))
        rows += [
            segment_tag_row(segment_id, tag_id, deleted=True)
            for tag_id in known.get(segment_id, ())
            if tag_id not in still
        ]
    return rows
