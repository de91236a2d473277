"""A dlt source for Klaviyo segments, the profiles in each segment, and segment tags.

Tables: `segments`, `tags`, `segment_tags`, `profiles`, `segment_memberships`,
`segment_membership_history` (resource names equal table names). The segment list is read
once per run; the profiles of every segment are read incrementally from that segment's own
`joined_group_at` cursor, and segments due for reconciliation are compared with what was
loaded before, so that leaves and deleted segments show in the tables.

Where things live: `resources` (what each table yields), `state` (the pipeline-state layout),
`options` (the arguments, validated), `api` (requests, per revision, and the HTTP client),
`walk` (the membership walk), `rows` (JSON:API to table rows), `settings` (constants).
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from typing import Any

import dlt
import pyarrow as pa
from dlt.common.schema.typing import TTableSchemaColumns
from dlt.sources import DltResource

from . import settings, state
from .options import ACCOUNT_ID_COLUMN, validate_options
from .resources import (
    JSON_HINT_NOTICE,
    client_factory,
    profiles,
    segment_member_batches,
    segment_membership_history,
    segment_memberships,
    segment_tags,
    segments,
    tags,
)
from .rows.buffer import TableBuffer
from .rows.emitted import EmittedProfiles
from .rows.memberships import HISTORY_COLUMNS, MEMBERSHIP_COLUMNS
from .rows.profiles import profile_layout
from .rows.segments import SEGMENT_COLUMNS, SEGMENT_TAG_COLUMNS, TAG_COLUMNS
from .stats import ExtractionStats
from .walk.catalog import SegmentCatalog

__all__ = ["klaviyo_source", "ExtractionStats", "EmittedProfiles"]


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
    refresh_profiles_every_hours: float | str = settings.REFRESH_PROFILES_EVERY_HOURS,
    refresh_profiles_by: str = settings.REFRESH_BY_SEGMENTS,
    checkpoint_pages: int | None = None,
    checkpoint_minutes: float | None = None,
    account_id: str | None = None,
    stats: ExtractionStats | None = None,
    emitted_profiles: EmittedProfiles | None = None,
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
        refresh_profiles_every_hours: Read every member of a segment again, with its
            attributes, when its last such walk is this many hours old, so that `profiles`
            stays current; 0 on every run, `"off"` keeps the attributes of the last join.
            A refresh reconciles the segment too, and a due reconciliation refreshes where
            that costs no extra request (from revision 2024-10-15).
        refresh_profiles_by: `"segments"` walks each segment's members again (above);
            `"updated"` reads the account's profiles changed since the last read
            (`/api/profiles/` by `updated`, as often as the interval says) and loads those
            of current members, refreshing by segment only segments never refreshed.
        checkpoint_pages: End the run's walk after about this many profile pages, so that
            what was read loads with the cursors it justifies; the next run goes on from
            there (`stats.complete` is False). None: walk every segment to its end.
        checkpoint_minutes: The same after this many minutes, whichever comes first.
        account_id: Id of the Klaviyo account, for datasets that several accounts share:
            every table gets a constant `account_id` column, first in its primary key, and
            reconciliation reads back only this account's rows. None adds nothing.
        stats: Counters to poll for progress from another thread.
        emitted_profiles: The profiles a run of several extractions (one per checkpoint)
            has emitted so far, `EmittedProfiles(across_walks=True)` shared by all of them:
            a profile an earlier checkpoint loaded is not emitted again unless it changed.

    Returns:
        The resources `segments`, `tags`, `segment_tags`, `profiles`, `segment_memberships`,
        `segment_membership_history`.

    Raises:
        KlaviyoConfigError: An argument is invalid (raised when the source is created).
    """
    options = validate_options(
        api_key=api_key,
        base_url=base_url,
        revision=revision,
        segment_ids=segment_ids,
        start_date=start_date,
        profile_fields=profile_fields,
        additional_fields=additional_fields,
        max_workers=max_workers,
        request_timeout=request_timeout,
        max_retries=max_retries,
        reconcile_every_hours=reconcile_every_hours,
        reconcile_segments=reconcile_segments,
        reconcile_inactive=reconcile_inactive,
        rewalk_segments=rewalk_segments,
        refresh_profiles_every_hours=refresh_profiles_every_hours,
        refresh_profiles_by=refresh_profiles_by,
        account_id=account_id,
        checkpoint_pages=checkpoint_pages,
        checkpoint_minutes=checkpoint_minutes,
    )
    counters = stats if stats is not None else ExtractionStats()
    logging.getLogger("dlt").addFilter(JSON_HINT_NOTICE)
    make_client = client_factory(options, counters)
    catalog = SegmentCatalog(make_client, options.segment_ids, state.known_segment_ids)
    layout = profile_layout(options.profile_fields, options.additional_fields, emitted_profiles)
    members = dlt.resource(segment_member_batches, name="segment_members", selected=False)(
        catalog, make_client, options, counters
    )
    account = AccountScope(options.account_id)
    resources = (
        dlt.transformer(
            segments,
            data_from=members,
            name=settings.SEGMENTS_TABLE,
            primary_key=account.key("id"),
            write_disposition="merge",
            columns=account.columns(SEGMENT_COLUMNS),
        )(catalog, counters),
        dlt.resource(
            tags,
            name=settings.TAGS_TABLE,
            primary_key=account.key("id"),
            write_disposition="merge",
            columns=account.columns(TAG_COLUMNS),
        )(catalog, counters),
        dlt.resource(
            segment_tags,
            name=settings.SEGMENT_TAGS_TABLE,
            primary_key=account.key("segment_id", "tag_id"),
            write_disposition="merge",
            columns=account.columns(SEGMENT_TAG_COLUMNS),
        )(catalog, counters),
        dlt.transformer(
            profiles,
            data_from=members,
            name=settings.PROFILES_TABLE,
            primary_key=account.key("id"),
            write_disposition="merge",
            columns=account.columns(layout.column_hints()),
        )(layout, counters, TableBuffer()),
        dlt.transformer(
            segment_memberships,
            data_from=members,
            name=settings.MEMBERSHIPS_TABLE,
            primary_key=account.key("segment_id", "profile_id"),
            write_disposition="merge",
            columns=account.columns(MEMBERSHIP_COLUMNS),
        )(counters, TableBuffer()),
        dlt.transformer(
            segment_membership_history,
            data_from=members,
            name=settings.HISTORY_TABLE,
            primary_key=account.key("segment_id", "profile_id", settings.JOINED_GROUP_AT),
            write_disposition="merge",
            columns=account.columns(HISTORY_COLUMNS),
        )(counters, TableBuffer()),
    )
    return account.tagged(resources)


