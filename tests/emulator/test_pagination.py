"""Cursor pagination of the emulator: every member exactly once, in order, ties included."""

from __future__ import annotations

from collections import Counter
from datetime import datetime, timedelta, timezone
from typing import Any
from urllib.parse import parse_qsl, urlsplit

import pytest
import requests

from klaviyo_emulator import Emulator

OLD, NEW = "2024-06-15", "2026-07-15"
MEMBER_ENDPOINTS = ("profiles", "relationships/profiles")
PAGE_SIZES = (1, 2, 3, 7, 20, 100)
SORTS = (None, "joined_group_at", "-joined_group_at")


def _session(emu: Emulator, revision: str = NEW) -> requests.Session:
    session = requests.Session()
    session.headers.update(
        {"Authorization": f"Klaviyo-API-Key {emu.api_key}", "revision": revision}
    )
    return session


def _walk(session: requests.Session, url: str) -> tuple[list[str], list[dict[str, Any]]]:
    """Follow links.next to the end; (ids in order, every page's links)."""
    ids: list[str] = []
    links: list[dict[str, Any]] = []
    next_url: str | None = url
    while next_url:
        response = session.get(next_url)
        assert response.status_code == 200, response.text
        document = response.json()
        ids.extend(item["id"] for item in document["data"])
        links.append(document["links"])
        next_url = document["links"]["next"]
        assert len(links) < 1000, "pagination does not end"
    return ids, links


def _expected(members: dict[str, datetime], descending: bool = False) -> list[str]:
    return sorted(members, key=lambda pid: (members[pid], pid), reverse=descending)


def _tie(emu: Emulator) -> tuple[str, datetime, int]:
    """A segment and a joined_group_at that several of its members share."""
    for segment_id in emu.segment_ids():
        counts = Counter(emu.members(segment_id).values())
        if counts:
            stamp, count = counts.most_common(1)[0]
            if count >= 3:
                return segment_id, stamp, count
    raise AssertionError("the tiny dataset has no tie")


