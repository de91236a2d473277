"""Soak: many incremental runs against a changing, faulty account; prints one JSON line.

One emulator and one DuckDB pipeline live for the whole soak. Before each run the account
changes at random (joins, joins of existing profiles, re-joins, leaves, new segments, tag
links and unlinks, renames, now and then a deleted segment) and the emulator injects random
faults (5xx with JSON and HTML bodies, dropped connections, truncated bodies, 429s, odd 200s,
answers slower than the client's timeout). Every few runs one segment fails past the retry
bound on purpose: that run must fail with one line and commit nothing, and the next one must
catch up. After every run the dataset is compared with the emulator's ground truth:

* every current member is loaded with its most recent `joined_group_at`;
* where `segment_memberships.is_member` exists, the members flagged are exactly the current
  ones (every run reconciles, inactive segments too; a segment Klaviyo is still computing is
  left alone, as the source promises), and a deleted segment keeps no flagged member;
* no table holds a primary key twice; `segment_tags` are exactly the current links;
* every segment in the account is loaded, and a deleted one carries `deleted_at`.

Retry backoff is shortened to milliseconds (the bounds are the real ones): the soak is about
correctness, and the backoff only adds sleeping. Usage:

    python bench/soak.py [--runs 60] [--dataset demo] [--seed 7] [--fault-rate 0.05]
                         [--fail-every 10] [--changes 20] [--page-size 100] [--batch-rows 5000]
"""

from __future__ import annotations

import argparse
import json
import os
import random
import sys
import tempfile
import time
from collections import Counter
from dataclasses import asdict, dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import dlt
from dlt.pipeline.exceptions import PipelineStepFailed

from klaviyo_emulator import Emulator
from sources.klaviyo import ExtractionStats, klaviyo_source, settings
from sources.klaviyo.exceptions import find_klaviyo_error

DATASET = "klaviyo"
TABLE_KEYS = {
    "segments": "id",
    "tags": "id",
    "segment_tags": "segment_id, tag_id",
    "profiles": "id",
    "segment_memberships": "segment_id, profile_id",
    "segment_membership_history": "segment_id, profile_id, joined_group_at",
}
# Share of the fault rate each kind gets; 429 and slow cost real seconds, so they are rare.
FAULT_MIX = {
    "503": 0.2,
    "500": 0.1,
    "502-html": 0.15,
    "504-html": 0.1,
    "drop": 0.15,
    "truncate": 0.15,
    "json-200-not-jsonapi": 0.05,
    "429": 0.05,
    "slow": 0.05,
}
HARD_FAULTS = ("503", "502-html", "drop", "truncate", "html-200")
SLOW_DELAY = 1.0
REQUEST_TIMEOUT = 0.5


@dataclass
class SoakConfig:
    """What to soak: sizes, randomness and how often a run is made to fail."""

    runs: int = 60
    dataset: str = "demo"
    seed: int = 7
    fault_rate: float = 0.05
    fail_every: int = 10
    page_size: int = settings.SEGMENT_PROFILES_PAGE_SIZE
    batch_rows: int = settings.MEMBERSHIP_BATCH_ROWS
    workers: int = 4
    changes_per_run: int = 20


@dataclass
class SoakReport:
    """Counts of one soak; `mismatches` lists every disagreement with the ground truth."""

    runs: int = 0
    completed: int = 0
    failed_on_purpose: int = 0
    recovered: int = 0
    unexpected_failures: int = 0
    mismatches: list[str] = field(default_factory=list)
    requests: int = 0
    retries: int = 0
    throttled: int = 0
    faults_injected: dict[str, int] = field(default_factory=dict)
    changes: dict[str, int] = field(default_factory=dict)
    memberships: int = 0
    segments: int = 0
    elapsed_s: float = 0.0


