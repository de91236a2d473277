"""Shared code of the reliability suite: warehouses to compare whole, and the ground truth."""

from __future__ import annotations

import itertools
import json
from collections import Counter
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import dlt
import pytest

from sources.klaviyo import ExtractionStats, klaviyo_source, settings

DATASET = "klaviyo"
MEMBERSHIP_KEY = ("segment_id", "profile_id")
TABLE_KEYS: dict[str, tuple[str, ...]] = {
    "segments": ("id",),
    "tags": ("id",),
    "segment_tags": ("segment_id", "tag_id"),
    "profiles": ("id",),
    "segment_memberships": MEMBERSHIP_KEY,
}
_names = itertools.count()

Snapshot = dict[str, Counter[tuple[Any, ...]]]


def utc(value: datetime) -> datetime:
    """Any aware datetime as `timezone.utc`, for comparisons with the emulator."""
    return value.astimezone(timezone.utc)


@dataclass
class Warehouse:
    """One pipeline and its DuckDB file; runs the source and reads whole tables back."""

    pipeline: dlt.Pipeline
    duckdb_file: Path
    last_stats: ExtractionStats = field(default_factory=ExtractionStats)

    def run(self, emu: Any, **options: Any) -> ExtractionStats:
        """One run against `emu`, as the CLI does it (pending packages are loaded first)."""
        self.last_stats = ExtractionStats()
        arguments = {
            "api_key": emu.api_key,
            "base_url": emu.base_url,
            "stats": self.last_stats,
            **options,
        }
        self.pipeline.run(klaviyo_source(**arguments))
        return self.last_stats

    def reattach(self) -> Warehouse:
        """The same pipeline as a new process would open it (state read from disk)."""
        self.pipeline = dlt.pipeline(
            pipeline_name=self.pipeline.pipeline_name,
            destination=dlt.destinations.duckdb(str(self.duckdb_file)),
            dataset_name=DATASET,
            pipelines_dir=self.pipeline.pipelines_dir,
        )
        return self

    def rows(self, sql: str) -> list[tuple[Any, ...]]:
        with self.pipeline.sql_client() as client:
            return [tuple(row) for row in client.execute_sql(sql)]

    def tables(self) -> list[str]:
        """Data tables that exist in the destination (dlt's own tables excluded)."""
        if not self.duckdb_file.exists():
            return []
        found = self.rows(
            "select table_name from information_schema.tables"
            f" where table_schema = '{DATASET}' and table_name not like '_dlt%'"
        )
        return sorted(name for (name,) in found)

    def columns(self, table: str) -> list[str]:
        found = self.rows(
            "select column_name from information_schema.columns"
            f" where table_schema = '{DATASET}' and table_name = '{table}'"
        )
        return sorted(name for (name,) in found if not name.startswith("_dlt_"))

    def snapshot(self) -> Snapshot:
        """Every data table as a multiset of rows (all columns but dlt's, JSON normalised)."""
        result: Snapshot = {}
        with self.pipeline.sql_client() as client:
            for table in self.tables():
                names = self.columns(table)
                select = ", ".join(f'"{name}"' for name in names)
                rows = client.execute_sql(f'select {select} from {DATASET}."{table}"')
                result[table] = Counter(tuple(_normal(value) for value in row) for row in rows)
        return result

    def duplicate_keys(self) -> dict[str, int]:
        """Rows sharing a primary key, per table; empty when every key is unique."""
        found = {}
        for table in self.tables():
            key = ", ".join(TABLE_KEYS.get(table, ()))
            if not key:
                continue
            extra = self.rows(f"select count(*) - count(distinct ({key})) from {DATASET}.{table}")[
                0
            ][0]
            if extra:
                found[table] = extra
        return found

    def memberships(self) -> dict[tuple[str, str], datetime]:
        """`(segment_id, profile_id) -> joined_group_at` of every row."""
        if "segment_memberships" not in self.tables():
            return {}
        rows = self.rows("select segment_id, profile_id, joined_group_at from segment_memberships")
        return {(s, p): utc(j) for s, p, j in rows}

    def current_memberships(self) -> dict[tuple[str, str], datetime] | None:
        """Rows flagged `is_member`, when the table has that column; else None."""
        if "is_member" not in self.columns("segment_memberships"):
            return None
        rows = self.rows(
            "select segment_id, profile_id, joined_group_at from segment_memberships"
            " where is_member"
        )
        return {(s, p): utc(j) for s, p, j in rows}

    def cursors(self) -> dict[str, dict[str, str]]:
        """The per-segment cursors of every table that keeps them, from the local state."""
        resources = self.pipeline.state.get("sources", {}).get("klaviyo", {}).get("resources", {})
        return {
            table: dict(state["cursors"])
            for table, state in resources.items()
            if isinstance(state, dict) and "cursors" in state
        }


