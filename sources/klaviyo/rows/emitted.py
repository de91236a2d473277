"""Which copies of a profile a walk emits as `profiles` rows: each profile once, unless it changed."""

from __future__ import annotations

from collections.abc import Iterable
from datetime import datetime, timezone

from .. import settings
from ..typing import NO_ATTRIBUTES, Resource


class EmittedProfiles:
    """The profiles one walk has emitted so far, so that it emits each profile once.

    A profile in several segments is listed once per segment. The destination's merge keeps
    one row per id, but every extra copy is converted, written and loaded for nothing, and a
    destination that only upserts would keep them all: with profiles in 2.6 segments on
    average, copies are most of the `profiles` rows. A later copy is emitted only when its
    `updated` is newer (the profile changed while the run read it), so the last row of a
    profile is always its newest. Only a profile updated since the run began can have a newer
    copy: the ids of the others are all that is kept.

    Memory is bounded: past `limit` ids the set starts afresh (later copies of the forgotten
    profiles are emitted again, which costs time, never rows). A walk is told apart from the
    previous one by the detection time its batches carry.

    A run that loads in several extractions (one per checkpoint) passes one instance made
    with `across_walks` to all of them: a profile loaded by an earlier checkpoint of the run
    is not emitted again unless it changed. Between two extractions the ids are packed into
    one string: the load step that comes between them is the run's memory peak, and a set of
    hundreds of thousands of ids is tens of megabytes of small objects.

    Args:
        limit: Most ids remembered at once.
        across_walks: Keep the ids from one walk to the next (the run forgets them).
    """

    def __init__(
        self, limit: int = settings.PROFILE_IDS_REMEMBERED, across_walks: bool = False
    ) -> None:
        self._limit = limit
        self._across_walks = across_walks
        self._ids: set[str] = set()
        self._packed: str | None = None
        self._recent: dict[str, str] = {}
        self._since = ""
        self._walk: object = None

    def fresh(
        self,
        profiles: Iterable[Resource],
        walk: object,
        keys: Iterable[ProfileKey] | None = None,
    ) -> dict[str, Resource]:
        """The profiles `walk` has not emitted yet, or emitted with an older `updated`, by id
        (the newest copy of each); they count as emitted from now on.

        Args:
            profiles: Profile resources, each with an `id`.
            walk: What identifies the walk: the same value for all of its batches (its
                detection time, a datetime, also says when it began).
            keys: `profile_keys` of `profiles`, in the same order, when already made (by the
                worker, while the page was fresh in memory); None makes them here.
        """
        if walk != self._walk:
            if not self._across_walks or self._walk is None:
                self.forget()
                self._since = _began(walk)
            self._walk = walk
        self._unpack()
        if len(self._ids) >= self._limit:
            self._ids, self._recent = set(), {}
        emitted, recent, since, fresh = self._ids, self._recent, self._since, {}
        if keys is None:
            profiles = list(profiles)
            keys = profile_keys(profiles)
        for profile, (profile_id, updated) in zip(profiles, keys, strict=True):
            stamp = updated if updated is not None and updated >= since else None
            if profile_id not in emitted:
                emitted.add(profile_id)
                fresh[profile_id] = profile
                if stamp is not None:
                    recent[profile_id] = stamp
            elif stamp is not None and stamp > recent.get(profile_id, ""):
                recent[profile_id] = stamp
                fresh[profile_id] = profile
        return fresh

    def forget(self) -> None:
        """Gives the remembered ids back (at the end of a walk)."""
        self._ids, self._recent, self._packed = set(), {}, None
        self._walk = None

    def walk_ended(self) -> None:
        """The walk's last batch was emitted: its ids go, or are packed if the run keeps them."""
        if not self._across_walks:
            self.forget()
        elif self._ids:
            # NUL never occurs in an id: the decoder replaces it (`api.decoding`)
            self._packed = _ID_SEPARATOR.join(self._ids)
            self._ids = set()

    def _unpack(self) -> None:
        if self._packed is not None:
            self._ids = set(self._packed.split(_ID_SEPARATOR))
            self._packed = None


_ID_SEPARATOR = "\0"

ProfileKey = tuple[str, str | None]
"""A profile's id and its `updated` text (None when it has none)."""


def profile_keys(profiles: Iterable[Resource]) -> list[ProfileKey]:
    """The id and `updated` of each profile: all `EmittedProfiles` reads of a profile.

    Made by the worker right after decoding a page, while its dicts are in the CPU's caches:
    read later from a batch of thousands of profiles, they cost about twice as much.
    """
    keys: list[ProfileKey] = []
    append = keys.append
    for profile in profiles:
        updated = (profile.get("attributes") or NO_ATTRIBUTES).get(settings.PROFILE_UPDATED)
        append((profile["id"], updated if isinstance(updated, str) else None))
    return keys


def _began(walk: object) -> str:
    """When a walk began, as the start of Klaviyo's `updated` text (ISO, UTC, whole
    seconds, which Klaviyo renders alike for every profile: text order is time order);
    empty (every copy may be newer) when the walk is not told by its time."""
    if isinstance(walk, datetime):
        return walk.astimezone(timezone.utc).strftime("%Y-%m-%dT%H:%M:%S")
    return ""
