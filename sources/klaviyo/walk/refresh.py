"""When a segment's members are read again with their attributes, so `profiles` stays current.

The walk from a segment's cursor reads a member when it joins, and `joined_group_at` does not
move when Klaviyo's attributes change (an email, a phone number, a property, a location), so
without more a `profiles` row would keep the attributes of the join. A refresh walks every
member of the segment through the profiles endpoint, which brings their attributes as they
are now and their `joined_group_at`: the same walk a reconciliation needs.

From revision 2024-10-15 the id-only pages hold 100 ids, as many as a profiles page, so a
reconciliation that walks the profiles instead of the ids costs no extra request, and a due
reconciliation always refreshes. Before it (2024-06-15) the id pages hold 1,000 and a refresh
costs ten times the id walk: there it follows its own interval.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta

from .. import settings
from ..api import endpoints
from ..typing import Resource, Stays
from .events import Page


@dataclass(frozen=True)
class RefreshPolicy:
    """Decides, per segment, whether this run walks every member with its attributes.

    Attributes:
        every_hours: A segment is due when its last refresh is this old (0: every run);
            None: only segments never refreshed (changed profiles keep the others current).
        free_with_reconcile: A reconciliation's id walk takes as many requests as walking
            the profiles: every reconciliation refreshes.
    """

    every_hours: float | None
    free_with_reconcile: bool

    @classmethod
    def for_revision(cls, every_hours: float, revision: str) -> RefreshPolicy:
        """The policy at `revision`, whose id page size decides what a refresh costs."""
        page = endpoints.profile_ids_page_size(revision)
        return cls(every_hours, page <= settings.SEGMENT_PROFILES_PAGE_SIZE)

    @classmethod
    def first_only(cls) -> RefreshPolicy:
        """Refreshes only segments never refreshed: changed profiles do the rest."""
        return cls(None, False)

    def is_due(self, last: datetime | None, now: datetime, reconciles: bool) -> bool:
        """Whether a segment last refreshed at `last` (None: never) is refreshed now.

        Args:
            last: Its last refresh; None before the first (rows loaded before refreshes
                existed hold the attributes of their join: they are due at once).
            now: The run's time.
            reconciles: The segment is reconciled on this run anyway.
        """
        if reconciles and self.free_with_reconcile:
            return True
        if last is None:
            return True
        if self.every_hours is None:
            return False
        interval = timedelta(hours=self.every_hours)
        return now - last >= interval * (1 - settings.RECONCILE_DUE_SLACK)


def refresh_page(
    segment_id: str,
    cursor: datetime,
    profiles: list[Resource],
    joined: list[datetime | None],
    known: Stays,
) -> Page:
    """A page of a refresh: members already loaded become `profiles` rows only.

    A member below the cursor whose stay the destination holds open is one a walk from the
    cursor would not have read: its membership rows stay as they are, only its attributes
    are news. Members at or above the cursor, re-joins and late joiners get every row, as
    the walk from the cursor and a reconciliation's catch-up would give them.

    Args:
        segment_id: The segment.
        cursor: The segment's cursor (the oldest among the tables being loaded).
        profiles: The page's members.
        joined: Their `joined_group_at`.
        known: The open stays of the segment in the destination.
    """
    members, stamps, attributes_only = [], [], []
    for profile, stamp in zip(profiles, joined, strict=True):
        stays = known.get(profile["id"])
        if stamp is not None and stamp < cursor and stays is not None and stamp in stays:
            attributes_only.append(profile)
        else:
            members.append(profile)
            stamps.append(stamp)
    return Page(segment_id, members, stamps, attributes_only)
