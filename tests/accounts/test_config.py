"""Accounts declared in dlt config: what is accepted, what is refused, and keys kept out."""

from __future__ import annotations

import json
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import duckdb
import pytest

from klaviyo_emulator import Emulator
from pipelines.accounts import AccountsConfig, is_permanent, load_accounts, run_account
from pipelines.errors import PipelineConfigError

from .conftest import TABLE_KEYS, truth

KEY = "pk_" + "a1" * 17


def write(project: Path, config: str, secrets: str = "") -> None:
    (project / ".dlt" / "config.toml").write_text(config)
    (project / ".dlt" / "secrets.toml").write_text(secrets)


def test_accounts_come_from_config_toml_and_keys_from_secrets(
    project: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    write(
        project,
        '[klaviyo_accounts]\ndestination = "postgres"\nshared_dataset = "klaviyo"\nmax_minutes = 50\n'
        '[accounts.acme]\nsegment_ids = ["S1", "S2"]\nmax_workers = 2\n'
        '[accounts.beta]\napi_key_env = "BETA_KEY"\nbase_url = "http://127.0.0.1:1"\n'
        "[accounts.old]\nenabled = false\n",
        f'[accounts.acme]\napi_key = "{KEY}"\n',
    )
    monkeypatch.setenv("ACCOUNTS__BETA__BASE_URL", "http://127.0.0.1:2")
    monkeypatch.setenv("BETA_KEY", KEY.replace("a", "b"))
    config = load_accounts(reload=True)
    assert [a.id for a in config.enabled] == ["acme", "beta"]
    assert (config.destination, config.shared_dataset, config.max_minutes) == (
        "postgres",
        "klaviyo",
        50.0,
    )
    acme, beta = config.account("acme"), config.account("beta")
    assert dict(acme.options) == {"segment_ids": ["S1", "S2"], "max_workers": 2}
    assert acme.api_key() == KEY and beta.api_key() == KEY.replace("a", "b")
    assert beta.options["base_url"] == "http://127.0.0.1:2"
    assert acme.pipeline_name == "klaviyo_segments__acme"
    assert config.dataset_of(acme) == "klaviyo"
    assert KEY not in repr(config)
    with pytest.raises(PipelineConfigError, match="account old is disabled"):
        config.account("old")


def test_a_key_in_config_toml_is_refused(project: Path) -> None:
    write(project, f'[accounts.acme]\napi_key = "{KEY}"\n')
    with pytest.raises(PipelineConfigError) as refused:
        load_accounts(reload=True)
    message = str(refused.value)
    assert "committed" in message and "ACCOUNTS__ACME__API_KEY" in message
    assert KEY not in message


@pytest.mark.parametrize(
    ("accounts", "shared", "message"),
    [
        ({"Acme": {}}, {}, "account id 'Acme' must be"),
        ({"acme": {"segment_id": "S1"}}, {}, "unknown option(s) segment_id in [accounts.acme]"),
        ({"acme": {"account_id": "x"}}, {}, "unknown option(s) account_id"),
        ({"acme": {}}, {"shared": "x"}, "unknown setting(s) shared in [klaviyo_accounts]"),
        ({"acme": {}}, {"shared_dataset": "a b"}, "shared_dataset 'a b' must be"),
        ({"acme": {}}, {"max_minutes": 0}, "max_minutes in [klaviyo_accounts] must be"),
    ],
)
def test_invalid_declarations_are_refused_in_one_line(
    accounts: dict, shared: dict, message: str
) -> None:
    with pytest.raises(PipelineConfigError) as refused:
        AccountsConfig.from_mapping(accounts, **shared)
    assert message in str(refused.value) and "\n" not in str(refused.value)


def test_a_missing_key_says_where_to_put_it_and_is_not_retried() -> None:
    config = AccountsConfig.from_mapping({"acme": {}})
    with pytest.raises(PipelineConfigError) as missing:
        run_account("acme", config)
    assert "ACCOUNTS__ACME__API_KEY or api_key under [accounts.acme]" in str(missing.value)
    assert is_permanent(missing.value)
    with pytest.raises(PipelineConfigError, match="no account 'zeta' is declared"):
        run_account("zeta", config)


def test_a_shared_dataset_needs_a_destination_that_locks(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("ACCOUNTS__ACME__API_KEY", KEY)
    config = AccountsConfig.from_mapping(
        {"acme": {}}, destination="bigquery", shared_dataset="klaviyo"
    )
    with pytest.raises(PipelineConfigError, match="postgres and duckdb only, not bigquery"):
        run_account("acme", config)


def test_duckdb_shared_dataset_takes_turns_between_threads(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    with Emulator(seed=1) as acme, Emulator(seed=1) as beta:
        emulators = {"acme": acme, "beta": beta}
        for account_id, emu in emulators.items():
            monkeypatch.setenv(f"ACCOUNTS__{account_id.upper()}__API_KEY", emu.api_key)
        config = AccountsConfig.from_mapping(
            {account_id: {"base_url": emu.base_url} for account_id, emu in emulators.items()},
            shared_dataset="klaviyo",
            duckdb_dir=str(tmp_path),
            pipelines_dir=str(tmp_path / "pipelines"),
        )
        with ThreadPoolExecutor(2) as pool:
            reports = list(pool.map(lambda account_id: run_account(account_id, config), emulators))
        assert all(report.complete for report in reports)
        with duckdb.connect(str(tmp_path / "klaviyo_segments.duckdb"), read_only=True) as db:
            for table, key in TABLE_KEYS.items():
                columns = ", ".join(("account_id", *key))
                total, distinct = db.execute(
                    f"select count(*), count(distinct ({columns})) from klaviyo.{table}"
                ).fetchone()  # type: ignore[misc]
                assert total == distinct, table
            for account_id, emu in emulators.items():
                rows = db.execute(
                    "select segment_id, profile_id from klaviyo.segment_memberships "
                    f"where account_id = '{account_id}'"
                ).fetchall()
                assert set(rows) == set(truth(emu))


def test_the_command_loads_one_account_and_exits_75_with_work_left(
    project: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    from pipelines.accounts_cli import main
    from sources.klaviyo import settings as source_settings

    # pages of two members: the first checkpoint (after one page) always cuts a walk short
    monkeypatch.setattr(source_settings, "SEGMENT_PROFILES_PAGE_SIZE", 2)
    with Emulator(seed=1) as emu:
        write(
            project,
            f'[accounts.acme]\nbase_url = "{emu.base_url}"\ncheckpoint_pages = 1\n',
            f'[accounts.acme]\napi_key = "{emu.api_key}"\n',
        )
        load_accounts(reload=True)
        assert main(["list"]) == 0
        listed = capsys.readouterr().out
        assert "acme: pipeline klaviyo_segments__acme, dataset klaviyo_acme" in listed
        assert emu.api_key not in listed
        assert main(["run", "acme", "--max-minutes", "0.0001"]) == 75
        summary = json.loads(capsys.readouterr().out)
        assert summary["complete"] is False and summary["account"] == "acme"
        assert main(["run", "zeta"]) == 1
        assert "no account 'zeta' is declared" in capsys.readouterr().err
