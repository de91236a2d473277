"""The source's pipeline state: its layout, read for planning and written after each batch.

Every key the source keeps in dlt's source state is named here and nowhere else. Under
`resources`, by table (resource names equal table names):

* `segments.rows`: `{segment_id: last segments row}` (datetimes as ISO text), so that a
  deleted segment's tombstone repeats its last attributes.
* `segment_tags.links`: `{segment_id: sorted tag ids}` emitted last, so that a removed link
  is deleted.
* `<membership table>.cursors`: `{segment_id: ISO datetime}`, the newest `joined_group_at`
  loaded into that table; one cursor per segment and table.
* `<membership table>.processing`: `{segment_id: ISO datetime}`, segments Klaviyo was still
  computing when last walked (a catch-up is due once it is done).
* `<reconciled table>.reconciled`: `{segment_id: ISO datetime or None}`, the last
  reconciliation of each segment loaded (None: loaded, never reconciled).
* `<membership table>.walked`: `{segment_id: ISO datetime}`, when each segment's walk last
  reached its end; a run walks the segments it reached least recently first.
* `<membership table>.cut`: `{segment_id: ISO datetime}`, segments whose last walk a
  checkpoint stopped before its end (they are behind), until a walk reaches their end.
* `profiles.refreshed`: `{segment_id: ISO datetime}`, the last walk that read every member
  of the segment with its attributes (a refresh, or a complete first load).
* `profiles.changed`: `{"updated": ISO datetime, "read_at": ISO datetime}`, the newest
  `updated` read from the account's changed profiles and when that read ran
  (`refresh_profiles_by="updated"`).
* `<membership table>.backfills`: `{segment_id: ISO datetime}`, first loads that a checkpoint
  stopped, with the time they started; their completion counts as a reconciliation then.

Invariants: readers get copies and never write; writers run in dlt's generator thread after
the rows that justify the change were handed to dlt, so a checkpoint never holds a cursor
ahead of its rows. A cursor only moves forward.
"""

from __future__ import annotations

from collections.abc import Collection, Iterable, Mapping
from datetime import datetime
from typing import Any, Protocol

import dlt

from .dates import format_state_datetime, parse_datetime
from .settings import (
    MEMBERSHIP_TABLES,
    PROFILES_TABLE,
    RECONCILED_TABLES,
    SEGMENT_TAGS_TABLE,
    SEGMENTS_TABLE,
)

_CURSORS = "cursors"
_PROCESSING = "processing"
_RECONCILED = "reconciled"
_SEGMENT_ROWS = "rows"
_TAG_LINKS = "links"
_BACKFILLS = "backfills"
_WALKED = "walked"
_CUT = "cut"
_REFRESHED = "refreshed"
_CHANGED = "changed"


class WalkOutcome(Protocol):
    """What a batch of the membership walk completes (`walk.batches.MembershipBatch`)."""

    @property
    def detected_at(self) -> datetime: ...

    @property
    def finished(self) -> Mapping[str, str | None]: ...

    @property
    def processing(self) -> Collection[str]: ...

    @property
    def reconciled(self) -> Collection[str]: ...

    @property
    def retired(self) -> Collection[str]: ...

    @property
    def refreshed(self) -> Collection[str]: ...

    @property
    def cut(self) -> Collection[str]: ...

    @property
    def backfilling(self) -> Collection[str]: ...

    @property
    def backfilled(self) -> Collection[str]: ...


def cursors(table: str) -> dict[str, str]:
    """A copy of the cursors of `table`: `{segment_id: newest joined_group_at loaded}`."""
    return _copy(table, _CURSORS)


def reconciled(table: str) -> dict[str, str | None]:
    """A copy of the last reconciliation of each segment `table` holds."""
    return _copy(table, _RECONCILED)


def processing(table: str) -> dict[str, str]:
    """A copy of the segments Klaviyo was computing when `table` last walked them."""
    return _copy(table, _PROCESSING)


