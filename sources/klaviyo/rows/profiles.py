"""Rows of `profiles`: one arrow table per batch, columns from the requested profile fields."""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from typing import Any

import pyarrow as pa
from dlt.common.schema.typing import TTableSchemaColumns
from msgspec import Raw
from msgspec.structs import asdict, astuple

from .. import settings
from ..api.profile_pages import (
    LocationFields,
    PendingAttributes,
    ProfileAttributes,
    decode_attributes,
    pending_attributes,
)
from ..dates import parse_datetime
from ..typing import NO_ATTRIBUTES, Resource
from .emitted import EmittedProfiles
from .values import UTC_TIMESTAMP, finite_number_column, json_bytes, json_column, json_text


@dataclass(frozen=True)
class ProfileLayout:
    """The columns of `profiles` for the requested profile fields.

    One layout is made per source, and it also keeps which profiles the source's current
    walk has emitted (`emitted`), so that every batch of the walk skips them.

    Attributes:
        strings: Text attributes, e.g. `email`.
        datetimes: Datetime attributes, e.g. `created`.
        location: Location fields, flattened to `location_<field>`.
        json: Attributes kept whole as one JSON column (`properties`, `subscriptions`, ...).
        emitted: The profiles the current walk has emitted; not part of the layout's value.
    """

    strings: tuple[str, ...]
    datetimes: tuple[str, ...]
    location: tuple[str, ...]
    json: tuple[str, ...]
    emitted: EmittedProfiles = field(default_factory=EmittedProfiles, compare=False, repr=False)

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
        """dlt hints: JSON columns are JSON (not text), so they stay queryable as JSON; of
        two copies of a profile in one load (`EmittedProfiles`), the newest `updated` wins."""
        hints: TTableSchemaColumns = {"id": {"data_type": "text", "nullable": False}}
        if settings.PROFILE_UPDATED in self.datetimes:
            hints[settings.PROFILE_UPDATED] = {"dedup_sort": "desc"}
        for name in self.json:
            hints[name] = {"data_type": "json"}
        return hints


def page_profiles(page: Mapping[str, Any]) -> list[Resource]:
    """The page's profile resources, as decoded: no copies.

    Their links and relationships are dropped, which would triple the memory of a batch.
    Attributes a typed page left undecoded become `PendingAttributes`: what the walk reads,
    the rest decoded only if the profile becomes a row. Decoded attributes have their JSON
    attributes made JSON text (bytes, which decoded JSON never holds).
    """
    profiles = [p for p in page.get("data") or () if isinstance(p, dict) and p.get("id")]
    for profile in profiles:
        profile.pop("relationships", None)
        profile.pop("links", None)
        attributes = profile.get("attributes")
        if type(attributes) is Raw:
            profile["attributes"] = attributes = pending_attributes(attributes)
        if type(attributes) is dict:
            # JSON columns as JSON text now, while the page is fresh in memory: the
            # nested objects are freed here rather than when the batch is converted
            _json_as_text(attributes)
    return profiles


def _json_as_text(attributes: Resource) -> Resource:
    for name in _JSON_ATTRIBUTES:
        value = attributes.get(name)
        if value is not None:
            attributes[name] = json_bytes(value)
    return attributes


def _row_attributes(attributes: Any) -> Any:
    """A profile's attributes as its row reads them: decoded now if they were pending (a
    `ProfileAttributes`, or a dict when they do not fit it), else the page's dict."""
    if type(attributes) is PendingAttributes:
        decoded = decode_attributes(attributes)
        return decoded if type(decoded) is ProfileAttributes else _json_as_text(decoded)
    return attributes or NO_ATTRIBUTES


def _as_dict(attributes: Any) -> Resource:
    """Attributes as the lenient conversion reads them: a struct becomes its dict."""
    if type(attributes) is not ProfileAttributes:
        return attributes  # type: ignore[no-any-return]
    values = asdict(attributes)
    if values["location"] is not None:
        values["location"] = asdict(values["location"])
    return _json_as_text(values)


_JSON_ATTRIBUTES = (*settings.PROFILE_JSON_ATTRIBUTES, *settings.ADDITIONAL_PROFILE_FIELDS)
"""Profile attributes loaded as JSON columns (`ProfileLayout.json`)."""


