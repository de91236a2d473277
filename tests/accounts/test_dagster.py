"""Dagster in-process: three accounts as partitions of the table assets, on real Postgres."""

from __future__ import annotations

import random
from pathlib import Path
from typing import Any

import pytest
from dagster import (
    AssetKey,
    DagsterEventType,
    DagsterInstance,
    RunRequest,
    SkipReason,
)

from pipelines import account_settings as settings
from pipelines.accounts import AccountsConfig
from pipelines.dagster_definitions import ACCOUNT_PARTITIONS, build_definitions, continuation

from .conftest import Accounts, change, truth

pytestmark = pytest.mark.postgres

ASSETS = "klaviyo_accounts"
MEMBERSHIPS = AssetKey("dlt_klaviyo_segment_memberships")


class Deployment:
    """The definitions, an ephemeral instance, and what a daemon would do with sensor results."""

    def __init__(self, config: AccountsConfig | None) -> None:
        # None: the accounts of the project folder's .dlt/config.toml, read on each use.
        self.defs = build_definitions(accounts=None if config is None else (lambda: config))
        self.instance = DagsterInstance.ephemeral()
        self.job = self.defs.resolve_job_def(settings.JOB_NAME)

    def sync_partitions(self) -> list[str]:
        """Evaluates the accounts sensor and applies its partition changes; the keys it asks to run."""
        from dagster import build_sensor_context

        sensor = self.defs.resolve_sensor_def("klaviyo_accounts_sensor")
        result = sensor(build_sensor_context(instance=self.instance, definitions=self.defs))
        for request in getattr(result, "dynamic_partitions_requests", None) or []:
            if type(request).__name__.startswith("Add"):
                self.instance.add_dynamic_partitions(
                    request.partitions_def_name, request.partition_keys
                )
            else:
                for key in request.partition_keys:
                    self.instance.delete_dynamic_partition(request.partitions_def_name, key)
        return [request.partition_key for request in getattr(result, "run_requests", None) or []]

    def materialize(self, account_id: str, **config: Any) -> Any:
        run_config = {"ops": {ASSETS: {"config": config}}} if config else None
        return self.job.execute_in_process(
            partition_key=account_id,
            instance=self.instance,
            raise_on_error=False,
            run_config=run_config,
            tags={settings.ACCOUNT_TAG: account_id},
        )

    def metadata(self, run_id: str, key: AssetKey = MEMBERSHIPS) -> dict[str, Any]:
        records = self.instance.fetch_materializations(key, limit=100).records
        for record in records:
            if record.run_id == run_id:
                materialization = record.asset_materialization
                assert materialization is not None
                return {name: value.value for name, value in materialization.metadata.items()}
        raise AssertionError(f"run {run_id} materialized nothing")

    def logs(self) -> str:
        return "\n".join(
            repr(entry)
            for run in self.instance.get_runs()
            for entry in self.instance.all_logs(run.run_id)
        )


def test_three_accounts_then_fresh_workers_read_only_what_is_new(accounts: Accounts) -> None:
    deployment = Deployment(accounts.config())
    assert sorted(deployment.sync_partitions()) == ["acme", "beta", "gamma"]
    assert sorted(deployment.instance.get_dynamic_partitions(ACCOUNT_PARTITIONS.name)) == [
        "acme",
        "beta",
        "gamma",
    ]
    for account_id, emu in accounts.emulators.items():
        result = deployment.materialize(account_id)
        assert result.success, account_id
        loaded = accounts.warehouse.memberships(accounts.dataset(account_id))
        assert loaded == truth(emu)
        metadata = deployment.metadata(result.run_id)
        assert metadata["account"] == account_id
        assert metadata["pipeline_name"] == f"klaviyo_segments__{account_id}"
        assert metadata["rows_loaded"] == len(truth(emu))
        assert metadata["complete"] is True and metadata["unfinished"] == {}
        assert metadata["requests"] > 0 and metadata["throttled_429"] == 0

    rng = random.Random(5)
    for emu in accounts.emulators.values():
        change(emu, rng, leaves=False)
    accounts.forget_local_state()
    for account_id, emu in accounts.emulators.items():
        pages = accounts.profile_pages(account_id)
        assert deployment.materialize(account_id).success
        # Cursors came back from the destination: one page per segment, not a backfill.
        assert accounts.profile_pages(account_id) - pages <= len(emu.segment_ids())
        assert accounts.warehouse.memberships(accounts.dataset(account_id)) == truth(emu)
    assert deployment.sync_partitions() == []


