"""The daily run of a large account: every segment reconciled and its members refreshed.

Loads the `large` preset (or `--memberships N` of it) into DuckDB, then runs the pipeline
again with `reconcile_every_hours=0` and `refresh_profiles_every_hours=0`, which is what the
defaults do once a day: every segment's open stays are read back from DuckDB and compared
with the members Klaviyo lists, and every member is read again with its attributes. Each run
is a process of its own, so that the daily run's peak memory is its own; the emulator (its
own process, limits off, no latency) serves both.

Reports the daily run's CPU seconds per 100,000 memberships compared, its peak resident
memory and the peak of each dlt step, the stays it compared and closed, and the rows the
tables hold after it (every membership still open: nothing left between the runs).

Prints one JSON line; exits 1 if a run failed or a membership was lost or closed.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

from support import (
    LARGE_MEMBERSHIPS,
    bench_pipeline,
    dlt_workspace,
    emulator_process,
    finish,
    large_preset_parser,
    log,
    machine,
    process_cpu_seconds,
    scale_client_windows,
)

NAME = "daily"
DAILY_OPTIONS: dict[str, Any] = {"reconcile_every_hours": 0, "refresh_profiles_every_hours": 0}


def run_once(folder: Path, base_url: str, api_key: str, daily: bool) -> dict[str, Any]:
    """One run of the pipeline in this process; its figures."""
    from throughput import PhaseMeter

    from pipelines.klaviyo_segments_pipeline import load_segments
    from sources.klaviyo import ExtractionStats

    scale_client_windows(None)
    pipeline = bench_pipeline(folder, NAME)
    meter = PhaseMeter(pipeline)
    stats = ExtractionStats()
    cpu = process_cpu_seconds()
    report = load_segments(
        pipeline,
        base_url=base_url,
        api_key=api_key,
        stats=stats,
        **(DAILY_OPTIONS if daily else {}),
    )
    cpu = process_cpu_seconds() - cpu
    with pipeline.sql_client() as client:
        open_stays = client.execute_sql(
            "SELECT count(*) FROM segment_memberships WHERE is_member IS NOT FALSE"
        )[0][0]
    return {
        "ok": report.complete,
        "cpu_s": cpu,
        "phases_peak_rss_mb": {k: round(v, 1) for k, v in meter.peak_rss_mb.items()},
        "segments_walked": len(stats.segments_walked),
        "segments_reconciled": len(stats.segments_reconciled),
        "segments_refreshed": len(stats.segments_refreshed),
        "leaves": stats.leaves,
        "open_memberships": open_stays,
        "rows_loaded": report.rows,
    }


def run(args: argparse.Namespace) -> dict[str, Any]:
    """The first load, then the daily run, each in a process of its own."""
    expected = args.memberships or LARGE_MEMBERSHIPS
    options = ["--dataset", "large", "--rate-limits", "off", "--latency", "0"]
    if args.memberships:
        options += ["--memberships", str(args.memberships)]
    results: list[dict[str, Any]] = []
    with dlt_workspace() as folder, emulator_process(*options) as emulator:
        for phase in ("first", "daily"):
            command = [sys.executable, __file__, "--phase", phase, "--folder", str(folder)]
            command += ["--base-url", emulator.base_url]
            environment = {**os.environ, "BENCH_API_KEY": emulator.api_key}
            done = subprocess.run(
                command, stdout=subprocess.PIPE, text=True, check=False, env=environment
            )
            lines = done.stdout.strip().splitlines()
            results.append(json.loads(lines[-1]) if lines else {"ok": False})
    first, daily = results
    failure = next((r.get("error") or "failed" for r in results if not r.get("ok")), None)
    if failure is None and daily["open_memberships"] != expected:
        failure = f"{daily['open_memberships']} open memberships, expected {expected}"
    if failure is None and daily["leaves"]:
        failure = f"{daily['leaves']} stays closed, while every member stayed"
    if failure:
        log(f"daily: the run failed: {failure}")
    per_100k = 100_000 / expected
    return {
        "bench": "daily",
        "failed_runs": int(failure is not None),
        "memberships": expected,
        "first_cpu_s_per_100k_memberships": round(first.get("cpu_s", 0.0) * per_100k, 2),
        "first_peak_rss_mb": _peak_rss_mb(first),
        "daily_cpu_s_per_100k_memberships": round(daily.get("cpu_s", 0.0) * per_100k, 2),
        "daily_peak_rss_mb": _peak_rss_mb(daily),
        "daily_phases_peak_rss_mb": daily.get("phases_peak_rss_mb"),
        "daily_segments_walked": daily.get("segments_walked"),
        "daily_segments_reconciled": daily.get("segments_reconciled"),
        "daily_segments_refreshed": daily.get("segments_refreshed"),
        "daily_leaves": daily.get("leaves"),
        "daily_rows_loaded": daily.get("rows_loaded"),
        **machine(),
    }


def _peak_rss_mb(result: dict[str, Any]) -> float:
    """A run's peak: the highest of its dlt steps' (each measured from the step's start)."""
    return max((result.get("phases_peak_rss_mb") or {}).values(), default=0.0)


def phase(args: argparse.Namespace) -> int:
    """A run in this process (`--phase`); prints its figures as one JSON line."""
    api_key = os.environ.pop("BENCH_API_KEY", "")
    try:
        figures = run_once(Path(args.folder), args.base_url, api_key, args.phase == "daily")
    except Exception as error:  # reported by the parent
        figures = {"ok": False, "error": f"{type(error).__name__}: {error}"}
    print(json.dumps(figures), flush=True)
    return 0


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = large_preset_parser(__doc__)
    parser.add_argument("--phase", choices=("first", "daily"), help=argparse.SUPPRESS)
    parser.add_argument("--folder", help=argparse.SUPPRESS)
    parser.add_argument("--base-url", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.memberships < 0:
        parser.error("--memberships must not be negative")
    return args


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    if args.phase:
        return phase(args)
    return finish(run(args))


if __name__ == "__main__":
    sys.exit(main())
