"""Pages of the account's profiles for get_profiles: its sort, its filter, its cursors.

Two plans, both keyset paging over `backend.ordering` sort keys (tuples ending with the profile
index, so ties on the sorted value page in id order and nothing is skipped or repeated):

* a filter on an identifier (`id`, `email`, `phone_number`, `external_id`, `_kx`, the list
  suppressions) names a handful of profiles, and a range of another time than the sorted one
  may hold few (up to RANGE_CANDIDATES): those are looked up, checked against the whole filter
  and sorted in memory, once for all the pages of the listing (`Listings`);
* anything else walks the sort order. Conditions on the sorted time (`greater-than(updated,…)`
  with `sort=updated`) become the walk's bounds, so an incremental read starts where it
  should; the other conditions are checked profile by profile on the way.
"""

from __future__ import annotations

import math
from bisect import bisect_left, bisect_right
from collections.abc import Callable, Iterator, Sequence
from datetime import datetime
from itertools import takewhile
from typing import Any

from ..backend.account import Account, NotFound
from ..backend.ordering import (
    CREATED,
    EMAIL,
    ID,
    LOOKUP_FIELDS,
    NULL_EPOCH,
    SUPPRESSION_TIMESTAMP,
    UPDATED,
    Key,
)
from ..spec.operations import LIST_SUPPRESSIONS
from . import cursors, filters, paging
from .errors import invalid_cursor
from .params import Query

# beyond every profile index, and before every one: the ends of a time's keys
AFTER_EVERY_INDEX, BEFORE_EVERY_INDEX = 1 << 32, -1
# what a profile never has: the emulated account holds no `_kx` and no list suppressions
NEVER_SET = (
    "_kx",
    *(f"{LIST_SUPPRESSIONS}.{name}" for name in ("list_id", "reason", "timestamp")),
)
Walk = Callable[[Any, bool], Iterator[Key]]
Plan = list[Key] | None
TIME_FIELDS = (UPDATED, CREATED, SUPPRESSION_TIMESTAMP)
# a time range filtered on, holding up to this many profiles, is read and sorted in memory
RANGE_CANDIDATES = 50_000


class Listings:
    """The plans of the last few listings, so that paging through one sorts it once.

    A plan is the sorted keys of a listing read in memory, or None for a listing that walks a
    sort order. A listing is known by its cursor scope (sort and filter), and its plan is
    stale once a profile is created or changed.
    """

    SIZE = 4

    def __init__(self) -> None:
        self._plans: dict[tuple[str, int], list[Key] | None] = {}

    def plan(self, scope: str, version: int, build: Callable[[], list[Key] | None]) -> Plan:
        key = (scope, version)
        plan = self._plans.pop(key) if key in self._plans else build()
        while len(self._plans) >= self.SIZE:
            del self._plans[next(iter(self._plans))]
        self._plans[key] = plan  # the most recent last
        return plan


def profile_page(account: Account, query: Query, scope: str, listings: Listings) -> paging.Page:
    """The page of profile keys a get_profiles query asks for.

    Raises:
        ApiError: 400 for a cursor of another listing or one that does not decode.
    """
    sort = query.sort or ID
    field, descending = sort.lstrip("-"), sort.startswith("-")
    cursor = cursors.decode(query.cursor, scope) if query.cursor is not None else None
    if cursor is not None and not _fits(cursor.position, field):
        raise invalid_cursor()
    conditions = query.conditions
    keys = listings.plan(
        scope, account.profile_changes, lambda: _in_memory(account, conditions, field)
    )
    if keys is None:
        walk = _ordered_walk(account, conditions, field, descending)
    else:
        walk = _list_walk(keys, descending)
    return paging.keyset_page(walk, query.page_size, cursor, scope)


def _in_memory(
    account: Account, conditions: Sequence[filters.Condition], field: str
) -> list[Key] | None:
    """The sorted keys of a listing that a lookup or a time range narrows down to few
    profiles; None for one that walks the sort order instead."""
    candidates = _candidates(account, conditions)
    if candidates is None and _bounds(conditions, field)[:2] == (None, None):
        candidates = _in_time_range(account, conditions)
    if candidates is None:
        return None
    matching = [index for index in candidates if _matches(account, conditions, index)]
    return sorted(account.profile_order.key(field, index) for index in matching)


def _fits(position: tuple[Any, ...], field: str) -> bool:
    """True when a cursor's position is a sort key of the field (ints, or an email's key)."""
    kinds: tuple[type, ...] = (int,) if field == ID else (int, int)
    if field == EMAIL:
        kinds = (bool, str, int)
    return len(position) == len(kinds) and all(
        type(value) is kind for value, kind in zip(position, kinds, strict=True)
    )


