"""The account's profiles in the orders `get_profiles` sorts by, their filterable values, and
lookups by identifier.

Generated profiles are never held as documents. For a sort field whose order differs from
index order (`updated`, `email`, the suppression time) the generated profiles' order is a
compact array of profile indexes (4 bytes each), built from hashes on first use and kept: the
generated data never changes. Index order is already the order of `id`, of `created` (a
generated profile is created after every lower index) and of the list-suppression time (no
profile has one). Profiles created or changed through the emulator (the account's overrides)
are skipped in those arrays and merged in from their current documents on every scan, so a
change shows at once and never rebuilds an array.

A sort key is a tuple ending with the profile index: keys are unique, and ties on the sorted
value fall back to index order, which is id order (ids are ULIDs of increasing creation times).
"""

from __future__ import annotations

import functools
import heapq
import re
from array import array
from bisect import bisect_left, bisect_right
from collections.abc import Callable, Collection, Iterable, Iterator, Mapping, Sequence
from datetime import datetime
from typing import Any

from ..spec.dates import datetime_to_epoch, epoch_to_datetime, parse_datetime
from ..spec.operations import LIST_SUPPRESSIONS, SUPPRESSION
from .memberships import INDEX_BITS, INDEX_MASK
from .profiles import ProfileFactory

Key = tuple[Any, ...]

ID, CREATED, UPDATED, EMAIL = "id", "created", "updated", "email"
PHONE_NUMBER, EXTERNAL_ID = "phone_number", "external_id"
SUPPRESSION_TIMESTAMP = f"{SUPPRESSION}.timestamp"
LIST_SUPPRESSION_TIMESTAMP = f"{LIST_SUPPRESSIONS}.timestamp"
SORT_FIELDS = (ID, CREATED, UPDATED, EMAIL, SUPPRESSION_TIMESTAMP, LIST_SUPPRESSION_TIMESTAMP)
LOOKUP_FIELDS = (EMAIL, PHONE_NUMBER, EXTERNAL_ID)
# A missing time sorts before every real one (and a missing email before every address).
NULL_EPOCH = -(1 << 53)
# Generated identifiers embed the profile index (see `profiles`), which finds the one
# candidate a value can belong to without a scan.
_EMAIL_INDEX = re.compile(r"\.(\d+)@[^@]*$")
_PHONE_INDEX = re.compile(r"\+\d+(\d{7})")
_EXTERNAL_INDEX = re.compile(r"ext-(\d{8,})")
PHONE_CYCLE = 10_000_000


