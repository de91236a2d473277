"""Shapes JSON:API resources into table rows: dicts for the small tables, arrow for the big ones."""

from __future__ import annotations

import json
import math
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import orjson
import pyarrow as pa
from dlt.common.schema.typing import TTableSchemaColumns

from . import settings
from .filters import format_state_datetime, parse_datetime
from .reconcile import Closure

Resource = dict[str, Any]
Member = tuple[str, Resource, "datetime | None"]
"""(segment id, profile resource, its joined_group_at parsed once by the walk)."""
UTC_TIMESTAMP = pa.timestamp("us", tz="UTC")


def segment_row(segment: Resource) -> dict[str, Any]:
    """A `segments` row from a segment resource; `deleted_at` is null for a listed segment."""
    attributes = segment.get("attributes") or {}
    return {
        "id": segment["id"],
        "name": attributes.get("name"),
        "definition": _dlt_json(attributes.get("definition")),
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


@dataclass(frozen=True)
class ProfileLayout:
    """The columns of `profiles` for the requested profile fields.

    Attributes:
        strings: Text attributes, e.g. `email`.
        datetimes: Datetime attributes, e.g. `created`.
        location: Location fields, flattened to `location_<field>`.
        json: Attributes kept whole as one JSON column (`properties`, `subscriptions`, ...).
    """

    strings: tuple[str, ...]
    datetimes: tuple[str, ...]
    location: tuple[str, ...]
    json: tuple[str, ...]

    def arrow_schema(self) -> pa.Schema:
        """The arrow schema of a `profiles` table; coordinates are doubles."""
        fields = [pa.field("id", pa.string(), nullable=False)]
        fields += [pa.field(name, pa.string()) for name in self.strings]
        fields += [pa.field(name, UTC_TIMESTAMP) for name in self.datetimes]
        for name in self.location:
            is_coordinate = name in settings.LOCATION_COORDINATE_FIELDS
            fields.append(
                pa.field(f"location_{name}", pa.float64() if is_coordinate else pa.string())
            )
        fields += [pa.field(name, pa.string()) for name in self.json]
        return pa.schema(fields)

    def column_hints(self) -> TTableSchemaColumns:
        """dlt hints: JSON columns are JSON (not text), so they stay queryable as JSON."""
        hints: TTableSchemaColumns = {"id": {"data_type": "text", "nullable": False}}
        for name in self.json:
            hints[name] = {"data_type": "json"}
        return hints


def profile_layout(
    profile_fields: Sequence[str] | None, additional_fields: Sequence[str]
) -> ProfileLayout:
    """Works out the `profiles` columns from `fields[profile]` and `additional-fields[profile]`.

    Args:
        profile_fields: Requested profile fields (dotted sub-fields allowed); None means the
            default attribute set.
        additional_fields: Requested additional fields (`subscriptions`, `predictive_analytics`).
    """
    if profile_fields is None:
        requested: dict[str, list[str] | None] = {
            name: None
            for name in (
                *settings.PROFILE_STRING_ATTRIBUTES,
                *settings.PROFILE_DATETIME_ATTRIBUTES,
                "location",
                *settings.PROFILE_JSON_ATTRIBUTES,
            )
        }
    else:
        requested = {}
        for field in profile_fields:
            top, _, sub = field.partition(".")
            if top == "location" and sub:
                subs = requested.setdefault(top, [])
                if subs is not None:
                    subs.append(sub.split(".")[0])
            else:
                requested[top] = None
    for name in additional_fields:
        requested[name] = None
    return _layout_from(requested)


def _layout_from(requested: dict[str, list[str] | None]) -> ProfileLayout:
    location: tuple[str, ...] = ()
    if "location" in requested:
        subs = requested["location"]
        location = tuple(f for f in settings.LOCATION_FIELDS if subs is None or f in subs)
    json_names = (*settings.PROFILE_JSON_ATTRIBUTES, *settings.ADDITIONAL_PROFILE_FIELDS)
    return ProfileLayout(
        strings=tuple(n for n in settings.PROFILE_STRING_ATTRIBUTES if n in requested),
        datetimes=tuple(n for n in settings.PROFILE_DATETIME_ATTRIBUTES if n in requested),
        location=location,
        json=tuple(n for n in json_names if n in requested),
    )


def profiles_table(profiles: Iterable[Resource], layout: ProfileLayout) -> pa.Table:
    """Builds one `profiles` arrow table, one row per profile id.

    A profile seen in several segments of the batch is kept once (its last copy). Text and
    datetime columns are converted by arrow in one pass; a value arrow rejects (a number
    where text is expected, a datetime without an offset) sends that part through the
    lenient Python conversion, so the table is the same either way. A `location` that is not
    an object (a string, a number, a list) leaves that profile's location columns null.
    """
    unique: dict[str, Resource] = {}
    for profile in profiles:
        unique[profile["id"]] = profile
    rows = list(unique.values())
    attributes = [row.get("attributes") or {} for row in rows]
    schema = layout.arrow_schema()
    locations, all_objects = _locations(attributes) if layout.location else ([], True)
    converted = _converted_columns(attributes, locations, all_objects, layout)
    columns: dict[str, pa.Array] = {"id": pa.array([row["id"] for row in rows], pa.string())}
    columns.update(converted)
    for name in layout.location:
        if name in settings.LOCATION_COORDINATE_FIELDS:
            values = [_coordinate(loc.get(name)) for loc in locations]
            columns[f"location_{name}"] = pa.array(values, pa.float64())
    for name in layout.json:
        columns[name] = pa.array([_json(a.get(name)) for a in attributes], pa.string())
    return pa.Table.from_arrays([columns[field.name] for field in schema], schema=schema)


def _converted_columns(
    attributes: list[Resource], locations: list[Resource], all_objects: bool, layout: ProfileLayout
) -> dict[str, pa.Array]:
    """Text, datetime and text location columns: by arrow in one pass when it can."""
    if not all_objects:  # arrow would take a list of [key, value] pairs for a location
        return _python_columns(attributes, locations, layout)
    try:
        return _arrow_columns(attributes, layout)
    except (pa.ArrowInvalid, pa.ArrowTypeError):
        return _python_columns(attributes, locations, layout)


def _locations(attributes: list[Resource]) -> tuple[list[Resource], bool]:
    """Each profile's `location`, {} where it is absent or not an object, and whether every
    one was an object or null (a string, number or list leaves the location columns null)."""
    values = [a.get("location") for a in attributes]
    if _OBJECT_OR_NULL.issuperset(map(type, values)):
        return [value or _NO_LOCATION for value in values], True
    return [value if type(value) is dict else _NO_LOCATION for value in values], False


_OBJECT_OR_NULL = frozenset((dict, type(None)))
_NO_LOCATION: Resource = {}
"""Shared by every profile without a location; never written to."""


def _text_location(layout: ProfileLayout) -> tuple[str, ...]:
    return tuple(n for n in layout.location if n not in settings.LOCATION_COORDINATE_FIELDS)


def _arrow_columns(attributes: list[Resource], layout: ProfileLayout) -> dict[str, pa.Array]:
    """Text, datetime and text location columns, converted by arrow from the attribute dicts.

    Raises:
        ArrowInvalid, ArrowTypeError: A value is not text where text is expected.
    """
    location = _text_location(layout)
    fields = [pa.field(name, pa.string()) for name in (*layout.strings, *layout.datetimes)]
    if location:
        location_type = pa.struct([pa.field(name, pa.string()) for name in location])
        fields.append(pa.field("location", location_type))
    struct = pa.array(attributes, type=pa.struct(fields))
    # flatten() (not field()) so that a missing location nulls its children too
    children = dict(zip([f.name for f in fields], struct.flatten(), strict=True))
    columns: dict[str, pa.Array] = {name: children[name] for name in layout.strings}
    for name in layout.datetimes:
        columns[name] = _arrow_datetimes(children[name], attributes, name)
    if location:
        nested = children["location"].flatten()
        for name, values in zip(location, nested, strict=True):
            columns[f"location_{name}"] = values
    return columns


def _arrow_datetimes(text: pa.Array, attributes: list[Resource], name: str) -> pa.Array:
    try:
        return text.cast(UTC_TIMESTAMP)
    except pa.ArrowInvalid:
        # Klaviyo sends offsets; anything else (bare dates, blanks) takes the lenient parser
        return pa.array([parse_datetime(a.get(name)) for a in attributes], UTC_TIMESTAMP)


def _python_columns(
    attributes: list[Resource], locations: list[Resource], layout: ProfileLayout
) -> dict[str, pa.Array]:
    """The columns `_arrow_columns` makes, converted value by value in Python.

    Args:
        attributes: The profiles' attributes.
        locations: Their locations as `_locations` returns them.
        layout: The columns to make.
    """
    columns: dict[str, pa.Array] = {}
    for name in layout.strings:
        columns[name] = pa.array([_text(a.get(name)) for a in attributes], pa.string())
    for name in layout.datetimes:
        stamps = [parse_datetime(a.get(name)) for a in attributes]
        columns[name] = pa.array(stamps, UTC_TIMESTAMP)
    for name in _text_location(layout):
        values = [_text(loc.get(name)) for loc in locations]
        columns[f"location_{name}"] = pa.array(values, pa.string())
    return columns


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


def _text(value: Any) -> str | None:
    if value is None or isinstance(value, str):
        return value
    if isinstance(value, (dict, list)):
        return _json(value)
    return str(value)


def _coordinate(value: Any) -> float | None:
    # Klaviyo documents latitude/longitude as string or number; anything unparseable is null.
    if isinstance(value, bool) or value is None:
        return None
    try:
        number = float(value)
    except (TypeError, ValueError):
        return None
    return number if math.isfinite(number) else None


def _json(value: Any) -> str | None:
    """JSON text of a value; integers beyond 64 bits are written exactly."""
    if value is None:
        return None
    try:
        return orjson.dumps(value, option=orjson.OPT_NON_STR_KEYS).decode()
    except orjson.JSONEncodeError:
        # orjson refuses integers beyond 64 bits, which the client keeps exact
        return json.dumps(value, ensure_ascii=False, separators=(",", ":"))


def _dlt_json(value: Any) -> Any:
    """A value for a JSON column of dict rows: dlt writes those with orjson, so an integer
    beyond 64 bits becomes its decimal text (exact, where a float would round it)."""
    try:
        orjson.dumps(value)
    except orjson.JSONEncodeError:
        return _wide_integers_as_text(value)
    return value


def _wide_integers_as_text(value: Any) -> Any:
    if isinstance(value, dict):
        return {key: _wide_integers_as_text(item) for key, item in value.items()}
    if isinstance(value, list):
        return [_wide_integers_as_text(item) for item in value]
    if type(value) is int and not _INT64_MIN <= value <= _UINT64_MAX:
        return str(value)
    return value


_INT64_MIN, _UINT64_MAX = -(2**63), 2**64 - 1
