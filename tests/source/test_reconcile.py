"""Reconciliation against the emulator: leaves, re-joins, deleted and emptied segments, the policy."""

from __future__ import annotations

import math
import threading
import time
from datetime import timedelta
from typing import Any

import dlt
import pytest
from dlt.pipeline.exceptions import PipelineStepFailed

from sources.klaviyo import klaviyo_source, settings
from sources.klaviyo.exceptions import KlaviyoConfigError, find_klaviyo_error

from .conftest import Loader, Truth, utc

REVISION_PAGE_MAX = {"2024-06-15": 1000, "2026-07-15": 100}
ID_REQUESTS = "get_segment_relationships_profiles"
IDS_ONLY: dict[str, Any] = {"refresh_profiles_every_hours": "off"}
"""Reconciliation by the id walk: from revision 2024-10-15 a refresh walks the profiles
instead (tests/source/test_profile_refresh.py)."""


def _active(emu: Any, with_members: int = 1) -> list[str]:
    """Active segments Klaviyo has finished computing, with at least `with_members` members."""
    return [
        s
        for s in emu.segment_ids()
        if emu.segment(s)["is_active"]
        and not emu.segment(s)["is_processing"]
        and len(emu.members(s)) >= with_members
    ]


def test_leave_and_rejoin_are_reconciled(
    duckdb_loader: Loader, truth: Truth, emu: Any, emulator_clock: Any
) -> None:
    duckdb_loader.run()
    segment = _active(emu, with_members=3)[0]
    joined = emu.members(segment)
    leaver, rejoiner = sorted(joined, key=joined.__getitem__)[:2]
    emu.advance_clock(60)
    emu.remove_member(segment, leaver)
    emu.remove_member(segment, rejoiner)
    emu.advance_clock(60)
    rejoined = emu.add_member(segment, rejoiner)
    emu.advance_clock(60)
    before = emu.now()

    stats = duckdb_loader.run(reconcile_every_hours=0)

    assert duckdb_loader.memberships() == truth.memberships()
    [(left_segment, left_profile, detected)] = duckdb_loader.left()
    assert (left_segment, left_profile) == (segment, leaver)
    assert before <= detected <= emu.now()  # the run's time: when the leave was seen
    stays = {(p, j, left) for s, p, j, left in duckdb_loader.stays() if s == segment}
    assert (leaver, utc(joined[leaver]), detected) in stays
    assert (rejoiner, utc(joined[rejoiner]), utc(rejoined)) in stays  # closed by the re-join
    assert (rejoiner, utc(rejoined), None) in stays
    assert stats.leaves == 1
    assert segment in stats.segments_reconciled
    # who was a member just before the leave was seen, and who is not any more
    assert (segment, leaver) in duckdb_loader.members_on(detected - timedelta(seconds=1))
    assert (segment, leaver) not in duckdb_loader.members_on(detected)


def test_not_due_costs_no_request(duckdb_loader: Loader, emu: Any) -> None:
    duckdb_loader.run()
    segment = _active(emu)[0]
    leaver = sorted(emu.members(segment))[0]
    emu.remove_member(segment, leaver)
    emu.stats.reset()

    stats = duckdb_loader.run()  # reconciled by the first run's full walk, less than 24 h ago

    assert emu.stats.requests[ID_REQUESTS] == 0
    assert stats.leaves == 0
    assert (segment, leaver) in {(s, p) for s, p, _ in duckdb_loader.memberships()}


def test_due_after_the_interval(duckdb_loader: Loader, emu: Any, emulator_clock: Any) -> None:
    duckdb_loader.run(**IDS_ONLY)
    segment = _active(emu)[0]
    leaver = sorted(emu.members(segment))[0]
    emu.remove_member(segment, leaver)
    emu.advance_clock(5 * 3600)
    emu.stats.reset()
    duckdb_loader.run(reconcile_every_hours=6, **IDS_ONLY)
    assert emu.stats.requests[ID_REQUESTS] == 0

    emu.advance_clock(3600 + 60)
    stats = duckdb_loader.run(reconcile_every_hours=6, **IDS_ONLY)

    due = [s for s in _active(emu) if emu.members(s)]  # an empty one is walked in full
    assert emu.stats.requests[ID_REQUESTS] == len(due)
    assert set(due) <= set(stats.segments_reconciled)
    assert stats.leaves == 1


