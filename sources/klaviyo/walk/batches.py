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
import time
from collections.abc import Generator, Iterator, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import datetime
from itertools import repeat

from .. import settings
from ..api.client import ClientFactory
from ..dates import utc_now
from ..rows.emitted import ProfileKey, profile_keys
from ..rows.memory import give_back_memory
from ..stats import ExtractionStats
from ..typing import Closure, Member, Resource
from .destination import KnownMemberships
from .events import Closed, Failed, Finished, Page
from .plan import SegmentWalk
from .worker import SegmentWorker


@dataclass(frozen=True)
class Checkpoint:
    """When a run stops taking on work so that what it read can be loaded.

    Attributes:
        pages: Profile pages after which the run stops; None: no limit.
        seconds: Seconds after which the run stops; None: no limit.
    """

    pages: int | None = None
    seconds: float | None = None

    def reached(self, pages: int, started: float) -> bool:
        """Whether a run that started at `started` (monotonic) and read `pages` is due."""
        if self.pages is not None and pages >= self.pages:
            return True
        return self.seconds is not None and time.monotonic() - started >= self.seconds


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
        cut: Segments of `finished` whose walk stopped at a checkpoint before its end.
        backfilling: Segments of `finished` whose first load stopped at a checkpoint.
        backfilled: Segments of `finished` whose first load, begun in an earlier run, is
            now complete.
        refreshed: Segments whose every member was read with its attributes, all in this
            batch or earlier ones.
        profiles_only: Profiles for `profiles` only: members a refresh read whose
            membership rows are loaded already, and changed profiles of members
            (`walk.changed`).
        changed_read: Where the read of changed profiles started (ISO), on its batches.
        changed_until: The newest `updated` that read has reached (None: none yet).
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
    cut: list[str] = field(default_factory=list)
    backfilling: list[str] = field(default_factory=list)
    backfilled: list[str] = field(default_factory=list)
    refreshed: list[str] = field(default_factory=list)
    profiles_only: list[Resource] = field(default_factory=list)
    member_keys: list[ProfileKey] = field(default_factory=list)
    profiles_only_keys: list[ProfileKey] = field(default_factory=list)
    changed_read: str | None = None
    changed_until: str | None = None
    final: bool = False

    @property
    def rows(self) -> int:
        return len(self.members) + len(self.closures) + len(self.profiles_only)

    def add_page(self, page: Page) -> None:
        """Takes a page's members and profiles, with the keys the worker made of them."""
        # zip and repeat make the member tuples without a Python step per member
        self.members.extend(zip(repeat(page.segment_id), page.profiles, page.joined))
        self.member_keys.extend(page.keys)
        self.profiles_only.extend(page.attributes_only)
        self.profiles_only_keys.extend(page.attributes_only_keys)

    def profile_copies(self) -> tuple[list[Resource], list[ProfileKey]]:
        """Every profile of the batch (`profiles_only`, then the members'), with its key.

        Keys made with the pages are used where they cover their list; the others (profiles
        put in the batch whole, as the read of changed profiles does) are made here.
        """
        members = [member[1] for member in self.members]
        member_keys = self.member_keys
        if len(member_keys) != len(members):
            member_keys = profile_keys(members)
        only_keys = self.profiles_only_keys
        if len(only_keys) != len(self.profiles_only):
            only_keys = profile_keys(self.profiles_only)
        return [*self.profiles_only, *members], [*only_keys, *member_keys]


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
    checkpoint: Checkpoint | None = None,
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
        checkpoint: When to stop taking on work; None walks every segment to its end. At a
            checkpoint, walks not started are deferred to the next run, resumable walks stop
            after their current page, reconciliations go on to their end (`worker`).

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
        for segment_id in retire:
            pool.submit(worker.retire, segment_id)
        for walk in walks:
            pool.submit(worker.walk, walk, dict(params))
        run = _Run(worker, {walk.segment_id: walk for walk in walks}, checkpoint or Checkpoint())
        with _fewer_collections():
            yield from _batches(pages, len(walks) + len(retire), stats, detected_at, run)
    finally:
        stop.set()
        pool.shutdown(wait=True, cancel_futures=True)
        client.close()
        if known is not None:
            known.close()
        # the load step comes next: the walk's freed pages go back to the system first
        give_back_memory()


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


