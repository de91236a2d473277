"""The members of one segment as compact sorted keys, with a small overlay for mutations.

A membership key packs `(joined_group_at epoch seconds, profile index)` into one 64-bit integer, so one
`array('q')` sorted ascending gives Klaviyo's member order (profile indexes sort like profile ids).
"""

from __future__ import annotations

import heapq
from array import array
from bisect import bisect_left, insort
from collections.abc import Iterable, Iterator

INDEX_BITS = 32
INDEX_MASK = (1 << INDEX_BITS) - 1


def make_key(joined_epoch: int, profile_index: int) -> int:
    """Pack a membership into its sort key."""
    return (joined_epoch << INDEX_BITS) | profile_index


def key_epoch(key: int) -> int:
    """joined_group_at (epoch seconds) of a key."""
    return key >> INDEX_BITS


def key_index(key: int) -> int:
    """Profile index of a key."""
    return key & INDEX_MASK


class SegmentMembers:
    """Generated memberships (read-only array) plus the memberships changed since generation."""

    def __init__(self, keys: Iterable[int] = ()) -> None:
        self._base = array("q", sorted(keys))
        self._removed: set[int] = set()
        self._extra: list[int] = []
        self._by_index: dict[int, int] | None = None
        self._base_indexes: array[int] | None = None

    def __len__(self) -> int:
        return len(self._base) - len(self._removed) + len(self._extra)

    def key_of(self, profile_index: int) -> int | None:
        """The current key of a profile, or None when it is not a member."""
        return self._index().get(profile_index)

    def contains(self, profile_index: int) -> bool:
        """True when the profile is a member."""
        if self._by_index is not None:
            return profile_index in self._by_index
        # Unchanged since generation: a sorted copy of the members' profile indexes (4 bytes
        # each) answers, not the dict a first mutation builds (about 100 bytes a member).
        if self._base_indexes is None:
            self._base_indexes = array("I", sorted(key & INDEX_MASK for key in self._base))
        indexes = self._base_indexes
        position = bisect_left(indexes, profile_index)
        return position < len(indexes) and indexes[position] == profile_index

    def add(self, profile_index: int, joined_epoch: int) -> None:
        """Add a member, or move an existing member to its new joined_group_at (a re-join)."""
        self.remove(profile_index)
        key = make_key(joined_epoch, profile_index)
        insort(self._extra, key)
        self._index()[profile_index] = key

    def remove(self, profile_index: int) -> bool:
        """Remove a member; False when the profile was not a member."""
        index = self._index()
        key = index.pop(profile_index, None)
        if key is None:
            return False
        position = bisect_left(self._extra, key)
        if position < len(self._extra) and self._extra[position] == key:
            del self._extra[position]
        else:
            self._removed.add(key)
        return True

    def scan(self, start: int, stop: int, descending: bool = False) -> Iterator[int]:
        """Keys in `[start, stop)` in member order (or reversed)."""
        if start >= stop:
            return iter(())
        base = self._scan_sorted(self._base, start, stop, descending)
        if self._removed:
            removed = self._removed
            base = (key for key in base if key not in removed)
        if not self._extra:
            return base
        extra = self._scan_sorted(self._extra, start, stop, descending)
        return heapq.merge(base, extra, reverse=descending)

    def ordered_keys(self) -> Iterator[int]:
        """Every key in member order."""
        return self.scan(0, 1 << 63)

    @staticmethod
    def _scan_sorted(
        keys: array[int] | list[int], start: int, stop: int, descending: bool
    ) -> Iterator[int]:
        if descending:
            position = bisect_left(keys, stop) - 1
            while position >= 0:
                key = keys[position]
                if key < start:
                    return
                yield key
                position -= 1
        else:
            position = bisect_left(keys, start)
            end = len(keys)
            while position < end:
                key = keys[position]
                if key >= stop:
                    return
                yield key
                position += 1

    def _index(self) -> dict[int, int]:
        # Built on the first mutation only: most segments are never mutated.
        if self._by_index is None:
            self._by_index = {key & INDEX_MASK: key for key in self.ordered_keys()}
            self._base_indexes = None
        return self._by_index
