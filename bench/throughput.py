"""Throughput: a full extraction into DuckDB with no rate limits and no latency (CPU-bound).

Runs the `klaviyo_segments` pipeline in this process against the emulator in its own process
(`large` preset, or `--memberships N` of it) and reports memberships per second end to end,
the pipeline process's CPU seconds per 100,000 memberships, its peak resident memory, and the
CPU seconds, wall seconds and peak memory of each dlt step (summed over the loads of the run).
The source's own rate limiter is switched off like the emulator's: with it on, the run would
measure Klaviyo's burst limit (75 pages a second), not the code.

After the load it measures the floor on the same emulator process and pages: one thread that
GETs every profile page with a pooled urllib3 connection and decodes it with orjson, nothing
else (`support.floor_walk`). The ratio of the two CPU figures is what the pipeline costs over
the least any client of these pages pays; measured in the same run, it is steadier than either
figure on a busy machine.

Prints one JSON line; exits 1 if the extraction failed or loaded fewer rows than expected.
"""

from __future__ import annotations

import argparse
import functools
import json
import os
import resource
import statistics
import subprocess
import sys
import time
from collections.abc import Callable
from typing import Any

from support import (
    LARGE_MEMBERSHIPS,
    bench_pipeline,
    dlt_workspace,
    emulator_process,
    finish,
    floor_walk,
    large_preset_parser,
    log,
    machine,
    peak_rss_mb,
    process_cpu_seconds,
    scale_client_windows,
)

HISTORY = "segment_membership_history"
NO_CHECKPOINT_PAGES = 10**9
NO_CHECKPOINT_MINUTES = 10.0**6
"""`--checkpoint-pages 0`: limits no run reaches, so that the run loads once."""
STEPS = ("extract", "normalize", "load")
RANGED = (
    "cpu_s_per_100k_memberships",
    "floor_cpu_s_per_100k",
    "cpu_ratio_to_floor",
    "load_share_of_cpu",
    "peak_rss_mb",
    "memberships_per_s",
)
"""Figures also reported as [min, max] over the runs (`--runs`)."""


class PhaseMeter:
    """CPU seconds, wall seconds and peak memory of each dlt step of a pipeline.

    A run may load several times (each checkpoint is an extract, a normalize and a load), so
    the pipeline's step methods are wrapped and their figures summed, rather than read from
    the last trace. The peak of each step is measured from its start where Linux allows
    resetting it (`/proc/self/clear_refs`), else it is the process's peak so far.
    """

    def __init__(self, pipeline: Any) -> None:
        self.cpu_s: dict[str, float] = {}
        self.seconds: dict[str, float] = {}
        self.peak_rss_mb: dict[str, float] = {}
        for step in STEPS:
            setattr(pipeline, step, self._timed(step, getattr(pipeline, step)))

    def _timed(self, step: str, method: Callable[..., Any]) -> Callable[..., Any]:
        @functools.wraps(method)
        def timed(*args: Any, **kwargs: Any) -> Any:
            _reset_peak_rss()
            cpu, started = _cpu_seconds(), time.perf_counter()
            try:
                return method(*args, **kwargs)
            finally:
                self._add(step, _cpu_seconds() - cpu, time.perf_counter() - started)

        return timed

    def _add(self, step: str, cpu_s: float, seconds: float) -> None:
        self.cpu_s[step] = self.cpu_s.get(step, 0.0) + cpu_s
        self.seconds[step] = self.seconds.get(step, 0.0) + seconds
        self.peak_rss_mb[step] = max(self.peak_rss_mb.get(step, 0.0), peak_rss_mb() or 0.0)


