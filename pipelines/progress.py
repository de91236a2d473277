"""Progress lines while a run goes on, and the summary after it."""

from __future__ import annotations

import sys
import threading
import time
from types import TracebackType
from typing import TextIO

from sources.klaviyo import ExtractionStats

from .klaviyo_segments_pipeline import RunReport

PROGRESS_INTERVAL_SECONDS = 2.0


def progress_line(stats: ExtractionStats, elapsed: float) -> str:
    """One line of counters: segments, pages, rows, requests and rate-limit waits."""
    rows = sum(stats.rows.values())
    return (
        f"[{elapsed:6.1f}s] segments {stats.segments_done}/{stats.segments_total} · "
        f"pages {stats.pages:,} · rows {rows:,} · requests {stats.requests:,} · "
        f"429s {stats.throttled} (waited {stats.wait_seconds:.1f}s)"
    )


class ProgressPrinter:
    """Prints a progress line every few seconds from a background thread while a run goes on."""

    def __init__(
        self,
        stats: ExtractionStats,
        enabled: bool = True,
        stream: TextIO | None = None,
        interval: float = PROGRESS_INTERVAL_SECONDS,
    ) -> None:
        self.stats = stats
        self.enabled = enabled
        self.stream = stream or sys.stderr
        self.interval = interval
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._loop, name="klaviyo-progress", daemon=True)
        self._started = time.monotonic()

    def __enter__(self) -> ProgressPrinter:
        self._started = time.monotonic()
        if self.enabled:
            self._thread.start()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        self._stop.set()
        if self._thread.is_alive():
            self._thread.join()

    def _loop(self) -> None:
        while not self._stop.wait(self.interval):
            print(
                progress_line(self.stats, time.monotonic() - self._started),
                file=self.stream,
                flush=True,
            )


def print_checkpoint(stats: ExtractionStats, stream: TextIO | None = None) -> None:
    """One line after each checkpoint's load: what is committed so far, what is left."""
    rows = sum(stats.rows.values())
    left = stats.segments_unfinished
    rest = f", {len(left)} segment(s) to go on with" if left else ""
    print(
        f"checkpoint {stats.checkpoints}: {rows:,} rows and their cursors committed{rest}",
        file=stream or sys.stderr,
        flush=True,
    )


def print_summary(report: RunReport, stream: TextIO | None = None) -> None:
    """Rows loaded per table, new memberships, requests and elapsed time."""
    out = stream or sys.stdout
    stats = report.stats
    print(f"Loaded into {_target(report)} in {report.elapsed_seconds:.1f}s", file=out)
    if report.dropped_packages:
        print(
            f"  dropped pending load package(s) {', '.join(report.dropped_packages)} first; "
            "the cursors went back to before them",
            file=out,
        )
    for table, count in report.rows.items():
        print(f"  {table:<28} {count:>10,} rows", file=out)
    if stats is not None:
        print(
            f"  segments walked {stats.segments_done}/{stats.segments_total}, "
            f"new or re-joined memberships {stats.new_memberships:,}, "
            f"requests {stats.requests:,}, 429s {stats.throttled}, retries {stats.retries}",
            file=out,
        )
        reconciled = stats.segments_reconciled
        print(
            f"  reconciled {len(reconciled)} segment(s){_ids(reconciled)}, "
            f"leaves found {stats.leaves:,}, "
            f"members' attributes refreshed in {len(stats.segments_refreshed)} segment(s)",
            file=out,
        )
        if stats.segments_deleted:
            print(f"  segments deleted in Klaviyo: {', '.join(stats.segments_deleted)}", file=out)
    if not report.complete:
        _print_unfinished(report, out)
    elif report.unchecked:
        print(
            f"  time budget spent: {len(report.unchecked)} segment(s) walked to their end "
            f"before were not checked for new joins on this run{_ids(report.unchecked)}",
            file=out,
        )


def _print_unfinished(report: RunReport, out: TextIO) -> None:
    estimates = [pages for pages in report.unfinished.values() if pages is not None]
    unknown = len(report.unfinished) - len(estimates)
    pages = f"about {sum(estimates):,} profile pages estimated to remain" if estimates else ""
    if unknown:
        pages += f"{' plus ' if pages else ''}{unknown} segment(s) not started"
    print(
        f"  time budget spent after {report.checkpoints} checkpoint(s): "
        f"{len(report.unfinished)} segment(s) not finished{_ids(list(report.unfinished))}; "
        f"{pages}; the next run goes on from here",
        file=out,
    )


def _target(report: RunReport) -> str:
    # The file's full path: a relative name would not say which project folder it is in.
    if report.duckdb_file:
        return f"{report.duckdb_file} (DuckDB), dataset '{report.dataset_name}',"
    return f"{report.destination} dataset '{report.dataset_name}'"


def _ids(segment_ids: list[str], shown: int = 10) -> str:
    if not segment_ids:
        return ""
    more = f" and {len(segment_ids) - shown} more" if len(segment_ids) > shown else ""
    return f" ({', '.join(segment_ids[:shown])}{more})"
