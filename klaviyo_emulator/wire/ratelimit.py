"""Klaviyo's per-account rate limits: fixed burst (1 s) and steady (60 s) windows per bucket.

Every operation has its own bucket sized by its tier (API-NOTES §10), and some a daily cap, as
`spec.operations` gives them. Requests using a parameter value the operation lists in its
`parameter_tiers` (`additional-fields[segment]=profile_count`, `include=segments`, ...) also
count against a stricter bucket per value, shared by every operation that has it. A request
passes only if every bucket it touches has room; a rejected request
consumes nothing. In a scaled mode the windows shrink by the scale factor while the counts stay,
so tests see real 429 behaviour in a fraction of the time.
"""

from __future__ import annotations

import functools
import math
import threading
import time
from collections import Counter
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

from ..spec import operations, shapes
from ..spec.revisions import since

# window lengths in (scaled) seconds; the longer ones are whole multiples of the burst second
STEADY_WINDOW = 60
DAILY_WINDOW = 86400


@dataclass(frozen=True)
class Limit:
    """The counts of one bucket: burst per second, steady per minute, optional daily cap."""

    burst: int
    steady: int
    daily: int | None = None


@dataclass(frozen=True)
class Decision:
    """The limiter's answer: `headers` go on the response as they are."""

    allowed: bool
    retry_after: int = 0
    headers: dict[str, str] = field(default_factory=dict)


@dataclass
class _Window:
    index: int = -1
    count: int = 0

    def used(self, index: int) -> int:
        return self.count if self.index == index else 0

    def add(self, index: int) -> None:
        if self.index != index:
            self.index, self.count = index, 0
        self.count += 1


@dataclass
class _Bucket:
    burst: _Window = field(default_factory=_Window)
    steady: _Window = field(default_factory=_Window)
    daily: _Window = field(default_factory=_Window)


def parse_mode(mode: str | float) -> float | None:
    """Returns the time-scale factor of a mode: None for "off", 1.0 for "real"."""
    if isinstance(mode, str):
        text = mode.strip().lower()
        if text == "off":
            return None
        if text == "real":
            return 1.0
        try:
            scale = float(text)
        except ValueError:
            raise ValueError(
                f"rate limit mode must be 'off', 'real' or a number: {mode!r}"
            ) from None
    else:
        scale = float(mode)
    if not math.isfinite(scale) or scale <= 0:
        raise ValueError(f"rate limit scale must be a positive number: {mode!r}")
    return scale


def limits_for(operation: str, revision: str, query: Mapping[str, str]) -> list[tuple[str, Limit]]:
    """The buckets a request counts against, as (bucket name, limit), strictest last.

    `operation` is a name or a later name (alias) of an operation.
    """
    bucket = _operation_limit(operation, revision[:10])
    extra = _parameter_limits(bucket[0], revision[:10], query)
    return [bucket, *extra] if extra else [bucket]


@functools.lru_cache(maxsize=256)
def _operation_limit(name: str, revision: str) -> tuple[str, Limit]:
    operation = operations.find(name)
    burst, steady = operation.limits(revision)
    return operation.name, Limit(burst, steady, operation.daily_cap)


def _parameter_limits(
    name: str, revision: str, query: Mapping[str, str]
) -> list[tuple[str, Limit]]:
    limits = []
    for tier in operations.BY_NAME[name].parameter_tiers:
        if since(revision, tier.first) and tier.value in _split(query.get(tier.parameter, "")):
            limit = Limit(*shapes.tier_limits(tier.tier, revision))
            limits.append((f"{tier.parameter}={tier.value}", limit))
    return limits


def _split(value: str) -> list[str]:
    return [part.strip() for part in value.split(",")]


