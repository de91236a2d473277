"""Rows of `segment_memberships` and `segment_membership_history`: arrow tables of a batch."""

from __future__ import annotations

import weakref
from collections.abc import Iterable
from datetime import datetime, timezone
from typing import Any

import pyarrow as pa
import pyarrow.compute as pc
from dlt.common.schema.typing import TTableSchemaColumns

from .. import settings
from ..dates import parse_datetime
from ..typing import NO_ATTRIBUTES, Closure, Member, Resource
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
    members: Iterable[Member],
    closures: Iterable[tuple[str, Closure]] = (),
    batch: object | None = None,
) -> pa.Table:
    """Builds one `segment_memberships` arrow table.

    Args:
        members: (segment id, profile, joined_group_at) from a walk: current members.
        closures: (segment id, closure) pairs; those that end a membership become
            `is_member=false` rows with the detection time in `left_at`.
        batch: What `members` belong to; both membership tables of one batch share its
            member columns, built once.
    """
    segment_ids, profile_ids, joined = _member_arrays(members, batch)
    count = len(profile_ids)
    columns = [
        segment_ids,
        profile_ids,
        joined,
        pa.repeat(True, count),
        pa.nulls(count, UTC_TIMESTAMP),
    ]
    leaves: tuple[list[Any], ...] = ([], [], [], [], [])
    for segment_id, closure in closures:
        if closure.leaves:
            _append(
                leaves,
                segment_id,
                closure.profile_id,
                closure.joined_group_at,
                False,
                closure.left_at,
            )
    return _table(columns, leaves, MEMBERSHIP_SCHEMA)


def history_table(
    members: Iterable[Member],
    closures: Iterable[tuple[str, Closure]] = (),
    batch: object | None = None,
) -> pa.Table:
    """Builds one `segment_membership_history` arrow table: one row per stay.

    Args:
        members: (segment id, profile, joined_group_at) from a walk: open stays.
        closures: (segment id, closure) pairs: stays that ended, with `left_at` set.
        batch: What `members` belong to, as for `memberships_table`.
    """
    arrays = _member_arrays(members, batch)
    if arrays[2].null_count:  # a stay without a start cannot be placed in time
        started = pc.is_valid(arrays[2])
        arrays = tuple(array.filter(started) for array in arrays)
    count = len(arrays[1])
    columns = [*arrays, pa.nulls(count, UTC_TIMESTAMP)]
    ended: tuple[list[Any], ...] = ([], [], [], [])
    for segment_id, closure in closures:
        _append(ended, segment_id, closure.profile_id, closure.joined_group_at, closure.left_at)
    return _table(columns, ended, HISTORY_SCHEMA)


def _member_arrays(members: Iterable[Member], batch: object | None) -> _MemberArrays:
    """The segment id, profile id and joined_group_at columns of the members of `batch`.

    The last batch's columns are kept (with a weak reference to the batch, so a new batch
    never gets them): the second membership table of a batch reuses them.
    """
    last = _LAST_BATCH[0]
    if batch is not None and last is not None and last[0]() is batch:
        return last[1]
    arrays = _new_member_arrays(members)
    if batch is not None:
        # one tuple swapped in whole: safe for pipelines running in several threads
        _LAST_BATCH[0] = (weakref.ref(batch), arrays)
    return arrays


_MemberArrays = tuple[pa.Array, pa.Array, pa.Array]
_LAST_BATCH: list[tuple[weakref.ref[object], _MemberArrays] | None] = [None]
"""The member columns of the last batch given, and that batch (weakly)."""


def _new_member_arrays(members: Iterable[Member]) -> _MemberArrays:
    rows = members if isinstance(members, list) else list(members)
    if not rows:
        return (pa.array([], pa.string()), pa.array([], pa.string()), pa.nulls(0, UTC_TIMESTAMP))
    segment_ids, profiles, joined = zip(*rows, strict=True)
    return (
        pa.array(segment_ids, pa.string()),
        pa.array([profile["id"] for profile in profiles], pa.string()),
        pa.array(joined, UTC_TIMESTAMP),
    )


def _append(columns: tuple[list[Any], ...], *values: Any) -> None:
    for column, value in zip(columns, values, strict=True):
        column.append(value)


def _table(columns: list[pa.Array], extra: tuple[list[Any], ...], schema: pa.Schema) -> pa.Table:
    """The table of `columns`, followed by the rows in the Python lists `extra` (closures)."""
    if extra[0]:
        columns = [
            pa.concat_arrays([array, pa.array(values, type=array.type)])
            for array, values in zip(columns, extra, strict=True)
        ]
    return pa.Table.from_arrays(columns, schema=schema)


def joined_group_at(profile: Resource) -> Any:
    """The profile's most recent join of the segment, tz-aware UTC (None if absent)."""
    return parse_datetime((profile.get("attributes") or {}).get(settings.JOINED_GROUP_AT))


def joined_times(profiles: Iterable[Resource]) -> list[datetime | None]:
    """`joined_group_at` of each profile of a page, as `joined_group_at` parses it.

    Klaviyo writes it as `2024-03-26T17:24:42+00:00`, which `datetime.fromisoformat` reads
    straight into UTC; anything else (another offset, no offset, `Z` before Python 3.11,
    blanks) takes the lenient parser.
    """
    stamps: list[datetime | None] = []
    append = stamps.append
    for profile in profiles:
        text = (profile.get("attributes") or NO_ATTRIBUTES).get(settings.JOINED_GROUP_AT)
        stamp = None
        if isinstance(text, str):
            try:
                stamp = _from_iso(text)
            except ValueError:
                stamp = None
        append(stamp if stamp is not None and stamp.tzinfo is _UTC else parse_datetime(text))
    return stamps


_from_iso = datetime.fromisoformat
_UTC = timezone.utc
