"""A dataset two accounts share on real Postgres: concurrent loads lose and duplicate nothing."""

from __future__ import annotations

import random
import threading
from concurrent.futures import ThreadPoolExecutor

import pytest

from klaviyo_emulator import Emulator
from pipelines.accounts import run_account
from pipelines.errors import PipelineBusyError

from .conftest import TABLE_KEYS, Accounts, change, truth

pytestmark = pytest.mark.postgres


def test_two_accounts_loading_at_once_for_five_rounds(accounts: Accounts) -> None:
    # Two accounts generated from the same seed: every segment and profile id repeats.
    twin = accounts.emulators.pop("gamma")
    twin.stop()
    with Emulator(seed=1) as twin_of_acme:
        accounts.emulators["beta"] = twin_of_acme
        accounts.monkeypatch.setenv("ACCOUNTS__BETA__API_KEY", twin_of_acme.api_key)
        config = accounts.config(shared=True, reconcile_every_hours=0)
        dataset = config.shared_dataset
        assert dataset is not None
        rng = random.Random(3)
        start = threading.Barrier(2)

        def load(account_id: str) -> None:
            start.wait()
            run_account(account_id, config)

        for round_number in range(5):
            if round_number:
                for emu in accounts.emulators.values():
                    change(emu, rng)
            if round_number == 3:
                accounts.forget_local_state()
            with ThreadPoolExecutor(2) as pool:
                for future in [pool.submit(load, a) for a in ("acme", "beta")]:
                    future.result()

        for table, key in TABLE_KEYS.items():
            columns = ", ".join(("account_id", *key))
            total, distinct, unowned = accounts.warehouse.rows(
                f"select count(*), count(distinct ({columns})), count(*) - count(account_id) "
                f'from "{dataset}".{table}'
            )[0]
            assert total == distinct, table
            assert unowned == 0, table
        for account_id, emu in accounts.emulators.items():
            assert accounts.warehouse.memberships(dataset, account_id) == truth(emu)
            stays = accounts.warehouse.rows(
                f'select segment_id, profile_id, joined_group_at from "{dataset}".'
                f"segment_membership_history where account_id = '{account_id}' and left_at is null"
            )
            assert {(s, p, j) for s, p, j in stays} == {
                (s, p, j) for (s, p), j in truth(emu).items()
            }
        staging = accounts.warehouse.rows(
            "select schema_name from information_schema.schemata "
            f"where schema_name like '{dataset}_staging%' order by 1"
        )
        assert [name for (name,) in staging] == [
            f"{dataset}_staging_acme",
            f"{dataset}_staging_beta",
        ]


def test_a_second_run_of_an_account_on_another_worker_stops_at_once(
    accounts: Accounts,
) -> None:
    config = accounts.config()
    accounts.emulators["acme"].set_latency(0.4)
    elsewhere = type(config)(
        **{**config.__dict__, "pipelines_dir": str(accounts.pipelines_dir) + "2"}
    )
    with ThreadPoolExecutor(1) as pool:
        first = pool.submit(run_account, "acme", config)
        while not accounts.emulators["acme"].stats.total:
            threading.Event().wait(0.05)
        with pytest.raises(PipelineBusyError, match="account acme is being loaded by another run"):
            run_account("acme", elsewhere)
        assert first.result().complete
    assert accounts.warehouse.memberships(accounts.dataset("acme")) == truth(
        accounts.emulators["acme"]
    )
