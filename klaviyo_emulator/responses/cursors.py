"""Opaque page cursors: base64url tokens holding a keyset position."""

from __future__ import annotations

import base64
import binascii
from dataclasses import dataclass
from typing import Any
from urllib.parse import unquote

import orjson

from .errors import invalid_cursor

NEXT = "next"
PREV = "prev"
# How `page[cursor]` appears inside a next link, decoded or not.
CURSOR_MARKERS = ("page[cursor]=", "page%5Bcursor%5D=")


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


def token_of(value: str) -> str:
    """The cursor token in a `page[cursor]` value as Klaviyo's official SDKs send it.

    The Python SDK documents passing the whole `links.next` as `page_cursor`. From a link that
    starts with `https://` (all of Klaviyo's) it keeps what follows `page[cursor]`, `=` included,
    so Klaviyo receives `=<token>`; any other link it sends whole. The emulator's links are
    `http://`, so it also reads the token out of such a link, the way the SDK would have (what
    Klaviyo does with a whole link is not known: the SDK never sends it one).

    Args:
        value: The decoded `page[cursor]` query parameter.

    Returns:
        The token to decode; anything unusable is left for `decode` to reject.
    """
    if value.startswith("http://"):
        for marker in CURSOR_MARKERS:
            at = value.rfind(marker)
            if at >= 0:
                value = unquote(value[at + len(marker) :].split("&", 1)[0])
                break
        else:
            return ""
    return value[1:] if value.startswith("=") else value