def profile_layout(
    profile_fields: Sequence[str] | None,
    additional_fields: Sequence[str],
    emitted: EmittedProfiles | None = None,
) -> ProfileLayout:
    """Works out the `profiles` columns from `fields[profile]` and `additional-fields[profile]`.

    Args:
        profile_fields: Requested profile fields (dotted sub-fields allowed); None means the
            default attribute set.
        additional_fields: Requested additional fields (`subscriptions`, `predictive_analytics`).
        emitted: The profiles the run emitted so far, shared by its extractions; None: each
            walk keeps its own.
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
    layout = _layout_from(requested)
    return replace(layout, emitted=emitted) if emitted is not None else layout


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
    """Builds one `profiles` arrow table, one row per profile id (its last copy)."""
    return unique_profiles_table({profile["id"]: profile for profile in profiles}, layout)


def unique_profiles_table(profiles: Mapping[str, Resource], layout: ProfileLayout) -> pa.Table:
    """Builds one `profiles` arrow table from profiles by id.

    Text and datetime columns are converted by arrow in one pass; a value arrow rejects (a
    number where text is expected, a datetime without an offset) sends that part through the
    lenient Python conversion, so the table is the same either way. A `location` that is not
    an object (a string, a number, a list) leaves that profile's location columns null.
    """
    attributes = [_row_attributes(profile.get("attributes")) for profile in profiles.values()]
    columns: dict[str, pa.Array] = {"id": pa.array(list(profiles), pa.string())}
    if attributes and _ONLY_STRUCTS.issuperset(map(type, attributes)):
        columns.update(_struct_columns(attributes, layout))
    else:
        columns.update(_dict_columns([_as_dict(a) for a in attributes], layout))
    schema = layout.arrow_schema()
    return pa.Table.from_arrays([columns[field.name] for field in schema], schema=schema)


_ONLY_STRUCTS = frozenset((ProfileAttributes,))


def _struct_columns(attributes: list[Any], layout: ProfileLayout) -> dict[str, pa.Array]:
    """The attribute columns of profiles whose attributes are all `ProfileAttributes`.

    msgspec checked every text value, so arrow converts the text columns whole; the structs
    are turned into columns of values in one pass (`zip` of their tuples).
    """
    values = _by_field(ProfileAttributes.__struct_fields__, map(astuple, attributes))
    columns: dict[str, pa.Array] = {}
    for name in layout.strings:
        columns[name] = pa.array(values[name], pa.string())
    for name in layout.datetimes:
        columns[name] = _arrow_datetimes(pa.array(values[name], pa.string()), values[name])
    if layout.location:
        no_location = (None,) * len(LocationFields.__struct_fields__)
        fields = [no_location if loc is None else astuple(loc) for loc in values["location"]]
        location = _by_field(LocationFields.__struct_fields__, fields)
        for name in layout.location:
            if name in settings.LOCATION_COORDINATE_FIELDS:
                column = finite_number_column(location[name])
            else:
                column = pa.array(location[name], pa.string())
            columns[f"location_{name}"] = column
    for name in layout.json:
        columns[name] = json_column(values[name])
    return columns


def _by_field(fields: tuple[str, ...], rows: Iterable[tuple[Any, ...]]) -> dict[str, Any]:
    """The values of each field of non-empty `rows` (struct tuples of `fields`), in a pass."""
    return dict(zip(fields, zip(*rows, strict=True), strict=True))


def _dict_columns(attributes: list[Resource], layout: ProfileLayout) -> dict[str, pa.Array]:
    """The attribute columns of profiles from their attribute dicts (`decode_json`'s)."""
    locations, all_objects = _locations(attributes) if layout.location else ([], True)
    columns = _converted_columns(attributes, locations, all_objects, layout)
    for name in layout.location:
        if name in settings.LOCATION_COORDINATE_FIELDS:
            values = [loc.get(name) for loc in locations]
            columns[f"location_{name}"] = finite_number_column(values)
    for name in layout.json:
        columns[name] = json_column([a.get(name) for a in attributes])
    return columns


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
        # the values are read again only if arrow refuses the text
        columns[name] = _arrow_datetimes(children[name], (a.get(name) for a in attributes))
    if location:
        nested = children["location"].flatten()
        for name, values in zip(location, nested, strict=True):
            columns[f"location_{name}"] = values
    return columns


def _arrow_datetimes(text: pa.Array, values: Iterable[Any]) -> pa.Array:
    """`text` (the column of `values`) as UTC timestamps."""
    try:
        return text.cast(UTC_TIMESTAMP)
    except pa.ArrowInvalid:
        # Klaviyo sends offsets; anything else (bare dates, blanks) takes the lenient parser
        return pa.array([parse_datetime(value) for value in values], UTC_TIMESTAMP)


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


def _text(value: Any) -> str | None:
    if value is None or isinstance(value, str):
        return value
    if isinstance(value, (dict, list)):
        return json_text(value)
    return str(value)
