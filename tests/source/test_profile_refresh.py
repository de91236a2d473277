"""`profiles` stays current: members are read again for their attributes when due."""

from __future__ import annotations

import json
from typing import Any

import pytest

from sources.klaviyo import settings
from sources.klaviyo.rows.emitted import EmittedProfiles

from .conftest import Loader

DAY = 24 * 3600


@pytest.fixture(params=["duckdb", pytest.param("postgres", marks=pytest.mark.postgres)])
def loader(request: pytest.FixtureRequest) -> Loader:
    """The same test on DuckDB and on real Postgres."""
    name = "duckdb_loader" if request.param == "duckdb" else "postgres_loader"
    loaded: Loader = request.getfixturevalue(name)
    return loaded


def _settle(emu: Any) -> None:
    for segment_id in emu.segment_ids():
        emu.set_segment_flags(segment_id, is_processing=False, is_active=True)


def _members_by_segment_count(emu: Any) -> dict[str, int]:
    counts: dict[str, int] = {}
    for segment_id in emu.segment_ids():
        for profile_id in emu.members(segment_id):
            counts[profile_id] = counts.get(profile_id, 0) + 1
    return counts


def _change(emu: Any, profile_id: str, tag: str) -> None:
    """Changes email, phone, a nested property and the location of one profile."""
    properties = dict(emu.profile(profile_id).get("properties") or {})
    properties["loyalty"] = {"tier": tag, "points": [1, 2, 3]}
    emu.update_profile(
        profile_id,
        email=f"{tag}.{profile_id.lower()}@example.com",
        phone_number="+15550100" + str(len(tag)).zfill(3),
        properties=properties,
        location={
            "city": f"City {tag}",
            "country": "Iceland",
            "latitude": 64.1,
            "longitude": -21.9,
        },
    )


def _changed_profiles(emu: Any, tag: str) -> list[str]:
    """Members in several segments and in one, changed; returns them."""
    counts = _members_by_segment_count(emu)
    several = sorted(p for p, n in counts.items() if n > 1)[:3]
    single = sorted(p for p, n in counts.items() if n == 1)[:3]
    assert several and single, "the dataset should hold both kinds of member"
    for profile_id in [*several, *single]:
        _change(emu, profile_id, tag)
    return [*several, *single]


def _stored(loader: Loader) -> dict[str, tuple[Any, ...]]:
    rows = loader.rows(
        "select id, email, phone_number, properties, location_city, location_country,"
        " location_latitude from profiles"
    )
    return {row[0]: _normal(row[1:]) for row in rows}


def _normal(row: tuple[Any, ...]) -> tuple[Any, ...]:
    email, phone, properties, city, country, latitude = row
    if isinstance(properties, str):
        properties = json.loads(properties)
    return (email, phone, json.dumps(properties, sort_keys=True), city, country, latitude)


def _account(emu: Any, profile_id: str) -> tuple[Any, ...]:
    attributes = emu.profile(profile_id)
    location = attributes.get("location") or {}
    latitude = location.get("latitude")
    return (
        attributes.get("email"),
        attributes.get("phone_number"),
        json.dumps(attributes.get("properties"), sort_keys=True),
        location.get("city"),
        location.get("country"),
        float(latitude) if latitude is not None else None,
    )


def _current_members(emu: Any) -> set[str]:
    return {p for s in emu.segment_ids() for p in emu.members(s)}


def _empty_segments(emu: Any) -> set[str]:
    """Segments without members: they have no cursor, so each walk of one is a first load."""
    return {s for s in emu.segment_ids() if not emu.members(s)}


def _all_current(loader: Loader, emu: Any, profile_ids: list[str]) -> bool:
    """Whether the `profiles` rows of these profiles hold the account's attributes."""
    stored = _stored(loader)
    return all(stored[p] == _account(emu, p) for p in profile_ids)


def test_a_due_run_makes_every_members_row_equal_the_account(
    loader: Loader, emu: Any, emulator_clock: Any
) -> None:
    _settle(emu)
    loader.run()
    changed = _changed_profiles(emu, "first")
    outsider = emu.create_profile(email="outsider@example.com", properties={"x": 1})
    emu.update_profile(outsider, email="outsider.changed@example.com")
    emu.advance_clock(DAY + 60)

    stats = loader.run()

    stored = _stored(loader)
    members = _current_members(emu)
    assert sorted(stats.segments_refreshed) == sorted(emu.segment_ids())
    assert {p: stored[p] for p in members} == {p: _account(emu, p) for p in members}
    assert all(stored[p] == _account(emu, p) for p in changed)
    assert outsider not in stored
    # a profile in several segments is one row of this run
    assert stats.rows[settings.PROFILES_TABLE] == len(members)
    # membership rows only where a walk from the cursor would have read them: at the cursor
    at_cursor = 0
    for segment_id in emu.segment_ids():
        joins = list(emu.members(segment_id).values())
        at_cursor += joins.count(max(joins)) if joins else 0
    assert stats.rows.get(settings.MEMBERSHIPS_TABLE, 0) == at_cursor
    assert stats.rows.get(settings.HISTORY_TABLE, 0) == at_cursor


