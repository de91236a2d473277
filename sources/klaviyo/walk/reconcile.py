"""Reconciliation: when to compare a segment with what was loaded, and what the comparison finds.

The incremental walk sees joins only: `joined_group_at` is a profile's most recent join, and a
profile that leaves simply stops being listed. Reconciling a segment lists the ids of its
members (`/api/segments/{id}/relationships/profiles/`, ids only, up to 1000 per page) and
compares them with the stays still open in the destination. A known member that Klaviyo no
longer lists has left; the time of the leave is the time it was detected.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

from .. import settings
from ..typing import Closure, Stays


@dataclass(frozen=True)
class ReconcilePolicy:
    """Decides, per segment, whether this run reconciles it.

    Attributes:
        every_hours: A segment is due when its last reconciliation is this old (0: every run).
        forced: Segment ids reconciled this run whatever their age, inactive ones included.
        forced_all: Every active segment is reconciled this run.
        inactive: Inactive segments (`is_active=false`) are reconciled like active ones.
    """

    every_hours: float = settings.RECONCILE_EVERY_HOURS
    forced: frozenset[str] = frozenset()
    forced_all: bool = False
    inactive: bool = False

    @classmethod
    def from_options(
        cls, every_hours: float, segments: Sequence[str], inactive: bool
    ) -> ReconcilePolicy:
        """Builds the policy from the source's options (`["all"]` forces every segment)."""
        forced_all = settings.RECONCILE_ALL in segments
        forced = frozenset(s for s in segments if s != settings.RECONCILE_ALL)
        return cls(every_hours, forced, forced_all, inactive)

    def allows(self, segment: Mapping[str, Any]) -> bool:
        """Whether `segment` may be reconciled on a walk that reads every member anyway.

        Not while Klaviyo computes it, and not an inactive one unless asked for.
        """
        attributes = segment.get("attributes") or {}
        if attributes.get("is_processing"):
            return False
        if segment["id"] in self.forced or self.inactive:
            return True
        return attributes.get("is_active") is not False

    def is_due(self, segment: Mapping[str, Any], last: datetime | None, now: datetime) -> bool:
        """Whether `segment` is reconciled now, given when it last was (None: never)."""
        attributes = segment.get("attributes") or {}
        if attributes.get("is_processing"):
            # Klaviyo is still computing the members: a missing one has not left.
            return False
        if segment["id"] in self.forced:
            return True
        if attributes.get("is_active") is False and not self.inactive:
            return False
        if self.forced_all or last is None:
            return True
        interval = timedelta(hours=self.every_hours)
        return now - last >= interval * (1 - settings.RECONCILE_DUE_SLACK)


@dataclass
class MembershipComparison:
    """The stays known for one segment, checked off against what Klaviyo lists now.

    Feed it the ids of the id walk (`listed`) and the members of the profile walk (`walked`),
    then read the stays that ended from `closures`.

    Args:
        known: Open stays of the segment in the destination.
    """

    known: Stays
    absent: set[str] = field(init=False)
    unknown: set[str] = field(init=False, default_factory=set)
    rejoined: dict[str, datetime] = field(init=False, default_factory=dict)

    def __post_init__(self) -> None:
        self.absent = set(self.known)

    def listed(self, profile_ids: Iterable[str]) -> None:
        """Checks off profile ids Klaviyo lists as members (the id walk)."""
        for profile_id in profile_ids:
            if profile_id in self.known:
                self.absent.discard(profile_id)
            else:
                self.unknown.add(profile_id)

    def walked(self, profile_id: str, joined: datetime | None) -> None:
        """Checks off a member of the profile walk, with the start of its current stay."""
        self.absent.discard(profile_id)
        self.unknown.discard(profile_id)
        stays = self.known.get(profile_id)
        if stays is not None and joined is not None and joined not in stays:
            self.rejoined[profile_id] = joined

    @property
    def late_joiners(self) -> set[str]:
        """Listed members that neither the destination nor the profile walk knows.

        They joined with a `joined_group_at` below the segment's cursor (Klaviyo adds some
        members late), so the walk from the cursor could not see them.
        """
        return self.unknown

    def closures(self, detected_at: datetime) -> Iterator[Closure]:
        """The stays that ended: every open stay of a profile that left, and every stay
        followed by a newer one (a re-join seen by this or an earlier walk)."""
        for profile_id, stays in self.known.items():
            timeline = self._timeline(profile_id, stays)
            yield from _superseded(profile_id, stays, timeline)
            if profile_id in self.absent:
                yield Closure(profile_id, timeline[-1], detected_at, True)

    def rejoin_closures(self) -> Iterator[Closure]:
        """Only the stays followed by a newer one: what a walk that lists no ids can close.

        A walk from the cursor sees a re-join as a member with a newer `joined_group_at`;
        the earlier stay ends there, whether or not the segment is reconciled.
        """
        for profile_id, stays in self.known.items():
            yield from _superseded(profile_id, stays, self._timeline(profile_id, stays))

    def _timeline(self, profile_id: str, stays: tuple[datetime, ...]) -> list[datetime]:
        newest = self.rejoined.get(profile_id)
        return sorted({*stays, newest} if newest is not None else set(stays))


def _superseded(
    profile_id: str, stays: tuple[datetime, ...], timeline: list[datetime]
) -> Iterator[Closure]:
    """Each known stay that a later one follows ends where the later one starts."""
    for stay, following in zip(timeline, timeline[1:], strict=False):
        if stay in stays:
            yield Closure(profile_id, stay, following, False)


def compared_since(start_date: datetime | None, known: Stays | None) -> datetime | None:
    """The earliest `joined_group_at` a reconciliation compares (None: every member).

    `start_date` bounds what a first load reads, but stays older than it that the destination
    already holds (loaded before `start_date` was set or raised) are still members or not:
    they must be listed too, or they would look like leaves.

    Args:
        start_date: The source's `start_date`.
        known: The segment's open stays in the destination; None when none are read.
    """
    if start_date is None:
        return None
    oldest = min((min(stays) for stays in (known or {}).values() if stays), default=None)
    return min(start_date, oldest) if oldest is not None else start_date


def everyone_leaves(known: Stays, detected_at: datetime) -> Iterator[Closure]:
    """Closes every open stay: the segment is gone (deleted in Klaviyo)."""
    return MembershipComparison(known).closures(detected_at)
