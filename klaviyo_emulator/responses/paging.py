"""Keyset pagination over segment members, lists in memory and any ordered walk, plus page links."""

from __future__ import annotations

import math
from bisect import bisect_left, bisect_right
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass
from itertools import islice
from typing import Any
from urllib.parse import quote, urlencode

from ..backend.memberships import SegmentMembers, make_key
from . import cursors, filters

KEY_SPACE_END = 1 << 63

Predicate = Callable[[int], bool] | None


@dataclass
class Page:
    """One page of keys in listing order, and the cursors around it (None when absent)."""

    keys: list[Any]
    next: str | None
    prev: str | None


def epoch_range(conditions: Sequence[filters.Condition]) -> tuple[int, int]:
    """The membership key range `[start, stop)` that the joined_group_at conditions allow."""
    lower, lower_inclusive, upper, upper_inclusive = filters.joined_group_at_bounds(conditions)
    start, stop = 0, KEY_SPACE_END
    # joined_group_at is held in whole seconds, so fractional bounds round inward.
    if lower is not None:
        value = lower.timestamp()
        first = math.ceil(value) if lower_inclusive else math.floor(value) + 1
        start = make_key(max(first, 0), 0)
    if upper is not None:
        value = upper.timestamp()
        last = math.floor(value) if upper_inclusive else math.ceil(value) - 1
        stop = make_key(last + 1, 0) if last >= 0 else 0
    return start, stop


def member_page(
    members: SegmentMembers,
    conditions: Sequence[filters.Condition],
    descending: bool,
    size: int,
    cursor: cursors.Cursor | None,
    scope: str,
    predicate: Predicate,
) -> Page:
    """A page of membership keys in (joined_group_at, profile id) order or its reverse."""
    start, stop = epoch_range(conditions)

    def walk(after: int | None, forward: bool) -> Iterator[int]:
        ascending = forward != descending
        if ascending:
            low = start if after is None else max(start, after + 1)
            keys = members.scan(low, stop, descending=False)
        else:
            high = stop if after is None else min(stop, after)
            keys = members.scan(start, high, descending=True)
        return keys if predicate is None else (key for key in keys if predicate(key))

    return keyset_page(walk, size, cursor, scope)


def list_page(
    ordered: Sequence[Any],
    descending: bool,
    size: int,
    cursor: cursors.Cursor | None,
    scope: str,
) -> Page:
    """A page over an in-memory list of comparable keys sorted ascending."""

    def walk(after: Any, forward: bool) -> Iterator[Any]:
        if forward != descending:
            position = 0 if after is None else bisect_right(ordered, after)
            return iter(ordered[position:])
        position = len(ordered) if after is None else bisect_left(ordered, after)
        return reversed(ordered[:position])

    return keyset_page(walk, size, cursor, scope)


def keyset_page(
    walk: Callable[[Any, bool], Iterator[Any]],
    size: int,
    cursor: cursors.Cursor | None,
    scope: str,
) -> Page:
    """A page of `size` keys from a listing, and the cursors around it.

    Args:
        walk: `walk(after, forward)` gives the listing's keys strictly after the position
            `after` (None: from the start), in listing order when `forward`, else reversed.
        size: The page size.
        cursor: Where the page starts; None for the first page.
        scope: The listing the cursors are valid for.
    """
    position = _position(cursor)
    if cursor is None or cursor.direction == cursors.NEXT:
        found = list(islice(walk(position, True), size + 1))
        keys = found[:size]
        more_after = len(found) > size
        more_before = cursor is not None and _exists(walk(keys[0] if keys else position, False))
    else:
        found = list(islice(walk(position, False), size + 1))
        keys = found[:size][::-1]
        more_before = len(found) > size
        more_after = _exists(walk(keys[-1] if keys else position, True))
    next_token = prev_token = None
    if more_after and keys:
        next_token = cursors.encode(cursors.Cursor(cursors.NEXT, scope, _as_position(keys[-1])))
    if more_before:
        anchor = keys[0] if keys else position
        prev_token = cursors.encode(cursors.Cursor(cursors.PREV, scope, _as_position(anchor)))
    return Page(keys=keys, next=next_token, prev=prev_token)


def _position(cursor: cursors.Cursor | None) -> Any:
    if cursor is None:
        return None
    position = cursor.position
    return position[0] if len(position) == 1 else tuple(position)


def _as_position(key: Any) -> tuple[Any, ...]:
    return tuple(key) if isinstance(key, tuple) else (key,)


def _exists(items: Iterable[Any]) -> bool:
    return next(iter(items), None) is not None


def page_link(base: str, path: str, pairs: list[tuple[str, str]], token: str) -> str:
    """The request URL with `page[cursor]` replaced (or appended) last, percent-encoded."""
    kept = [(name, value) for name, value in pairs if name != "page[cursor]"]
    kept.append(("page[cursor]", token))
    return f"{base}{path}?{urlencode(kept, quote_via=quote, safe='')}"
