"""Many accounts at once: K accounts, each at Klaviyo's limits, loaded concurrently.

Klaviyo limits each account on its own, so what scales is loading several accounts at the
same time. For each K (`--accounts 1,2,4`), this starts K emulators (their own processes,
`large` preset, `--memberships` each, Klaviyo's rate-limit tiers time-scaled by `--scale`,
50 ± 20 ms a page) and K workers, each a process of its own calling `run_account` for one
account into its own DuckDB file, as orchestrator tasks do. All K start together.

Figures per K: memberships per second of all accounts together against K times one
account's ceiling; each account's share of its ceiling over the steady windows it kept full
of requests (enough segments open throughout, and none of its checkpoints loading, when the
walk sends nothing); CPU seconds per 100,000 memberships (workers, and emulators apart), and
the cores the workers kept busy over the run; peak RSS of a worker; requests answered 429.
And the largest K at which every account still held 0.9 of its ceiling on this machine.

Time-scaling makes each account S times as fast as on Klaviyo, hence S times as costly in
CPU: `accounts_per_core_at_klaviyo_rate` projects the measured CPU cost to unscaled limits.
`--one-core` measures it instead: every worker runs on one CPU (the emulators on the others),
so K accounts at S times Klaviyo's rate load one core as K x S accounts would at Klaviyo's;
`accounts_per_core_held` is S times the largest K at which every account still held 0.9 of
its ceiling (`--accounts 4,5` at the default scale tries 24 and 30).
The latency is that of a nearby region, so that a few requests in flight keep an account at its
limit through most of its segments (`ceiling.py` measures 150 ms pages); it changes the threads
each worker needs, not the CPU per page.

Prints one JSON line; exits 1 if a run failed.
"""

from __future__ import annotations

import argparse
import functools
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
        if args.one_core:
            for emu in emulators:
                _pin_process(emu.pid, _other_cores())
        cpu_before = [process_cpu_seconds(emu.pid) for emu in emulators]
        go = Path(tmp) / "go"
        workers = []
        for number, emu in enumerate(emulators):
            account_id = f"shop_{number + 1}"
            command = [sys.executable, __file__, "--worker", account_id, "--base-url"]
            command += [emu.base_url, "--folder", tmp, "--scale", str(args.scale)]
            command += ["--workers", str(needed + EXTRA_WORKERS), "--go", str(go)]
            command += ["--one-core"] if args.one_core else []
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
        "worker_cores_busy": round(worker_cpu / elapsed, 2) if elapsed > 0 else 0.0,
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
    saturated = [w for w in windows if _fewest_open(samples, w["start"], w["seconds"]) >= needed]
    if not saturated:
        return 0.0
    return sum(w["allowed"] for w in saturated) / len(saturated) / STEADY_LIMIT


def _fewest_open(samples: list[list[float]], start: float, seconds: float) -> int:
    """The fewest segments the account had open in a window (0 while it loaded)."""
    inside = [int(count) for at, count in samples if start <= at <= start + seconds]
    return min(inside, default=0)


def _worker_core() -> int:
    """The CPU every worker runs on with `--one-core`: the last this process may use."""
    return max(os.sched_getaffinity(0))


def _other_cores() -> set[int]:
    return os.sched_getaffinity(0) - {_worker_core()}


def _pin_process(pid: int, cores: set[int]) -> None:
    """Every thread of process `pid` onto `cores`; threads it starts later inherit them."""
    for task in Path(f"/proc/{pid}/task").iterdir():
        os.sched_setaffinity(int(task.name), cores)


def _wait_ready(folder: str, accounts: int) -> None:
    """Until every worker has imported what it needs and waits for the start signal."""
    deadline = time.monotonic() + 120
    while len(list(Path(folder).glob("ready-*"))) < accounts:
        if time.monotonic() > deadline:
            raise RuntimeError("the workers did not get ready in 120 s")
        time.sleep(0.1)


def worker(args: argparse.Namespace) -> int:
    """One account's run in this process; prints its figures as one JSON line."""
    if args.one_core:  # before any import starts a thread
        os.sched_setaffinity(0, {_worker_core()})
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
    done, loading = threading.Event(), threading.Event()
    _mark_loads(loading)

    def sample() -> None:
        while not done.wait(SAMPLE_SECONDS):
            walking = 0 if loading.is_set() else stats.segments_total - stats.segments_done
            samples.append([time.monotonic(), walking])

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


def _mark_loads(loading: threading.Event) -> None:
    """Sets `loading` during each normalize and load step of this process's pipelines.

    A checkpoint's segments stay open while it loads, but the walk sends no request then:
    its windows are the load's, not the account's ceiling.
    """
    from dlt.pipeline.pipeline import Pipeline

    for step in ("normalize", "load"):
        method = getattr(Pipeline, step)

        @functools.wraps(method)
        def marked(self: Any, *args: Any, _method: Any = method, **kwargs: Any) -> Any:
            loading.set()
            try:
                return _method(self, *args, **kwargs)
            finally:
                loading.clear()

        setattr(Pipeline, step, marked)


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
    parser.add_argument(
        "--one-core",
        action="store_true",
        help="every worker on one CPU, the emulators on the others (needs 2 CPUs or more)",
    )
    parser.add_argument("--worker", help=argparse.SUPPRESS)
    parser.add_argument("--base-url", help=argparse.SUPPRESS)
    parser.add_argument("--folder", help=argparse.SUPPRESS)
    parser.add_argument("--workers", type=int, default=0, help=argparse.SUPPRESS)
    parser.add_argument("--go", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    args.counts = [int(part) for part in str(args.accounts).split(",") if part.strip()]
    if args.scale <= 0 or args.memberships <= 0 or not args.counts or min(args.counts) < 1:
        parser.error("--scale and --memberships must be positive, --accounts a list of K >= 1")
    if args.one_core and len(os.sched_getaffinity(0)) < 2:
        parser.error("--one-core needs 2 CPUs or more: one for the workers, one for the emulators")
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
        "one_core": args.one_core,
        "accounts_per_core_held": round(max(holding, default=0) * args.scale, 1)
        if args.one_core
        else None,
        "phases": phases,
        **machine(),
    }
    return finish(figures)


if __name__ == "__main__":
    sys.exit(main())
