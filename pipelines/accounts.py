"""`run_account`: load one declared Klaviyo account; what every orchestrator task calls.

One account, one pipeline named after it (`klaviyo_segments__<id>`), its state kept in the
destination, so any worker can run it. Declarations: `account_config`. Adapters: Dagster
(`dagster_definitions`), Airflow (`airflow_dag`), the `klaviyo-accounts` command.
"""

from __future__ import annotations

import functools
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any, cast

import dlt

from pipelines import account_settings as settings
from pipelines.account_config import Account, AccountsConfig, load_accounts
from pipelines.destination_locks import LOCKING_DESTINATIONS, destination_lock
from pipelines.errors import PipelineBusyError, PipelineConfigError
from pipelines.klaviyo_segments_pipeline import (
    RunReport,
    load_segments,
    make_destination,
    make_pipeline,
)
from sources.klaviyo import ExtractionStats
from sources.klaviyo.exceptions import (
    KlaviyoAuthError,
    KlaviyoConfigError,
    KlaviyoPermissionError,
    find_klaviyo_error,
)

__all__ = [
    "Account",
    "AccountReport",
    "AccountsConfig",
    "is_permanent",
    "load_accounts",
    "run_account",
]


@dataclass
class AccountReport:
    """What one run of one account did: `RunReport` with the account's names."""

    account_id: str
    pipeline_name: str
    run: RunReport

    @property
    def complete(self) -> bool:
        """False when the run stopped at its time budget: run the account again soon."""
        return self.run.complete

    def summary(self) -> dict[str, Any]:
        """Plain values for orchestrator metadata and logs; never the key."""
        stats = self.run.stats or ExtractionStats()
        return {
            "account": self.account_id,
            "pipeline_name": self.pipeline_name,
            "destination": self.run.destination,
            "dataset": self.run.dataset_name,
            "rows": dict(self.run.rows),
            "requests": stats.requests,
            "throttled_429": stats.throttled,
            "retries": stats.retries,
            "new_memberships": stats.new_memberships,
            "leaves": stats.leaves,
            "segments_walked": stats.segments_done,
            "segments_reconciled": len(stats.segments_reconciled),
            "segments_refreshed": len(stats.segments_refreshed),
            "checkpoints": self.run.checkpoints,
            "complete": self.run.complete,
            "unfinished": dict(self.run.unfinished),
            "elapsed_s": round(self.run.elapsed_seconds, 2),
        }


