"""Segments walked in parallel load the same rows as one at a time."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import dlt

from .conftest import Loader, Truth


def test_parallel_walk_equals_serial_walk(
    duckdb_loader: Loader, truth: Truth, emu: Any, pipelines_dir: str, tmp_path: Path
) -> None:
    # a little latency so that requests overlap
    emu.set_latency(0.05)
    serial = Loader(
        emu,
        dlt.pipeline(
            pipeline_name="klaviyo_serial",
            destination=dlt.destinations.duckdb(str(tmp_path / "serial.duckdb")),
            dataset_name="klaviyo",
            pipelines_dir=pipelines_dir,
        ),
    )

    serial.run(max_workers=1)
    assert emu.stats.max_in_flight == 1
    emu.stats.reset()
    stats = duckdb_loader.run(max_workers=4)

    assert emu.stats.max_in_flight > 1
    assert duckdb_loader.snapshot() == serial.snapshot()
    assert duckdb_loader.memberships() == truth.memberships()
    assert stats.segments_done == len(emu.segment_ids())


def test_parallel_walk_with_small_pages_and_faults(
    duckdb_loader: Loader, truth: Truth, emu: Any, small_pages: int, fast_retries: None
) -> None:
    """Many pages per segment interleave on the queue; a failing page is retried in place."""
    emu.set_latency(0.01)
    emu.faults.script(path_contains="/profiles", count=4, kind="503")

    stats = duckdb_loader.run(max_workers=3)

    assert duckdb_loader.memberships() == truth.memberships()
    assert stats.pages == emu.stats.requests["get_segment_profiles"] - 4
    assert stats.retries == 4


def test_shared_limiter_avoids_429s_at_real_limits(
    duckdb_loader: Loader, truth: Truth, emu: Any, monkeypatch: Any
) -> None:
    """One profile per page: more requests than the 75/s burst allows, and no 429 storm."""
    from sources.klaviyo import settings

    monkeypatch.setattr(settings, "SEGMENT_PROFILES_PAGE_SIZE", 1)
    emu.set_rate_limits("real")

    stats = duckdb_loader.run(max_workers=4)

    assert emu.stats.requests["get_segment_profiles"] > 75
    assert emu.stats.throttled == stats.throttled == 0
    assert stats.wait_seconds > 0
    assert duckdb_loader.memberships() == truth.memberships()
