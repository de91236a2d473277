"""Client-side rate limiting per Klaviyo endpoint: a burst and a steady window, shared by threads.

Klaviyo counts requests per account and endpoint in fixed 1-second and 1-minute windows.
A sliding log of send times never exceeds a limit in any window of the same length, so it
never exceeds a fixed window either. Klaviyo reports the steady window on every answer
(`RateLimit-Remaining`, `RateLimit-Reset`); while that report is current it replaces the
local steady log, which accounts for other clients of the account and for the window's real
boundaries. A 429's `Retry-After` pauses every thread using the endpoint, so concurrency does
not turn into a 429 storm.
"""

from __future__ import annotations

import hashlib
import threading
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass
from typing import NamedTuple

Clock = Callable[[], float]


class Interrupted(Exception):
    """A wait was cut short because the run is being stopped."""


@dataclass
class _ServerWindow:
    """Klaviyo's last word on the steady window: requests left until `ends_at`."""

    remaining: int
    ends_at: float


class Admission(NamedTuple):
    """A slot taken by `EndpointLimiter.acquire`.

    Attributes:
        waited: Seconds spent waiting for it.
        ticket: How many requests the limiter had admitted, this one included: hand it to
            `observe` with the answer to this request.
    """

    waited: float
    ticket: int


class EndpointLimiter:
    """Admits requests so that at most `burst` go out per second and `steady` per minute.

    Args:
        burst: Requests allowed in any burst window.
        steady: Requests allowed in any steady window.
        burst_window: Length of the burst window in seconds.
        steady_window: Length of the steady window in seconds.
        clock: Monotonic clock in seconds; replaceable in tests.
    """

    def __init__(
        self,
        burst: int,
        steady: int,
        burst_window: float = 1.0,
        steady_window: float = 60.0,
        clock: Clock = time.monotonic,
    ) -> None:
        if burst < 1 or steady < 1:
            raise ValueError("rate limits must allow at least one request per window")
        self._burst = (burst, burst_window, deque[float]())
        self._steady = (steady, steady_window, deque[float]())
        self._clock = clock
        self._lock = threading.Lock()
        self._resume_at = 0.0
        self._server: _ServerWindow | None = None
        self._admitted = 0

    def delay(self) -> float:
        """Seconds until a request may go out; 0 means now. Does not reserve a slot."""
        with self._lock:
            return self._delay(self._clock())

    def try_acquire(self) -> float:
        """Reserves a slot if one is free now.

        Returns:
            0.0 when the slot was taken, else the seconds to wait before trying again.
        """
        return self._take()[0]

    def acquire(self, stop: threading.Event | None = None) -> Admission:
        """Blocks until a slot is free and takes it.

        Args:
            stop: When set, the wait ends early with `Interrupted`.

        Returns:
            The seconds spent waiting and the slot's ticket for `observe`.
        """
        waited = 0.0
        while True:
            wait, ticket = self._take()
            if wait <= 0:
                return Admission(waited, ticket)
            sleep_interruptibly(wait, stop)
            waited += wait

    def _take(self) -> tuple[float, int]:
        with self._lock:
            now = self._clock()
            wait = self._delay(now)
            if wait <= 0:
                self._burst[2].append(now)
                self._steady[2].append(now)
                self._admitted += 1
                if self._server is not None:
                    self._server.remaining -= 1
            return wait, self._admitted

    def pause(self, seconds: float) -> None:
        """Stops every user of this endpoint for `seconds` (a 429's Retry-After)."""
        with self._lock:
            self._resume_at = max(self._resume_at, self._clock() + max(0.0, seconds))

    def observe(
        self, remaining: int | None, reset: float | None, ticket: int | None = None
    ) -> None:
        """Takes Klaviyo's count of the steady window from `RateLimit-*` headers.

        Args:
            remaining: `RateLimit-Remaining` of an answer.
            reset: `RateLimit-Reset` of the same answer, in seconds.
            ticket: The answered request's `Admission.ticket`. The requests admitted after
                it may not be in Klaviyo's count yet, so they are taken off what remains;
                taking Klaviyo's number as it comes overfills the window by about one
                request per thread (429s at each window's end).
        """
        if remaining is None or reset is None:
            return
        with self._lock:
            later = self._admitted - ticket if ticket is not None else 0
            ends_at = self._clock() + max(0.0, reset)
            self._server = _ServerWindow(int(remaining) - later, ends_at)

    def _delay(self, now: float) -> float:
        wait = max(self._resume_at - now, _log_delay(self._burst, now))
        server = self._server
        if server is not None and now >= server.ends_at:
            self._server = server = None
        if server is None:
            return max(wait, _log_delay(self._steady, now), 0.0)
        _log_delay(self._steady, now)  # keeps the local log trimmed for when reports stop
        if server.remaining <= 0:
            wait = max(wait, server.ends_at - now)
        return max(wait, 0.0)


def _log_delay(window: tuple[int, float, deque[float]], now: float) -> float:
    """Seconds until the sliding log `window` has room; trims entries that aged out."""
    limit, length, sent = window
    while sent and sent[0] <= now - length:
        sent.popleft()
    if len(sent) < limit:
        return 0.0
    return sent[len(sent) - limit] + length - now


def sleep_interruptibly(seconds: float, stop: threading.Event | None = None) -> None:
    """Sleeps `seconds`, raising `Interrupted` as soon as `stop` is set."""
    if stop is None:
        time.sleep(seconds)
    elif stop.wait(seconds):
        raise Interrupted()


_REGISTRY: dict[tuple[str, str, str], EndpointLimiter] = {}
_REGISTRY_LOCK = threading.Lock()


def shared_limiter(
    base_url: str,
    api_key: str,
    operation: str,
    burst: int,
    steady: int,
    burst_window: float = 1.0,
    steady_window: float = 60.0,
) -> EndpointLimiter:
    """Returns the process-wide limiter of one endpoint of one account.

    Limits belong to the account, so every source instance using the same key and base URL
    shares one limiter per endpoint. The key is only kept as a digest.
    """
    account = hashlib.sha256(api_key.encode()).hexdigest()[:16]
    registry_key = (base_url.rstrip("/"), account, operation)
    with _REGISTRY_LOCK:
        limiter = _REGISTRY.get(registry_key)
        if limiter is None:
            limiter = EndpointLimiter(burst, steady, burst_window, steady_window)
            _REGISTRY[registry_key] = limiter
        return limiter
