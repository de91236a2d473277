"""Load packages left pending: one line while the destination refuses one, `--drop-pending` out."""

from __future__ import annotations

import re
import signal
import subprocess
import sys
from datetime import timedelta
from pathlib import Path

import pytest

from klaviyo_emulator import Emulator

from .conftest import ERROR_PREFIX, Project, Tables, segment_with_members

CRASH_DRIVER = Path(__file__).parents[1] / "reliability" / "crash_driver.py"
# Rows already in the table pass; any new or updated row is refused, like text the
# warehouse cannot store, until the constraint is dropped.
REFUSE_NEW_ROWS = (
    "alter table {ds}.segment_memberships add constraint refuse check (false) not valid"
)
STOP_REFUSING = "alter table {ds}.segment_memberships drop constraint refuse"
PENDING = re.compile(r"load package (\S+) stays pending")


@pytest.mark.postgres
def test_refused_load_is_one_line_and_drop_pending_loads_its_rows_again(
    project: Project, emu: Emulator, postgres_dataset: Tables, postgres_url: str
) -> None:
    project.env["DESTINATION__POSTGRES__CREDENTIALS"] = postgres_url
    arguments = ("--quiet", "--destination", "postgres", "--dataset", postgres_dataset.dataset)
    assert project.run(*arguments).returncode == 0
    postgres_dataset.execute(REFUSE_NEW_ROWS)
    # Two joins in one segment: the run's cursor moves to the later one, so a cursor kept
    # after its rows were dropped would never read the earlier one again.
    segment_id, now = segment_with_members(emu), emu.now()
    for minutes_ago in (10, 0):
        profile_id = emu.create_profile(email=f"joined-{minutes_ago}@example.com")
        emu.add_member(segment_id, profile_id, joined_group_at=now - timedelta(minutes=minutes_ago))

    refused = project.run(*arguments)

    assert refused.returncode == 1
    assert refused.stderr.count("\n") == 1, refused.stderr
    line = refused.stderr.strip()
    assert line.startswith(ERROR_PREFIX + "destination error during load: CheckViolation")
    assert "--drop-pending" in line
    match = PENDING.search(line)
    assert match, line
    load_id = match.group(1)

    again = project.run(*arguments)
    verbose = project.run(*arguments[1:], "--verbose")

    assert again.returncode == 1 and again.stderr == refused.stderr
    assert verbose.returncode == 1
    assert "Traceback" in verbose.stderr and "failed terminally" in verbose.stderr

    postgres_dataset.execute(STOP_REFUSING)
    dropped = project.run(*arguments, "--drop-pending")

    assert dropped.returncode == 0, dropped.stderr
    assert f"dropped pending load package(s) {load_id} first" in dropped.stdout
    # exactly the rows of the dropped package are read again, and nothing is left pending
    assert "new or re-joined memberships 2," in dropped.stdout
    postgres_dataset.assert_matches_account(emu)
    assert project.run(*arguments).returncode == 0


def test_drop_pending_after_the_destination_recorded_the_load(
    project: Project, emu: Emulator
) -> None:
    """Killed right after the load was recorded: the package is pending, its rows are loaded."""
    assert project.main() == 0
    segment_id = segment_with_members(emu)
    for minutes_ago in (10, 0):
        profile_id = emu.create_profile(email=f"joined-{minutes_ago}@example.com")
        emu.add_member(
            segment_id, profile_id, joined_group_at=emu.now() - timedelta(minutes=minutes_ago)
        )
    killed = subprocess.run(
        [sys.executable, str(CRASH_DRIVER), "complete-load", "run", "--quiet"],
        cwd=project.root,
        env=project.environment(),
        capture_output=True,
        text=True,
        timeout=180,
    )
    assert killed.returncode == -signal.SIGKILL, killed.stderr

    assert project.main("--drop-pending") == 0

    project.tables.assert_matches_account(emu)


def test_duckdb_out_of_memory_says_how_to_raise_the_limit_and_loses_nothing(
    project: Project, emu: Emulator
) -> None:
    project.env["DESTINATION__DUCKDB__CREDENTIALS__GLOBAL_CONFIG"] = '{"memory_limit": "2MB"}'

    starved = project.run("--quiet")

    assert starved.returncode == 1
    assert starved.stderr.count("\n") == 1, starved.stderr
    line = starved.stderr.strip()
    assert line.startswith(ERROR_PREFIX + "DuckDB reached its memory_limit, raise it:")
    assert "DESTINATION__DUCKDB__CREDENTIALS__GLOBAL_CONFIG" in line
    assert PENDING.search(line), line

    del project.env["DESTINATION__DUCKDB__CREDENTIALS__GLOBAL_CONFIG"]
    assert project.run("--quiet").returncode == 0
    members = sum(len(emu.members(segment_id)) for segment_id in emu.segment_ids())
    assert project.tables.rows("select count(*) from {ds}.segment_memberships") == [(members,)]