class ProfileOrder:
    """Sort keys, ordered scans, filter values and identifier lookups over every profile.

    Args:
        factory: The generated profiles.
        overrides: The account's documents of profiles created or changed through it, by
            index (a live mapping: changes are seen on the next call).
        profile_id: The id of a profile index.
    """

    def __init__(
        self,
        factory: ProfileFactory,
        overrides: Mapping[int, Mapping[str, Any]],
        profile_id: Callable[[int], str],
    ) -> None:
        self.factory = factory
        self._overrides = overrides
        self._profile_id = profile_id
        self._orders: dict[str, array[int]] = {}

    # --- sorting --------------------------------------------------------------------------------

    def key(self, field: str, index: int) -> Key:
        """The sort key of a profile as it is now."""
        document = self._overrides.get(index)
        if document is None or field in (ID, SUPPRESSION_TIMESTAMP, LIST_SUPPRESSION_TIMESTAMP):
            # ids and subscriptions never change: a created profile's are generated too
            return self._generated_key(field, index)
        if field == EMAIL:
            return _text_key(_text(document.get(EMAIL)), index)
        return (_epoch(document.get(field)), index)

    def scan(self, field: str, after: Key | None, descending: bool) -> Iterator[Key]:
        """Every profile's key strictly after `after` in ascending order, or strictly before it
        in descending order; from the first (or last) profile when `after` is None."""
        order = self._order(field)
        generated = functools.partial(self._generated_key, field)
        overrides = self._overrides
        changed = sorted(self.key(field, index) for index in overrides)
        if descending:
            end = len(order) if after is None else bisect_left(order, after, key=generated)
            if after is not None:
                changed = [key for key in changed if key < after]
            base = _keys(order, range(end - 1, -1, -1), overrides, generated)
            return heapq.merge(base, reversed(changed), reverse=True)
        start = 0 if after is None else bisect_right(order, after, key=generated)
        if after is not None:
            changed = [key for key in changed if key > after]
        return heapq.merge(_keys(order, range(start, len(order)), overrides, generated), changed)

    def span(self, field: str, low: Key | None, high: Key | None) -> int:
        """At most how many profiles have keys strictly between `low` and `high` (None: no
        bound), found by bisection: every changed profile is counted in."""
        order = self._order(field)
        generated = functools.partial(self._generated_key, field)
        start = 0 if low is None else bisect_right(order, low, key=generated)
        end = len(order) if high is None else bisect_left(order, high, key=generated)
        return max(0, end - start) + len(self._overrides)

    def _order(self, field: str) -> Sequence[int]:
        """The generated profiles' indexes in ascending key order."""
        if field in (ID, CREATED, LIST_SUPPRESSION_TIMESTAMP):
            return range(self.factory.count)
        order = self._orders.get(field)
        if order is None:
            order = self._orders[field] = self._build(field)
        return order

    def _build(self, field: str) -> array[int]:
        count = self.factory.count
        if field == UPDATED:
            # (updated, index) packed into one int: the cheapest thing to sort by the million
            updated = self.factory.updated_epoch
            packed = sorted(updated(index) << INDEX_BITS | index for index in range(count))
            return array("I", [key & INDEX_MASK for key in packed])
        return array("I", sorted(range(count), key=functools.partial(self._generated_key, field)))

    def _generated_key(self, field: str, index: int) -> Key:
        factory = self.factory
        if field == ID:
            return (index,)
        if field == CREATED:
            return (factory.created_epoch(index), index)
        if field == UPDATED:
            return (factory.updated_epoch(index), index)
        if field == EMAIL:
            return _text_key(factory.email(index), index)
        if field == SUPPRESSION_TIMESTAMP:
            suppression = factory.suppression(index)
            return (NULL_EPOCH if suppression is None else suppression[1], index)
        return (NULL_EPOCH, index)

    # --- filtering ------------------------------------------------------------------------------

    def values(self, index: int, names: Collection[str]) -> dict[str, object]:
        """A profile's values of the filterable fields in `names`, datetimes as datetimes.

        A value the emulator holds as exact JSON text (`update_profile_exactly`) reads as None.
        """
        values: dict[str, object] = dict.fromkeys(names)
        document = self._overrides.get(index)
        if ID in values:
            values[ID] = self._profile_id(index)
        if document is None:
            if values.keys() & LOOKUP_FIELDS:
                found = dict(zip(LOOKUP_FIELDS, self.factory.identifiers(index), strict=True))
                values.update((name, found[name]) for name in LOOKUP_FIELDS if name in values)
            if CREATED in values:
                values[CREATED] = epoch_to_datetime(self.factory.created_epoch(index))
            if UPDATED in values:
                values[UPDATED] = epoch_to_datetime(self.factory.updated_epoch(index))
        else:
            for name in LOOKUP_FIELDS:
                if name in values:
                    values[name] = _text(document.get(name))
            for name in (CREATED, UPDATED):
                if name in values:
                    values[name] = _datetime(document.get(name))
        if values.keys() & {SUPPRESSION_TIMESTAMP, f"{SUPPRESSION}.reason"}:
            suppression = self.factory.suppression(index)
            if suppression is not None:
                values[f"{SUPPRESSION}.reason"] = suppression[0]
                values[SUPPRESSION_TIMESTAMP] = epoch_to_datetime(suppression[1])
        return {name: values[name] for name in names}

    def lookup(self, field: str, value: object) -> set[int]:
        """The indexes of the profiles whose `email`, `phone_number` or `external_id` is `value`."""
        if not isinstance(value, str):
            return set()
        overrides = self._overrides
        found = {index for index, document in overrides.items() if document.get(field) == value}
        position = LOOKUP_FIELDS.index(field)
        for index in self._candidates(field, value):
            if index not in overrides and self.factory.identifiers(index)[position] == value:
                found.add(index)
        return found

    def _candidates(self, field: str, value: str) -> Iterable[int]:
        """The generated profiles that can hold an identifier: those whose index it embeds."""
        count = self.factory.count
        if field == PHONE_NUMBER:
            match = _PHONE_INDEX.fullmatch(value)
            return range(int(match[1]), count, PHONE_CYCLE) if match else ()
        pattern = _EMAIL_INDEX.search(value) if field == EMAIL else _EXTERNAL_INDEX.fullmatch(value)
        if pattern is None or int(pattern[1]) >= count:
            return ()
        return (int(pattern[1]),)


def _keys(
    order: Sequence[int],
    positions: range,
    overrides: Mapping[int, object],
    generated: Callable[[int], Key],
) -> Iterator[Key]:
    """The generated keys at `positions` of `order`, skipping profiles the overrides replace."""
    for position in positions:
        index = order[position]
        if index not in overrides:
            yield generated(index)


def _text_key(text: str | None, index: int) -> Key:
    return (text is not None, text or "", index)


def _text(value: object) -> str | None:
    return value if isinstance(value, str) else None


def _datetime(value: object) -> datetime | None:
    return parse_datetime(value) if isinstance(value, str) else None


def _epoch(value: object) -> int:
    parsed = _datetime(value)
    return NULL_EPOCH if parsed is None else datetime_to_epoch(parsed)
