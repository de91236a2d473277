"""Profiles changed since the last read: the `updated` way of keeping `profiles` current.

`refresh_profiles_by="updated"` reads Klaviyo's Profiles API (`/api/profiles/`, filtered and
sorted by `updated`, one cursor for the whole account) instead of walking each segment's
members again. It returns every profile of the account that changed, members or not: only
those with an open stay in `segment_memberships` are kept, so the rows of profiles outside
the loaded segments never reach the destination. Cheap when most of the account's profiles
are members; a walk of the segments costs less when few are (docs/reconciliation.md).
"""

from __future__ import annotations

import threading
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from datetime import datetime, timedelta

from .. import settings
from ..api.client import KlaviyoClient
from ..api.endpoints import Request
from ..api.ratelimit import Interrupted
from ..dates import parse_datetime
from ..rows.profiles import page_profiles
from ..typing import Resource
from .destination import KnownMemberships


@dataclass(frozen=True)
class ChangedRead:
    """Where this run's read of changed profiles starts.

    Attributes:
        since: Read profiles updated after this; None: nothing to read (no row of an
            earlier refresh to bring up to date), the run only starts the cursor.
    """

    since: datetime | None


def plan_changed_read(
    cursor: Mapping[str, str],
    refreshed: Mapping[str, str],
    every_hours: float,
    now: datetime,
) -> ChangedRead | None:
    """Decides whether this run reads changed profiles, and from when; None: not due.

    Args:
        cursor: `profiles.changed` of the state: the newest `updated` read (`updated`) and
            when the last read ran (`read_at`).
        refreshed: `profiles.refreshed`: when each segment's members were last read whole.
        every_hours: A read is due when the last one is this old (0: every run).
        now: The run's time.
    """
    read_at = parse_datetime(cursor.get("read_at"))
    interval = timedelta(hours=every_hours) * (1 - settings.RECONCILE_DUE_SLACK)
    if read_at is not None and now - read_at < interval:
        return None
    newest = parse_datetime(cursor.get("updated"))
    if newest is None:
        # First read: changes since the oldest refresh of the rows held are what they miss.
        stamps = [parse_datetime(stamp) for stamp in refreshed.values()]
        newest = min((s for s in stamps if s is not None), default=None)
    if newest is None:
        return ChangedRead(None)
    return ChangedRead(newest - timedelta(seconds=settings.CHANGED_OVERLAP_SECONDS))


def read_changed_profiles(
    client: KlaviyoClient,
    request: Request,
    members: KnownMemberships,
    stop: threading.Event,
) -> Iterator[tuple[list[Resource], str | None]]:
    """Pages through the changed profiles; yields the members among them, in chunks.

    Yields:
        (profiles of current members, the newest `updated` read so far): the cursor a
        chunk justifies once it is loaded.
    """
    newest: str | None = None
    chunk: list[Resource] = []
    for page in client.pages(request):
        if stop.is_set():
            raise Interrupted()
        for profile in page_profiles(page):
            updated = (profile.get("attributes") or {}).get("updated")
            if isinstance(updated, str) and (newest is None or updated > newest):
                newest = updated
            chunk.append(profile)
        if len(chunk) >= settings.REJOIN_LOOKUP_PROFILES:
            yield _members(chunk, members), newest
            chunk = []
    yield _members(chunk, members), newest


def _members(profiles: list[Resource], members: KnownMemberships) -> list[Resource]:
    """The profiles with an open stay in a loaded segment: one destination query."""
    current = members.current_members({profile["id"] for profile in profiles})
    return [profile for profile in profiles if profile["id"] in current]