def soak(config: SoakConfig, workdir: Path) -> SoakReport:
    """Runs the soak in `workdir` (pipelines folder and DuckDB file) and reports."""
    report = SoakReport()
    changes: Counter[str] = Counter()
    rng = random.Random(config.seed)
    started = time.monotonic()
    with _patched(config), Emulator(dataset=config.dataset, seed=config.seed) as emu:
        _arm_random_faults(emu, config.fault_rate)
        pipeline = dlt.pipeline(
            pipeline_name="klaviyo_soak",
            destination=dlt.destinations.duckdb(str(workdir / "soak.duckdb")),
            dataset_name=DATASET,
            pipelines_dir=str(workdir / "pipelines"),
        )
        deleted: set[str] = set()
        failed_last = False
        for number in range(1, config.runs + 1):
            if number > 1:
                _change_account(emu, rng, config.changes_per_run, deleted, changes)
            on_purpose = config.fail_every > 0 and number % config.fail_every == 0
            outcome = _one_run(emu, pipeline, config, rng, on_purpose, report)
            report.runs += 1
            if outcome == "completed":
                report.completed += 1
                report.recovered += failed_last
                report.mismatches.extend(
                    f"run {number}: {m}" for m in check(pipeline, emu, deleted)
                )
            failed_last = outcome != "completed"
        report.faults_injected = dict(sorted(emu.faults.injected.items()))
        report.memberships = sum(len(emu.members(s)) for s in emu.segment_ids())
        report.segments = len(emu.segment_ids())
    report.changes = dict(sorted(changes.items()))
    report.elapsed_s = round(time.monotonic() - started, 1)
    return report


def _one_run(
    emu: Emulator,
    pipeline: dlt.Pipeline,
    config: SoakConfig,
    rng: random.Random,
    on_purpose: bool,
    report: SoakReport,
) -> str:
    """One run; returns "completed", "failed on purpose" or "failed"."""
    options: dict[str, Any] = {}
    before = _committed(pipeline) if on_purpose else None
    if on_purpose:
        victim = rng.choice(emu.segment_ids())
        kind = rng.choice(HARD_FAULTS)
        emu.faults.script(kind=kind, count=10_000, path_contains=f"/segments/{victim}/profiles")
        options["max_retries"] = 2
    stats = ExtractionStats()
    try:
        pipeline.run(
            klaviyo_source(
                api_key=emu.api_key,
                base_url=emu.base_url,
                max_workers=config.workers,
                request_timeout=REQUEST_TIMEOUT,
                reconcile_every_hours=0,
                reconcile_inactive=True,
                stats=stats,
                **options,
            )
        )
        outcome = "completed"
        if on_purpose:
            report.mismatches.append("a run meant to fail past the retry bound completed")
    except PipelineStepFailed as failure:
        error = find_klaviyo_error(failure)
        message = str(error) if error is not None else repr(failure)
        if not on_purpose or error is None or "\n" in message or emu.api_key in message:
            report.unexpected_failures += 1
            report.mismatches.append(f"unexpected failure: {message[:300]}")
            outcome = "failed"
        else:
            report.failed_on_purpose += 1
            outcome = "failed on purpose"
        if before is not None and _committed(pipeline) != before:
            report.mismatches.append("a failed run changed the dataset or the cursors")
    finally:
        if on_purpose:
            emu.faults.clear()
            _arm_random_faults(emu, config.fault_rate)
    report.requests += stats.requests
    report.retries += stats.retries
    report.throttled += stats.throttled
    return outcome


def check(pipeline: dlt.Pipeline, emu: Emulator, deleted: set[str]) -> list[str]:
    """Disagreements between the dataset and the emulator's ground truth."""
    with pipeline.sql_client() as client:

        def rows(sql: str) -> list[tuple[Any, ...]]:
            return [tuple(row) for row in client.execute_sql(sql) or []]

        columns = _columns(rows)
        problems = [
            f"{table}: {extra} duplicate keys"
            for table, key in TABLE_KEYS.items()
            if table in columns
            for (extra,) in rows(f"select count(*) - count(distinct ({key})) from {table}")
            if extra
        ]
        problems += _membership_problems(rows, columns, emu)
        links = set(rows("select segment_id, tag_id from segment_tags"))
        truth_links = {(s, t) for s in emu.segment_ids() for t in emu.segment_tags(s)}
        if links != truth_links:
            problems.append(f"segment_tags: {len(links ^ truth_links)} links differ")
        problems += _segment_problems(rows, columns, emu, deleted)
    return problems


