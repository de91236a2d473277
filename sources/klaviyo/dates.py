"""Datetimes in Klaviyo's formats: lenient parsing, and the forms filters and state use."""

from __future__ import annotations

import re
from datetime import date, datetime, timezone
from typing import Any

_FRACTION = re.compile(r"(\.\d+)")


def utc_now() -> datetime:
    """The current time, tz-aware UTC."""
    return datetime.now(timezone.utc)


def parse_datetime(value: Any) -> datetime | None:
    """Parses a Klaviyo datetime leniently into tz-aware UTC.

    Accepts `Z` and `+00:00` offsets, a space instead of `T`, any number of fractional
    digits, a bare date, and datetime objects. Naive values are taken as UTC.

    Args:
        value: A string, datetime, date or None.

    Returns:
        The datetime in UTC, or None for None, empty or unparseable values.
    """
    if value is None:
        return None
    if isinstance(value, datetime):
        parsed = value
    elif isinstance(value, date):
        parsed = datetime(value.year, value.month, value.day)
    elif isinstance(value, str):
        parsed_or_none = _parse_iso(value.strip())
        if parsed_or_none is None:
            return None
        parsed = parsed_or_none
    else:
        return None
    if parsed.tzinfo is None:
        return parsed.replace(tzinfo=timezone.utc)
    return parsed.astimezone(timezone.utc)


def _parse_iso(text: str) -> datetime | None:
    if not text:
        return None
    if text.endswith(("Z", "z")):
        text = text[:-1] + "+00:00"
    # Python 3.10 accepts only 3 or 6 fractional digits; normalise to 6.
    text = _FRACTION.sub(lambda m: (m.group(1) + "000000")[:7], text, count=1)
    try:
        return datetime.fromisoformat(text)
    except ValueError:
        return None


def format_filter_datetime(value: datetime) -> str:
    """Formats a datetime for a filter: UTC, whole seconds, `Z` suffix.

    Fractions are dropped (floored), which only widens a `greater-or-equal` bound.
    """
    utc = value.astimezone(timezone.utc) if value.tzinfo else value
    return utc.replace(microsecond=0, tzinfo=None).isoformat() + "Z"


def format_state_datetime(value: datetime) -> str:
    """Formats a datetime for resource state: ISO 8601 in UTC with `+00:00`."""
    return value.astimezone(timezone.utc).isoformat()
