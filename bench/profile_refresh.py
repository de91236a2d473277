"""Requests a day to keep `profiles` current: per revision, per way, on two kinds of account.

The accounts, scaled by `--scale` (default 1/100) and then measured:

* `members`: 1,000,000 memberships in an account of 1,000,000 profiles (most profiles are
  members);
* `few_members`: an account of 10,000,000 profiles of which 200,000 memberships are in the
  loaded segments.

Each day 10% of the account's profiles change (email and a property). For each account,
revision (2024-06-15, where id pages hold 1,000, and 2026-07-15, where they hold 100) and way
(`off`: the daily reconciliation lists ids and attributes stay as of the join; `segments`: the
daily reconciliation walks the members with their attributes; `updated`: the reconciliation
lists ids and the account's changed profiles are read by `updated`), the benchmark makes a
first load, moves the clock a day on, changes the profiles, and counts every request the
emulator answers during the second (daily) run. `extra` is what a way costs beyond `off`,
the reconciliation that runs anyway. It also checks that
every current member's row holds the account's email after the daily run (`stale_rows`).

Small accounts pay a page per segment however few members it has, so the measured requests
do not scale linearly. Each result also gives the request count a model predicts from the
segment sizes (`model`: an id page per 100 or 1,000 members and one page from each cursor
for `off`, a profile page per 100 members for `segments`, `off` plus a page per 100 changed
profiles for `updated`) and the same model at full size (`model_full_size`, every segment
and the changed profiles scaled up), which is what the README quotes.

The emulator runs in this process (limits off) so that the clock and the data can be changed.
Prints one JSON line; exits 1 if a run failed or a refreshing way left a stale row.
"""

from __future__ import annotations

import argparse
import math
import random
import sys
from typing import Any

from support import bench_pipeline, dlt_workspace, finish, log, machine, scale_client_windows

ID_PAGE = {"2024-06-15": 1000, "2026-07-15": 100}
PROFILE_PAGE = 100
ACCOUNTS = {"members": (1_000_000, 1_000_000), "few_members": (10_000_000, 200_000)}
"""Account name: (profiles, memberships) at full size."""
REVISIONS = ("2024-06-15", "2026-07-15")
WAYS = {
    "off": {"refresh_profiles_every_hours": "off"},
    "segments": {"refresh_profiles_by": "segments"},
    "updated": {"refresh_profiles_by": "updated"},
}
CHANGED_SHARE = 0.10
DAY_SECONDS = 24 * 3600 + 60


def daily_run(account: str, revision: str, way: str, scale: float, seed: int) -> dict[str, Any]:
    """First load, a day of changes, the daily run: its requests and stale rows."""
    from klaviyo_emulator import Emulator
    from pipelines.klaviyo_segments_pipeline import load_segments
    from sources.klaviyo import dates

    profiles, memberships = (max(1, round(n * scale)) for n in ACCOUNTS[account])
    emulator = Emulator(dataset="large", seed=seed, profiles=profiles, memberships=memberships)
    with dlt_workspace() as folder, emulator:
        scale_client_windows(None)
        saved_now = dates.utc_now
        dates.utc_now = emulator.now  # one clock for the source and the emulator
        try:
            for segment_id in emulator.segment_ids():
                emulator.set_segment_flags(segment_id, is_processing=False, is_active=True)
            pipeline = bench_pipeline(folder, f"refresh_{account}_{way}")
            options: dict[str, Any] = {
                "base_url": emulator.base_url,
                "api_key": emulator.api_key,
                "revision": revision,
                **WAYS[way],
            }
            load_segments(pipeline, **options)
            emulator.advance_clock(DAY_SECONDS)
            changed = _change_profiles(emulator, seed)
            emulator.advance_clock(60)
            emulator.stats.reset()
            load_segments(pipeline, **options)
            requests = dict(emulator.stats.requests)
            stale = _stale_rows(pipeline, emulator)
            sizes = [len(emulator.members(s)) for s in emulator.segment_ids()]
        finally:
            dates.utc_now = saved_now
    return {
        "profiles": profiles,
        "memberships": memberships,
        "changed_profiles": changed,
        "requests": sum(requests.values()),
        "requests_by_operation": requests,
        "stale_rows": stale,
        "model": model(sizes, changed, revision, way) + requests.get("get_segments", 0),
        "model_full_size": model(
            [round(n / scale) for n in sizes], round(changed / scale), revision, way
        ),
    }


def model(sizes: list[int], changed: int, revision: str, way: str) -> int:
    """Profile and id requests of the daily run, from the segment sizes (see the docstring)."""
    # an empty segment has no cursor: each run walks it as a first load, without ids
    ids = sum(math.ceil(n / ID_PAGE[revision]) for n in sizes)
    from_cursors = len(sizes)
    if way == "segments":
        return sum(max(1, math.ceil(n / PROFILE_PAGE)) for n in sizes)
    off = ids + from_cursors
    return off + max(1, math.ceil(changed / PROFILE_PAGE)) if way == "updated" else off


def _change_profiles(emulator: Any, seed: int) -> int:
    rng = random.Random(seed)
    everyone = emulator.all_profile_ids()
    chosen = rng.sample(everyone, round(len(everyone) * CHANGED_SHARE))
    for number, profile_id in enumerate(chosen):
        emulator.update_profile(profile_id, email=f"changed.{number}@example.com")
    return len(chosen)


def _stale_rows(pipeline: Any, emulator: Any) -> int:
    members = {p for s in emulator.segment_ids() for p in emulator.members(s)}
    with pipeline.sql_client() as client:
        table = client.make_qualified_table_name("profiles")
        stored = dict(client.execute_sql(f"select id, email from {table}"))
    return sum(1 for p in members if stored.get(p) != emulator.profile(p).get("email"))


def run(args: argparse.Namespace) -> dict[str, Any]:
    """Every account × revision × way; extras against `off`, scaled to full size."""
    figures: dict[str, Any] = {}
    failures: list[str] = []
    for account in ACCOUNTS:
        for revision in REVISIONS:
            measured: dict[str, Any] = {}
            for way in WAYS:
                try:
                    measured[way] = daily_run(account, revision, way, args.scale, args.seed)
                except Exception as error:  # a failed run is a figure; the reason to stderr
                    failures.append(f"{account} {revision} {way}: {type(error).__name__}: {error}")
                    continue
                if way != "off" and measured[way]["stale_rows"]:
                    failures.append(f"{account} {revision} {way}: stale rows")
            off = measured.get("off")
            for result in measured.values():
                if off is not None:
                    result["extra"] = result["requests"] - off["requests"]
                    result["extra_full_size"] = result["model_full_size"] - off["model_full_size"]
            figures[f"{account}@{revision}"] = measured
    for failure in failures:
        log(f"profile_refresh: {failure}")
    return {
        "bench": "profile_refresh",
        "failed_runs": len(failures),
        "scale": args.scale,
        "changed_share": CHANGED_SHARE,
        **figures,
        **machine(),
    }


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument(
        "--scale", type=float, default=0.01, help="share of the full-size accounts (0.01)"
    )
    parser.add_argument("--seed", type=int, default=1, help="dataset and change seed (1)")
    args = parser.parse_args(argv)
    if not 0 < args.scale <= 1:
        parser.error("0 < --scale <= 1")
    return args


def main(argv: list[str] | None = None) -> int:
    return finish(run(parse_args(argv)))


if __name__ == "__main__":
    sys.exit(main())
