"""Paging the way Klaviyo's official Python SDK documents it: `page_cursor=links.next`.

klaviyo-api 25.0.0 (`KlaviyoAPI._page_cursor_update`) turns the link into `page[cursor]` so:
from a link containing `https://` it keeps what follows `page[cursor]` (or its encoded form) up
to the next `&`, which leaves the `=` in front of the cursor; any other link it keeps whole;
then it percent-decodes the value. Klaviyo's links are https and the emulator's are http, so
both forms reach the emulator, and both must page exactly like following `links.next`.
"""

from __future__ import annotations

from typing import Any
from urllib.parse import unquote, urlsplit

import pytest
import requests
import spec

from klaviyo_emulator import Emulator

REVISION = "2026-07-15"
SDK_CURSOR_SEARCH_TOKENS = ("page%5Bcursor%5D", "page[cursor]")
needs_specs = pytest.mark.skipif(spec.specs_dir() is None, reason="Klaviyo OpenAPI specs not found")

# (spec path template, first page's query, sparse fieldsets?)
LISTINGS: list[tuple[str, dict[str, str], bool]] = [
    ("/api/segments", {"page[size]": "2", "include": "tags"}, False),
    ("/api/segments", {"page[size]": "1", "sort": "-updated", "fields[segment]": "name"}, True),
    ("/api/segments/{id}/profiles", {"page[size]": "7", "fields[profile]": "email"}, True),
    (
        "/api/segments/{id}/profiles",
        {"page[size]": "4", "filter": "greater-than(joined_group_at,2001-01-01T00:00:00Z)"},
        False,
    ),
    (
        "/api/segments/{id}/relationships/profiles",
        {"page[size]": "6", "sort": "-joined_group_at"},
        False,
    ),
    ("/api/tags", {"page[size]": "1", "sort": "name"}, False),
]


def sdk_page_cursor(page_cursor: str) -> str:
    """The `page[cursor]` value klaviyo-api 25.0.0 sends for `page_cursor=<value>`."""
    if "https://" in page_cursor:
        for token in SDK_CURSOR_SEARCH_TOKENS:
            if token in page_cursor:
                page_cursor = page_cursor.split(token)[-1].split("&")[0]
                break
    return unquote(page_cursor)


def _headers(emu: Emulator) -> dict[str, str]:
    return {"Authorization": f"Klaviyo-API-Key {emu.api_key}", "revision": REVISION}


def _first_url(emu: Emulator, template: str) -> str:
    segment_id = max(emu.segment_ids(), key=lambda sid: len(emu.members(sid)))
    return emu.base_url + template.replace("{id}", segment_id)


def _follow_links(emu: Emulator, url: str, query: dict[str, str]) -> list[list[str]]:
    """Ids per page, following links.next verbatim (the reference walk)."""
    pages: list[list[str]] = []
    response = requests.get(url, params=query, headers=_headers(emu), timeout=10)
    while True:
        assert response.status_code == 200, response.text
        pages.append([item["id"] for item in response.json()["data"]])
        next_link = response.json()["links"]["next"]
        if next_link is None:
            return pages
        response = requests.get(next_link, headers=_headers(emu), timeout=10)


def _sdk_walk(
    emu: Emulator, url: str, query: dict[str, str], as_https: bool, schema: dict[str, Any] | None
) -> list[list[str]]:
    """Ids per page, the SDK's way: same arguments again, plus `page_cursor=links.next`."""
    pages: list[list[str]] = []
    params = dict(query)
    while True:
        response = requests.get(url, params=params, headers=_headers(emu), timeout=10)
        assert response.status_code == 200, response.text
        document = response.json()
        if schema is not None:
            errors = spec.validation_errors(document, schema)
            assert not errors, "\n".join(errors[:20])
        pages.append([item["id"] for item in document["data"]])
        next_link = document["links"]["next"]
        if next_link is None:
            return pages
        if as_https:
            # what the same link looks like from Klaviyo, which serves https only
            next_link = "https://" + next_link.removeprefix("http://")
        params = {**query, "page[cursor]": sdk_page_cursor(next_link)}
        assert len(pages) < 100, "paging does not end"


