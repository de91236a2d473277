"""Changes made through the emulator's Python methods (and its write endpoints) show in the API."""

from __future__ import annotations

from datetime import datetime, timedelta, timezone
from typing import Any

import orjson
import pytest
import requests

from klaviyo_emulator import Emulator

OLD, NEW = "2024-06-15", "2026-07-15"


class Api:
    """A small client over one emulator."""

    def __init__(self, emu: Emulator, revision: str = NEW) -> None:
        self.base = f"{emu.base_url}/api"
        self.session = requests.Session()
        self.session.headers.update(
            {"Authorization": f"Klaviyo-API-Key {emu.api_key}", "revision": revision}
        )

    def get(self, path: str, **params: Any) -> requests.Response:
        return self.session.get(f"{self.base}{path}", params=params)

    def json(self, path: str, **params: Any) -> dict[str, Any]:
        response = self.get(path, **params)
        assert response.status_code == 200, response.text
        return response.json()

    def all(self, path: str, **params: Any) -> list[dict[str, Any]]:
        document = self.json(path, **params)
        items = list(document["data"])
        while document["links"]["next"]:
            response = self.session.get(document["links"]["next"])
            assert response.status_code == 200, response.text
            document = response.json()
            items += document["data"]
        return items

    def send(self, method: str, path: str, body: Any) -> requests.Response:
        headers = {"Content-Type": "application/vnd.api+json"}
        return self.session.request(method, f"{self.base}{path}", json=body, headers=headers)


def _members(api: Api, segment_id: str) -> dict[str, str]:
    items = api.all(f"/segments/{segment_id}/profiles", **{"page[size]": 100})
    return {item["id"]: item["attributes"]["joined_group_at"] for item in items}


def _rendered(value: datetime) -> str:
    return value.astimezone(timezone.utc).strftime("%Y-%m-%dT%H:%M:%S+00:00")


def _biggest(emu: Emulator) -> str:
    return max(emu.segment_ids(), key=lambda sid: len(emu.members(sid)))


def test_ground_truth_matches_the_api(emu: Emulator) -> None:
    api = Api(emu)
    listed = {item["id"]: item["attributes"] for item in api.all("/segments")}
    assert set(listed) == set(emu.segment_ids())
    for segment_id, attributes in listed.items():
        assert attributes == emu.segment(segment_id)
        members = _members(api, segment_id)
        assert members == {p: _rendered(j) for p, j in emu.members(segment_id).items()}
        tags = api.json(f"/segments/{segment_id}/relationships/tags")["data"]
        assert {t["id"] for t in tags} == emu.segment_tags(segment_id)
    profile_ids = set(emu.profile_ids())
    assert profile_ids == {p for sid in emu.segment_ids() for p in emu.members(sid)}
    sample = api.json(f"/segments/{_biggest(emu)}/profiles")["data"][0]
    attributes = dict(sample["attributes"])
    attributes.pop("joined_group_at")
    assert attributes == emu.profile(sample["id"])


def test_rename_bumps_updated(emu: Emulator) -> None:
    api = Api(emu)
    segment_id = emu.segment_ids()[0]
    before = emu.segment(segment_id)["updated"]
    emu.advance_clock(5)
    emu.rename_segment(segment_id, "Renamed ✓")
    attributes = api.json(f"/segments/{segment_id}")["data"]["attributes"]
    assert attributes["name"] == "Renamed ✓"
    assert before < attributes["updated"] <= _rendered(emu.now())


def test_flags(emu: Emulator) -> None:
    api = Api(emu)
    segment_id = emu.segment_ids()[0]
    emu.set_segment_flags(segment_id, is_active=False, is_starred=True)
    attributes = api.json(f"/segments/{segment_id}")["data"]["attributes"]
    assert attributes["is_active"] is False and attributes["is_starred"] is True
    listed = api.all("/segments", filter="equals(is_starred,true)")
    assert segment_id in {item["id"] for item in listed}


def test_deleted_segment_is_gone(emu: Emulator) -> None:
    api = Api(emu)
    segment_id = _biggest(emu)
    emu.delete_segment(segment_id)
    assert segment_id not in emu.segment_ids()
    for path in ("", "/profiles", "/relationships/profiles", "/tags", "/relationships/tags"):
        response = api.get(f"/segments/{segment_id}{path}")
        assert response.status_code == 404
        assert response.json()["errors"][0]["code"] == "not_found"
    assert segment_id not in {item["id"] for item in api.all("/segments")}