def _normal(value: Any) -> Any:
    if isinstance(value, datetime):
        return utc(value)
    if isinstance(value, str) and value[:1] in "{[":
        try:
            return json.dumps(json.loads(value), sort_keys=True)
        except ValueError:
            return value
    return value


def truth_memberships(emu: Any) -> dict[tuple[str, str], datetime]:
    """The emulator's members of every existing segment, keyed like the table."""
    return {
        (segment_id, profile_id): utc(joined)
        for segment_id in emu.segment_ids()
        for profile_id, joined in emu.members(segment_id).items()
    }


def truth_segment_tags(emu: Any) -> set[tuple[str, str]]:
    return {
        (segment_id, tag_id)
        for segment_id in emu.segment_ids()
        for tag_id in emu.segment_tags(segment_id)
    }


def membership_mismatches(warehouse: Warehouse, emu: Any) -> list[str]:
    """What the membership table gets wrong about the emulator, as far as the source promises.

    Every current member must be there with its most recent `joined_group_at`. When the table
    carries `is_member`, the rows flagged as members must be exactly the current members.
    """
    truth = truth_memberships(emu)
    loaded = warehouse.memberships()
    problems = [
        f"{key} joined {joined} but loaded {loaded.get(key)}"
        for key, joined in sorted(truth.items())
        if loaded.get(key) != joined
    ]
    current = warehouse.current_memberships()
    if current is not None:
        live = set(emu.segment_ids())
        stale = sorted(k for k in current if k not in truth and k[0] in live)
        problems.extend(f"{key} flagged is_member but left" for key in stale)
    return problems


def add_joins(emu: Any, count: int, tag: str) -> None:
    """`count` new profiles joining segments, plus re-joins of existing members."""
    segments = [s for s in emu.segment_ids() if emu.members(s)]
    for number in range(count):
        profile = emu.create_profile(email=f"{tag}-{number}@example.com")
        emu.add_member(segments[number % len(segments)], profile)
    for segment_id in segments[:count]:
        emu.add_member(segment_id, next(iter(emu.members(segment_id))))


@pytest.fixture
def warehouse_factory(pipelines_dir: str, tmp_path: Path) -> Callable[[str], Warehouse]:
    """Makes warehouses, each with its own pipeline name and DuckDB file."""

    def make(label: str = "w") -> Warehouse:
        name = f"klaviyo_{label}_{next(_names)}"
        duckdb_file = tmp_path / f"{name}.duckdb"
        pipeline = dlt.pipeline(
            pipeline_name=name,
            destination=dlt.destinations.duckdb(str(duckdb_file)),
            dataset_name=DATASET,
            pipelines_dir=pipelines_dir,
        )
        return Warehouse(pipeline, duckdb_file)

    return make


@pytest.fixture
def small_pages(monkeypatch: pytest.MonkeyPatch) -> Iterator[int]:
    """Five profiles per page, small batches and small dlt items, so a walk spans many pages,
    batches and items."""
    monkeypatch.setattr(settings, "SEGMENT_PROFILES_PAGE_SIZE", 5)
    monkeypatch.setattr(settings, "MEMBERSHIP_BATCH_ROWS", 10)
    monkeypatch.setattr(settings, "ARROW_ITEM_ROWS", 25)
    yield 5
