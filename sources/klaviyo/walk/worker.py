"""What a worker thread does for one segment: walk its profiles, and reconcile it when due.

A worker talks to Klaviyo and to the destination (through `KnownMemberships`) and puts
events on the run's page queue: pages of members, closed stays, and finally `Finished`.
It never touches dlt state; the generator thread does, after the rows were handed to dlt.
"""

from __future__ import annotations

import contextlib
import math
import queue
import threading
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from dlt.common import logger

from .. import settings
from ..api import endpoints
from ..api.client import KlaviyoClient
from ..api.endpoints import filter_bound
from ..api.ratelimit import Interrupted
from ..dates import format_state_datetime
from ..exceptions import KlaviyoNotFoundError
from ..rows.memberships import joined_times
from ..rows.profiles import page_profiles
from ..settings import HISTORY_TABLE
from ..stats import ExtractionStats
from ..typing import Closure, Resource
from .destination import KnownMemberships
from .events import Closed, Event, Failed, Finished, Page
from .plan import SegmentWalk
from .reconcile import MembershipComparison, compared_since, everyone_leaves
from .refresh import refresh_page


@dataclass
class _Progress:
    newest: datetime | None = None
    emitted: bool = False
    comparison: MembershipComparison | None = None
    resumable: bool = False
    pages: int = 0
    oldest: datetime | None = None


class _Checkpoint(Exception):
    """The run reached a checkpoint: a resumable walk stops after the page it queued."""


