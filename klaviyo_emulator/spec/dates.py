"""Klaviyo's time formats: `YYYY-MM-DDTHH:MM:SS+00:00` in responses, and the forms filters take.

Inside the emulator a time is whole epoch seconds.
"""

from __future__ import annotations

import functools
import re
import time
from datetime import date, datetime, timedelta, timezone

SECONDS_PER_DAY = 86_400
# Every time of day, pre-rendered: formatting runs several times per profile rendered.
_TIMES_OF_DAY = tuple(
    f"T{s // 3600:02d}:{s // 60 % 60:02d}:{s % 60:02d}+00:00" for s in range(SECONDS_PER_DAY)
)
_DATETIME_RE = re.compile(
    r"(\d{4})-(\d{2})-(\d{2})"
    r"(?:[T ](\d{2}):(\d{2})(?::(\d{2})(?:\.(\d{1,9}))?)?"
    r"(Z|z|[+-]\d{2}:?\d{2})?)?"
)


@functools.lru_cache(maxsize=8192)
def _date(day: int) -> str:
    return time.strftime("%Y-%m-%d", time.gmtime(day * SECONDS_PER_DAY))


def render_epoch(epoch: int) -> str:
    """Render epoch seconds as Klaviyo renders response datetimes."""
    day, second = divmod(epoch, SECONDS_PER_DAY)
    return _date(day) + _TIMES_OF_DAY[second]


def epoch_to_datetime(epoch: int) -> datetime:
    """Epoch seconds as a tz-aware UTC datetime."""
    return datetime.fromtimestamp(epoch, tz=timezone.utc)


def datetime_to_epoch(value: datetime) -> int:
    """A datetime (naive means UTC) as whole epoch seconds, truncating fractions."""
    if value.tzinfo is None:
        value = value.replace(tzinfo=timezone.utc)
    return int(value.timestamp() // 1)


def parse_datetime(text: str) -> datetime | None:
    """Parses the datetime forms Klaviyo accepts in filters (API-NOTES §6.2), as tz-aware UTC.

    Accepts `Z` and `±HH:MM` offsets, fractional seconds, a space instead of `T`, naive values
    (taken as UTC) and date-only values (midnight UTC). Returns None for anything else.
    """
    return _parse_datetime_cached(text)


@functools.lru_cache(maxsize=4096)
def _parse_datetime_cached(text: str) -> datetime | None:
    match = _DATETIME_RE.fullmatch(text)
    if match is None:
        return None
    year, month, day, hour, minute, second, fraction, offset = match.groups()
    try:
        if hour is None:
            date(int(year), int(month), int(day))
            return datetime(int(year), int(month), int(day), tzinfo=timezone.utc)
        micros = int((fraction or "0")[:6].ljust(6, "0"))
        tz = _offset(offset)
        value = datetime(
            int(year), int(month), int(day), int(hour), int(minute), int(second or 0), micros, tz
        )
    except ValueError:
        return None
    return value.astimezone(timezone.utc)


def _offset(text: str | None) -> timezone:
    if text is None or text in ("Z", "z"):
        return timezone.utc
    sign = -1 if text[0] == "-" else 1
    digits = text[1:].replace(":", "")
    hours, minutes = int(digits[:2]), int(digits[2:])
    if hours > 23 or minutes > 59:
        raise ValueError("offset out of range")
    return timezone(sign * timedelta(hours=hours, minutes=minutes))