def run(args: argparse.Namespace) -> dict[str, Any]:
    """One extraction, then the floor walk on the same emulator; their figures."""
    from pipelines.klaviyo_segments_pipeline import load_segments
    from sources.klaviyo import ExtractionStats

    expected = args.memberships or LARGE_MEMBERSHIPS
    options = ["--dataset", "large", "--rate-limits", "off", "--latency", "0"]
    if args.memberships:
        options += ["--memberships", str(args.memberships)]
    stats = ExtractionStats()
    failure: str | None = None
    rows: dict[str, int] = {}
    stored: dict[str, int] = {}
    checkpoints = 0
    floor = None
    with dlt_workspace() as folder, emulator_process(*options) as emulator:
        scale_client_windows(None)
        if args.duckdb_memory_limit:
            limit = json.dumps({"memory_limit": args.duckdb_memory_limit})
            os.environ["DESTINATION__DUCKDB__CREDENTIALS__GLOBAL_CONFIG"] = limit
        pipeline = bench_pipeline(folder, "throughput")
        meter = PhaseMeter(pipeline)
        _reset_peak_rss(start=True)
        emulator_cpu = process_cpu_seconds(emulator.pid)
        cpu, started = _cpu_seconds(), time.perf_counter()
        try:
            report = load_segments(
                pipeline,
                base_url=emulator.base_url,
                api_key=emulator.api_key,
                max_workers=args.workers,
                stats=stats,
                **_checkpoints(args.checkpoint_pages),
            )
            rows, checkpoints = report.rows, report.checkpoints
        except Exception as error:  # the figure is a failed run; the reason goes to stderr
            failure = f"{type(error).__name__}: {error}"
        elapsed = time.perf_counter() - started
        cpu = _cpu_seconds() - cpu
        emulator_cpu = process_cpu_seconds(emulator.pid) - emulator_cpu
        peak = _peak_rss_mb()
        if failure is None:
            stored = _stored_rows(pipeline)
            floor = floor_walk(emulator.base_url, emulator.api_key)
    memberships = stored.get("segment_memberships", 0)
    if failure is None and not memberships == stored.get(HISTORY, 0) == expected:
        failure = f"the tables hold {stored} rows, expected {expected} memberships"
    if failure:
        log(f"throughput: the run failed: {failure}")
    per_100k = 100_000 / memberships if memberships else 0.0
    cpu_per_100k = cpu * per_100k
    floor_per_100k = floor.cpu_s * 100_000 / floor.memberships if floor else 0.0
    return {
        "bench": "throughput",
        "failed_runs": int(failure is not None),
        "workers": args.workers,
        "checkpoint_pages": args.checkpoint_pages,
        "checkpoints": checkpoints,
        "duckdb_memory_limit": args.duckdb_memory_limit,
        "memberships": memberships,
        "profiles": stored.get("profiles", 0),
        "rows_loaded": rows,
        "pages": stats.pages,
        "elapsed_s": round(elapsed, 1),
        "memberships_per_s": round(memberships / elapsed, 1) if elapsed else 0.0,
        "cpu_s_per_100k_memberships": round(cpu_per_100k, 2),
        "floor_cpu_s_per_100k": round(floor_per_100k, 2),
        "cpu_ratio_to_floor": round(cpu_per_100k / floor_per_100k, 2) if floor_per_100k else None,
        "floor_pages": floor.pages if floor else 0,
        "floor_s": round(floor.seconds, 1) if floor else 0.0,
        "emulator_cpu_s_per_100k_memberships": round(emulator_cpu * per_100k, 2),
        "peak_rss_mb": peak,
        "phases_s": _rounded(meter.seconds, 1),
        "phases_cpu_s_per_100k": _rounded({k: v * per_100k for k, v in meter.cpu_s.items()}, 2),
        "load_share_of_cpu": round(meter.cpu_s.get("load", 0.0) / cpu, 3) if cpu else None,
        "phases_peak_rss_mb": _rounded(meter.peak_rss_mb, 1) if _PEAK_RESETS else None,
        **machine(),
    }


def runs(args: argparse.Namespace, argv: list[str]) -> dict[str, Any]:
    """`--runs` extractions, each in a process of its own (fresh memory figures).

    The figures are those of the last run, plus `runs_figures` (the main figures of every
    run), `ranges` ([min, max] of the `RANGED` figures) and their `medians`: on a shared
    machine one run's ratio can sit far from the others'.
    """
    if args.runs == 1:
        return run(args)
    all_figures = []
    single = _without_runs(argv)
    for number in range(args.runs):
        log(f"throughput: run {number + 1} of {args.runs}")
        command = [sys.executable, __file__, *single, "--runs", "1"]
        done = subprocess.run(command, stdout=subprocess.PIPE, text=True, check=False)
        lines = done.stdout.strip().splitlines()
        all_figures.append(json.loads(lines[-1]) if lines else {"failed_runs": 1})
    figures = dict(all_figures[-1])
    figures["failed_runs"] = sum(f["failed_runs"] for f in all_figures)
    figures["runs"] = args.runs
    figures["runs_figures"] = [{name: f.get(name) for name in RANGED} for f in all_figures]
    figures["ranges"] = {name: _range([f.get(name) for f in all_figures]) for name in RANGED}
    figures["medians"] = {name: _median([f.get(name) for f in all_figures]) for name in RANGED}
    return figures


