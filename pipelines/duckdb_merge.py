"""A table's only load file merged by its copy job, without the staging table.

dlt's merge copies every file of a load into the table's staging table, which DuckDB writes
to the database file (write-ahead log, then compressed at a checkpoint), only to read it back
once in the merge that follows. When a load holds one file of a table, as it does for the
tables of this source, that file's copy job merges it itself, reading the parquet file where
it lies: it deletes the rows whose keys the file holds and inserts one row per key
(`one_row_per_key`, by the file's row numbers), in one transaction. Each statement reads
only the columns it needs (the keys for the delete, the keys and the sort column to pick a
key's row), so nothing is staged: a temporary table of the file's every column spilled to
disk once a load's rows outgrew DuckDB's `memory_limit`. The merge from staging still
follows and finds the staging table empty.

Whoever finishes a package loads the same rows: a copy job run again (the process was killed
before it was marked done) deletes and inserts the same rows again; and a package finished
by dlt's own DuckDB destination copies the files it has not merged into staging and merges
them from there, while the files already merged are in the table."""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from pathlib import Path

from dlt.common.schema import Schema
from dlt.common.schema.typing import TSortOrder, TTableSchema
from dlt.common.schema.utils import (
    get_columns_names_with_prop,
    get_dedup_sort_tuple,
    get_first_column_name_with_prop,
    get_nested_tables,
)
from dlt.common.storages.load_package import ParsedLoadJobFileName
from dlt.destinations.sql_client import SqlClientBase

MERGE_HINTS_THAT_NEED_STAGING = ("x-merge-source-filter", "x-merge-destination-scope")
"""Merge options whose SQL dlt writes against the staging table."""
RESERVED_COLUMNS = ("rowid",)
"""Column names that would hide DuckDB's own `rowid`, which picks a key's row."""
FILE_ROW_NUMBER = "file_row_number"
"""The row number `read_parquet` adds to a file's columns; it picks a key's row of a file."""
COPY_JOB_RESERVED_COLUMNS = (*RESERVED_COLUMNS, FILE_ROW_NUMBER)
"""Column names the copy job's merge cannot take: they would hide a row's number."""
JOB_FOLDERS = ("new_jobs", "started_jobs", "completed_jobs", "failed_jobs")
"""The folders of a load package that hold its job files, whatever their state."""
DATA_FORMATS = ("parquet", "jsonl", "typed-jsonl", "insert_values", "csv")
"""Job files that hold rows (not followup SQL or references)."""


def merges_by_copy_job(table: TTableSchema, schema: Schema, files: Sequence[str]) -> bool:
    """Whether the copy job of `table`'s load file merges it (`files`: the table's load files
    in the package).

    Only a `delete-insert` merge (dlt's default) by primary key of a table without nested
    tables, hard deletes, merge options written against staging or a column named `rowid`,
    whose package holds one parquet file of it (nor one named `file_row_number`).
    """
    if len(files) != 1 or not files[0].endswith(".parquet"):
        return False
    if table.get("write_disposition") != "merge":
        return False
    if table.get("x-merge-strategy", "delete-insert") != "delete-insert":
        return False
    if any(table.get(hint) for hint in MERGE_HINTS_THAT_NEED_STAGING):
        return False
    if _holds_any(table.get("columns", {}), COPY_JOB_RESERVED_COLUMNS):
        return False
    if get_columns_names_with_prop(table, "merge_key"):
        return False
    if get_first_column_name_with_prop(table, "hard_delete") is not None:
        return False
    if not get_columns_names_with_prop(table, "primary_key"):
        return False
    return len(get_nested_tables(schema.tables, str(table["name"]))) == 1


def package_files(file_path: str, table_name: str) -> list[str]:
    """The load files of `table_name` in the package of the job file `file_path`."""
    package = Path(file_path).parent.parent
    found = []
    for folder in JOB_FOLDERS:
        for path in sorted((package / folder).glob(f"{table_name}.*")):
            parsed = ParsedLoadJobFileName.parse(path.name)
            if parsed.table_name == table_name and parsed.file_format in DATA_FORMATS:
                found.append(str(path))
    return found


def merge_from_file_sql(table: TTableSchema, path: str, sql_client: SqlClientBase) -> list[str]:
    """The statements that merge the parquet file `path` into `table` (one transaction)."""
    escape = sql_client.escape_column_name
    name = sql_client.make_qualified_table_name(str(table["name"]))
    keys = [escape(column) for column in get_columns_names_with_prop(table, "primary_key")]
    dedup_sort = get_dedup_sort_tuple(table)
    sort = None if dedup_sort is None else (escape(dedup_sort[0]), dedup_sort[1])
    matches = " AND ".join(f"d.{key} = s.{key}" for key in keys)
    literal = "'" + path.replace("'", "''") + "'"
    numbered = f"read_parquet({literal}, {FILE_ROW_NUMBER} = true)"
    return [
        f"DELETE FROM {name} AS d WHERE EXISTS (SELECT 1 FROM read_parquet({literal}) AS s"
        f" WHERE {matches})",
        f"INSERT INTO {name} BY NAME SELECT * EXCLUDE ({FILE_ROW_NUMBER}) FROM {numbered}"
        f" WHERE {one_row_per_key(numbered, keys, sort, FILE_ROW_NUMBER)}",
    ]


def one_row_per_key(
    rows: str,
    keys: Sequence[str],
    dedup_sort: tuple[str, TSortOrder] | None,
    row_id: str = "rowid",
) -> str:
    """The condition that keeps one row of `rows` (a table, or a table function such as
    `read_parquet`; names escaped) per key: grouping the key columns only, where dlt numbers
    the rows of every key with a window over every column. `row_id` tells the rows apart
    (DuckDB's `rowid` of a table, the file's row number). The row kept is the one dlt keeps:
    the highest `dedup_sort` value for "desc" and the lowest for "asc", nulls last, and any
    row when no value decides."""
    kept = f"min({row_id})"
    if dedup_sort is not None:
        column, order = dedup_sort
        pick = "arg_max" if order == "desc" else "arg_min"
        kept = f"coalesce({pick}({row_id}, {column}), min({row_id}))"
    return f"{row_id} IN (SELECT {kept} FROM {rows} GROUP BY {', '.join(keys)})"


def hides_rowid(column_names: Iterable[str]) -> bool:
    """Whether a column of the table (names escaped or not) would hide DuckDB's `rowid`."""
    return _holds_any(column_names, RESERVED_COLUMNS)


def _holds_any(column_names: Iterable[str], reserved: Sequence[str]) -> bool:
    """Whether a column name (escaped or not) is one of `reserved`, as DuckDB compares
    names: without regard to case."""
    return any(name.strip('"').lower() in reserved for name in column_names)