def test_a_revoked_key_fails_alone_and_is_not_retried(accounts: Accounts) -> None:
    deployment = Deployment(accounts.config())
    deployment.sync_partitions()
    for account_id in accounts.emulators:
        assert deployment.materialize(account_id).success
    rng = random.Random(9)
    for emu in accounts.emulators.values():
        change(emu, rng, leaves=False)
    accounts.revoke("beta")
    results = {account_id: deployment.materialize(account_id) for account_id in accounts.emulators}

    assert not results["beta"].success
    assert results["acme"].success and results["gamma"].success
    for account_id in ("acme", "gamma"):
        loaded = accounts.warehouse.memberships(accounts.dataset(account_id))
        assert loaded == truth(accounts.emulators[account_id])
    failure = next(
        event
        for event in results["beta"].all_events
        if event.event_type == DagsterEventType.STEP_FAILURE
    )
    assert "account beta: Klaviyo rejected the API key" in str(failure.event_specific_data)
    retried = [
        e for e in results["beta"].all_events if e.event_type == DagsterEventType.STEP_UP_FOR_RETRY
    ]
    assert retried == []
    logs = deployment.logs()
    for key in accounts.keys.values():
        assert key not in logs


def test_a_run_out_of_time_asks_for_the_next_at_once(
    accounts: Accounts, monkeypatch: pytest.MonkeyPatch
) -> None:
    from sources.klaviyo import settings as source_settings

    # pages of two members: the first checkpoint (after one page) always cuts a walk short
    monkeypatch.setattr(source_settings, "SEGMENT_PROFILES_PAGE_SIZE", 2)
    configs = {"now": accounts.config(checkpoint_pages=1)}
    deployment = Deployment(None)
    deployment.defs = build_definitions(accounts=lambda: configs["now"])
    deployment.job = deployment.defs.resolve_job_def(settings.JOB_NAME)
    deployment.sync_partitions()
    first = deployment.materialize("acme", max_minutes=0.0001)
    assert first.success
    metadata = deployment.metadata(first.run_id)
    assert metadata["complete"] is False and metadata["unfinished"]
    run = deployment.instance.get_run_by_id(first.run_id)
    assert run is not None and run.tags[settings.INCOMPLETE_TAG] == "true"
    request = continuation(run.run_id, run.tags)
    assert isinstance(request, RunRequest)
    assert request.partition_key == "acme" and request.tags[settings.ACCOUNT_TAG] == "acme"

    configs["now"] = accounts.config()
    result = deployment.materialize("acme")
    assert result.success and deployment.metadata(result.run_id)["complete"] is True
    assert accounts.warehouse.memberships(accounts.dataset("acme")) == truth(
        accounts.emulators["acme"]
    )
    finished = deployment.instance.get_run_by_id(result.run_id)
    assert finished is not None and settings.INCOMPLETE_TAG not in finished.tags
    assert isinstance(continuation(finished.run_id, finished.tags), SkipReason)


def test_adding_an_account_is_a_config_change(
    accounts: Accounts, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, project_config: Any
) -> None:
    write = project_config(accounts, ["acme", "beta"])
    deployment = Deployment(None)
    assert sorted(deployment.sync_partitions()) == ["acme", "beta"]
    assert deployment.sync_partitions() == []

    write(["acme", "beta", "gamma"])
    assert deployment.sync_partitions() == ["gamma"]
    result = deployment.materialize("gamma")
    assert result.success
    gamma = accounts.emulators["gamma"]
    assert accounts.warehouse.memberships(accounts.dataset("gamma")) == truth(gamma)
    assert deployment.metadata(result.run_id)["rows_loaded"] == len(truth(gamma))