def _without_runs(argv: list[str]) -> list[str]:
    """The command line without its `--runs N` (or `--runs=N`)."""
    kept: list[str] = []
    skip = False
    for arg in argv:
        if skip:
            skip = False
        elif arg == "--runs":
            skip = True
        elif not arg.startswith("--runs="):
            kept.append(arg)
    return kept


def _checkpoints(pages: int | None) -> dict[str, Any]:
    """Source options for `--checkpoint-pages`: none (the pipeline's defaults), or one load."""
    if pages is None:
        return {}
    if pages == 0:
        return {
            "checkpoint_pages": NO_CHECKPOINT_PAGES,
            "checkpoint_minutes": NO_CHECKPOINT_MINUTES,
        }
    return {"checkpoint_pages": pages}


def _stored_rows(pipeline: Any) -> dict[str, int]:
    """Rows each membership table and `profiles` hold after the run (a run that loads at
    several checkpoints may load a few rows twice; the tables keep them once)."""
    counts = {}
    with pipeline.sql_client() as client:
        for table in ("profiles", "segment_memberships", HISTORY):
            name = client.make_qualified_table_name(table)
            counts[table] = client.execute_sql(f"SELECT count(*) FROM {name}")[0][0]
    return counts


def _range(values: list[Any]) -> list[Any] | None:
    known = [value for value in values if value is not None]
    return [min(known), max(known)] if known else None


def _median(values: list[Any]) -> float | None:
    known = [value for value in values if value is not None]
    return round(statistics.median(known), 3) if known else None


def _rounded(values: dict[str, float], digits: int) -> dict[str, float]:
    return {name: round(value, digits) for name, value in values.items()}


def _cpu_seconds() -> float:
    """CPU seconds of this process and of any process it waited for (dlt may fork workers)."""
    children = resource.getrusage(resource.RUSAGE_CHILDREN)
    return process_cpu_seconds() + children.ru_utime + children.ru_stime


def _peak_rss_mb() -> float | None:
    """Peak resident memory since the run started (`_reset_peak_rss(start=True)`)."""
    own = max(peak_rss_mb() or 0.0, _PEAK["since_start"])
    children = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024
    return max(own, round(children, 1)) or None


_PEAK = {"since_start": 0.0}
"""The highest peak resident memory read before a reset, since the run started."""
_PEAK_RESETS: list[bool] = []
"""Holds True once resetting the peak resident memory worked."""


def _reset_peak_rss(start: bool = False) -> None:
    """Starts the process's peak resident memory (VmHWM) afresh, where Linux allows it.

    The peak read just before is kept for the run's figure; `start` forgets it.
    """
    _PEAK["since_start"] = 0.0 if start else max(_PEAK["since_start"], peak_rss_mb() or 0.0)
    try:
        with open("/proc/self/clear_refs", "w", encoding="ascii") as clear_refs:
            clear_refs.write("5")
    except OSError:
        return
    if not _PEAK_RESETS:
        _PEAK_RESETS.append(True)


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = large_preset_parser(__doc__)
    parser.add_argument("--workers", type=int, default=4, help="segments walked at once (4)")
    parser.add_argument(
        "--duckdb-memory-limit",
        default=None,
        help="DuckDB `memory_limit` for the load step, e.g. 256MB (default: the pipeline's, 80MB)",
    )
    parser.add_argument(
        "--checkpoint-pages",
        type=int,
        default=None,
        help="profile pages between checkpoints; 0: load once at the end "
        "(default: the pipeline's, 2000 pages or 5 minutes)",
    )
    parser.add_argument(
        "--runs", type=int, default=1, help="extractions, each in a process of its own (1)"
    )
    args = parser.parse_args(argv)
    if args.memberships < 0 or args.workers < 1 or args.runs < 1:
        parser.error("--memberships must not be negative, --workers and --runs at least 1")
    if args.checkpoint_pages is not None and args.checkpoint_pages < 0:
        parser.error("--checkpoint-pages must not be negative")
    return args


def main(argv: list[str] | None = None) -> int:
    arguments = sys.argv[1:] if argv is None else argv
    figures = runs(parse_args(arguments), arguments)
    return finish(figures)


if __name__ == "__main__":
    sys.exit(main())
