"""Datetime conversions: epoch seconds inside, `YYYY-MM-DDTHH:MM:SS+00:00` on the wire."""

from __future__ import annotations

import functools
import time
from datetime import datetime, timezone

SECONDS_PER_DAY = 86_400
# Every time of day, pre-rendered: formatting runs several times per profile rendered.
_TIMES_OF_DAY = tuple(
    f"T{s // 3600:02d}:{s // 60 % 60:02d}:{s % 60:02d}+00:00" for s in range(SECONDS_PER_DAY)
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
