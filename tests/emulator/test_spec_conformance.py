"""Every emulator operation validated against Klaviyo's own OpenAPI fragment of its revision."""

from __future__ import annotations

import os
from collections.abc import Iterator
from typing import Any

import pytest
import requests
import spec

SPECS_MISSING = f"Klaviyo OpenAPI fragments not found beside the repository or in ${spec.SPECS_ENV}"
needs_specs = pytest.mark.skipif(spec.specs_dir() is None, reason=SPECS_MISSING)


def test_specs_are_found_where_required() -> None:
    """CI sets KLAVIYO_REQUIRE_SPECS so that conformance can never be skipped silently there."""
    if os.environ.get("KLAVIYO_REQUIRE_SPECS") and spec.specs_dir() is None:
        pytest.fail(SPECS_MISSING)


REVISIONS = list(spec.SPEC_FILES)
PROFILE_SPARSE = "email,first_name,location,properties,joined_group_at"
# (case id, path template without trailing slash, query, sparse fieldsets?)
GET_CASES: list[tuple[str, str, dict[str, str], bool]] = [
    ("segments-default", "/api/segments", {}, False),
    ("segments-sparse", "/api/segments", {"fields[segment]": "name,updated"}, True),
    ("segments-include-tags", "/api/segments", {"include": "tags"}, False),
    (
        "segments-include-tags-sparse",
        "/api/segments",
        {"include": "tags", "fields[tag]": "name", "fields[segment]": "name,is_active"},
        True,
    ),
    (
        "segments-filter-sort",
        "/api/segments",
        {"filter": "greater-than(updated,2000-01-01T00:00:00Z)", "sort": "-updated"},
        False,
    ),
    ("segment-default", "/api/segments/{id}", {}, False),
    ("segment-include-tags", "/api/segments/{id}", {"include": "tags"}, False),
    (
        "segment-profile-count",
        "/api/segments/{id}",
        {"additional-fields[segment]": "profile_count"},
        False,
    ),
    (
        "segment-profile-count-sparse",
        "/api/segments/{id}",
        {"additional-fields[segment]": "profile_count", "fields[segment]": "name,profile_count"},
        True,
    ),
    ("profiles-default", "/api/segments/{id}/profiles", {}, False),
    ("profiles-page-100", "/api/segments/{id}/profiles", {"page[size]": "100"}, False),
    (
        "profiles-sparse",
        "/api/segments/{id}/profiles",
        {"fields[profile]": PROFILE_SPARSE, "page[size]": "3"},
        True,
    ),
    (
        "profiles-additional-fields",
        "/api/segments/{id}/profiles",
        {"additional-fields[profile]": "subscriptions,predictive_analytics", "page[size]": "7"},
        False,
    ),
    (
        "profiles-filter-sort",
        "/api/segments/{id}/profiles",
        {
            "filter": "greater-or-equal(joined_group_at,2000-01-01T00:00:00Z)",
            "sort": "-joined_group_at",
            "page[size]": "4",
        },
        False,
    ),
    ("relationships-profiles", "/api/segments/{id}/relationships/profiles", {}, False),
    (
        "relationships-profiles-paged",
        "/api/segments/{id}/relationships/profiles",
        {"page[size]": "5", "sort": "joined_group_at"},
        False,
    ),
    ("tags", "/api/segments/{id}/tags", {}, False),
    ("tags-sparse", "/api/segments/{id}/tags", {"fields[tag]": "name"}, True),
    ("relationships-tags", "/api/segments/{id}/relationships/tags", {}, False),
]


def _template(revision: str, path: str) -> str:
    """The spec's path form at a revision: trailing slash up to 2024-07-15."""
    return path + "/" if revision < "2024-10-15" else path


def _headers(emu: Any, revision: str) -> dict[str, str]:
    return {
        "Authorization": f"Klaviyo-API-Key {emu.api_key}",
        "revision": revision,
        "accept": "application/vnd.api+json",
    }


def _segment_with_tags_and_members(emu: Any) -> str:
    return max(
        emu.segment_ids(),
        key=lambda sid: (bool(emu.segment_tags(sid)), len(emu.members(sid))),
    )


def _pages(emu: Any, url: str, params: dict[str, str], revision: str) -> Iterator[Any]:
    """The first page and up to two more, following links.next verbatim."""
    response = requests.get(url, params=params, headers=_headers(emu, revision), timeout=10)
    for _ in range(3):
        yield response
        next_url = (response.json().get("links") or {}).get("next")
        if response.status_code != 200 or not next_url:
            return
        response = requests.get(next_url, headers=_headers(emu, revision), timeout=10)


def _assert_valid(body: Any, schema: dict[str, Any], what: str) -> None:
    errors = spec.validation_errors(body, schema)
    assert not errors, f"{what} breaks the spec:\n" + "\n".join(errors[:20])


