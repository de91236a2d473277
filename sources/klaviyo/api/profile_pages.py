"""Typed decoding of profile pages: only what the source loads becomes Python objects.

A page of 100 profiles is about 140 KB, half of it each profile's `relationships` and
`links`, which the source drops. Decoding the page with msgspec against the shape the source
reads skips those without building them, and builds the rest as the same dicts, lists and
values that `decoding.decode_json` gives: rows come out the same either way. A page that
does not fit the shape (a number where text is expected, a location that is not an object,
a profile that is not an object) or holds what `decode_json` repairs (a NUL or a lone
surrogate escape) is left to `decode_json`.
"""

from __future__ import annotations

import re
from typing import Any, TypedDict, cast

import msgspec

from .. import settings
from ..typing import JsonDoc

Text = str | None

# Functional syntax: the keys are Klaviyo's, read from `settings`.
_LOCATION_TYPES: dict[str, Any] = {
    name: (Any if name in settings.LOCATION_COORDINATE_FIELDS else Text)
    for name in settings.LOCATION_FIELDS
}
Location = TypedDict("Location", _LOCATION_TYPES, total=False)  # type: ignore[misc]
_ATTRIBUTE_TYPES: dict[str, Any] = {
    **{name: Text for name in settings.PROFILE_STRING_ATTRIBUTES},
    **{name: Text for name in settings.PROFILE_DATETIME_ATTRIBUTES},
    "location": Location | None,
    **{name: Any for name in settings.PROFILE_JSON_ATTRIBUTES},
    **{name: Any for name in settings.ADDITIONAL_PROFILE_FIELDS},
    settings.JOINED_GROUP_AT: Text,
}
Attributes = TypedDict("Attributes", _ATTRIBUTE_TYPES, total=False)  # type: ignore[misc]


class Profile(TypedDict, total=False):
    """A profile resource as the source reads it: no relationships, no links."""

    type: str
    id: str
    attributes: Attributes | None  # type: ignore[valid-type]


class ProfilePage(TypedDict):
    """A page of profiles; `links` is kept whole, the client follows `links.next`."""

    data: list[Profile]
    links: Any


_DECODER = msgspec.json.Decoder(ProfilePage)
_REPAIRED_ESCAPE = re.compile(rb"\\u(?:0000|[dD])")
"""Escapes `decode_json` repairs (NUL, and surrogates: a page with a pair takes it too)."""


def decode_profile_page(body: bytes) -> JsonDoc | None:
    """The page's profiles and links as `decode_json` would give them, without the profiles'
    relationships and links, and without attributes the source does not load; None when the
    page is not such a page or needs `decode_json`'s repairs."""
    # A backslash is found by memchr; a search for two bytes or more scans the page about a
    # hundred times more slowly, and most pages hold no escape at all.
    if b"\\" in body and _REPAIRED_ESCAPE.search(body):
        return None
    try:
        return cast(JsonDoc, _DECODER.decode(body))
    except (msgspec.DecodeError, msgspec.ValidationError):
        return None