def _membership_problems(rows: Any, columns: dict[str, set[str]], emu: Emulator) -> list[str]:
    truth = {
        (s, p): _utc(joined) for s in emu.segment_ids() for p, joined in emu.members(s).items()
    }
    loaded = {
        (s, p): _utc(j)
        for s, p, j in rows(
            "select segment_id, profile_id, joined_group_at from segment_memberships"
        )
    }
    problems = [
        f"member {key} joined {joined} but loaded {loaded.get(key)}"
        for key, joined in sorted(truth.items())
        if loaded.get(key) != joined
    ][:10]
    if "is_member" in columns.get("segment_memberships", set()):
        flagged = {
            (s, p)
            for s, p in rows(
                "select segment_id, profile_id from segment_memberships where is_member"
            )
        }
        # Klaviyo is still computing a processing segment: a missing member has not left yet.
        processing = {s for s in emu.segment_ids() if emu.segment(s)["is_processing"]}
        stale = sorted(k for k in flagged - truth.keys() if k[0] not in processing)
        problems += [f"{key} flagged is_member but is not a member" for key in stale][:10]
    return problems


def _segment_problems(
    rows: Any, columns: dict[str, set[str]], emu: Emulator, deleted: set[str]
) -> list[str]:
    loaded = {segment_id: name for segment_id, name in rows("select id, name from segments")}
    problems = [
        f"segment {s} not loaded or misnamed"
        for s in emu.segment_ids()
        if loaded.get(s) != emu.segment(s)["name"]
    ]
    if "deleted_at" in columns.get("segments", set()):
        tombstones = {s for (s,) in rows("select id from segments where deleted_at is not null")}
        problems += [f"segment {s} deleted but has no deleted_at" for s in deleted - tombstones]
        problems += [f"segment {s} live but has deleted_at" for s in tombstones - deleted]
    return problems


def _columns(rows: Any) -> dict[str, set[str]]:
    found: dict[str, set[str]] = {}
    for table, column in rows(
        "select table_name, column_name from information_schema.columns"
        f" where table_schema = '{DATASET}'"
    ):
        found.setdefault(table, set()).add(column)
    return found


def _committed(pipeline: dlt.Pipeline) -> tuple[Any, ...]:
    """Row counts of the data tables and the cursors: what a failed run must leave alone."""
    with pipeline.sql_client() as client:

        def rows(sql: str) -> list[tuple[Any, ...]]:
            return [tuple(row) for row in client.execute_sql(sql) or []]

        loaded = _columns(rows)
        counts = tuple(
            (table, rows(f"select count(*) from {table}")[0][0])
            for table in sorted(TABLE_KEYS)
            if table in loaded
        )
    resources = pipeline.state.get("sources", {}).get("klaviyo", {}).get("resources", {})
    cursors = json.dumps(
        {t: s.get("cursors") for t, s in resources.items() if isinstance(s, dict)}, sort_keys=True
    )
    return counts, cursors, pipeline.has_pending_data