def test_add_a_new_profile_as_member(emu: Emulator) -> None:
    api = Api(emu)
    segment_id = _biggest(emu)
    profile_id = emu.create_profile(
        email="new.person@example.com",
        first_name="Zoë",
        properties={"plan": "pro", "nested": {"a": [1, 2.5, None]}},
    )
    assert len(profile_id) == 26
    joined = emu.add_member(segment_id, profile_id)
    assert joined.tzinfo is not None and abs((joined - emu.now()).total_seconds()) < 2
    members = _members(api, segment_id)
    assert members[profile_id] == _rendered(joined)
    assert profile_id in emu.profile_ids()
    item = api.json(f"/segments/{segment_id}/profiles", filter=f"any(profile_id,['{profile_id}'])")[
        "data"
    ][0]
    assert item["attributes"]["properties"] == {"plan": "pro", "nested": {"a": [1, 2.5, None]}}
    assert item["attributes"]["first_name"] == "Zoë"


def test_rejoin_moves_joined_group_at_and_the_incremental_filter_sees_it(emu: Emulator) -> None:
    api = Api(emu)
    segment_id = _biggest(emu)
    members = emu.members(segment_id)
    watermark = max(members.values())
    oldest = min(members, key=lambda pid: (members[pid], pid))
    emu.advance_clock(60)
    rejoined = emu.add_member(segment_id, oldest)
    assert rejoined > watermark
    assert emu.members(segment_id)[oldest] == rejoined
    items = api.all(
        f"/segments/{segment_id}/profiles",
        filter=f"greater-than(joined_group_at,{watermark.strftime('%Y-%m-%dT%H:%M:%SZ')})",
        sort="joined_group_at",
    )
    assert [item["id"] for item in items] == [oldest]
    listed = _members(api, segment_id)
    assert list(listed).count(oldest) == 1
    assert len(listed) == len(members)


def test_remove_member(emu: Emulator) -> None:
    api = Api(emu)
    segment_id = _biggest(emu)
    profile_id = next(iter(emu.members(segment_id)))
    emu.remove_member(segment_id, profile_id)
    assert profile_id not in emu.members(segment_id)
    assert profile_id not in _members(api, segment_id)
    ids = api.all(f"/segments/{segment_id}/relationships/profiles", **{"page[size]": 100})
    assert profile_id not in {item["id"] for item in ids}


def test_tag_link_and_unlink(emu: Emulator) -> None:
    api = Api(emu)
    segment_id = emu.segment_ids()[-1]
    tag_id = emu.create_tag("Fresh tag ✨")
    assert emu.tag(tag_id) == {"name": "Fresh tag ✨"}
    emu.link_tag(segment_id, tag_id)
    assert tag_id in emu.segment_tags(segment_id)
    tags = api.json(f"/segments/{segment_id}/tags")["data"]
    assert {"id": tag_id, "name": "Fresh tag ✨"} in [
        {"id": t["id"], "name": t["attributes"]["name"]} for t in tags
    ]
    document = api.json(f"/segments/{segment_id}", include="tags")
    assert tag_id in {t["id"] for t in document["data"]["relationships"]["tags"]["data"]}
    assert tag_id in {t["id"] for t in document["included"]}
    emu.unlink_tag(segment_id, tag_id)
    ids = api.json(f"/segments/{segment_id}/relationships/tags")["data"]
    assert tag_id not in {t["id"] for t in ids}


def test_exact_values_survive_later_changes_and_copies(emu: Emulator) -> None:
    api = Api(emu)
    segment_id = _biggest(emu)
    profile_id = next(iter(emu.members(segment_id)))
    wide = 123456789012345678901234567890
    emu.update_profile_exactly(profile_id, properties={"wide": wide, "text": "x\ud800y"})
    emu.update_profile(profile_id, first_name="Later")  # copies the document holding them
    served = api.get(
        f"/segments/{segment_id}/profiles", filter=f"any(profile_id,['{profile_id}'])"
    ).content
    assert b'"properties":{"wide":123456789012345678901234567890,"text":"x\\ud800y"}' in served
    assert b'"first_name":"Later"' in served
    profile = emu.profile(profile_id)
    assert isinstance(profile["properties"], orjson.Fragment)
    assert profile["first_name"] == "Later"


def test_profile_update_is_visible_and_bumps_updated(emu: Emulator) -> None:
    api = Api(emu)
    segment_id = _biggest(emu)
    profile_id = next(iter(emu.members(segment_id)))
    before = emu.profile(profile_id)
    emu.advance_clock(3600)
    emu.update_profile(profile_id, first_name="Ünïcode", properties={"tier": {"level": 3}})
    after = emu.profile(profile_id)
    assert after["first_name"] == "Ünïcode" and after["properties"] == {"tier": {"level": 3}}
    assert after["updated"] > before["updated"]
    item = api.json(f"/segments/{segment_id}/profiles", filter=f"any(profile_id,['{profile_id}'])")[
        "data"
    ][0]
    assert item["attributes"]["first_name"] == "Ünïcode"
    assert item["attributes"]["updated"] == after["updated"]


