"""Airflow DAG: every declared Klaviyo account loaded by a task of its own (dynamic task mapping).

Put this file (or a one-line `from pipelines.airflow_dag import dag` file) in Airflow's
dags folder, with this project installed on the workers. The tasks run from the project
folder named by the `KLAVIYO_PROJECT_DIR` environment variable (this repository by
default): its `.dlt/config.toml` declares the accounts, keys come from the environment or
`.dlt/secrets.toml` of the workers. Each mapped task calls `run_account` for one account:

* one DAG run at a time (`max_active_runs=1`), so one run per account at a time;
* a failed account fails its own task only; a rejected key or an invalid configuration
  fails at once, anything else is retried;
* an account that stopped at its time budget (`[klaviyo_accounts] max_minutes`) is loaded
  again by the next DAG run, triggered at once for those accounts only.

Loads that go well return the run's summary (rows per table, requests, 429s, leaves,
`complete`) as the task's XCom; the key never is.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import timedelta
from pathlib import Path
from typing import Any

import pendulum

try:  # Airflow 3
    from airflow.sdk import dag, get_current_context, task
except ImportError:  # Airflow 2.x
    from airflow.decorators import dag, task  # type: ignore[no-redef]
    from airflow.operators.python import get_current_context  # type: ignore[no-redef]
from airflow.exceptions import AirflowFailException

try:
    from airflow.providers.standard.operators.trigger_dagrun import TriggerDagRunOperator
except ImportError:  # Airflow 2.x
    from airflow.operators.trigger_dagrun import TriggerDagRunOperator  # type: ignore[no-redef]

from pipelines import account_settings as settings

DAG_ID = "klaviyo_accounts"
PROJECT_DIR = os.environ.get("KLAVIYO_PROJECT_DIR", str(Path(__file__).resolve().parents[1]))
"""The project folder the tasks run in: `.dlt/` and DuckDB files are found there."""
ACCOUNTS_AT_ONCE = 8
"""Accounts loaded at the same time by one DAG run (Klaviyo limits each account, not you)."""


@contextmanager
def project_folder() -> Iterator[None]:
    """Run in the project folder, with dlt reading its `.dlt/` config and secrets."""
    from dlt.common.configuration.container import Container
    from dlt.common.configuration.specs.pluggable_run_context import PluggableRunContext

    previous = os.getcwd()
    os.chdir(PROJECT_DIR)
    Container()[PluggableRunContext].reload(PROJECT_DIR)
    try:
        yield
    finally:
        os.chdir(previous)


@dag(
    dag_id=DAG_ID,
    schedule=settings.DEFAULT_CRON,
    start_date=pendulum.datetime(2026, 1, 1, tz="UTC"),
    catchup=False,
    max_active_runs=1,
    render_template_as_native_obj=True,
    tags=["klaviyo", "dlt"],
    doc_md=__doc__,
)
def klaviyo_accounts() -> None:
    """Which accounts to load, one mapped task per account, and the next run for unfinished ones."""

    @task
    def account_ids() -> list[str]:
        """Enabled accounts; a run triggered for unfinished accounts loads only those."""
        from pipelines.accounts import load_accounts

        requested = (get_current_context()["dag_run"].conf or {}).get("accounts")
        with project_folder():
            declared = [account.id for account in load_accounts().enabled]
        return [a for a in declared if a in requested] if requested else declared

    @task(
        retries=settings.RETRIES,
        retry_delay=timedelta(seconds=settings.RETRY_DELAY_SECONDS),
        retry_exponential_backoff=True,
        max_active_tis_per_dagrun=ACCOUNTS_AT_ONCE,
        map_index_template="{{ task.op_kwargs['account_id'] }}",
    )
    def load_account(account_id: str) -> dict[str, Any]:
        """`run_account` for one account; its summary goes to XCom."""
        from pipelines.accounts import is_permanent, run_account
        from pipelines.errors import describe_failure

        try:
            with project_folder():
                return run_account(account_id).summary()
        except Exception as error:
            message = f"account {account_id}: {describe_failure(error)}"
            if is_permanent(error):
                raise AirflowFailException(message) from None
            raise RuntimeError(message) from error

    @task.short_circuit(trigger_rule="all_done")
    def unfinished(summaries: Any) -> list[str]:
        """Accounts that stopped at their time budget; nothing to trigger when there are none."""
        return [s["account"] for s in summaries if s and not s.get("complete", True)]

    left = unfinished(load_account.expand(account_id=account_ids()))
    continue_now = TriggerDagRunOperator(
        task_id="continue_unfinished",
        trigger_dag_id=DAG_ID,
        conf={"accounts": "{{ ti.xcom_pull(task_ids='unfinished') }}"},
    )
    left >> continue_now


dag_object = klaviyo_accounts()