def walked(table: str) -> dict[str, str]:
    """A copy of when each segment's walk last reached its end, for `table`."""
    return _copy(table, _WALKED)


def cut(table: str) -> dict[str, str]:
    """A copy of the segments of `table` whose last walk a checkpoint stopped."""
    return _copy(table, _CUT)


def refreshed(table: str) -> dict[str, str]:
    """`{segment_id: ISO datetime}`: the last refresh of each segment's members in `table`."""
    return _copy(table, _REFRESHED)


def changed_profiles_cursor() -> dict[str, str]:
    """`profiles.changed`: the newest `updated` read and when (empty before the first read)."""
    return _copy(PROFILES_TABLE, _CHANGED)


def remember_changed_profiles(newest: str | None, start: str, read_at: datetime) -> None:
    """Moves `profiles.changed` past a read whose rows were handed to dlt.

    Args:
        newest: The newest `updated` read (None: nothing changed); the cursor never goes back.
        start: Where the read started: the cursor of a first read that found nothing.
        read_at: The run's time.
    """
    cursor = dlt.current.resource_state(PROFILES_TABLE).setdefault(_CHANGED, {})
    old = parse_datetime(cursor.get("updated"))
    new = parse_datetime(newest) or (None if old is not None else parse_datetime(start))
    if new is not None and (old is None or new > old):
        cursor["updated"] = format_state_datetime(new)
    cursor["read_at"] = format_state_datetime(read_at)


def backfills(table: str) -> dict[str, str]:
    """A copy of the first loads of `table` a checkpoint stopped, with when they started."""
    return _copy(table, _BACKFILLS)


def tracked_segments(tables: Iterable[str]) -> set[str]:
    """Segments whose rows `tables` hold (they have a cursor or a reconciliation entry)."""
    return {s for table in tables for s in (*cursors(table), *reconciled(table))}


def known_segment_ids() -> set[str]:
    """Every segment an earlier run loaded into any table."""
    resources = _resources()
    known = set(resources.get(SEGMENTS_TABLE, {}).get(_SEGMENT_ROWS, {}))
    known |= set(resources.get(SEGMENT_TAGS_TABLE, {}).get(_TAG_LINKS, {}))
    return known | tracked_segments(MEMBERSHIP_TABLES)


def last_segment_rows() -> dict[str, dict[str, Any]]:
    """A copy of the last `segments` row emitted for each segment (state form)."""
    return dict(dlt.current.resource_state(SEGMENTS_TABLE).setdefault(_SEGMENT_ROWS, {}))


def remember_segment_rows(rows: Iterable[dict[str, Any]]) -> None:
    """Keeps `rows` (state form, see `rows.segments.segment_state_row`) as the last ones."""
    kept = dlt.current.resource_state(SEGMENTS_TABLE).setdefault(_SEGMENT_ROWS, {})
    for row in rows:
        kept[row["id"]] = row


def segment_tag_links() -> dict[str, list[str]]:
    """A copy of the tag ids emitted last for each segment."""
    return dict(dlt.current.resource_state(SEGMENT_TAGS_TABLE).setdefault(_TAG_LINKS, {}))


def remember_segment_tag_links(current: Mapping[str, Iterable[str]], gone: Iterable[str]) -> None:
    """Keeps the links just emitted, and forgets the segments whose links all went."""
    links = dlt.current.resource_state(SEGMENT_TAGS_TABLE).setdefault(_TAG_LINKS, {})
    for segment_id, tag_ids in current.items():
        links[segment_id] = sorted(set(tag_ids))
    for segment_id in gone:
        links.pop(segment_id, None)


