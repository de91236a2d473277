"""Revision 2026-10-15, Klaviyo's current one and the official SDK's default: served as 2026-07-15.

Its spec is not in the snapshot (API-NOTES §1), so every answer at 2026-10-15 must be the answer
at 2026-07-15, valid against that spec; revisions not released yet stay a 400 (API-NOTES §11).
"""

from __future__ import annotations

from typing import Any

import pytest
import requests
import spec

from klaviyo_emulator import Emulator
from sources.klaviyo.api.client import KlaviyoClient
from sources.klaviyo.options import validate_revision
from sources.klaviyo.stats import ExtractionStats

CURRENT, NEWEST_SPEC = "2026-10-15", "2026-07-15"
needs_specs = pytest.mark.skipif(spec.specs_dir() is None, reason="Klaviyo OpenAPI specs not found")

# (path template of the spec, query); {id} is a segment with tags and members, or one of its tags
PATHS: list[tuple[str, dict[str, str]]] = [
    ("/api/segments", {"include": "tags,flow-triggers"}),
    ("/api/segments", {"page[size]": "2", "sort": "-name"}),
    ("/api/segments/{id}", {"additional-fields[segment]": "profile_count"}),
    ("/api/segments/{id}/profiles", {"page[size]": "5", "sort": "joined_group_at"}),
    ("/api/segments/{id}/relationships/profiles", {"filter": "any(profile_id,['x'])"}),
    ("/api/segments/{id}/tags", {"fields[tag]": "id,name"}),
    ("/api/segments/{id}/relationships/tags", {}),
    ("/api/segments/{id}/flow-triggers", {}),
    ("/api/segments/{id}/relationships/flow-triggers", {}),
    ("/api/tags", {"include": "tag-group", "page[size]": "3"}),
    ("/api/tags/{id}", {"fields[tag-group]": "id,name", "include": "tag-group"}),
    ("/api/tags/{id}/relationships/segments", {}),
]


def _headers(emu: Emulator, revision: str) -> dict[str, str]:
    return {"Authorization": f"Klaviyo-API-Key {emu.api_key}", "revision": revision}


def _segment(emu: Emulator) -> str:
    return max(
        emu.segment_ids(), key=lambda sid: (bool(emu.segment_tags(sid)), len(emu.members(sid)))
    )


def _url(emu: Emulator, template: str) -> str:
    segment_id = _segment(emu)
    tag_id = sorted(emu.segment_tags(segment_id))[0]
    resource_id = tag_id if template.startswith("/api/tags/") else segment_id
    return emu.base_url + template.replace("{id}", resource_id)


def _spec_for(path: str) -> dict[str, Any]:
    """The fragment when it has the operation, else the whole spec."""
    fragment = spec.load_spec(NEWEST_SPEC)
    return fragment if path in fragment["paths"] else spec.load_full_spec(NEWEST_SPEC)


@needs_specs
@pytest.mark.parametrize("path, query", PATHS, ids=[f"{p} {q}" for p, q in PATHS])
def test_answers_as_2026_07_15_and_matches_its_spec(
    emu: Emulator, path: str, query: dict[str, str]
) -> None:
    url = _url(emu, path)
    current = requests.get(url, params=query, headers=_headers(emu, CURRENT), timeout=10)
    newest = requests.get(url, params=query, headers=_headers(emu, NEWEST_SPEC), timeout=10)
    assert current.status_code == 200, current.text
    assert current.json() == newest.json()
    assert current.headers["RateLimit-Limit"] == newest.headers["RateLimit-Limit"]
    sparse = any(name.startswith("fields[") for name in query)
    schema = spec.response_schema(_spec_for(path), "GET", path, 200, sparse=sparse)
    errors = spec.validation_errors(current.json(), schema)
    assert not errors, "\n".join(errors[:20])


def test_l_tier_steady_limit_is_that_of_2026(emu: Emulator) -> None:
    response = requests.get(
        f"{emu.base_url}/api/segments", headers=_headers(emu, CURRENT), timeout=10
    )
    assert response.headers["RateLimit-Limit"] == "750"


@pytest.mark.parametrize("revision", [CURRENT, f"{CURRENT}.pre"])
def test_writes_are_accepted_at_the_current_revision(emu: Emulator, revision: str) -> None:
    headers = {**_headers(emu, revision), "Content-Type": "application/vnd.api+json"}
    body = {
        "data": {
            "type": "segment",
            "attributes": {"name": "New", "definition": {"condition_groups": []}},
        }
    }
    created = requests.post(f"{emu.base_url}/api/segments", json=body, headers=headers, timeout=10)
    assert created.status_code == 201, created.text
    segment_id = created.json()["data"]["id"]
    # `is_active` is writable from 2026-01-15 on, so also at the revision served in its place
    update = {"data": {"type": "segment", "id": segment_id, "attributes": {"is_active": False}}}
    url = f"{emu.base_url}/api/segments/{segment_id}"
    updated = requests.patch(url, json=update, headers=headers, timeout=10)
    assert updated.status_code == 200, updated.text
    assert updated.json()["data"]["attributes"]["is_active"] is False


@pytest.mark.parametrize("revision", ["2026-10-16", "2026-11-15", "2027-01-15", "2027-01-15.pre"])
def test_unreleased_revisions_are_refused(emu: Emulator, revision: str) -> None:
    response = requests.get(
        f"{emu.base_url}/api/segments", headers=_headers(emu, revision), timeout=10
    )
    assert response.status_code == 400
    error = response.json()["errors"][0]
    assert error["code"] == "invalid"
    assert error["source"] == {"parameter": "revision"}
    assert CURRENT in error["detail"] and "2024-06-15" in error["detail"]


def test_the_source_accepts_the_current_revision(emu: Emulator) -> None:
    assert validate_revision(CURRENT) == CURRENT
    client = KlaviyoClient(
        api_key=emu.api_key,
        base_url=emu.base_url,
        revision=CURRENT,
        timeout=10.0,
        max_retries=0,
        stats=ExtractionStats(),
    )
    pages = list(client.paginate("/api/segments", {"include": "tags"}, "get_segments"))
    assert {s["id"] for page in pages for s in page["data"]} == set(emu.segment_ids())
    segment_id = _segment(emu)
    path = f"/api/segments/{segment_id}/profiles"
    params = {"page[size]": "7", "sort": "joined_group_at"}
    members = [
        item["id"]
        for page in client.paginate(path, params, "get_segment_profiles", segment_id)
        for item in page["data"]
    ]
    assert members == list(emu.members(segment_id))
