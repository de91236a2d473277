"""The ``klaviyo-segments`` command: ``run`` loads Klaviyo segments, ``demo`` shows it offline."""

from __future__ import annotations

import argparse
import logging
import sys
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from typing import Any

from sources.klaviyo import ExtractionStats

from .errors import DROP_PENDING_OPTION, PipelineConfigError, describe_failure
from .klaviyo_segments_pipeline import (
    DATASET_NAME,
    DUCKDB_FILE,
    PIPELINE_NAME,
    PIPELINES_DIR,
    TABLES,
    RunReport,
    load_segments,
    make_pipeline,
)
from .progress import ProgressPrinter, print_checkpoint, print_summary

EXIT_INCOMPLETE = 75
"""Exit code of a run that stopped at its time budget with work left (EX_TEMPFAIL: run again)."""


def build_parser() -> argparse.ArgumentParser:
    """The CLI's arguments; the API key is deliberately not one of them."""
    parser = argparse.ArgumentParser(
        prog="klaviyo-segments",
        description="Load Klaviyo segments, segment memberships and segment tags with dlt. "
        "The API key comes from SOURCES__KLAVIYO__API_KEY or .dlt/secrets.toml, never the command line.",
    )
    commands = parser.add_subparsers(dest="command", required=True)
    run = commands.add_parser("run", help="extract from Klaviyo and load the dataset")
    add_run_arguments(run)
    demo = commands.add_parser(
        "demo", help="run against the bundled emulator into a local DuckDB file"
    )
    demo.add_argument(
        "--dir", default=".demo", help="folder for the demo database (default: .demo)"
    )
    demo.add_argument("--verbose", action="store_true", help="show tracebacks and dlt logs")
    return parser


def add_run_arguments(run: argparse.ArgumentParser) -> None:
    """Options of ``klaviyo-segments run``; unset ones fall back to dlt config."""
    run.add_argument(
        "--destination", default="duckdb", help="any dlt destination name (default: duckdb)"
    )
    run.add_argument(
        "--duckdb-file",
        default=DUCKDB_FILE,
        help=f"DuckDB file, relative to the current folder (default: {DUCKDB_FILE})",
    )
    run.add_argument(
        "--dataset", default=DATASET_NAME, help=f"dataset name (default: {DATASET_NAME})"
    )
    run.add_argument(
        "--pipeline-name", default=PIPELINE_NAME, help="pipeline name; keeps the cursors"
    )
    run.add_argument(
        "--pipelines-dir",
        default=None,
        help=f"dlt working folder: load packages and local state (default: {PIPELINES_DIR})",
    )
    run.add_argument(
        "--segment-id",
        dest="segment_ids",
        action="append",
        help="load only this segment (repeat for several; default: all segments)",
    )
    run.add_argument("--resources", help=f"comma-separated subset of: {', '.join(TABLES)}")
    run.add_argument("--base-url", help="API base URL (default: https://a.klaviyo.com)")
    run.add_argument("--revision", help="Klaviyo API revision (default: 2026-07-15)")
    run.add_argument(
        "--start-date", help="ISO datetime: earliest joined_group_at of a first backfill"
    )
    run.add_argument("--workers", type=int, help="segments walked at once (default: 4)")
    run.add_argument(
        "--reconcile",
        nargs="*",
        metavar="SEGMENT_ID",
        help="reconcile these segments on this run (no ids: every active segment), whatever their age",
    )
    run.add_argument(
        "--reconcile-every-hours",
        type=float,
        help="reconcile a segment whose last reconciliation is this old (default: 24; 0: every run)",
    )
    run.add_argument(
        "--reconcile-inactive", action="store_true", help="reconcile inactive segments too"
    )
    run.add_argument(
        "--refresh-profiles-every-hours",
        metavar="HOURS",
        help="read a segment's members again for their current attributes when its last "
        "refresh is this old (default: 24; 0: every run; off: keep attributes of the join)",
    )
    run.add_argument(
        "--refresh-profiles-by",
        choices=("segments", "updated"),
        help="segments: walk each segment's members again (default); updated: read the "
        "account's profiles changed since the last read and keep those of members",
    )
    run.add_argument(
        "--max-minutes",
        type=float,
        help="time budget: stop at the first checkpoint after it and exit "
        f"{EXIT_INCOMPLETE}; the next run goes on from there (default: no budget)",
    )
    run.add_argument(
        "--checkpoint-pages",
        type=int,
        help="commit rows and cursors after this many profile pages (default: 2000)",
    )
    run.add_argument(
        "--checkpoint-minutes",
        type=float,
        help="commit rows and cursors after this many minutes (default: 5)",
    )
    run.add_argument(
        "--full-refresh",
        action="store_true",
        help="load all again: alone, drop the tables and cursors first; with --segment-id or "
        "--resources, drop nothing and walk those segments from their first member",
    )
    run.add_argument(
        DROP_PENDING_OPTION,
        action="store_true",
        help="drop the load packages a failed run left (and rewind the cursors to before "
        "them) instead of loading them first",
    )
    run.add_argument("--quiet", action="store_true", help="no progress lines, only the summary")
    run.add_argument("--verbose", action="store_true", help="show tracebacks and dlt logs")


