"""Throughput: a full extraction into DuckDB with no rate limits and no latency (CPU-bound).

Runs the `klaviyo_segments` pipeline in this process against the emulator in its own process
(`large` preset, or `--memberships N` of it) and reports memberships per second end to end,
the pipeline process's CPU seconds per 100,000 memberships, its peak resident memory, and the
seconds of each dlt step. The source's own rate limiter is switched off like the emulator's:
with it on, the run would measure Klaviyo's burst limit (75 pages a second), not the code.

Prints one JSON line; exits 1 if the extraction failed or loaded fewer rows than expected.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import sys
import time
from typing import Any

from support import (
    bench_pipeline,
    dlt_workspace,
    emulator_process,
    finish,
    log,
    machine,
    peak_rss_mb,
    process_cpu_seconds,
    scale_client_windows,
)

LARGE_MEMBERSHIPS = 1_050_000


def run(args: argparse.Namespace) -> dict[str, Any]:
    """One extraction; its figures."""
    from pipelines.klaviyo_segments_pipeline import load_segments
    from sources.klaviyo import ExtractionStats

    expected = args.memberships or LARGE_MEMBERSHIPS
    options = ["--dataset", "large", "--rate-limits", "off", "--latency", "0"]
    if args.memberships:
        options += ["--memberships", str(args.memberships)]
    stats = ExtractionStats()
    failure: str | None = None
    rows: dict[str, int] = {}
    phases: dict[str, float] = {}
    with dlt_workspace() as folder, emulator_process(*options) as emulator:
        scale_client_windows(None)
        if args.duckdb_memory_limit:
            limit = json.dumps({"memory_limit": args.duckdb_memory_limit})
            os.environ["DESTINATION__DUCKDB__CREDENTIALS__GLOBAL_CONFIG"] = limit
        pipeline = bench_pipeline(folder, "throughput")
        emulator_cpu = process_cpu_seconds(emulator.pid)
        cpu, started = _cpu_seconds(), time.perf_counter()
        try:
            report = load_segments(
                pipeline,
                base_url=emulator.base_url,
                api_key=emulator.api_key,
                max_workers=args.workers,
                stats=stats,
            )
            rows = report.rows
            phases = _phases(pipeline)
        except Exception as error:  # the figure is a failed run; the reason goes to stderr
            failure = f"{type(error).__name__}: {error}"
        elapsed = time.perf_counter() - started
        cpu = _cpu_seconds() - cpu
        emulator_cpu = process_cpu_seconds(emulator.pid) - emulator_cpu
    memberships = rows.get("segment_memberships", 0)
    if failure is None and memberships != expected:
        failure = f"loaded {memberships} memberships, expected {expected}"
    if failure:
        log(f"throughput: the run failed: {failure}")
    per_100k = 100_000 / memberships if memberships else 0.0
    return {
        "bench": "throughput",
        "failed_runs": int(failure is not None),
        "workers": args.workers,
        "duckdb_memory_limit": args.duckdb_memory_limit,
        "memberships": memberships,
        "profiles": rows.get("profiles", 0),
        "pages": stats.pages,
        "elapsed_s": round(elapsed, 1),
        "memberships_per_s": round(memberships / elapsed, 1) if elapsed else 0.0,
        "cpu_s_per_100k_memberships": round(cpu * per_100k, 2),
        "emulator_cpu_s_per_100k_memberships": round(emulator_cpu * per_100k, 2),
        "peak_rss_mb": _peak_rss_mb(),
        "phases_s": phases,
        **machine(),
    }


def _cpu_seconds() -> float:
    """CPU seconds of this process and of any process it waited for (dlt may fork workers)."""
    children = resource.getrusage(resource.RUSAGE_CHILDREN)
    return process_cpu_seconds() + children.ru_utime + children.ru_stime


def _peak_rss_mb() -> float | None:
    own = peak_rss_mb()
    children = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024
    return max(own or 0.0, round(children, 1)) or None


def _phases(pipeline: Any) -> dict[str, float]:
    """Seconds of each dlt step of the last run (extract, normalize, load)."""
    trace = pipeline.last_trace
    phases: dict[str, float] = {}
    for step in trace.steps if trace else []:
        if step.started_at and step.finished_at:
            seconds = (step.finished_at - step.started_at).total_seconds()
            phases[step.step] = round(phases.get(step.step, 0.0) + seconds, 1)
    return phases


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument(
        "--memberships",
        type=int,
        default=0,
        help=f"memberships of the `large` preset to extract (default all {LARGE_MEMBERSHIPS:,})",
    )
    parser.add_argument("--workers", type=int, default=4, help="segments walked at once (4)")
    parser.add_argument(
        "--duckdb-memory-limit",
        default=None,
        help="DuckDB `memory_limit` for the load step, e.g. 256MB (default: the pipeline's, 160MB)",
    )
    args = parser.parse_args(argv)
    if args.memberships < 0 or args.workers < 1:
        parser.error("--memberships must not be negative and --workers at least 1")
    return args


def main(argv: list[str] | None = None) -> int:
    figures = run(parse_args(argv))
    return finish(figures)


if __name__ == "__main__":
    sys.exit(main())
