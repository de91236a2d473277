"""A project folder to run `klaviyo-segments` in, and the tables it loads, read back whole."""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import duckdb
import psycopg2
import pytest

from klaviyo_emulator import Emulator
from pipelines.cli import main

ERROR_PREFIX = "klaviyo-segments: error: "
DATASET = "klaviyo"
DUCKDB_FILE = "klaviyo_segments.duckdb"
Membership = tuple[str, str]


def utc(value: datetime) -> datetime:
    """Any aware datetime as `timezone.utc`, for comparisons with the emulator."""
    return value.astimezone(timezone.utc)


@dataclass
class Tables:
    """The loaded dataset, in a DuckDB file or a Postgres schema; `{ds}` in SQL names it."""

    dataset: str = DATASET
    duckdb_file: Path | None = None
    postgres_url: str | None = None

    def rows(self, sql: str) -> list[tuple[Any, ...]]:
        query = sql.replace("{ds}", f'"{self.dataset}"')
        if self.postgres_url:
            with _postgres(self.postgres_url) as cursor:
                cursor.execute(query)
                return [tuple(row) for row in cursor.fetchall()]
        assert self.duckdb_file is not None
        with duckdb.connect(str(self.duckdb_file), read_only=True) as connection:
            return [tuple(row) for row in connection.execute(query).fetchall()]

    def execute(self, sql: str) -> None:
        """A change made by hand, as a user would in the warehouse."""
        query = sql.replace("{ds}", f'"{self.dataset}"')
        if self.postgres_url:
            with _postgres(self.postgres_url) as cursor:
                cursor.execute(query)
            return
        assert self.duckdb_file is not None
        with duckdb.connect(str(self.duckdb_file)) as connection:
            connection.execute(query)

    def names(self) -> set[str]:
        """Data tables of the dataset (dlt's own tables left out)."""
        if self.duckdb_file is not None and not self.duckdb_file.exists():
            return set()
        found = self.rows(
            "select table_name from information_schema.tables"
            f" where table_schema = '{self.dataset}' and table_name not like '_dlt%'"
        )
        return {name for (name,) in found}

    def ids(self, table: str) -> set[str]:
        return {value for (value,) in self.rows(f"select id from {{ds}}.{table}")}

    def segment_tags(self) -> set[tuple[str, str]]:
        return set(self.rows("select segment_id, tag_id from {ds}.segment_tags"))

    def memberships(self) -> dict[Membership, tuple[datetime, bool]]:
        """`(segment_id, profile_id) -> (joined_group_at, is_member)` of every row."""
        rows = self.rows(
            "select segment_id, profile_id, joined_group_at, is_member from {ds}.segment_memberships"
        )
        return {(s, p): (utc(j), bool(m)) for s, p, j, m in rows}

    def current_memberships(self) -> dict[Membership, datetime]:
        return {key: joined for key, (joined, member) in self.memberships().items() if member}

    def stays(self) -> dict[tuple[str, str, datetime], datetime | None]:
        """`(segment_id, profile_id, joined_group_at) -> left_at` of every stay in the history."""
        rows = self.rows(
            "select segment_id, profile_id, joined_group_at, left_at"
            " from {ds}.segment_membership_history"
        )
        return {(s, p, utc(j)): (utc(left) if left else None) for s, p, j, left in rows}

    def assert_matches_account(self, emu: Emulator) -> None:
        """Every table says what the emulator's account holds now."""
        truth = truth_memberships(emu)
        assert self.ids("segments") == set(emu.segment_ids())
        assert self.ids("tags") == set(emu.tag_ids())
        assert self.segment_tags() == truth_segment_tags(emu)
        assert self.current_memberships() == truth
        assert self.ids("profiles") == {profile for _, profile in truth}
        open_stays = {(s, p, j) for (s, p, j), left in self.stays().items() if left is None}
        assert open_stays == {(s, p, j) for (s, p), j in truth.items()}


@contextmanager
def _postgres(url: str) -> Iterator[Any]:
    """A cursor in autocommit mode; the connection is closed after the block."""
    # The server trusts local connections; psycopg2 needs no password in the URL.
    connection = psycopg2.connect(url.replace("postgres:unused@", "postgres@"))
    connection.autocommit = True
    try:
        with connection.cursor() as cursor:
            yield cursor
    finally:
        connection.close()


def truth_memberships(emu: Emulator) -> dict[Membership, datetime]:
    """The emulator's current members of every segment, keyed like the table."""
    return {
        (segment_id, profile_id): utc(joined)
        for segment_id in emu.segment_ids()
        for profile_id, joined in emu.members(segment_id).items()
    }


def truth_segment_tags(emu: Emulator) -> set[tuple[str, str]]:
    return {(s, t) for s in emu.segment_ids() for t in emu.segment_tags(s)}


def segment_with_members(emu: Emulator, *, active: bool = True, skip: int = 0) -> str:
    """A segment with members that Klaviyo has finished computing; the larger, the earlier."""
    candidates = sorted(
        (
            s
            for s in emu.segment_ids()
            if emu.members(s)
            and emu.segment(s)["is_active"] is active
            and not emu.segment(s)["is_processing"]
        ),
        key=lambda s: (-len(emu.members(s)), s),
    )
    return candidates[skip]


@dataclass
class Project:
    """A project folder: the CLI runs with it as the current directory, as from a shell."""

    root: Path
    env: dict[str, str] = field(default_factory=dict)

    @property
    def tables(self) -> Tables:
        """The default dataset in the default DuckDB file of the folder."""
        return Tables(duckdb_file=self.root / DUCKDB_FILE)

    def environment(self) -> dict[str, str]:
        inherited = {
            k: v
            for k, v in os.environ.items()
            if not k.startswith(("SOURCES__", "DESTINATION__", "RUNTIME__LOG"))
        }
        return {**inherited, **self.env}

    def run(self, *arguments: str, timeout: float = 180) -> subprocess.CompletedProcess[str]:
        """`klaviyo-segments run ...` in a process of its own."""
        return subprocess.run(
            [*command(), "run", *arguments],
            cwd=self.root,
            env=self.environment(),
            capture_output=True,
            text=True,
            timeout=timeout,
        )

    def start(self, *arguments: str) -> subprocess.Popen[str]:
        """`klaviyo-segments run ...` in a process of its own, left running."""
        return subprocess.Popen(
            [*command(), "run", *arguments],
            cwd=self.root,
            env=self.environment(),
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )

    def main(self, *arguments: str) -> int:
        """`klaviyo-segments run --quiet ...` in this process (the fixture set cwd and env)."""
        return main(["run", "--quiet", *arguments])


def command() -> list[str]:
    return [sys.executable, "-m", "pipelines.cli"]


@pytest.fixture
def project(emu: Emulator, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Project:
    """A project folder with the emulator's key and URL in the environment, as the cwd."""
    root = tmp_path / "project"
    root.mkdir()
    env = {"SOURCES__KLAVIYO__API_KEY": emu.api_key, "SOURCES__KLAVIYO__BASE_URL": emu.base_url}
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    monkeypatch.chdir(root)
    return Project(root, env)


@pytest.fixture
def postgres_dataset(postgres_url: str, dataset_name: str) -> Iterator[Tables]:
    """A Postgres schema of its own, dropped (with dlt's staging schema) after the test."""
    yield Tables(dataset=dataset_name, postgres_url=postgres_url)
    with _postgres(postgres_url) as cursor:
        for schema in (dataset_name, f"{dataset_name}_staging"):
            cursor.execute(f'DROP SCHEMA IF EXISTS "{schema}" CASCADE')
