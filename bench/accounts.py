"""Many accounts at once: K accounts, each at Klaviyo's limits, loaded concurrently.

Klaviyo limits each account on its own, so what scales is loading several accounts at the
same time. For each K (`--accounts 1,2,4`), this starts K emulators (their own processes,
`large` preset, `--memberships` each, Klaviyo's rate-limit tiers time-scaled by `--scale`,
50 ± 20 ms a page) and K workers, each a process of its own calling `run_account` for one
account into its own DuckDB file, as orchestrator tasks do. All K start together.

Figures per K: memberships per second of all accounts together against K times one
account's ceiling; each account's share of its ceiling over the steady windows it kept full
of requests (as `ceiling.py` counts them); CPU seconds per 100,000 memberships (workers, and
emulators apart); peak RSS of a worker; requests answered 429. And the largest K at which
every account still held 0.9 of its ceiling on this machine.

Time-scaling makes each account S times as fast as on Klaviyo, hence S times as costly in
CPU: `accounts_per_core_at_klaviyo_rate` projects the measured CPU cost to unscaled limits.
The latency is that of a nearby region, so that a few requests in flight keep an account at its
limit through most of its segments (`ceiling.py` measures 150 ms pages); it changes the threads
each worker needs, not the CPU per page.

Prints one JSON line; exits 1 if a run failed.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import subprocess
import sys
import tempfile
import threading
import time
from contextlib import ExitStack
from pathlib import Path
from typing import Any

from support import (
    emulator_process,
    finish,
    log,
    machine,
    peak_rss_mb,
    process_cpu_seconds,
    scale_client_windows,
)

PROFILES_OPERATION = "get_segment_profiles"
PAGE_SIZE = 100
STEADY_LIMIT = 750
"""Segment-profile requests per steady window at the default revision (2026-07-15)."""
HOLDS = 0.9
EXTRA_WORKERS = 2
SAMPLE_SECONDS = 0.1


def run_phase(accounts: int, args: argparse.Namespace) -> dict[str, Any]:
    """K accounts loaded at once; the phase's figures."""
    window = 60 / args.scale
    needed = math.ceil(STEADY_LIMIT / window * (args.latency + args.jitter))
    options = ["--dataset", "large", "--memberships", str(args.memberships)]
    options += ["--rate-limits", str(args.scale), "--latency", str(args.latency)]
    options += ["--jitter", str(args.jitter)]
    with ExitStack() as stack, tempfile.TemporaryDirectory(prefix="klaviyo-accounts-") as tmp:
        emulators = [stack.enter_context(emulator_process(*options)) for _ in range(accounts)]
        cpu_before = [process_cpu_seconds(emu.pid) for emu in emulators]
        go = Path(tmp) / "go"
        workers = []
        for number, emu in enumerate(emulators):
            account_id = f"shop_{number + 1}"
            command = [sys.executable, __file__, "--worker", account_id, "--base-url"]
            command += [emu.base_url, "--folder", tmp, "--scale", str(args.scale)]
            command += ["--workers", str(needed + EXTRA_WORKERS), "--go", str(go)]
            environment = {
                **os.environ,
                f"ACCOUNTS__{account_id.upper()}__API_KEY": emu.api_key,
                "RUNTIME__DLTHUB_TELEMETRY": "false",
                "XDG_DATA_HOME": str(Path(tmp) / "xdg"),
            }
            workers.append(
                subprocess.Popen(command, stdout=subprocess.PIPE, env=environment, text=True)
            )
        _wait_ready(tmp, accounts)
        go.touch()  # every worker starts its run now
        results = [json.loads((w.communicate()[0] or "{}").strip() or "{}") for w in workers]
        emulator_cpu = sum(
            process_cpu_seconds(emu.pid) - before
            for emu, before in zip(emulators, cpu_before, strict=True)
        )
    # The emulators' reports are written when they stop, at the end of the `with`.
    failed = [r for r in results if not r.get("ok")]
    for result in failed:
        log(f"accounts: a worker failed: {result.get('error', 'no output')}")
    ratios = [
        _ceiling_ratio(emu.report, result, needed, window)
        for emu, result in zip(emulators, results, strict=True)
        if result.get("ok")
    ]
    memberships = sum(r.get("memberships", 0) for r in results)
    started = min((r["started"] for r in results if r.get("ok")), default=0.0)
    finished = max((r["finished"] for r in results if r.get("ok")), default=0.0)
    elapsed = finished - started
    ceiling = STEADY_LIMIT * PAGE_SIZE / window
    total = sum(emu.report.get("total", 0) for emu in emulators)
    throttled = sum(emu.report.get("throttled", 0) for emu in emulators)
    worker_cpu = sum(r.get("cpu_s", 0.0) for r in results)
    per_100k = 100_000 / memberships if memberships else 0.0
    return {
        "accounts": accounts,
        "failed_runs": len(failed),
        "memberships": memberships,
        "elapsed_s": round(elapsed, 1),
        "memberships_per_s": round(memberships / elapsed, 1) if elapsed > 0 else 0.0,
        "ceiling_memberships_per_s": round(accounts * ceiling, 1),
        "aggregate_ratio": round(memberships / elapsed / (accounts * ceiling), 3)
        if elapsed > 0
        else 0.0,
        "ceiling_ratio_per_account": [round(r, 3) for r in ratios],
        "ceiling_ratio_min": round(min(ratios), 3) if ratios else 0.0,
        "worker_cpu_s_per_100k_memberships": round(worker_cpu * per_100k, 2),
        "emulator_cpu_s_per_100k_memberships": round(emulator_cpu * per_100k, 2),
        "worker_peak_rss_mb_max": max((r.get("peak_rss_mb") or 0 for r in results), default=0),
        "requests": total,
        "requests_429": throttled,
        "share_429": round(throttled / total, 4) if total else 0.0,
    }


