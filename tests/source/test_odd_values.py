"""Odd text and numbers: NULs, lone surrogates, integers beyond 64 bits, long text, odd shapes."""

from __future__ import annotations

import json
from typing import Any

import orjson
import pytest
import requests
from msgspec import Raw
from msgspec.structs import asdict

from sources.klaviyo.api.decoding import decode_json
from sources.klaviyo.api.profile_pages import (
    LocationFields,
    PendingAttributes,
    ProfileAttributes,
    decode_attributes,
    decode_profile_page,
    pending_attributes,
)
from sources.klaviyo.rows.profiles import page_profiles, profile_layout, profiles_table
from sources.klaviyo.rows.segments import segment_row

from .conftest import Loader

WIDE = 123456789012345678901234567890
"""Wider than 64 bits: orjson reads it as 1.2345678901234568e+29."""
BELOW_INT64 = -9223372036854775809
LONG_TEXT = "Ω" * 100_000  # 200 kB of UTF-8
REPLACED = "\ufffd"

# What the emulator is given: Python values, served exactly (lone surrogates as escapes).
ODD_ATTRIBUTES: dict[str, Any] = {
    "first_name": "Ann\x00e",
    "last_name": "X\ud800Y",
    "organization": "C:\\u0000dir",  # a backslash and "u0000": text, not a NUL
    "title": LONG_TEXT,
    "location": "Boston",
    "properties": {
        "wide": WIDE,
        "below_int64": BELOW_INT64,
        "k\x00ey": "v\udc00",
        "pair": "\U0001f600",
        "float": 1.5,
        "nested": {"a": None, "b": [None, {"c": None}]},
    },
}
# What every destination must hold afterwards.
STORED_ATTRIBUTES: dict[str, Any] = {
    "first_name": f"Ann{REPLACED}e",
    "last_name": f"X{REPLACED}Y",
    "organization": "C:\\u0000dir",
    "title": LONG_TEXT,
    "location_city": None,
    "properties": {
        "wide": WIDE,
        "below_int64": BELOW_INT64,
        f"k{REPLACED}ey": f"v{REPLACED}",
        "pair": "\U0001f600",
        "float": 1.5,
        "nested": {"a": None, "b": [None, {"c": None}]},
    },
}
FIXED_ATTRIBUTES: dict[str, Any] = {
    "first_name": "Anne",
    "last_name": "Xu",
    "organization": "Acme",
    "title": "Buyer",
    "location": {"city": "Boston"},
    "properties": {"wide": 1, "plan": "pro"},
}


def add_odd_profile(emu: Any) -> str:
    """A member of the first segment whose attributes hold every kind of odd value."""
    profile_id: str = emu.create_profile(email="odd@example.com")
    emu.update_profile_exactly(profile_id, **ODD_ATTRIBUTES)
    emu.add_member(emu.segment_ids()[0], profile_id)
    return profile_id


def fix_odd_profile(emu: Any, profile_id: str) -> None:
    """The account's profile corrected, and re-joined so the next incremental run reads it."""
    emu.update_profile(profile_id, **FIXED_ATTRIBUTES)
    emu.add_member(emu.segment_ids()[0], profile_id)


def stored_profile(loader: Loader, profile_id: str) -> dict[str, Any]:
    """The odd profile's row as the destination returns it; JSON parsed with exact integers."""
    ((first, last, organization, title, city, properties),) = loader.rows(
        "select first_name, last_name, organization, title, location_city, properties"
        f" from profiles where id = '{profile_id}'"
    )
    if isinstance(properties, str):  # DuckDB returns JSON as text, psycopg2 parses jsonb
        properties = json.loads(properties)
    return {
        "first_name": first,
        "last_name": last,
        "organization": organization,
        "title": title,
        "location_city": city,
        "properties": properties,
    }


def wide_as_text(loader: Loader, profile_id: str, path: str) -> str:
    """`properties.wide` extracted as text by the destination's own JSON operator."""
    ((text,),) = loader.rows(f"select {path} from profiles where id = '{profile_id}'")
    return str(text)


