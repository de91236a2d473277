"""Checkpoints and time budgets: a long load commits as it goes and continues where it stopped."""

from __future__ import annotations

import math
import os
import signal
import time
from collections import Counter
from collections.abc import Iterator
from pathlib import Path

import pytest

from klaviyo_emulator import Emulator
from pipelines.cli import EXIT_INCOMPLETE, main

from .conftest import Project, Tables, truth_memberships

PROFILES = "get_segment_profiles"
IDS = "get_segment_relationships_profiles"
SEGMENTS = "get_segments"


@pytest.fixture
def demo() -> Iterator[Emulator]:
    """The `demo` account (10 segments, 14,000 memberships, about 150 profile pages)."""
    with Emulator(dataset="demo", seed=3) as emulator:
        for segment_id in emulator.segment_ids():
            emulator.set_segment_flags(segment_id, is_processing=False)
        yield emulator


def _project(tmp_path: Path, name: str, emu: Emulator, monkeypatch: pytest.MonkeyPatch) -> Project:
    root = tmp_path / name
    root.mkdir()
    env = {"SOURCES__KLAVIYO__API_KEY": emu.api_key, "SOURCES__KLAVIYO__BASE_URL": emu.base_url}
    for key, value in env.items():
        monkeypatch.setenv(key, value)
    monkeypatch.chdir(root)
    return Project(root, env)


def _requests(emu: Emulator) -> Counter[str]:
    return Counter(emu.report()["requests"])


def _since(emu: Emulator, before: Counter[str]) -> Counter[str]:
    now = _requests(emu)
    now.subtract(before)
    return now


