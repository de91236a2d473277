"""Dagster definitions for many Klaviyo accounts: one asset per table, one partition per account.

`dagster dev -m pipelines.dagster_definitions` serves them from a project folder whose
`.dlt/config.toml` declares the accounts (`[accounts.<id>]`). Every materialization of a
partition is one call of `run_account` for that account, in a run of its own:

* partitions are dynamic and follow the config: a sensor adds a new account (and asks for
  its first run, the backfill) and removes one no longer declared;
* a schedule loads every account (`[klaviyo_accounts] cron`, hourly by default);
* a run that spent its time budget (`max_minutes`) succeeds with `complete=False` in its
  metadata and a tag, and a sensor asks for the next run of that account at once;
* every run is tagged with its account, so the run queue can limit runs per account to one
  (`tag_concurrency_limits` in dagster.yaml); a run that meets another run of its account in
  the destination's lock fails at once, without retries;
* failures are retried (`RetryPolicy`), except a rejected key or an invalid configuration.

Asset keys, descriptions and kinds come from dagster-dlt's `DagsterDltTranslator`, as for
any `@dlt_assets`; the run itself is `run_account`, not `DagsterDltResource.run`, so that
checkpoints, the time budget, the locks and the per-account pipeline apply.
"""

# No `from __future__ import annotations`: Dagster reads the asset's config annotation.
import functools
from collections.abc import Callable, Iterator, Mapping
from typing import Any

import dlt
from dagster import (
    AddDynamicPartitionsRequest,
    AssetExecutionContext,
    AssetKey,
    AssetSpec,
    Backoff,
    Config,
    DagsterRunStatus,
    DefaultScheduleStatus,
    DefaultSensorStatus,
    Definitions,
    DeleteDynamicPartitionsRequest,
    DynamicPartitionsDefinition,
    Failure,
    Jitter,
    MaterializeResult,
    MetadataValue,
    PartitionedConfig,
    RetryPolicy,
    RunRequest,
    RunStatusSensorContext,
    ScheduleEvaluationContext,
    SensorEvaluationContext,
    SensorResult,
    SkipReason,
    define_asset_job,
    multi_asset,
    run_status_sensor,
    schedule,
    sensor,
)
from dagster._core.definitions.metadata.metadata_set import TableMetadataSet
from dagster_dlt import DagsterDltTranslator
from dagster_dlt.translator import DltResourceTranslatorData

from pipelines import account_settings as settings
from pipelines.accounts import AccountsConfig, is_permanent, load_accounts, run_account
from pipelines.errors import describe_failure
from sources.klaviyo import klaviyo_source

ACCOUNT_PARTITIONS = DynamicPartitionsDefinition(name=settings.PARTITIONS_NAME)
"""One partition per account id; the accounts sensor keeps them equal to the config."""
PARTITION_TAG = "dagster/partition"

_DECLARATION_KEY = "pk_" + "0" * 34
"""Lets the source be created for its declarations (names, docstrings); it never runs."""


class AccountRunConfig(Config):
    """Run options of one account's materialization (Launchpad or RunRequest config)."""

    max_minutes: float | None = None
    """Time budget of this run; `[klaviyo_accounts] max_minutes` when not set."""
    full_refresh: bool = False
    """Load everything again (in a shared dataset: walk every segment again, drop nothing)."""


def table_specs(
    translator: DagsterDltTranslator | None = None, destination: str | None = None
) -> dict[AssetKey, tuple[str, AssetSpec]]:
    """The asset spec of every table, by asset key, with the table's name.

    Args:
        translator: Customizes keys, groups and descriptions, as for `@dlt_assets`.
        destination: Added to the assets' kinds.
    """
    translator = translator or DagsterDltTranslator()
    source = klaviyo_source(api_key=_DECLARATION_KEY)
    specs: dict[AssetKey, tuple[str, AssetSpec]] = {}
    for resource in source.selected_resources.values():
        spec = translator.get_asset_spec(
            DltResourceTranslatorData(resource=resource, pipeline=None)
        )
        # dagster-dlt points every table at an upstream asset of the resource that feeds it;
        # here the source is Klaviyo itself, outside of Dagster.
        spec = spec.replace_attributes(deps=[])
        spec = spec.merge_attributes(kinds={destination} if destination else set())
        if spec.group_name is None:
            spec = spec.replace_attributes(group_name=settings.ASSET_GROUP)
        specs[spec.key] = (resource.table_name, spec)  # type: ignore[assignment]
    return specs