@needs_specs
@pytest.mark.parametrize("revision", REVISIONS)
@pytest.mark.parametrize(
    "case, path, query, sparse", GET_CASES, ids=[case[0] for case in GET_CASES]
)
def test_get_operations_match_the_spec(
    emu: Any, revision: str, case: str, path: str, query: dict[str, str], sparse: bool
) -> None:
    template = _template(revision, path)
    schema = spec.response_schema(spec.load_spec(revision), "GET", template, 200, sparse=sparse)
    segment_id = _segment_with_tags_and_members(emu)
    url = emu.base_url + template.replace("{id}", segment_id)
    pages = 0
    for response in _pages(emu, url, query, revision):
        assert response.status_code == 200, response.text
        assert response.headers["Content-Type"].startswith("application/vnd.api+json")
        _assert_valid(response.json(), schema, f"{case} at {revision}, page {pages + 1}")
        pages += 1
    assert pages >= 1
    if case in ("profiles-sparse", "relationships-profiles-paged", "profiles-filter-sort"):
        assert pages > 1, "the case is meant to cover a page with links.prev set"


@needs_specs
@pytest.mark.parametrize("revision", REVISIONS)
def test_mutations_match_the_spec(emu: Any, revision: str) -> None:
    loaded = spec.load_spec(revision)
    collection = _template(revision, "/api/segments")
    single = _template(revision, "/api/segments/{id}")
    headers = {**_headers(emu, revision), "Content-Type": "application/vnd.api+json"}
    definition = {
        "condition_groups": [
            {
                "conditions": [
                    {
                        "type": "profile-property",
                        "property": "properties['plan']",
                        "filter": {"type": "string", "operator": "equals", "value": "pro"},
                    }
                ]
            }
        ]
    }
    create = {"data": {"type": "segment", "attributes": {"name": "Pro", "definition": definition}}}
    _assert_valid(create, _request_schema(loaded, "POST", collection), "the create request")
    created = requests.post(emu.base_url + collection, json=create, headers=headers, timeout=10)
    assert created.status_code == 201, created.text
    _assert_valid(
        created.json(), spec.response_schema(loaded, "POST", collection, 201), "create_segment"
    )
    segment_id = created.json()["data"]["id"]

    update = {"data": {"type": "segment", "id": segment_id, "attributes": {"name": "Pro plan"}}}
    _assert_valid(update, _request_schema(loaded, "PATCH", single), "the update request")
    url = emu.base_url + single.replace("{id}", segment_id)
    updated = requests.patch(url, json=update, headers=headers, timeout=10)
    assert updated.status_code == 200, updated.text
    _assert_valid(
        updated.json(), spec.response_schema(loaded, "PATCH", single, 200), "update_segment"
    )
    assert updated.json()["data"]["attributes"]["name"] == "Pro plan"

    deleted = requests.delete(url, headers=_headers(emu, revision), timeout=10)
    assert deleted.status_code == 204
    assert deleted.content == b""
    assert "204" in spec.operation(loaded, "DELETE", single)["responses"]


def _request_schema(loaded: dict[str, Any], method: str, path: str) -> dict[str, Any]:
    body = spec._resolve(loaded, spec.operation(loaded, method, path)["requestBody"], ())
    return spec._relax(next(iter(body["content"].values()))["schema"])


@needs_specs
@pytest.mark.parametrize("revision", REVISIONS)
@pytest.mark.parametrize(
    "path, query, status",
    [
        ("/api/segments/{missing}", {}, 404),
        ("/api/segments/{id}/profiles", {"filter": "equals(email,nope)"}, 400),
        ("/api/segments/{id}/profiles", {"page[size]": "101"}, 400),
        ("/api/segments", {"include": "profiless"}, 400),
        ("/api/segments/{id}/profiles", {"page[cursor]": "not-a-cursor"}, 400),
    ],
)
def test_errors_match_the_spec(
    emu: Any, revision: str, path: str, query: dict[str, str], status: int
) -> None:
    template = _template(revision, path.replace("{missing}", "{id}"))
    schema = spec.response_schema(spec.load_spec(revision), "GET", template, status)
    segment_id = "XXXXXX" if "{missing}" in path else emu.segment_ids()[0]
    url = emu.base_url + template.replace("{id}", segment_id)
    response = requests.get(url, params=query, headers=_headers(emu, revision), timeout=10)
    assert response.status_code == status, response.text
    _assert_valid(response.json(), schema, f"the {status} body")


@needs_specs
def test_relaxations_are_only_the_documented_nulls() -> None:
    loaded = spec.load_spec("2024-06-15")
    schema = spec.response_schema(loaded, "GET", "/api/segments/{id}/profiles/", 200)
    member = {
        "type": "profile",
        "id": "01HZX8A6R0J3VQ2N9P4K7T5M1B",
        "attributes": {
            "email": None,
            "location": None,
            "subscriptions": None,
            "joined_group_at": "2024-01-15T10:22:31+00:00",
        },
        "links": {"self": "https://a.klaviyo.com/api/profiles/01HZX8A6R0J3VQ2N9P4K7T5M1B/"},
    }
    page = {"data": [member], "links": {"self": "https://x/", "next": None, "prev": None}}
    assert spec.validation_errors(page, schema) == []
    # what stays strict: a required attribute, a non-nullable self link, wrong types
    broken = {
        "data": [{**member, "attributes": {"email": 3, "location": {"latitude": True}}}],
        "links": {"self": None},
    }
    messages = "\n".join(spec.validation_errors(broken, schema))
    assert "'joined_group_at' is a required property" in messages
    assert "links/self" in messages
    assert "data/0/attributes/email" in messages
    assert "location/latitude" in messages
    sparse = spec.response_schema(loaded, "GET", "/api/segments/{id}/profiles/", 200, sparse=True)
    assert "joined_group_at" not in "\n".join(spec.validation_errors(broken, sparse))
