"""The membership walk: segment profiles since each segment's cursor, several segments at once.

Worker threads (`walker.SegmentWorker`) page through the segments and put events on a
bounded queue; the generator thread (dlt's) takes them off in batches. Only the generator
thread touches dlt state, and a segment is reported finished only after its last page and
its closed stays were queued, so cursors and reconciliation times built from a batch never
run ahead of the rows handed to dlt.
"""

from __future__ import annotations

import contextlib
import gc
import queue
import threading
from collections.abc import (
    Callable,
    Collection,
    Generator,
    Iterable,
    Iterator,
    Mapping,
    Sequence,
)
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import datetime

from . import settings
from .client import KlaviyoClient
from .filters import parse_datetime, utc_now
from .known import KnownMemberships
from .reconcile import Closure, ReconcilePolicy
from .rows import Member, Resource
from .stats import ExtractionStats
from .walker import Closed, Failed, Finished, Page, SegmentWalk, SegmentWorker

ClientFactory = Callable[[threading.Event | None], KlaviyoClient]

__all__ = [
    "ClientFactory",
    "MembershipBatch",
    "SegmentWalk",
    "plan_walks",
    "profile_params",
    "walk_memberships",
]


@dataclass
class MembershipBatch:
    """Rows of several segments handed to the membership tables, and what they complete.

    Attributes:
        members: (segment id, profile resource, its joined_group_at) in the order received.
        closures: (segment id, closed stay): leaves and stays ended by a re-join.
        finished: Segments whose walk ended in this batch, mapped to the cursor they may
            advance to (None: leave the cursor as it is).
        reconciled: Segments reconciled, whose rows are all in this batch or earlier ones.
        processing: Segments of `finished` that Klaviyo was still computing.
        retired: Segments gone from Klaviyo whose open stays are all closed: forget them.
        vanished: On the final batch, every segment that answered 404 during the run.
        detected_at: The run's time, stamped on leaves, tombstones and reconciliations.
        final: The last batch of the run.
    """

    detected_at: datetime
    members: list[Member] = field(default_factory=list)
    closures: list[tuple[str, Closure]] = field(default_factory=list)
    finished: dict[str, str | None] = field(default_factory=dict)
    reconciled: list[str] = field(default_factory=list)
    processing: list[str] = field(default_factory=list)
    retired: list[str] = field(default_factory=list)
    vanished: list[str] = field(default_factory=list)
    final: bool = False

    @property
    def rows(self) -> int:
        return len(self.members) + len(self.closures)