def test_checkpoints_load_the_same_tables_for_a_few_more_requests(
    demo: Emulator, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    whole = _project(tmp_path, "whole", demo, monkeypatch)
    before = _requests(demo)
    assert whole.main("--checkpoint-pages", "100000") == 0
    uninterrupted = _since(demo, before)

    sliced = _project(tmp_path, "sliced", demo, monkeypatch)
    before = _requests(demo)
    assert sliced.main("--checkpoint-pages", "20", "--workers", "2") == 0
    checkpointed = _since(demo, before)

    sliced.tables.assert_matches_account(demo)
    assert sliced.tables.rows("select count(*) from {ds}.segment_memberships") == [(14_000,)]
    # each checkpoint after the first reads the segment list again, and each segment cut
    # mid-walk (at most one per worker) reads its last page again
    slices = checkpointed[SEGMENTS]
    assert slices >= 5
    assert checkpointed[PROFILES] - uninterrupted[PROFILES] <= (slices - 1) * 2
    assert checkpointed[IDS] == uninterrupted[IDS] == 0  # first loads reconcile for free


def test_a_first_load_finished_over_checkpoints_counts_as_reconciled(
    demo: Emulator, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    project = _project(tmp_path, "p", demo, monkeypatch)
    assert project.main("--checkpoint-pages", "10", "--workers", "1") == 0
    before = _requests(demo)

    assert project.main() == 0  # within 24 hours of the first load: nothing is due

    assert _since(demo, before)[IDS] == 0
    project.tables.assert_matches_account(demo)


def test_reconciliations_are_not_cut_and_find_every_leave(
    demo: Emulator, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    project = _project(tmp_path, "p", demo, monkeypatch)
    assert project.main() == 0
    leavers = set()
    active = [s for s in demo.segment_ids() if demo.segment(s)["is_active"] and demo.members(s)]
    for segment_id in active[:4]:
        for profile_id in sorted(demo.members(segment_id))[:3]:
            demo.remove_member(segment_id, profile_id)
            leavers.add((segment_id, profile_id))
    demo.advance_clock(5)

    assert project.main("--reconcile", "--checkpoint-pages", "1", "--workers", "1") == 0

    left = {key for key, (_, member) in project.tables.memberships().items() if not member}
    assert left == leavers
    project.tables.assert_matches_account(demo)


def test_runs_with_a_time_budget_converge_to_one_uninterrupted_run(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    with Emulator(dataset="demo", seed=5, latency=0.02) as emu:
        whole = _project(tmp_path, "whole", emu, monkeypatch)
        before = _requests(emu)
        assert whole.main("--workers", "2") == 0
        uninterrupted = sum(_since(emu, before).values())

        sliced = _project(tmp_path, "sliced", emu, monkeypatch)
        before = _requests(emu)
        codes = []
        while not codes or codes[-1] == EXIT_INCOMPLETE:
            codes.append(
                sliced.main("--workers", "2", "--max-minutes", "0.02", "--checkpoint-pages", "40")
            )
            assert len(codes) < 40
        total = sum(_since(emu, before).values())

        assert codes[-1] == 0 and len(codes) > 1
        sliced.tables.assert_matches_account(emu)
        assert sliced.tables.rows("select count(*) from {ds}.segment_memberships") == [(14_000,)]
        # per run: the segment list, one page of each segment already done (every run looks
        # for new joins), and the last page again of each segment cut mid-walk (one per worker)
        segments = len(emu.segment_ids())
        assert total <= uninterrupted + (len(codes) - 1) * (1 + segments + 2)


def test_an_incomplete_run_says_what_is_left_and_exits_75(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    with Emulator(dataset="demo", seed=5, latency=0.02) as emu:
        project = _project(tmp_path, "p", emu, monkeypatch)
        code = main(["run", "--workers", "1", "--max-minutes", "0.01"])

    out, err = capsys.readouterr()
    assert code == EXIT_INCOMPLETE == 75
    assert "time budget spent after" in out and "not finished" in out
    # a walk cut mid-way has an estimate of its pages; a segment not started has none
    assert "profile pages estimated to remain" in out or "not started" in out
    assert "checkpoint 1:" in err
    committed = project.tables.rows("select count(*) from {ds}.segment_memberships")[0][0]
    assert 0 < committed < 14_000


@pytest.mark.slow
def test_a_killed_first_load_loses_at_most_what_was_not_committed(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    with Emulator(dataset="demo", seed=7, latency=0.03) as emu:
        project = _project(tmp_path, "p", emu, monkeypatch)
        run = project.start("--workers", "2", "--checkpoint-pages", "30")
        assert run.stderr is not None
        _wait_for_line(run.stderr, "checkpoint 2:")
        os.kill(run.pid, signal.SIGKILL)
        run.wait()

        tables = Tables(duckdb_file=project.root / "klaviyo_segments.duckdb")
        loaded = Counter(s for s, _ in tables.current_memberships())
        truth = Counter(s for s, _ in truth_memberships(emu))
        before = _requests(emu)

        assert project.run("--workers", "2", "--quiet").returncode == 0

        rerun = _since(emu, before)
        bound = sum(math.ceil((truth[s] - loaded[s]) / 100) + 1 for s in truth)
        assert rerun[PROFILES] <= bound
        assert rerun[SEGMENTS] == 1 and rerun[IDS] == 0
        tables.assert_matches_account(emu)


def _wait_for_line(stream: object, text: str, timeout: float = 120) -> None:
    deadline = time.monotonic() + timeout
    for line in iter(stream.readline, ""):  # type: ignore[attr-defined]
        if text in line:
            return
        assert time.monotonic() < deadline, f"no {text!r} line in time"
    pytest.fail(f"the run ended before printing {text!r}")


def test_checkpoint_minutes_commit_by_time(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    with Emulator(dataset="demo", seed=5, latency=0.02) as emu:
        project = _project(tmp_path, "p", emu, monkeypatch)
        code = main(["run", "--workers", "2", "--checkpoint-minutes", "0.01"])
        project.tables.assert_matches_account(emu)

    assert code == 0
    err = capsys.readouterr().err
    assert "checkpoint 2:" in err


def test_members_who_joined_at_one_time_never_stall_a_checkpointed_run(
    emu: Emulator, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from sources.klaviyo import settings

    monkeypatch.setattr(settings, "SEGMENT_PROFILES_PAGE_SIZE", 3)
    segment_id = emu.create_segment("bulk import")
    at = emu.now()
    for profile_id in emu.profile_ids()[:10]:  # four pages of members who joined at one time
        emu.add_member(segment_id, profile_id, at)
    project = _project(tmp_path, "p", emu, monkeypatch)

    assert project.main("--checkpoint-pages", "1", "--workers", "1") == 0
    project.tables.assert_matches_account(emu)
    codes = [project.main("--checkpoint-pages", "1", "--max-minutes", "0.001")]
    while codes[-1] == EXIT_INCOMPLETE:
        codes.append(project.main("--checkpoint-pages", "1", "--max-minutes", "0.001"))
        assert len(codes) < 30, "the runs never finish"
    project.tables.assert_matches_account(emu)


def test_a_rejoin_during_a_backfill_closes_the_earlier_stay(
    demo: Emulator, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    project = _project(tmp_path, "p", demo, monkeypatch)
    code = project.main("--workers", "1", "--checkpoint-pages", "3", "--max-minutes", "0.001")
    assert code == EXIT_INCOMPLETE
    loaded = project.tables.current_memberships()
    begun = {s for s, _ in loaded}
    truth = truth_memberships(demo)
    partial = [
        s for s in begun if sum(1 for k in truth if k[0] == s) > sum(1 for k in loaded if k[0] == s)
    ]
    segment_id = partial[0]
    rejoiner = min(p for s, p in loaded if s == segment_id)
    demo.remove_member(segment_id, rejoiner)
    demo.advance_clock(2)
    demo.add_member(segment_id, rejoiner)

    while project.main("--workers", "1", "--checkpoint-pages", "40") == EXIT_INCOMPLETE:
        pass

    project.tables.assert_matches_account(demo)  # one open stay per member: the re-join's
    stays = project.tables.stays()
    closed = [k for k, left in stays.items() if k[:2] == (segment_id, rejoiner) and left]
    assert len(closed) == 1


def test_a_profile_is_loaded_once_over_the_checkpoints_of_a_run(
    demo: Emulator, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from pipelines.klaviyo_segments_pipeline import load_segments, make_pipeline

    project = _project(tmp_path, "p", demo, monkeypatch)
    pipeline = make_pipeline(pipelines_dir=str(project.root / ".dlt" / "pipelines"))

    report = load_segments(pipeline, checkpoint_pages=10, max_workers=2)

    members = {p for s in demo.segment_ids() for p in demo.members(s)}
    assert report.checkpoints >= 5
    # every checkpoint loads before the next extraction: no profile row is loaded twice
    assert report.rows["profiles"] == len(members)
    project.tables.assert_matches_account(demo)
