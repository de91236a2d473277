"""The `klaviyo-segments` command as a user runs it: a subprocess against the emulator."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import duckdb
import pytest

from klaviyo_emulator import Emulator
from pipelines.progress import progress_line
from sources.klaviyo import ExtractionStats

BAD_KEY = "pk_" + "Zq9" * 11 + "X"


def run_cli(
    *args: str, cwd: Path, base_url: str | None = None, api_key: str | None = None
) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("SOURCES__KLAVIYO__")}
    if base_url:
        env["SOURCES__KLAVIYO__BASE_URL"] = base_url
    if api_key:
        env["SOURCES__KLAVIYO__API_KEY"] = api_key
    return subprocess.run(
        [sys.executable, "-m", "pipelines.cli", *args],
        cwd=cwd,
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )


def run_args(tmp_path: Path, *extra: str) -> list[str]:
    return ["run", "--pipelines-dir", str(tmp_path / "pipelines"), "--quiet", *extra]


def count(database: Path, sql: str) -> int:
    with duckdb.connect(str(database), read_only=True) as connection:
        row = connection.execute(sql).fetchone()
    assert row is not None
    return int(row[0])


def test_run_loads_ground_truth_and_prints_summary(emu: Emulator, tmp_path: Path) -> None:
    result = run_cli(*run_args(tmp_path), cwd=tmp_path, base_url=emu.base_url, api_key=emu.api_key)

    assert result.returncode == 0, result.stderr
    assert "Traceback" not in result.stderr
    assert "segment_memberships" in result.stdout
    assert "segments walked 6/6" in result.stdout
    database = tmp_path / "klaviyo_segments.duckdb"
    expected = sum(len(emu.members(s)) for s in emu.segment_ids())
    assert count(database, "select count(*) from klaviyo.segment_memberships") == expected
    assert count(database, "select count(*) from klaviyo.segments") == len(emu.segment_ids())


def test_second_run_reads_only_new_members(emu: Emulator, tmp_path: Path) -> None:
    first = run_cli(*run_args(tmp_path), cwd=tmp_path, base_url=emu.base_url, api_key=emu.api_key)
    assert first.returncode == 0, first.stderr
    segment_id = next(s for s in emu.segment_ids() if emu.members(s))
    profile_id = emu.create_profile(email="late@example.com")
    emu.add_member(segment_id, profile_id)
    emu.stats.reset()

    second = run_cli(*run_args(tmp_path), cwd=tmp_path, base_url=emu.base_url, api_key=emu.api_key)

    assert second.returncode == 0, second.stderr
    assert emu.stats.requests["get_segments"] == 1
    assert emu.stats.requests["get_segment_profiles"] == len(emu.segment_ids())
    database = tmp_path / "klaviyo_segments.duckdb"
    loaded = count(
        database,
        f"select count(*) from klaviyo.segment_memberships where profile_id = '{profile_id}'",
    )
    assert loaded == 1


def test_rejected_key_is_one_line_without_the_key(emu: Emulator, tmp_path: Path) -> None:
    result = run_cli(*run_args(tmp_path), cwd=tmp_path, base_url=emu.base_url, api_key=BAD_KEY)

    assert result.returncode == 1
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    assert lines[0].startswith("klaviyo-segments: error: ")
    assert "401" in lines[0]
    assert BAD_KEY not in result.stdout + result.stderr


def test_missing_key_says_where_to_put_it(emu: Emulator, tmp_path: Path) -> None:
    result = run_cli(*run_args(tmp_path), cwd=tmp_path, base_url=emu.base_url)

    assert result.returncode == 1
    assert "SOURCES__KLAVIYO__API_KEY" in result.stderr
    assert len(result.stderr.strip().splitlines()) == 1, result.stderr


def test_unknown_segment_names_it(emu: Emulator, tmp_path: Path) -> None:
    result = run_cli(
        *run_args(tmp_path, "--segment-id", "NoSuchSeg"),
        cwd=tmp_path,
        base_url=emu.base_url,
        api_key=emu.api_key,
    )

    assert result.returncode == 1
    assert "NoSuchSeg" in result.stderr
    assert "does not exist" in result.stderr


def test_unknown_destination_fails_clearly(emu: Emulator, tmp_path: Path) -> None:
    result = run_cli(
        *run_args(tmp_path, "--destination", "no_such_warehouse"),
        cwd=tmp_path,
        base_url=emu.base_url,
        api_key=emu.api_key,
    )

    assert result.returncode == 1
    assert "no_such_warehouse" in result.stderr
    assert len(result.stderr.strip().splitlines()) == 1, result.stderr


def test_api_key_is_not_a_command_line_option(tmp_path: Path) -> None:
    result = run_cli("run", "--api-key", BAD_KEY, cwd=tmp_path)

    assert result.returncode == 2
    assert "unrecognized arguments" in result.stderr


def test_demo_loads_twice_and_queries(tmp_path: Path) -> None:
    result = run_cli("demo", "--dir", str(tmp_path / "demo"), cwd=tmp_path)

    assert result.returncode == 0, result.stderr
    assert "Run 1: full load" in result.stdout
    assert "Run 2: incremental" in result.stdout
    assert "Members per segment (current):" in result.stdout
    database = tmp_path / "demo" / "klaviyo_segments.duckdb"
    assert count(database, "select count(*) from klaviyo.segments") == 11


def test_progress_line_counts() -> None:
    stats = ExtractionStats()
    stats.add(
        segments_total=4, segments_done=1, pages=12, requests=13, throttled=2, wait_seconds=1.5
    )
    stats.add_rows("segment_memberships", 1200)

    line = progress_line(stats, 3.0)

    assert "segments 1/4" in line
    assert "pages 12" in line
    assert "rows 1,200" in line
    assert "429s 2 (waited 1.5s)" in line


@pytest.mark.parametrize("revision", ["2024-06-15", "2026-07-15"])
def test_run_at_each_revision(tmp_path: Path, revision: str) -> None:
    with Emulator(dataset="tiny", seed=3) as emulator:
        result = run_cli(
            *run_args(tmp_path, "--revision", revision),
            cwd=tmp_path,
            base_url=emulator.base_url,
            api_key=emulator.api_key,
        )
        expected = sum(len(emulator.members(s)) for s in emulator.segment_ids())

    assert result.returncode == 0, result.stderr
    database = tmp_path / "klaviyo_segments.duckdb"
    assert count(database, "select count(*) from klaviyo.segment_memberships") == expected


def test_unknown_resource_is_named(emu: Emulator, tmp_path: Path) -> None:
    result = run_cli(
        *run_args(tmp_path, "--resources", "segments,memberships"),
        cwd=tmp_path,
        base_url=emu.base_url,
        api_key=emu.api_key,
    )

    assert result.returncode == 1
    assert "unknown resource(s) memberships" in result.stderr


def test_reconcile_reports_leaves_and_closes_them(emu: Emulator, tmp_path: Path) -> None:
    first = run_cli(*run_args(tmp_path), cwd=tmp_path, base_url=emu.base_url, api_key=emu.api_key)
    assert first.returncode == 0, first.stderr
    segment_id = max(emu.segment_ids(), key=lambda s: len(emu.members(s)))
    leaver = sorted(emu.members(segment_id))[0]
    emu.remove_member(segment_id, leaver)
    emu.stats.reset()

    second = run_cli(
        *run_args(tmp_path, "--reconcile", segment_id),
        cwd=tmp_path,
        base_url=emu.base_url,
        api_key=emu.api_key,
    )

    assert second.returncode == 0, second.stderr
    reconciled = next(line for line in second.stdout.splitlines() if "reconciled" in line)
    assert segment_id in reconciled
    assert "leaves found 1," in reconciled
    # from revision 2024-10-15 a reconciliation walks the members with their attributes
    assert reconciled.endswith("attributes refreshed in 2 segment(s)")
    assert emu.stats.requests["get_segment_relationships_profiles"] == 0
    database = tmp_path / "klaviyo_segments.duckdb"
    still_member = count(
        database,
        "select count(*) from klaviyo.segment_memberships "
        f"where segment_id = '{segment_id}' and profile_id = '{leaver}' and is_member",
    )
    assert still_member == 0
