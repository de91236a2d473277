"""Constants of many-account loads: config sections, names, locks and orchestration defaults."""

from __future__ import annotations

ACCOUNTS_SECTION = "accounts"
"""`[accounts.<id>]` tables of `.dlt/config.toml` declare the accounts, one table each."""
SETTINGS_SECTION = "klaviyo_accounts"
"""`[klaviyo_accounts]`: what every account shares (destination, dataset layout, budget)."""
API_KEY_FIELD = "api_key"
"""An account's key lives at `accounts.<id>.api_key` of dlt secrets unless it says otherwise."""
ACCOUNT_ID_PATTERN = r"[a-z0-9][a-z0-9_]{0,62}"
"""Account ids go into pipeline, dataset and partition names: lowercase, digits, underscores."""
ACCOUNT_FIELDS = ("api_key_secret", "api_key_env", "dataset", "duckdb_file", "enabled")
"""Keys of an `[accounts.<id>]` table that are about the account; every other key is a
source option (`segment_ids`, `base_url`, `revision`, `max_workers`, ...)."""
REFUSED_SOURCE_OPTIONS = ("api_key", "account_id", "stats")
"""Set by `run_account` itself, never from an account's table."""

PIPELINE_NAME_PREFIX = "klaviyo_segments__"
"""An account's pipeline is `klaviyo_segments__<id>`: its own state, cursors and lock."""
DATASET_PREFIX = "klaviyo_"
"""An account's own dataset is `klaviyo_<id>` (the default layout)."""
DUCKDB_FILE_TEMPLATE = "klaviyo_segments__{account}.duckdb"
"""With DuckDB, each account has its own file by default: a DuckDB file takes one writing
process at a time, and accounts load in processes of their own."""
SHARED_DUCKDB_FILE = "klaviyo_segments.duckdb"
"""The DuckDB file of a shared dataset."""
STAGING_LAYOUT_TEMPLATE = "%s_staging_{account}"
"""Staging dataset of an account in a shared dataset: dlt truncates its staging tables at the
start of each load, so accounts must never share one."""

LOAD_LOCK_TIMEOUT_SECONDS = 3600.0
"""How long a load waits for another account's load into the same shared dataset."""
LOCK_POLL_SECONDS = 0.2
"""Interval between tries of a lock that another run holds."""

# Dagster
PARTITIONS_NAME = "klaviyo_accounts"
"""The dynamic partitions of the Dagster assets: one partition per account id."""
ACCOUNT_TAG = "klaviyo/account"
"""Run tag naming the account; the run queue limits runs per value of it to one."""
INCOMPLETE_TAG = "klaviyo/incomplete"
"""Run tag of a run that stopped at its time budget; a sensor asks for the next slice."""
JOB_NAME = "klaviyo_accounts_job"
POOL = "klaviyo"
"""Dagster concurrency pool of the account runs: its limit caps accounts loaded at once."""
ASSET_GROUP = "klaviyo"
DEFAULT_CRON = "0 * * * *"
"""Every account is loaded once an hour unless `[klaviyo_accounts] cron` says otherwise."""
RETRIES = 3
"""Retries of a failed run (5xx storms, a destination that did not answer); a rejected key
or invalid configuration is not retried."""
RETRY_DELAY_SECONDS = 60
SENSOR_INTERVAL_SECONDS = 60
"""How often the sensors look at the accounts and at finished runs."""