def build_definitions(
    accounts: Callable[[], AccountsConfig] | None = None,
    translator: DagsterDltTranslator | None = None,
) -> Definitions:
    """Assets, job, schedule and sensors for the accounts `accounts()` returns.

    Args:
        accounts: Reads the accounts when a run or a sensor needs them (never at import, so
            a change of config needs no redeploy); `load_accounts(reload=True)` by default.
        translator: dagster-dlt translator for the asset specs.
    """
    read_accounts = accounts or functools.partial(load_accounts, reload=True)
    destination = str(dlt.config.get(f"{settings.SETTINGS_SECTION}.destination") or "duckdb")
    specs = table_specs(translator, destination)
    tables = {key: table for key, (table, _) in specs.items()}

    @multi_asset(
        name="klaviyo_accounts",
        specs=[spec for _, spec in specs.values()],
        partitions_def=ACCOUNT_PARTITIONS,
        can_subset=True,
        retry_policy=RetryPolicy(
            max_retries=settings.RETRIES,
            delay=settings.RETRY_DELAY_SECONDS,
            backoff=Backoff.EXPONENTIAL,
            jitter=Jitter.PLUS_MINUS,
        ),
        pool=settings.POOL,
    )
    def klaviyo_tables(
        context: AssetExecutionContext, config: AccountRunConfig
    ) -> Iterator[MaterializeResult]:
        account_id = context.partition_key
        selected = [tables[key] for key in context.selected_asset_keys]
        report = _run(account_id, read_accounts, config, selected, len(selected) < len(tables))
        summary = report.summary()
        if not report.complete:
            # Read by the continuation sensor: the next slice of this account runs at once.
            context.instance.add_run_tags(context.run.run_id, {settings.INCOMPLETE_TAG: "true"})
            context.log.info(
                f"account {account_id} stopped at its time budget with "
                f"{len(summary['unfinished'])} segment(s) left; the next run goes on"
            )
        for key in context.selected_asset_keys:
            yield MaterializeResult(asset_key=key, metadata=table_metadata(tables[key], summary))

    job = define_asset_job(
        settings.JOB_NAME,
        selection=[klaviyo_tables],
        config=PartitionedConfig(
            partitions_def=ACCOUNT_PARTITIONS,
            run_config_for_partition_key_fn=lambda _: {},
            tags_for_partition_key_fn=account_tags,
        ),
    )

    @schedule(
        name="klaviyo_accounts_schedule",
        cron_schedule=_cron(),
        job=job,
        default_status=DefaultScheduleStatus.RUNNING,
    )
    def every_account(context: ScheduleEvaluationContext) -> Iterator[RunRequest]:
        """One run per account with a partition, each at most once at a time (run queue)."""
        known = set(context.instance.get_dynamic_partitions(settings.PARTITIONS_NAME))
        for account in read_accounts().enabled:
            if account.id in known:
                yield RunRequest(
                    run_key=account.id, partition_key=account.id, tags=account_tags(account.id)
                )

    @sensor(
        name="klaviyo_accounts_sensor",
        job=job,
        minimum_interval_seconds=settings.SENSOR_INTERVAL_SECONDS,
        default_status=DefaultSensorStatus.RUNNING,
    )
    def accounts_changed(context: SensorEvaluationContext) -> SensorResult | SkipReason:
        """Partitions follow the config: a new account is added and backfilled at once."""
        return sync_partitions(
            read_accounts(), set(context.instance.get_dynamic_partitions(settings.PARTITIONS_NAME))
        )

    @run_status_sensor(
        name="klaviyo_accounts_continue",
        run_status=DagsterRunStatus.SUCCESS,
        request_job=job,
        minimum_interval_seconds=settings.SENSOR_INTERVAL_SECONDS,
        default_status=DefaultSensorStatus.RUNNING,
    )
    def continue_incomplete(context: RunStatusSensorContext) -> RunRequest | SkipReason:
        """A run that stopped at its time budget is followed by the next one, at once."""
        return continuation(context.dagster_run.run_id, context.dagster_run.tags)

    return Definitions(
        assets=[klaviyo_tables],
        jobs=[job],
        schedules=[every_account],
        sensors=[accounts_changed, continue_incomplete],
    )


