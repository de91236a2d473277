"""Get Profiles (`GET /api/profiles`) and Get Profile (`GET /api/profiles/{id}`) over HTTP.

Every profile of the account is listed, members of a segment or not, rendered as among a
segment's members; sorts and filters follow the official specs at each revision, and cursors
page every profile exactly once, ties on the sorted value included.
"""

from __future__ import annotations

from datetime import datetime, timedelta, timezone
from typing import Any

import pytest
import requests
import spec

from klaviyo_emulator import Emulator
from klaviyo_emulator.spec.revisions import REVISIONS
from klaviyo_emulator.wire.ratelimit import RateLimiter, limits_for

OLD, NEW = "2024-06-15", "2026-07-15"
needs_specs = pytest.mark.skipif(spec.specs_dir() is None, reason="Klaviyo OpenAPI specs not found")
TIE = "2024-01-01T00:00:00+00:00"


class Api:
    """A client of one emulator at one revision."""

    def __init__(self, emu: Emulator, revision: str = NEW) -> None:
        self.base = emu.base_url
        self.session = requests.Session()
        self.session.headers.update(
            {"Authorization": f"Klaviyo-API-Key {emu.api_key}", "revision": revision}
        )

    def get(self, path: str = "/api/profiles", /, **params: Any) -> requests.Response:
        return self.session.get(self.base + path, params=params, timeout=10)

    def walk(self, **params: Any) -> list[dict[str, Any]]:
        """Every item, following links.next to the end."""
        response = self.get(**params)
        items: list[dict[str, Any]] = []
        while True:
            assert response.status_code == 200, response.text
            document = response.json()
            items += document["data"]
            if document["links"]["next"] is None:
                return items
            response = self.session.get(document["links"]["next"], timeout=10)
            assert len(items) < 100_000


def _epoch(text: str) -> float:
    return datetime.fromisoformat(text).timestamp()