@pytest.mark.parametrize(
    "body, expected",
    [
        (rb'{"a":"x\u0000y"}', {"a": f"x{REPLACED}y"}),
        (rb'{"a\u0000":"\u0000\u0000"}', {f"a{REPLACED}": REPLACED * 2}),
        (rb'{"a":"x\\u0000y"}', {"a": "x\\u0000y"}),  # escaped backslash: left alone
        (rb'{"a":"x\\\u0000y"}', {"a": f"x\\{REPLACED}y"}),  # a backslash, then a NUL
        (rb'{"a":"\ud800"}', {"a": REPLACED}),
        (rb'{"a":"\uDC00z"}', {"a": f"{REPLACED}z"}),
        (rb'{"\ud800k":1}', {f"{REPLACED}k": 1}),
        (rb'{"a":"\ud800\ud83d\ude00"}', {"a": f"{REPLACED}\U0001f600"}),
        (rb'{"a":"\\ud800"}', {"a": "\\ud800"}),
        (rb'{"a":123456789012345678901234567890}', {"a": WIDE}),
        (rb'{"a":[-9223372036854775809]}', {"a": [BELOW_INT64]}),
        (rb'{"a":18446744073709551615,"b":-9223372036854775808}', {"a": 2**64 - 1, "b": -(2**63)}),
        (rb'{"a":"12345678901234567890123","b":1.12345678901234567890123}', None),
        (
            rb'{"a":123456789012345678901234567890,"b":"\ud800\u0000"}',
            {"a": WIDE, "b": REPLACED * 2},
        ),
    ],
)
def test_decode_makes_text_storable_and_keeps_wide_integers(
    body: bytes, expected: dict[str, Any] | None
) -> None:
    decoded = decode_json(body)
    assert decoded == (orjson.loads(body) if expected is None else expected)
    assert type(decoded) is dict


@pytest.mark.parametrize(
    "body", [b'{"a":', b"<html>", b'{"a":NaN}', b'{"a":1e5,"b":123456789012345678901']
)
def test_decode_still_refuses_what_is_not_json(body: bytes) -> None:
    with pytest.raises(ValueError):
        decode_json(body)


def test_decode_of_a_normal_page_is_orjsons(emu: Any) -> None:
    page = _page(emu, {"additional-fields[profile]": "subscriptions,predictive_analytics"})
    assert decode_json(page) == orjson.loads(page)


def _decoded(page: Any) -> Any:
    """A typed page with every profile's attributes decoded whole (`_without_nulls`)."""
    for profile in page["data"]:
        if isinstance(profile.get("attributes"), Raw):
            pending = pending_attributes(profile["attributes"])
            is_pending = isinstance(pending, PendingAttributes)
            decoded = decode_attributes(pending) if is_pending else pending
            profile["attributes"] = _without_nulls(decoded)
    return page


def _plain(page: Any) -> Any:
    """A page decoded by `decode_json`, its attributes as `_decoded` gives them."""
    for profile in page["data"]:
        profile["attributes"] = _without_nulls(profile["attributes"])
    return page


def _without_nulls(attributes: Any) -> Any:
    """Attributes (a `ProfileAttributes` or a dict) as a dict of their values that are not
    null, `location` too: a struct holds None for what a page left out or sent as null."""
    if type(attributes) is ProfileAttributes:
        attributes = asdict(attributes)
    if not isinstance(attributes, dict):
        return attributes
    location = attributes.get("location")
    if type(location) is LocationFields:
        location = asdict(location)
    if isinstance(location, dict):
        attributes = {**attributes, "location": _without_nulls(location)}
    return {name: value for name, value in attributes.items() if value is not None}


def test_typed_decoding_of_a_profile_page_builds_the_same_rows(emu: Any) -> None:
    """The typed decoder drops what the source does not read, and nothing else."""
    page = _page(emu, {"additional-fields[profile]": "subscriptions,predictive_analytics"})
    typed, plain = decode_profile_page(page), decode_json(page)
    assert typed is not None and typed["links"] == plain["links"]
    layout = profile_layout(None, ("subscriptions", "predictive_analytics"))
    rows = [profiles_table(page_profiles(doc), layout) for doc in (typed, plain)]
    assert rows[0].num_rows == len(plain["data"]) > 0 and rows[0].equals(rows[1])
    plain = decode_json(page)
    for profile in plain["data"]:
        del profile["relationships"], profile["links"]
    assert _decoded(decode_profile_page(page))["data"] == _plain(plain)["data"]


