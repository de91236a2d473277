"""Declarations of many Klaviyo accounts in dlt config, read into `AccountsConfig`.

Accounts are declared in `.dlt/config.toml`, one `[accounts.<id>]` table each, with what is
particular to the account (segments in scope, any source option); what they share is under
`[klaviyo_accounts]`. Keys live in `.dlt/secrets.toml` or the environment only
(`ACCOUNTS__<ID>__API_KEY` by default), and are read only when a run starts.
"""

from __future__ import annotations

import inspect
import os
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import dlt
from dlt.common.configuration.container import Container
from dlt.common.configuration.specs.pluggable_run_context import PluggableRunContext

from pipelines import account_settings as settings
from pipelines.errors import PipelineConfigError
from sources.klaviyo import klaviyo_source

SOURCE_OPTIONS = tuple(
    name
    for name in inspect.signature(klaviyo_source).parameters
    if name not in settings.REFUSED_SOURCE_OPTIONS
)
"""Source options an `[accounts.<id>]` table may set."""


@dataclass(frozen=True)
class Account:
    """One Klaviyo account as declared in `[accounts.<id>]`; never holds its key.

    Attributes:
        id: Lowercase letters, digits and underscores; names its pipeline and dataset.
        options: Source options of this account (`segment_ids`, `base_url`, ...).
        api_key_secret: Where dlt secrets hold the key (`accounts.<id>.api_key`).
        api_key_env: An environment variable holding the key instead, if set.
        dataset: Its own dataset's name, instead of `klaviyo_<id>`.
        duckdb_file: Its own DuckDB file, instead of `klaviyo_segments__<id>.duckdb`.
        enabled: False keeps the account declared but never loaded.
    """

    id: str
    options: Mapping[str, Any] = field(default_factory=dict)
    api_key_secret: str = ""
    api_key_env: str | None = None
    dataset: str | None = None
    duckdb_file: str | None = None
    enabled: bool = True

    @property
    def pipeline_name(self) -> str:
        """`klaviyo_segments__<id>`: one pipeline, hence one state, per account."""
        return f"{settings.PIPELINE_NAME_PREFIX}{self.id}"

    @property
    def key_location(self) -> str:
        """Where the key is looked up, for messages (never the key itself)."""
        if self.api_key_env:
            return f"the environment variable {self.api_key_env}"
        env = "__".join(self.api_key_secret.split(".")).upper()
        section, _, name = self.api_key_secret.rpartition(".")
        return f"{env} or {name} under [{section}] in .dlt/secrets.toml"

    def api_key(self) -> str:
        """The account's key, from the environment or dlt secrets (never from config.toml).

        Raises:
            PipelineConfigError: No key is set where the account says it is.
        """
        if self.api_key_env:
            key = os.environ.get(self.api_key_env, "")
        else:
            key = str(dlt.secrets.get(self.api_key_secret) or "")
        if not key.strip():
            raise PipelineConfigError(
                f"no Klaviyo API key for account {self.id}: set {self.key_location}"
            )
        return key.strip()


@dataclass(frozen=True)
class AccountsConfig:
    """The declared accounts and what they share (`[klaviyo_accounts]`).

    Attributes:
        accounts: By id, in declaration order.
        destination: Any dlt destination name; credentials from dlt config as usual.
        shared_dataset: None: one dataset per account (`klaviyo_<id>`). A name: every account
            loads into that dataset, with `account_id` in every table and primary key.
        duckdb_dir: Folder of the DuckDB files, relative to the current folder.
        max_minutes: Time budget of a run; None: a run reads everything there is.
        cron: When the orchestrator loads every account.
        pipelines_dir: dlt's working folder; `.dlt/pipelines` of the current folder if None.
    """

    accounts: Mapping[str, Account] = field(default_factory=dict)
    destination: str = "duckdb"
    shared_dataset: str | None = None
    duckdb_dir: str = "."
    max_minutes: float | None = None
    cron: str = settings.DEFAULT_CRON
    pipelines_dir: str | None = None

    @property
    def enabled(self) -> list[Account]:
        """The accounts to load."""
        return [account for account in self.accounts.values() if account.enabled]

    def account(self, account_id: str) -> Account:
        """The account declared as `account_id`.

        Raises:
            PipelineConfigError: No such account is declared, or it is disabled.
        """
        account = self.accounts.get(account_id)
        if account is None:
            known = ", ".join(self.accounts) or "none"
            raise PipelineConfigError(
                f"no account {account_id!r} is declared (declared: {known}); add "
                f"[accounts.{account_id}] to .dlt/config.toml"
            )
        if not account.enabled:
            raise PipelineConfigError(
                f"account {account_id} is disabled; set enabled = true under "
                f"[accounts.{account_id}] to load it"
            )
        return account

    def dataset_of(self, account: Account) -> str:
        """The dataset `account` loads into."""
        return self.shared_dataset or account.dataset or f"{settings.DATASET_PREFIX}{account.id}"

    def duckdb_file_of(self, account: Account) -> str:
        """The DuckDB file of `account` (used with DuckDB only)."""
        if self.shared_dataset:
            name = settings.SHARED_DUCKDB_FILE
        else:
            name = account.duckdb_file or settings.DUCKDB_FILE_TEMPLATE.format(account=account.id)
        return str(Path(self.duckdb_dir) / name)

    @classmethod
    def from_mapping(
        cls, accounts: Mapping[str, Mapping[str, Any]], **shared: Any
    ) -> AccountsConfig:
        """Accounts from plain values, as `[accounts]` and `[klaviyo_accounts]` hold them.

        Raises:
            PipelineConfigError: An account id, field or option is invalid.
        """
        parsed = {account_id: _account(account_id, table) for account_id, table in accounts.items()}
        return cls(accounts=parsed, **_shared_settings(shared))


