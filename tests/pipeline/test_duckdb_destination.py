"""The pipeline's DuckDB destination: dlt's, whose merge deduplicates by key and merges a
table's only load file in its copy job."""

from __future__ import annotations

import itertools
from collections.abc import Iterator
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import dlt
import pyarrow as pa
import pytest
from dlt.common.schema.typing import TTableSchemaColumns
from dlt.destinations.exceptions import DatabaseTransientException
from dlt.destinations.job_client_impl import SqlLoadJob
from dlt.pipeline.exceptions import PipelineStepFailed

from pipelines.duckdb_destination import FileMergedByItsCopyJob, KeyDedupMergeJob, duckdb_key_dedup
from pipelines.klaviyo_segments_pipeline import make_pipeline
from sources.klaviyo.rows.profiles import profile_layout

_names = itertools.count()
NEWEST_UPDATED: TTableSchemaColumns = {"updated": {"dedup_sort": "desc"}}
OLDEST_UPDATED: TTableSchemaColumns = {"updated": {"dedup_sort": "asc"}}


def _at(day: int | None) -> datetime | None:
    return None if day is None else datetime(2026, 1, day, tzinfo=timezone.utc)


def _profiles(*rows: tuple[str, int | None, str]) -> pa.Table:
    """Rows of (id, day of `updated`, email), as the source hands `profiles` to dlt."""
    return pa.table(
        {
            "id": [row[0] for row in rows],
            "updated": pa.array([_at(row[1]) for row in rows], pa.timestamp("us", tz="UTC")),
            "email": [row[2] for row in rows],
        }
    )


def _load(pipeline: Any, items: list[pa.Table], columns: TTableSchemaColumns) -> None:
    """One load of `items` (one package) into a merge table keyed by `id`."""

    @dlt.resource(name="profiles", primary_key="id", write_disposition="merge", columns=columns)
    def profiles() -> Iterator[pa.Table]:
        yield from items

    pipeline.run(profiles())


def _stored(pipeline: Any) -> list[tuple[Any, ...]]:
    with pipeline.sql_client() as client:
        rows = client.execute_sql("select id, updated, email from profiles order by id, email")
    return [(row[0], row[1].day if row[1] else None, row[2]) for row in rows]


@pytest.fixture(params=["duckdb", "postgres"])
def pipeline(request: pytest.FixtureRequest, pipelines_dir: str, tmp_path: Path) -> Iterator[Any]:
    """A pipeline into the project's DuckDB destination, or into Postgres (dlt's merge)."""
    if request.param == "duckdb":
        destination: Any = duckdb_key_dedup(str(tmp_path / "warehouse.duckdb"))
        dataset = "dedup"
    else:
        destination = dlt.destinations.postgres(request.getfixturevalue("postgres_url"))
        dataset = request.getfixturevalue("dataset_name")
    pipeline = dlt.pipeline(
        pipeline_name=f"dedup_{next(_names)}",
        destination=destination,
        dataset_name=dataset,
        pipelines_dir=pipelines_dir,
    )
    yield pipeline
    if request.param == "postgres":
        with pipeline.sql_client() as client:
            for schema in (dataset, f"{dataset}_staging"):
                client.execute_sql(f'DROP SCHEMA IF EXISTS "{schema}" CASCADE')


def test_a_profile_loaded_twice_in_one_load_keeps_its_newest_copy(pipeline: Any) -> None:
    first = _profiles(("p1", 1, "old@x"), ("p2", 1, "two@x"), ("p3", 2, "three@x"))
    # a copy staged twice, as a copy job run again after a kill stages it
    second = _profiles(("p1", 3, "new@x"), ("p3", 2, "three@x"), ("p4", None, "four@x"))

    _load(pipeline, [first, second], NEWEST_UPDATED)

    assert _stored(pipeline) == [
        ("p1", 3, "new@x"),
        ("p2", 1, "two@x"),
        ("p3", 2, "three@x"),
        ("p4", None, "four@x"),
    ]
    _load(pipeline, [_profiles(("p2", 5, "later@x"), ("p2", 4, "earlier@x"))], NEWEST_UPDATED)
    assert ("p2", 5, "later@x") in _stored(pipeline)
    assert len(_stored(pipeline)) == 4


