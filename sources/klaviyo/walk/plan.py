"""Which segments a run walks, from where, and which it reconciles.

Planning reads only the maps the pipeline state keeps (`state`) and the segment list: no
request, no destination query. Every decision is made before the first profile page.
"""

from __future__ import annotations

from collections.abc import Collection, Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime, timezone

from .. import settings
from ..dates import parse_datetime, utc_now
from ..typing import Resource
from .reconcile import ReconcilePolicy
from .refresh import RefreshPolicy


@dataclass(frozen=True)
class SegmentWalk:
    """What to fetch for one segment.

    Attributes:
        segment_id: The segment.
        cursor: Its cursor (last joined_group_at loaded), None before its first load.
        since: Lower bound of joined_group_at to request; None fetches every member.
        processing: Klaviyo is still computing the segment; the run after it stops catches
            up on members it added with older join times.
        reconcile: Compare the members with the open stays in the destination and close
            the stays that ended. With a cursor, this walks the segment's profile ids first.
        start_date: The earliest joined_group_at a first load reads (the source's
            `start_date`).
        rewalk: Its cursor was set aside on request: walked from its first member although
            the destination holds rows of it.
        backfill: It continues a first load that an earlier run stopped at a checkpoint:
            walked on from its cursor, and not reconciled until that load is complete.
        rejoins_since: Only members who joined at or after this time can have re-joined
            since the destination got their earlier stay (the start of the first load a
            backfill continues); None: any walked member can.
        behind: Members are known to wait for it: never walked to its end, or its last walk
            stopped at a checkpoint. A run that leaves it undone is not complete.
        refresh: Every member is read again with its attributes (from the oldest stay
            compared, or from `start_date`), although the segment has a cursor.
    """

    segment_id: str
    cursor: datetime | None
    since: datetime | None
    processing: bool = False
    reconcile: bool = False
    start_date: datetime | None = None
    rewalk: bool = False
    backfill: bool = False
    rejoins_since: datetime | None = None
    behind: bool = False
    refresh: bool = False

    @property
    def resumable(self) -> bool:
        """Whether a cut after any page leaves a cursor that says exactly what was read.

        True for a walk forward from the cursor, or from the start of a first load: pages
        come sorted by `joined_group_at`, so the newest one read is where the next run goes
        on. A catch-up below the cursor is not (its pages are older than the cursor).
        """
        return self.cursor is None or self.since == self.cursor