class RateLimiter:
    """Thread-safe fixed-window limiter keyed by (account, bucket).

    Windows are aligned on multiples of their length on the limiter's clock, measured in
    scaled seconds (clock seconds times the scale), so a steady window always ends exactly on
    a burst window boundary.
    """

    def __init__(self, mode: str | float = "off", clock: Callable[[], float] = time.monotonic):
        self._clock = clock
        self._lock = threading.Lock()
        self._buckets: dict[tuple[str, str], _Bucket] = {}
        self._scale = parse_mode(mode)
        # (bucket, steady window index, allowed) -> requests: how full each window really was.
        self._history: Counter[tuple[str, int, bool]] = Counter()

    @property
    def scale(self) -> float | None:
        """The time-scale factor, None when limits are off."""
        return self._scale

    def set_mode(self, mode: str | float) -> None:
        """Switches mode and forgets every count (windows of another scale do not compare)."""
        scale = parse_mode(mode)
        with self._lock:
            self._scale = scale
            self._buckets.clear()
            self._history.clear()

    def steady_windows(self) -> list[dict[str, Any]]:
        """Requests allowed and rejected per bucket and steady window, oldest first.

        `start` is where the window began on the limiter's clock, in unscaled seconds.
        """
        with self._lock:
            history, scale = dict(self._history), self._scale
        if scale is None:
            return []
        windows: dict[tuple[str, int], dict[str, Any]] = {}
        for (bucket, index, allowed), count in sorted(history.items()):
            window = windows.setdefault(
                (bucket, index),
                {
                    "bucket": bucket,
                    "start": index * STEADY_WINDOW / scale,
                    "seconds": STEADY_WINDOW / scale,
                    "allowed": 0,
                    "rejected": 0,
                },
            )
            window["allowed" if allowed else "rejected"] += count
        return list(windows.values())

    def check(
        self, account: str, operation: str, revision: str, query: Mapping[str, str]
    ) -> Decision:
        """Counts the request if every bucket has room, else says how long to wait."""
        buckets = limits_for(operation, revision, query)
        scale = self._scale
        if scale is None:
            return _off_decision(buckets)
        with self._lock:
            scaled_now = self._clock() * scale
            second = math.floor(scaled_now)
            states = [self._bucket(account, name) for name, _ in buckets]
            wait = 0.0
            for (_, limit), state in zip(buckets, states, strict=True):
                wait = max(wait, _wait(limit, state, second, scaled_now))
            window = second // STEADY_WINDOW
            if wait > 0:
                self._history[buckets[0][0], window, False] += 1
                retry_after = max(1, math.ceil(wait / scale))
                return Decision(False, retry_after, {"Retry-After": str(retry_after)})
            self._history[buckets[0][0], window, True] += 1
            for state in states:
                state.burst.add(second)
                state.steady.add(window)
                state.daily.add(second // DAILY_WINDOW)
            headers = _headers(buckets, states, second, scaled_now, scale)
        return Decision(True, 0, headers)

    def _bucket(self, account: str, name: str) -> _Bucket:
        key = (account, name)
        state = self._buckets.get(key)
        if state is None:
            state = self._buckets[key] = _Bucket()
        return state


def _wait(limit: Limit, state: _Bucket, second: int, scaled_now: float) -> float:
    """Scaled seconds until the bucket has room again; 0 when it has room now.

    A full window's end lies strictly after `scaled_now` (windows are floor-aligned), so any
    positive wait is a real wait.
    """
    wait = 0.0
    if state.burst.used(second) >= limit.burst:
        wait = max(wait, second + 1 - scaled_now)
    if state.steady.used(second // STEADY_WINDOW) >= limit.steady:
        wait = max(wait, (second // STEADY_WINDOW + 1) * STEADY_WINDOW - scaled_now)
    if limit.daily is not None and state.daily.used(second // DAILY_WINDOW) >= limit.daily:
        wait = max(wait, (second // DAILY_WINDOW + 1) * DAILY_WINDOW - scaled_now)
    return wait


def _headers(
    buckets: list[tuple[str, Limit]],
    states: list[_Bucket],
    second: int,
    scaled_now: float,
    scale: float,
) -> dict[str, str]:
    """RateLimit-* of the steady window of the bucket with the least room left."""
    remaining_by_bucket = [
        (limit.steady - state.steady.used(second // STEADY_WINDOW), limit)
        for (_, limit), state in zip(buckets, states, strict=True)
    ]
    remaining, limit = min(remaining_by_bucket, key=lambda pair: pair[0])
    reset = max(1, math.ceil(((second // STEADY_WINDOW + 1) * STEADY_WINDOW - scaled_now) / scale))
    return {
        "RateLimit-Limit": str(limit.steady),
        "RateLimit-Remaining": str(max(0, remaining)),
        "RateLimit-Reset": str(reset),
    }


def _off_decision(buckets: list[tuple[str, Limit]]) -> Decision:
    """Allowed, with the tier's numbers; a fresh headers dict, since callers may add to it."""
    limit = min((limit for _, limit in buckets), key=lambda item: item.steady)
    headers = {
        "RateLimit-Limit": str(limit.steady),
        "RateLimit-Remaining": str(limit.steady - 1),
        "RateLimit-Reset": str(STEADY_WINDOW),
    }
    return Decision(True, 0, headers)