def sync_partitions(config: AccountsConfig, known: set[str]) -> SensorResult | SkipReason:
    """Partition changes and first runs that make the partitions equal the enabled accounts."""
    declared = {account.id for account in config.enabled}
    added, removed = sorted(declared - known), sorted(known - declared)
    if not added and not removed:
        return SkipReason(f"{len(declared)} account(s), no change")
    requests: list[AddDynamicPartitionsRequest | DeleteDynamicPartitionsRequest] = []
    if added:
        requests.append(ACCOUNT_PARTITIONS.build_add_request(added))
    if removed:
        requests.append(ACCOUNT_PARTITIONS.build_delete_request(removed))
    first_runs = [
        RunRequest(
            run_key=f"first:{account_id}", partition_key=account_id, tags=account_tags(account_id)
        )
        for account_id in added
    ]
    return SensorResult(run_requests=first_runs, dynamic_partitions_requests=requests)


def continuation(run_id: str, tags: Mapping[str, str]) -> RunRequest | SkipReason:
    """The next run of an account whose run `run_id` stopped at its time budget."""
    account_id = tags.get(PARTITION_TAG)
    if tags.get(settings.INCOMPLETE_TAG) != "true" or not account_id:
        return SkipReason(f"run {run_id} finished its account's work")
    return RunRequest(
        run_key=f"continue:{run_id}", partition_key=account_id, tags=account_tags(account_id)
    )


def account_tags(account_id: str) -> dict[str, str]:
    """Tags of every run of `account_id`; the run queue limits runs per account with them."""
    return {settings.ACCOUNT_TAG: account_id}


def table_metadata(table: str, summary: Mapping[str, Any]) -> dict[str, Any]:
    """Metadata of one table's materialization: its rows and the run's summary."""
    rows = summary.get("rows", {})
    return {
        "rows_loaded": MetadataValue.int(int(rows.get(table, 0))),
        **TableMetadataSet(table_name=f"{summary['dataset']}.{table}"),
        "account": summary["account"],
        "pipeline_name": summary["pipeline_name"],
        "destination": summary["destination"],
        "requests": MetadataValue.int(summary["requests"]),
        "throttled_429": MetadataValue.int(summary["throttled_429"]),
        "retries": MetadataValue.int(summary["retries"]),
        "new_memberships": MetadataValue.int(summary["new_memberships"]),
        "leaves": MetadataValue.int(summary["leaves"]),
        "segments_reconciled": MetadataValue.int(summary["segments_reconciled"]),
        "checkpoints": MetadataValue.int(summary["checkpoints"]),
        "complete": MetadataValue.bool(summary["complete"]),
        "unfinished": MetadataValue.json(dict(summary["unfinished"])),
        "rows": MetadataValue.json(dict(rows)),
        "elapsed_s": MetadataValue.float(float(summary["elapsed_s"])),
    }


def _run(
    account_id: str,
    read_accounts: Callable[[], AccountsConfig],
    config: AccountRunConfig,
    selected: list[str],
    subset: bool,
) -> Any:
    """`run_account`, with its failure as a Dagster `Failure` of one line, never the key."""
    try:
        return run_account(
            account_id,
            read_accounts(),
            max_minutes=config.max_minutes,
            full_refresh=config.full_refresh,
            resources=selected if subset else None,
        )
    except Exception as error:
        permanent = is_permanent(error)
        failure = Failure(
            description=f"account {account_id}: {describe_failure(error)}",
            metadata={"account": account_id, "retried": not permanent},
            allow_retries=not permanent,
        )
        if permanent:
            raise failure from None
        raise failure from error


def _cron() -> str:
    configured: Any = dlt.config.get(f"{settings.SETTINGS_SECTION}.cron")
    return str(configured or settings.DEFAULT_CRON)


defs = build_definitions()
"""What `dagster dev -m pipelines.dagster_definitions` serves."""

__all__ = ["ACCOUNT_PARTITIONS", "AccountRunConfig", "build_definitions", "defs"]