def plan_walks(
    segments: Iterable[Resource],
    cursors: Sequence[Mapping[str, str]],
    start_date: datetime | None,
    reconciled: Sequence[Mapping[str, str | None]] = (),
    policy: ReconcilePolicy | None = None,
    now: datetime | None = None,
    processing: Sequence[Mapping[str, str]] = (),
    rewalk: Collection[str] = (),
    backfills: Sequence[Mapping[str, str]] = (),
    walked: Sequence[Mapping[str, str]] = (),
    cut: Sequence[Mapping[str, str]] = (),
    refreshed: Sequence[Mapping[str, str]] = (),
    refresh: RefreshPolicy | None = None,
) -> list[SegmentWalk]:
    """Decides where each segment's walk starts, and which segments are reconciled.

    Args:
        segments: Segment resources in scope.
        cursors: One `{segment_id: ISO datetime}` map per table being loaded; a segment
            starts at the oldest of them, and from scratch if any table has none.
        start_date: Lower bound for segments without a cursor.
        reconciled: One `{segment_id: ISO datetime}` map of last reconciliations per table
            that reconciliation keeps; the oldest counts.
        policy: When a segment is due; None reconciles nothing.
        now: The run's time.
        processing: One `{segment_id: ISO datetime}` map per table of the segments Klaviyo
            was still computing when last walked. Their cursors advanced like any other, so
            members Klaviyo added meanwhile with older join times are caught up once it is
            done: by a reconciliation (which finds them by id), or without one by a full walk.
        rewalk: Segment ids walked from their first member whatever their cursors, or
            `["all"]` for every segment.
        backfills: One `{segment_id: ISO datetime}` map per table of the first loads an
            earlier run stopped at a checkpoint (started at that time): they go on from
            their cursor without a reconciliation, which their completion stands for.
        walked: One `{segment_id: ISO datetime}` map per table of when each segment's walk
            last reached its end. Walks come back ordered by it, least recent (or never)
            first, so that runs a checkpoint ends early take turns instead of walking the
            same segments every time.
        cut: One `{segment_id: ISO datetime}` map per table of the segments whose last walk
            a checkpoint stopped: they are behind.
        refreshed: One `{segment_id: ISO datetime}` map per table of the last walk of every
            member with attributes (`profiles` only); the oldest counts.
        refresh: When a segment's members are read again; None: never (a run that does
            not load `profiles`, or refreshes turned off).
    """
    now = now or utc_now()
    walks = []
    for segment in _least_recently_walked_first(segments, walked):
        segment_id = segment["id"]
        backfilling = any(segment_id in table for table in backfills)
        # A first load a checkpoint stopped goes on, even in a run asked to walk it again.
        rewalked = not backfilling and (settings.RECONCILE_ALL in rewalk or segment_id in rewalk)
        cursor = None if rewalked else _oldest(table.get(segment_id) for table in cursors)
        computing = bool((segment.get("attributes") or {}).get("is_processing"))
        catch_up = not computing and any(segment_id in table for table in processing)
        since = cursor or start_date
        reconcile = False
        backfill = cursor is not None and backfilling
        if policy is not None and not computing and not backfill:
            last = _oldest(table.get(segment_id) for table in reconciled) if reconciled else None
            # A full walk reads every member anyway: it reconciles for free.
            reconcile = cursor is None or catch_up or policy.is_due(segment, last, now)
        elif catch_up and not backfill:
            since = start_date
        refreshing = False
        if refresh is not None and cursor is not None and not backfill:
            last = _oldest(table.get(segment_id) for table in refreshed) if refreshed else None
            refreshing = refresh.is_due(last, now, reconcile)
            # It reads every member anyway: it reconciles for free where it may.
            reconcile = reconcile or (refreshing and policy is not None and policy.allows(segment))
        walks.append(
            SegmentWalk(
                segment_id,
                cursor,
                since,
                processing=computing,
                reconcile=reconcile,
                start_date=start_date,
                rewalk=rewalked,
                backfill=backfill,
                rejoins_since=_rejoins_since(segment_id, backfills, backfill, refreshing, cursor),
                behind=cursor is None or backfill or any(segment_id in t for t in cut),
                refresh=refreshing,
            )
        )
    return walks


def _least_recently_walked_first(
    segments: Iterable[Resource], walked: Sequence[Mapping[str, str]]
) -> list[Resource]:
    """Segments never walked to their end first, then by when they last were (stable)."""

    def last_walked(segment: Resource) -> datetime:
        last = _oldest(table.get(segment["id"]) for table in walked) if walked else None
        return last or datetime.min.replace(tzinfo=timezone.utc)

    return sorted(segments, key=last_walked)


def _rejoins_since(
    segment_id: str,
    backfills: Sequence[Mapping[str, str]],
    backfill: bool,
    refreshing: bool,
    cursor: datetime | None,
) -> datetime | None:
    """`SegmentWalk.rejoins_since`: a refresh reads members below the cursor that earlier
    walks loaded as they are (a re-join moves `joined_group_at` past the cursor)."""
    if backfill:
        return _backfill_start(segment_id, backfills)
    return cursor if refreshing else None


def _backfill_start(segment_id: str, backfills: Sequence[Mapping[str, str]]) -> datetime | None:
    """When the first load that a backfill continues started (the earliest of the tables)."""
    return _oldest(table[segment_id] for table in backfills if segment_id in table)


def _oldest(values: Iterable[str | None]) -> datetime | None:
    """The oldest of the values, None when there are none or any is missing."""
    parsed = [parse_datetime(value) for value in values]
    if not parsed or None in parsed:
        return None
    return min(v for v in parsed if v is not None)


def reconciled_tables(tables: Sequence[str]) -> list[str]:
    """The tables of `tables` a reconciliation writes leaves to: both or none.

    A leave is one fact in both membership tables: recorded only when both are loaded together.
    """
    kept = [table for table in tables if table in settings.RECONCILED_TABLES]
    return kept if set(kept) == set(settings.RECONCILED_TABLES) else []


def segments_to_retire(gone: Sequence[str], tracked: Collection[str], closes: bool) -> list[str]:
    """Deleted segments whose rows this run retires.

    Retiring closes every open stay, so a run that loads only one of the two membership
    tables leaves them to a run that loads both (`closes` is False).

    Args:
        gone: Segments Klaviyo no longer lists.
        tracked: Segments whose rows the tables being loaded hold.
        closes: This run may close stays.
    """
    if not closes:
        return []
    return [segment_id for segment_id in gone if segment_id in tracked]