def test_the_sdk_leaves_an_equals_sign_before_https_cursors() -> None:
    link = "https://a.klaviyo.com/api/segments?page%5Bsize%5D=1&page%5Bcursor%5D=bmV4dDo6aWQ"
    assert sdk_page_cursor(link) == "=bmV4dDo6aWQ"
    http_link = "http://127.0.0.1:8080/api/segments?page%5Bcursor%5D=bmV4dDo6aWQ"
    assert (
        sdk_page_cursor(http_link) == "http://127.0.0.1:8080/api/segments?page[cursor]=bmV4dDo6aWQ"
    )


@needs_specs
@pytest.mark.parametrize("as_https", [False, True], ids=["http-link-whole", "equals-cursor"])
@pytest.mark.parametrize(
    "template, query, sparse", LISTINGS, ids=[f"{t} {q}" for t, q, _ in LISTINGS]
)
def test_sdk_paging_matches_following_links(
    emu: Emulator, template: str, query: dict[str, str], sparse: bool, as_https: bool
) -> None:
    url = _first_url(emu, template)
    schema = spec.response_schema(spec.load_spec(REVISION), "GET", template, 200, sparse=sparse)
    expected = _follow_links(emu, url, query)
    assert len(expected) > 1, "the case is meant to page"
    assert _sdk_walk(emu, url, query, as_https, schema) == expected


def test_a_whole_link_with_the_cursor_still_encoded_pages_too(emu: Emulator) -> None:
    url = _first_url(emu, "/api/segments/{id}/relationships/profiles")
    first = requests.get(url, params={"page[size]": "3"}, headers=_headers(emu), timeout=10)
    next_link = first.json()["links"]["next"]
    assert "page%5Bcursor%5D=" in next_link
    direct = requests.get(next_link, headers=_headers(emu), timeout=10).json()
    params = {"page[size]": "3", "page[cursor]": next_link}
    whole = requests.get(url, params=params, headers=_headers(emu), timeout=10)
    assert whole.status_code == 200, whole.text
    assert whole.json()["data"] == direct["data"]
    assert whole.json()["links"]["next"] == direct["links"]["next"]


def _cursor(emu: Emulator, template: str) -> tuple[str, str]:
    url = _first_url(emu, template)
    first = requests.get(url, params={"page[size]": "2"}, headers=_headers(emu), timeout=10)
    next_link = first.json()["links"]["next"]
    token = dict(
        part.split("=", 1) for part in urlsplit(next_link).query.split("&") if "=" in part
    )["page%5Bcursor%5D"]
    return url, token


@pytest.mark.parametrize(
    "make_value",
    [
        lambda token: "=",
        lambda token: "==" + token,
        lambda token: "=" + token[:-3],
        lambda token: "http://127.0.0.1/api/segments/x/profiles?page[cursor]=garbage",
        lambda token: "http://127.0.0.1/api/segments/x/profiles?page[size]=2",
        lambda token: "ftp://127.0.0.1/?page[cursor]=" + token,
    ],
    ids=["bare-equals", "two-equals", "cut", "link-bad-cursor", "link-no-cursor", "not-http"],
)
def test_what_is_not_a_cursor_stays_400(emu: Emulator, make_value: Any) -> None:
    url, token = _cursor(emu, "/api/segments/{id}/profiles")
    params = {"page[size]": "2", "page[cursor]": make_value(token)}
    response = requests.get(url, params=params, headers=_headers(emu), timeout=10)
    assert response.status_code == 400, response.text
    error = response.json()["errors"][0]
    assert error["detail"] == "Invalid cursor provided."
    assert error["source"] == {"pointer": "/data/"}


def test_an_sdk_cursor_is_still_bound_to_its_listing(emu: Emulator) -> None:
    _, token = _cursor(emu, "/api/segments/{id}/profiles")
    url = _first_url(emu, "/api/segments/{id}/relationships/profiles")
    params = {"page[size]": "2", "page[cursor]": "=" + token}
    response = requests.get(url, params=params, headers=_headers(emu), timeout=10)
    assert response.status_code == 400
    assert response.json()["errors"][0]["detail"] == "Invalid cursor provided."
