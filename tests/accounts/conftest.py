"""Many accounts: emulators of their own, keys in the environment, datasets in real Postgres."""

from __future__ import annotations

import random
import shutil
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import psycopg2
import pytest

from klaviyo_emulator import Emulator
from pipelines.accounts import AccountsConfig

Key = tuple[str, str]
TABLE_KEYS = {
    "segments": ("id",),
    "tags": ("id",),
    "segment_tags": ("segment_id", "tag_id"),
    "profiles": ("id",),
    "segment_memberships": ("segment_id", "profile_id"),
    "segment_membership_history": ("segment_id", "profile_id", "joined_group_at"),
}


@dataclass
class Warehouse:
    """Postgres schemas of one test, dropped afterwards."""

    url: str
    prefix: str
    created: list[str] = field(default_factory=list)

    def rows(self, sql: str) -> list[tuple[Any, ...]]:
        return self._run(sql, fetch=True)

    def execute(self, sql: str) -> None:
        self._run(sql, fetch=False)

    def memberships(self, dataset: str, account_id: str | None = None) -> dict[Key, datetime]:
        """Current members as loaded: `(segment_id, profile_id) -> joined_group_at`."""
        where = f"where account_id = '{account_id}' and" if account_id else "where"
        rows = self.rows(
            f'select segment_id, profile_id, joined_group_at from "{dataset}".segment_memberships '
            f"{where} (is_member is null or is_member)"
        )
        return {(s, p): j.astimezone(timezone.utc) for s, p, j in rows}

    def drop(self) -> None:
        schemas = self.rows(
            "select schema_name from information_schema.schemata "
            f"where schema_name like '{self.prefix}%'"
        )
        for (schema,) in schemas:
            self.execute(f'DROP SCHEMA IF EXISTS "{schema}" CASCADE')

    def _run(self, sql: str, fetch: bool) -> list[tuple[Any, ...]]:
        connection = psycopg2.connect(self.url.replace("postgres:unused@", "postgres@"))
        connection.autocommit = True
        try:
            with connection.cursor() as cursor:
                cursor.execute(sql)
                return [tuple(row) for row in cursor.fetchall()] if fetch else []
        finally:
            connection.close()


@dataclass
class Accounts:
    """Emulated accounts, their keys in the environment, and an `AccountsConfig` for them."""

    emulators: dict[str, Emulator]
    warehouse: Warehouse
    pipelines_dir: Path
    keys: dict[str, str]
    monkeypatch: pytest.MonkeyPatch

    def config(self, shared: bool = False, **account_options: Any) -> AccountsConfig:
        accounts = {}
        for account_id, emu in self.emulators.items():
            table: dict[str, Any] = {"base_url": emu.base_url, **account_options}
            if not shared:
                table["dataset"] = f"{self.warehouse.prefix}{account_id}"
            accounts[account_id] = table
        return AccountsConfig.from_mapping(
            accounts,
            destination="postgres",
            shared_dataset=f"{self.warehouse.prefix}shared" if shared else None,
            pipelines_dir=str(self.pipelines_dir),
        )

    def dataset(self, account_id: str) -> str:
        return f"{self.warehouse.prefix}{account_id}"

    def revoke(self, account_id: str) -> None:
        """The key stops working, as when it is deleted in Klaviyo."""
        emu = self.emulators[account_id]
        emu._account.keys.pop(self.keys[account_id])

    def forget_local_state(self) -> None:
        """What a fresh worker has: no pipelines folder at all."""
        shutil.rmtree(self.pipelines_dir, ignore_errors=True)

    def profile_pages(self, account_id: str) -> int:
        return int(self.emulators[account_id].stats.requests.get("get_segment_profiles", 0))


def truth(emu: Emulator) -> dict[Key, datetime]:
    """`(segment_id, profile_id) -> joined_group_at` of every current member."""
    return {
        (segment_id, profile_id): joined.astimezone(timezone.utc)
        for segment_id in emu.segment_ids()
        for profile_id, joined in emu.members(segment_id).items()
    }


def change(emu: Emulator, rng: random.Random, leaves: bool = True) -> None:
    """New joins (a new profile among them) and, unless told not to, a few leaves.

    Only in segments Klaviyo keeps up to date (active, computed): those are reconciled.
    """
    segments = [
        s
        for s in sorted(emu.segment_ids())
        if emu.members(s) and emu.segment(s)["is_active"] and not emu.segment(s)["is_processing"]
    ]
    for segment in rng.sample(segments, 2):
        members = sorted(emu.members(segment))
        outsiders = sorted(set(emu.profile_ids()) - set(members))
        emu.add_member(segment, rng.choice(outsiders))
        emu.add_member(segment, emu.create_profile(email=f"p{rng.random()}@example.com"))
        if leaves:
            emu.remove_member(segment, rng.choice(members))


@pytest.fixture
def warehouse(postgres_url: str) -> Iterator[Warehouse]:
    house = Warehouse(postgres_url, f"kacc_{uuid.uuid4().hex[:8]}_")
    yield house
    house.drop()


@pytest.fixture
def accounts(
    warehouse: Warehouse, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, postgres_url: str
) -> Iterator[Accounts]:
    """Three accounts (`acme`, `beta`, `gamma`), each an emulator on its own port."""
    monkeypatch.setenv("DESTINATION__POSTGRES__CREDENTIALS", postgres_url)
    with Emulator(seed=1) as acme, Emulator(seed=2) as beta, Emulator(seed=3) as gamma:
        emulators = {"acme": acme, "beta": beta, "gamma": gamma}
        keys = {account_id: emu.api_key for account_id, emu in emulators.items()}
        for account_id, key in keys.items():
            monkeypatch.setenv(f"ACCOUNTS__{account_id.upper()}__API_KEY", key)
        yield Accounts(emulators, warehouse, tmp_path / "pipelines", keys, monkeypatch)


@pytest.fixture
def project(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Path]:
    """A project folder as the cwd, dlt reading its `.dlt/`."""
    from dlt.common.configuration.container import Container
    from dlt.common.configuration.specs.pluggable_run_context import PluggableRunContext

    root = tmp_path / "project"
    (root / ".dlt").mkdir(parents=True)
    monkeypatch.chdir(root)
    context = Container()[PluggableRunContext]
    previous = context.context.run_dir
    context.reload(str(root))
    yield root
    context.reload(previous)


@pytest.fixture
def project_config(project: Path) -> Any:
    """Writes `.dlt/config.toml` of the project folder declaring some of the accounts."""
    from dlt.common.configuration.container import Container
    from dlt.common.configuration.specs.pluggable_run_context import PluggableRunContext

    def declare(accounts: Accounts, account_ids: list[str]) -> Any:
        def write(ids: list[str]) -> None:
            lines = [
                "[klaviyo_accounts]",
                'destination = "postgres"',
                f'pipelines_dir = "{accounts.pipelines_dir}"',
            ]
            for account_id in ids:
                lines += [
                    f"[accounts.{account_id}]",
                    f'base_url = "{accounts.emulators[account_id].base_url}"',
                    f'dataset = "{accounts.dataset(account_id)}"',
                ]
            (project / ".dlt" / "config.toml").write_text("\n".join(lines) + "\n")

        write(account_ids)
        Container()[PluggableRunContext].reload(str(project))
        return write

    return declare
