"""Each option of `klaviyo-segments run`, run through the CLI, judged by the tables it loads."""

from __future__ import annotations

from pathlib import Path

import pytest

from klaviyo_emulator import Emulator

from .conftest import DUCKDB_FILE, Project, Tables, segment_with_members, truth_memberships

MEMBERSHIP_TABLES = {"segment_memberships", "segment_membership_history"}


def test_resources_subsets_load_only_their_tables(project: Project, emu: Emulator) -> None:
    tables = project.tables

    assert project.main("--resources", "segments,tags,segment_tags") == 0
    assert tables.names() == {"segments", "tags", "segment_tags"}
    assert tables.ids("segments") == set(emu.segment_ids())
    assert tables.ids("tags") == set(emu.tag_ids())

    assert project.main("--resources", "segment_memberships,segment_membership_history") == 0
    assert tables.names() == {"segments", "tags", "segment_tags", *MEMBERSHIP_TABLES}
    assert tables.current_memberships() == truth_memberships(emu)
    assert len(tables.stays()) == len(truth_memberships(emu))


def test_segment_id_loads_only_that_segment(project: Project, emu: Emulator) -> None:
    segment_id = segment_with_members(emu)

    assert project.main("--segment-id", segment_id) == 0

    loaded = project.tables.current_memberships()
    assert loaded == {k: v for k, v in truth_memberships(emu).items() if k[0] == segment_id}