class AccountScope:
    """Declarations of a dataset several accounts share: `account_id` in every row and key.

    Args:
        account_id: The account's id; None declares every table as it is.
    """

    def __init__(self, account_id: str | None) -> None:
        self.account_id = account_id

    def key(self, *columns: str) -> tuple[str, ...]:
        """A primary key, with `account_id` first when the account is set."""
        return (ACCOUNT_ID_COLUMN, *columns) if self.account_id else columns

    def columns(self, hints: TTableSchemaColumns) -> TTableSchemaColumns:
        """Column hints, with `account_id` first when the account is set."""
        if not self.account_id:
            return hints
        return {ACCOUNT_ID_COLUMN: {"data_type": "text", "nullable": False}, **hints}

    def tagged(self, resources: Sequence[DltResource]) -> Sequence[DltResource]:
        """The resources, each adding the constant `account_id` to what it yields."""
        if self.account_id:
            for resource in resources:
                resource.add_map(self.add_column)
        return resources

    def add_column(self, item: Any) -> Any:
        """`account_id` added to one row (a dict) or to every row of an arrow table."""
        if isinstance(item, pa.Table):
            value = pa.repeat(pa.scalar(self.account_id, pa.string()), item.num_rows)
            field = pa.field(ACCOUNT_ID_COLUMN, pa.string(), nullable=False)
            return item.add_column(0, field, value)
        return {ACCOUNT_ID_COLUMN: self.account_id, **item}