@pytest.mark.parametrize("revision", sorted(REVISION_PAGE_MAX))
def test_cost_is_one_id_request_per_page_max(
    duckdb_loader: Loader, truth: Truth, emu: Any, revision: str
) -> None:
    big = emu.create_segment("Big enough for several pages of ids")
    start = emu.now() - timedelta(days=30)
    for number in range(1050):
        profile = emu.create_profile(email=f"bulk{number}@example.com")
        emu.add_member(big, profile, joined_group_at=start + timedelta(minutes=number))
    duckdb_loader.run(revision=revision, **IDS_ONLY)
    leavers = sorted(emu.members(big))[:3]
    for profile in leavers:
        emu.remove_member(big, profile)
    emu.stats.reset()

    stats = duckdb_loader.run(revision=revision, reconcile_segments=[big], **IDS_ONLY)

    # 1047 members: 2 pages of 1000 at 2024-06-15, 11 pages of 100 from 2024-10-15;
    # the other segments are not due and cost nothing
    assert emu.stats.requests[ID_REQUESTS] == math.ceil(1047 / REVISION_PAGE_MAX[revision])
    assert big in stats.segments_reconciled
    assert stats.leaves == len(leavers)
    assert duckdb_loader.memberships() == truth.memberships()


def test_cost_with_several_pages_of_ids(
    duckdb_loader: Loader, truth: Truth, emu: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Pages of ids chain through `links.next`: N members cost ceil(N / page size) requests."""
    monkeypatch.setattr(settings, "SEGMENT_PROFILE_IDS_PAGE_SIZE", 4)
    duckdb_loader.run(**IDS_ONLY)
    emu.stats.reset()

    duckdb_loader.run(reconcile_segments=["all"], **IDS_ONLY)

    expected = sum(math.ceil(len(emu.members(s)) / 4) for s in _active(emu))
    assert emu.stats.requests[ID_REQUESTS] == expected
    assert duckdb_loader.memberships() == truth.memberships()


def test_inactive_segment_only_when_asked(
    duckdb_loader: Loader, truth: Truth, emu: Any, emulator_clock: Any
) -> None:
    inactive = next(s for s in emu.segment_ids() if not emu.segment(s)["is_active"])
    duckdb_loader.run(**IDS_ONLY)
    leaver = sorted(emu.members(inactive))[0]
    emu.remove_member(inactive, leaver)

    stats = duckdb_loader.run(reconcile_every_hours=0, **IDS_ONLY)
    assert inactive not in stats.segments_reconciled
    assert (inactive, leaver) in {(s, p) for s, p, _ in duckdb_loader.memberships()}

    stats = duckdb_loader.run(reconcile_every_hours=0, reconcile_inactive=True, **IDS_ONLY)
    assert inactive in stats.segments_reconciled and stats.leaves == 1
    assert duckdb_loader.memberships() == truth.memberships()

    other = sorted(emu.members(inactive))[0]
    emu.remove_member(inactive, other)
    emu.stats.reset()
    stats = duckdb_loader.run(reconcile_segments=[inactive], **IDS_ONLY)  # naming it is asking
    assert inactive in stats.segments_reconciled and stats.leaves == 1
    assert emu.stats.requests[ID_REQUESTS] == 1


def test_forced_for_a_subset(duckdb_loader: Loader, truth: Truth, emu: Any) -> None:
    duckdb_loader.run(**IDS_ONLY)
    first, second, third = _active(emu, with_members=2)[:3]
    for segment in (first, second, third):
        emu.remove_member(segment, sorted(emu.members(segment))[0])
    emu.stats.reset()

    stats = duckdb_loader.run(reconcile_segments=[first, second], **IDS_ONLY)

    assert {first, second} <= set(stats.segments_reconciled)
    assert third not in stats.segments_reconciled
    assert emu.stats.requests[ID_REQUESTS] == 2
    assert stats.leaves == 2
    current = {m for m in duckdb_loader.memberships() if m[0] != third}
    assert current == {m for m in truth.memberships() if m[0] != third}


def test_processing_segment_is_never_reconciled(duckdb_loader: Loader, emu: Any) -> None:
    processing = next(s for s in emu.segment_ids() if emu.segment(s)["is_processing"])
    duckdb_loader.run()
    emu.remove_member(processing, sorted(emu.members(processing))[0])

    stats = duckdb_loader.run(reconcile_segments=[processing], reconcile_every_hours=0)

    assert processing not in stats.segments_reconciled and stats.leaves == 0


def test_emptied_segment_closes_every_membership(
    duckdb_loader: Loader, truth: Truth, emu: Any
) -> None:
    duckdb_loader.run()
    segment = _active(emu, with_members=3)[0]
    gone = set(emu.members(segment))
    for profile in gone:
        emu.remove_member(segment, profile)

    stats = duckdb_loader.run(reconcile_every_hours=0)

    assert {p for s, p, _ in duckdb_loader.left() if s == segment} == gone
    assert not [m for m in duckdb_loader.memberships() if m[0] == segment]
    assert not [s for s in duckdb_loader.stays() if s[0] == segment and s[3] is None]
    assert stats.leaves == len(gone)
    assert duckdb_loader.memberships() == truth.memberships()


def test_deleted_segment_is_tombstoned_and_retired(
    duckdb_loader: Loader, truth: Truth, emu: Any, emulator_clock: Any
) -> None:
    duckdb_loader.run()
    segment = _active(emu, with_members=3)[0]
    name, members = emu.segment(segment)["name"], set(emu.members(segment))
    emu.delete_segment(segment)
    emu.advance_clock(60)
    before = emu.now()
    emu.stats.reset()

    stats = duckdb_loader.run()  # not due: a deletion needs no reconciliation

    [(deleted, detected)] = duckdb_loader.deleted_segments().items()
    assert deleted == segment and before <= detected <= emu.now()
    assert duckdb_loader.rows(f"select name, is_active from segments where id = '{segment}'") == [
        (name, True)
    ]
    assert {(s, p) for s, p, left in duckdb_loader.left() if left == detected} == {
        (segment, p) for p in members
    }
    assert stats.segments_deleted == [segment] and stats.leaves == len(members)
    assert emu.stats.requests[ID_REQUESTS] == 0
    assert duckdb_loader.memberships() == truth.memberships()

    emu.advance_clock(60)
    stats = duckdb_loader.run()
    assert duckdb_loader.deleted_segments() == {segment: detected}  # not moved by later runs
    assert stats.segments_deleted == [] and stats.leaves == 0


def test_requested_segment_deleted_later_is_tombstoned(
    duckdb_loader: Loader, truth: Truth, emu: Any
) -> None:
    kept, deleted = _active(emu, with_members=2)[:2]
    duckdb_loader.run(segment_ids=[kept, deleted])
    emu.delete_segment(deleted)

    stats = duckdb_loader.run(segment_ids=[kept, deleted])

    assert set(duckdb_loader.deleted_segments()) == {deleted}
    assert stats.segments_deleted == [deleted]
    assert not [m for m in duckdb_loader.memberships() if m[0] == deleted]
    assert not [link for link in duckdb_loader.segment_tags() if link[0] == deleted]
    assert duckdb_loader.memberships() == {m for m in truth.memberships() if m[0] == kept}


def _delete_when(emu: Any, segment: str, operation: str, count: int) -> threading.Thread:
    """Deletes `segment` as soon as the emulator answered `count` requests of `operation`."""

    def watch() -> None:
        deadline = time.monotonic() + 30
        while emu.stats.requests[operation] < count and time.monotonic() < deadline:
            time.sleep(0.001)
        emu.delete_segment(segment)

    thread = threading.Thread(target=watch, daemon=True)
    thread.start()
    return thread


def test_segment_deleted_while_walked(duckdb_loader: Loader, truth: Truth, emu: Any) -> None:
    duckdb_loader.run()
    segment = _active(emu, with_members=3)[0]
    members = set(emu.members(segment))
    emu.stats.reset()
    # its first page is held back until the segment list was answered and it was deleted
    emu.faults.script(kind="slow", delay=0.5, path_contains=f"/segments/{segment}/")
    deleting = _delete_when(emu, segment, "get_segments", 1)

    stats = duckdb_loader.run(reconcile_every_hours=0)
    deleting.join()

    assert set(duckdb_loader.deleted_segments()) == {segment}
    assert {p for s, p, _ in duckdb_loader.left() if s == segment} == members
    assert duckdb_loader.memberships() == truth.memberships()  # the others loaded
    assert stats.segments_deleted == [segment]
    assert set(stats.segments_walked) == set(emu.segment_ids()) | {segment}


def test_segment_deleted_between_its_pages(
    duckdb_loader: Loader, truth: Truth, emu: Any, small_pages: int
) -> None:
    segment = _active(emu, with_members=small_pages * 2)[0]
    duckdb_loader.run(segment_ids=[segment])
    newest = max(emu.members(segment).values())
    late = sorted(set(emu.profile_ids()) - set(emu.members(segment)))[: small_pages * 2]
    for profile in late:
        emu.add_member(segment, profile, joined_group_at=newest + timedelta(seconds=1))
    emu.set_latency(0.2)
    emu.stats.reset()
    deleting = _delete_when(emu, segment, "get_segment_profiles", 1)

    stats = duckdb_loader.run(segment_ids=[segment], max_workers=1)
    deleting.join()

    assert set(duckdb_loader.deleted_segments()) == {segment}
    assert stats.segments_deleted == [segment] and stats.leaves == 0
    emu.set_latency(0.0)
    # rows of the first page were loaded as current: the next run closes them
    stats = duckdb_loader.run(segment_ids=[segment])
    assert not [m for m in duckdb_loader.memberships() if m[0] == segment]
    assert stats.segments_deleted == [segment]
    assert len(duckdb_loader.deleted_segments()) == 1


@pytest.mark.parametrize("refresh", ["off", 24])
def test_late_joiner_is_picked_up_by_reconciliation(
    duckdb_loader: Loader, truth: Truth, emu: Any, refresh: Any
) -> None:
    """A member added with a joined_group_at below its own segment's cursor (Klaviyo's lag)."""
    segment = _active(emu, with_members=3)[0]
    duckdb_loader.run()
    joined = sorted(emu.members(segment).values())
    late_at = joined[0] + (joined[-1] - joined[0]) / 2
    late = sorted(set(emu.profile_ids()) - set(emu.members(segment)))[0]
    emu.add_member(segment, late, joined_group_at=late_at)

    duckdb_loader.run()  # not due: the walk from the cursor cannot see it
    assert (segment, late) not in {(s, p) for s, p, _ in duckdb_loader.memberships()}
    emu.stats.reset()

    stats = duckdb_loader.run(reconcile_segments=[segment], refresh_profiles_every_hours=refresh)

    assert (segment, late, utc(late_at)) in duckdb_loader.memberships()
    assert duckdb_loader.memberships() == truth.memberships()
    assert stats.new_memberships == 1
    if refresh == "off":
        # the id walk, the walk from the cursor, and one catch-up walk below the cursor
        assert emu.stats.requests[ID_REQUESTS] == 1
        assert emu.stats.requests["get_segment_profiles"] == len(emu.segment_ids()) + 1
    else:
        # one walk of every member stands for all three
        assert emu.stats.requests[ID_REQUESTS] == 0
        assert emu.stats.requests["get_segment_profiles"] == len(emu.segment_ids())


def test_start_date_members_are_not_late_joiners(
    duckdb_loader: Loader, truth: Truth, emu: Any
) -> None:
    segment = _active(emu, with_members=10)[0]
    joined = sorted(emu.members(segment).values())
    start = joined[len(joined) // 2]
    duckdb_loader.run(segment_ids=[segment], start_date=start.isoformat())
    emu.stats.reset()

    stats = duckdb_loader.run(
        segment_ids=[segment], start_date=start.isoformat(), reconcile_every_hours=0
    )

    # members before start_date are neither listed by the id walk nor fetched again
    assert emu.stats.requests["get_segment_profiles"] == 1
    assert stats.leaves == 0
    expected = {m for m in truth.memberships() if m[0] == segment and m[2] >= utc(start)}
    assert duckdb_loader.memberships() == expected


def test_full_refresh_starts_from_a_clean_slate(
    duckdb_loader: Loader, truth: Truth, emu: Any
) -> None:
    duckdb_loader.run()
    segment = _active(emu, with_members=2)[0]
    emu.remove_member(segment, sorted(emu.members(segment))[0])
    duckdb_loader.run(reconcile_every_hours=0)
    assert duckdb_loader.left()

    source = klaviyo_source(api_key=emu.api_key, base_url=emu.base_url)
    duckdb_loader.pipeline.run(source, refresh="drop_sources")

    assert not duckdb_loader.left()
    assert duckdb_loader.memberships() == truth.memberships()
    assert all(left is None for *_, left in duckdb_loader.stays())


def test_only_segments_walks_nothing(duckdb_loader: Loader, emu: Any) -> None:
    duckdb_loader.run(resources=("segments",))

    assert dict(emu.stats.requests) == {"get_segments": 1}
    assert len(duckdb_loader.rows("select id from segments")) == len(emu.segment_ids())


def test_destination_without_merge_fails_before_walking(
    emu: Any, pipelines_dir: str, tmp_path: Any
) -> None:
    """Filesystem without a table format would append: open stays could never close."""
    pipeline = dlt.pipeline(
        pipeline_name="klaviyo_filesystem",
        destination=dlt.destinations.filesystem((tmp_path / "lake").as_uri()),
        dataset_name="klaviyo",
        pipelines_dir=pipelines_dir,
    )

    with pytest.raises(PipelineStepFailed) as raised:
        pipeline.run(klaviyo_source(api_key=emu.api_key, base_url=emu.base_url))

    error = find_klaviyo_error(raised.value)
    assert isinstance(error, KlaviyoConfigError)
    assert "cannot merge table segment_memberships" in str(error)
    assert emu.stats.requests["get_segment_profiles"] == 0


def test_rows_loaded_before_reconciliation_existed(
    duckdb_loader: Loader, truth: Truth, emu: Any
) -> None:
    """Upgrading: memberships without `is_member` and no history yet."""
    duckdb_loader.run(resources=("segments", "profiles", "segment_memberships"))
    with duckdb_loader.pipeline.sql_client() as client:
        client.execute_sql("update segment_memberships set is_member = null")
    segment = _active(emu, with_members=2)[0]
    leaver = sorted(emu.members(segment))[0]
    emu.remove_member(segment, leaver)
    emu.stats.reset()

    stats = duckdb_loader.run()

    # the history has no cursor yet: every segment is walked, and so reconciled, in full
    assert emu.stats.requests[ID_REQUESTS] == 0
    assert {(s, p) for s, p, _ in duckdb_loader.left()} == {(segment, leaver)}
    assert duckdb_loader.memberships() == truth.memberships()
    null = "select count(*) from segment_memberships where is_member is null"
    assert duckdb_loader.rows(null) == [(0,)]
    assert {(s, p, j) for s, p, j, left in duckdb_loader.stays() if left is None} == (
        truth.memberships()
    )
    assert stats.leaves == 1


def test_segment_is_caught_up_after_klaviyo_stops_processing_it(
    duckdb_loader: Loader, truth: Truth, emu: Any
) -> None:
    processing = next(s for s in emu.segment_ids() if emu.segment(s)["is_processing"])
    duckdb_loader.run()
    joined = sorted(emu.members(processing).values())
    late_at = joined[0] + (joined[-1] - joined[0]) / 2
    late = sorted(set(emu.profile_ids()) - set(emu.members(processing)))[0]
    emu.add_member(processing, late, joined_group_at=late_at)  # Klaviyo still computing
    emu.stats.reset()

    duckdb_loader.run()  # its cursor advanced: one page from it, like any other segment
    assert emu.stats.requests_by_segment[processing] == 1
    assert (processing, late) not in {(s, p) for s, p, _ in duckdb_loader.memberships()}

    emu.set_segment_flags(processing, is_processing=False)
    emu.stats.reset()
    stats = duckdb_loader.run()  # done computing: reconciled once, finding the older join

    assert processing in stats.segments_reconciled
    assert (processing, late, utc(emu.members(processing)[late])) in duckdb_loader.memberships()
    assert duckdb_loader.memberships() == truth.memberships()
    stats = duckdb_loader.run()
    assert processing not in stats.segments_reconciled  # caught up: not due again