def test_start_date_bounds_the_first_load(project: Project, emu: Emulator) -> None:
    joined = sorted(set(truth_memberships(emu).values()))
    start = joined[len(joined) // 2]

    assert project.main("--start-date", start.isoformat()) == 0

    expected = {k: v for k, v in truth_memberships(emu).items() if v >= start}
    assert 0 < len(expected) < len(truth_memberships(emu))
    assert project.tables.current_memberships() == expected


def test_workers_and_base_url_options(
    project: Project, emu: Emulator, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("SOURCES__KLAVIYO__BASE_URL")

    assert project.main("--workers", "1", "--base-url", emu.base_url) == 0

    project.tables.assert_matches_account(emu)


def test_verbose_run_loads_the_account(project: Project, emu: Emulator) -> None:
    assert project.main("--verbose") == 0

    project.tables.assert_matches_account(emu)


def test_names_and_places_of_dataset_pipeline_file_and_working_folder(
    project: Project, emu: Emulator
) -> None:
    (project.root / "data").mkdir()

    status = project.main(
        "--dataset",
        "crm",
        "--pipeline-name",
        "account_one",
        "--duckdb-file",
        "data/warehouse.duckdb",
        "--pipelines-dir",
        "work",
    )

    assert status == 0
    Tables(
        dataset="crm", duckdb_file=project.root / "data/warehouse.duckdb"
    ).assert_matches_account(emu)
    assert (project.root / "work/account_one/state.json").is_file()
    assert not (project.root / DUCKDB_FILE).exists()
    assert not (project.root / ".dlt").exists()


def test_reconcile_policy_and_inactive_segments(project: Project, emu: Emulator) -> None:
    assert project.main() == 0
    active, inactive = segment_with_members(emu), segment_with_members(emu, active=False)
    leavers = {segment_id: sorted(emu.members(segment_id))[0] for segment_id in (active, inactive)}
    for segment_id, profile_id in leavers.items():
        emu.remove_member(segment_id, profile_id)
    tables = project.tables

    def is_member(segment_id: str) -> bool:
        return tables.memberships()[(segment_id, leavers[segment_id])][1]

    # reconciled a moment ago by the first load, so not due for 24 hours
    assert project.main() == 0
    assert is_member(active) and is_member(inactive)

    assert project.main("--reconcile-every-hours", "0") == 0
    assert not is_member(active) and is_member(inactive)

    assert project.main("--reconcile-every-hours", "0", "--reconcile-inactive") == 0
    assert not is_member(inactive)
    tables.assert_matches_account(emu)


def test_refresh_options_keep_a_members_attributes_current(project: Project, emu: Emulator) -> None:
    assert project.main() == 0
    member = sorted(emu.members(segment_with_members(emu)))[0]

    def email() -> str:
        return dict(project.tables.rows("select id, email from klaviyo.profiles"))[member]

    emu.update_profile(member, email="changed@example.com")
    assert (
        project.main("--refresh-profiles-every-hours", "0", "--refresh-profiles-by", "segments")
        == 0
    )
    assert email() == "changed@example.com"

    emu.update_profile(member, email="off@example.com")
    assert project.main("--refresh-profiles-every-hours", "off") == 0
    assert email() == "changed@example.com"  # off: the attributes of the join
    assert project.main() == 0  # refreshed a moment ago: not due for 24 hours
    assert email() == "changed@example.com"

    assert (
        project.main("--refresh-profiles-by", "updated", "--refresh-profiles-every-hours", "0") == 0
    )
    assert email() == "off@example.com"  # read from the changed profiles of the account
    emu.update_profile(member, email="updated@example.com")
    assert (
        project.main("--refresh-profiles-by", "updated", "--refresh-profiles-every-hours", "0") == 0
    )
    assert email() == "updated@example.com"
    project.tables.assert_matches_account(emu)


def test_reconcile_without_ids_reconciles_every_active_segment(
    project: Project, emu: Emulator
) -> None:
    assert project.main() == 0
    segments = [segment_with_members(emu, skip=n) for n in (0, 1)]
    inactive = segment_with_members(emu, active=False)
    leavers = {s: sorted(emu.members(s))[0] for s in (*segments, inactive)}
    for segment_id, profile_id in leavers.items():
        emu.remove_member(segment_id, profile_id)

    assert project.main("--reconcile") == 0

    rows = project.tables.memberships()
    assert [rows[(s, leavers[s])][1] for s in segments] == [False, False]
    assert rows[(inactive, leavers[inactive])][1] is True


def _record_a_leave(project: Project, emu: Emulator, segment_id: str) -> tuple[str, str]:
    """A first load, then a profile leaves `segment_id` and a reconciliation records it."""
    assert project.main() == 0
    leaver = sorted(emu.members(segment_id))[0]
    emu.remove_member(segment_id, leaver)
    assert project.main("--reconcile", segment_id) == 0
    assert project.tables.memberships()[(segment_id, leaver)][1] is False
    return segment_id, leaver


def test_full_refresh_drops_and_reloads_everything(project: Project, emu: Emulator) -> None:
    segment_id, leaver = _record_a_leave(project, emu, segment_with_members(emu))
    tables = project.tables
    tables.execute("delete from {ds}.profiles where id in (select id from {ds}.profiles limit 5)")

    assert project.main("--full-refresh") == 0

    tables.assert_matches_account(emu)
    # the history starts again from the current members: the closed stay is gone
    assert (segment_id, leaver) not in tables.memberships()
    assert all(left is None for left in tables.stays().values())


def test_full_refresh_of_one_segment_keeps_the_others_and_the_history(
    project: Project, emu: Emulator
) -> None:
    left_segment, leaver = _record_a_leave(project, emu, segment_with_members(emu))
    refreshed = segment_with_members(emu, skip=1)
    tables = project.tables
    closed_stays = {k: v for k, v in tables.stays().items() if v is not None}
    assert [(s, p) for s, p, _ in closed_stays] == [(left_segment, leaver)]
    # rows a walk from the cursor would never bring back
    tables.execute(f"delete from {{ds}}.segment_memberships where segment_id = '{refreshed}'")

    assert project.main("--full-refresh", "--segment-id", refreshed) == 0

    assert tables.ids("segments") == set(emu.segment_ids())
    rows = tables.memberships()
    assert rows[(left_segment, leaver)][1] is False
    stays = tables.stays()
    assert {k: v for k, v in stays.items() if v is not None} == closed_stays
    assert tables.current_memberships() == truth_memberships(emu)

    memberships, history = tables.memberships(), tables.stays()
    assert project.main("--full-refresh", "--resources", "tags") == 0

    assert tables.memberships() == memberships
    assert tables.stays() == history
    assert tables.ids("tags") == set(emu.tag_ids())


def test_quiet_run_prints_the_summary_only(
    project: Project, emu: Emulator, capsys: pytest.CaptureFixture[str]
) -> None:
    assert project.main() == 0

    captured = capsys.readouterr()
    assert captured.err == ""
    assert f"Loaded into {Path.cwd() / DUCKDB_FILE} (DuckDB), dataset 'klaviyo'" in captured.out
    project.tables.assert_matches_account(emu)
