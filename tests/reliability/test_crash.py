"""Crash safety: `klaviyo-segments run` killed with SIGKILL during extract, normalize or load.

The killed run is a subprocess (crash_driver.py) against the emulator of the test process, so
the killed run and the reruns see one account. After the kill the next runs must produce the
tables of a run that never crashed: no duplicate keys, no member missing, and no cursor that
moved past rows which were not loaded. Between the runs the account changes every way the
tables follow: joins and re-joins, leaves, an emptied and a deleted segment, links added and
removed; some runs reconcile. A leave is stamped with the time a run saw it, so `left_at` and
`deleted_at` may differ from the run that never crashed: they are compared as set or not, and
checked on their own (the same in both membership tables, within the runs that could see it,
never moved by a later run).
"""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
from collections import Counter
from collections.abc import Callable
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import pytest

from klaviyo_emulator import Emulator

from .conftest import (
    DATASET,
    Snapshot,
    Warehouse,
    add_joins,
    membership_mismatches,
    truth_memberships,
    truth_segment_tags,
    utc,
)

DRIVER = Path(__file__).with_name("crash_driver.py")
MakeWarehouse = Callable[[str], Warehouse]


RECONCILE = {"reconcile_every_hours": 0}
"""Options of a run that reconciles every segment (`--reconcile-every-hours 0`)."""
STAMPS = ("left_at", "deleted_at")
"""Columns holding the time a run saw something: they depend on when the run ran."""


