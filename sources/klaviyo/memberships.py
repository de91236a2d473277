"""The membership walk: segment profiles since each segment's cursor, several segments at once.

Worker threads page through `/api/segments/{id}/profiles/` and put pages on a bounded queue;
the generator thread (dlt's) takes them off in batches. Only the generator thread touches
dlt state, and a segment is reported finished only after its last page was queued, so a
cursor built from a batch never runs ahead of the rows handed to dlt.
"""

from __future__ import annotations

import contextlib
import queue
import threading
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from dlt.common import logger

from . import settings
from .client import KlaviyoClient, api_path
from .exceptions import KlaviyoNotFoundError
from .filters import format_state_datetime, joined_since_filter, parse_datetime
from .ratelimit import Interrupted
from .rows import Resource, joined_group_at
from .stats import ExtractionStats

ClientFactory = Callable[[threading.Event | None], KlaviyoClient]


@dataclass(frozen=True)
class SegmentWalk:
    """What to fetch for one segment.

    Attributes:
        segment_id: The segment.
        cursor: Its cursor (last joined_group_at loaded), None before its first load.
        since: Lower bound of joined_group_at to request; None fetches every member.
        advance: False while Klaviyo is still computing the segment: its cursor stays put.
    """

    segment_id: str
    cursor: datetime | None
    since: datetime | None
    advance: bool = True


@dataclass
class MembershipBatch:
    """Pages of several segments handed to the `profiles` and `segment_memberships` tables.

    Attributes:
        members: (segment id, profile resource) in the order received.
        finished: Segments whose last page is in this batch or an earlier one, mapped to
            the cursor they may advance to (None: leave the cursor as it is).
    """

    members: list[tuple[str, Resource]] = field(default_factory=list)
    finished: dict[str, str | None] = field(default_factory=dict)


def plan_walks(
    segments: Iterable[Resource],
    cursors: Sequence[Mapping[str, str]],
    start_date: datetime | None,
) -> list[SegmentWalk]:
    """Decides where each segment's walk starts.

    Args:
        segments: Segment resources in scope.
        cursors: One `{segment_id: ISO datetime}` map per table being loaded; a segment
            starts at the oldest of them, and from scratch if any table has none.
        start_date: Lower bound for segments without a cursor.
    """
    walks = []
    for segment in segments:
        segment_id = segment["id"]
        values = [parse_datetime(table.get(segment_id)) for table in cursors]
        cursor = None if not values or None in values else min(v for v in values if v)
        processing = bool((segment.get("attributes") or {}).get("is_processing"))
        walks.append(SegmentWalk(segment_id, cursor, cursor or start_date, advance=not processing))
    return walks


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
) -> Iterator[MembershipBatch]:
    """Walks the segments concurrently and yields batches of about MEMBERSHIP_BATCH_ROWS rows.

    Raises:
        KlaviyoError: The first error of any segment's walk; the other walks are stopped.
    """
    stop = threading.Event()
    client = make_client(stop)
    pages: queue.Queue = queue.Queue(maxsize=max_workers * settings.PAGES_IN_FLIGHT_PER_WORKER)
    pool = ThreadPoolExecutor(max_workers=max_workers, thread_name_prefix="klaviyo-segment")
    try:
        for walk in walks:
            pool.submit(_walk_segment, client, walk, dict(params), pages, stop, stats)
        yield from _batches(pages, len(walks), stats)
    finally:
        stop.set()
        pool.shutdown(wait=True, cancel_futures=True)
        client.close()


def _batches(pages: queue.Queue, walks: int, stats: ExtractionStats) -> Iterator[MembershipBatch]:
    batch = MembershipBatch()
    while walks:
        event = pages.get()
        if isinstance(event, _Failed):
            raise event.error
        if isinstance(event, _Page):
            batch.members.extend((event.segment_id, profile) for profile in event.profiles)
            stats.add(pages=1)
        elif isinstance(event, _Finished):
            walks -= 1
            batch.finished[event.segment_id] = event.cursor
            stats.segment_walked(event.segment_id)
        if len(batch.members) >= settings.MEMBERSHIP_BATCH_ROWS:
            yield batch
            batch = MembershipBatch()
    if batch.members or batch.finished:
        yield batch


@dataclass
class _Page:
    segment_id: str
    profiles: list[Resource]


@dataclass
class _Finished:
    segment_id: str
    cursor: str | None


@dataclass
class _Failed:
    error: BaseException


def _walk_segment(
    client: KlaviyoClient,
    walk: SegmentWalk,
    params: dict[str, str],
    pages: queue.Queue,
    stop: threading.Event,
    stats: ExtractionStats,
) -> None:
    try:
        newest = _fetch_pages(client, walk, params, pages, stop, stats)
        cursor = format_state_datetime(newest) if newest and walk.advance else None
        _put(pages, _Finished(walk.segment_id, cursor), stop)
    except Interrupted:
        return
    except KlaviyoNotFoundError as exc:
        # Deleted after the segment list was read: nothing to load, the cursor stays.
        logger.warning(f"{exc}; skipped, it vanished during the run")
        _put_quietly(pages, _Finished(walk.segment_id, None), stop)
    except BaseException as exc:
        _put_quietly(pages, _Failed(exc), stop)


def _fetch_pages(
    client: KlaviyoClient,
    walk: SegmentWalk,
    params: dict[str, str],
    pages: queue.Queue,
    stop: threading.Event,
    stats: ExtractionStats,
) -> datetime | None:
    if walk.since is not None:
        params["filter"] = joined_since_filter(walk.since)
    path = api_path(settings.SEGMENT_PROFILES_PATH, client.revision, segment_id=walk.segment_id)
    newest: datetime | None = None
    for page in client.paginate(path, params, "get_segment_profiles", walk.segment_id):
        # Only id and attributes travel on: links and relationships would triple the batch.
        profiles = [
            {"id": p["id"], "attributes": p.get("attributes") or {}}
            for p in page.get("data") or []
            if isinstance(p, dict) and p.get("id")
        ]
        joined = [j for j in map(joined_group_at, profiles) if j is not None]
        if joined:
            newest = max(newest or joined[0], *joined)
        fresh = sum(1 for j in joined if walk.cursor is None or j > walk.cursor)
        stats.add(new_memberships=fresh)
        _put(pages, _Page(walk.segment_id, profiles), stop)
    return newest


def _put(pages: queue.Queue, event: Any, stop: threading.Event) -> None:
    while True:
        if stop.is_set():
            raise Interrupted()
        try:
            pages.put(event, timeout=0.1)
            return
        except queue.Full:
            continue


def _put_quietly(pages: queue.Queue, event: Any, stop: threading.Event) -> None:
    with contextlib.suppress(Interrupted):
        _put(pages, event, stop)