def _z(moment: float) -> str:
    return datetime.fromtimestamp(moment, tz=timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")


def _by_updated(emu: Emulator) -> list[str]:
    """Every profile id ordered as `sort=updated` lists them: by `updated`, then id."""
    return sorted(emu.all_profile_ids(), key=lambda pid: (_epoch(emu.profile(pid)["updated"]), pid))


def _with_ties(emu: Emulator) -> list[str]:
    """Created profiles sharing one `updated`, so ties straddle small pages."""
    return [emu.create_profile(email=f"tie{n}@example.com", updated=TIE) for n in range(5)]


# --- listing every profile ---------------------------------------------------------------------


@pytest.mark.parametrize("size", [2, 7, 100])
@pytest.mark.parametrize("sort", ["updated", "-updated"])
def test_sorted_by_updated_every_profile_comes_once(emu: Emulator, sort: str, size: int) -> None:
    ties = _with_ties(emu)
    items = Api(emu).walk(sort=sort, **{"page[size]": size})
    ids = [item["id"] for item in items]
    expected = _by_updated(emu)
    assert ids == (expected if sort == "updated" else expected[::-1])
    assert len(set(ids)) == len(ids) == len(emu.all_profile_ids())
    members = set(emu.profile_ids())
    assert members < set(ids), "every member, and profiles of no segment too"
    assert set(ties) <= set(ids)


@pytest.mark.parametrize("sort", [None, "id", "-id", "created", "-created", "email", "-email"])
def test_other_sorts_page_every_profile_in_order(emu: Emulator, sort: str | None) -> None:
    _with_ties(emu)
    params = {"page[size]": 9} if sort is None else {"sort": sort, "page[size]": 9}
    ids = [item["id"] for item in Api(emu).walk(**params)]
    field = (sort or "id").lstrip("-")

    def key(pid: str) -> tuple[Any, ...]:
        if field == "id":
            return (pid,)
        value = emu.profile(pid)[field]
        if field == "created":
            return (_epoch(value), pid)
        return (value is not None, value or "", pid)  # no email sorts first

    expected = sorted(emu.all_profile_ids(), key=key)
    assert ids == (expected[::-1] if (sort or "").startswith("-") else expected)


def test_suppression_sorts_are_served(emu: Emulator) -> None:
    api = Api(emu)
    for name in ("suppression", "list_suppressions"):
        sort = f"subscriptions.email.marketing.{name}.timestamp"
        ids = [item["id"] for item in api.walk(sort=sort, **{"page[size]": 50})]
        assert sorted(ids) == sorted(emu.all_profile_ids())
    items = api.walk(
        sort="-subscriptions.email.marketing.suppression.timestamp",
        **{"additional-fields[profile]": "subscriptions", "page[size]": 50},
    )
    suppressed = [
        bool(i["attributes"]["subscriptions"]["email"]["marketing"]["suppression"]) for i in items
    ]
    assert any(suppressed) and suppressed == sorted(suppressed, reverse=True)


def test_a_profile_renders_as_among_segment_members(emu: Emulator) -> None:
    api = Api(emu)
    segment_id = max(emu.segment_ids(), key=lambda sid: len(emu.members(sid)))
    changed = next(iter(emu.members(segment_id)))
    emu.update_profile(changed, first_name="Changed", properties={"plan": "pro"})
    members = api.get(f"/api/segments/{segment_id}/profiles", **{"page[size]": 100}).json()
    profiles = {item["id"]: item for item in api.walk(**{"page[size]": 100})}
    for member in members["data"]:
        joined = member["attributes"].pop("joined_group_at")
        assert joined
        assert profiles[member["id"]]["attributes"] == member["attributes"]
        assert profiles[member["id"]]["links"] == member["links"]
    assert profiles[changed]["attributes"]["first_name"] == "Changed"


# --- the updated filter and changes through the Python API -------------------------------------


def test_greater_than_updated_returns_exactly_the_later_profiles(emu: Emulator) -> None:
    api = Api(emu)
    before = _by_updated(emu)
    middle = _epoch(emu.profile(before[len(before) // 2])["updated"])
    later = {pid for pid in before if _epoch(emu.profile(pid)["updated"]) > middle}
    for sort in ("updated", "-updated", None, "email"):
        params = {"filter": f"greater-than(updated,{_z(middle)})", "page[size]": 3}
        if sort:
            params["sort"] = sort
        ids = [item["id"] for item in api.walk(**params)]
        assert len(ids) == len(set(ids)) and set(ids) == later, sort

    watermark = emu.now()
    emu.advance_clock(60)
    member, outsider = (
        emu.profile_ids()[0],
        next(pid for pid in before if pid not in set(emu.profile_ids())),
    )
    emu.update_profile(member, first_name="Renamed")
    emu.update_profile_exactly(outsider, properties={"wide": 2**70})
    created = emu.create_profile(email="fresh@example.com")
    items = api.walk(
        filter=f"greater-than(updated,{watermark.strftime('%Y-%m-%dT%H:%M:%SZ')})", sort="updated"
    )
    assert {item["id"] for item in items} == {member, outsider, created}
    # a change is newer than anything seen before it, and comes last when sorted by updated
    assert [item["id"] for item in items] == _by_updated(emu)[-3:]
    newest = [item["id"] for item in api.get(sort="-updated").json()["data"][:3]]
    assert set(newest) == {member, outsider, created}


def test_a_change_within_one_second_still_moves_updated_forward(emu: Emulator) -> None:
    profile_id = emu.create_profile(email="quick@example.com")
    first = emu.profile(profile_id)["updated"]
    emu.update_profile(profile_id, first_name="Again")
    second = emu.profile(profile_id)["updated"]
    emu.update_profile(profile_id, first_name="And again")
    assert _epoch(first) < _epoch(second) < _epoch(emu.profile(profile_id)["updated"])


@pytest.mark.parametrize("combine", ["and({},{})", "{},{}"])
def test_updated_range_with_and_or_comma(emu: Emulator, combine: str) -> None:
    ordered = _by_updated(emu)
    low = _epoch(emu.profile(ordered[10])["updated"])
    high = _epoch(emu.profile(ordered[30])["updated"])
    text = combine.format(f"greater-than(updated,{_z(low)})", f"less-than(updated,{_z(high)})")
    ids = [item["id"] for item in Api(emu).walk(filter=text, sort="updated", **{"page[size]": 4})]
    assert ids == ordered[11:30]


def test_identifier_filters(emu: Emulator) -> None:
    api = Api(emu)
    created = emu.create_profile(email="found@example.com", external_id="crm-1")
    everyone = {pid: emu.profile(pid) for pid in emu.all_profile_ids()}
    some = [pid for pid in everyone if everyone[pid]["email"]][:3]
    phone = next(pid for pid in everyone if everyone[pid]["phone_number"])
    external = next(pid for pid in everyone if everyone[pid]["external_id"])
    emails = ",".join(f"'{everyone[pid]['email']}'" for pid in some)
    cases = {
        f"any(email,[{emails}])": set(some),
        f"equals(email,'{everyone[some[0]]['email']}')": {some[0]},
        "equals(email,'found@example.com')": {created},
        f"any(id,['{created}','{some[1]}'])": {created, some[1]},
        f"equals(phone_number,'{everyone[phone]['phone_number']}')": {phone},
        f"equals(external_id,'{everyone[external]['external_id']}')": {external},
        "equals(external_id,'crm-1')": {created},
        f"and(equals(email,'{everyone[some[0]]['email']}'),equals(id,'{some[1]}'))": set(),
        "equals(_kx,'abc')": set(),
        "equals(email,'nobody.12@example.com')": set(),
    }
    for text, expected in cases.items():
        assert {item["id"] for item in api.walk(filter=text)} == expected, text
    emu.update_profile(some[0], email="moved@example.com")
    assert not api.walk(filter=f"equals(email,'{everyone[some[0]]['email']}')")
    assert [i["id"] for i in api.walk(filter="equals(email,'moved@example.com')")] == [some[0]]


def test_suppression_filters(emu: Emulator) -> None:
    api = Api(emu)
    items = api.walk(**{"additional-fields[profile]": "subscriptions", "page[size]": 100})
    suppressed = {
        i["id"]
        for i in items
        if i["attributes"]["subscriptions"]["email"]["marketing"]["suppression"]
    }
    found = api.walk(
        filter="equals(subscriptions.email.marketing.suppression.reason,'HARD_BOUNCE')"
    )
    assert {item["id"] for item in found} == suppressed
    text = (
        "greater-or-equal(subscriptions.email.marketing.suppression.timestamp,2000-01-01T00:00:00Z)"
    )
    assert {item["id"] for item in api.walk(filter=text)} == suppressed
    listed = "equals(subscriptions.email.marketing.list_suppressions.list_id,'Y6nRLr')"
    assert api.walk(filter=listed) == []


# --- what the spec refuses ---------------------------------------------------------------------


@pytest.mark.parametrize(
    "params, parameter",
    [
        ({"page[size]": "0"}, "page[size]"),
        ({"page[size]": "101"}, "page[size]"),
        ({"page[size]": "ten"}, "page[size]"),
        ({"sort": "joined_group_at"}, "sort"),
        ({"sort": "first_name"}, "sort"),
        ({"sort": "-name"}, "sort"),
        ({"filter": "greater-than(joined_group_at,2024-01-01T00:00:00Z)"}, "filter"),
        ({"filter": "equals(first_name,'Ana')"}, "filter"),
        ({"filter": "greater-or-equal(updated,2024-01-01T00:00:00Z)"}, "filter"),
        ({"filter": "equals(updated,2024-01-01T00:00:00Z)"}, "filter"),
        ({"filter": "greater-than(updated,'2024-01-01T00:00:00Z')"}, "filter"),
        ({"filter": "equals(email,ana@example.com)"}, "filter"),
        ({"filter": "any(push_token,['x'])"}, "filter"),
        ({"filter": "greater-than(created,2024-01-01T00:00:00Z"}, "filter"),
        ({"fields[profile]": "joined_group_at"}, "fields[profile]"),
        ({"additional-fields[profile]": "profile_count"}, "additional-fields[profile]"),
        ({"include": "tags"}, "include"),
        ({"page[cursor]": "not-a-cursor"}, None),
    ],
)
def test_400_invalid(emu: Emulator, params: dict[str, str], parameter: str | None) -> None:
    response = Api(emu).get(**params)
    assert response.status_code == 400, response.text
    error = response.json()["errors"][0]
    assert (error["code"], error["title"]) == ("invalid", "Invalid input.")
    if parameter is not None:
        assert error["source"] == {"parameter": parameter}


def test_page_sizes_and_cursors(emu: Emulator) -> None:
    api = Api(emu)
    assert len(api.get().json()["data"]) == 20
    assert len(api.get(**{"page[size]": 1}).json()["data"]) == 1
    assert len(api.get(**{"page[size]": 100}).json()["data"]) == len(emu.all_profile_ids())
    first = api.get(sort="updated", **{"page[size]": 5}).json()
    assert first["links"]["prev"] is None and first["links"]["next"]
    second = api.session.get(first["links"]["next"]).json()
    back = api.session.get(second["links"]["prev"]).json()
    assert [i["id"] for i in back["data"]] == [i["id"] for i in first["data"]]
    cursor = first["links"]["next"].split("page%5Bcursor%5D=")[1]
    # a cursor is valid for the listing that issued it only
    for other in ({"sort": "-updated"}, {"sort": "email"}, {}):
        assert api.get(**{**other, "page[cursor]": cursor}).status_code == 400
    segment = emu.segment_ids()[0]
    members = api.get(f"/api/segments/{segment}/profiles", **{"page[size]": 1}).json()
    foreign = members["links"]["next"].split("page%5Bcursor%5D=")[1]
    assert api.get(**{"page[cursor]": foreign}).status_code == 400


# --- revisions ---------------------------------------------------------------------------------

# a parameter and value -> (first revision that takes it, first that no longer does)
GATED: list[tuple[str, str, str, str | None]] = [
    ("fields[profile]", "email,id", "2026-04-15", None),
    ("fields[profile]", "subscriptions.mobile_push.marketing.consent", "2024-07-15", None),
    ("fields[profile]", "subscriptions.whatsapp.marketing.consent", "2025-07-15", None),
    ("fields[profile]", "predictive_analytics.ranked_channel_affinity", "2025-07-15", None),
    ("include", "push-tokens", "2025-04-15", None),
    ("include", "segments", "2025-04-15", "2026-01-15"),
    ("include", "lists", "2025-04-15", "2026-01-15"),
    ("include", "conversation", "2026-04-15", "2026-07-15"),
    ("include", "conversations", "2026-07-15", None),
    ("fields[push-token]", "token,platform", "2026-01-15", None),
    ("fields[conversation]", "channel", "2026-04-15", None),
]


@pytest.mark.parametrize("revision", REVISIONS)
def test_parameters_are_taken_from_their_revision(emu: Emulator, revision: str) -> None:
    api = Api(emu, revision)
    for name, value, first, until in GATED:
        taken = revision >= first and (until is None or revision < until)
        response = api.get(**{name: value, "page[size]": 2})
        assert response.status_code == (200 if taken else 400), (name, value, response.text)
    additional = api.get(**{"additional-fields[profile]": "subscriptions", "page[size]": 1})
    subscriptions = additional.json()["data"][0]["attributes"]["subscriptions"]
    assert ("mobile_push" in subscriptions) == (revision >= "2024-07-15")
    relationships = api.get(**{"page[size]": 1}).json()["data"][0]["relationships"]
    assert ("push-tokens" in relationships) == (revision >= "2025-01-15")
    assert ("conversations" in relationships) == (revision >= "2026-07-15")


@needs_specs
@pytest.mark.parametrize("revision", [OLD, NEW])
def test_accepted_profile_fields_are_the_specs(emu: Emulator, revision: str) -> None:
    loaded = spec.load_full_spec(revision)
    path = "/api/profiles/" if revision == OLD else "/api/profiles"
    parameters = {p["name"]: p for p in spec.operation(loaded, "GET", path)["parameters"]}
    names = parameters["fields[profile]"]["schema"]["items"]["enum"]
    assert "joined_group_at" not in names
    api = Api(emu, revision)
    for chunk in range(0, len(names), 20):
        fields = ",".join(names[chunk : chunk + 20])
        assert api.get(**{"fields[profile]": fields}).status_code == 200, fields
    sorts = parameters["sort"]["schema"]["enum"]
    assert all(api.get(sort=sort).status_code == 200 for sort in sorts)


@needs_specs
@pytest.mark.parametrize("revision", [OLD, NEW])
@pytest.mark.parametrize(
    "params",
    [
        {},
        {"additional-fields[profile]": "subscriptions,predictive_analytics", "page[size]": "5"},
        {"sort": "-updated", "filter": "greater-than(updated,2020-01-01T00:00:00Z)"},
    ],
)
def test_pages_match_the_spec(emu: Emulator, revision: str, params: dict[str, str]) -> None:
    loaded = spec.load_full_spec(revision)
    path = "/api/profiles/" if revision == OLD else "/api/profiles"
    emu.create_profile(email="spec@example.com", properties={"n": [1, None]})
    schema = spec.response_schema(loaded, "GET", path, 200)
    api = Api(emu, revision)
    if revision == NEW:
        params = {**params, "include": "push-tokens,conversations"}
    first = api.get(path, **params).json()
    second = api.session.get(first["links"]["next"]).json()
    for document in (first, second):
        assert not spec.validation_errors(document, schema)
    single_path = "/api/profiles/{id}" + ("/" if revision == OLD else "")
    one = api.get(single_path.replace("{id}", emu.all_profile_ids()[0]), include="segments")
    single = spec.response_schema(loaded, "GET", single_path, 200)
    assert not spec.validation_errors(one.json(), single)


# --- rate limits -------------------------------------------------------------------------------


@pytest.mark.parametrize("revision, steady", [(OLD, "700"), ("2025-10-15", "700"), (NEW, "750")])
def test_rate_limit_headers(emu: Emulator, revision: str, steady: str) -> None:
    api = Api(emu, revision)
    assert api.get().headers["RateLimit-Limit"] == steady
    subscriptions = api.get(**{"additional-fields[profile]": "subscriptions"})
    assert subscriptions.headers["RateLimit-Limit"] == steady
    predictive = api.get(**{"additional-fields[profile]": "predictive_analytics,subscriptions"})
    assert predictive.headers["RateLimit-Limit"] == "150"
    one = f"/api/profiles/{emu.all_profile_ids()[0]}"
    assert api.get(one).headers["RateLimit-Limit"] == steady
    segments = api.get(one, include="segments").headers["RateLimit-Limit"]
    assert segments == (steady if revision == OLD else "15")


def test_predictive_analytics_bucket_is_strict_and_its_own() -> None:
    query = {"additional-fields[profile]": "predictive_analytics"}
    buckets = limits_for("get_profiles", NEW, query)
    assert [(limit.burst, limit.steady) for _, limit in buckets] == [(75, 750), (10, 150)]
    assert (
        len(limits_for("get_profiles", NEW, {"additional-fields[profile]": "subscriptions"})) == 1
    )
    limiter = RateLimiter("real", clock=lambda: 1000.25)
    decisions = [limiter.check("acct", "get_profiles", NEW, query) for _ in range(11)]
    assert [d.allowed for d in decisions] == [True] * 10 + [False]
    # the plain listing and other operations keep their own buckets
    assert limiter.check("acct", "get_profiles", NEW, {}).allowed
    assert limiter.check("acct", "get_segment_profiles", NEW, {}).allowed


# --- get_profile -------------------------------------------------------------------------------


def test_get_profile(emu: Emulator) -> None:
    api = Api(emu)
    member = emu.profile_ids()[0]
    created = emu.create_profile(email="one@example.com")
    for profile_id in (member, created):
        document = api.get(f"/api/profiles/{profile_id}/").json()
        assert document["data"]["id"] == profile_id
        assert document["data"]["attributes"] == emu.profile(profile_id)
        assert document["data"]["links"]["self"].endswith(f"/api/profiles/{profile_id}/")
    missing = api.get("/api/profiles/01HZX8A6R0J3VQ2N9P4K7T5M1B")
    assert missing.status_code == 404
    assert missing.json()["errors"][0]["code"] == "not_found"
    included = api.get(f"/api/profiles/{member}", include="segments,lists").json()
    expected = [sid for sid in emu.segment_ids() if member in emu.members(sid)]
    relationships = included["data"]["relationships"]
    assert [r["id"] for r in relationships["segments"]["data"]] == expected
    assert relationships["lists"]["data"] == []
    assert [r["id"] for r in included["included"]] == expected
    sparse = api.get(f"/api/profiles/{member}", include="segments", **{"fields[segment]": "name"})
    assert all(set(item["attributes"]) == {"name"} for item in sparse.json()["included"])
    assert api.get(f"/api/profiles/{created}", include="segments").json()["included"] == []


def test_include_segments_on_the_listing_at_2025(emu: Emulator) -> None:
    api = Api(emu, "2025-04-15")
    items = api.get(include="segments,push-tokens", **{"page[size]": 100}).json()
    for item in items["data"]:
        linked = [r["id"] for r in item["relationships"]["segments"]["data"]]
        assert linked == [sid for sid in emu.segment_ids() if item["id"] in emu.members(sid)]
        assert item["relationships"]["push-tokens"]["data"] == []
    assert {i["id"] for i in items["included"]} == {
        sid for sid in emu.segment_ids() if emu.members(sid)
    }


def test_a_larger_account_sorted_by_updated() -> None:
    with Emulator(dataset="demo", seed=3) as emu:
        changed = emu.all_profile_ids()[::997]
        emu.advance_clock(60)
        for profile_id in changed:
            emu.update_profile(profile_id, last_name="Changed")
        started = datetime.now()
        first = Api(emu).get(sort="updated", **{"page[size]": 100})
        assert first.status_code == 200
        assert datetime.now() - started < timedelta(seconds=5)
        ids = [item["id"] for item in Api(emu).walk(sort="updated", **{"page[size]": 100})]
        assert len(ids) == len(set(ids)) == 5000
        assert ids[-len(changed) :] == changed