def _change_account(
    emu: Emulator, rng: random.Random, count: int, deleted: set[str], changes: Counter[str]
) -> None:
    """About `count` random changes; the clock moves so that re-joins get a new time."""
    emu.advance_clock(rng.randint(1, 90))
    for _ in range(count):
        segments = emu.segment_ids()
        segment = rng.choice(segments)
        members = list(emu.members(segment))
        kind = rng.choices(
            ["join", "join_existing", "rejoin", "leave", "tag", "untag", "rename", "segment"],
            weights=[30, 20, 15, 15, 5, 3, 3, 2],
        )[0]
        if kind == "join":
            emu.add_member(segment, emu.create_profile(email=f"soak{rng.random()}@example.com"))
        elif kind == "join_existing" and emu.profile_ids():
            emu.add_member(segment, rng.choice(emu.profile_ids()))
        elif kind == "rejoin" and members:
            emu.add_member(segment, rng.choice(members))
        elif kind == "leave" and members:
            emu.remove_member(segment, rng.choice(members))
        elif kind == "tag":
            tags = emu.tag_ids()
            tag = rng.choice(tags) if tags and rng.random() < 0.7 else emu.create_tag("soak tag")
            emu.link_tag(segment, tag)
        elif kind == "untag" and emu.segment_tags(segment):
            emu.unlink_tag(segment, rng.choice(sorted(emu.segment_tags(segment))))
        elif kind == "rename":
            emu.rename_segment(segment, f"renamed {rng.randint(0, 10**6)}")
        elif kind == "segment":
            if len(segments) > 3 and rng.random() < 0.25:
                emu.delete_segment(segment)
                deleted.add(segment)
                kind = "delete_segment"
            else:
                new = emu.create_segment(f"soak segment {rng.randint(0, 10**6)}")
                for profile in rng.sample(emu.profile_ids(), min(12, len(emu.profile_ids()))):
                    emu.add_member(new, profile)
        else:
            continue
        changes[kind] += 1


def _arm_random_faults(emu: Emulator, rate: float) -> None:
    if rate <= 0:
        return
    for kind, share in FAULT_MIX.items():
        emu.faults.probability(kind=kind, p=rate * share, delay=SLOW_DELAY)


class _patched:
    """Small pages and batches, and millisecond backoff, for the soak's duration."""

    def __init__(self, config: SoakConfig) -> None:
        self._values = {
            "SEGMENT_PROFILES_PAGE_SIZE": config.page_size,
            "MEMBERSHIP_BATCH_ROWS": config.batch_rows,
            "RETRY_BACKOFF_BASE": 0.01,
            "RETRY_BACKOFF_CAP": 0.05,
        }
        self._saved: dict[str, Any] = {}

    def __enter__(self) -> None:
        for name, value in self._values.items():
            self._saved[name] = getattr(settings, name)
            setattr(settings, name, value)

    def __exit__(self, *exc: object) -> None:
        for name, value in self._saved.items():
            setattr(settings, name, value)


def _utc(value: datetime) -> datetime:
    return value.astimezone(timezone.utc)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    defaults = SoakConfig()
    parser.add_argument("--runs", type=int, default=defaults.runs)
    parser.add_argument("--dataset", default=defaults.dataset)
    parser.add_argument("--seed", type=int, default=defaults.seed)
    parser.add_argument("--fault-rate", type=float, default=defaults.fault_rate)
    parser.add_argument("--fail-every", type=int, default=defaults.fail_every)
    parser.add_argument("--changes", type=int, default=defaults.changes_per_run)
    parser.add_argument("--workers", type=int, default=defaults.workers)
    parser.add_argument("--page-size", type=int, default=defaults.page_size)
    parser.add_argument("--batch-rows", type=int, default=defaults.batch_rows)
    args = parser.parse_args(argv)
    config = SoakConfig(
        runs=args.runs,
        dataset=args.dataset,
        seed=args.seed,
        fault_rate=args.fault_rate,
        fail_every=args.fail_every,
        changes_per_run=args.changes,
        workers=args.workers,
        page_size=args.page_size,
        batch_rows=args.batch_rows,
    )
    os.environ.setdefault("RUNTIME__DLTHUB_TELEMETRY", "false")
    with tempfile.TemporaryDirectory(prefix="klaviyo-soak-") as workdir:
        os.environ["XDG_DATA_HOME"] = workdir
        report = soak(config, Path(workdir))
    figures = {"config": asdict(config), **asdict(report)}
    figures["mismatch_count"] = len(report.mismatches)
    figures["mismatches"] = report.mismatches[:20]
    print(json.dumps(figures))
    return 0 if not report.mismatches else 1


if __name__ == "__main__":
    sys.exit(main())
