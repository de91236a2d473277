"""What each resource of the source yields; `__init__` declares them (names, keys, hints).

The segment list is read once per run (`walk.catalog`). `segment_member_batches` walks the
profiles of every segment and feeds `profiles`, both membership tables and `segments`,
each of which records its own state (`state`) only after its rows were handed to dlt.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Iterator
from datetime import datetime

import dlt
import pyarrow as pa
from dlt.common.typing import TDataItems
from dlt.extract.exceptions import CurrentSourceNotAvailable

from . import dates, settings, state
from .api import endpoints
from .api.client import ClientFactory, KlaviyoClient
from .exceptions import KlaviyoConfigError
from .options import SourceOptions
from .rows.buffer import TableBuffer
from .rows.memberships import history_table, memberships_table
from .rows.profiles import ProfileLayout, unique_profiles_table
from .rows.segments import (
    segment_row,
    segment_state_row,
    segment_tag_changes,
    segment_tag_ids,
    segment_tombstone,
    tag_row,
)
from .stats import ExtractionStats
from .walk.batches import Checkpoint, MembershipBatch, walk_memberships
from .walk.catalog import SegmentCatalog
from .walk.changed import plan_changed_read, read_changed_profiles
from .walk.destination import KnownMemberships, ensure_merge
from .walk.plan import plan_walks, reconciled_tables, segments_to_retire
from .walk.reconcile import ReconcilePolicy
from .walk.refresh import RefreshPolicy


def segments(
    batch: MembershipBatch, catalog: SegmentCatalog, stats: ExtractionStats
) -> Iterator[TDataItems]:
    """Every segment in scope as listed by `/api/segments/`, and tombstones of deleted ones.

    Fed by the membership walk and emitted after its last batch, so a segment that answers
    404 while it is walked is loaded once, with `deleted_at` set. The last row of each
    segment is kept in the state: a tombstone repeats it (a merge replaces whole rows).
    """
    if not batch.final:
        return
    listed = catalog.get()
    last_rows = state.last_segment_rows()
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
    stats.add_rows(settings.SEGMENTS_TABLE, len(rows))
    if rows:
        yield rows
    state.remember_segment_rows(segment_state_row(row) for row in rows)


def tags(catalog: SegmentCatalog, stats: ExtractionStats) -> Iterator[TDataItems]:
    """Tags linked to the segments in scope (from `include=tags`, no per-segment calls)."""
    rows = [tag_row(tag) for tag in catalog.get().tags.values()]
    stats.add_rows(settings.TAGS_TABLE, len(rows))
    if rows:
        yield rows


def segment_tags(catalog: SegmentCatalog, stats: ExtractionStats) -> Iterator[TDataItems]:
    """Current segment-tag links, plus hard-delete rows for links that disappeared.

    The links emitted last time are kept per segment in the state. A deleted segment loses
    its links too: any that vanished in an unscoped run, requested ones in a scoped run.
    """
    listed = catalog.get()
    known = state.segment_tag_links()
    linkage = {segment["id"]: segment_tag_ids(segment) for segment in listed.segments}
    current = {segment_id: ids for segment_id, ids in linkage.items() if ids is not None}
    if listed.scoped:
        gone = [s for s in listed.gone if s in known]
    else:
        gone = [s for s in known if s not in linkage]
    rows = segment_tag_changes(known, current, gone)
    stats.add_rows(settings.SEGMENT_TAGS_TABLE, len(rows))
    if rows:
        yield rows
    state.remember_segment_tag_links(current, gone)


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
    detected_at = dates.utc_now()
    tables = _selected_membership_tables()
    kept = [table for table in tables if table in settings.RECONCILED_TABLES]
    reconciling = reconciled_tables(tables)
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
        [state.cursors(table) for table in tables],
        options.start_date,
        [state.reconciled(table) for table in reconciling],
        policy,
        detected_at,
        [state.processing(table) for table in tables],
        options.rewalk_segments,
        [state.backfills(table) for table in tables],
        [state.walked(table) for table in tables],
        [state.cut(table) for table in tables],
        [state.refreshed(settings.PROFILES_TABLE)],
        _refresh_policy(options, tables),
    )
    closes = bool(reconciling) or not kept
    retire = segments_to_retire(listed.gone, state.tracked_segments(tables), closes)
    known = KnownMemberships.of_running_pipeline(kept, options.account_id) if kept else None
    stats.add(segments_total=len(walks))
    params = endpoints.profile_params(options.profile_fields, options.additional_fields)
    yield from _changed_profile_batches(options, tables, make_client, detected_at, stats)
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
        checkpoint=_checkpoint(options),
    )


def _refresh_policy(options: SourceOptions, tables: list[str]) -> RefreshPolicy | None:
    """When members are read again for their attributes: only a run that loads `profiles`."""
    every = options.refresh_profiles_every_hours
    if every is None or settings.PROFILES_TABLE not in tables:
        return None
    if options.refresh_profiles_by == settings.REFRESH_BY_UPDATED:
        return RefreshPolicy.first_only()
    return RefreshPolicy.for_revision(every, options.revision)


def _changed_profile_batches(
    options: SourceOptions,
    tables: list[str],
    make_client: ClientFactory,
    detected_at: datetime,
    stats: ExtractionStats,
) -> Iterator[MembershipBatch]:
    """With `refresh_profiles_by="updated"`, when due: the changed profiles of members."""
    every = options.refresh_profiles_every_hours
    by_updated = options.refresh_profiles_by == settings.REFRESH_BY_UPDATED
    if every is None or not by_updated or settings.PROFILES_TABLE not in tables:
        return
    cursor = state.changed_profiles_cursor()
    refreshed = state.refreshed(settings.PROFILES_TABLE)
    read = plan_changed_read(cursor, refreshed, every, detected_at)
    if read is None:
        return
    start = dates.format_state_datetime(read.since or detected_at)
    if read.since is None:
        # no row of an earlier walk to bring up to date: changes count from now
        yield MembershipBatch(detected_at, changed_read=start)
        return
    members = KnownMemberships.of_running_pipeline([settings.MEMBERSHIPS_TABLE], options.account_id)
    stop = threading.Event()
    client = make_client(stop)
    request = endpoints.changed_profiles(
        options.revision, options.profile_fields, options.additional_fields, read.since
    )
    try:
        for profiles, newest in read_changed_profiles(client, request, members, stop):
            stats.add(profiles_changed=len(profiles))
            yield MembershipBatch(
                detected_at, profiles_only=profiles, changed_read=start, changed_until=newest
            )
    finally:
        stop.set()
        client.close()
        members.close()


def _checkpoint(options: SourceOptions) -> Checkpoint:
    minutes = options.checkpoint_minutes
    return Checkpoint(options.checkpoint_pages, minutes * 60 if minutes is not None else None)


def profiles(
    batch: MembershipBatch, layout: ProfileLayout, stats: ExtractionStats, buffer: TableBuffer
) -> Iterator[pa.Table]:
    """One row per profile, however many segments it is in: a walk emits each profile once."""
    copies, keys = batch.profile_copies()
    fresh = layout.emitted.fresh(copies, batch.detected_at, keys)
    table = unique_profiles_table(fresh, layout) if fresh else None
    if table is not None:
        stats.add_rows(settings.PROFILES_TABLE, table.num_rows)
    yield from buffer.add(table, last=batch.final)
    if batch.final:
        layout.emitted.walk_ended()
    if batch.changed_read is not None:
        state.remember_changed_profiles(batch.changed_until, batch.changed_read, batch.detected_at)
    state.record_walks(settings.PROFILES_TABLE, batch)


def segment_memberships(
    batch: MembershipBatch, stats: ExtractionStats, buffer: TableBuffer
) -> Iterator[pa.Table]:
    """One row per (segment, profile): the most recent join, and whether it is still a member."""
    table = memberships_table(batch.members, batch.closures, batch)
    if table.num_rows:
        stats.add_rows(settings.MEMBERSHIPS_TABLE, table.num_rows)
    yield from buffer.add(table, last=batch.final)
    state.record_walks(settings.MEMBERSHIPS_TABLE, batch)


def segment_membership_history(
    batch: MembershipBatch, stats: ExtractionStats, buffer: TableBuffer
) -> Iterator[pa.Table]:
    """One row per stay of a profile in a segment: from `joined_group_at` to `left_at`."""
    table = history_table(batch.members, batch.closures, batch)
    if table.num_rows:
        stats.add_rows(settings.HISTORY_TABLE, table.num_rows)
    yield from buffer.add(table, last=batch.final)
    state.record_walks(settings.HISTORY_TABLE, batch)


def client_factory(options: SourceOptions, stats: ExtractionStats) -> ClientFactory:
    """Makes the clients of a run from the options; they share `stats`."""

    def make_client(stop: threading.Event | None = None) -> KlaviyoClient:
        return KlaviyoClient(
            options.api_key,
            options.base_url,
            options.revision,
            options.request_timeout,
            options.max_retries,
            stats,
            stop,
        )

    return make_client


class JsonHintNotice(logging.Filter):
    """Drops dlt's per-batch warning that the `json` hint overrides an arrow string column.

    `properties`, `subscriptions` and `predictive_analytics` travel as JSON text in arrow and
    are declared `json` on purpose; the warning would repeat on every run of `profiles`.
    """

    def filter(self, record: logging.LogRecord) -> bool:
        return not record.getMessage().startswith(
            "In resource: profiles, when merging arrow schema with dlt schema"
        )


JSON_HINT_NOTICE = JsonHintNotice()
"""One filter for the process: adding it again to dlt's logger is a no-op."""


def _selected_membership_tables() -> list[str]:
    """The membership tables this run loads (all of them outside of a pipeline)."""
    try:
        selected = dlt.current.source().resources.selected
    except CurrentSourceNotAvailable:
        return list(settings.MEMBERSHIP_TABLES)
    return [table for table in settings.MEMBERSHIP_TABLES if table in selected]