def drive(
    point: str, warehouse: Warehouse, emu: Any, cwd: Path, *options: str
) -> subprocess.CompletedProcess:
    """Runs the CLI into `warehouse`'s pipeline with `options`, killed at `point`."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("SOURCES__KLAVIYO__")}
    env.update(
        SOURCES__KLAVIYO__API_KEY=emu.api_key,
        SOURCES__KLAVIYO__BASE_URL=emu.base_url,
        KLAVIYO_CRASH_PAGE_SIZE="5",
        KLAVIYO_CRASH_BATCH_ROWS="10",
    )
    arguments = [
        "run",
        "--quiet",
        "--pipelines-dir",
        warehouse.pipeline.pipelines_dir,
        "--pipeline-name",
        warehouse.pipeline.pipeline_name,
        "--duckdb-file",
        str(warehouse.duckdb_file),
        "--dataset",
        DATASET,
        *options,
    ]
    return subprocess.run(
        [sys.executable, str(DRIVER), point, *arguments],
        cwd=cwd,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )


def change_account(emu: Emulator, label: str) -> None:
    """Joins, re-joins, a new segment with members and a new tag link."""
    emu.advance_clock(5)
    add_joins(emu, 25, label)
    segment = emu.create_segment(f"{label} segment")
    for profile in emu.profile_ids()[:7]:
        emu.add_member(segment, profile)
    emu.link_tag(segment, emu.create_tag(f"{label} tag"))


def change_account_every_way(emu: Emulator, label: str) -> None:
    """`change_account`, then leaves, an emptied segment, a deleted segment, an unlinked tag."""
    change_account(emu, label)
    settled = [
        s
        for s in emu.segment_ids()
        if emu.segment(s)["is_active"]
        and not emu.segment(s)["is_processing"]
        and len(emu.members(s)) >= 3
    ]
    leaving, emptied, deleted = settled[:3]
    for profile in sorted(emu.members(leaving))[:3]:
        emu.remove_member(leaving, profile)
    for profile in list(emu.members(emptied)):
        emu.remove_member(emptied, profile)
    emu.delete_segment(deleted)
    tagged = next(s for s in emu.segment_ids() if emu.segment_tags(s))
    emu.unlink_tag(tagged, sorted(emu.segment_tags(tagged))[0])


def without_stamps(warehouse: Warehouse) -> Snapshot:
    """The snapshot with `left_at` and `deleted_at` reduced to whether they are set."""
    masked: Snapshot = {}
    for table, rows in warehouse.snapshot().items():
        stamps = [i for i, name in enumerate(warehouse.columns(table)) if name in STAMPS]
        masked[table] = Counter(
            {
                tuple(v is not None if i in stamps else v for i, v in enumerate(row)): n
                for row, n in rows.items()
            }
        )
    return masked


def assert_matches_truth(warehouse: Warehouse, emu: Emulator, reconciled: bool = True) -> None:
    """The tables hold the account; leaves only when the last run reconciled."""
    assert warehouse.duplicate_keys() == {}
    mismatches = membership_mismatches(warehouse, emu)
    if not reconciled:  # a leave is seen by a reconciliation only
        mismatches = [m for m in mismatches if not m.endswith("flagged is_member but left")]
    assert mismatches == []
    assert set(warehouse.rows("select segment_id, tag_id from segment_tags")) == (
        truth_segment_tags(emu)
    )
    # profiles keeps every profile it loaded, also those no longer in any segment
    assert set(emu.profile_ids()) <= {p for (p,) in warehouse.rows("select id from profiles")}


def assert_history_follows(
    warehouse: Warehouse,
    emu: Emulator,
    reconciled: bool,
    seen_between: tuple[datetime, datetime],
) -> None:
    """Both membership tables tell one story; after a reconciliation it is the account's.

    Every member row has exactly one open stay, its current one; every leave is closed in
    both tables with one `left_at`, stamped by a run between `seen_between`; deleted
    segments have a tombstone and no member left.
    """
    members = {
        (s, p, utc(j))
        for s, p, j in warehouse.rows(
            "select segment_id, profile_id, joined_group_at from segment_memberships"
            " where is_member is null or is_member"
        )
    }
    stays = {
        (s, p, utc(j)): utc(left) if left else None
        for s, p, j, left in warehouse.rows(
            "select segment_id, profile_id, joined_group_at, left_at"
            " from segment_membership_history"
        )
    }
    open_stays = [(s, p, j) for (s, p, j), left in stays.items() if left is None]
    assert sorted(open_stays) == sorted(members)  # one open stay per member, none for others
    if reconciled:
        assert members == {(s, p, j) for (s, p), j in truth_memberships(emu).items()}
    left = warehouse.rows(
        "select segment_id, profile_id, joined_group_at, left_at from segment_memberships"
        " where not is_member"
    )
    earliest, latest = seen_between
    for s, p, j, left_at in left:
        assert stays.get((s, p, utc(j))) == utc(left_at), (s, p)
        assert earliest <= utc(left_at) <= latest, (s, p, left_at)
    deleted = {s for (s,) in warehouse.rows("select id from segments")} - set(emu.segment_ids())
    tombstones = warehouse.rows("select id, deleted_at from segments where deleted_at is not null")
    assert {s for s, _ in tombstones} == deleted
    assert all(earliest <= utc(at) <= latest for _, at in tombstones)
    assert not {s for s, _, _ in members} & deleted


def now() -> datetime:
    """The clock a run stamps on what it sees (leaves, tombstones)."""
    return datetime.now(timezone.utc)


@pytest.mark.parametrize(
    "point, crash_on_first_run, reconciling",
    [
        ("pages:2", True, False),
        ("pages:6", False, True),
        ("leaves:1", False, True),
        ("after-extract", False, False),
        ("normalize-commit", False, True),
        ("after-normalize", False, False),
        ("load-job:3", False, True),
        ("before-sql", False, False),
        ("before-sql", False, True),
        ("complete-load", False, False),
        ("complete-load", False, True),
    ],
)
def test_rerun_after_kill_equals_a_run_that_never_crashed(
    emu: Emulator,
    warehouse_factory: MakeWarehouse,
    small_pages: int,
    tmp_path: Path,
    point: str,
    crash_on_first_run: bool,
    reconciling: bool,
) -> None:
    # `clean` runs in step with `crashed`, minus the crash: the history tables match too
    crashed, clean = warehouse_factory("crashed"), warehouse_factory("clean")
    options = RECONCILE if reconciling else {}
    if not crash_on_first_run:
        crashed.run(emu, **options)
        clean.run(emu, **options)
        change_account_every_way(emu, "second")
    rows_before, cursors_before = crashed.snapshot(), crashed.cursors()
    killed_at = now()

    killed = drive(point, crashed, emu, tmp_path, *(["--reconcile-every-hours", "0"] * reconciling))

    assert killed.returncode == -signal.SIGKILL, killed.stdout + killed.stderr
    crashed.reattach()
    assert crashed.duplicate_keys() == {}
    if not crashed.pipeline.has_pending_data:
        # nothing of the killed run survived: its cursors must not have survived either
        assert crashed.cursors() == cursors_before
        assert crashed.snapshot() == rows_before
    crashed.run(emu, **options)  # the next scheduled run (finishes pending packages, if any)
    seen_between = (killed_at, now())
    after_next_run = crashed.snapshot()
    crashed.reattach().run(emu, **options)  # and the one after it
    assert crashed.snapshot() == after_next_run  # nothing changed: nothing moves
    clean.run(emu, **options)

    assert without_stamps(crashed) == without_stamps(clean)
    # same cursors: every later run reads Klaviyo from the same points
    assert crashed.cursors() == clean.cursors()
    assert_matches_truth(crashed, emu, reconciling or crash_on_first_run)
    assert_history_follows(crashed, emu, reconciling or crash_on_first_run, seen_between)
    if not crash_on_first_run:
        left = crashed.rows("select count(*) from segment_memberships where not is_member")
        assert left[0][0] > 0  # the leaves reached the tables (a deleted segment at least)


def test_rerun_on_a_fresh_working_folder_after_kill(
    emu: Emulator, warehouse_factory: MakeWarehouse, small_pages: int, tmp_path: Path
) -> None:
    """A worker whose disk is lost with it: the state comes back from the destination."""
    crashed = warehouse_factory("crashed")
    crashed.run(emu)
    change_account_every_way(emu, "second")
    loaded_cursors = crashed.cursors()
    killed_at = now()

    # killed with the rows and the new state in the destination, the merge not done yet
    killed = drive("before-sql", crashed, emu, tmp_path, "--reconcile-every-hours", "0")

    assert killed.returncode == -signal.SIGKILL, killed.stdout + killed.stderr
    shutil.rmtree(Path(crashed.pipeline.pipelines_dir) / crashed.pipeline.pipeline_name)
    crashed.reattach()
    crashed.pipeline.sync_destination()
    # only the state of a completed load is restored: the killed run's cursors are not
    assert crashed.cursors() == loaded_cursors

    crashed.run(emu, **RECONCILE)

    assert_matches_truth(crashed, emu)
    assert truth_memberships(emu).keys() <= crashed.memberships().keys()
    assert_history_follows(crashed, emu, True, (killed_at, now()))
