"""Request counters of a running emulator."""

from __future__ import annotations

import threading
from collections import Counter


class Stats:
    """Counts every request, rejected ones included; thread-safe."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self.requests: Counter[str] = Counter()
        self.requests_by_segment: Counter[str] = Counter()
        self.statuses: Counter[int] = Counter()
        self.throttled = 0
        self.max_in_flight = 0
        self.total = 0
        self._in_flight = 0

    def begin(self) -> None:
        """A request arrived."""
        with self._lock:
            self.total += 1
            self._in_flight += 1
            self.max_in_flight = max(self.max_in_flight, self._in_flight)

    def end(self, operation: str, status: int | None, segment_id: str | None = None) -> None:
        """A request was answered with `status` (None: the connection was dropped).

        `segment_id` is the segment in the request's path, if any.
        """
        with self._lock:
            self._in_flight -= 1
            self.requests[operation] += 1
            if segment_id is not None:
                self.requests_by_segment[segment_id] += 1
            if status is not None:
                self.statuses[status] += 1
                if status == 429:
                    self.throttled += 1

    @property
    def in_flight(self) -> int:
        return self._in_flight

    def reset(self) -> None:
        """Zero every counter (requests still in flight keep being tracked)."""
        with self._lock:
            self.requests = Counter()
            self.requests_by_segment = Counter()
            self.statuses = Counter()
            self.throttled = 0
            self.total = 0
            self.max_in_flight = self._in_flight
