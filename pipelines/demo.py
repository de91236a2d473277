"""``klaviyo-segments demo``: a full load and an incremental load against the bundled emulator."""

from __future__ import annotations

import shutil
from datetime import timedelta
from pathlib import Path
from typing import Any

import dlt

from klaviyo_emulator import Emulator

from .klaviyo_segments_pipeline import DUCKDB_FILE, RunReport, load_segments, make_pipeline
from .progress import print_summary

EXAMPLE_QUERIES = {
    "Members per segment (current)": """
        select s.name, count(m.profile_id) as members
        from segments s
        left join segment_memberships m on m.segment_id = s.id and m.is_member
        group by s.name order by members desc, s.name limit 10""",
    "Segments carrying each tag": """
        select t.name as tag, string_agg(s.name, ', ' order by s.name) as segments
        from tags t join segment_tags st on st.tag_id = t.id join segments s on s.id = st.segment_id
        group by t.name order by t.name""",
    "Five most recent joins": """
        select s.name as segment, p.email, m.joined_group_at
        from segment_memberships m
        join segments s on s.id = m.segment_id join profiles p on p.id = m.profile_id
        where m.is_member
        order by m.joined_group_at desc, p.email limit 5""",
    "Leaves seen by reconciliation, per segment": """
        select s.name, count(*) as left_members, max(m.left_at) as seen_at
        from segment_memberships m join segments s on s.id = m.segment_id
        where not m.is_member group by s.name order by s.name""",
}


def run_demo(folder: str) -> int:
    """Start the emulator, load twice, change memberships in between, and show the results."""
    root = Path(folder)
    shutil.rmtree(root, ignore_errors=True)
    root.mkdir(parents=True)
    database = root / DUCKDB_FILE
    pipeline = make_pipeline(
        duckdb_file=str(database),
        pipelines_dir=str(root / "pipelines"),
        pipeline_name="klaviyo_demo",
    )
    with Emulator(dataset="demo", seed=1) as emu:
        print(f"Emulator serving the 'demo' dataset at {emu.base_url}\n")
        options: dict[str, Any] = {"api_key": emu.api_key, "base_url": emu.base_url}

        print("Run 1: full load")
        _run_and_report(pipeline, emu, options)

        print("\nChanging the emulator: joins, leaves, a re-join, a new segment, a tag unlinked")
        print("  " + "\n  ".join(_mutate(emu)))

        print("\nRun 2: incremental (one cursor per segment), reconciling every segment")
        _run_and_report(pipeline, emu, {**options, "reconcile_segments": ["all"]})

    print(f"\nExample queries on {database}:")
    _print_queries(pipeline)
    return 0


def _run_and_report(pipeline: dlt.Pipeline, emu: Emulator, options: dict[str, Any]) -> RunReport:
    emu.stats.reset()
    report = load_segments(pipeline, **options)
    print_summary(report)
    by_operation = ", ".join(
        f"{name} {count}" for name, count in sorted(emu.stats.requests.items())
    )
    print(f"  emulator saw {emu.stats.total} requests: {by_operation}")
    return report


def _mutate(emu: Emulator) -> list[str]:
    segments = [sid for sid in emu.segment_ids() if emu.members(sid)]
    first, second = segments[0], segments[1]
    now = emu.now()
    for number in range(25):
        profile_id = emu.create_profile(email=f"new.member{number}@example.com", first_name="New")
        emu.add_member(first, profile_id, joined_group_at=now - timedelta(minutes=number))
    members = iter(emu.members(second))
    rejoiner = next(members)
    emu.add_member(second, rejoiner, joined_group_at=now)
    leavers = [next(members) for _ in range(10)]
    for profile_id in leavers:
        emu.remove_member(second, profile_id)
    fresh = emu.create_segment("Demo: created between runs")
    for profile_id in list(emu.members(first))[:40]:
        emu.add_member(fresh, profile_id, joined_group_at=now - timedelta(hours=1))
    changes = [
        f"25 new profiles joined segment {emu.segment(first)['name']!r}",
        f"profile {rejoiner} re-joined segment {emu.segment(second)['name']!r}",
        f"{len(leavers)} profiles left segment {emu.segment(second)['name']!r}",
        f"segment {emu.segment(fresh)['name']!r} created with 40 members",
    ]
    tagged = next((sid for sid in emu.segment_ids() if emu.segment_tags(sid)), None)
    if tagged is not None:
        emu.unlink_tag(tagged, sorted(emu.segment_tags(tagged))[0])
        changes.append(f"a tag was unlinked from segment {emu.segment(tagged)['name']!r}")
    return changes


def _print_queries(pipeline: dlt.Pipeline) -> None:
    with pipeline.sql_client() as client:
        for title, query in EXAMPLE_QUERIES.items():
            print(f"\n{title}:")
            for row in client.execute_sql(query) or []:
                print("  " + " | ".join(str(value) for value in row))