def plan_walks(
    segments: Iterable[Resource],
    cursors: Sequence[Mapping[str, str]],
    start_date: datetime | None,
    reconciled: Sequence[Mapping[str, str | None]] = (),
    policy: ReconcilePolicy | None = None,
    now: datetime | None = None,
    processing: Sequence[Mapping[str, str]] = (),
    rewalk: Collection[str] = (),
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
    """
    now = now or utc_now()
    walks = []
    for segment in segments:
        segment_id = segment["id"]
        rewalked = settings.RECONCILE_ALL in rewalk or segment_id in rewalk
        cursor = None if rewalked else _oldest(table.get(segment_id) for table in cursors)
        computing = bool((segment.get("attributes") or {}).get("is_processing"))
        catch_up = not computing and any(segment_id in table for table in processing)
        since = cursor or start_date
        reconcile = False
        if policy is not None and not computing:
            last = _oldest(table.get(segment_id) for table in reconciled) if reconciled else None
            # A full walk reads every member anyway: it reconciles for free.
            reconcile = cursor is None or catch_up or policy.is_due(segment, last, now)
        elif catch_up:
            since = start_date
        walks.append(
            SegmentWalk(
                segment_id,
                cursor,
                since,
                processing=computing,
                reconcile=reconcile,
                start_date=start_date,
                rewalk=rewalked,
            )
        )
    return walks


def _oldest(values: Iterable[str | None]) -> datetime | None:
    """The oldest of the values, None when there are none or any is missing."""
    parsed = [parse_datetime(value) for value in values]
    if not parsed or None in parsed:
        return None
    return min(v for v in parsed if v is not None)


def profile_params(
    profile_fields: Sequence[str] | None, additional_fields: Sequence[str]
) -> dict[str, str]:
    """Query parameters shared by every segment's first page."""
    params = {
        "page[size]": str(settings.SEGMENT_PROFILES_PAGE_SIZE),
        "sort": settings.JOINED_GROUP_AT,
    }
    if profile_fields is not None:
        # A sparse fieldset hides additional fields unless they are named in it too.
        fields = [*profile_fields, *additional_fields]
        fields = [f for f in dict.fromkeys(fields) if f != settings.JOINED_GROUP_AT]
        params["fields[profile]"] = ",".join([*fields, settings.JOINED_GROUP_AT])
    if additional_fields:
        params["additional-fields[profile]"] = ",".join(additional_fields)
    return params


def walk_memberships(
    make_client: ClientFactory,
    walks: Sequence[SegmentWalk],
    params: Mapping[str, str],
    max_workers: int,
    stats: ExtractionStats,
    known: KnownMemberships | None = None,
    retire: Sequence[str] = (),
    detected_at: datetime | None = None,
    reconciling: bool = True,
) -> Iterator[MembershipBatch]:
    """Walks the segments concurrently and yields batches of about MEMBERSHIP_BATCH_ROWS rows.

    Args:
        make_client: Makes the HTTP client shared by the workers.
        walks: The segments to walk.
        params: Query parameters of every segment's first profile page.
        max_workers: Segments walked at the same time.
        stats: Progress counters.
        known: Reader of the destination's open stays in the membership tables loaded.
        retire: Segments gone from Klaviyo whose open stays are closed (no request).
        detected_at: The run's time; defaults to now.
        reconciling: Both membership tables are loaded: leaves may be recorded.

    Raises:
        KlaviyoError: The first error of any segment's walk; the other walks are stopped.
    """
    stop = threading.Event()
    client = make_client(stop)
    pages: queue.Queue = queue.Queue(maxsize=max_workers * settings.PAGES_IN_FLIGHT_PER_WORKER)
    detected_at = detected_at or utc_now()
    worker = SegmentWorker(client, pages, stop, stats, known, detected_at, reconciling)
    pool = ThreadPoolExecutor(max_workers=max_workers, thread_name_prefix="klaviyo-segment")
    try:
        for walk in walks:
            pool.submit(worker.walk, walk, dict(params))
        for segment_id in retire:
            pool.submit(worker.retire, segment_id)
        with _fewer_collections():
            yield from _batches(pages, len(walks) + len(retire), stats, detected_at)
    finally:
        stop.set()
        pool.shutdown(wait=True, cancel_futures=True)
        client.close()
        if known is not None:
            known.close()


@contextlib.contextmanager
def _fewer_collections() -> Generator[None, None, None]:
    """Runs the walk with Python's cyclic garbage collector triggered less often.

    Decoded pages are many small containers, and the batches in flight keep thousands of
    them alive, so the default thresholds start a collection every few hundred allocations
    and each one traverses everything in flight (a quarter of the walk's CPU when measured).
    The walk creates almost no reference cycles: reference counting frees its pages. Objects
    that exist before the walk are frozen out of collections; both are undone afterwards.
    """
    thresholds = gc.get_threshold()
    gc.freeze()
    gc.set_threshold(*settings.WALK_GC_THRESHOLDS)
    try:
        yield
    finally:
        gc.set_threshold(*thresholds)
        gc.unfreeze()


def _batches(
    pages: queue.Queue, tasks: int, stats: ExtractionStats, detected_at: datetime
) -> Iterator[MembershipBatch]:
    batch = MembershipBatch(detected_at)
    vanished: list[str] = []
    while tasks:
        event = pages.get()
        if isinstance(event, Failed):
            raise event.error
        if isinstance(event, Page):
            segment_id = event.segment_id
            batch.members.extend(
                (segment_id, profile, joined)
                for profile, joined in zip(event.profiles, event.joined, strict=True)
            )
            stats.add(pages=1)
        elif isinstance(event, Closed):
            batch.closures.extend((event.segment_id, closure) for closure in event.closures)
            stats.add(leaves=sum(1 for closure in event.closures if closure.leaves))
        elif isinstance(event, Finished):
            tasks -= 1
            _finish(batch, event, stats, vanished)
        if batch.rows >= settings.MEMBERSHIP_BATCH_ROWS:
            yield batch
            batch = MembershipBatch(detected_at)
    batch.final = True
    batch.vanished = vanished
    yield batch


def _finish(
    batch: MembershipBatch, event: Finished, stats: ExtractionStats, vanished: list[str]
) -> None:
    segment_id = event.segment_id
    if event.walked:
        batch.finished[segment_id] = event.cursor
        if event.processing:
            batch.processing.append(segment_id)
        stats.segment_walked(segment_id)
    if event.reconciled:
        batch.reconciled.append(segment_id)
        stats.segment_reconciled(segment_id)
    if event.vanished:
        vanished.append(segment_id)
    if event.vanished or event.retired:
        stats.segment_deleted(segment_id)
    if event.retired:
        batch.retired.append(segment_id)
