"""Resume: a first load killed at random moments, then finished, against one uninterrupted load.

Both loads read the same account (`large` preset, or `--memberships N` of it) from emulators
with no rate limits and no latency, in processes of their own, with the pipeline's default
checkpoints (every 2,000 profile pages). The killed load is SIGKILLed at `--kills` random
moments of its course (drawn from `--seed`), restarted each time, then left to finish.

Prints one JSON line: the requests of all the killed runs and the final one over those of the
uninterrupted load (`requests_ratio`, target at most 1.05), memberships lost and duplicate keys
in the tables afterwards (both 0), and the peak RSS of a load process. A kill loses at most
the work since the last checkpoint, so the ratio depends on `--checkpoint-pages` against the
size of the load: about 1 + (kills x interval / 2) / pages of the whole load. Exits 1 if a run failed or the tables are not whole.
"""

from __future__ import annotations

import argparse
import random
import resource
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

from support import (
    LARGE_MEMBERSHIPS,
    dlt_workspace,
    emulator_process,
    finish,
    large_preset_parser,
    log,
    machine,
)

KEYS = {
    "segment_memberships": "segment_id, profile_id",
    "segment_membership_history": "segment_id, profile_id, joined_group_at",
    "profiles": "id",
}


def child(folder: str, base_url: str, api_key: str, workers: int, checkpoint_pages: int) -> None:
    """One load in this process, with the source's own limiter off like the emulator's."""
    from support import bench_pipeline, scale_client_windows

    from pipelines.klaviyo_segments_pipeline import load_segments

    scale_client_windows(None)
    pipeline = bench_pipeline(Path(folder), "resume")
    report = load_segments(
        pipeline,
        base_url=base_url,
        api_key=api_key,
        max_workers=workers,
        checkpoint_pages=checkpoint_pages,
    )
    print(f"checkpoints {report.checkpoints}", flush=True)


def _start(folder: Path, emulator: Any, args: argparse.Namespace) -> subprocess.Popen[str]:
    command = [sys.executable, __file__, "--child", str(folder), emulator.base_url]
    command += [str(args.workers), str(args.checkpoint_pages)]
    return subprocess.Popen(
        command,
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=_child_environment(emulator.api_key),
    )


def _child_environment(api_key: str) -> dict[str, str]:
    import os

    return {**os.environ, "KLAVIYO_BENCH_API_KEY": api_key}


def _load(folder: Path, emulator: Any, args: argparse.Namespace, kill_after: float | None) -> float:
    """One load; killed after `kill_after` seconds when given. Returns its seconds."""
    started = time.perf_counter()
    process = _start(folder, emulator, args)
    try:
        process.wait(timeout=kill_after)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait()
        return time.perf_counter() - started
    if process.returncode != 0:
        raise RuntimeError(f"a load failed: {process.stderr.read() if process.stderr else ''}")
    return time.perf_counter() - started


def _requests(emulator: Any) -> int:
    return int(sum(emulator.report.get("requests", {}).values()))


def _tables(folder: Path) -> dict[str, tuple[int, int]]:
    """(rows, distinct keys) of each keyed table."""
    import duckdb

    with duckdb.connect(str(folder / "resume.duckdb"), read_only=True) as connection:
        counts = {}
        for table, key in KEYS.items():
            sql = f"select count(*), count(distinct ({key})) from klaviyo.{table}"
            rows, distinct = connection.execute(sql).fetchone() or (0, 0)
            counts[table] = (int(rows), int(distinct))
        return counts


def run(args: argparse.Namespace) -> dict[str, Any]:
    expected = args.memberships or LARGE_MEMBERSHIPS
    options = ["--dataset", "large", "--rate-limits", "off", "--latency", "0", "--seed", "1"]
    if args.memberships:
        options += ["--memberships", str(args.memberships)]
    rng = random.Random(args.seed)
    failure: str | None = None
    kills: list[float] = []
    tables: dict[str, tuple[int, int]] = {}
    with dlt_workspace() as workspace:
        with emulator_process(*options) as emulator:
            whole = _load(workspace / "whole", emulator, args, None)
        uninterrupted = _requests(emulator)
        log(f"resume: uninterrupted load {whole:.1f}s, {uninterrupted} requests")
        with emulator_process(*options) as emulator:
            try:
                moments = sorted(rng.uniform(0.1, 0.9) * whole for _ in range(args.kills))
                for moment in moments:
                    kills.append(round(moment, 1))
                    _load(workspace / "killed", emulator, args, moment)
                _load(workspace / "killed", emulator, args, None)
                tables = _tables(workspace / "killed")
            except Exception as error:  # the figure is a failed run; the reason goes to stderr
                failure = f"{type(error).__name__}: {error}"
        resumed = _requests(emulator)
    memberships = tables.get("segment_memberships", (0, 0))
    lost = expected - memberships[1]
    duplicates = sum(rows - distinct for rows, distinct in tables.values())
    if failure is None and (lost or duplicates):
        failure = f"{lost} memberships lost, {duplicates} duplicate keys"
    if failure:
        log(f"resume: {failure}")
    return {
        "bench": "resume",
        "failed_runs": int(failure is not None),
        "memberships": expected,
        "workers": args.workers,
        "checkpoint_pages": args.checkpoint_pages,
        "kills_after_s": kills,
        "uninterrupted_s": round(whole, 1),
        "requests_uninterrupted": uninterrupted,
        "requests_killed_and_resumed": resumed,
        "requests_ratio": round(resumed / uninterrupted, 4) if uninterrupted else None,
        "memberships_lost": lost,
        "duplicate_keys": duplicates,
        "peak_rss_mb_per_load": round(
            resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024, 1
        ),
        **machine(),
    }


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = large_preset_parser(__doc__)
    parser.add_argument("--kills", type=int, default=3, help="kills before the last run (3)")
    parser.add_argument("--seed", type=int, default=1, help="draws the kill moments (1)")
    parser.add_argument("--workers", type=int, default=4, help="segments walked at once (4)")
    parser.add_argument(
        "--checkpoint-pages",
        type=int,
        default=2000,
        help="profile pages between checkpoints (the pipeline's default, 2000)",
    )
    args = parser.parse_args(argv)
    if args.memberships < 0 or args.kills < 0 or args.workers < 1:
        parser.error("--memberships and --kills must not be negative, --workers at least 1")
    return args


def main(argv: list[str] | None = None) -> int:
    if argv is None and len(sys.argv) > 1 and sys.argv[1] == "--child":
        import os

        folder, base_url = sys.argv[2], sys.argv[3]
        workers, pages = int(sys.argv[4]), int(sys.argv[5])
        child(folder, base_url, os.environ["KLAVIYO_BENCH_API_KEY"], workers, pages)
        return 0
    return finish(run(parse_args(argv)))


if __name__ == "__main__":
    sys.exit(main())