def test_the_oldest_copy_is_kept_when_asked_and_one_copy_without_a_sort_value(
    pipeline: Any,
) -> None:
    rows = _profiles(
        ("p1", 3, "new@x"), ("p1", 1, "old@x"), ("p2", None, "a@x"), ("p2", None, "a@x")
    )

    _load(pipeline, [rows], OLDEST_UPDATED)

    assert _stored(pipeline) == [("p1", 1, "old@x"), ("p2", None, "a@x")]


def test_without_a_sort_column_each_key_is_loaded_once(pipeline: Any) -> None:
    rows = _profiles(("p1", 1, "a@x"), ("p1", 1, "a@x"), ("p2", 2, "b@x"))

    _load(pipeline, [rows, _profiles(("p2", 2, "b@x"))], {})

    assert _stored(pipeline) == [("p1", 1, "a@x"), ("p2", 2, "b@x")]


def test_the_merge_groups_the_key_columns_instead_of_a_window() -> None:
    select = KeyDedupMergeJob.gen_select_from_dedup_sql(
        '"s"."profiles"', ['"id"'], ['"id"', '"email"'], ('"updated"', "desc")
    )

    assert "OVER" not in select
    assert 'GROUP BY "id"' in select
    assert 'arg_max(rowid, "updated")' in select


def test_a_table_with_a_rowid_column_of_its_own_is_deduplicated_by_dlts_window(
    pipeline: Any,
) -> None:
    rows = _profiles(("p1", 1, "a@x"), ("p1", 1, "a@x"), ("p2", 2, "b@x"))
    rows = rows.append_column("rowid", pa.array([7, 7, 3]))

    _load(pipeline, [rows], {})

    assert _stored(pipeline) == [("p1", 1, "a@x"), ("p2", 2, "b@x")]
    select = KeyDedupMergeJob.gen_select_from_dedup_sql('"s"."t"', ['"id"'], ['"id"', '"rowid"'])
    assert "ROW_NUMBER() OVER" in select


def test_the_pipeline_keeps_dlts_duckdb_type_name_and_state(
    pipelines_dir: str, tmp_path: Path
) -> None:
    file = str(tmp_path / "shared.duckdb")
    before = dlt.pipeline(
        pipeline_name="switched",
        destination=dlt.destinations.duckdb(file),
        dataset_name="klaviyo",
        pipelines_dir=pipelines_dir,
    )
    _load(before, [_profiles(("p1", 1, "old@x"), ("p2", 1, "two@x"))], NEWEST_UPDATED)

    after = make_pipeline(duckdb_file=file, pipelines_dir=pipelines_dir, pipeline_name="switched")
    _load(after, [_profiles(("p1", 2, "new@x"), ("p1", 2, "new@x"))], NEWEST_UPDATED)

    assert isinstance(after.destination, duckdb_key_dedup)
    assert after.destination.destination_type == "dlt.destinations.duckdb"
    assert after.destination.destination_name == "duckdb"
    assert after.state["destination_type"] == before.state["destination_type"]
    assert _stored(after) == [("p1", 2, "new@x"), ("p2", 1, "two@x")]


