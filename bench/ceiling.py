"""Rate-limit ceiling: a full extraction at Klaviyo's limits, with realistic latency.

Klaviyo allows 75 requests a second and 700 a minute (750 from revision 2026-01-15) on the
segment-profile endpoint, 100 profiles a page: at most 75,000 memberships a minute. This bench
runs the `klaviyo_segments` pipeline into DuckDB against the emulator (its own process) with
those limits and about 150 ms a page, and reports how full the extraction kept each steady
window, how many requests were answered 429, and memberships per second.

Time-scaling (`--scale S`) makes every window S times shorter with the same counts, on both
sides: the emulator's limiter and the source's. Latency is not scaled, so the walk needs about
rate x (latency + jitter) requests in flight: the default worker count is that plus 2. A
window counts towards the ceiling figure when it lies wholly inside the run and enough
segments were still open at its end to keep that many requests in flight; windows after that
are the drain (the last, biggest segments walked alone) and are listed but not averaged.

Prints one JSON line; exits 1 if the extraction failed.
"""

from __future__ import annotations

import argparse
import math
import sys
import threading
import time
from dataclasses import dataclass
from typing import Any

from support import (
    bench_pipeline,
    dlt_workspace,
    emulator_process,
    finish,
    log,
    machine,
    scale_client_windows,
)

PROFILES_OPERATION = "get_segment_profiles"
PAGE_SIZE = 100
STEADY_750_FROM = "2026-01-15"
SAMPLE_SECONDS = 0.1
# Workers beyond the requests in flight the rate needs: enough to ride out slow pages, few
# enough that the requests in flight when a window fills (answered 429) stay a small share.
EXTRA_WORKERS = 2


@dataclass(frozen=True)
class Sample:
    """The extraction's counters at one moment (monotonic clock)."""

    at: float
    segments_open: int


def steady_limit(revision: str) -> int:
    """Segment-profile requests allowed per steady window at `revision`."""
    return 750 if revision[:10] >= STEADY_750_FROM else 700


def needed_in_flight(limit: int, window_seconds: float, latency: float, jitter: float) -> int:
    """Requests in flight that keep the steady rate when each takes up to latency + jitter."""
    return math.ceil(limit / window_seconds * (latency + jitter))