def run_account(
    account_id: str,
    config: AccountsConfig | None = None,
    *,
    max_minutes: float | None = None,
    full_refresh: bool = False,
    resources: Sequence[str] | None = None,
    stats: ExtractionStats | None = None,
) -> AccountReport:
    """Load one account: the entry point of every orchestrator task.

    The account's pipeline (`klaviyo_segments__<id>`) keeps its state in the destination, so
    a worker without the local folder restores its cursors from there and reads only what is
    new. One run per account at a time: a second one fails at once with `PipelineBusyError`
    (a lock in the destination where it has one, and the pipeline's lock on this worker).
    In a shared dataset, loads take turns (a lock per dataset) and each account stages in its
    own staging dataset.

    Args:
        account_id: A declared account.
        config: The accounts; `load_accounts()` if None.
        max_minutes: Time budget; the config's `max_minutes` if None. A run that spends it
            stops at a checkpoint with `complete=False`; the next run goes on from there.
        full_refresh: Load everything again. In a shared dataset nothing is dropped (the
            tables hold other accounts' rows): every segment is walked from its first member.
        resources: Only these tables.
        stats: Counters to read while the run goes on.

    Raises:
        PipelineConfigError: The account or its configuration is invalid, or has no key.
        PipelineBusyError: The account is being loaded by another run.
    """
    config = config or load_accounts()
    account = config.account(account_id)
    api_key = account.api_key()
    dataset = config.dataset_of(account)
    shared = config.shared_dataset is not None
    if shared and config.destination not in LOCKING_DESTINATIONS:
        raise PipelineConfigError(
            f"a shared dataset needs loads that take turns, which this project can lock on "
            f"{' and '.join(LOCKING_DESTINATIONS)} only, not {config.destination}; remove "
            f"shared_dataset from [{settings.SETTINGS_SECTION}] to load one dataset per account"
        )
    duckdb_file = config.duckdb_file_of(account)
    if config.destination == "duckdb" and Path(duckdb_file).stem == dataset:
        raise PipelineConfigError(
            f"the DuckDB file {Path(duckdb_file).name} and the dataset {dataset!r} share a name, "
            "which DuckDB cannot tell apart; choose another dataset name"
        )
    pipeline = make_pipeline(
        # make_pipeline passes a destination object through as it is
        destination=cast(str, _destination(config, account, duckdb_file)),
        dataset_name=dataset,
        pipeline_name=account.pipeline_name,
        duckdb_file=duckdb_file,
        pipelines_dir=config.pipelines_dir,
    )
    options: dict[str, Any] = dict(account.options)
    if shared:
        options["account_id"] = account.id
        _serialize_loads(pipeline, dataset)
        if full_refresh and not options.get("segment_ids") and not resources:
            full_refresh, options["rewalk_segments"] = False, ["all"]
    budget = max_minutes if max_minutes is not None else config.max_minutes
    with _one_run(pipeline, account):
        report = load_segments(
            pipeline,
            resources=resources,
            full_refresh=full_refresh,
            stats=stats or ExtractionStats(),
            max_minutes=budget,
            api_key=api_key,
            **options,
        )
    return AccountReport(account.id, account.pipeline_name, report)


def is_permanent(error: BaseException) -> bool:
    """Whether running again without a change cannot help: a rejected key, a bad option,
    another run of the account going on. Anything else (5xx storms, a destination that did
    not answer) may pass on a retry."""
    if isinstance(error, (PipelineConfigError, PipelineBusyError)):
        return True
    found = find_klaviyo_error(error)
    return isinstance(found, (KlaviyoConfigError, KlaviyoAuthError, KlaviyoPermissionError))


@contextmanager
def _one_run(pipeline: dlt.Pipeline, account: Account) -> Iterator[None]:
    busy = (
        f"account {account.id} is being loaded by another run (pipeline "
        f"{account.pipeline_name}); nothing was loaded: that run will load what is new"
    )
    # The pipeline's state lives in its dataset: runs into other datasets do not collide
    name = f"run:{pipeline.dataset_name}:{account.pipeline_name}"
    with destination_lock(pipeline, name, None, busy):
        yield


def _serialize_loads(pipeline: dlt.Pipeline, dataset: str) -> None:
    """Make every load of `pipeline` (each checkpoint's) hold the dataset's load lock.

    Only the load step takes turns: extraction, the long part, runs for all accounts at once.
    The first load into a new dataset creates its tables under the same lock, so two
    accounts never race to create them.
    """
    load = pipeline.load
    busy = (
        f"waited {settings.LOAD_LOCK_TIMEOUT_SECONDS:.0f}s for other accounts' loads into "
        f"dataset {dataset}; the rows stay in a pending load package that the next run loads"
    )

    @functools.wraps(load)
    def load_in_turn(*args: Any, **kwargs: Any) -> Any:
        with destination_lock(
            pipeline, f"load:{dataset}", settings.LOAD_LOCK_TIMEOUT_SECONDS, busy
        ):
            return load(*args, **kwargs)

    pipeline.load = load_in_turn  # type: ignore[method-assign]


def _destination(config: AccountsConfig, account: Account, duckdb_file: str) -> Any:
    """The destination of `account`; in a shared dataset, with a staging dataset of its own."""
    base = make_destination(config.destination, duckdb_file)
    if config.shared_dataset is None:
        return base
    layout = settings.STAGING_LAYOUT_TEMPLATE.format(account=account.id)
    params = {**base.config_params, "staging_dataset_name_layout": layout}
    return type(base)(**params)