def test_mutation_methods_reject_unknown_ids(emu: Emulator) -> None:
    with pytest.raises(KeyError):
        emu.rename_segment("nope", "x")
    with pytest.raises(KeyError):
        emu.add_member(emu.segment_ids()[0], "01HZX8A6R0J3VQ2N9P4K7T5M1B")
    with pytest.raises(ValueError):
        emu.update_profile(emu.profile_ids()[0], favourite="x")


def test_clock_advances(emu: Emulator) -> None:
    start = emu.now()
    emu.advance_clock(86_400)
    assert emu.now() - start >= timedelta(days=1)
    segment_id = emu.create_segment("Created later")
    assert emu.segment(segment_id)["created"] >= _rendered(start + timedelta(days=1))


def test_write_endpoints(emu: Emulator) -> None:
    api = Api(emu, OLD)
    definition = {"condition_groups": [{"conditions": []}]}
    created = api.send(
        "POST",
        "/segments/",
        {"data": {"type": "segment", "attributes": {"name": "Via API", "definition": definition}}},
    )
    assert created.status_code == 201, created.text
    segment_id = created.json()["data"]["id"]
    assert emu.segment(segment_id)["name"] == "Via API"
    assert emu.members(segment_id) == {}
    body = {"data": {"type": "segment", "id": segment_id, "attributes": {"name": "Patched"}}}
    patched = api.send("PATCH", f"/segments/{segment_id}/", body)
    assert patched.status_code == 200
    assert patched.json()["data"]["attributes"]["name"] == "Patched"
    assert emu.segment(segment_id)["name"] == "Patched"
    wrong_id = dict(body["data"], id="other")
    assert api.send("PATCH", f"/segments/{segment_id}/", {"data": wrong_id}).status_code == 409
    missing_name = {"data": {"type": "segment", "attributes": {"definition": definition}}}
    response = api.send("POST", "/segments/", missing_name)
    assert response.status_code == 400
    assert response.json()["errors"][0]["source"] == {"pointer": "/data/attributes/name"}
    deleted = api.session.delete(f"{api.base}/segments/{segment_id}/")
    assert deleted.status_code == 204 and deleted.content == b""
    assert segment_id not in emu.segment_ids()
    assert emu.stats.requests["create_segment"] == 2
    assert emu.stats.requests["delete_segment"] == 1


def test_additional_fields(emu: Emulator) -> None:
    api = Api(emu, OLD)
    segment_id = _biggest(emu)
    document = api.json(
        f"/segments/{segment_id}/", **{"additional-fields[segment]": "profile_count"}
    )
    assert document["data"]["attributes"]["profile_count"] == len(emu.members(segment_id))
    listed = api.json("/segments/")["data"]
    assert all("profile_count" not in item["attributes"] for item in listed)
    item = api.json(
        f"/segments/{segment_id}/profiles/",
        **{"additional-fields[profile]": "subscriptions,predictive_analytics"},
    )["data"][0]
    marketing = item["attributes"]["subscriptions"]["email"]["marketing"]
    assert {"can_receive_email_marketing", "consent"} <= set(marketing)
    assert "historic_clv" in item["attributes"]["predictive_analytics"]
    assert "mobile_push" not in item["attributes"]["subscriptions"]
    newer = Api(emu, NEW).json(
        f"/segments/{segment_id}/profiles", **{"additional-fields[profile]": "subscriptions"}
    )["data"][0]
    assert "mobile_push" in newer["attributes"]["subscriptions"]


def test_stats_count_every_request(emu: Emulator) -> None:
    api = Api(emu)
    emu.stats.reset()
    api.json("/segments")
    unauthenticated = requests.get(f"{emu.base_url}/api/segments", headers={"revision": NEW})
    assert unauthenticated.status_code == 401
    api.get("/nowhere")
    assert emu.stats.requests["get_segments"] == 2
    assert emu.stats.requests["unknown"] == 1
    assert emu.stats.statuses[200] == 1 and emu.stats.statuses[401] == 1
    assert emu.stats.statuses[404] == 1
    assert emu.stats.total == 3
    assert emu.stats.max_in_flight >= 1
    emu.stats.reset()
    assert emu.stats.total == 0 and not emu.stats.requests


def test_limited_key_scopes(emu: Emulator) -> None:
    key = emu.create_api_key(scopes={"segments:read"})
    headers = {"Authorization": f"Klaviyo-API-Key {key}", "revision": NEW}
    segment_id = emu.segment_ids()[0]
    assert requests.get(f"{emu.base_url}/api/segments", headers=headers).status_code == 200
    for path in ("profiles", "relationships/profiles", "tags", "relationships/tags"):
        url = f"{emu.base_url}/api/segments/{segment_id}/{path}"
        assert requests.get(url, headers=headers).status_code == 403
