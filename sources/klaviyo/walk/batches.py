"""The membership walk of a run: segments walked at once, their events batched for dlt.

Worker threads (`worker.SegmentWorker`) page through the segments and put events on a
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
from collections.abc import Generator, Iterator, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import datetime

from .. import settings
from ..api.client import ClientFactory
from ..dates import utc_now
from ..stats import ExtractionStats
from ..typing import Closure, Member
from .destination import KnownMemberships
from .events import Closed, Failed, Finished, Page
from .plan import SegmentWalk
from .worker import SegmentWorker


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