def record_walks(table: str, outcome: WalkOutcome) -> None:
    """Moves the state of `table` past a batch; call it after its rows were handed to dlt.

    Cursors of finished segments advance (never back), processing marks are set or cleared,
    reconciliations are stamped with the run's time, and retired segments are forgotten.
    """
    table_state = dlt.current.resource_state(table)
    table_cursors: dict[str, str] = table_state.setdefault(_CURSORS, {})
    _advance(table_cursors, outcome.finished)
    _record_processing(table_state.setdefault(_PROCESSING, {}), outcome)
    completed = _record_backfills(table_state.setdefault(_BACKFILLS, {}), outcome)
    _record_walked(table_state.setdefault(_WALKED, {}), table_state.setdefault(_CUT, {}), outcome)
    if table in RECONCILED_TABLES:
        stamps = table_state.setdefault(_RECONCILED, {})
        _record_reconciled(stamps, outcome)
        # A first load read every member: complete, it stands for a reconciliation then.
        stamps.update(completed)
    if table == PROFILES_TABLE:
        refreshes = table_state.setdefault(_REFRESHED, {})
        _record_refreshed(refreshes, outcome)
        refreshes.update(completed)
    for segment_id in outcome.retired:
        table_cursors.pop(segment_id, None)


def _advance(table_cursors: dict[str, str], finished: Mapping[str, str | None]) -> None:
    for segment_id, newest in finished.items():
        new = parse_datetime(newest)
        old = parse_datetime(table_cursors.get(segment_id))
        if new is not None and (old is None or new > old):
            table_cursors[segment_id] = format_state_datetime(new)


def _record_processing(marks: dict[str, str], outcome: WalkOutcome) -> None:
    """Remembers the segments Klaviyo is computing until a walk after it is done catches up.

    `walk.plan.plan_walks` makes every walk of a segment that stopped computing a catch-up.
    """
    stamp = format_state_datetime(outcome.detected_at)
    for segment_id in outcome.finished:
        if segment_id in outcome.processing:
            marks.setdefault(segment_id, stamp)
        else:
            marks.pop(segment_id, None)
    for segment_id in outcome.retired:
        marks.pop(segment_id, None)


def _record_walked(stamps: dict[str, str], cut: dict[str, str], outcome: WalkOutcome) -> None:
    stamp = format_state_datetime(outcome.detected_at)
    for segment_id in outcome.finished:
        if segment_id in outcome.cut:
            cut.setdefault(segment_id, stamp)
        else:
            stamps[segment_id] = stamp
            cut.pop(segment_id, None)
    for segment_id in outcome.retired:
        stamps.pop(segment_id, None)
        cut.pop(segment_id, None)


def _record_backfills(started: dict[str, str], outcome: WalkOutcome) -> dict[str, str]:
    """Marks first loads stopped at a checkpoint; returns those now complete, with their start."""
    stamp = format_state_datetime(outcome.detected_at)
    for segment_id in outcome.backfilling:
        started.setdefault(segment_id, stamp)
    completed = {s: started.pop(s) for s in outcome.backfilled if s in started}
    for segment_id in outcome.retired:
        started.pop(segment_id, None)
    return completed


def _record_reconciled(stamps: dict[str, str | None], outcome: WalkOutcome) -> None:
    for segment_id in outcome.finished:
        stamps.setdefault(segment_id, None)
    stamp = format_state_datetime(outcome.detected_at)
    for segment_id in outcome.reconciled:
        stamps[segment_id] = stamp
    for segment_id in outcome.retired:
        stamps.pop(segment_id, None)


def _record_refreshed(stamps: dict[str, str], outcome: WalkOutcome) -> None:
    stamp = format_state_datetime(outcome.detected_at)
    for segment_id in outcome.refreshed:
        stamps[segment_id] = stamp
    for segment_id in outcome.retired:
        stamps.pop(segment_id, None)


def _copy(table: str, key: str) -> dict[str, Any]:
    """A copy of the `{segment_id: ...}` map `key` kept in the state of `table`."""
    return dict(_resources().get(table, {}).get(key, {}))


def _resources() -> dict[str, Any]:
    resources: dict[str, Any] = dlt.current.source_state().get("resources", {})
    return resources