def test_a_run_not_due_makes_no_extra_request(
    duckdb_loader: Loader, emu: Any, emulator_clock: Any
) -> None:
    _settle(emu)
    duckdb_loader.run()
    changed = _changed_profiles(emu, "second")
    emu.advance_clock(3600)
    emu.stats.reset()

    stats = duckdb_loader.run()

    segments = len(emu.segment_ids())
    # one page from each cursor, nothing else: no id walk, no refresh
    assert emu.stats.requests["get_segment_profiles"] == segments
    assert emu.stats.requests["get_segment_relationships_profiles"] == 0
    empty = _empty_segments(emu)
    assert set(stats.segments_refreshed) <= empty and set(stats.segments_reconciled) <= empty
    stored = _stored(duckdb_loader)
    assert all(
        stored[p] != _account(emu, p) for p in changed
    )  # within the bound: as of the last refresh

    duckdb_loader.run(refresh_profiles_every_hours=0)

    assert _all_current(duckdb_loader, emu, changed)


def test_off_keeps_the_attributes_of_the_join(
    duckdb_loader: Loader, emu: Any, emulator_clock: Any
) -> None:
    _settle(emu)
    duckdb_loader.run(refresh_profiles_every_hours="off")
    before = _stored(duckdb_loader)
    changed = _changed_profiles(emu, "third")
    emu.advance_clock(DAY + 60)

    stats = duckdb_loader.run(refresh_profiles_every_hours="off")

    empty = _empty_segments(emu)
    assert set(stats.segments_refreshed) <= empty
    assert sorted(stats.segments_reconciled) == sorted(emu.segment_ids())
    listed = emu.stats.requests["get_segment_relationships_profiles"]
    assert listed == len(emu.segment_ids()) - len(empty)
    stored = _stored(duckdb_loader)
    assert all(stored[p] == before[p] for p in changed)


