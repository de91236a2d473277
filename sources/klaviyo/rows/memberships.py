"""Rows of `segment_memberships` and `segment_membership_history`: arrow tables of a batch."""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

import pyarrow as pa
from dlt.common.schema.typing import TTableSchemaColumns

from .. import settings
from ..dates import parse_datetime
from ..typing import Closure, Member, Resource
from .values import UTC_TIMESTAMP

MEMBERSHIP_SCHEMA = pa.schema(
    [
        pa.field("segment_id", pa.string(), nullable=False),
        pa.field("profile_id", pa.string(), nullable=False),
        pa.field(settings.JOINED_GROUP_AT, UTC_TIMESTAMP),
        # nullable: the column is added to tables that already hold rows (upgrades)
        pa.field("is_member", pa.bool_()),
        pa.field("left_at", UTC_TIMESTAMP),
    ]
)

MEMBERSHIP_COLUMNS: TTableSchemaColumns = {
    "segment_id": {"data_type": "text", "nullable": False},
    "profile_id": {"data_type": "text", "nullable": False},
    settings.JOINED_GROUP_AT: {"data_type": "timestamp", "timezone": True},
    "is_member": {"data_type": "bool"},
    "left_at": {"data_type": "timestamp", "timezone": True},
}

HISTORY_SCHEMA = pa.schema(
    [
        pa.field("segment_id", pa.string(), nullable=False),
        pa.field("profile_id", pa.string(), nullable=False),
        pa.field(settings.JOINED_GROUP_AT, UTC_TIMESTAMP, nullable=False),
        pa.field("left_at", UTC_TIMESTAMP),
    ]
)

HISTORY_COLUMNS: TTableSchemaColumns = {
    "segment_id": {"data_type": "text", "nullable": False},
    "profile_id": {"data_type": "text", "nullable": False},
    settings.JOINED_GROUP_AT: {"data_type": "timestamp", "timezone": True, "nullable": False},
    "left_at": {"data_type": "timestamp", "timezone": True},
}


def memberships_table(
    members: Iterable[Member], closures: Iterable[tuple[str, Closure]] = ()
) -> pa.Table:
    """Builds one `segment_memberships` arrow table.

    Args:
        members: (segment id, profile, joined_group_at) from a walk: current members.
        closures: (segment id, closure) pairs; those that end a membership become
            `is_member=false` rows with the detection time in `left_at`.
    """
    columns: tuple[list[Any], ...] = ([], [], [], [], [])
    for segment_id, profile, joined in members:
        _append(columns, segment_id, profile["id"], joined, True, None)
    for segment_id, closure in closures:
        if closure.leaves:
            _append(
                columns,
                segment_id,
                closure.profile_id,
                closure.joined_group_at,
                False,
                closure.left_at,
            )
    return _table(columns, MEMBERSHIP_SCHEMA)


def history_table(
    members: Iterable[Member], closures: Iterable[tuple[str, Closure]] = ()
) -> pa.Table:
    """Builds one `segment_membership_history` arrow table: one row per stay.

    Args:
        members: (segment id, profile, joined_group_at) from a walk: open stays.
        closures: (segment id, closure) pairs: stays that ended, with `left_at` set.
    """
    columns: tuple[list[Any], ...] = ([], [], [], [])
    for segment_id, profile, joined in members:
        if joined is not None:  # a stay without a start cannot be placed in time
            _append(columns, segment_id, profile["id"], joined, None)
    for segment_id, closure in closures:
        _append(columns, segment_id, closure.profile_id, closure.joined_group_at, closure.left_at)
    return _table(columns, HISTORY_SCHEMA)


def _append(columns: tuple[list[Any], ...], *values: Any) -> None:
    for column, value in zip(columns, values, strict=True):
        column.append(value)


def _table(columns: tuple[list[Any], ...], schema: pa.Schema) -> pa.Table:
    arrays = [
        pa.array(values, type=field.type) for values, field in zip(columns, schema, strict=True)
    ]
    return pa.Table.from_arrays(arrays, schema=schema)


def joined_group_at(profile: Resource) -> Any:
    """The profile's most recent join of the segment, tz-aware UTC (None if absent)."""
    return parse_datetime((profile.get("attributes") or {}).get(settings.JOINED_GROUP_AT))
