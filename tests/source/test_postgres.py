"""The same runs on Postgres load the same rows as on DuckDB."""

from __future__ import annotations

from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest

from .conftest import Loader, Truth
from .scenario import Timeline, every_kind_of_change
from .test_odd_values import (
    STORED_ATTRIBUTES,
    WIDE,
    add_odd_profile,
    fix_odd_profile,
    stored_profile,
    wide_as_text,
)

pytestmark = pytest.mark.postgres


def _mutate(emu: Any) -> None:
    first, second = emu.segment_ids()[:2]
    profile = emu.create_profile(email="pg@example.com", properties={"plan": "pro", "n": [1, 2]})
    emu.add_member(first, profile)
    emu.add_member(second, profile, joined_group_at=emu.now() - timedelta(minutes=5))
    emu.unlink_tag(first, sorted(emu.segment_tags(first))[0])
    emu.rename_segment(second, "Renamed on both")


def test_postgres_matches_duckdb(
    postgres_loader: Loader, duckdb_loader: Loader, truth: Truth, emu: Any, tmp_path: Path
) -> None:
    postgres_loader.run()
    duckdb_loader.run()
    assert postgres_loader.snapshot() == duckdb_loader.snapshot()

    _mutate(emu)
    postgres_loader.run()
    duckdb_loader.run()

    snapshot = postgres_loader.snapshot()
    assert snapshot == duckdb_loader.snapshot()
    assert snapshot["segment_memberships"] == truth.memberships()
    assert snapshot["segment_tags"] == truth.segment_tags()
    columns = dict(
        postgres_loader.rows(
            "select column_name, data_type from information_schema.columns"
            f" where table_schema = '{postgres_loader.pipeline.dataset_name}'"
            " and table_name = 'profiles'"
        )
    )
    assert columns["properties"] == "jsonb"
    assert columns["created"] == "timestamp with time zone"
    assert postgres_loader.rows(
        "select properties->>'plan' from profiles where email = 'pg@example.com'"
    ) == [("pro",)]


def test_postgres_follows_a_sequence_of_changes(
    postgres_loader: Loader, truth: Truth, emu: Any, emulator_clock: Any
) -> None:
    """Leaves, re-joins, an emptied and a deleted segment, tag changes: reconciled on Postgres,
    and the history answers who was in each segment at every earlier run."""
    for segment_id in emu.segment_ids():
        emu.set_segment_flags(segment_id, is_processing=False)
    timeline = Timeline(postgres_loader, truth)

    for step in range(3):
        if step:
            every_kind_of_change(emu, step, timeline.deleted)
        stats = timeline.run_and_check()

    timeline.check_history()
    assert stats.segments_deleted == sorted(timeline.deleted)
    assert postgres_loader.left()


def test_odd_values_load_into_postgres_and_duckdb_alike(
    postgres_loader: Loader, duckdb_loader: Loader, emu: Any, fast_retries: None
) -> None:
    """NULs, lone surrogates, 200 kB strings, integers beyond 64 bits and nested nulls: stored
    as documented in both, and the profile fixed in the account loads on the next run."""
    profile_id = add_odd_profile(emu)
    for loader in (postgres_loader, duckdb_loader):
        assert loader.run().retries == 0
        assert stored_profile(loader, profile_id) == STORED_ATTRIBUTES
    columns = dict(
        postgres_loader.rows(
            "select column_name, data_type from information_schema.columns"
            f" where table_schema = '{postgres_loader.pipeline.dataset_name}'"
            " and table_name = 'profiles'"
        )
    )
    assert columns["properties"] == "jsonb"
    assert wide_as_text(postgres_loader, profile_id, "properties->>'wide'") == str(WIDE)
    assert wide_as_text(duckdb_loader, profile_id, "properties->>'$.wide'") == str(WIDE)
    assert postgres_loader.rows(
        f"select jsonb_typeof(properties->'wide') from profiles where id = '{profile_id}'"
    ) == [("number",)]

    fix_odd_profile(emu, profile_id)
    for loader in (postgres_loader, duckdb_loader):
        loader.run()
        fixed = stored_profile(loader, profile_id)
        assert fixed["first_name"] == "Anne" and fixed["location_city"] == "Boston"
        assert fixed["properties"] == {"wide": 1, "plan": "pro"}
    assert postgres_loader.snapshot() == duckdb_loader.snapshot()