def test_a_refresh_costs_no_request_beyond_the_reconciliation_it_replaces(
    duckdb_loader: Loader, emu: Any, emulator_clock: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    # pages of 3 on both endpoints: what revisions from 2024-10-15 serve (100 and 100)
    monkeypatch.setattr(settings, "SEGMENT_PROFILES_PAGE_SIZE", 3)
    monkeypatch.setattr(settings, "SEGMENT_PROFILE_IDS_PAGE_SIZE", 3)
    _settle(emu)
    duckdb_loader.run()
    emu.advance_clock(DAY + 60)
    emu.stats.reset()
    duckdb_loader.run(refresh_profiles_every_hours="off", reconcile_segments=["all"])
    by_ids = sum(emu.stats.requests.values())
    emu.advance_clock(60)
    emu.stats.reset()

    stats = duckdb_loader.run(reconcile_segments=["all"])

    assert sorted(stats.segments_refreshed) == sorted(emu.segment_ids())
    assert emu.stats.requests["get_segment_relationships_profiles"] == 0
    assert sum(emu.stats.requests.values()) <= by_ids


def test_at_2024_06_15_a_refresh_keeps_its_own_interval(
    duckdb_loader: Loader, emu: Any, emulator_clock: Any
) -> None:
    _settle(emu)
    options: dict[str, Any] = {"revision": "2024-06-15", "refresh_profiles_every_hours": 72}
    duckdb_loader.run(**options)
    changed = _changed_profiles(emu, "fourth")
    emu.advance_clock(DAY + 60)

    daily = duckdb_loader.run(**options)

    assert sorted(daily.segments_reconciled) == sorted(emu.segment_ids())
    empty = _empty_segments(emu)
    assert set(daily.segments_refreshed) <= empty  # id pages of 1,000 did the reconciliation
    listed = emu.stats.requests["get_segment_relationships_profiles"]
    assert listed == len(emu.segment_ids()) - len(empty)
    emu.advance_clock(2 * DAY)

    third = duckdb_loader.run(**options)

    assert sorted(third.segments_refreshed) == sorted(emu.segment_ids())
    assert _all_current(duckdb_loader, emu, changed)


def test_a_profile_that_left_every_segment_keeps_the_attributes_last_seen(
    loader: Loader, emu: Any, emulator_clock: Any
) -> None:
    _settle(emu)
    loader.run()
    counts = _members_by_segment_count(emu)
    leaver = sorted(p for p, n in counts.items() if n > 1)[0]
    seen = _stored(loader)[leaver]
    emu.advance_clock(60)
    for segment_id in emu.segment_ids():
        if leaver in emu.members(segment_id):
            emu.remove_member(segment_id, leaver)
    _change(emu, leaver, "gone")
    emu.advance_clock(DAY + 60)

    loader.run()

    assert _stored(loader)[leaver] == seen
    assert {p for _, p, _ in loader.left()} == {leaver}


def test_a_walk_emits_a_later_copy_only_when_it_is_newer() -> None:
    emitted = EmittedProfiles()
    old = {"id": "p1", "attributes": {"updated": "2026-01-01T00:00:00+00:00", "email": "a"}}
    same = {"id": "p1", "attributes": {"updated": "2026-01-01T00:00:00+00:00", "email": "a"}}
    new = {"id": "p1", "attributes": {"updated": "2026-01-02T00:00:00+00:00", "email": "b"}}

    assert emitted.fresh([old], walk=1) == {"p1": old}
    assert emitted.fresh([same], walk=1) == {}
    assert emitted.fresh([same, new], walk=1) == {"p1": new}
    assert emitted.fresh([old], walk=1) == {}
    assert emitted.fresh([old], walk=2) == {"p1": old}


def test_by_updated_loads_changed_members_and_no_one_else(
    loader: Loader, emu: Any, emulator_clock: Any
) -> None:
    _settle(emu)
    options: dict[str, Any] = {"refresh_profiles_by": "updated", "refresh_profiles_every_hours": 0}
    first = loader.run(**options)
    assert emu.stats.requests["get_profiles"] == 0  # nothing loaded before: changes count from now
    assert first.profiles_changed == 0
    emu.advance_clock(60)
    changed = _changed_profiles(emu, "fifth")
    outsider = emu.create_profile(email="outsider@example.com")
    emu.update_profile(outsider, email="outsider.changed@example.com")
    emu.advance_clock(60)
    emu.stats.reset()

    second = loader.run(**options)

    stored = _stored(loader)
    members = _current_members(emu)
    assert {p: stored[p] for p in members} == {p: _account(emu, p) for p in members}
    assert outsider not in stored
    assert second.profiles_changed == len(changed)
    assert emu.stats.requests["get_profiles"] == 1
    assert emu.stats.requests["get_segment_relationships_profiles"] == 0
    assert set(second.segments_refreshed) <= _empty_segments(emu)


def test_by_updated_reads_only_when_due(
    duckdb_loader: Loader, emu: Any, emulator_clock: Any
) -> None:
    _settle(emu)
    options: dict[str, Any] = {"refresh_profiles_by": "updated"}
    duckdb_loader.run(**options)
    changed = _changed_profiles(emu, "sixth")
    emu.advance_clock(3600)
    emu.stats.reset()

    duckdb_loader.run(**options)

    assert emu.stats.requests["get_profiles"] == 0
    emu.advance_clock(DAY)

    due = duckdb_loader.run(**options)

    assert emu.stats.requests["get_profiles"] == 1
    assert due.profiles_changed == len(changed)
    assert _all_current(duckdb_loader, emu, changed)


def test_switching_to_updated_reads_changes_since_the_last_refresh(
    duckdb_loader: Loader, emu: Any, emulator_clock: Any
) -> None:
    _settle(emu)
    duckdb_loader.run()  # refreshed by segment walks: their stamps are where changes start
    emu.advance_clock(60)
    changed = _changed_profiles(emu, "seventh")
    emu.advance_clock(3600)
    emu.stats.reset()

    stats = duckdb_loader.run(refresh_profiles_by="updated")

    assert emu.stats.requests["get_profiles"] == 1
    assert stats.profiles_changed == len(changed)
    assert _all_current(duckdb_loader, emu, changed)


def test_a_profile_changed_during_the_walk_is_emitted_again() -> None:
    from datetime import datetime, timezone

    began = datetime(2026, 3, 1, 12, 0, tzinfo=timezone.utc)
    emitted = EmittedProfiles(across_walks=True)
    before = {"id": "p1", "attributes": {"updated": "2026-02-01T00:00:00+00:00"}}
    during = {"id": "p1", "attributes": {"updated": "2026-03-01T12:05:00+00:00"}}
    later = {"id": "p1", "attributes": {"updated": "2026-03-01T12:09:00+00:00"}}

    assert emitted.fresh([before], walk=began) == {"p1": before}
    assert emitted.fresh([before], walk=began) == {}
    assert emitted.fresh([during], walk=began) == {"p1": during}
    assert emitted.fresh([during], walk=began) == {}
    # a later extraction of the same run (a checkpoint) remembers what the run emitted
    assert emitted.fresh([during], walk=began.replace(hour=13)) == {}
    assert emitted.fresh([later], walk=began.replace(hour=13)) == {"p1": later}