def source_options(args: argparse.Namespace) -> dict[str, Any]:
    """Only the options the user gave: the rest resolve from dlt config and the source's defaults."""
    given = {
        "base_url": args.base_url,
        "revision": args.revision,
        "segment_ids": args.segment_ids,
        "start_date": args.start_date,
        "max_workers": args.workers,
        "reconcile_segments": _reconcile_segments(args.reconcile),
        "reconcile_every_hours": args.reconcile_every_hours,
        "reconcile_inactive": True if args.reconcile_inactive else None,
        "refresh_profiles_every_hours": args.refresh_profiles_every_hours,
        "refresh_profiles_by": args.refresh_profiles_by,
        "checkpoint_pages": args.checkpoint_pages,
        "checkpoint_minutes": args.checkpoint_minutes,
    }
    return {name: value for name, value in given.items() if value is not None}


def _reconcile_segments(reconcile: list[str] | None) -> list[str] | None:
    # `--reconcile` alone means every segment; absent means the policy decides.
    if reconcile is None:
        return None
    return reconcile or ["all"]


def _resources(listed: str | None) -> list[str] | None:
    if not listed:
        return None
    names = [name.strip() for name in listed.split(",") if name.strip()]
    unknown = [name for name in names if name not in TABLES]
    if unknown:
        raise PipelineConfigError(
            f"unknown resource(s) {', '.join(unknown)}; choose from {', '.join(TABLES)}"
        )
    return names


def command_run(args: argparse.Namespace) -> int:
    """Run one load and print progress and a summary."""
    pipeline = make_pipeline(
        destination=args.destination,
        dataset_name=args.dataset,
        pipeline_name=args.pipeline_name,
        duckdb_file=args.duckdb_file,
        pipelines_dir=args.pipelines_dir,
    )
    resources = _resources(args.resources)
    stats = ExtractionStats()
    with ProgressPrinter(stats, enabled=not args.quiet):
        report: RunReport = load_segments(
            pipeline,
            resources=resources,
            full_refresh=args.full_refresh,
            drop_pending=args.drop_pending,
            stats=stats,
            max_minutes=_budget(args.max_minutes),
            on_checkpoint=None if args.quiet else print_checkpoint,
            **source_options(args),
        )
    print_summary(report)
    return 0 if report.complete else EXIT_INCOMPLETE


def _budget(minutes: float | None) -> float | None:
    if minutes is not None and not minutes > 0:
        raise PipelineConfigError(f"--max-minutes must be a number of minutes > 0, got {minutes}")
    return minutes


class _DropAll(logging.Filter):
    """Drops every record of the logger it is added to."""

    def filter(self, record: logging.LogRecord) -> bool:
        return False


@contextmanager
def dlt_logs(shown: bool) -> Iterator[None]:
    """Let dlt's log records through only when ``shown`` (``--verbose``).

    dlt logs a failed load job at ERROR level with the job's whole traceback, twice (when the
    job fails and when the loader collects it); without ``--verbose`` the one error line the
    CLI prints says it all. The filter sits on the logger object, which dlt keeps when it
    sets its level and handler up at pipeline creation.
    """
    if shown:
        yield
        return
    logger, drop_all = logging.getLogger("dlt"), _DropAll()
    logger.addFilter(drop_all)
    try:
        yield
    finally:
        logger.removeFilter(drop_all)


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the console script; returns the process exit code."""
    args = build_parser().parse_args(argv)
    with dlt_logs(shown=args.verbose):
        try:
            if args.command == "demo":
                from .demo import run_demo

                return run_demo(args.dir)
            return command_run(args)
        except KeyboardInterrupt:
            print(
                "klaviyo-segments: interrupted; the next run resumes from the last loaded cursor",
                file=sys.stderr,
            )
            return 130
        except Exception as error:
            if args.verbose:
                raise
            print(f"klaviyo-segments: error: {describe_failure(error)}", file=sys.stderr)
            return 1


if __name__ == "__main__":
    sys.exit(main())
