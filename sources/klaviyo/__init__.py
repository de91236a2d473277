"""A dlt source for Klaviyo segments, the profiles in each segment, and segment tags.

Tables: `segments`, `tags`, `segment_tags`, `profiles`, `segment_memberships` (resource
names equal table names). The segment list is read once per run; the profiles of every
segment are read incrementally from that segment's own `joined_group_at` cursor.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Iterator, Sequence

import dlt
import pyarrow as pa
from dlt.common.typing import TDataItems
from dlt.extract.exceptions import CurrentSourceNotAvailable
from dlt.sources import DltResource

from . import settings
from .catalog import SegmentCatalog
from .client import KlaviyoClient
from .filters import format_state_datetime, parse_datetime
from .memberships import (
    ClientFactory,
    MembershipBatch,
    plan_walks,
    profile_params,
    walk_memberships,
)
from .options import SourceOptions, validate_options
from .rows import (
    MEMBERSHIP_COLUMNS,
    SEGMENT_COLUMNS,
    SEGMENT_TAG_COLUMNS,
    TAG_COLUMNS,
    ProfileLayout,
    memberships_table,
    profile_layout,
    profiles_table,
    segment_row,
    segment_tag_changes,
    segment_tag_ids,
    tag_row,
)
from .stats import ExtractionStats

__all__ = ["klaviyo_source", "ExtractionStats"]

MEMBERSHIP_TABLES = ("profiles", "segment_memberships")


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
    stats: ExtractionStats | None = None,
) -> Sequence[DltResource]:
    """Klaviyo segments, their tags, and the profiles in each segment.

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
        stats: Counters to poll for progress from another thread.

    Returns:
        The resources `segments`, `tags`, `segment_tags`, `profiles`, `segment_memberships`.

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

    catalog = SegmentCatalog(make_client, options.segment_ids)
    layout = profile_layout(options.profile_fields, options.additional_fields)
    members = dlt.resource(segment_member_batches, name="segment_members", selected=False)(
        catalog, make_client, options, counters
    )
    return (
        dlt.resource(
            segments,
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
            name="segment_memberships",
            primary_key=("segment_id", "profile_id"),
            write_disposition="merge",
            columns=MEMBERSHIP_COLUMNS,
        )(counters),
    )


def segments(catalog: SegmentCatalog, stats: ExtractionStats) -> Iterator[TDataItems]:
    """Every segment in scope, as listed by `/api/segments/`."""
    rows = [segment_row(segment) for segment in catalog.get().segments]
    stats.add_rows("segments", len(rows))
    if rows:
        yield rows


def tags(catalog: SegmentCatalog, stats: ExtractionStats) -> Iterator[TDataItems]:
    """Tags linked to the segments in scope (from `include=tags`, no per-segment calls)."""
    rows = [tag_row(tag) for tag in catalog.get().tags.values()]
    stats.add_rows("tags", len(rows))
    if rows:
        yield rows


def segment_tags(catalog: SegmentCatalog, stats: ExtractionStats) -> Iterator[TDataItems]:
    """Current segment-tag links, plus hard-delete rows for links that disappeared.

    The links emitted last time are kept per segment in resource state. A segment that
    vanished from an unscoped run loses its links too; a scoped run only touches its segments.
    """
    listed = catalog.get()
    known: dict[str, list[str]] = dlt.current.resource_state("segment_tags").setdefault("links", {})
    linkage = {segment["id"]: segment_tag_ids(segment) for segment in listed.segments}
    current = {segment_id: ids for segment_id, ids in linkage.items() if ids is not None}
    gone = [] if listed.scoped else [s for s in known if s not in linkage]
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
    """Walks the profiles of every segment in scope; feeds `profiles` and `segment_memberships`.

    A segment starts at the oldest cursor among the tables being loaded, so loading only one
    of the two tables never lets the other miss members.
    """
    cursors = [_cursors(table, create=False) for table in _selected_membership_tables()]
    walks = plan_walks(catalog.get().segments, cursors, options.start_date)
    stats.add(segments_total=len(walks))
    params = profile_params(options.profile_fields, options.additional_fields)
    yield from walk_memberships(make_client, walks, params, options.max_workers, stats)


def profiles(
    batch: MembershipBatch, layout: ProfileLayout, stats: ExtractionStats
) -> Iterator[pa.Table]:
    """One row per profile, however many segments it is in."""
    if batch.members:
        table = profiles_table((profile for _, profile in batch.members), layout)
        stats.add_rows("profiles", table.num_rows)
        yield table
    _advance(_cursors("profiles"), batch.finished)


def segment_memberships(batch: MembershipBatch, stats: ExtractionStats) -> Iterator[pa.Table]:
    """One row per (segment, profile) with the profile's most recent `joined_group_at`."""
    if batch.members:
        table = memberships_table(batch.members)
        stats.add_rows("segment_memberships", table.num_rows)
        yield table
    _advance(_cursors("segment_memberships"), batch.finished)


def _selected_membership_tables() -> list[str]:
    try:
        selected = dlt.current.source().resources.selected
    except CurrentSourceNotAvailable:
        return list(MEMBERSHIP_TABLES)
    return [table for table in MEMBERSHIP_TABLES if table in selected] or list(MEMBERSHIP_TABLES)


def _cursors(table: str, create: bool = True) -> dict[str, str]:
    """The `{segment_id: last joined_group_at}` map kept in the state of `table`."""
    if create:
        state: dict[str, dict[str, str]] = dlt.current.resource_state(table)
        return state.setdefault("cursors", {})
    resources = dlt.current.source_state().get("resources", {})
    return dict(resources.get(table, {}).get("cursors", {}))


def _advance(cursors: dict[str, str], finished: dict[str, str | None]) -> None:
    # Runs after the batch's rows were handed to dlt, so a cursor never passes unloaded rows.
    for segment_id, newest in finished.items():
        new = parse_datetime(newest)
        old = parse_datetime(cursors.get(segment_id))
        if new is not None and (old is None or new > old):
            cursors[segment_id] = format_state_datetime(new)
