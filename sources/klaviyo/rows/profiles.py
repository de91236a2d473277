"""Rows of `profiles`: one arrow table per batch, columns from the requested profile fields."""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from datetime import datetime, timezone
from typing import Any

import pyarrow as pa
from dlt.common.schema.typing import TTableSchemaColumns

from .. import settings
from ..dates import parse_datetime
from ..typing import Resource
from .values import UTC_TIMESTAMP, finite_number_column, json_bytes, json_column, json_text


class EmittedProfiles:
    """The profiles one walk has emitted so far, so that it emits each profile once.

    A profile in several segments is listed once per segment. The destination's merge keeps
    one row per id, but every extra copy is converted, written and loaded for nothing, and a
    destination that only upserts would keep them all: with profiles in 2.6 segments on
    average, copies are most of the `profiles` rows. A later copy is emitted only when its
    `updated` is newer (the profile changed while the run read it), so the last row of a
    profile is always its newest. Only a profile updated since the run began can have a newer
    copy: the ids of the others are all that is kept.

    Memory is bounded: past `limit` ids the set starts afresh (later copies of the forgotten
    profiles are emitted again, which costs time, never rows). A walk is told apart from the
    previous one by the detection time its batches carry.

    A run that loads in several extractions (one per checkpoint) passes one instance made
    with `across_walks` to all of them: a profile loaded by an earlier checkpoint of the run
    is not emitted again unless it changed. Between two extractions the ids are packed into
    one string: the load step that comes between them is the run's memory peak, and a set of
    hundreds of thousands of ids is tens of megabytes of small objects.

    Args:
        limit: Most ids remembered at once.
        across_walks: Keep the ids from one walk to the next (the run forgets them).
    """

    def __init__(
        self, limit: int = settings.PROFILE_IDS_REMEMBERED, across_walks: bool = False
    ) -> None:
        self._limit = limit
        self._across_walks = across_walks
        self._ids: set[str] = set()
        self._packed: str | None = None
        self._recent: dict[str, str] = {}
        self._since = ""
        self._walk: object = None

    def fresh(
        self,
        profiles: Iterable[Resource],
        walk: object,
        keys: Iterable[ProfileKey] | None = None,
    ) -> dict[str, Resource]:
        """The profiles `walk` has not emitted yet, or emitted with an older `updated`, by id
        (the newest copy of each); they count as emitted from now on.

        Args:
            profiles: Profile resources, each with an `id`.
            walk: What identifies the walk: the same value for all of its batches (its
                detection time, a datetime, also says when it began).
            keys: `profile_keys` of `profiles`, in the same order, when already made (by the
                worker, while the page was fresh in memory); None makes them here.
        """
        if walk != self._walk:
            if not self._across_walks or self._walk is None:
                self.forget()
                self._since = _began(walk)
            self._walk = walk
        self._unpack()
        if len(self._ids) >= self._limit:
            self._ids, self._recent = set(), {}
        emitted, recent, since, fresh = self._ids, self._recent, self._since, {}
        if keys is None:
            profiles = list(profiles)
            keys = profile_keys(profiles)
        for profile, (profile_id, updated) in zip(profiles, keys, strict=True):
            stamp = updated if updated is not None and updated >= since else None
            if profile_id not in emitted:
                emitted.add(profile_id)
                fresh[profile_id] = profile
                if stamp is not None:
                    recent[profile_id] = stamp
            elif stamp is not None and stamp > recent.get(profile_id, ""):
                recent[profile_id] = stamp
                fresh[profile_id] = profile
        return fresh

    def forget(self) -> None:
        """Gives the remembered ids back (at the end of a walk)."""
        self._ids, self._recent, self._packed = set(), {}, None
        self._walk = None

    def walk_ended(self) -> None:
        """The walk's last batch was emitted: its ids go, or are packed if the run keeps them."""
        if not self._across_walks:
            self.forget()
        elif self._ids:
            # NUL never occurs in an id: the decoder replaces it (`api.decoding`)
            self._packed = _ID_SEPARATOR.join(self._ids)
            self._ids = set()

    def _unpack(self) -> None:
        if self._packed is not None:
            self._ids = set(self._packed.split(_ID_SEPARATOR))
            self._packed = None


_ID_SEPARATOR = "\0"

ProfileKey = tuple[str, str | None]
"""A profile's id and its `updated` text (None when it has none)."""


def profile_keys(profiles: Iterable[Resource]) -> list[ProfileKey]:
    """The id and `updated` of each profile: all `EmittedProfiles` reads of a profile.

    Made by the worker right after decoding a page, while its dicts are in the CPU's caches:
    read later from a batch of thousands of profiles, they cost about twice as much.
    """
    keys: list[ProfileKey] = []
    append = keys.append
    for profile in profiles:
        updated = (profile.get("attributes") or _NO_ATTRIBUTES).get(settings.PROFILE_UPDATED)
        append((profile["id"], updated if isinstance(updated, str) else None))
    return keys


def _began(walk: object) -> str:
    """When a walk began, as the start of Klaviyo's `updated` text (ISO, UTC, whole
    seconds, which Klaviyo renders alike for every profile: text order is time order);
    empty (every copy may be newer) when the walk is not told by its time."""
    if isinstance(walk, datetime):
        return walk.astimezone(timezone.utc).strftime("%Y-%m-%dT%H:%M:%S")
    return ""


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

    Their links and relationships are dropped, which would triple the memory of a batch, and
    their JSON attributes become JSON text (bytes, which decoded JSON never holds).
    """
    profiles = [p for p in page.get("data") or () if isinstance(p, dict) and p.get("id")]
    for profile in profiles:
        profile.pop("relationships", None)
        profile.pop("links", None)
        attributes = profile.get("attributes")
        if isinstance(attributes, dict):
            # JSON columns as JSON text now, while the page is fresh in memory: the
            # nested objects are freed here rather than when the batch is converted
            for name in _JSON_ATTRIBUTES:
                value = attributes.get(name)
                if value is not None:
                    attributes[name] = json_bytes(value)
    return profiles


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
    attributes = [profile.get("attributes") or _NO_ATTRIBUTES for profile in profiles.values()]
    schema = layout.arrow_schema()
    locations, all_objects = _locations(attributes) if layout.location else ([], True)
    converted = _converted_columns(attributes, locations, all_objects, layout)
    columns: dict[str, pa.Array] = {"id": pa.array(list(profiles), pa.string())}
    columns.update(converted)
    for name in layout.location:
        if name in settings.LOCATION_COORDINATE_FIELDS:
            values = [loc.get(name) for loc in locations]
            columns[f"location_{name}"] = finite_number_column(values)
    for name in layout.json:
        columns[name] = json_column([a.get(name) for a in attributes])
    return pa.Table.from_arrays([columns[field.name] for field in schema], schema=schema)


_NO_ATTRIBUTES: Resource = {}
"""Shared by every profile without attributes; never written to."""


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


def _text(value: Any) -> str | None:
    if value is None or isinstance(value, str):
        return value
    if isinstance(value, (dict, list)):
        return json_text(value)
    return str(value)
