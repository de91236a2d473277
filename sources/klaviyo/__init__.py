"""A dlt source for Klaviyo segments, the profiles in each segment, and segment tags.

Tables: `segments`, `tags`, `segment_tags`, `profiles`, `segment_memberships`,
`segment_membership_history` (resource names equal table names). The segment list is read
once per run; the profiles of every segment are read incrementally from that segment's own
`joined_group_at` cursor, and segments due for reconciliation are compared with what was
loaded before, so that leaves and deleted segments show in the tables.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Iterator, Sequence
from typing import Any

import dlt
import pyarrow as pa
from dlt.common.typing import TDataItems
from dlt.extract.exceptions import CurrentSourceNotAvailable
from dlt.sources import DltResource

from . import filters, settings
from .catalog import SegmentCatalog
from .client import KlaviyoClient
from .exceptions import KlaviyoConfigError
from .filters import format_state_datetime, parse_datetime
from .known import (
    HISTORY_TABLE,
    MEMBERSHIPS_TABLE,
    RECONCILED_TABLES,
    KnownMemberships,
    ensure_merge,
)
from .memberships import (
    ClientFactory,
    MembershipBatch,
    plan_walks,
    profile_params,
    walk_memberships,
)
from .options import SourceOptions, validate_options
from .reconcile import ReconcilePolicy
from .rows import (
    HISTORY_COLUMNS,
    MEMBERSHIP_COLUMNS,
    SEGMENT_COLUMNS,
    SEGMENT_TAG_COLUMNS,
    TAG_COLUMNS,
    ProfileLayout,
    history_table,
    memberships_table,
    profile_layout,
    profiles_table,
    segment_row,
    segment_state_row,
    segment_tag_changes,
    segment_tag_ids,
    segment_tombstone,
    tag_row,
)
from .stats import ExtractionStats

__all__ = ["klaviyo_source", "ExtractionStats"]

MEMBERSHIP_TABLES = ("profiles", MEMBERSHIPS_TABLE, HISTORY_TABLE)
"""Tables fed by the membership walk; each keeps its own cursors."""


class _JsonHintNotice(logging.Filter):
    """Drops dlt's per-batch warning that the `json` hint overrides an arrow string column.

    `properties`, `subscriptions` and `predictive_analytics` travel as JSON text in arrow and
    are declared `json` on purpose; the warning would repeat on every run of `profiles`.
    """

    def filter(self, record: logging.LogRecord) -> bool:
        return not record.getMessage().startswith(
            "In resource: profiles, when merging arrow schema with dlt schema"
        )


_JSON_HINT_NOTICE = _JsonHintNotice()


@dlt.source(name="klaviyo", max_table_nesting=0)
def klaviyo_source(
    api_key: str = dlt.secrets.value,
    base_url: str = settings.DEFAULT_BASE_URL,
    revision: str = settings.DEFAULT_REVISION,
    segment_ids: list[str] | None = None,
    start_date: str | None = None,
    profile_fields: list[str] | None = None,
    additional_fields: list[str] | None = None,
    max_workers: int = 4,
    request_timeout: float = 30.0,
    max_retries: int = 8,
    reconcile_every_hours: float = settings.RECONCILE_EVERY_HOURS,
    reconcile_segments: list[str] | None = None,
    reconcile_inactive: bool = False,
    rewalk_segments: list[str] | None = None,
    stats: ExtractionStats | None = None,
) -> Sequence[DltResource]:
    """Klaviyo segments, their tags, the profiles in each segment, and membership history.

    Args:
        api_key: Private API key with segments:read, profiles:read and tags:read.
        base_url: Scheme and host of the API.
        revision: API revision header, `YYYY-MM-DD[.pre]`; 2024-06-15 and later work.
        segment_ids: Segments to load; None loads every segment.
        start_date: ISO datetime; a segment's first load starts at members who joined then.
        profile_fields: Profile attributes to request (`fields[profile]`); None means all
            default attributes. `joined_group_at` is always added.
        additional_fields: Any of `subscriptions`, `predictive_analytics`.
        max_workers: Segments walked at the same time.
        request_timeout: Seconds to wait for a connection or a read.
        max_retries: Retries per request on 429, 5xx and broken connections.
        reconcile_every_hours: Reconcile a segment (find the profiles that left it) when its
            last reconciliation is this many hours old; 0 reconciles on every run.
        reconcile_segments: Segment ids to reconcile on this run whatever their age
            (inactive ones included), or `["all"]` for every active segment.
        reconcile_inactive: Reconcile inactive segments too (Klaviyo does not update them).
        rewalk_segments: Segment ids to walk from their first member on this run, whatever
            their cursors, or `["all"]` for every segment in scope. Nothing is dropped: the
            walk reconciles them against what the tables hold (a scoped full refresh).
        stats: Counters to poll for progress from another thread.

    Returns:
        The resources `segments`, `tags`, `segment_tags`, `profiles`, `segment_memberships`,
        `segment_membership_history`.

    Raises:
        KlaviyoConfigError: An argument is invalid (raised when the source is created).
    """
    options = validate_options(
        api_key,
        base_url,
        revision,
        segment_ids,
        start_date,
        profile_fields,
        additional_fields,
        max_workers,
        request_timeout,
        max_retries,
        reconcile_every_hours,
        reconcile_segments,
        reconcile_inactive,
        rewalk_segments,
    )
    counters = stats if stats is not None else ExtractionStats()
    logging.getLogger("dlt").addFilter(_JSON_HINT_NOTICE)

    def make_client(stop: threading.Event | None = None) -> KlaviyoClient:
        return KlaviyoClient(
            options.api_key,
            options.base_url,
            options.revision,
            options.request_timeout,
            options.max_retries,
            counters,
            stop,
        )

    catalog = SegmentCatalog(make_client, options.segment_ids, _known_segment_ids)
    layout = profile_layout(options.profile_fields, options.additional_fields)
    members = dlt.resource(segment_member_batches, name="segment_members", selected=False)(
        catalog, make_client, options, counters
    )
    return (
        dlt.transformer(
            segments,
            data_from=members,
            name="segments",
            primary_key="id",
            write_disposition="merge",
            columns=SEGMENT_COLUMNS,
        )(catalog, counters),
        dlt.resource(
            tags, name="tags", primary_key="id", write_disposition="merge", columns=TAG_COLUMNS
        )(catalog, counters),
        dlt.resource(
            segment_tags,
            name="segment_tags",
            primary_key=("segment_id", "tag_id"),
            write_disposition="merge",
            columns=SEGMENT_TAG_COLUMNS,
        )(catalog, counters),
        dlt.transformer(
            profiles,
            data_from=members,
            name="profiles",
            primary_key="id",
            write_disposition="merge",
            columns=layout.column_hints(),
        )(layout, counters),
        dlt.transformer(
            segment_memberships,
            data_from=members,
            name=MEMBERSHIPS_TABLE,
            primary_key=("segment_id", "profile_id"),
            write_disposition="merge",
            columns=MEMBERSHIP_COLUMNS,
        )(counters),
        dlt.transformer(
            segment_membership_history,
            data_from=members,
            name=HISTORY_TABLE,
            primary_key=("segment_id", "profile_id", settings.JOINED_GROUP_AT),
            write_disposition="merge",
            columns=HISTORY_COLUMNS,
        )(counters),
    )


def segments(
    batch: MembershipBatch, catalog: SegmentCatalog, stats: ExtractionStats
) -> Iterator[TDataItems]:
    """Every segment in scope as listed by `/api/segments/`, and tombstones of deleted ones.

    Fed by the membership walk and emitted after its last batch, so a segment that answers
    404 while it is walked is loaded once, with `deleted_at` set. The last row of each
    segment is kept in resource state: a tombstone repeats it (a merge replaces whole rows).
    """
    if not batch.final:
        return
    listed = catalog.get()
    last_rows: dict[str, dict[str, Any]] = dlt.current.resource_state("segments").setdefault(
        "rows", {}
    )
    vanished = set(batch.vanished)
    rows = []
    for segment in listed.segments:
        row = segment_row(segment)
        if row["id"] in vanished:
            row["deleted_at"] = batch.detected_at
        rows.append(row)
    for segment_id in listed.gone:
        last = last_rows.get(segment_id)
        if last is not None and last.get("deleted_at") is None:
            rows.append(segment_tombstone(last, batch.detected_at))
            stats.segment_deleted(segment_id)
    stats.add_rows("segments", len(rows))
    if rows:
        yield rows
    for row in rows:
        last_rows[row["id"]] = segment_state_row(row)


def tags(catalog: SegmentCatalog, stats: ExtractionStats) -> Iterator[TDataItems]:
    """Tags linked to the segments in scope (from `include=tags`, no per-segment calls)."""
    rows = [tag_row(tag) for tag in catalog.get().tags.values()]
    stats.add_rows("tags", len(rows))
    if rows:
        yield rows


def segment_tags(catalog: SegmentCatalog, stats: ExtractionStats) -> Iterator[TDataItems]:
    """Current segment-tag links, plus hard-delete rows for links that disappeared.

    The links emitted last time are kept per segment in resource state. A deleted segment
    loses its links too: any that vanished in an unscoped run, requested ones in a scoped run.
    """
    listed = catalog.get()
    known: dict[str, list[str]] = dlt.current.resource_state("segment_tags").setdefault("links", {})
    linkage = {segment["id"]: segment_tag_ids(segment) for segment in listed.segments}
    current = {segment_id: ids for segment_id, ids in linkage.items() if ids is not None}
    if listed.scoped:
        gone = [s for s in listed.gone if s in known]
    else:
        gone = [s for s in known if s not in linkage]
    rows = segment_tag_changes(known, current, gone)
    stats.add_rows("segment_tags", len(rows))
    if rows:
        yield rows
    for segment_id, tag_ids in current.items():
        known[segment_id] = sorted(set(tag_ids))
    for segment_id in gone:
        known.pop(segment_id, None)


def segment_member_batches(
    catalog: SegmentCatalog,
    make_client: ClientFactory,
    options: SourceOptions,
    stats: ExtractionStats,
) -> Iterator[MembershipBatch]:
    """Walks the profiles of every segment in scope; feeds the membership tables and `segments`.

    A segment starts at the oldest cursor among the tables being loaded, so loading only one
    of the tables never lets another miss members. Segments due are reconciled; segments
    gone from Klaviyo have their open stays closed.
    """
    detected_at = filters.utc_now()
    tables = _selected_membership_tables()
    kept = [table for table in tables if table in RECONCILED_TABLES]
    # A leave is one fact in both tables: recorded only when both are loaded together.
    reconciling = kept if set(kept) == set(RECONCILED_TABLES) else []
    if options.reconcile_segments and not reconciling:
        raise KlaviyoConfigError(
            "reconciling records leaves in both segment_memberships and "
            "segment_membership_history; load both of them to reconcile"
        )
    if reconciling:
        ensure_merge(reconciling)
    listed = catalog.get()
    if not tables:
        # Only `segments` is loaded: nothing to walk.
        yield MembershipBatch(detected_at, final=True)
        return
    policy = None
    if reconciling:
        policy = ReconcilePolicy.from_options(
            options.reconcile_every_hours, options.reconcile_segments, options.reconcile_inactive
        )
    walks = plan_walks(
        listed.segments,
        [_table_state(table, "cursors") for table in tables],
        options.start_date,
        [_table_state(table, "reconciled") for table in reconciling],
        policy,
        detected_at,
        [_table_state(table, "processing") for table in tables],
        options.rewalk_segments,
    )
    retire = _segments_to_retire(listed.gone, tables, bool(reconciling) or not kept)
    known = KnownMemberships.of_running_pipeline(kept) if kept else None
    stats.add(segments_total=len(walks))
    params = profile_params(options.profile_fields, options.additional_fields)
    yield from walk_memberships(
        make_client,
        walks,
        params,
        options.max_workers,
        stats,
        known,
        retire,
        detected_at,
        reconciling=bool(reconciling),
    )


def _segments_to_retire(gone: Sequence[str], tables: Sequence[str], closes: bool) -> list[str]:
    """Deleted segments whose rows this run retires.

    Retiring closes every open stay, so a run that loads only one of the two membership
    tables leaves them to a run that loads both (`closes` is False).
    """
    if not closes:
        return []
    tracked = {s for table in tables for s in _tracked_segments(table)}
    return [segment_id for segment_id in gone if segment_id in tracked]


def profiles(
    batch: MembershipBatch, layout: ProfileLayout, stats: ExtractionStats
) -> Iterator[pa.Table]:
    """One row per profile, however many segments it is in."""
    if batch.members:
        table = profiles_table((member[1] for member in batch.members), layout)
        stats.add_rows("profiles", table.num_rows)
        yield table
    _record("profiles", batch)


def segment_memberships(batch: MembershipBatch, stats: ExtractionStats) -> Iterator[pa.Table]:
    """One row per (segment, profile): the most recent join, and whether it is still a member."""
    table = memberships_table(batch.members, batch.closures)
    if table.num_rows:
        stats.add_rows(MEMBERSHIPS_TABLE, table.num_rows)
        yield table
    _record(MEMBERSHIPS_TABLE, batch)


def segment_membership_history(
    batch: MembershipBatch, stats: ExtractionStats
) -> Iterator[pa.Table]:
    """One row per stay of a profile in a segment: from `joined_group_at` to `left_at`."""
    table = history_table(batch.members, batch.closures)
    if table.num_rows:
        stats.add_rows(HISTORY_TABLE, table.num_rows)
        yield table
    _record(HISTORY_TABLE, batch)


def _selected_membership_tables() -> list[str]:
    try:
        selected = dlt.current.source().resources.selected
    except CurrentSourceNotAvailable:
        return list(MEMBERSHIP_TABLES)
    return [table for table in MEMBERSHIP_TABLES if table in selected]


def _table_state(table: str, key: str) -> dict[str, Any]:
    """A copy of the `{segment_id: ...}` map `key` kept in the state of `table`."""
    resources = dlt.current.source_state().get("resources", {})
    return dict(resources.get(table, {}).get(key, {}))


def _tracked_segments(table: str) -> set[str]:
    """Segments whose rows `table` holds (they have a cursor or a reconciliation entry)."""
    return set(_table_state(table, "cursors")) | set(_table_state(table, "reconciled"))


def _known_segment_ids() -> set[str]:
    """Every segment an earlier run loaded into any table (read from the pipeline state)."""
    resources = dlt.current.source_state().get("resources", {})
    known = set(resources.get("segments", {}).get("rows", {}))
    known |= set(resources.get("segment_tags", {}).get("links", {}))
    for table in MEMBERSHIP_TABLES:
        known |= _tracked_segments(table)
    return known


def _record(table: str, batch: MembershipBatch) -> None:
    """Moves the state of `table` past the batch; runs after its rows were handed to dlt."""
    state = dlt.current.resource_state(table)
    cursors: dict[str, str] = state.setdefault("cursors", {})
    _advance(cursors, batch.finished)
    _record_processing(state.setdefault("processing", {}), batch)
    if table in RECONCILED_TABLES:
        reconciled: dict[str, str | None] = state.setdefault("reconciled", {})
        for segment_id in batch.finished:
            reconciled.setdefault(segment_id, None)
        stamp = format_state_datetime(batch.detected_at)
        for segment_id in batch.reconciled:
            reconciled[segment_id] = stamp
        for segment_id in batch.retired:
            reconciled.pop(segment_id, None)
    for segment_id in batch.retired:
        cursors.pop(segment_id, None)


def _record_processing(processing: dict[str, str], batch: MembershipBatch) -> None:
    """Remembers the segments Klaviyo is computing until a walk after it is done catches up.

    `plan_walks` makes every walk of a segment that stopped computing a catch-up.
    """
    stamp = format_state_datetime(batch.detected_at)
    for segment_id in batch.finished:
        if segment_id in batch.processing:
            processing.setdefault(segment_id, stamp)
        else:
            processing.pop(segment_id, None)
    for segment_id in batch.retired:
        processing.pop(segment_id, None)


def _advance(cursors: dict[str, str], finished: dict[str, str | None]) -> None:
    for segment_id, newest in finished.items():
        new = parse_datetime(newest)
        old = parse_datetime(cursors.get(segment_id))
        if new is not None and (old is None or new > old):
            cursors[segment_id] = format_state_datetime(new)
