"""Decoding of answer bodies into values every destination can store."""

from __future__ import annotations

import json
import re
from typing import Any

import orjson

from .. import settings

# An escaped backslash, a surrogate pair, or (named) a NUL or lone surrogate escape. Matching
# `\\` as a unit keeps the count of backslashes right: in JSON, `\\u0000` is a backslash and
# the text "u0000".
_ESCAPE = re.compile(
    rb"\\(?:\\|u[dD][89abAB][0-9a-fA-F]{2}\\u[dD][c-fC-F][0-9a-fA-F]{2}"
    rb"|(?P<unstorable>u(?:0000|[dD][89a-fA-F][0-9a-fA-F]{2})))"
)
_NUL_ESCAPE = b"\\u0000"
_DIGITS_AS_ZERO = bytes.maketrans(b"123456789", b"000000000")
_DIGIT_RUN = b"0" * settings.EXACT_INTEGER_DIGITS
_ZEROS = re.compile(rb"0*")
# What may precede an integer literal (b"": the start of the text); digits after anything
# else sit in a string, a fraction or an exponent.
_BEFORE_NUMBER = frozenset((b"", b":", b",", b"[", b" ", b"\t", b"\r", b"\n"))


def decode_json(body: bytes) -> Any:
    """Decodes an answer into values every destination can store.

    NUL characters and lone UTF-16 surrogates become U+FFFD, in keys and values alike, and
    integers beyond 64 bits stay exact Python ints (orjson would round them to floats). Normal
    pages take orjson after two scans of the raw bytes; only a page with such an escape or
    such a number takes a slower path.

    Raises:
        ValueError: The body is not JSON (a truncated body, an error page).
    """
    if _has_wide_integer(body):
        text = (_storable_escapes(body) if b"\\" in body else body).decode()
        try:
            return json.loads(text, parse_constant=_not_json)
        except RecursionError:
            raise ValueError("JSON nested too deeply") from None
    if b"\\" in body and _NUL_ESCAPE in body:
        body = _storable_escapes(body)
    try:
        return orjson.loads(body)
    except orjson.JSONDecodeError:
        # orjson refuses lone surrogates; any other failure is a broken body
        repaired = _storable_escapes(body) if b"\\" in body else body
        if repaired == body:
            raise
        return orjson.loads(repaired)


def _storable_escapes(body: bytes) -> bytes:
    """The JSON text with every NUL and lone surrogate escape replaced by that of U+FFFD."""
    return _ESCAPE.sub(_storable_escape, body)


def _storable_escape(match: re.Match[bytes]) -> bytes:
    return settings.UNSTORABLE_TEXT_REPLACEMENT if match["unstorable"] else match[0]


def _has_wide_integer(body: bytes) -> bool:
    """Whether the JSON text may hold an integer literal beyond orjson's 64-bit range.

    True for a positive literal of 20 digits or more, or a negative one of 19 or more; false
    alarms (a 20-digit number below 2**64, digits in a string after a colon) only cost the
    slower decoder.
    """
    digits = body.translate(_DIGITS_AS_ZERO)
    start = digits.find(_DIGIT_RUN)
    while start != -1:
        run = _ZEROS.match(digits, start)
        end = run.end() if run else start
        before = body[start - 1 : start]
        if before == b"-" or (before in _BEFORE_NUMBER and end - start > len(_DIGIT_RUN)):
            return True
        start = digits.find(_DIGIT_RUN, end)
    return False


def _not_json(constant: str) -> Any:
    raise ValueError(f"{constant} is not JSON")