def _as_key(position: Any) -> Key | None:
    # paging hands a one-element position over unwrapped
    return position if position is None or isinstance(position, tuple) else (position,)


def _candidates(account: Account, conditions: Sequence[filters.Condition]) -> set[int] | None:
    """The profiles that identifier conditions allow (every condition must hold), or None
    when no condition names an identifier."""
    found: set[int] | None = None
    for condition in conditions:
        if condition.field in NEVER_SET:
            return set()
        if condition.field != ID and condition.field not in LOOKUP_FIELDS:
            continue
        values = condition.value if isinstance(condition.value, list) else [condition.value]
        indexes: set[int] = set()
        for value in values:
            indexes |= _lookup(account, condition.field, value)
        found = indexes if found is None else found & indexes
    return found


def _in_time_range(account: Account, conditions: Sequence[filters.Condition]) -> set[int] | None:
    """The profiles in a time range the conditions set, when it holds few enough to sort in
    memory; None otherwise. Walking another order for them could scan every profile."""
    order = account.profile_order
    for field in TIME_FIELDS:
        low, high, _ = _bounds(conditions, field)
        if (low is None and high is None) or order.span(field, low, high) > RANGE_CANDIDATES:
            continue
        keys = order.scan(field, low, descending=False)
        if high is not None:
            keys = takewhile(high.__gt__, keys)
        return {key[-1] for key in keys}
    return None


def _lookup(account: Account, field: str, value: object) -> set[int]:
    if field != ID:
        return account.profile_order.lookup(field, value)
    try:
        return {account.profile_index(value)} if isinstance(value, str) else set()
    except NotFound:
        return set()


def _matches(account: Account, conditions: Sequence[filters.Condition], index: int) -> bool:
    names = {condition.field for condition in conditions}
    return filters.matches(conditions, account.profile_order.values(index, names))


def _list_walk(ordered: list[Key], descending: bool) -> Walk:
    def walk(after: Any, forward: bool) -> Iterator[Key]:
        key = _as_key(after)
        if forward != descending:
            start = 0 if key is None else bisect_right(ordered, key)
            return (ordered[position] for position in range(start, len(ordered)))
        end = len(ordered) if key is None else bisect_left(ordered, key)
        return (ordered[position] for position in range(end - 1, -1, -1))

    return walk


def _ordered_walk(
    account: Account, conditions: Sequence[filters.Condition], field: str, descending: bool
) -> Walk:
    low, high, rest = _bounds(conditions, field)
    order = account.profile_order

    def walk(after: Any, forward: bool) -> Iterator[Key]:
        key = _as_key(after)
        if forward != descending:
            start = low if key is None or (low is not None and key < low) else key
            keys = order.scan(field, start, descending=False)
            if high is not None:
                keys = takewhile(high.__gt__, keys)
        else:
            start = high if key is None or (high is not None and key > high) else key
            keys = order.scan(field, start, descending=True)
            if low is not None:
                keys = takewhile(low.__lt__, keys)
        if not rest:
            return keys
        return (found for found in keys if _matches(account, rest, found[-1]))

    return walk


def _bounds(
    conditions: Sequence[filters.Condition], field: str
) -> tuple[Key | None, Key | None, list[filters.Condition]]:
    """Exclusive key bounds from the comparisons on the sorted time, and the other conditions.

    Times are whole seconds, so each comparison is exactly a bound on `(epoch, index)` keys;
    a bound on a time also leaves out profiles without one, as the comparison would.
    """
    low: Key | None = None
    high: Key | None = None
    rest: list[filters.Condition] = []
    for condition in conditions:
        value = condition.value
        if condition.field != field or not isinstance(value, datetime):
            rest.append(condition)
            continue
        moment = value.timestamp()
        if condition.operator == "greater-than":  # epoch > moment
            low = _larger(low, (math.floor(moment), AFTER_EVERY_INDEX))
        elif condition.operator == "greater-or-equal":  # epoch >= ceil(moment)
            low = _larger(low, (math.ceil(moment) - 1, AFTER_EVERY_INDEX))
        elif condition.operator == "less-than":  # epoch <= ceil(moment) - 1
            high = _smaller(high, (math.ceil(moment), BEFORE_EVERY_INDEX))
        else:  # less-or-equal: epoch <= floor(moment)
            high = _smaller(high, (math.floor(moment) + 1, BEFORE_EVERY_INDEX))
    if high is not None and low is None:
        low = (NULL_EPOCH, AFTER_EVERY_INDEX)
    return low, high, rest


def _larger(bound: Key | None, candidate: Key) -> Key:
    return candidate if bound is None or candidate > bound else bound


def _smaller(bound: Key | None, candidate: Key) -> Key:
    return candidate if bound is None or candidate < bound else bound
