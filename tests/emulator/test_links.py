"""Links the emulator emits lead to answers: flow triggers of a segment, a tag, a tag's segments.

The flow-trigger endpoints exist from revision 2024-10-15 (the revision `relationships.
flow-triggers` and `include=flow-triggers` appear); before it Klaviyo answers 404 "No valid
revisions found for method". The emulated account has no flows, so they list none. Scopes and
rate tiers are the spec's (`x-klaviyo-scopes`, `x-klaviyo-ratelimit`).
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any
from urllib.parse import urlsplit

import pytest
import requests
import spec

from klaviyo_emulator import Emulator
from klaviyo_emulator.wire.ratelimit import limits_for

OLD, FLOWS, NEW = "2024-06-15", "2024-10-15", "2026-07-15"
needs_specs = pytest.mark.skipif(spec.specs_dir() is None, reason="Klaviyo OpenAPI specs not found")

FLOW_PATHS = ("/api/segments/{id}/flow-triggers", "/api/segments/{id}/relationships/flow-triggers")
TAG_PATHS = ("/api/tags/{id}", "/api/tags/{id}/relationships/segments")
# spec operation -> (emulator operation name, scopes, burst, steady) from x-klaviyo-* of 2026-07-15
SPEC_OPERATIONS = {
    ("GET", "/api/segments/{id}/flow-triggers"): "get_segment_flow_triggers",
    ("GET", "/api/segments/{id}/relationships/flow-triggers"): (
        "get_segment_relationships_flow_triggers"
    ),
    ("GET", "/api/tags"): "get_tags",
    ("GET", "/api/tags/{id}"): "get_tag",
    ("GET", "/api/tags/{id}/relationships/segments"): "get_tag_relationships_segments",
}


def _headers(emu: Emulator, revision: str = NEW, key: str | None = None) -> dict[str, str]:
    return {"Authorization": f"Klaviyo-API-Key {key or emu.api_key}", "revision": revision}


def _get(emu: Emulator, url: str, revision: str = NEW, **params: str) -> requests.Response:
    if url.startswith("/"):
        url = emu.base_url + url
    return requests.get(url, params=params, headers=_headers(emu, revision), timeout=10)


def _tagged_segment(emu: Emulator) -> tuple[str, str]:
    segment_id = next(sid for sid in emu.segment_ids() if emu.segment_tags(sid))
    return segment_id, sorted(emu.segment_tags(segment_id))[0]


def _fill(emu: Emulator, template: str) -> str:
    segment_id, tag_id = _tagged_segment(emu)
    return template.replace("{id}", tag_id if template.startswith("/api/tags/") else segment_id)


def _template(revision: str, path: str) -> str:
    return path + "/" if revision < "2024-10-15" else path


def _spec(revision: str, path: str) -> dict[str, Any]:
    fragment = spec.load_spec(revision)
    if any(p.rstrip("/") == path for p in fragment["paths"]):
        return fragment
    return spec.load_full_spec(revision)


def _assert_valid(document: Any, revision: str, path: str, status: int = 200) -> None:
    schema = spec.response_schema(_spec(revision, path), "GET", _template(revision, path), status)
    errors = spec.validation_errors(document, schema)
    assert not errors, f"GET {path} at {revision}:\n" + "\n".join(errors[:20])


# --- flow triggers --------------------------------------------------------------------------


@needs_specs
@pytest.mark.parametrize("slash", ["", "/"])
@pytest.mark.parametrize("path", FLOW_PATHS)
def test_flow_triggers_match_the_spec(emu: Emulator, path: str, slash: str) -> None:
    response = _get(emu, _fill(emu, path) + slash)
    assert response.status_code == 200, response.text
    assert response.headers["Content-Type"] == "application/vnd.api+json"
    document = response.json()
    assert document["data"] == []
    assert document["links"] == {"self": response.url, "next": None, "prev": None}
    _assert_valid(document, NEW, path)


def test_flow_triggers_take_fields_flow(emu: Emulator) -> None:
    path = _fill(emu, FLOW_PATHS[0])
    assert _get(emu, path, **{"fields[flow]": "name,trigger_type"}).status_code == 200
    assert _get(emu, path, **{"fields[flow]": "id"}).status_code == 200
    assert _get(emu, path, FLOWS, **{"fields[flow]": "id"}).status_code == 400
    bad = _get(emu, _fill(emu, FLOW_PATHS[1]), **{"fields[flow]": "name"})
    assert bad.status_code == 400
    assert bad.json()["errors"][0]["source"] == {"parameter": "fields[flow]"}


@pytest.mark.parametrize("revision", [OLD, "2024-07-15"])
@pytest.mark.parametrize("path", FLOW_PATHS)
def test_flow_triggers_do_not_exist_before_2024_10_15(
    emu: Emulator, path: str, revision: str
) -> None:
    response = _get(emu, _template(revision, _fill(emu, path)), revision)
    assert response.status_code == 404
    error = response.json()["errors"][0]
    assert (error["code"], error["detail"]) == ("not_found", "No valid revisions found for method")
    assert _get(emu, _fill(emu, path), FLOWS).status_code == 200


@pytest.mark.parametrize("path", FLOW_PATHS + ("/api/segments/{id}/tags",))
def test_unknown_segment_is_404(emu: Emulator, path: str) -> None:
    response = _get(emu, path.replace("{id}", "XXXXXX"))
    assert response.status_code == 404
    assert response.json()["errors"][0]["code"] == "not_found"


def test_include_flow_triggers_relates_no_flow(emu: Emulator) -> None:
    segment_id, _ = _tagged_segment(emu)
    document = _get(emu, f"/api/segments/{segment_id}", include="flow-triggers").json()
    relationship = document["data"]["relationships"]["flow-triggers"]
    assert relationship["data"] == []
    assert document["included"] == []
    before = _get(emu, f"/api/segments/{segment_id}/", OLD).json()["data"]["relationships"]
    assert "flow-triggers" not in before


# --- tags -----------------------------------------------------------------------------------


@needs_specs
@pytest.mark.parametrize("revision", [OLD, NEW])
@pytest.mark.parametrize(
    "query",
    [{}, {"include": "tag-group"}, {"include": "tag-group", "fields[tag-group]": "name"}],
    ids=["plain", "include", "include-sparse"],
)
def test_get_tag_matches_the_spec(emu: Emulator, revision: str, query: dict[str, str]) -> None:
    _, tag_id = _tagged_segment(emu)
    template = _template(revision, "/api/tags/{id}")
    response = _get(emu, template.replace("{id}", tag_id), revision, **query)
    assert response.status_code == 200, response.text
    document = response.json()
    assert document["data"]["id"] == tag_id
    assert document["data"]["attributes"] == emu.tag(tag_id)
    assert document["data"]["links"]["self"] == response.url.split("?")[0]
    sparse = "fields[tag-group]" in query
    loaded = _spec(revision, "/api/tags/{id}")
    errors = spec.validation_errors(
        document, spec.response_schema(loaded, "GET", template, 200, sparse=sparse)
    )
    assert not errors, "\n".join(errors[:20])
    if not query:
        assert "included" not in document
        return
    (group,) = document["included"]
    assert document["data"]["relationships"]["tag-group"]["data"] == {
        "type": "tag-group",
        "id": group["id"],
    }
    full = {"name": "Default", "exclusive": False, "default": True}
    assert group["attributes"] == ({"name": "Default"} if sparse else full)


@needs_specs
@pytest.mark.parametrize("revision", [OLD, NEW])
def test_tag_segment_ids_match_the_spec_and_the_links(emu: Emulator, revision: str) -> None:
    _, tag_id = _tagged_segment(emu)
    path = _template(revision, f"/api/tags/{tag_id}/relationships/segments")
    document = _get(emu, path, revision).json()
    _assert_valid(document, revision, "/api/tags/{id}/relationships/segments")
    expected = [sid for sid in emu.segment_ids() if tag_id in emu.segment_tags(sid)]
    assert [item["id"] for item in document["data"]] == expected
    assert {item["type"] for item in document["data"]} == {"segment"}
    emu.unlink_tag(expected[0], tag_id)
    after = _get(emu, path, revision).json()["data"]
    assert [item["id"] for item in after] == expected[1:]


@pytest.mark.parametrize("path", TAG_PATHS)
def test_unknown_tag_is_404(emu: Emulator, path: str) -> None:
    response = _get(emu, path.replace("{id}", "00000000-0000-4000-8000-000000000000"))
    assert response.status_code == 404
    assert response.json()["errors"][0]["code"] == "not_found"


@needs_specs
@pytest.mark.parametrize("revision", [OLD, NEW])
@pytest.mark.parametrize(
    "query, sparse",
    [
        ({}, False),
        ({"sort": "-name", "include": "tag-group"}, False),
        ({"filter": "starts-with(name,'V')", "fields[tag]": "name"}, True),
        ({"filter": "equals(name,['VIP','sms'])"}, False),
    ],
)
def test_get_tags_matches_the_spec(
    emu: Emulator, revision: str, query: dict[str, str], sparse: bool
) -> None:
    response = _get(emu, _template(revision, "/api/tags"), revision, **query)
    assert response.status_code == 200, response.text
    document = response.json()
    schema = spec.response_schema(
        spec.load_spec(revision), "GET", _template(revision, "/api/tags"), 200, sparse=sparse
    )
    errors = spec.validation_errors(document, schema)
    assert not errors, "\n".join(errors[:20])
    names = {tid: emu.tag(tid)["name"] for tid in emu.tag_ids()}
    ids = [item["id"] for item in document["data"]]
    if "filter" not in query:
        assert sorted(ids) == sorted(names)
    if query.get("sort") == "-name":
        assert [names[i] for i in ids] == sorted(names.values(), reverse=True)
    if query.get("filter", "").startswith("starts-with"):
        assert ids and all(names[i].startswith("V") for i in ids)


def test_get_tags_page_size_from_2026_04_15(emu: Emulator) -> None:
    assert _get(emu, "/api/tags", "2026-04-15", **{"page[size]": "50"}).status_code == 200
    for revision, size in (("2026-01-15", "2"), ("2026-04-15", "51"), ("2026-04-15", "0")):
        response = _get(emu, "/api/tags", revision, **{"page[size]": size})
        assert response.status_code == 400
        assert response.json()["errors"][0]["source"] == {"parameter": "page[size]"}


# --- scopes and rate tiers ------------------------------------------------------------------


@needs_specs
@pytest.mark.parametrize(("method", "path"), sorted(SPEC_OPERATIONS))
def test_scopes_and_tiers_are_the_specs(emu: Emulator, method: str, path: str) -> None:
    official = spec.operation(spec.load_full_spec(NEW), method, path)
    operation = SPEC_OPERATIONS[(method, path)]
    (_, limit), *_ = limits_for(operation, NEW, {})
    burst, steady = (
        official["x-klaviyo-ratelimit"]["burst"],
        official["x-klaviyo-ratelimit"]["steady"],
    )
    assert (f"{limit.burst}/s", f"{limit.steady}/m") == (burst, steady)
    scopes = set(official["x-klaviyo-scopes"])
    url = _fill(emu, path)
    response = requests.get(
        emu.base_url + url, headers=_headers(emu, key=emu.create_api_key(scopes)), timeout=10
    )
    assert response.status_code == 200, response.text
    assert response.headers["RateLimit-Limit"] == steady.split("/")[0]
    for missing in scopes:
        key = emu.create_api_key(scopes - {missing})
        denied = requests.get(emu.base_url + url, headers=_headers(emu, key=key), timeout=10)
        assert denied.status_code == 403
        assert denied.json()["errors"][0]["code"] == "permission_denied"


@pytest.mark.parametrize("path", FLOW_PATHS + TAG_PATHS)
def test_s_tier_throttles(emu: Emulator, path: str) -> None:
    emu.set_rate_limits("real")
    session = requests.Session()
    session.headers.update(_headers(emu))
    url = emu.base_url + _fill(emu, path)
    for _ in range(30):  # 3 a second: a few quick requests overflow a burst window
        response = session.get(url, timeout=10)
        if response.status_code == 429:
            break
    assert response.status_code == 429
    assert int(response.headers["Retry-After"]) >= 1


# --- every segment link leads somewhere ----------------------------------------------------


def _links(node: Any) -> Iterator[str]:
    if isinstance(node, dict):
        for key, value in node.items():
            if key in ("self", "related") and isinstance(value, str):
                yield value
            else:
                yield from _links(value)
    elif isinstance(node, list):
        for item in node:
            yield from _links(item)


@pytest.mark.parametrize("revision", [OLD, FLOWS, NEW])
def test_segment_and_tag_links_are_served(emu: Emulator, revision: str) -> None:
    """Every link of a segment, and a tag's own and segments links, answers 200.

    A tag's other relationships (lists, campaigns, flows, tag-group) and the `related` link of
    its segments name parts of the API the emulator does not serve (docs/emulator.md).
    """
    segment_id, _ = _tagged_segment(emu)
    include = "tags,flow-triggers" if revision >= FLOWS else "tags"
    segments = _get(emu, _template(revision, "/api/segments"), revision, include=include).json()
    tags = _get(emu, _template(revision, f"/api/segments/{segment_id}/tags"), revision).json()
    followed = set()
    for link in [*_links(segments["data"]), *_links(segments["included"]), *_links(tags)]:
        path = urlsplit(link).path
        if path.startswith("/api/tags/"):
            parts = path.rstrip("/").split("/")
            if len(parts) > 4 and parts[4:] != ["relationships", "segments"]:
                continue
        followed.add(link)
    assert any("/flow-triggers" in link for link in followed) is (revision >= FLOWS)
    assert any("/relationships/segments" in link for link in followed)
    for link in sorted(followed):
        response = _get(emu, link, revision)
        assert response.status_code == 200, f"{link}: {response.text}"
        assert link.endswith("/") is (revision < FLOWS)