@dataclass
class _Run:
    """What the generator thread knows of the run: its walks, and when to checkpoint."""

    worker: SegmentWorker
    walks: dict[str, SegmentWalk]
    checkpoint: Checkpoint
    started: float = field(default_factory=time.monotonic)
    pages: int = 0

    def count_page(self) -> None:
        """Counts a page handed on; sets the checkpoint once it is due."""
        self.pages += 1
        self.check()

    def check(self) -> None:
        if not self.worker.checkpoint.is_set() and self.checkpoint.reached(
            self.pages, self.started
        ):
            self.worker.checkpoint.set()


def _batches(
    pages: queue.Queue,
    tasks: int,
    stats: ExtractionStats,
    detected_at: datetime,
    run: _Run,
) -> Iterator[MembershipBatch]:
    batch = MembershipBatch(detected_at)
    vanished: list[str] = []
    while tasks:
        try:
            event = pages.get(timeout=settings.CHECKPOINT_POLL_SECONDS)
        except queue.Empty:
            run.check()  # a reconciliation may list ids for long without a page
            continue
        if isinstance(event, Failed):
            raise event.error
        if isinstance(event, Page):
            run.count_page()
            batch.add_page(event)
            stats.add(pages=1)
        elif isinstance(event, Closed):
            batch.closures.extend((event.segment_id, closure) for closure in event.closures)
            stats.add(leaves=sum(1 for closure in event.closures if closure.leaves))
        elif isinstance(event, Finished):
            tasks -= 1
            _finish(batch, event, stats, vanished)
            _finish_backfill(batch, event, run.walks.get(event.segment_id), stats)
        if batch.rows >= settings.MEMBERSHIP_BATCH_ROWS:
            yield batch
            batch = MembershipBatch(detected_at)
    batch.final = True
    batch.vanished = vanished
    yield batch


def _finish_backfill(
    batch: MembershipBatch, event: Finished, walk: SegmentWalk | None, stats: ExtractionStats
) -> None:
    """Tracks first loads across checkpoints, and counts what a checkpoint left undone.

    A segment a checkpoint did not let start is unfinished if members are known to wait for
    it (`SegmentWalk.behind`), else only unchecked: the next run reads its new joins as usual.
    """
    if event.partial or (event.deferred and (walk is None or walk.behind)):
        stats.segment_unfinished(event.segment_id, event.remaining_pages)
    elif event.deferred:
        stats.segment_unchecked(event.segment_id)
    if walk is None or not event.walked:
        return
    first_load = walk.cursor is None or walk.backfill
    if event.partial and first_load and event.cursor is not None:
        batch.backfilling.append(event.segment_id)
    elif not event.partial and walk.backfill:
        batch.backfilled.append(event.segment_id)


def _finish(
    batch: MembershipBatch, event: Finished, stats: ExtractionStats, vanished: list[str]
) -> None:
    segment_id = event.segment_id
    if event.walked:
        batch.finished[segment_id] = event.cursor
        if event.processing:
            batch.processing.append(segment_id)
        if event.partial:
            batch.cut.append(segment_id)
        else:
            stats.segment_walked(segment_id)
    if event.reconciled:
        batch.reconciled.append(segment_id)
        stats.segment_reconciled(segment_id)
    if event.refreshed:
        batch.refreshed.append(segment_id)
        stats.segment_refreshed(segment_id)
    if event.vanished:
        vanished.append(segment_id)
    if event.vanished or event.retired:
        stats.segment_deleted(segment_id)
    if event.retired:
        batch.retired.append(segment_id)
