"""Shared code of the source suites: run the source into DuckDB (or Postgres) and read tables back."""

from __future__ import annotations

import itertools
import json
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import dlt
import pytest

from pipelines.duckdb_destination import duckdb_key_dedup
from sources.klaviyo import ExtractionStats, klaviyo_source, settings

TABLES = (
    "segments",
    "tags",
    "segment_tags",
    "profiles",
    "segment_memberships",
    "segment_membership_history",
)
_names = itertools.count()


def utc(value: datetime) -> datetime:
    """Normalises any aware datetime to `timezone.utc` for comparisons."""
    return value.astimezone(timezone.utc)


@dataclass
class Loader:
    """One pipeline per test, and the emulator it reads from."""

    emu: Any
    pipeline: dlt.Pipeline
    last_stats: ExtractionStats = field(default_factory=ExtractionStats)
    _reading: Any = field(default=None, repr=False)

    def run(self, resources: tuple[str, ...] = (), **options: Any) -> ExtractionStats:
        """Runs the source once; options override the emulator's URL and key."""
        self.last_stats = ExtractionStats()
        arguments = {
            "api_key": self.emu.api_key,
            "base_url": self.emu.base_url,
            "stats": self.last_stats,
            **options,
        }
        source = klaviyo_source(**arguments)
        if resources:
            source = source.with_resources(*resources)
        self.pipeline.run(source)
        return self.last_stats

    def rows(self, sql: str) -> list[tuple[Any, ...]]:
        if self._reading is not None:
            return [tuple(row) for row in self._reading.execute_sql(sql)]
        with self.pipeline.sql_client() as client:
            return [tuple(row) for row in client.execute_sql(sql)]

    @contextmanager
    def reading(self) -> Iterator[None]:
        """One connection for every query inside the block."""
        with self.pipeline.sql_client() as client:
            self._reading = client
            try:
                yield
            finally:
                self._reading = None

    def table_names(self) -> set[str]:
        schema = self.pipeline.default_schema
        return {name for name in schema.data_table_names() if schema.tables[name].get("columns")}

    def memberships(self) -> set[tuple[str, str, datetime]]:
        """Current members: rows of `segment_memberships` with `is_member` true."""
        rows = self.rows(
            "select segment_id, profile_id, joined_group_at from segment_memberships"
            " where is_member"
        )
        return {(s, p, utc(j)) for s, p, j in rows}

    def segment_tags(self) -> set[tuple[str, str]]:
        return set(self.rows("select segment_id, tag_id from segment_tags"))

    def left(self) -> set[tuple[str, str, datetime]]:
        """(segment, profile, left_at) of memberships that ended."""
        rows = self.rows(
            "select segment_id, profile_id, left_at from segment_memberships where not is_member"
        )
        return {(s, p, utc(left)) for s, p, left in rows}

    def stays(self) -> set[tuple[str, str, datetime, datetime | None]]:
        """Every row of the history: (segment, profile, joined_group_at, left_at)."""
        rows = self.rows(
            "select segment_id, profile_id, joined_group_at, left_at"
            " from segment_membership_history"
        )
        return {(s, p, utc(j), utc(left) if left else None) for s, p, j, left in rows}

    def members_on(self, moment: datetime) -> set[tuple[str, str]]:
        """Who was in which segment at `moment`, answered from the history table."""
        at = f"timestamp with time zone '{moment.isoformat()}'"
        return set(
            self.rows(
                "select distinct segment_id, profile_id from segment_membership_history"
                f" where joined_group_at <= {at} and (left_at is null or left_at > {at})"
            )
        )

    def deleted_segments(self) -> dict[str, datetime]:
        rows = self.rows("select id, deleted_at from segments where deleted_at is not null")
        return {segment_id: utc(deleted_at) for segment_id, deleted_at in rows}

    def snapshot(self) -> dict[str, set[tuple[Any, ...]]]:
        """Every table's rows without dlt's columns, for comparing two destinations."""
        return {
            "segments": {
                (i, n, json.dumps(_json(d), sort_keys=True), utc(c), utc(u), a, p, s)
                for i, n, d, c, u, a, p, s in self.rows(
                    "select id, name, definition, created, updated, is_active, is_processing,"
                    " is_starred from segments"
                )
            },
            "tags": set(self.rows("select id, name from tags")),
            "segment_tags": self.segment_tags(),
            "profiles": {
                (i, e, json.dumps(_json(p), sort_keys=True), la)
                for i, e, p, la in self.rows(
                    "select id, email, properties, location_latitude from profiles"
                )
            },
            "segment_memberships": self.memberships(),
            "segment_membership_history": self.stays(),
        }


