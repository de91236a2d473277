"""Opaque page cursors: base64url tokens holding a keyset position."""

from __future__ import annotations

import base64
import binascii
from dataclasses import dataclass
from typing import Any

import orjson

from .errors import invalid_cursor

NEXT = "next"
PREV = "prev"


@dataclass(frozen=True)
class Cursor:
    """Where a page starts: strictly after (`next`) or strictly before (`prev`) `position`.

    `scope` binds the cursor to the listing it came from (endpoint, segment, sort and filter), so a cursor
    used elsewhere is rejected instead of paging something unrelated.
    """

    direction: str
    scope: str
    position: tuple[Any, ...]


def encode(cursor: Cursor) -> str:
    raw = orjson.dumps([cursor.direction, cursor.scope, list(cursor.position)])
    return base64.urlsafe_b64encode(raw).rstrip(b"=").decode("ascii")


def decode(token: str, scope: str) -> Cursor:
    """Parse a cursor made for `scope`; anything else is Klaviyo's "Invalid cursor provided." 400."""
    try:
        raw = base64.urlsafe_b64decode(token + "=" * (-len(token) % 4))
        direction, cursor_scope, position = orjson.loads(raw)
    except (binascii.Error, ValueError, TypeError):
        raise invalid_cursor() from None
    if direction not in (NEXT, PREV) or cursor_scope != scope or not isinstance(position, list):
        raise invalid_cursor()
    return Cursor(direction, cursor_scope, tuple(position))
