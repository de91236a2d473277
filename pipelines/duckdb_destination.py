"""dlt's DuckDB destination, with a merge that deduplicates the staged rows by key alone.

dlt's merge inserts the staged rows through a window function, `ROW_NUMBER() OVER (PARTITION
BY <primary key>)`, over every column, so that a key staged twice (a row emitted twice in a
load, or a copy job run again after the process was killed) is inserted once. DuckDB
materializes every column of the staging table for that window; on `profiles`, 24 columns
wide, it was two thirds of the table's merge. This destination picks the row to keep by its
`rowid`, grouping the key columns only (`GROUP BY <primary key>`), and inserts the rows it
picked: the same rows kept, at about a third of the cost (the load step of a 1,050,000
membership run fell from about 10.4 to 8.6 CPU-seconds).

A table whose load holds one file of it (as it does for this source's tables) is merged by
that file's copy job, without the staging table (`duckdb_merge`): the load step fell from
about 8.6 to 6.9 CPU-seconds.

Each load begins by handing the memory that dlt's extract and normalize steps freed back to
the system (`give_back_memory`), since the load is a run's memory peak: 12 to 14 MB a load,
and about 50 MB off the peak of a 1,050,000-membership first load.

dlt works out the destination's capabilities about 45 times a run, and each time it is given
no configuration it resolves a partial one from every config provider, though DuckDB's
capabilities do not depend on it. This destination keeps the first one it resolved
(`capabilities`): about 0.05 to 0.1 CPU-seconds less a run.

Everything else is dlt's: the type and name stay `duckdb` (configuration under
`destination.duckdb`, the pipeline's state and datasets alike), and so do the other merge
strategies and every other job. Either destination finishes a package the other began.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from typing import Any, cast

from dlt.common.destination.capabilities import DestinationCapabilitiesContext
from dlt.common.destination.client import (
    FollowupJobRequest,
    HasFollowupJobs,
    LoadJob,
    PreparedTableSchema,
    RunnableLoadJob,
)
from dlt.common.normalizers.naming import NamingConvention
from dlt.common.schema.typing import TSortOrder, TTableSchema
from dlt.destinations import duckdb
from dlt.destinations.impl.duckdb.duck import DuckDbClient
from dlt.destinations.sql_jobs import SqlMergeFollowupJob

from pipelines.duckdb_merge import (
    hides_rowid,
    merge_from_file_sql,
    merges_by_copy_job,
    one_row_per_key,
    package_files,
)
from sources.klaviyo.rows.memory import give_back_memory

DLT_DUCKDB_TYPE = "dlt.destinations.duckdb"
"""dlt's own type of its DuckDB destination, which this one keeps."""


class KeyDedupMergeJob(SqlMergeFollowupJob):
    """dlt's merge, with staged rows deduplicated by `rowid` per key instead of a window."""

    @classmethod
    def gen_select_from_dedup_sql(
        cls,
        table_name: str,
        primary_keys: Sequence[str],
        columns: Sequence[str],
        dedup_sort: tuple[str, TSortOrder] | None = None,
        condition: str | None = None,
        condition_columns: Sequence[str] | None = None,
        skip_dedup: bool = False,
    ) -> str:
        """The staged rows to insert: one per key (the newest by `dedup_sort` when set).

        Selections that carry extra columns for a condition (tables with nested tables,
        which this project does not load), and tables with a column of their own named
        `rowid` (which would hide DuckDB's), stay dlt's.
        """
        if skip_dedup or condition_columns is not None or not primary_keys or hides_rowid(columns):
            return super().gen_select_from_dedup_sql(
                table_name,
                primary_keys,
                columns,
                dedup_sort,  # type: ignore[arg-type]
                condition,  # type: ignore[arg-type]
                condition_columns,  # type: ignore[arg-type]
                skip_dedup,
            )
        return (
            f"SELECT {', '.join(columns)} FROM {table_name}"
            f" WHERE {one_row_per_key(table_name, primary_keys, dedup_sort)}"
            f" AND ({condition or '1 = 1'})"
        )


class FileMergedByItsCopyJob(RunnableLoadJob, HasFollowupJobs):
    """The only load file of its table in the package (`duckdb_merge.merges_by_copy_job`):
    its copy job merges it into the table itself, in one transaction."""

    def run(self) -> None:
        client = cast(KeyDedupDuckDbClient, self._job_client)
        sql_client = client.sql_client
        # the loader runs copy jobs of merged tables against the staging dataset
        with sql_client.with_alternative_dataset_name(client.final_dataset_name):
            statements = merge_from_file_sql(_plain(self._load_table), self._file_path, sql_client)
            with sql_client.begin_transaction():
                sql_client.execute_many(statements)


class KeyDedupDuckDbClient(DuckDbClient):
    """dlt's DuckDB client: a table's only load file is merged by its copy job
    (`duckdb_merge`); other tables are merged from staging with `KeyDedupMergeJob`."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.final_dataset_name = self.sql_client.dataset_name

    def initialize_storage(self, truncate_tables: Iterable[str] | None = None) -> None:
        """dlt's, and where a load begins (the dataset's call, without tables to truncate),
        the memory the extract and normalize steps freed goes back to the system first."""
        if truncate_tables is None:
            give_back_memory()
        super().initialize_storage(truncate_tables or ())

    def create_load_job(
        self, table: PreparedTableSchema, file_path: str, load_id: str, restore: bool = False
    ) -> LoadJob:
        if file_path.endswith(".parquet") and merges_by_copy_job(
            _plain(table), self.schema, package_files(file_path, str(table["name"]))
        ):
            return FileMergedByItsCopyJob(file_path)
        return super().create_load_job(table, file_path, load_id, restore)

    def _create_merge_followup_jobs(
        self, table_chain: Sequence[PreparedTableSchema]
    ) -> list[FollowupJobRequest]:
        # Also after a copy job merged its file: the staging table is empty then, but it
        # holds the rows of a package whose copy jobs dlt's own destination ran.
        return [KeyDedupMergeJob.from_table_chain(table_chain, self.sql_client)]


def _plain(table: PreparedTableSchema) -> TTableSchema:
    """A prepared table as the schema helpers take it (the same dict)."""
    return cast(TTableSchema, table)


class duckdb_key_dedup(duckdb):  # noqa: N801 (dlt names destination factories in lowercase)
    """dlt's `duckdb` destination factory, whose client is `KeyDedupDuckDbClient`."""

    _partial_configuration: Any = None
    """The partial configuration dlt first resolved to work out the capabilities."""

    @property
    def destination_type(self) -> str:
        return DLT_DUCKDB_TYPE

    @property
    def client_class(self) -> Any:
        return KeyDedupDuckDbClient

    def capabilities(
        self, config: Any = None, naming: NamingConvention | None = None
    ) -> DestinationCapabilitiesContext:
        """dlt's; without `config`, the partial configuration dlt resolved the first time
        (`configuration`) is used again instead of being resolved anew."""
        if config is None:  # a configuration is a mapping: its truth is its length
            config = self._partial_configuration
        return super().capabilities(config, naming)

    def configuration(self, initial_config: Any, accept_partial: bool = False) -> Any:
        """dlt's; a partial configuration (dlt asks for one only to work out the
        capabilities) is kept for `capabilities`."""
        config = super().configuration(initial_config, accept_partial)
        if accept_partial and self._partial_configuration is None:
            self._partial_configuration = config
        return config
