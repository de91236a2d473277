"""Incremental run: requests and seconds to pick up 1% new joins after a full load.

Loads the `large` preset (or `--memberships N` of it) into DuckDB, then adds new members to
the segments (1% of all memberships by default, spread over the segments in proportion to
their size, joined during the last hour), runs the pipeline again and counts every request
the emulator answered during that second run. The bound is what the incremental walk needs:
the segment list pages, plus per segment one profile page (the inclusive cursor re-reads the
newest members) and one page per 100 new joins. The loaded table must hold every membership.

The emulator runs in this process (limits off, no latency) so that its data can be changed
between the runs; seconds are therefore shared with the emulator and only indicative.

A segment that Klaviyo is still computing (`is_processing`, one in the preset) keeps its
cursor, so each run walks it in full: its requests are also reported apart, and the other
segments' requests (with the segment list) are checked against their own bound.

Prints one JSON line; exits 1 if a run failed or memberships are missing.
"""

from __future__ import annotations

import argparse
import math
import random
import sys
import time
from datetime import timedelta
from typing import Any

from support import bench_pipeline, dlt_workspace, finish, log, machine, scale_client_windows

SEGMENTS_PAGE_SIZE = 10
PROFILES_PAGE_SIZE = 100
JOIN_SPREAD_SECONDS = 3600


def spread(total: int, sizes: dict[str, int]) -> dict[str, int]:
    """`total` new joins over the segments in proportion to `sizes` (largest remainders)."""
    weight = sum(sizes.values())
    if not weight:
        return dict.fromkeys(sizes, 0)
    shares = {segment: total * size / weight for segment, size in sizes.items()}
    joins = {segment: math.floor(share) for segment, share in shares.items()}
    by_remainder = sorted(shares, key=lambda s: shares[s] - joins[s], reverse=True)
    for segment in by_remainder[: total - sum(joins.values())]:
        joins[segment] += 1
    return joins


def add_joins(emulator: Any, joins: dict[str, int], seed: int) -> int:
    """Adds the new members: profiles of the account that are not in the segment yet."""
    rng = random.Random(seed)
    profile_ids = emulator.profile_ids()
    now = emulator.now()
    added = 0
    for segment_id, count in joins.items():
        members = emulator.members(segment_id)
        candidates = rng.sample(profile_ids, min(len(profile_ids), 3 * count + 10))
        newcomers = [p for p in candidates if p not in members][:count]
        for profile_id in newcomers:
            joined = now - timedelta(seconds=rng.randrange(JOIN_SPREAD_SECONDS))
            emulator.add_member(segment_id, profile_id, joined)
        added += len(newcomers)
    return added


def request_bound(joins: dict[str, int], segments: int) -> int:
    """Segment list pages + per segment in `joins` one profile page and one per 100 joins."""
    list_pages = max(1, math.ceil(segments / SEGMENTS_PAGE_SIZE))
    return list_pages + sum(1 + math.ceil(j / PROFILES_PAGE_SIZE) for j in joins.values())


def run(args: argparse.Namespace) -> dict[str, Any]:
    """A full load, the new joins, an incremental load; the second run's figures."""
    from klaviyo_emulator import Emulator
    from pipelines.klaviyo_segments_pipeline import load_segments

    failure: str | None = None
    figures: dict[str, Any] = {}
    emulator = Emulator(dataset="large", seed=args.seed, memberships=args.memberships or None)
    with dlt_workspace() as folder, emulator:
        scale_client_windows(None)
        pipeline = bench_pipeline(folder, "incremental")
        source_options: dict[str, Any] = {
            "base_url": emulator.base_url,
            "api_key": emulator.api_key,
            "max_workers": args.workers,
        }
        try:
            started = time.perf_counter()
            load_segments(pipeline, **source_options)
            full_seconds = time.perf_counter() - started
            sizes = {s: len(emulator.members(s)) for s in emulator.segment_ids()}
            joins = spread(round(sum(sizes.values()) * args.new_share), sizes)
            added = add_joins(emulator, joins, args.seed)
            emulator.stats.reset()
            started = time.perf_counter()
            load_segments(pipeline, **source_options)
            seconds = time.perf_counter() - started
            requests = dict(emulator.stats.requests)
            expected = sum(len(emulator.members(s)) for s in emulator.segment_ids())
            loaded = _loaded_memberships(pipeline)
            processing = [s for s in sizes if emulator.segment(s)["is_processing"]]
            settled = {s: j for s, j in joins.items() if s not in processing}
            by_segment = emulator.stats.requests_by_segment
            processing_requests = sum(by_segment[s] for s in processing)
            figures = {
                "memberships_before": sum(sizes.values()),
                "segments": len(sizes),
                "new_joins": added,
                "full_load_s": round(full_seconds, 1),
                "requests": sum(requests.values()),
                "request_bound": request_bound(joins, len(sizes)),
                "processing_segments": len(processing),
                "requests_processing_segments": processing_requests,
                "requests_other_segments": sum(requests.values()) - processing_requests,
                "request_bound_other_segments": request_bound(settled, len(sizes)),
                "requests_by_operation": requests,
                "seconds": round(seconds, 2),
                "memberships_loaded": loaded,
                "memberships_expected": expected,
            }
            if loaded != expected:
                failure = f"{loaded} memberships loaded, the account has {expected}"
        except Exception as error:  # the figure is a failed run; the reason goes to stderr
            failure = f"{type(error).__name__}: {error}"
    within = bool(figures) and figures["requests"] <= figures["request_bound"]
    within_other = (
        bool(figures)
        and figures["requests_other_segments"] <= figures["request_bound_other_segments"]
    )
    if failure:
        log(f"incremental: the run failed: {failure}")
    return {
        "bench": "incremental",
        "failed_runs": int(failure is not None),
        "workers": args.workers,
        **figures,
        "within_bound": within,
        "within_bound_other_segments": within_other,
        **machine(),
    }


def _loaded_memberships(pipeline: Any) -> int:
    with pipeline.sql_client() as client:
        table = client.make_qualified_table_name("segment_memberships")
        rows = client.execute_sql(f"select count(*) from {table}")
    return int(rows[0][0]) if rows else 0


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument(
        "--memberships",
        type=int,
        default=200_000,
        help="memberships of the `large` preset (default 200,000; 0 = all 1,050,000)",
    )
    parser.add_argument(
        "--new-share", type=float, default=0.01, help="new joins as a share of memberships"
    )
    parser.add_argument("--workers", type=int, default=4, help="segments walked at once (4)")
    parser.add_argument("--seed", type=int, default=1, help="dataset and join seed (1)")
    args = parser.parse_args(argv)
    if args.memberships < 0 or not 0 <= args.new_share <= 1 or args.workers < 1:
        parser.error("--memberships >= 0, 0 <= --new-share <= 1, --workers >= 1")
    return args


def main(argv: list[str] | None = None) -> int:
    figures = run(parse_args(argv))
    return finish(figures)


if __name__ == "__main__":
    sys.exit(main())
