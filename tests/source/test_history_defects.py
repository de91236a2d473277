"""Membership history stays true when options change between runs, and re-joins close at once."""

from __future__ import annotations

from typing import Any

import pytest
from dlt.pipeline.exceptions import PipelineStepFailed

from sources.klaviyo.exceptions import KlaviyoConfigError, find_klaviyo_error

from .conftest import Loader, Truth, utc

MEMBERSHIP_TABLES = ("segment_memberships", "segment_membership_history")


def _open_stays(loader: Loader) -> set[tuple[str, str, Any]]:
    return {(s, p, j) for s, p, j, left in loader.stays() if left is None}


def _settled(emu: Any) -> list[str]:
    """Active segments that Klaviyo has finished computing, each with a few members."""
    for segment_id in emu.segment_ids():
        emu.set_segment_flags(segment_id, is_processing=False, is_active=True)
    return [s for s in emu.segment_ids() if len(emu.members(s)) >= 3]


def _median_join(emu: Any, segment: str) -> Any:
    joins = sorted(emu.members(segment).values())
    return joins[len(joins) // 2]


@pytest.mark.parametrize("reconcile_every_hours", [0, 24])
def test_raising_start_date_marks_nobody_as_left(
    duckdb_loader: Loader, truth: Truth, emu: Any, emulator_clock: Any, reconcile_every_hours: int
) -> None:
    segment = _settled(emu)[0]
    duckdb_loader.run()
    emu.advance_clock(25 * 3600)
    start = _median_join(emu, segment).isoformat()

    duckdb_loader.run(start_date=start, reconcile_every_hours=reconcile_every_hours)

    assert duckdb_loader.left() == set()
    assert duckdb_loader.memberships() == truth.memberships()
    assert _open_stays(duckdb_loader) == truth.memberships()


def test_raised_start_date_still_finds_leaves_below_it(
    duckdb_loader: Loader, truth: Truth, emu: Any, emulator_clock: Any
) -> None:
    segment = _settled(emu)[0]
    duckdb_loader.run()
    start = _median_join(emu, segment)
    joins = emu.members(segment)
    early = min(joins, key=joins.__getitem__)
    emu.advance_clock(60)
    emu.remove_member(segment, early)
    emu.advance_clock(60)

    duckdb_loader.run(start_date=start.isoformat(), reconcile_segments=["all"])

    assert {(s, p) for s, p, _ in duckdb_loader.left()} == {(segment, early)}
    assert duckdb_loader.memberships() == truth.memberships()


def test_rejoin_closes_the_earlier_stay_without_reconciling(
    duckdb_loader: Loader, truth: Truth, emu: Any, emulator_clock: Any
) -> None:
    segment = _settled(emu)[0]
    duckdb_loader.run()
    rejoiner = sorted(emu.members(segment))[0]
    first = utc(emu.members(segment)[rejoiner])
    emu.advance_clock(60)
    emu.remove_member(segment, rejoiner)
    emu.advance_clock(60)
    rejoined = utc(emu.add_member(segment, rejoiner))
    emu.advance_clock(60)

    stats = duckdb_loader.run()  # reconciled an hour ago: not due

    assert segment not in stats.segments_reconciled
    assert _open_stays(duckdb_loader) == truth.memberships()
    assert (segment, rejoiner, first, rejoined) in duckdb_loader.stays()
    assert duckdb_loader.left() == set()


def test_reconcile_needs_both_membership_tables(
    duckdb_loader: Loader, emu: Any, emulator_clock: Any
) -> None:
    duckdb_loader.run()
    with pytest.raises(PipelineStepFailed) as failure:
        duckdb_loader.run(resources=("segment_memberships",), reconcile_segments=["all"])
    error = find_klaviyo_error(failure.value)
    assert isinstance(error, KlaviyoConfigError)
    assert "segment_membership_history" in str(error)


def test_one_membership_table_alone_records_no_leave(
    duckdb_loader: Loader, truth: Truth, emu: Any, emulator_clock: Any
) -> None:
    segment = _settled(emu)[0]
    duckdb_loader.run()
    leaver = sorted(emu.members(segment))[0]
    emu.advance_clock(60)
    emu.remove_member(segment, leaver)
    emu.advance_clock(60)

    duckdb_loader.run(resources=("segment_memberships",), reconcile_every_hours=0)
    assert duckdb_loader.left() == set()

    emu.advance_clock(60)
    duckdb_loader.run(reconcile_every_hours=0)
    [(_, profile, left_at)] = duckdb_loader.left()
    assert profile == leaver
    closed = {(s, p, left) for s, p, _, left in duckdb_loader.stays() if left is not None}
    assert closed == {(segment, leaver, left_at)}

    emu.advance_clock(60)
    duckdb_loader.run(reconcile_every_hours=0)
    assert duckdb_loader.left() == {(segment, leaver, left_at)}  # a leave never moves
    assert _open_stays(duckdb_loader) == truth.memberships()


def test_rewalk_of_one_segment_keeps_other_rows_and_history(
    duckdb_loader: Loader, truth: Truth, emu: Any, emulator_clock: Any
) -> None:
    first, second = _settled(emu)[:2]
    duckdb_loader.run()
    leaver = sorted(emu.members(first))[0]
    emu.advance_clock(60)
    emu.remove_member(first, leaver)
    emu.advance_clock(60)
    duckdb_loader.run(reconcile_every_hours=0)
    history = duckdb_loader.stays()
    segments = duckdb_loader.rows("select count(*) from segments")

    stats = duckdb_loader.run(segment_ids=[second], rewalk_segments=[second])

    assert duckdb_loader.stays() == history
    assert duckdb_loader.rows("select count(*) from segments") == segments
    assert duckdb_loader.memberships() == truth.memberships()
    assert set(stats.segments_reconciled) == {second}
    assert stats.pages >= 1