def _json(value: Any) -> Any:
    return json.loads(value) if isinstance(value, str) else value


@dataclass
class Truth:
    """What the emulator knows right now, shaped like the tables."""

    emu: Any

    def members(self) -> set[tuple[str, str]]:
        return {(segment_id, profile_id) for segment_id, profile_id, _ in self.memberships()}

    def memberships(self) -> set[tuple[str, str, datetime]]:
        return {
            (segment_id, profile_id, utc(joined))
            for segment_id in self.emu.segment_ids()
            for profile_id, joined in self.emu.members(segment_id).items()
        }

    def segment_tags(self) -> set[tuple[str, str]]:
        return {
            (segment_id, tag_id)
            for segment_id in self.emu.segment_ids()
            for tag_id in self.emu.segment_tags(segment_id)
        }

    def linked_tags(self) -> set[tuple[str, str]]:
        return {(tag_id, self.emu.tag(tag_id)["name"]) for _, tag_id in self.segment_tags()}


@pytest.fixture
def duckdb_loader(emu: Any, pipelines_dir: str, tmp_path: Path) -> Loader:
    """A Loader writing to a DuckDB file of its own."""
    pipeline = dlt.pipeline(
        pipeline_name=f"klaviyo_test_{next(_names)}",
        destination=duckdb_key_dedup(str(tmp_path / "warehouse.duckdb")),
        dataset_name="klaviyo",
        pipelines_dir=pipelines_dir,
    )
    return Loader(emu, pipeline)


@pytest.fixture
def postgres_loader(
    emu: Any, pipelines_dir: str, postgres_url: str, dataset_name: str
) -> Iterator[Loader]:
    """A Loader writing to a dataset of its own in the real Postgres, dropped afterwards."""
    pipeline = dlt.pipeline(
        pipeline_name=f"klaviyo_postgres_{next(_names)}",
        destination=dlt.destinations.postgres(postgres_url),
        dataset_name=dataset_name,
        pipelines_dir=pipelines_dir,
    )
    yield Loader(emu, pipeline)
    with pipeline.sql_client() as client:
        for schema in (dataset_name, f"{dataset_name}_staging"):
            client.execute_sql(f'DROP SCHEMA IF EXISTS "{schema}" CASCADE')


@pytest.fixture
def truth(emu: Any) -> Truth:
    return Truth(emu)


@pytest.fixture
def emulator_clock(emu: Any, monkeypatch: pytest.MonkeyPatch) -> Any:
    """The source reads the emulator's clock, so a test moves time on without sleeping.

    Leaves are stamped with the source's clock and joins with the emulator's: sharing one
    clock keeps them in order when the test calls `emu.advance_clock`.
    """
    from sources.klaviyo import dates

    monkeypatch.setattr(dates, "utc_now", emu.now)
    return emu.now


@pytest.fixture
def small_pages(monkeypatch: pytest.MonkeyPatch) -> Iterator[int]:
    """Three profiles per page, so ties and cursors cross page boundaries."""
    monkeypatch.setattr(settings, "SEGMENT_PROFILES_PAGE_SIZE", 3)
    yield 3