@dataclass
class SegmentWorker:
    """Walks segments for one run; `walk` and `retire` run in worker threads.

    Attributes:
        client: Shared HTTP client.
        pages: The run's bounded event queue.
        stop: Set when the run stops; every wait and put gives up.
        stats: Progress counters.
        known: Reader of the destination's open stays in the membership tables of the run.
        detected_at: The run's time: when the leaves it finds were seen.
        reconciling: Leaves may be recorded: both membership tables are loaded, so a leave
            is one fact in both. Otherwise only re-joins close stays, and deleted segments
            are retired by a later run that loads both.
        checkpoint: Set when the run reached a checkpoint: walks not started yet are
            deferred, resumable walks stop after their current page, and walks that compare
            with the destination (reconciliations) go on to their end.
    """

    client: KlaviyoClient
    pages: queue.Queue
    stop: threading.Event
    stats: ExtractionStats
    known: KnownMemberships | None
    detected_at: datetime
    reconciling: bool = True
    checkpoint: threading.Event = field(default_factory=threading.Event)

    def walk(self, walk: SegmentWalk, params: dict[str, str]) -> None:
        """Loads one segment's members (from its cursor) and reconciles it if asked."""
        progress = _Progress()
        try:
            if self.checkpoint.is_set():
                self._put(Finished(walk.segment_id, walked=False, deferred=True))
                return
            self._walk(walk, params, progress)
        except Interrupted:
            return
        except KlaviyoNotFoundError as exc:
            self._vanished(walk.segment_id, progress, exc)
        except BaseException as exc:
            self._put_quietly(Failed(exc))

    def retire(self, segment_id: str) -> None:
        """Closes every open stay of a segment that Klaviyo no longer lists."""
        try:
            known = self.known.open_stays(segment_id) if self.known and self.reconciling else {}
            self._put_closures(segment_id, everyone_leaves(known, self.detected_at))
            self._put(Finished(segment_id, walked=False, retired=True))
        except Interrupted:
            return
        except BaseException as exc:
            self._put_quietly(Failed(exc))

    def _walk(self, walk: SegmentWalk, params: dict[str, str], progress: _Progress) -> None:
        segment_id = walk.segment_id
        if walk.reconcile and self.reconciling and self.known is not None:
            progress.comparison = MembershipComparison(self.known.open_stays(segment_id))
        comparison = progress.comparison
        if walk.refresh:
            self._walk_every_member(walk, params, progress)
            return
        # One bound for both sides: the walk from the cursor reads >= bound, a catch-up < bound.
        bound = filter_bound(walk.since) if walk.since is not None else None
        window = compared_since(walk.start_date, comparison.known if comparison else None)
        if comparison is not None and _lists_ids(walk, bound, window):
            self._list_profile_ids(walk, window, comparison)
        rejoins = self._rejoins(walk) if comparison is None else None
        # Cut at a checkpoint only where the cursor then says exactly what was read.
        progress.resumable = walk.resumable and (comparison is None or not comparison.known)
        try:
            self._fetch_profiles(walk, params, bound, None, progress, rejoins)
        except _Checkpoint:
            self._stop_at_checkpoint(walk, progress, rejoins)
            return
        if comparison is not None and bound is not None and comparison.late_joiners:
            self._fetch_profiles(walk, params, window, bound, progress)
        if comparison is not None:
            self._put_closures(segment_id, comparison.closures(self.detected_at))
        if rejoins is not None:
            self._close_rejoins(segment_id, rejoins)
        newest = progress.newest
        cursor = format_state_datetime(newest) if newest else None
        reconciled = comparison is not None
        # a first load read every member with its attributes: it counts as a refresh
        self._put(
            Finished(
                segment_id,
                cursor,
                reconciled=reconciled,
                processing=walk.processing,
                refreshed=walk.cursor is None,
            )
        )

    def _walk_every_member(
        self, walk: SegmentWalk, params: dict[str, str], progress: _Progress
    ) -> None:
        """A refresh: reads every member compared (or from `start_date`) with its attributes.

        One walk stands for a reconciliation's id walk and its catch-up of late joiners.
        Its pages start below the cursor, so a checkpoint does not cut it.
        """
        comparison = progress.comparison
        held = comparison.known if comparison is not None else None
        if held is None and self.known is not None and walk.start_date is not None:
            # not reconciled, but the stays held below `start_date` are members to refresh
            held = self.known.open_stays(walk.segment_id)
        since = compared_since(walk.start_date, held)
        bound = filter_bound(since) if since is not None else None
        rejoins = self._rejoins(walk) if comparison is None else None
        self._fetch_profiles(walk, params, bound, None, progress, rejoins)
        if comparison is not None:
            self._put_closures(walk.segment_id, comparison.closures(self.detected_at))
        if rejoins is not None:
            self._close_rejoins(walk.segment_id, rejoins)
        newest = progress.newest
        self._put(
            Finished(
                walk.segment_id,
                format_state_datetime(newest) if newest else None,
                reconciled=comparison is not None,
                processing=walk.processing,
                refreshed=True,
            )
        )

    def _stop_at_checkpoint(
        self, walk: SegmentWalk, progress: _Progress, rejoins: dict[str, datetime] | None
    ) -> None:
        """Ends a resumable walk at a checkpoint: its cursor moves to the last page queued."""
        if rejoins is not None:
            self._close_rejoins(walk.segment_id, rejoins)
        newest = progress.newest
        cursor = format_state_datetime(newest) if newest else None
        remaining = _remaining_pages(progress, self.detected_at)
        self._put(
            Finished(
                walk.segment_id,
                cursor,
                processing=walk.processing,
                partial=True,
                remaining_pages=remaining,
            )
        )

    def _list_profile_ids(
        self, walk: SegmentWalk, since: datetime | None, comparison: MembershipComparison
    ) -> None:
        request = endpoints.segment_profile_ids(self.client.revision, walk.segment_id, since)
        for page in self.client.pages(request):
            if self.stop.is_set():
                raise Interrupted()
            comparison.listed(
                item["id"]
                for item in page.get("data") or []
                if isinstance(item, dict) and item.get("id")
            )

    def _rejoins(self, walk: SegmentWalk) -> dict[str, datetime] | None:
        """Collects the walked members whose earlier stays may have to close, or None.

        Only the history keeps several stays of a profile, and only a segment loaded before
        can hold one, so first loads and runs without the history table collect nothing.
        """
        if self.known is None or HISTORY_TABLE not in self.known.tables:
            return None
        if walk.cursor is None and not walk.rewalk:
            return None
        return {}

    def _close_rejoins(self, segment_id: str, walked: dict[str, datetime]) -> None:
        """Closes the open stays that the walked members' newer joins end (see `_rejoins`)."""
        if not walked or self.known is None:
            walked.clear()
            return
        known = self.known.open_stays(segment_id, walked, tables=(HISTORY_TABLE,))
        comparison = MembershipComparison(known)
        for profile_id in known:
            comparison.walked(profile_id, walked[profile_id])
        walked.clear()
        self._put_closures(segment_id, comparison.rejoin_closures())

    def _fetch_profiles(
        self,
        walk: SegmentWalk,
        params: Mapping[str, str],
        since: datetime | None,
        before: datetime | None,
        progress: _Progress,
        rejoins: dict[str, datetime] | None = None,
    ) -> None:
        """Walks members joined at or after `since`, and before `before` when given (a
        catch-up of members that joined below the cursor; pages come sorted by join time).

        Members are added to `rejoins` when given, and their re-joins closed in chunks."""
        revision = self.client.revision
        request = endpoints.segment_profiles(revision, walk.segment_id, params, since)
        comparison = progress.comparison
        for page in self.client.pages(request):
            profiles = page_profiles(page)
            joined = joined_times(profiles)
            reached = before is not None and any(j is not None and j >= before for j in joined)
            if before is not None:
                kept = [
                    (p, j) for p, j in zip(profiles, joined, strict=True) if j is None or j < before
                ]
                profiles, joined = [p for p, _ in kept], [j for _, j in kept]
            self._count_new(walk, profiles, joined, before is not None, comparison)
            stamps = [j for j in joined if j is not None]
            if stamps:
                progress.newest = max(progress.newest or stamps[0], *stamps)
                progress.oldest = progress.oldest or min(stamps)
            progress.pages += 1
            if comparison is not None:
                for profile, stamp in zip(profiles, joined, strict=True):
                    comparison.walked(profile["id"], stamp)
            if walk.refresh and comparison is not None and walk.cursor is not None:
                known, cursor = comparison.known, walk.cursor
                self._put(refresh_page(walk.segment_id, cursor, profiles, joined, known))
            else:
                self._put(Page(walk.segment_id, profiles, joined))
            if rejoins is not None:
                since = walk.rejoins_since
                rejoins.update(
                    (p["id"], j)
                    for p, j in zip(profiles, joined, strict=True)
                    if j is not None and (since is None or j >= since)
                )
                if len(rejoins) >= settings.REJOIN_LOOKUP_PROFILES:
                    self._close_rejoins(walk.segment_id, rejoins)
            progress.emitted = progress.emitted or bool(profiles)
            if reached:
                return
            if self.checkpoint.is_set() and _can_stop_after(page, walk, progress):
                raise _Checkpoint()

    def _count_new(
        self,
        walk: SegmentWalk,
        profiles: list[Resource],
        joined: list[datetime | None],
        catch_up: bool,
        comparison: MembershipComparison | None,
    ) -> None:
        if catch_up and comparison is not None:
            fresh = sum(1 for p in profiles if p["id"] in comparison.late_joiners)
        elif walk.refresh and comparison is not None:
            # below the cursor, a member the destination does not hold is a late joiner
            known, cursor = comparison.known, walk.cursor
            fresh = sum(
                1
                for p, j in zip(profiles, joined, strict=True)
                if j is not None and (cursor is None or j > cursor or p["id"] not in known)
            )
        else:
            fresh = sum(
                1 for j in joined if j is not None and (walk.cursor is None or j > walk.cursor)
            )
        self.stats.add(new_memberships=fresh)

    def _vanished(self, segment_id: str, progress: _Progress, error: KlaviyoNotFoundError) -> None:
        logger.warning(f"{error}; it was deleted during the run: its memberships are closed")
        try:
            if progress.emitted or not self.reconciling:
                # This run already loads some of its members as current: a closure of the same
                # stay in the same load would race with it. The next run retires the segment
                # (as it does when this run cannot record leaves in both membership tables).
                self._put(Finished(segment_id, vanished=True))
                return
            comparison = progress.comparison
            known = comparison.known if comparison is not None else None
            if known is None:
                known = self.known.open_stays(segment_id) if self.known else {}
            self._put_closures(segment_id, everyone_leaves(known, self.detected_at))
            self._put(Finished(segment_id, vanished=True, retired=True))
        except Interrupted:
            return
        except BaseException as exc:
            self._put_quietly(Failed(exc))

    def _put_closures(self, segment_id: str, closures: Iterable[Closure]) -> None:
        chunk: list[Closure] = []
        for closure in closures:
            chunk.append(closure)
            if len(chunk) >= settings.MEMBERSHIP_BATCH_ROWS:
                self._put(Closed(segment_id, chunk))
                chunk = []
        if chunk:
            self._put(Closed(segment_id, chunk))

    def _put(self, event: Event) -> None:
        while True:
            if self.stop.is_set():
                raise Interrupted()
            try:
                self.pages.put(event, timeout=0.1)
                return
            except queue.Full:
                continue

    def _put_quietly(self, event: Event) -> None:
        with contextlib.suppress(Interrupted):
            self._put(event)