def test_typed_decoding_leaves_the_attributes_to_the_rows(emu: Any) -> None:
    """Of every copy of a profile the walk decodes `updated` and `joined_group_at` only."""
    typed = decode_profile_page(_page(emu, {}))
    assert typed is not None
    (profile, *_) = page_profiles(typed)
    attributes = profile["attributes"]
    assert isinstance(attributes, PendingAttributes)
    assert set(attributes) == {"updated", "joined_group_at"}
    assert decode_attributes(attributes).email == orjson.loads(bytes(attributes.raw))["email"]


ODD_PAGE_ATTRIBUTES = [
    {"email": 5},  # not text: decode_json's lenient path writes it as text
    {"location": "Boston"},
    {"created": ["2024-01-01"]},
    {"updated": 7, "joined_group_at": "2024-01-01"},
    # typed, yet the row conversion is lenient with them: a bare date, coordinates as text
    # and as a boolean, a null location
    {"created": "2024-01-01", "updated": "2024-01-02T03:04:05"},
    {"location": {"latitude": "51.5", "longitude": True, "city": "London"}},
    {"location": None, "properties": None},
]
REPAIRED_ATTRIBUTES = [
    {"first_name": "Ann\u0000e"},  # a NUL escape: decode_json repairs it
    {"last_name": "X\ud800Y"},
    {"properties": {"pair": "\ud83d\ude00"}},
]


@pytest.mark.parametrize("attributes", ODD_PAGE_ATTRIBUTES + REPAIRED_ATTRIBUTES)
def test_typed_decoding_of_odd_attributes_builds_decode_jsons_rows(
    attributes: dict[str, Any],
) -> None:
    """Escapes decode_json repairs send the page to it; odd values, the profile alone."""
    profiles = [{"type": "profile", "id": "P1", "attributes": attributes}]
    profiles.append({"type": "profile", "id": "P2", "attributes": {"email": "b@x.io"}})
    text = json.dumps({"data": profiles, "links": {"next": None}}).replace("\\\\u", "\\u")
    typed = decode_profile_page(text.encode())
    assert (typed is None) == (attributes in REPAIRED_ATTRIBUTES)
    layout = profile_layout(None, ())
    docs = [typed or decode_json(text.encode()), decode_json(text.encode())]
    rows = [profiles_table(page_profiles(doc), layout) for doc in docs]
    assert rows[0].num_rows == 2 and rows[0].equals(rows[1])


@pytest.mark.parametrize(
    "text", [r"quoted \"word\"", r"back\\slash", r"caf\u00e9", r"tab\there", r"a\/b", r"\u20ac"]
)
def test_typed_decoding_takes_escapes_it_need_not_repair(text: str) -> None:
    body = b'{"data":[{"type":"profile","id":"P1","attributes":{"first_name":"%s"}}],"links":{}}'
    page = decode_profile_page(body % text.encode())
    assert page is not None
    assert _decoded(page) == _plain(decode_json(body % text.encode()))


@pytest.mark.parametrize(
    "body",
    [
        b'{"data":[1],"links":{}}',
        b'{"data":null,"links":{}}',
        b'{"data":',
        b"<html>",
        b'{"data":[{"id":5}],"links":{}}',
    ],
)
def test_typed_decoding_leaves_what_is_no_profile_page(body: bytes) -> None:
    assert decode_profile_page(body) is None


@pytest.mark.parametrize("attributes", [b"null", b'"text"', b"[1]", b"7"])
def test_attributes_that_are_no_object_are_decoded_whole(attributes: bytes) -> None:
    body = b'{"data":[{"type":"profile","id":"P1","attributes":%s}],"links":{}}' % attributes
    page = decode_profile_page(body)
    assert page is not None
    (profile,) = page_profiles(page)
    assert profile["attributes"] == orjson.loads(attributes)