def test_a_run_resolves_the_capabilities_partial_configuration_once(
    pipelines_dir: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    partial_resolutions = []
    resolve = dlt.destinations.duckdb.configuration

    def counted(self: Any, initial_config: Any, accept_partial: bool = False) -> Any:
        partial_resolutions.append(accept_partial)
        return resolve(self, initial_config, accept_partial)

    monkeypatch.setattr(dlt.destinations.duckdb, "configuration", counted)
    file = str(tmp_path / "caps.duckdb")
    pipeline = make_pipeline(duckdb_file=file, pipelines_dir=pipelines_dir, pipeline_name="caps")
    _load(pipeline, [_profiles(("p1", 1, "one@x"))], NEWEST_UPDATED)
    _load(pipeline, [_profiles(("p1", 2, "new@x"), ("p2", 1, "two@x"))], NEWEST_UPDATED)

    assert partial_resolutions.count(True) == 1
    assert _stored(pipeline) == [("p1", 2, "new@x"), ("p2", 1, "two@x")]
    ours, dlts = pipeline.destination.capabilities(), dlt.destinations.duckdb(file).capabilities()
    assert dict(ours) == dict(dlts)


def test_profiles_declare_updated_as_the_column_that_picks_a_copy() -> None:
    assert profile_layout(None, ()).column_hints()["updated"] == {"dedup_sort": "desc"}
    assert "updated" not in profile_layout(["email"], ()).column_hints()


def _duckdb_pipeline(pipelines_dir: str, tmp_path: Path, destination: Any = None) -> Any:
    """A pipeline `merge` into tmp_path's DuckDB file, by default with the project's destination."""
    file = str(tmp_path / "warehouse.duckdb")
    return dlt.pipeline(
        pipeline_name="merge",
        destination=destination or duckdb_key_dedup(file),
        dataset_name="merge",
        pipelines_dir=pipelines_dir,
    )


def _staged(pipeline: Any, table: str = "profiles") -> int:
    with pipeline.sql_client() as client:
        return int(client.execute_sql(f"select count(*) from merge_staging.{table}")[0][0])


def _package_files(pipeline: Any, table: str) -> list[str]:
    info = pipeline.get_load_package_info(pipeline.list_completed_load_packages()[-1])
    return [
        job.file_path
        for job in info.jobs["completed_jobs"]
        if job.job_file_info.table_name == table and job.file_path.endswith(".parquet")
    ]


def test_a_tables_only_file_is_merged_by_its_copy_job_without_staging(
    pipelines_dir: str, tmp_path: Path
) -> None:
    pipeline = _duckdb_pipeline(pipelines_dir, tmp_path)
    items = [_profiles(("p1", 1, "old@x"), ("p2", 1, "two@x")), _profiles(("p1", 2, "new@x"))]

    _load(pipeline, items, NEWEST_UPDATED)

    assert len(_package_files(pipeline, "profiles")) == 1
    assert _stored(pipeline) == [("p1", 2, "new@x"), ("p2", 1, "two@x")]
    assert _staged(pipeline) == 0
    plain = _duckdb_pipeline(
        pipelines_dir, tmp_path / "plain", dlt.destinations.duckdb(str(tmp_path / "plain.duckdb"))
    )
    _load(plain, items, NEWEST_UPDATED)
    assert _stored(plain) == _stored(pipeline)
    assert _staged(plain) == 3


def test_a_second_load_of_a_tables_only_file_replaces_rows_by_key(
    pipelines_dir: str, tmp_path: Path
) -> None:
    pipeline = _duckdb_pipeline(pipelines_dir, tmp_path)
    _load(pipeline, [_profiles(("p1", 1, "old@x"), ("p2", 1, "two@x"))], NEWEST_UPDATED)
    again = [_profiles(("p1", 3, "new@x"), ("p1", 2, "mid@x"), ("p3", None, "three@x"))]

    _load(pipeline, again, NEWEST_UPDATED)

    assert _stored(pipeline) == [("p1", 3, "new@x"), ("p2", 1, "two@x"), ("p3", None, "three@x")]
    assert len(_package_files(pipeline, "profiles")) == 1
    assert _staged(pipeline) == 0


def test_a_table_with_a_file_row_number_column_is_merged_from_staging(
    pipelines_dir: str, tmp_path: Path
) -> None:
    pipeline = _duckdb_pipeline(pipelines_dir, tmp_path)
    rows = _profiles(("p1", 1, "old@x"), ("p1", 2, "new@x"), ("p2", 1, "two@x"))
    rows = rows.append_column("file_row_number", pa.array([9, 9, 4]))

    _load(pipeline, [rows], NEWEST_UPDATED)

    assert _stored(pipeline) == [("p1", 2, "new@x"), ("p2", 1, "two@x")]
    assert _staged(pipeline) == 3


def test_a_table_in_several_files_of_a_load_is_merged_from_staging(
    pipelines_dir: str, tmp_path: Path
) -> None:
    pipeline = _duckdb_pipeline(pipelines_dir, tmp_path)
    wider = _profiles(("p1", 3, "new@x"), ("p3", 1, "three@x"))
    # another set of columns starts another file
    items = [
        _profiles(("p1", 1, "old@x"), ("p2", 1, "two@x")),
        wider.append_column("title", pa.array(["CEO", None])),
    ]

    _load(pipeline, items, NEWEST_UPDATED)

    assert len(_package_files(pipeline, "profiles")) == 2
    assert _stored(pipeline) == [("p1", 3, "new@x"), ("p2", 1, "two@x"), ("p3", 1, "three@x")]
    assert _staged(pipeline) == 4


def _two_tables(pipeline: Any) -> None:
    @dlt.resource(name="profiles", primary_key="id", write_disposition="merge")
    def profiles() -> Iterator[pa.Table]:
        yield _profiles(("p1", 1, "a@x"), ("p2", 2, "b@x"))

    @dlt.resource(name="members", primary_key="id", write_disposition="merge")
    def members() -> Iterator[pa.Table]:
        yield _profiles(("m1", 1, "c@x"), ("m2", 2, "d@x"))

    pipeline.run([profiles(), members()])


def _member_rows(pipeline: Any) -> list[tuple[Any, ...]]:
    with pipeline.sql_client() as client:
        return [
            tuple(row)
            for row in client.execute_sql(
                "select id from profiles union all select id from members order by 1"
            )
        ]


def test_a_package_this_destination_began_is_finished_by_dlts_duckdb_with_every_row(
    pipelines_dir: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    pipeline = _duckdb_pipeline(pipelines_dir, tmp_path)
    merge = FileMergedByItsCopyJob.run

    def members_fail(job: FileMergedByItsCopyJob) -> None:
        if job._load_table["name"] == "members":
            raise DatabaseTransientException(RuntimeError("the node went away"))
        merge(job)

    monkeypatch.setenv("LOAD__RAISE_ON_MAX_RETRIES", "1")
    monkeypatch.setattr(FileMergedByItsCopyJob, "run", members_fail)
    with pytest.raises(PipelineStepFailed):
        _two_tables(pipeline)
    monkeypatch.undo()

    plain = _duckdb_pipeline(
        pipelines_dir, tmp_path, dlt.destinations.duckdb(str(tmp_path / "warehouse.duckdb"))
    )
    plain.load()

    assert _member_rows(plain) == [("m1",), ("m2",), ("p1",), ("p2",)]


def test_a_package_dlts_duckdb_began_is_finished_here_with_every_row(
    pipelines_dir: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    plain = _duckdb_pipeline(
        pipelines_dir, tmp_path, dlt.destinations.duckdb(str(tmp_path / "warehouse.duckdb"))
    )

    def merge_fails(job: Any) -> None:
        raise DatabaseTransientException(RuntimeError("the node went away"))

    monkeypatch.setenv("LOAD__RAISE_ON_MAX_RETRIES", "1")
    monkeypatch.setattr(SqlLoadJob, "run", merge_fails)
    with pytest.raises(PipelineStepFailed):
        _two_tables(plain)
    monkeypatch.undo()
    assert _staged(plain, "members") == 2

    pipeline = _duckdb_pipeline(pipelines_dir, tmp_path)
    pipeline.load()

    assert _member_rows(pipeline) == [("m1",), ("m2",), ("p1",), ("p2",)]
