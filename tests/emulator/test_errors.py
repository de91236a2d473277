"""Every error path of the emulator, with the body shape of API-NOTES §9 and the check order of §13."""

from __future__ import annotations

import uuid
from typing import Any
from urllib.parse import parse_qs, urlparse

import pytest
import requests

OLD, NEW = "2024-06-15", "2026-07-15"
DEFINITION = {
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


def _headers(key: str | None, revision: str | None = OLD, **extra: str) -> dict[str, str]:
    headers = {"accept": "application/vnd.api+json", **extra}
    if key is not None:
        headers["Authorization"] = f"Klaviyo-API-Key {key}"
    if revision is not None:
        headers["revision"] = revision
    return headers


def _get(emu: Any, path: str, params: dict[str, str] | None = None, **kwargs: Any) -> Any:
    headers = kwargs.pop("headers", None) or _headers(emu.api_key, kwargs.pop("revision", OLD))
    return requests.get(f"{emu.base_url}{path}", params=params, headers=headers, timeout=10)


def assert_error(response: requests.Response, status: int, code: str | None = None) -> dict:
    """Checks the §9 shape and returns errors[0]."""
    assert response.status_code == status, response.text
    assert response.headers["Content-Type"].startswith("application/vnd.api+json")
    body = response.json()
    assert isinstance(body["errors"], list) and body["errors"]
    error = body["errors"][0]
    uuid.UUID(error["id"])
    assert error["status"] == status and isinstance(error["status"], int)
    for key in ("code", "title", "detail"):
        assert isinstance(error[key], str) and error[key], key
    assert isinstance(error["source"], dict)
    assert set(error["source"]) & {"pointer", "parameter"}
    if code is not None:
        assert error["code"] == code
    return error


def _segment(emu: Any) -> str:
    return max(emu.segment_ids(), key=lambda sid: len(emu.members(sid)))


# --- 401 ---


def test_401_without_authorization(emu: Any) -> None:
    error = assert_error(
        _get(emu, "/api/segments/", headers=_headers(None)), 401, "not_authenticated"
    )
    assert error["title"] == "Authentication credentials were not provided."
    assert error["detail"] == "Missing or invalid authorization scheme. Please use Klaviyo-API-Key."
    assert error["source"] == {"pointer": "/data/"}


@pytest.mark.parametrize("scheme", ["Bearer", "Token", "klaviyo-api-key-x", ""])
def test_401_wrong_scheme(emu: Any, scheme: str) -> None:
    headers = {**_headers(None), "Authorization": f"{scheme} {emu.api_key}".strip()}
    response = _get(emu, "/api/segments/", headers=headers)
    assert_error(response, 401, "not_authenticated")
    assert emu.api_key not in response.text


@pytest.mark.parametrize("key", ["pk_" + "a" * 34, "pk_short", "sk_" + "b" * 34, ""])
def test_401_unknown_key(emu: Any, key: str) -> None:
    headers = {**_headers(None), "Authorization": f"Klaviyo-API-Key {key}"}
    response = _get(emu, "/api/segments/", headers=headers)
    assert response.status_code == 401
    error = assert_error(response, 401)
    assert error["code"] in ("authentication_failed", "not_authenticated")
    if key.startswith("pk_") and len(key) == 37:
        assert error["code"] == "authentication_failed"
    assert not key or key not in response.text


def test_401_comes_before_everything(emu: Any) -> None:
    headers = {"Authorization": "Klaviyo-API-Key pk_" + "z" * 34}  # no revision either
    response = requests.put(f"{emu.base_url}/api/nowhere/?bogus=1", headers=headers, timeout=10)
    assert_error(response, 401, "authentication_failed")


# --- 403 ---


@pytest.mark.parametrize(
    "scopes, path, allowed",
    [
        ({"segments:read"}, "/api/segments/", True),
        ({"segments:read"}, "/api/segments/{id}/", True),
        ({"segments:read"}, "/api/segments/{id}/profiles/", False),
        ({"segments:read"}, "/api/segments/{id}/relationships/profiles/", False),
        ({"segments:read"}, "/api/segments/{id}/tags/", False),
        ({"segments:read"}, "/api/segments/{id}/relationships/tags/", False),
        ({"profiles:read"}, "/api/segments/{id}/profiles/", False),
        ({"profiles:read"}, "/api/segments/", False),
        ({"segments:read", "profiles:read"}, "/api/segments/{id}/profiles/", True),
        ({"segments:read", "profiles:read"}, "/api/segments/{id}/relationships/profiles/", True),
        ({"segments:read", "tags:read"}, "/api/segments/{id}/tags/", True),
        ({"segments:read", "tags:read"}, "/api/segments/{id}/relationships/tags/", True),
    ],
)
def test_403_missing_scope(emu: Any, scopes: set[str], path: str, allowed: bool) -> None:
    key = emu.create_api_key(scopes=scopes)
    response = _get(emu, path.replace("{id}", _segment(emu)), headers=_headers(key))
    if allowed:
        assert response.status_code == 200, response.text
    else:
        assert_error(response, 403, "permission_denied")


def test_403_write_scope(emu: Any) -> None:
    key = emu.create_api_key(scopes={"segments:read"})
    body = {"data": {"type": "segment", "attributes": {"name": "x", "definition": None}}}
    headers = _headers(key, **{"Content-Type": "application/vnd.api+json"})
    response = requests.post(
        f"{emu.base_url}/api/segments/", json=body, headers=headers, timeout=10
    )
    assert_error(response, 403, "permission_denied")
    delete = requests.delete(
        f"{emu.base_url}/api/segments/{_segment(emu)}/", headers=_headers(key), timeout=10
    )
    assert_error(delete, 403, "permission_denied")
    assert _segment(emu) in emu.segment_ids()


def test_403_comes_before_revision_and_query(emu: Any) -> None:
    key = emu.create_api_key(scopes={"segments:read"})
    path = f"/api/segments/{_segment(emu)}/profiles/"
    response = _get(emu, path, {"bogus": "1"}, headers=_headers(key, revision=None))
    assert_error(response, 403, "permission_denied")


# --- 400: revision ---


@pytest.mark.parametrize(
    "revision",
    [
        None,
        "",
        "2024-6-15",
        "20240615",
        "latest",
        "2024-06-15.",
        "2024-06-16",
        "2099-01-15",
        "2024-05-15",
    ],
)
def test_400_bad_revision(emu: Any, revision: str | None) -> None:
    response = _get(emu, "/api/segments/", headers=_headers(emu.api_key, revision))
    error = assert_error(response, 400, "invalid")
    assert "revision" in error["detail"].lower()
    if revision in ("2024-06-16", "2099-01-15", "2024-05-15"):
        assert "2024-06-15" in error["detail"] and "2026-07-15" in error["detail"]


@pytest.mark.parametrize("revision", ["2024-06-15", "2024-06-15.pre", "2025-10-15", "2026-07-15"])
def test_accepted_revisions(emu: Any, revision: str) -> None:
    assert _get(emu, "/api/segments/", revision=revision).status_code == 200


def test_400_revision_comes_before_404(emu: Any) -> None:
    response = _get(emu, "/api/segments/XXXXXX/", headers=_headers(emu.api_key, None))
    assert_error(response, 400, "invalid")


# --- 400: query parameters ---


@pytest.mark.parametrize(
    "path, params, parameter, revision",
    [
        ("/api/segments/", {"bogus": "1"}, "bogus", OLD),
        ("/api/segments/", {"fields[flow]": "name"}, "fields[flow]", OLD),
        ("/api/segments/", {"fields[segment]": "name,nope"}, "fields[segment]", OLD),
        ("/api/segments/", {"include": "profiless"}, "include", OLD),
        ("/api/segments/", {"sort": "joined_group_at"}, "sort", OLD),
        (
            "/api/segments/",
            {"page[size]": "5"},
            "page[size]",
            OLD,
        ),  # no page[size] before 2026-04-15
        ("/api/segments", {"page[size]": "11"}, "page[size]", NEW),
        ("/api/segments", {"page[size]": "0"}, "page[size]", NEW),
        ("/api/segments/{id}/", {"filter": "equals(name,'x')"}, "filter", OLD),
        ("/api/segments/{id}/", {"sort": "name"}, "sort", OLD),
        (
            "/api/segments/{id}/",
            {"additional-fields[segment]": "nope"},
            "additional-fields[segment]",
            OLD,
        ),
        ("/api/segments/{id}/profiles/", {"page[size]": "101"}, "page[size]", OLD),
        ("/api/segments/{id}/profiles/", {"page[size]": "0"}, "page[size]", OLD),
        ("/api/segments/{id}/profiles/", {"page[size]": "ten"}, "page[size]", OLD),
        ("/api/segments/{id}/profiles/", {"sort": "email"}, "sort", OLD),
        ("/api/segments/{id}/profiles/", {"fields[profile]": "shoe_size"}, "fields[profile]", OLD),
        ("/api/segments/{id}/profiles/", {"fields[segment]": "name"}, "fields[segment]", OLD),
        ("/api/segments/{id}/profiles/", {"include": "tags"}, "include", OLD),
        (
            "/api/segments/{id}/profiles/",
            {"additional-fields[profile]": "shoe_size"},
            "additional-fields[profile]",
            OLD,
        ),
        ("/api/segments/{id}/profiles/", {"filter": "equals(email,x)"}, "filter", OLD),
        ("/api/segments/{id}/relationships/profiles/", {"page[size]": "1001"}, "page[size]", OLD),
        ("/api/segments/{id}/relationships/profiles", {"page[size]": "101"}, "page[size]", NEW),
        (
            "/api/segments/{id}/relationships/profiles/",
            {"fields[profile]": "email"},
            "fields[profile]",
            OLD,
        ),
        ("/api/segments/{id}/tags/", {"page[size]": "5"}, "page[size]", OLD),
        ("/api/segments/{id}/tags/", {"fields[tag]": "color"}, "fields[tag]", OLD),
        ("/api/segments/{id}/relationships/tags/", {"fields[tag]": "name"}, "fields[tag]", OLD),
    ],
)
def test_400_invalid_query_names_the_parameter(
    emu: Any, path: str, params: dict[str, str], parameter: str, revision: str
) -> None:
    response = _get(emu, path.replace("{id}", _segment(emu)), params, revision=revision)
    error = assert_error(response, 400, "invalid")
    assert error["title"] == "Invalid input."
    assert error["source"] == {"parameter": parameter}


@pytest.mark.parametrize(
    "path, params, revision",
    [
        ("/api/segments/{id}/relationships/profiles/", {"page[size]": "1000"}, OLD),
        ("/api/segments/{id}/relationships/profiles", {"page[size]": "100"}, NEW),
        ("/api/segments/{id}/profiles/", {"page[size]": "100"}, OLD),
        ("/api/segments/{id}/profiles/", {"page[size]": "1"}, OLD),
        ("/api/segments", {"page[size]": "10"}, NEW),
    ],
)
def test_page_size_maxima_are_accepted(
    emu: Any, path: str, params: dict[str, str], revision: str
) -> None:
    response = _get(emu, path.replace("{id}", _segment(emu)), params, revision=revision)
    assert response.status_code == 200, response.text


def test_400_documented_details(emu: Any) -> None:
    include = assert_error(_get(emu, "/api/segments/", {"include": "profiless"}), 400)
    assert include["detail"] == "'profiless' is not an allowed include parameter for this resource."
    family = assert_error(_get(emu, "/api/segments/", {"fields[flow]": "name"}), 400)
    assert family["detail"].startswith("'flow' is not an allowed field family for this resource.")


@pytest.mark.parametrize(
    "cursor", ["not-a-cursor", "bmV4dDo6aWQ6OjAxRjNaWk5ITlRYMUtFVEhQMzJTUzRBN0ZY", "%%%"]
)
def test_400_bad_cursor(emu: Any, cursor: str) -> None:
    path = f"/api/segments/{_segment(emu)}/profiles/"
    error = assert_error(_get(emu, path, {"page[cursor]": cursor}), 400, "invalid")
    assert error["detail"] == "Invalid cursor provided."
    assert error["source"] == {"pointer": "/data/"}


def test_400_cursor_of_another_endpoint(emu: Any) -> None:
    segment_id = _segment(emu)
    first = _get(emu, f"/api/segments/{segment_id}/profiles/", {"page[size]": "2"}).json()
    query = parse_qs(urlparse(first["links"]["next"]).query)
    response = _get(emu, "/api/segments/", {"page[cursor]": query["page[cursor]"][0]})
    assert response.status_code in (200, 400)
    if response.status_code == 400:
        assert assert_error(response, 400)["detail"] == "Invalid cursor provided."


# --- 404, 405, 415 ---


@pytest.mark.parametrize(
    "path",
    [
        "/api/segments/XXXXXX/",
        "/api/segments/XXXXXX",
        "/api/segments/XXXXXX/profiles/",
        "/api/segments/XXXXXX/relationships/profiles/",
        "/api/segments/XXXXXX/tags/",
        "/api/segments/XXXXXX/relationships/tags/",
        "/api/segmentz/",
        "/api/segments/{id}/members/",
        "/api/segments/{id}/relationships/",
        "/",
    ],
)
def test_404(emu: Any, path: str) -> None:
    error = assert_error(_get(emu, path.replace("{id}", _segment(emu))), 404)
    assert error["code"] == "not_found"


def test_404_after_delete(emu: Any) -> None:
    segment_id = _segment(emu)
    emu.delete_segment(segment_id)
    assert_error(_get(emu, f"/api/segments/{segment_id}/"), 404, "not_found")


@pytest.mark.parametrize(
    "method, path",
    [
        ("PUT", "/api/segments/"),
        ("DELETE", "/api/segments/"),
        ("PATCH", "/api/segments/"),
        ("POST", "/api/segments/{id}/"),
        ("PUT", "/api/segments/{id}/"),
        ("POST", "/api/segments/{id}/profiles/"),
        ("DELETE", "/api/segments/{id}/relationships/profiles/"),
        ("PATCH", "/api/segments/{id}/tags"),
    ],
)
def test_405(emu: Any, method: str, path: str) -> None:
    headers = _headers(emu.api_key, **{"Content-Type": "application/vnd.api+json"})
    url = emu.base_url + path.replace("{id}", _segment(emu))
    response = requests.request(method, url, headers=headers, data=b"{}", timeout=10)
    assert_error(response, 405)


@pytest.mark.parametrize("content_type", ["text/plain", "application/xml", "multipart/form-data"])
@pytest.mark.parametrize(
    "method, path", [("POST", "/api/segments/"), ("PATCH", "/api/segments/{id}/")]
)
def test_415(emu: Any, method: str, path: str, content_type: str) -> None:
    headers = _headers(emu.api_key, **{"Content-Type": content_type})
    url = emu.base_url + path.replace("{id}", _segment(emu))
    response = requests.request(method, url, headers=headers, data=b'{"data": {}}', timeout=10)
    assert_error(response, 415)


@pytest.mark.parametrize("content_type", ["application/json", "application/vnd.api+json"])
def test_json_content_types_are_accepted(emu: Any, content_type: str) -> None:
    body = {
        "data": {
            "type": "segment",
            "attributes": {"name": "Accepted", "definition": DEFINITION},
        }
    }
    headers = _headers(emu.api_key, **{"Content-Type": content_type})
    response = requests.post(
        f"{emu.base_url}/api/segments/", json=body, headers=headers, timeout=10
    )
    assert response.status_code == 201, response.text


# --- 429 ---


def test_429_body_and_headers(emu: Any) -> None:
    emu.set_rate_limits("real")
    url = f"{emu.base_url}/api/segments/{_segment(emu)}/tags/"
    session = requests.Session()
    session.headers.update(_headers(emu.api_key))
    for _ in range(300):
        response = session.get(url, timeout=10)
        if response.status_code == 429:
            break
    error = assert_error(response, 429, "throttled")
    assert error["title"] == "Request was throttled."
    assert error["detail"].startswith("Request was throttled. Expected available in")
    assert int(response.headers["Retry-After"]) >= 1
    assert not any(name.lower().startswith("ratelimit-") for name in response.headers)
    # query validation comes before the limiter
    assert_error(session.get(url, params={"bogus": "1"}, timeout=10), 400, "invalid")


def test_stats_count_rejected_requests(emu: Any) -> None:
    emu.stats.reset()
    _get(emu, "/api/segments/", headers=_headers(None))
    _get(emu, "/api/segments/XXXXXX/")
    _get(emu, "/api/segmentz/")
    assert emu.stats.total == 3
    assert emu.stats.statuses[401] == 1 and emu.stats.statuses[404] == 2