def test_typed_decoding_keeps_wide_integers_and_drops_unknown_attributes() -> None:
    body = (
        b'{"data":[{"type":"profile","id":"P1","attributes":{"properties":{"wide":%d},'
        b'"location":{"latitude":%d,"city":"Oslo"},"unheard_of":{"a":1}}}],"links":{}}'
        % (WIDE, WIDE)
    )
    page = _decoded(decode_profile_page(body))
    assert page == {
        "data": [
            {
                "type": "profile",
                "id": "P1",
                "attributes": {
                    "properties": {"wide": WIDE},
                    "location": {"latitude": WIDE, "city": "Oslo"},
                },
            }
        ],
        "links": {},
    }


def test_emulator_serves_odd_values_exactly(emu: Any) -> None:
    profile_id = add_odd_profile(emu)
    for fields in (None, "first_name,last_name,properties"):
        page = _page(emu, {} if fields is None else {"fields[profile]": fields})
        assert str(WIDE).encode() in page and b"\\ud800" in page and b"\\udc00" in page
        (item,) = [item for item in json.loads(page)["data"] if item["id"] == profile_id]
        names = list(ODD_ATTRIBUTES) if fields is None else fields.split(",")
        assert {n: item["attributes"][n] for n in names} == {n: ODD_ATTRIBUTES[n] for n in names}


def test_json_columns_keep_wide_integers_exact() -> None:
    layout = profile_layout(None, ("subscriptions", "predictive_analytics"))
    profile = {
        "type": "profile",
        "id": "P1",
        "attributes": {
            "email": {"wide": WIDE},  # not text: written as JSON text, exactly
            "properties": {"wide": WIDE, "list": [BELOW_INT64, None]},
            "subscriptions": {"email": {"marketing": {"count": WIDE}}},
            "predictive_analytics": {"historic_clv": 1.5},
        },
    }
    (row,) = profiles_table([profile], layout).to_pylist()
    assert json.loads(row["properties"]) == {"wide": WIDE, "list": [BELOW_INT64, None]}
    assert json.loads(row["subscriptions"]) == {"email": {"marketing": {"count": WIDE}}}
    assert json.loads(row["email"]) == {"wide": WIDE}
    assert row["predictive_analytics"] == '{"historic_clv":1.5}'


def test_segment_definition_keeps_a_wide_integer_as_text() -> None:
    definition = {"condition_groups": [{"value": WIDE, "other": [2, None]}]}
    row = segment_row({"id": "S1", "attributes": {"definition": definition}})
    assert row["definition"] == {"condition_groups": [{"value": str(WIDE), "other": [2, None]}]}
    normal = {"condition_groups": [{"value": 2**63}]}
    assert segment_row({"id": "S1", "attributes": {"definition": normal}})["definition"] is normal


def test_odd_values_load_into_duckdb_and_the_fixed_profile_loads_next(
    duckdb_loader: Loader, emu: Any, fast_retries: None
) -> None:
    profile_id = add_odd_profile(emu)
    stats = duckdb_loader.run()
    assert stats.retries == 0  # a lone surrogate is not mistaken for a truncated body
    assert stored_profile(duckdb_loader, profile_id) == STORED_ATTRIBUTES
    assert wide_as_text(duckdb_loader, profile_id, "properties->>'$.wide'") == str(WIDE)

    fix_odd_profile(emu, profile_id)
    duckdb_loader.run()
    fixed = stored_profile(duckdb_loader, profile_id)
    assert fixed["first_name"] == "Anne" and fixed["location_city"] == "Boston"
    assert fixed["properties"] == {"wide": 1, "plan": "pro"}


def _page(emu: Any, params: dict[str, str]) -> bytes:
    """The raw first page of the first segment's profiles (all of a `tiny` segment)."""
    response = requests.get(
        f"{emu.base_url}/api/segments/{emu.segment_ids()[0]}/profiles",
        params={"page[size]": "100", **params},
        headers={"Authorization": f"Klaviyo-API-Key {emu.api_key}", "revision": "2026-07-15"},
        timeout=30,
    )
    response.raise_for_status()
    return response.content