def _z(value: datetime) -> str:
    return value.astimezone(timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")


def test_tiny_dataset_has_the_documented_shapes(emu: Emulator) -> None:
    sizes = {sid: len(emu.members(sid)) for sid in emu.segment_ids()}
    flags = [emu.segment(sid) for sid in emu.segment_ids()]
    assert 5 <= len(sizes) <= 8
    assert 0 in sizes.values()
    assert max(sizes.values()) >= 25
    assert any(not f["is_active"] for f in flags)
    assert any(f["is_processing"] for f in flags)
    memberships = Counter(pid for sid in sizes for pid in emu.members(sid))
    assert max(memberships.values()) >= 3
    _, _, tie_count = _tie(emu)
    assert tie_count >= 5
    now = datetime.now(timezone.utc)
    assert all(jga < now for sid in sizes for jga in emu.members(sid).values())


@pytest.mark.parametrize("endpoint", MEMBER_ENDPOINTS)
@pytest.mark.parametrize("page_size", PAGE_SIZES)
def test_walk_returns_every_member_once_in_order(
    emu: Emulator, endpoint: str, page_size: int
) -> None:
    session = _session(emu)
    for segment_id in emu.segment_ids():
        members = emu.members(segment_id)
        for sort in SORTS:
            url = f"{emu.base_url}/api/segments/{segment_id}/{endpoint}?page[size]={page_size}"
            if sort:
                url += f"&sort={sort}"
            ids, links = _walk(session, url)
            assert ids == _expected(members, descending=sort == "-joined_group_at")
            assert links[0]["prev"] is None
            assert all(page["prev"] for page in links[1:])
            expected_pages = max(1, -(-len(members) // page_size))
            assert len(links) == expected_pages


def test_relationships_accept_1000_per_page_before_2024_10_15(emu: Emulator) -> None:
    segment_id = max(emu.segment_ids(), key=lambda sid: len(emu.members(sid)))
    url = f"{emu.base_url}/api/segments/{segment_id}/relationships/profiles/?page[size]=1000"
    ids, links = _walk(_session(emu, OLD), url)
    assert ids == _expected(emu.members(segment_id))
    assert len(links) == 1
    response = _session(emu, "2024-10-15").get(url)
    assert response.status_code == 400
    assert response.json()["errors"][0]["source"] == {"parameter": "page[size]"}


@pytest.mark.parametrize(
    ("endpoint", "size"),
    [
        ("profiles", "101"),
        ("profiles", "0"),
        ("profiles", "ten"),
        ("relationships/profiles", "101"),
    ],
)
def test_page_size_out_of_range_is_400(emu: Emulator, endpoint: str, size: str) -> None:
    segment_id = emu.segment_ids()[0]
    url = f"{emu.base_url}/api/segments/{segment_id}/{endpoint}?page[size]={size}"
    response = _session(emu).get(url)
    assert response.status_code == 400
    error = response.json()["errors"][0]
    assert error["code"] == "invalid"
    assert error["source"] == {"parameter": "page[size]"}


def test_default_page_size_is_20(emu: Emulator) -> None:
    segment_id = max(emu.segment_ids(), key=lambda sid: len(emu.members(sid)))
    url = f"{emu.base_url}/api/segments/{segment_id}/profiles"
    document = _session(emu).get(url).json()
    assert len(document["data"]) == 20


def test_walking_backwards_with_prev_returns_the_same_members(emu: Emulator) -> None:
    session = _session(emu)
    segment_id, _, _ = _tie(emu)
    url = f"{emu.base_url}/api/segments/{segment_id}/profiles?page[size]=3&sort=-joined_group_at"
    _, links = _walk(session, url)
    last = session.get(links[-1]["self"]).json()
    ids = [item["id"] for item in last["data"]]
    prev_url = last["links"]["prev"]
    while prev_url:
        page = session.get(prev_url).json()
        ids = [item["id"] for item in page["data"]] + ids
        prev_url = page["links"]["prev"]
    assert ids == _expected(emu.members(segment_id), descending=True)


def test_next_link_keeps_path_form_and_parameters_with_cursor_last(emu: Emulator) -> None:
    session = _session(emu, OLD)
    segment_id = max(emu.segment_ids(), key=lambda sid: len(emu.members(sid)))
    for path in (f"/api/segments/{segment_id}/profiles/", f"/api/segments/{segment_id}/profiles"):
        url = (
            f"{emu.base_url}{path}?fields[profile]=email,joined_group_at&page[size]=2"
            "&filter=greater-than(joined_group_at,2000-01-01T00:00:00Z)&sort=joined_group_at"
        )
        response = session.get(url)
        first = response.json()
        assert first["links"]["self"] == response.url
        next_url = first["links"]["next"]
        assert next_url.startswith(f"{emu.base_url}{path}?")
        assert "page%5Bsize%5D=2" in next_url and "%28joined_group_at%2C" in next_url
        names = [name for name, _ in parse_qsl(urlsplit(next_url).query)]
        assert names == ["fields[profile]", "page[size]", "filter", "sort", "page[cursor]"]
        second = session.get(next_url).json()
        assert set(second["data"][0]["attributes"]) == {"email", "joined_group_at"}
        replaced = parse_qsl(urlsplit(second["links"]["next"]).query)
        assert [name for name, _ in replaced].count("page[cursor]") == 1


def test_resource_links_echo_the_path_form(emu: Emulator) -> None:
    session = _session(emu)
    with_slash = session.get(f"{emu.base_url}/api/segments/").json()["data"][0]
    without = session.get(f"{emu.base_url}/api/segments").json()["data"][0]
    assert with_slash["links"]["self"].endswith("/")
    assert not without["links"]["self"].endswith("/")


@pytest.mark.parametrize(
    ("operator", "includes_tie", "side"),
    [
        ("greater-or-equal", True, "after"),
        ("greater-than", False, "after"),
        ("less-than", False, "before"),
        ("less-or-equal", True, "before"),
    ],
)
@pytest.mark.parametrize("page_size", (2, 3))
def test_joined_group_at_filters_at_a_tie_boundary(
    emu: Emulator, operator: str, includes_tie: bool, side: str, page_size: int
) -> None:
    segment_id, stamp, _ = _tie(emu)
    members = emu.members(segment_id)
    if side == "after":
        keep = {p: j for p, j in members.items() if j > stamp or (includes_tie and j == stamp)}
    else:
        keep = {p: j for p, j in members.items() if j < stamp or (includes_tie and j == stamp)}
    for sort in ("joined_group_at", "-joined_group_at"):
        url = (
            f"{emu.base_url}/api/segments/{segment_id}/profiles?page[size]={page_size}"
            f"&sort={sort}&filter={operator}(joined_group_at,{_z(stamp)})"
        )
        ids, _ = _walk(_session(emu), url)
        assert ids == _expected(keep, descending=sort.startswith("-"))


def test_fractional_and_offset_datetime_bounds(emu: Emulator) -> None:
    segment_id, stamp, count = _tie(emu)
    members = emu.members(segment_id)
    half = (stamp + timedelta(milliseconds=500)).strftime("%Y-%m-%dT%H:%M:%S.500Z")
    url = f"{emu.base_url}/api/segments/{segment_id}/relationships/profiles?page[size]=100"
    session = _session(emu)
    after, _ = _walk(session, f"{url}&filter=greater-or-equal(joined_group_at,{half})")
    assert set(after) == {p for p, j in members.items() if j > stamp}
    before, _ = _walk(session, f"{url}&filter=less-than(joined_group_at,{half})")
    assert set(before) == {p for p, j in members.items() if j <= stamp}
    offset = stamp.astimezone(timezone(timedelta(hours=2))).isoformat().replace("+", "%2B")
    tied, _ = _walk(
        session,
        f"{url}&filter=greater-or-equal(joined_group_at,{offset}),"
        f"less-or-equal(joined_group_at,{offset})",
    )
    assert len(tied) == count


def test_bad_cursor_is_400_invalid_cursor(emu: Emulator) -> None:
    session = _session(emu)
    first_segment, second_segment = emu.segment_ids()[:2]
    base = f"{emu.base_url}/api/segments"
    for cursor in ("not-a-cursor", "bmV4dDo6aWQ6OjAxRjNaWk5ITlRYMUtFVEhQMzJTUzRBN0ZY"):
        response = session.get(f"{base}/{first_segment}/profiles?page[cursor]={cursor}")
        assert response.status_code == 400
        error = response.json()["errors"][0]
        assert error["detail"] == "Invalid cursor provided."
        assert error["source"] == {"pointer": "/data/"}
    next_url = session.get(f"{base}/{first_segment}/profiles?page[size]=1").json()["links"]["next"]
    foreign = next_url.replace(first_segment, second_segment)
    assert session.get(foreign).status_code == 400


def test_mutations_between_pages_neither_skip_nor_repeat_unchanged_members(
    emu: Emulator,
) -> None:
    session = _session(emu)
    segment_id = max(emu.segment_ids(), key=lambda sid: len(emu.members(sid)))
    before = emu.members(segment_id)
    order = _expected(before)
    url = f"{emu.base_url}/api/segments/{segment_id}/profiles?page[size]=5"
    first = session.get(url).json()
    seen = [item["id"] for item in first["data"]]
    removed = order[12]
    emu.remove_member(segment_id, removed)
    newcomer = emu.create_profile(email="late@example.com")
    emu.add_member(segment_id, newcomer)
    emu.add_member(segment_id, order[1], joined_group_at=before[order[0]] - timedelta(days=1))
    rest, _ = _walk(session, first["links"]["next"])
    seen += rest
    unchanged = [pid for pid in order if pid not in (removed, order[1])]
    assert [pid for pid in seen if pid in unchanged] == unchanged
    assert seen.count(newcomer) == 1
    assert removed not in seen[5:]


def test_segment_list_pages_of_ten_with_every_sort(emu: Emulator) -> None:
    for number in range(17):
        emu.create_segment(f"Extra {number:02d}", is_starred=number % 2 == 0)
    expected = set(emu.segment_ids())
    session = _session(emu, OLD)
    for sort in (None, "name", "-name", "created", "-created", "updated", "-updated", "id", "-id"):
        url = f"{emu.base_url}/api/segments/" + (f"?sort={sort}" if sort else "")
        ids, links = _walk(session, url)
        assert len(ids) == len(expected) and set(ids) == expected
        assert len(links) == -(-len(expected) // 10)
        if sort and sort.lstrip("-") == "name":
            names = [emu.segment(sid)["name"] for sid in ids]
            assert names == sorted(names, reverse=sort.startswith("-"))


def test_segment_list_page_size_exists_from_2026_04_15(emu: Emulator) -> None:
    url = f"{emu.base_url}/api/segments?page[size]=4"
    assert _session(emu, "2026-01-15").get(url).status_code == 400
    ids, links = _walk(_session(emu, "2026-04-15"), url)
    assert len(ids) == len(emu.segment_ids())
    assert len(links[0]) == 3 and len(links) == -(-len(ids) // 4)
    assert _session(emu, NEW).get(f"{emu.base_url}/api/segments?page[size]=11").status_code == 400


def test_segment_list_filter_and_include_tags(emu: Emulator) -> None:
    session = _session(emu)
    url = f"{emu.base_url}/api/segments?filter=equals(is_active,false)&include=tags"
    ids, _ = _walk(session, url)
    assert set(ids) == {sid for sid in emu.segment_ids() if not emu.segment(sid)["is_active"]}
    document = session.get(f"{emu.base_url}/api/segments?include=tags").json()
    linked = {t["id"] for item in document["data"] for t in item["relationships"]["tags"]["data"]}
    assert linked == {item["id"] for item in document["included"]}
    assert all(
        emu.tag(item["id"])["name"] == item["attributes"]["name"] for item in document["included"]
    )


def test_demo_dataset_walk_with_large_pages() -> None:
    with Emulator(dataset="demo", seed=3) as emu:
        segment_id = max(emu.segment_ids(), key=lambda sid: len(emu.members(sid)))
        url = f"{emu.base_url}/api/segments/{segment_id}/profiles?page[size]=100"
        ids, _ = _walk(_session(emu), url)
        assert ids == _expected(emu.members(segment_id))
        assert len(ids) > 1000
