"""Injected faults end to end: a faulted run loads exactly what a fault-free run loads, or fails
in one line and leaves the dataset and the cursors so that the next run completes correctly."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any

import dlt
import pytest
from dlt.pipeline.exceptions import PipelineStepFailed

from klaviyo_emulator import Emulator
from klaviyo_emulator.wire.faults import Fault, FaultInjector
from sources.klaviyo import ExtractionStats, settings
from sources.klaviyo.api.client import KlaviyoClient
from sources.klaviyo.exceptions import (
    KlaviyoError,
    KlaviyoResponseError,
    KlaviyoRetriesExhaustedError,
    find_klaviyo_error,
)

from .conftest import (
    DATASET,
    Snapshot,
    Warehouse,
    add_joins,
    membership_mismatches,
    truth_memberships,
)

MakeWarehouse = Callable[[str], Warehouse]

BURSTS = {
    "5xx-json": ["500", "502", "503", "504"],
    "5xx-html": ["500-html", "502-html", "503-html", "504-html"],
    "drop": ["drop"],
    "truncate": ["truncate"],
}


@dataclass
class Account:
    """An emulator that no test changes, and what a fault-free run loads from it."""

    emu: Emulator
    snapshot: Snapshot
    cursors: dict[str, dict[str, str]]


@pytest.fixture(scope="module")
def account(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Account]:
    """Shared by the tests that only read: each scripts its faults and consumes them all."""
    root = tmp_path_factory.mktemp("clean")
    with pytest.MonkeyPatch.context() as patch, Emulator(dataset="tiny", seed=1) as emu:
        patch.setenv("XDG_DATA_HOME", str(root))
        patch.setenv("RUNTIME__DLTHUB_TELEMETRY", "false")
        duckdb_file = root / "clean.duckdb"
        pipeline = dlt.pipeline(
            pipeline_name="klaviyo_clean",
            destination=dlt.destinations.duckdb(str(duckdb_file)),
            dataset_name=DATASET,
            pipelines_dir=str(root / "pipelines"),
        )
        clean = Warehouse(pipeline, duckdb_file)
        clean.run(emu)
        yield Account(emu, clean.snapshot(), clean.cursors())


def _faulted_run(account: Account, warehouse: Warehouse, **options: Any) -> ExtractionStats:
    injected = sum(account.emu.faults.injected.values())
    stats = warehouse.run(account.emu, **options)
    assert account.emu.faults.pending() == 0
    assert stats.retries == sum(account.emu.faults.injected.values()) - injected
    assert warehouse.snapshot() == account.snapshot
    assert warehouse.cursors() == account.cursors
    assert warehouse.duplicate_keys() == {}
    return stats


@pytest.mark.parametrize("burst", sorted(BURSTS))
def test_burst_is_retried_and_tables_equal_a_fault_free_run(
    account: Account,
    warehouse_factory: MakeWarehouse,
    fast_retries: None,
    small_pages: int,
    burst: str,
) -> None:
    kinds = BURSTS[burst]
    for kind in kinds:  # scripts are served in order: each kind in turn
        account.emu.faults.script(kind=kind, count=1, path_contains="/api/segments")
    for kind in kinds:
        account.emu.faults.script(kind=kind, count=2, path_contains="/profiles")

    stats = _faulted_run(account, warehouse_factory("faulted"))

    assert stats.retries == 3 * len(kinds)


def test_429_storm_waits_and_tables_equal_a_fault_free_run(
    account: Account, warehouse_factory: MakeWarehouse, small_pages: int
) -> None:
    account.emu.faults.script(kind="429", count=6, path_contains="/profiles")

    stats = _faulted_run(account, warehouse_factory("faulted"))

    assert stats.throttled == 6
    assert stats.wait_seconds >= 1.0  # Retry-After: 1 was honoured


def test_429s_have_their_own_budget_beyond_max_retries(
    account: Account, warehouse_factory: MakeWarehouse
) -> None:
    # one worker, so one request meets both 429s in a row, with one retry allowed
    account.emu.faults.script(kind="429", count=2, path_contains="/profiles")

    stats = _faulted_run(account, warehouse_factory("faulted"), max_retries=1, max_workers=1)

    assert stats.throttled == 2


def test_slow_answers_and_odd_200s_are_retried(
    account: Account, warehouse_factory: MakeWarehouse, fast_retries: None, small_pages: int
) -> None:
    faults = account.emu.faults
    faults.script(kind="html-200", count=1, path_contains="/api/segments")
    faults.script(kind="slow", count=2, path_contains="/profiles", delay=1.5)
    faults.script(kind="json-200-not-jsonapi", count=1, path_contains="/profiles")
    faults.script(kind="html-200", count=1, path_contains="/profiles")

    stats = _faulted_run(account, warehouse_factory("faulted"), request_timeout=0.4)

    assert stats.retries == 5


@pytest.mark.parametrize(
    "kind, options, error_type, message",
    [
        ("503", {"max_retries": 2}, KlaviyoRetriesExhaustedError, "failed 3 times, last with HTTP 503"),
        ("502-html", {"max_retries": 2}, KlaviyoRetriesExhaustedError, "last with HTTP 502 text/html"),
        ("drop", {"max_retries": 2}, KlaviyoRetriesExhaustedError, "connection closed without an answer"),
        ("truncate", {"max_retries": 2}, KlaviyoRetriesExhaustedError, "(incomplete body); gave up after 2 retries"),
        ("429", {"max_retries": 0}, KlaviyoRetriesExhaustedError, "failed 1 time, last with HTTP 429 throttled; gave up after 0 retries on 429"),
        ("slow", {"max_retries": 1, "timeout": 0.2}, KlaviyoRetriesExhaustedError, "last with no answer within 0.2s"),
        ("html-200", {"max_retries": 8}, KlaviyoResponseError, "with HTTP 200 text/html; charset=UTF-8, not JSON: '<!DOCTYPE html>"),
        ("json-200-not-jsonapi", {"max_retries": 8}, KlaviyoResponseError, "not a JSON:API document: '{\"status\""),
    ],
)  # fmt: skip
def test_each_fault_past_its_bound_is_one_clear_line(
    account: Account,
    fast_retries: None,
    kind: str,
    options: dict[str, Any],
    error_type: type[KlaviyoError],
    message: str,
) -> None:
    emu, stats = account.emu, ExtractionStats()
    segment = emu.segment_ids()[0]
    path = f"/api/segments/{segment}/profiles"
    client = KlaviyoClient(
        emu.api_key,
        emu.base_url,
        settings.DEFAULT_REVISION,
        stats=stats,
        **{"timeout": 5, **options},
    )
    emu.faults.script(kind=kind, count=20, path_contains=path, delay=0.6)
    try:
        with pytest.raises(error_type) as raised:
            client.get(emu.base_url + path, {"page[size]": "5"}, "get_segment_profiles", segment)
    finally:
        emu.faults.clear()
        client.close()

    text = str(raised.value)
    assert message in text
    assert "\n" not in text and emu.api_key not in text and len(text) < 400
    budget = {KlaviyoResponseError: settings.MALFORMED_BODY_RETRIES}.get(error_type)
    assert stats.requests == 1 + (budget if budget is not None else stats.retries)


def _failure(warehouse: Warehouse, emu: Any, **options: Any) -> KlaviyoError:
    with pytest.raises(PipelineStepFailed) as raised:
        warehouse.run(emu, **options)
    error = find_klaviyo_error(raised.value)
    assert error is not None, f"no KlaviyoError behind {raised.value!r}"
    assert "\n" not in str(error) and emu.api_key not in str(error)
    return error


@pytest.mark.parametrize(
    "kind, options, error_type",
    [
        ("503-html", {"max_retries": 2}, KlaviyoRetriesExhaustedError),
        ("json-200-not-jsonapi", {}, KlaviyoResponseError),
    ],
)
def test_failed_run_commits_nothing_and_the_next_run_catches_up(
    emu: Emulator,
    warehouse_factory: MakeWarehouse,
    fast_retries: None,
    small_pages: int,
    kind: str,
    options: dict[str, Any],
    error_type: type[KlaviyoError],
) -> None:
    faulted, clean = warehouse_factory("faulted"), warehouse_factory("clean")
    faulted.run(emu)
    clean.run(emu)
    before, cursors = faulted.snapshot(), faulted.cursors()
    add_joins(emu, 6, "late")
    victim = emu.segment_ids()[0]
    emu.faults.script(kind=kind, count=50, path_contains=f"/segments/{victim}/profiles")

    error = _failure(faulted, emu, **options)

    assert isinstance(error, error_type)
    # nothing of the failed run was committed: same rows, same cursors, nothing pending
    assert faulted.snapshot() == before
    assert faulted.cursors() == cursors
    assert not faulted.pipeline.has_pending_data
    emu.faults.clear()

    faulted.reattach().run(emu)
    clean.run(emu)

    assert faulted.snapshot() == clean.snapshot()
    assert membership_mismatches(faulted, emu) == []


class _DeleteDuringWalk(FaultInjector):
    """Deletes a segment when its profiles are asked for the `on_request`-th time."""

    def __init__(self, on_request: int) -> None:
        super().__init__(seed=1)
        self.on_request = on_request
        self.emulator: Emulator | None = None
        self.segment_id = ""
        self.seen = 0

    def pick(self, path: str) -> Fault | None:
        if self.emulator is not None and f"/segments/{self.segment_id}/profiles" in path:
            self.seen += 1
            if self.seen == self.on_request:
                self.emulator.delete_segment(self.segment_id)
        return super().pick(path)


@pytest.mark.parametrize("on_request", [1, 2])
def test_segment_deleted_while_walked(
    warehouse_factory: MakeWarehouse, small_pages: int, on_request: int
) -> None:
    injector = _DeleteDuringWalk(on_request)
    with Emulator(dataset="tiny", seed=1, faults=injector) as emu:
        victim = max(emu.segment_ids(), key=lambda s: len(emu.members(s)))
        before = {k: v for k, v in truth_memberships(emu).items() if k[0] == victim}
        assert len(before) > small_pages  # the walk spans pages
        injector.emulator, injector.segment_id = emu, victim
        warehouse = warehouse_factory("w")

        stats = warehouse.run(emu)

        assert victim not in emu.segment_ids()
        assert stats.segments_done == stats.segments_total
        loaded = warehouse.memberships()
        assert {k: v for k, v in loaded.items() if k[0] != victim} == truth_memberships(emu)
        victims = {k: v for k, v in loaded.items() if k[0] == victim}
        assert len(victims) == (on_request - 1) * small_pages
        assert victims.items() <= before.items()
        # the cursor of a segment whose walk did not finish never moves
        assert all(victim not in cursors for cursors in warehouse.cursors().values())
        assert warehouse.duplicate_keys() == {}
        (deleted_at,) = warehouse.rows(f"select deleted_at from segments where id = '{victim}'")[0]
        assert deleted_at is not None

        add_joins(emu, 4, "after")
        warehouse.reattach().run(emu)

        assert membership_mismatches(warehouse, emu) == []
        assert warehouse.duplicate_keys() == {}
