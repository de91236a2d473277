"""Thread-safe progress counters that a caller can poll while a run is going."""

from __future__ import annotations

import threading
from typing import Any


class ExtractionStats:
    """Counters of one or more extraction runs, updated from worker threads.

    Read the attributes directly for a live view or call `snapshot()` for a consistent copy.

    Attributes:
        segments_total: Segments the membership walk has to visit.
        segments_done: Segments whose walk finished (including skipped ones).
        pages: Profile pages received from the membership walk.
        rows: Rows handed to dlt, by table name.
        requests: HTTP requests sent (retries included).
        throttled: 429 answers received.
        wait_seconds: Seconds spent waiting on rate limits, 429s and retry backoff, summed
            over threads (can exceed wall time).
        retries: Requests that were repeated after a failure.
        new_memberships: Memberships newer than the segment's cursor (joins and re-joins).
        segments_walked: Segment ids in the order their walk finished.
        segments_reconciled: Segment ids whose membership was compared with what was loaded
            before (a walk of their profile ids, or a full walk), in the order they finished.
        segments_refreshed: Segment ids whose every member was read with its attributes
            (a refresh of `profiles`, or a first load), in the order they finished.
        profiles_changed: Members' profiles read from the account's changed profiles
            (`refresh_profiles_by="updated"`).
        leaves: Memberships found to have ended (the profile left, or the segment is gone).
        segments_deleted: Segment ids found deleted in Klaviyo in this run.
        segments_unfinished: Segments a checkpoint left for a later run, mapped to the
            pages estimated to remain (None: not known, e.g. the walk had not started).
        segments_unchecked: Segments a checkpoint did not let start although nothing was
            known to wait for them (they were walked to their end before).
        checkpoints: Loads committed so far (each one rows and the cursors they justify).
    """

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self.segments_total = 0
        self.segments_done = 0
        self.pages = 0
        self.rows: dict[str, int] = {}
        self.requests = 0
        self.throttled = 0
        self.wait_seconds = 0.0
        self.retries = 0
        self.new_memberships = 0
        self.segments_walked: list[str] = []
        self.segments_reconciled: list[str] = []
        self.segments_refreshed: list[str] = []
        self.profiles_changed = 0
        self.leaves = 0
        self.segments_deleted: list[str] = []
        self.segments_unfinished: dict[str, int | None] = {}
        self.segments_unchecked: list[str] = []
        self.checkpoints = 0

    def add(self, **counts: float) -> None:
        """Adds to counters by name, e.g. `add(requests=1, retries=1)`."""
        with self._lock:
            for name, value in counts.items():
                setattr(self, name, getattr(self, name) + value)

    def add_rows(self, table: str, count: int) -> None:
        """Counts rows handed to dlt for `table`."""
        with self._lock:
            # Copy on write: a reader iterating `rows` from another thread never sees it change.
            self.rows = {**self.rows, table: self.rows.get(table, 0) + count}

    def segment_walked(self, segment_id: str) -> None:
        """Records that the walk of `segment_id` finished."""
        with self._lock:
            self.segments_done += 1
            self.segments_walked = [*self.segments_walked, segment_id]
            if segment_id in self.segments_unchecked:
                self.segments_unchecked = [s for s in self.segments_unchecked if s != segment_id]
            if segment_id in self.segments_unfinished:
                unfinished = dict(self.segments_unfinished)
                del unfinished[segment_id]
                self.segments_unfinished = unfinished

    def segment_unfinished(self, segment_id: str, remaining_pages: int | None) -> None:
        """Records that a checkpoint left `segment_id` (or the rest of it) for a later run."""
        with self._lock:
            self.segments_unfinished = {**self.segments_unfinished, segment_id: remaining_pages}

    def segment_unchecked(self, segment_id: str) -> None:
        """Records that a checkpoint left `segment_id`, with nothing known to wait, unwalked."""
        with self._lock:
            if segment_id not in self.segments_unchecked:
                self.segments_unchecked = [*self.segments_unchecked, segment_id]

    @property
    def complete(self) -> bool:
        """True when no segment was left for a later run."""
        return not self.segments_unfinished

    def segment_reconciled(self, segment_id: str) -> None:
        """Records that the membership of `segment_id` was reconciled."""
        with self._lock:
            self.segments_reconciled = [*self.segments_reconciled, segment_id]

    def segment_refreshed(self, segment_id: str) -> None:
        """Records that every member of `segment_id` was read with its attributes."""
        with self._lock:
            self.segments_refreshed = [*self.segments_refreshed, segment_id]

    def segment_deleted(self, segment_id: str) -> None:
        """Records that `segment_id` was found deleted (once per run and segment)."""
        with self._lock:
            if segment_id not in self.segments_deleted:
                self.segments_deleted = [*self.segments_deleted, segment_id]

    def snapshot(self) -> dict[str, Any]:
        """Returns a consistent copy of every counter."""
        with self._lock:
            return {
                "segments_total": self.segments_total,
                "segments_done": self.segments_done,
                "pages": self.pages,
                "rows": dict(self.rows),
                "requests": self.requests,
                "throttled": self.throttled,
                "wait_seconds": round(self.wait_seconds, 3),
                "retries": self.retries,
                "new_memberships": self.new_memberships,
                "segments_walked": list(self.segments_walked),
                "segments_reconciled": list(self.segments_reconciled),
                "segments_refreshed": list(self.segments_refreshed),
                "profiles_changed": self.profiles_changed,
                "leaves": self.leaves,
                "segments_deleted": list(self.segments_deleted),
                "segments_unfinished": dict(self.segments_unfinished),
                "segments_unchecked": list(self.segments_unchecked),
                "checkpoints": self.checkpoints,
            }

    def __repr__(self) -> str:
        return f"ExtractionStats({self.snapshot()})"
