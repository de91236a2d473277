"""The source against the emulator: full loads, incremental loads, and what they must catch."""

from __future__ import annotations

import json
from datetime import datetime, timedelta
from typing import Any

import pytest

from sources.klaviyo import klaviyo_source, settings

from .conftest import Loader, Truth, utc

REVISIONS = ("2024-06-15", "2026-07-15", "2026-10-15")


def test_batches_reach_dlt_as_few_large_items(
    duckdb_loader: Loader, truth: Truth, emu: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    # batches of 10 rows, items of at least 40: every item but the last holds 4 batches or more
    monkeypatch.setattr(settings, "MEMBERSHIP_BATCH_ROWS", 10)
    monkeypatch.setattr(settings, "ARROW_ITEM_ROWS", 40)
    source = klaviyo_source(api_key=emu.api_key, base_url=emu.base_url)
    items: dict[str, list[int]] = {}
    for name in ("profiles", "segment_memberships", "segment_membership_history"):
        source.resources[name].add_map(_counted(items.setdefault(name, [])))
    duckdb_loader.pipeline.run(source)

    expected = truth.memberships()
    assert duckdb_loader.memberships() == expected
    assert len(duckdb_loader.rows("select * from segment_membership_history")) == len(expected)
    for name in ("segment_memberships", "segment_membership_history"):
        sizes = items[name]
        assert sum(sizes) == len(expected)
        assert len(sizes) >= 2 and all(size >= 40 for size in sizes[:-1]), sizes
        assert len(sizes) <= len(expected) // 40 + 1
    assert sum(items["profiles"]) == len(emu.profile_ids())


def _counted(sizes: list[int]) -> Any:
    def count(table: Any) -> Any:
        sizes.append(table.num_rows)
        return table

    return count


@pytest.mark.parametrize("revision", REVISIONS)
def test_first_run_loads_the_ground_truth(
    duckdb_loader: Loader, truth: Truth, emu: Any, revision: str
) -> None:
    stats = duckdb_loader.run(revision=revision)

    segments = duckdb_loader.rows(
        "select id, name, definition, created, updated, is_active, is_processing, is_starred,"
        " deleted_at from segments"
    )
    assert {row[0] for row in segments} == set(emu.segment_ids())
    for sid, name, definition, created, updated, active, processing, starred, gone in segments:
        expected = emu.segment(sid)
        assert name == expected["name"]
        assert json.loads(definition) == expected["definition"]
        assert (utc(created), utc(updated)) == (
            datetime.fromisoformat(expected["created"]),
            datetime.fromisoformat(expected["updated"]),
        )
        assert (active, processing, starred) == (
            expected["is_active"],
            expected["is_processing"],
            expected["is_starred"],
        )
        assert gone is None
    segment_types = dict(
        duckdb_loader.rows(
            "select column_name, data_type from information_schema.columns"
            " where table_name = 'segments'"
        )
    )
    assert segment_types["definition"] == "JSON"
    assert segment_types["created"] == segment_types["deleted_at"] == "TIMESTAMP WITH TIME ZONE"
    assert set(duckdb_loader.rows("select id, name from tags")) == truth.linked_tags()
    assert duckdb_loader.segment_tags() == truth.segment_tags()
    assert duckdb_loader.memberships() == truth.memberships()
    profile_ids = [row[0] for row in duckdb_loader.rows("select id from profiles")]
    assert sorted(profile_ids) == sorted(emu.profile_ids())

    # one segment list page per 10 segments, one profile page per segment of the tiny set
    assert emu.stats.requests["get_segments"] == 1
    assert emu.stats.requests["get_segment_profiles"] == len(emu.segment_ids())
    assert stats.segments_done == stats.segments_total == len(emu.segment_ids())
    assert stats.rows["segment_memberships"] == len(truth.memberships())
    assert stats.requests == emu.stats.total


def test_profile_attributes_are_flattened_and_typed(duckdb_loader: Loader, emu: Any) -> None:
    duckdb_loader.run()

    columns = dict(
        duckdb_loader.rows(
            "select column_name, data_type from information_schema.columns"
            " where table_name = 'profiles'"
        )
    )
    assert columns["properties"] == "JSON"
    assert columns["created"] == columns["updated"] == "TIMESTAMP WITH TIME ZONE"
    assert columns["location_latitude"] == columns["location_longitude"] == "DOUBLE"
    assert {"location_city", "location_ip", "location_timezone"} <= set(columns)
    assert "location" not in columns and not any(c.startswith("properties_") for c in columns)

    rows = duckdb_loader.rows(
        "select id, email, first_name, created, location_city, location_latitude, properties"
        " from profiles"
    )
    for pid, email, first_name, created, city, latitude, properties in rows:
        expected = emu.profile(pid)
        location = expected.get("location") or {}
        assert (email, first_name, city) == (
            expected["email"],
            expected["first_name"],
            location.get("city"),
        )
        assert utc(created) == utc(datetime.fromisoformat(expected["created"]))
        if isinstance(location.get("latitude"), (int, float)):
            assert latitude == pytest.approx(location["latitude"])
        assert json.loads(properties) == expected["properties"]
    # properties stay queryable as JSON
    plans = duckdb_loader.rows(
        "select properties->>'$.plan' from profiles where properties is not null"
    )
    assert plans and any(plan is not None for (plan,) in plans)


def test_second_run_loads_only_the_delta(duckdb_loader: Loader, truth: Truth, emu: Any) -> None:
    duckdb_loader.run()
    first, second = emu.segment_ids()[:2]
    newcomer = emu.create_profile(email="newcomer@example.com", first_name="New")
    emu.add_member(first, newcomer)
    emu.update_profile(newcomer, first_name="Renamed")
    emu.rename_segment(second, "Renamed segment")
    emu.stats.reset()

    stats = duckdb_loader.run()

    # the segment list once, and one profile page per segment: nothing is re-walked
    assert dict(emu.stats.requests) == {
        "get_segments": 1,
        "get_segment_profiles": len(emu.segment_ids()),
    }
    assert duckdb_loader.memberships() == truth.memberships()
    assert duckdb_loader.rows(f"select first_name from profiles where id = '{newcomer}'") == [
        ("Renamed",)
    ]
    assert duckdb_loader.rows(f"select name from segments where id = '{second}'") == [
        ("Renamed segment",)
    ]
    # only the newest stamps are read again, also of the segment still processing
    assert stats.rows["segment_memberships"] <= len(emu.segment_ids()) * 2
    assert stats.new_memberships == 1


def test_late_joiner_is_loaded(duckdb_loader: Loader, truth: Truth, emu: Any) -> None:
    """A join older than another segment's newest member is not skipped (one cursor each)."""
    duckdb_loader.run()
    newest = {s: max(emu.members(s).values()) for s in emu.segment_ids() if emu.members(s)}
    leader = max(newest, key=newest.__getitem__)
    laggard = min(newest, key=newest.__getitem__)
    joined = newest[laggard] + (newest[leader] - newest[laggard]) / 2
    late = next(p for p in emu.profile_ids() if p not in emu.members(laggard))
    emu.add_member(laggard, late, joined_group_at=joined)

    duckdb_loader.run()

    assert (laggard, late, utc(joined)) in duckdb_loader.memberships()
    assert duckdb_loader.memberships() == truth.memberships()


def test_new_segment_is_backfilled(duckdb_loader: Loader, truth: Truth, emu: Any) -> None:
    duckdb_loader.run()
    segment = emu.create_segment("Backfill me")
    old = emu.now() - timedelta(days=900)
    for offset, profile in enumerate(emu.profile_ids()[:7]):
        emu.add_member(segment, profile, joined_group_at=old + timedelta(days=offset))

    duckdb_loader.run()

    loaded = {m for m in duckdb_loader.memberships() if m[0] == segment}
    assert len(loaded) == 7
    assert duckdb_loader.memberships() == truth.memberships()
    assert duckdb_loader.rows(f"select name from segments where id = '{segment}'") == [
        ("Backfill me",)
    ]


def test_rejoin_updates_joined_group_at(duckdb_loader: Loader, truth: Truth, emu: Any) -> None:
    duckdb_loader.run()
    segment = emu.segment_ids()[0]
    profile = min(emu.members(segment), key=emu.members(segment).__getitem__)
    emu.remove_member(segment, profile)
    rejoined = emu.add_member(segment, profile)

    duckdb_loader.run()

    rows = duckdb_loader.rows(
        "select joined_group_at from segment_memberships"
        f" where segment_id = '{segment}' and profile_id = '{profile}'"
    )
    assert [utc(j) for (j,) in rows] == [utc(rejoined)]
    assert duckdb_loader.memberships() == truth.memberships()


@pytest.mark.parametrize("revision", REVISIONS)
def test_ties_across_page_boundaries(
    duckdb_loader: Loader, truth: Truth, emu: Any, small_pages: int, revision: str
) -> None:
    segment = emu.segment_ids()[0]
    stamp = emu.now() - timedelta(hours=1)
    outsiders = [p for p in emu.profile_ids() if p not in emu.members(segment)]
    for profile in outsiders[:5]:
        emu.add_member(segment, profile, joined_group_at=stamp)
    duckdb_loader.run(revision=revision)
    assert duckdb_loader.memberships() == truth.memberships()
    walked = emu.stats.requests["get_segment_profiles"]
    assert walked > len(emu.segment_ids()), "small pages must make segments span pages"

    # the bulk import goes on with the same stamp: >= on the cursor picks it up
    for profile in outsiders[5:7]:
        emu.add_member(segment, profile, joined_group_at=stamp)
    emu.stats.reset()
    duckdb_loader.run(revision=revision)

    assert duckdb_loader.memberships() == truth.memberships()
    assert {
        p for s, p, j in duckdb_loader.memberships() if s == segment and j == utc(stamp)
    } == set(outsiders[:7])


def test_profile_in_several_segments_is_one_row(duckdb_loader: Loader, emu: Any) -> None:
    duckdb_loader.run()
    counts: dict[str, int] = {}
    for segment in emu.segment_ids():
        for profile in emu.members(segment):
            counts[profile] = counts.get(profile, 0) + 1
    shared = max(counts, key=counts.__getitem__)
    assert counts[shared] > 1

    assert duckdb_loader.rows(f"select count(*) from profiles where id = '{shared}'") == [(1,)]
    assert duckdb_loader.rows(
        f"select count(*) from segment_memberships where profile_id = '{shared}'"
    ) == [(counts[shared],)]
    assert duckdb_loader.rows("select count(*), count(distinct id) from profiles")[0] == (
        len(counts),
        len(counts),
    )


def test_tag_links_follow_klaviyo(duckdb_loader: Loader, truth: Truth, emu: Any) -> None:
    duckdb_loader.run()
    segment = next(s for s in emu.segment_ids() if len(emu.segment_tags(s)) >= 2)
    unlinked = sorted(emu.segment_tags(segment))[0]
    emptied = next(s for s in emu.segment_ids() if s != segment and emu.segment_tags(s))
    vanished = next(
        s for s in emu.segment_ids() if s not in (segment, emptied) and emu.segment_tags(s)
    )
    vanished_links = {(vanished, t) for t in emu.segment_tags(vanished)}
    new_tag = emu.create_tag("Fresh tag")
    emu.unlink_tag(segment, unlinked)
    emu.link_tag(segment, new_tag)
    for tag in list(emu.segment_tags(emptied)):
        emu.unlink_tag(emptied, tag)
    emu.delete_segment(vanished)

    duckdb_loader.run()

    links = duckdb_loader.segment_tags()
    assert (segment, unlinked) not in links
    assert (segment, new_tag) in links
    assert not {link for link in links if link[0] == emptied}
    assert not links & vanished_links
    assert links == truth.segment_tags()
    assert (new_tag, "Fresh tag") in set(duckdb_loader.rows("select id, name from tags"))
    assert duckdb_loader.rows("select count(*) from segment_tags where deleted") == [(0,)]


def test_scoped_run_and_start_date(duckdb_loader: Loader, truth: Truth, emu: Any) -> None:
    chosen = [s for s in emu.segment_ids() if len(emu.members(s)) >= 10][:2]
    joined = sorted(j for s in chosen for j in emu.members(s).values())
    start = joined[len(joined) // 2]

    duckdb_loader.run(segment_ids=chosen, start_date=start.isoformat())

    assert {row[0] for row in duckdb_loader.rows("select id from segments")} == set(chosen)
    expected = {m for m in truth.memberships() if m[0] in chosen and m[2] >= utc(start)}
    assert duckdb_loader.memberships() == expected
    assert duckdb_loader.segment_tags() == {t for t in truth.segment_tags() if t[0] in chosen}
    assert emu.stats.requests["get_segment_profiles"] == len(chosen)


def test_selected_tables_keep_their_own_cursors(
    duckdb_loader: Loader, truth: Truth, emu: Any
) -> None:
    """Loading memberships alone must not make a later profiles load skip anyone."""
    duckdb_loader.run(resources=("segments", "segment_memberships"))
    assert "profiles" not in duckdb_loader.table_names()
    assert duckdb_loader.memberships() == truth.memberships()

    emu.stats.reset()
    duckdb_loader.run()

    profile_ids = {row[0] for row in duckdb_loader.rows("select id from profiles")}
    assert profile_ids == set(emu.profile_ids())
    cursors = duckdb_loader.pipeline.state["sources"]["klaviyo"]["resources"]
    assert cursors["profiles"]["cursors"] == cursors["segment_memberships"]["cursors"]


def test_profile_fields_and_additional_fields(duckdb_loader: Loader, emu: Any) -> None:
    duckdb_loader.run(
        profile_fields=["email", "location.city", "properties"],
        additional_fields=["subscriptions", "predictive_analytics"],
    )

    columns = dict(
        duckdb_loader.rows(
            "select column_name, data_type from information_schema.columns"
            " where table_name = 'profiles'"
        )
    )
    user_columns = {c for c in columns if not c.startswith("_dlt")}
    assert user_columns == {
        "id",
        "email",
        "location_city",
        "properties",
        "subscriptions",
        "predictive_analytics",
    }
    assert columns["subscriptions"] == columns["predictive_analytics"] == "JSON"
    rows = duckdb_loader.rows("select subscriptions from profiles where subscriptions is not null")
    assert rows and all(isinstance(json.loads(value), dict) for (value,) in rows)
    assert duckdb_loader.memberships()


def test_stats_object_is_the_callers(duckdb_loader: Loader, emu: Any) -> None:
    stats = duckdb_loader.run(max_workers=2)

    assert stats is duckdb_loader.last_stats
    snapshot = stats.snapshot()
    assert snapshot["pages"] == len(emu.segment_ids())
    assert sorted(snapshot["segments_walked"]) == sorted(emu.segment_ids())
    assert snapshot["rows"]["profiles"] == len(emu.profile_ids())
    assert snapshot["throttled"] == snapshot["retries"] == 0


def test_api_key_from_environment(
    duckdb_loader: Loader, emu: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    from sources.klaviyo import klaviyo_source

    monkeypatch.setenv("SOURCES__KLAVIYO__API_KEY", emu.api_key)
    monkeypatch.setenv("SOURCES__KLAVIYO__BASE_URL", emu.base_url)
    duckdb_loader.pipeline.run(klaviyo_source().with_resources("segments"))

    assert len(duckdb_loader.rows("select id from segments")) == len(emu.segment_ids())


def test_same_source_object_run_twice_reads_the_list_again(duckdb_loader: Loader, emu: Any) -> None:
    from sources.klaviyo import klaviyo_source

    source = klaviyo_source(api_key=emu.api_key, base_url=emu.base_url)
    duckdb_loader.pipeline.run(source)
    segment = emu.segment_ids()[0]
    emu.rename_segment(segment, "Second run")
    duckdb_loader.pipeline.run(source)

    assert emu.stats.requests["get_segments"] == 2
    assert duckdb_loader.rows(f"select name from segments where id = '{segment}'") == [
        ("Second run",)
    ]