def _lists_ids(walk: SegmentWalk, bound: datetime | None, since: datetime | None) -> bool:
    """Whether a reconciliation needs the id walk: the profile walk does not cover every
    compared member (it starts at a cursor, or above stays the destination holds)."""
    if walk.cursor is not None:
        return True
    return bound is not None and (since is None or filter_bound(since) < bound)


def _can_stop_after(page: Mapping[str, Any], walk: SegmentWalk, progress: _Progress) -> bool:
    """Whether a walk may stop at a checkpoint after `page` and go on later from its cursor.

    Only a resumable walk, only where more pages follow (the last page ends the walk), and
    only once its cursor has moved: a run that stopped on a page of members who all joined
    at the cursor's time would read that page again, forever.
    """
    if not progress.resumable or not (page.get("links") or {}).get("next"):
        return False
    newest = progress.newest
    return newest is not None and (walk.cursor is None or newest > walk.cursor)


def _remaining_pages(progress: _Progress, now: datetime) -> int | None:
    """Pages a cut walk still has, guessed from how far its join times got towards now.

    Members join over time and pages come sorted by join time, so the pages read cover
    `oldest .. newest`; the rest covers `newest .. now` at the same density. No request.
    """
    newest, oldest = progress.newest, progress.oldest
    if newest is None or oldest is None or newest <= oldest:
        return None
    share = max((now - newest).total_seconds(), 0.0) / (newest - oldest).total_seconds()
    return math.ceil(progress.pages * share)
