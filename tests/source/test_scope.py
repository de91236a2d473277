"""Scoped runs (`segment_ids`) touch only the segments they name; the next unscoped run the rest.

After a full run the account changes in segments the scoped run does not name (tag links, a
deletion, leaves): the scoped run must leave their rows in `segments`, `segment_tags` and both
membership tables exactly as they were, however due their reconciliation; the next unscoped run
then brings every segment up to date.
"""

from __future__ import annotations

from typing import Any

from .conftest import Loader, Truth
from .scenario import Tables, read_tables

MEMBERSHIPS = "segment_memberships"
HISTORY = "segment_membership_history"


def _settled(emu: Any) -> list[str]:
    """Active segments Klaviyo finished computing, with at least three members each."""
    for segment_id in emu.segment_ids():
        emu.set_segment_flags(segment_id, is_processing=False, is_active=True)
    return [s for s in emu.segment_ids() if len(emu.members(s)) >= 3]


def _of(tables: Tables, segment_ids: set[str]) -> dict[str, set[tuple[Any, ...]]]:
    """Every row of the given segments, per table."""
    return {
        name: tables.table(name, segment_ids)
        for name in ("segments", "segment_tags", MEMBERSHIPS, HISTORY)
    }


def _relink(emu: Any, segment: str) -> tuple[str, str]:
    """Removes one tag link of `segment` and adds another; returns (removed, added)."""
    linked = sorted(emu.segment_tags(segment))
    unlinked = sorted(set(emu.tag_ids()) - set(linked))
    added = unlinked[0] if unlinked else emu.create_tag("added by the test")
    emu.unlink_tag(segment, linked[0])
    emu.link_tag(segment, added)
    return linked[0], added


def _assert_follows_the_account(tables: Tables, truth: Truth, emu: Any) -> None:
    live = set(emu.segment_ids())
    assert tables.segment_tags == truth.segment_tags()
    members = {(s, p, j) for s in live for p, j in tables.members(s)}
    stays = {(s, p, j) for s in tables.segment_ids() for p, j in tables.open_stays(s)}
    assert members == truth.memberships()
    assert stays == truth.memberships()


def _assert_retired(tables: Tables, segment: str, members: set[str]) -> None:
    """Tombstoned, every membership left in both tables at the time the deletion was seen."""
    deleted_at = tables.segments[segment][0]
    assert deleted_at is not None
    left = {
        p: (j, left)
        for (s, p), (j, member, left) in tables.memberships.items()
        if s == segment and member is False
    }
    assert set(left) == members
    assert {left for _, left in left.values()} == {deleted_at}
    assert {(p, j, left) for p, (j, left) in left.items()} == {
        (p, j, left) for (s, p, j), left in tables.history.items() if s == segment
    }
    assert not tables.open_stays(segment)
    assert not {t for s, t in tables.segment_tags if s == segment}


def test_scoped_run_keeps_the_tag_links_of_other_segments(
    duckdb_loader: Loader, truth: Truth, emu: Any, emulator_clock: Any
) -> None:
    named, other = _settled(emu)[:2]
    duckdb_loader.run()
    before = read_tables(duckdb_loader)
    _relink(emu, named)
    removed, added = _relink(emu, other)
    emu.advance_clock(60)

    duckdb_loader.run(segment_ids=[named])

    after = read_tables(duckdb_loader)
    assert {t for s, t in after.segment_tags if s == named} == emu.segment_tags(named)
    others = set(emu.segment_ids()) - {named}
    assert after.table("segment_tags", others) == before.table("segment_tags", others)
    assert (other, removed) in after.segment_tags and (other, added) not in after.segment_tags

    duckdb_loader.run()

    _assert_follows_the_account(read_tables(duckdb_loader), truth, emu)


def test_scoped_run_does_not_retire_segments_it_was_not_asked_about(
    duckdb_loader: Loader, truth: Truth, emu: Any, emulator_clock: Any
) -> None:
    named, deleted, left_one = _settled(emu)[:3]
    duckdb_loader.run()
    before = read_tables(duckdb_loader)
    members = set(emu.members(deleted))
    emu.delete_segment(deleted)
    leaver = sorted(emu.members(left_one))[0]
    emu.remove_member(left_one, leaver)
    emu.advance_clock(25 * 3600)  # every segment is due

    stats = duckdb_loader.run(segment_ids=[named], reconcile_every_hours=0)

    after = read_tables(duckdb_loader)
    assert set(stats.segments_reconciled) == {named}
    assert stats.segments_deleted == [] and stats.leaves == 0
    others = set(before.segments) - {named}
    assert _of(after, others) == _of(before, others)

    emu.advance_clock(60)
    stats = duckdb_loader.run(reconcile_every_hours=0)

    after = read_tables(duckdb_loader)
    assert stats.segments_deleted == [deleted]
    _assert_retired(after, deleted, members)
    assert {
        (p, member) for (s, p), (_, member, _) in after.memberships.items() if s == left_one
    } >= {(leaver, False)}
    _assert_follows_the_account(after, truth, emu)


def test_scoped_run_retires_only_the_deleted_segment_it_names(
    duckdb_loader: Loader, truth: Truth, emu: Any, emulator_clock: Any
) -> None:
    named, deleted_named, deleted_other = _settled(emu)[:3]
    duckdb_loader.run()
    named_members = set(emu.members(deleted_named))
    other_members = set(emu.members(deleted_other))
    emu.delete_segment(deleted_named)
    emu.delete_segment(deleted_other)
    emu.advance_clock(60)
    before = read_tables(duckdb_loader)

    stats = duckdb_loader.run(segment_ids=[named, deleted_named])

    after = read_tables(duckdb_loader)
    assert stats.segments_deleted == [deleted_named]
    _assert_retired(after, deleted_named, named_members)
    others = set(before.segments) - {named, deleted_named}
    assert _of(after, others) == _of(before, others)
    retired = _of(after, {deleted_named})

    emu.advance_clock(60)
    stats = duckdb_loader.run()

    after = read_tables(duckdb_loader)
    assert stats.segments_deleted == [deleted_other]
    _assert_retired(after, deleted_other, other_members)
    # the first retirement is not redone: its left_at and deleted_at do not move
    assert _of(after, {deleted_named}) == retired
    _assert_follows_the_account(after, truth, emu)


def test_scoped_run_with_a_subset_of_tables_touches_nothing_else(
    duckdb_loader: Loader, truth: Truth, emu: Any, emulator_clock: Any
) -> None:
    named, deleted, other = _settled(emu)[:3]
    duckdb_loader.run()
    emu.delete_segment(deleted)
    _relink(emu, other)
    emu.remove_member(other, sorted(emu.members(other))[0])
    emu.advance_clock(25 * 3600)
    before = read_tables(duckdb_loader)

    duckdb_loader.run(("segment_tags", MEMBERSHIPS), segment_ids=[named])

    after = read_tables(duckdb_loader)
    for table in ("segments", HISTORY):
        assert after.table(table) == before.table(table), table
    others = set(before.segments) - {named}
    assert _of(after, others) == _of(before, others)

    duckdb_loader.run(reconcile_every_hours=0)

    _assert_follows_the_account(read_tables(duckdb_loader), truth, emu)
