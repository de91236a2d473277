"""Typed decoding of profile pages: only what the source loads becomes Python objects.

A page of 100 profiles is about 140 KB, half of it each profile's `relationships` and
`links`, which the source drops. Decoding the page with msgspec against the shape the source
reads skips those without building them. Each profile's attributes are kept undecoded
(`msgspec.Raw`, a view of the page) until the walk shapes the page, which decodes only what
it reads of every copy of a profile, `updated` and `joined_group_at` (`pending_attributes`);
the rest is decoded once the profile becomes a row (`decode_attributes`), which most copies
never do: a profile in several segments is emitted once per walk. Decoded whole, the
attributes become a `ProfileAttributes` struct whose values are the text, dicts, lists and
numbers that `decoding.decode_json` gives, so rows come out the same either way.

A page that does not fit the shape (a profile that is not an object) or holds what
`decode_json` repairs (a NUL or a lone surrogate escape) is left to `decode_json`; so are
attributes that do not fit theirs (a number where text is expected, a location that is not
an object), one profile at a time.
"""

from __future__ import annotations

import re
from typing import Any, TypedDict, cast

import msgspec

from .. import settings
from ..typing import JsonDoc
from .decoding import decode_json

Text = str | None

# Built from `settings`, where Klaviyo's names are. Structs without the garbage collector's
# tracking: a batch holds thousands, and none of them is part of a cycle.
LocationFields: Any = msgspec.defstruct(
    "LocationFields",
    [
        (name, Any if name in settings.LOCATION_COORDINATE_FIELDS else Text, None)
        for name in settings.LOCATION_FIELDS
    ],
    gc=False,
)
"""A profile's `location`, its fields None where absent."""
ProfileAttributes: Any = msgspec.defstruct(
    "ProfileAttributes",
    [
        *((name, Text, None) for name in settings.PROFILE_STRING_ATTRIBUTES),
        *((name, Text, None) for name in settings.PROFILE_DATETIME_ATTRIBUTES),
        ("location", LocationFields | None, None),
        *((name, Any, None) for name in settings.PROFILE_JSON_ATTRIBUTES),
        *((name, Any, None) for name in settings.ADDITIONAL_PROFILE_FIELDS),
        (settings.JOINED_GROUP_AT, Text, None),
    ],
    gc=False,
)
"""A profile's attributes as its row reads them, typed; None where absent (or null), the
attributes the source does not load dropped. A struct is built in about half the time of
the same dict, and its fields come out as columns without a lookup by name per row."""


# What the walk reads of every copy of a profile: any value, judged as decode_json's would be.
_WALKED_TYPES: dict[str, Any] = {settings.PROFILE_UPDATED: Any, settings.JOINED_GROUP_AT: Any}
WalkedAttributes = TypedDict("WalkedAttributes", _WALKED_TYPES, total=False)  # type: ignore[misc]


class Profile(TypedDict, total=False):
    """A profile resource as the source reads it: no relationships, no links, and its
    attributes not decoded yet."""

    type: str
    id: str
    attributes: msgspec.Raw


class ProfilePage(TypedDict):
    """A page of profiles; `links` is kept whole, the client follows `links.next`."""

    data: list[Profile]
    links: Any


class PendingAttributes(dict):  # type: ignore[type-arg]
    """The attributes the walk reads of a profile (`WalkedAttributes`), with the rest still
    undecoded in `raw` (`decode_attributes` decodes them all)."""

    __slots__ = ("raw",)
    raw: msgspec.Raw


_DECODER = msgspec.json.Decoder(ProfilePage)
_WALKED = msgspec.json.Decoder(WalkedAttributes)
_ATTRIBUTES = msgspec.json.Decoder(ProfileAttributes)
_DECODE_ERRORS = (msgspec.DecodeError, msgspec.ValidationError)
_REPAIRED_ESCAPE = re.compile(rb"\\u(?:0000|[dD])")
"""Escapes `decode_json` repairs (NUL, and surrogates: a page with a pair takes it too)."""


def decode_profile_page(body: bytes) -> JsonDoc | None:
    """The page's profiles and links as `decode_json` would give them, without the profiles'
    relationships and links, their attributes still undecoded (`pending_attributes`); None
    when the page is not such a page or needs `decode_json`'s repairs."""
    # A backslash is found by memchr; a search for two bytes or more scans the page about a
    # hundred times more slowly, and most pages hold no escape at all.
    if b"\\" in body and _REPAIRED_ESCAPE.search(body):
        return None
    try:
        return cast(JsonDoc, _DECODER.decode(body))
    except _DECODE_ERRORS:
        return None


def pending_attributes(raw: msgspec.Raw) -> Any:
    """A profile's attributes from its page, with only what the walk reads decoded; what is
    not an object is decoded whole, as `decode_json` gives it."""
    try:
        pending = PendingAttributes(_WALKED.decode(raw))
    except _DECODE_ERRORS:
        return decode_json(bytes(raw))
    pending.raw = raw
    return pending


def decode_attributes(pending: PendingAttributes) -> Any:
    """The whole attributes of `pending` (an object, as `pending_attributes` checked): a
    `ProfileAttributes`, or, when they do not fit it, a dict as `decode_json` gives it (the
    lenient row conversion then reads them)."""
    try:
        return _ATTRIBUTES.decode(pending.raw)
    except _DECODE_ERRORS:
        return decode_json(bytes(pending.raw))