def load_accounts(reload: bool = False) -> AccountsConfig:
    """The accounts declared in `.dlt/config.toml`, with settings from dlt config.

    Every value of an `[accounts.<id>]` table can be overridden by the environment
    (`ACCOUNTS__<ID>__<NAME>`), and so can `[klaviyo_accounts]` (`KLAVIYO_ACCOUNTS__<NAME>`).

    Args:
        reload: Read the config files again (a long-lived process sees accounts added since).

    Raises:
        PipelineConfigError: A declaration is invalid, or a key sits in config.toml.
    """
    if reload:
        Container()[PluggableRunContext].reload_providers()
    declared = _config_toml_accounts()
    accounts = {}
    for account_id, table in declared.items():
        if settings.API_KEY_FIELD in table:
            raise PipelineConfigError(
                f"account {account_id} has its API key in .dlt/config.toml, which is committed: "
                f"move it to .dlt/secrets.toml [accounts.{account_id}] or "
                f"ACCOUNTS__{account_id.upper()}__API_KEY"
            )
        values = {
            name: _config_value(f"{settings.ACCOUNTS_SECTION}.{account_id}.{name}", value)
            for name, value in table.items()
        }
        accounts[account_id] = values
    shared: dict[str, Any] = {
        name: dlt.config.get(f"{settings.SETTINGS_SECTION}.{name}") for name in _SHARED_FIELDS
    }
    return AccountsConfig.from_mapping(accounts, **shared)


def _account(account_id: str, table: Mapping[str, Any]) -> Account:
    if not isinstance(account_id, str) or not re.fullmatch(settings.ACCOUNT_ID_PATTERN, account_id):
        raise PipelineConfigError(
            f"account id {account_id!r} must be 1 to 63 lowercase letters, digits and "
            "underscores, starting with a letter or digit, e.g. [accounts.acme_eu]"
        )
    if not isinstance(table, Mapping):
        raise PipelineConfigError(
            f"[accounts.{account_id}] must be a table of options, got {type(table).__name__}"
        )
    unknown = [
        name
        for name in table
        if name not in settings.ACCOUNT_FIELDS
        and name not in SOURCE_OPTIONS
        and name != settings.API_KEY_FIELD
    ]
    if unknown:
        raise PipelineConfigError(
            f"unknown option(s) {', '.join(unknown)} in [accounts.{account_id}]; allowed: "
            f"{', '.join((*settings.ACCOUNT_FIELDS, *SOURCE_OPTIONS))}"
        )
    secret = table.get("api_key_secret") or (
        f"{settings.ACCOUNTS_SECTION}.{account_id}.{settings.API_KEY_FIELD}"
    )
    return Account(
        id=account_id,
        options={name: value for name, value in table.items() if name in SOURCE_OPTIONS},
        api_key_secret=str(secret),
        api_key_env=table.get("api_key_env") or None,
        dataset=table.get("dataset") or None,
        duckdb_file=table.get("duckdb_file") or None,
        enabled=_flag(table.get("enabled", True), f"accounts.{account_id}.enabled"),
    )


_SHARED_FIELDS = (
    "destination",
    "shared_dataset",
    "duckdb_dir",
    "max_minutes",
    "cron",
    "pipelines_dir",
)


def _shared_settings(values: Mapping[str, Any]) -> dict[str, Any]:
    unknown = [name for name in values if name not in _SHARED_FIELDS]
    if unknown:
        raise PipelineConfigError(
            f"unknown setting(s) {', '.join(unknown)} in [{settings.SETTINGS_SECTION}]; "
            f"allowed: {', '.join(_SHARED_FIELDS)}"
        )
    shared = {name: value for name, value in values.items() if value not in (None, "")}
    if "shared_dataset" in shared:
        name = str(shared["shared_dataset"]).strip()
        if not re.fullmatch(r"[A-Za-z_][A-Za-z0-9_]{0,62}", name):
            raise PipelineConfigError(
                f"shared_dataset {name!r} must be a plain dataset name such as klaviyo"
            )
        shared["shared_dataset"] = name
    if "max_minutes" in shared:
        shared["max_minutes"] = _minutes(shared["max_minutes"])
    return shared


def _minutes(value: Any) -> float:
    try:
        minutes = float(value)
    except (TypeError, ValueError):
        minutes = 0.0
    if not minutes > 0:
        raise PipelineConfigError(
            f"max_minutes in [{settings.SETTINGS_SECTION}] must be a number of minutes > 0, "
            f"got {value!r}"
        )
    return minutes


def _flag(value: Any, where: str) -> bool:
    if isinstance(value, bool):
        return value
    text = str(value).strip().lower()
    if text in ("true", "1", "yes"):
        return True
    if text in ("false", "0", "no"):
        return False
    raise PipelineConfigError(f"{where} must be true or false, got {value!r}")


def _config_toml_accounts() -> dict[str, dict[str, Any]]:
    """`[accounts.*]` of config.toml: the only place accounts are listed."""
    for provider in dlt.config.config_providers:
        if provider.name != "config.toml":
            continue
        value, _ = provider.get_value(settings.ACCOUNTS_SECTION, Any, None)  # type: ignore[arg-type]
        if value is None:
            return {}
        if not isinstance(value, Mapping):
            raise PipelineConfigError(
                f"[{settings.ACCOUNTS_SECTION}] in .dlt/config.toml must hold one table per "
                "account, e.g. [accounts.acme]"
            )
        return {str(k): dict(v) if isinstance(v, Mapping) else v for k, v in value.items()}
    return {}


def _config_value(key: str, declared: Any) -> Any:
    """`declared`, unless the environment overrides it."""
    found: Any = dlt.config.get(key)
    return declared if found is None else found