def _ceiling_ratio(
    report: dict[str, Any], result: dict[str, Any], needed: int, window: float
) -> float:
    """Pages per steady window over the limit, in the windows the account kept saturated."""
    windows = [
        w
        for w in report.get("steady_windows", [])
        if w["bucket"] == PROFILES_OPERATION
        and w["start"] >= result["started"]
        and w["start"] + w["seconds"] <= result["finished"]
    ]
    samples = result.get("samples", [])
    saturated = [w for w in windows if _open_at(samples, w["start"] + w["seconds"]) >= needed]
    if not saturated:
        return 0.0
    return sum(w["allowed"] for w in saturated) / len(saturated) / STEADY_LIMIT


def _open_at(samples: list[list[float]], moment: float) -> int:
    open_segments = 0
    for at, count in samples:
        if at > moment:
            break
        open_segments = int(count)
    return open_segments


def _wait_ready(folder: str, accounts: int) -> None:
    """Until every worker has imported what it needs and waits for the start signal."""
    deadline = time.monotonic() + 120
    while len(list(Path(folder).glob("ready-*"))) < accounts:
        if time.monotonic() > deadline:
            raise RuntimeError("the workers did not get ready in 120 s")
        time.sleep(0.1)


def worker(args: argparse.Namespace) -> int:
    """One account's run in this process; prints its figures as one JSON line."""
    from pipelines.accounts import AccountsConfig, run_account
    from sources.klaviyo import ExtractionStats

    scale_client_windows(args.scale)
    folder = Path(args.folder)
    config = AccountsConfig.from_mapping(
        {args.worker: {"base_url": args.base_url, "max_workers": args.workers}},
        duckdb_dir=str(folder),
        pipelines_dir=str(folder / f"pipelines-{args.worker}"),
    )
    (folder / f"ready-{args.worker}").touch()
    while not Path(args.go).exists():
        time.sleep(0.01)
    stats = ExtractionStats()
    samples: list[list[float]] = []
    done = threading.Event()

    def sample() -> None:
        while not done.wait(SAMPLE_SECONDS):
            samples.append([time.monotonic(), stats.segments_total - stats.segments_done])

    sampler = threading.Thread(target=sample, daemon=True)
    cpu_before = process_cpu_seconds()
    started = time.monotonic()
    sampler.start()
    try:
        report = run_account(args.worker, config, stats=stats)
        figures: dict[str, Any] = {
            "ok": report.complete,
            "memberships": report.run.rows.get("segment_memberships", 0),
        }
    except Exception as error:  # reported by the parent
        figures = {"ok": False, "error": f"{type(error).__name__}: {error}"}
    finished = time.monotonic()
    done.set()
    sampler.join()
    figures.update(
        started=started,
        finished=finished,
        cpu_s=round(process_cpu_seconds() - cpu_before, 2),
        peak_rss_mb=peak_rss_mb(),
        samples=samples,
    )
    print(json.dumps(figures), flush=True)
    return 0


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--accounts", default="1,2,4", help="values of K, comma-separated")
    parser.add_argument("--scale", type=float, default=6.0, help="windows S times shorter (6)")
    parser.add_argument(
        "--memberships", type=int, default=180_000, help="memberships per account (180,000)"
    )
    parser.add_argument("--latency", type=float, default=0.05, help="seconds a page (0.05)")
    parser.add_argument("--jitter", type=float, default=0.02, help="latency jitter (0.02)")
    parser.add_argument("--worker", help=argparse.SUPPRESS)
    parser.add_argument("--base-url", help=argparse.SUPPRESS)
    parser.add_argument("--folder", help=argparse.SUPPRESS)
    parser.add_argument("--workers", type=int, default=0, help=argparse.SUPPRESS)
    parser.add_argument("--go", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    args.counts = [int(part) for part in str(args.accounts).split(",") if part.strip()]
    if args.scale <= 0 or args.memberships <= 0 or not args.counts or min(args.counts) < 1:
        parser.error("--scale and --memberships must be positive, --accounts a list of K >= 1")
    return args


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    if args.worker:
        return worker(args)
    phases = []
    for accounts in args.counts:
        phases.append(run_phase(accounts, args))
        log(f"accounts: K={accounts}: {json.dumps(phases[-1])}")
    holding = [
        p["accounts"] for p in phases if not p["failed_runs"] and p["ceiling_ratio_min"] >= HOLDS
    ]
    cpu = max((p["worker_cpu_s_per_100k_memberships"] for p in phases), default=0.0)
    klaviyo_rate = STEADY_LIMIT * PAGE_SIZE / 60
    figures = {
        "bench": "accounts",
        "failed_runs": sum(p["failed_runs"] for p in phases),
        "scale": args.scale,
        "steady_window_seconds": round(60 / args.scale, 2),
        "memberships_per_account": args.memberships,
        "ceiling_per_account_memberships_per_s": round(klaviyo_rate * args.scale, 1),
        "largest_k_holding_0_9": max(holding, default=0),
        "accounts_per_core_at_klaviyo_rate": round(100_000 / (cpu * klaviyo_rate), 1)
        if cpu
        else None,
        "phases": phases,
        **machine(),
    }
    return finish(figures)


if __name__ == "__main__":
    sys.exit(main())