def run(args: argparse.Namespace) -> dict[str, Any]:
    """One extraction; its figures."""
    from pipelines.klaviyo_segments_pipeline import load_segments
    from sources.klaviyo import ExtractionStats

    limit = steady_limit(args.revision)
    window_seconds = 60 / args.scale
    needed = needed_in_flight(limit, window_seconds, args.latency, args.jitter)
    workers = args.workers or needed + EXTRA_WORKERS
    options = ["--dataset", "large", "--memberships", str(args.memberships)]
    options += ["--rate-limits", str(args.scale), "--latency", str(args.latency)]
    options += ["--jitter", str(args.jitter)]
    stats = ExtractionStats()
    samples: list[Sample] = []
    failure: str | None = None
    with dlt_workspace() as folder, emulator_process(*options) as emulator:
        scale_client_windows(args.scale)
        pipeline = bench_pipeline(folder, "ceiling")
        sampling = threading.Event()
        sampler = threading.Thread(target=_sample, args=(stats, samples, sampling), daemon=True)
        sampler.start()
        started = time.monotonic()
        try:
            report = load_segments(
                pipeline,
                base_url=emulator.base_url,
                api_key=emulator.api_key,
                revision=args.revision,
                max_workers=workers,
                stats=stats,
            )
            rows = report.rows.get("segment_memberships", 0)
        except Exception as error:  # the figure is "failed runs"; the reason goes to stderr
            failure, rows = f"{type(error).__name__}: {error}", 0
        finished = time.monotonic()
        sampling.set()
        sampler.join()
    elapsed = finished - started
    windows = [
        w for w in emulator.report.get("steady_windows", []) if w["bucket"] == PROFILES_OPERATION
    ]
    complete = [
        w for w in windows if w["start"] >= started and w["start"] + w["seconds"] <= finished
    ]
    # Segments only ever close, so enough open ones at a window's end covers the whole window.
    saturated = [
        w for w in complete if min(workers, _open_at(samples, w["start"] + w["seconds"])) >= needed
    ]
    achieved = sum(w["allowed"] for w in saturated) / len(saturated) if saturated else 0.0
    total = emulator.report.get("total", 0)
    throttled = emulator.report.get("throttled", 0)
    if failure:
        log(f"ceiling: the extraction failed: {failure}")
    return {
        "bench": "ceiling",
        "failed_runs": int(failure is not None),
        "revision": args.revision,
        "scale": args.scale,
        "steady_window_seconds": round(window_seconds, 3),
        "latency_s": args.latency,
        "jitter_s": args.jitter,
        "workers": workers,
        "needed_in_flight": needed,
        "memberships": rows,
        "elapsed_s": round(elapsed, 1),
        "memberships_per_s": round(rows / elapsed, 1) if elapsed else 0.0,
        "pages_per_steady_window_allowed": limit,
        "pages_per_steady_window_achieved": round(achieved, 1),
        "ceiling_ratio": round(achieved / limit, 3),
        "saturated_windows": len(saturated),
        "pages_per_window_all": [w["allowed"] for w in complete],
        "rejected_per_window_all": [w["rejected"] for w in windows],
        "memberships_per_s_saturated": round(achieved * PAGE_SIZE / window_seconds, 1),
        "memberships_per_s_ceiling": round(limit * PAGE_SIZE / window_seconds, 1),
        "requests": total,
        "requests_429": throttled,
        "share_429": round(throttled / total, 4) if total else 0.0,
        "client_wait_s": round(stats.wait_seconds, 1),
        **machine(),
    }


def _sample(stats: Any, samples: list[Sample], done: threading.Event) -> None:
    while not done.wait(SAMPLE_SECONDS):
        samples.append(Sample(time.monotonic(), stats.segments_total - stats.segments_done))


def _open_at(samples: list[Sample], moment: float) -> int:
    """Segments still being walked at `moment`, from the last sample taken before it."""
    open_segments = 0
    for sample in samples:
        if sample.at > moment:
            break
        open_segments = sample.segments_open
    return open_segments


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument(
        "--scale", type=float, default=3.0, help="windows this many times shorter (default 3)"
    )
    parser.add_argument(
        "--memberships",
        type=int,
        default=300_000,
        help="memberships of the `large` preset to extract (default 300,000)",
    )
    parser.add_argument("--latency", type=float, default=0.15, help="seconds a page (0.15)")
    parser.add_argument("--jitter", type=float, default=0.05, help="latency jitter (0.05)")
    parser.add_argument(
        "--workers", type=int, default=0, help="segments walked at once (default: needed + 2)"
    )
    parser.add_argument("--revision", default="2026-07-15", help="API revision (2026-07-15)")
    parser.add_argument(
        "--runs", type=int, default=1, help="extractions in a row, each on a fresh emulator (1)"
    )
    args = parser.parse_args(argv)
    if args.scale <= 0 or args.memberships < 0 or args.workers < 0 or args.runs < 1:
        parser.error("--scale must be positive, --memberships and --workers not negative")
    return args


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    runs = []
    for number in range(1, args.runs + 1):
        runs.append(run(args))
        log(f"ceiling: run {number}/{args.runs}: ratio {runs[-1]['ceiling_ratio']}")
    # The last run's figures, with the worst of every run for the targets.
    figures = dict(runs[-1])
    figures.update(
        runs=len(runs),
        failed_runs=sum(r["failed_runs"] for r in runs),
        ceiling_ratio_min=min(r["ceiling_ratio"] for r in runs),
        share_429_max=max(r["share_429"] for r in runs),
    )
    return finish(figures)


if __name__ == "__main__":
    sys.exit(main())
