"""Crash safety: `klaviyo-segments run` killed with SIGKILL during extract, normalize or load.

The killed run is a subprocess (crash_driver.py) against the emulator of the test process, so
the killed run and the reruns see one account. After the kill the next runs must produce the
tables of a run that never crashed: no duplicate keys, no member missing, and no cursor that
moved past rows which were not loaded.
"""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from klaviyo_emulator import Emulator

from .conftest import (
    DATASET,
    Warehouse,
    add_joins,
    membership_mismatches,
    truth_memberships,
    truth_segment_tags,
)

DRIVER = Path(__file__).with_name("crash_driver.py")
MakeWarehouse = Callable[[str], Warehouse]


def drive(point: str, warehouse: Warehouse, emu: Any, cwd: Path) -> subprocess.CompletedProcess:
    """Runs the CLI into `warehouse`'s pipeline, killed at `point`."""
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


def assert_matches_truth(warehouse: Warehouse, emu: Emulator) -> None:
    assert warehouse.duplicate_keys() == {}
    assert membership_mismatches(warehouse, emu) == []
    assert set(warehouse.rows("select segment_id, tag_id from segment_tags")) == (
        truth_segment_tags(emu)
    )
    assert {p for (p,) in warehouse.rows("select id from profiles")} == set(emu.profile_ids())


@pytest.mark.parametrize(
    "point, crash_on_first_run",
    [
        ("pages:2", True),
        ("pages:6", False),
        ("after-extract", False),
        ("normalize-commit", False),
        ("after-normalize", False),
        ("load-job:3", False),
        ("before-sql", False),
        ("complete-load", False),
    ],
)
def test_rerun_after_kill_equals_a_run_that_never_crashed(
    emu: Emulator,
    warehouse_factory: MakeWarehouse,
    small_pages: int,
    tmp_path: Path,
    point: str,
    crash_on_first_run: bool,
) -> None:
    # `clean` runs in step with `crashed`, minus the crash: the history tables match too
    crashed, clean = warehouse_factory("crashed"), warehouse_factory("clean")
    if not crash_on_first_run:
        crashed.run(emu)
        clean.run(emu)
        change_account(emu, "second")
    rows_before, cursors_before = crashed.snapshot(), crashed.cursors()

    killed = drive(point, crashed, emu, tmp_path)

    assert killed.returncode == -signal.SIGKILL, killed.stdout + killed.stderr
    crashed.reattach()
    assert crashed.duplicate_keys() == {}
    if not crashed.pipeline.has_pending_data:
        # nothing of the killed run survived: its cursors must not have survived either
        assert crashed.cursors() == cursors_before
        assert crashed.snapshot() == rows_before
    crashed.run(emu)  # the next scheduled run (finishes pending packages, if any)
    crashed.reattach().run(emu)  # and the one after it
    clean.run(emu)

    assert crashed.snapshot() == clean.snapshot()
    # same cursors: every later run reads Klaviyo from the same points
    assert crashed.cursors() == clean.cursors()
    assert_matches_truth(crashed, emu)


def test_rerun_on_a_fresh_working_folder_after_kill(
    emu: Emulator, warehouse_factory: MakeWarehouse, small_pages: int, tmp_path: Path
) -> None:
    """A worker whose disk is lost with it: the state comes back from the destination."""
    crashed = warehouse_factory("crashed")
    crashed.run(emu)
    change_account(emu, "second")
    loaded_cursors = crashed.cursors()

    # killed with the rows and the new state in the destination, the merge not done yet
    killed = drive("before-sql", crashed, emu, tmp_path)

    assert killed.returncode == -signal.SIGKILL, killed.stdout + killed.stderr
    shutil.rmtree(Path(crashed.pipeline.pipelines_dir) / crashed.pipeline.pipeline_name)
    crashed.reattach()
    crashed.pipeline.sync_destination()
    # only the state of a completed load is restored: the killed run's cursors are not
    assert crashed.cursors() == loaded_cursors

    crashed.run(emu)

    assert_matches_truth(crashed, emu)
    assert truth_memberships(emu).keys() <= crashed.memberships().keys()
