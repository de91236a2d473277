"""Runnable pipeline: Klaviyo segments, memberships and tags into DuckDB or any dlt destination.

Run it as a script (``python pipelines/klaviyo_segments_pipeline.py``) with the API key in
``.dlt/secrets.toml`` or ``SOURCES__KLAVIYO__API_KEY``, or through the ``klaviyo-segments`` CLI.
"""

from __future__ import annotations

import json
import os
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import dlt
from dlt.common.destination import Destination
from dlt.destinations.impl.duckdb.configuration import DuckDbCredentials

from pipelines.duckdb_destination import duckdb_key_dedup
from pipelines.errors import PipelineConfigError
from pipelines.lock import one_run_at_a_time
from sources.klaviyo import EmittedProfiles, ExtractionStats, klaviyo_source
from sources.klaviyo import settings as source_settings
from sources.klaviyo.rows.memory import one_malloc_arena

PIPELINE_NAME = "klaviyo_segments"
DATASET_NAME = "klaviyo"
DUCKDB_FILE = "klaviyo_segments.duckdb"
TABLES = (
    "segments",
    "tags",
    "segment_tags",
    "profiles",
    "segment_memberships",
    "segment_membership_history",
)
PIPELINES_DIR = os.path.join(".dlt", "pipelines")
"""dlt's working folders, under the project folder the CLI runs in."""


@dataclass
class RunReport:
    """What one run loaded, for the CLI summary and for callers such as orchestrators."""

    rows: dict[str, int] = field(default_factory=dict)
    elapsed_seconds: float = 0.0
    stats: ExtractionStats | None = None
    destination: str = ""
    dataset_name: str = ""
    duckdb_file: str = ""
    """Absolute path of the DuckDB database loaded into; empty for other destinations."""
    dropped_packages: list[str] = field(default_factory=list)
    """Pending load packages dropped before this run (``drop_pending``)."""
    checkpoints: int = 0
    """Loads committed by this run: each holds rows and the cursors they justify."""
    complete: bool = True
    """False when the run stopped at a checkpoint because its time budget was spent; the
    next run goes on where it stopped (`unfinished`)."""
    unfinished: dict[str, int | None] = field(default_factory=dict)
    """Segments left for the next run, with the profile pages estimated to remain."""
    unchecked: list[str] = field(default_factory=list)
    """Segments the budget left unwalked although nothing was known to wait for them (walked to
    their end before): the next run reads their new joins as usual."""


def duckdb_path(duckdb_file: str | None = None) -> Path:
    """The DuckDB file as an absolute path, resolved against the current directory now.

    dlt would resolve a relative path against the folder the pipeline first ran in (kept in
    its local state), so a run from another project folder would write into the first one's file.
    """
    return Path(duckdb_file or DUCKDB_FILE).expanduser().absolute()


def project_pipelines_dir(pipelines_dir: str | None = None) -> str:
    """dlt's working folder as an absolute path: ``.dlt/pipelines`` in the current directory.

    dlt's own default (``~/.dlt/pipelines``) is shared by every project of the user, and a
    pipeline's local state there outlives the project that created it.
    """
    return str(Path(pipelines_dir or PIPELINES_DIR).expanduser().absolute())


def make_destination(destination: str, duckdb_file: str | None) -> Any:
    """Resolve a destination name; DuckDB writes to a local file unless configured otherwise.

    Args:
        destination: Any dlt destination name (``duckdb``, ``postgres``, ``bigquery``, ...).
        duckdb_file: Path of the DuckDB database file, used only for ``duckdb``.

    Returns:
        A dlt destination reference; credentials of other destinations come from dlt config.
    """
    if destination == "duckdb":
        # DuckDB's merge in the load step is the run's memory peak (about 940 MB at 1M
        # memberships with DuckDB's defaults). These settings keep the whole process under
        # 400 MB, spilling to disk instead, for a load about 5 s slower at that size (80MB
        # took 20 MB off the peak of 100MB for no CPU measured).
        # `destination.duckdb.credentials.global_config` in dlt config overrides them; a
        # load that needs more fails saying so (`errors`), losing nothing.
        defaults = {"memory_limit": "80MB", "threads": 1, "preserve_insertion_order": False}
        configured: Any = dlt.config.get("destination.duckdb.credentials.global_config") or {}
        if isinstance(configured, str):
            configured = json.loads(configured)
        credentials = DuckDbCredentials(
            str(duckdb_path(duckdb_file)), global_config={**defaults, **configured}
        )
        return duckdb_key_dedup(credentials=credentials)
    return Destination.from_reference(destination)


def make_pipeline(
    destination: str = "duckdb",
    dataset_name: str = DATASET_NAME,
    pipeline_name: str = PIPELINE_NAME,
    duckdb_file: str | None = None,
    pipelines_dir: str | None = None,
) -> dlt.Pipeline:
    """Create (or attach to) the named pipeline; its state holds the per-segment cursors.

    Args:
        destination: Any dlt destination name.
        dataset_name: Dataset (schema) to load into.
        pipeline_name: Name of the pipeline, and of its working folder.
        duckdb_file: DuckDB file; relative to the current directory.
        pipelines_dir: dlt's working folder; ``.dlt/pipelines`` in the current directory when
            not given.

    Raises:
        PipelineConfigError: The DuckDB file is named like the dataset, which DuckDB cannot
            tell apart in queries.
    """
    database = Path(duckdb_file or DUCKDB_FILE).stem
    if destination == "duckdb" and database == dataset_name:
        raise PipelineConfigError(
            f"the DuckDB file {database}.duckdb and the dataset {dataset_name!r} share a name, "
            "which DuckDB cannot tell apart; choose another --duckdb-file or --dataset"
        )
    return dlt.pipeline(
        pipeline_name=pipeline_name,
        destination=make_destination(destination, duckdb_file),
        dataset_name=dataset_name,
        pipelines_dir=project_pipelines_dir(pipelines_dir),
    )


def drop_pending_packages(pipeline: dlt.Pipeline) -> list[str]:
    """Drop the load packages earlier runs left, and rewind the local state to before them.

    A package keeps the rows of its run and the cursors they justify. dlt's abort deletes
    it and restores the local state and schemas saved when the oldest dropped package was
    extracted, so the cursors go back to the last rows that reached the destination and the
    next extract reads the dropped rows again.

    Returns:
        The ids of the dropped packages, oldest first.
    """
    pending = sorted(
        {*pipeline.list_extracted_load_packages(), *pipeline.list_normalized_load_packages()}
    )
    if pending:
        pipeline.abort_packages()
        # A dropped package may have been loaded in full before its run died: the destination
        # then holds newer cursors than the rewound ones, and they win (dlt counts the
        # destination's state of completed loads only). Done here, not left to the run, so
        # that it holds with restore_from_destination turned off.
        pipeline.sync_destination()
    return pending


@one_run_at_a_time
def load_segments(
    pipeline: dlt.Pipeline,
    *,
    resources: Sequence[str] | None = None,
    full_refresh: bool = False,
    drop_pending: bool = False,
    stats: ExtractionStats | None = None,
    max_minutes: float | None = None,
    on_checkpoint: Callable[[ExtractionStats], None] | None = None,
    **source_options: Any,
) -> RunReport:
    """Extract Klaviyo segments and memberships and load them with ``pipeline``.

    Args:
        pipeline: The pipeline to run.
        resources: Optional subset of the source's resources to load.
        full_refresh: Load everything again. Unscoped (no ``resources``, no segment ids given
            or configured), the source's tables and state are dropped first. Scoped, nothing
            is dropped: the segments in scope are walked from their first member in the
            membership tables selected and reconciled against what the tables hold, so other
            segments' rows and all membership history are kept.
        drop_pending: Drop the load packages earlier runs left unloaded (and rewind the
            cursors to before them) instead of loading them first.
        stats: Counters the caller may read while the run goes on (progress).
        max_minutes: Time budget: the run stops at the first checkpoint after it is spent
            (a reconciliation in progress finishes first) and reports ``complete=False``;
            the next run goes on from there. None: the run goes on until everything is read.
        on_checkpoint: Called after each checkpoint's load, with the run's counters.
        **source_options: Passed to ``klaviyo_source`` (base_url, revision, segment_ids, ...).
            ``checkpoint_pages`` and ``checkpoint_minutes`` default to dlt config
            (``[sources.klaviyo]``), then to 2,000 pages and 5 minutes.

    Returns:
        The rows loaded per table (summed over the checkpoints) and the run's counters.

    Raises:
        PipelineBusyError: Another run of the pipeline is going on; nothing was done.
    """
    stats = stats or ExtractionStats()
    one_malloc_arena()
    scoped = full_refresh and _is_scoped(resources, source_options)
    if scoped:
        # A refresh of some segments or tables drops nothing: it walks them from the start.
        segment_ids = source_options.get("segment_ids") or _configured_segment_ids()
        source_options = {**source_options, "rewalk_segments": segment_ids or ["all"]}
    started = time.monotonic()
    dropped = drop_pending_packages(pipeline) if drop_pending else []
    if pipeline.has_pending_data:
        # A run killed or failed after extracting left packages behind: load them first,
        # since dlt's run would stop after them and extract nothing new.
        pipeline.run()
    report = RunReport(stats=stats, dropped_packages=dropped)
    deadline = started + max_minutes * 60 if max_minutes is not None else None
    options = {**_checkpoint_options(source_options), **source_options}
    drop_first = full_refresh and not scoped
    # each checkpoint's load lands before the next extraction: a profile it loaded is not
    # emitted again by a later one unless it changed
    emitted = EmittedProfiles(across_walks=True)
    while True:
        slice_options = _slice_options(options, deadline)
        source = klaviyo_source(stats=stats, emitted_profiles=emitted, **slice_options)
        if resources:
            source = source.with_resources(*resources)
        if drop_first:
            pipeline.run(source, refresh="drop_sources")
            drop_first = False
        else:
            pipeline.run(source)
        _add_rows(report.rows, _loaded_row_counts(pipeline))
        stats.checkpoints += 1
        if on_checkpoint is not None:
            on_checkpoint(stats)
        left = [*stats.segments_unfinished, *stats.segments_unchecked]
        if not left or (deadline is not None and time.monotonic() >= deadline):
            break
        options = _next_slice(options, stats)
    report.elapsed_seconds = time.monotonic() - started
    report.checkpoints = stats.checkpoints
    report.complete = stats.complete
    report.unfinished = dict(stats.segments_unfinished)
    report.unchecked = list(stats.segments_unchecked)
    report.destination = pipeline.destination.destination_name if pipeline.destination else ""
    report.dataset_name = pipeline.dataset_name
    report.duckdb_file = _duckdb_file(pipeline)
    return report


def _checkpoint_options(source_options: dict[str, Any]) -> dict[str, Any]:
    """Checkpoint defaults of a pipeline run: dlt config first, then the settings."""
    defaults = {
        "checkpoint_pages": source_settings.CHECKPOINT_PAGES,
        "checkpoint_minutes": source_settings.CHECKPOINT_MINUTES,
    }
    return {
        name: dlt.config.get(f"sources.klaviyo.{name}") or default
        for name, default in defaults.items()
        if source_options.get(name) is None
    }


def _slice_options(options: dict[str, Any], deadline: float | None) -> dict[str, Any]:
    """The options of the next extraction: its checkpoint never lies past the deadline."""
    if deadline is None:
        return options
    left = max(deadline - time.monotonic(), 0.0) / 60
    minutes = float(options.get("checkpoint_minutes") or left)
    return {**options, "checkpoint_minutes": max(min(minutes, left), _MIN_SLICE_MINUTES)}


def _next_slice(options: dict[str, Any], stats: ExtractionStats) -> dict[str, Any]:
    """Options that go on with the segments a checkpoint left undone, and only those.

    Segments stopped mid-walk go on from their cursors (a first load stays one); forced
    reconciliations and walks from the start apply to the segments they have not reached.
    """
    unfinished = [*stats.segments_unfinished, *stats.segments_unchecked]
    nxt = {**options, "segment_ids": unfinished}
    for name in ("reconcile_segments", "rewalk_segments"):
        asked = options.get(name)
        if asked and "all" not in asked:
            nxt[name] = [segment_id for segment_id in asked if segment_id in unfinished]
    stats.add(segments_total=-len(unfinished))  # they were counted when first planned
    return nxt


def _add_rows(total: dict[str, int], rows: dict[str, int]) -> None:
    for table, count in rows.items():
        total[table] = total.get(table, 0) + count


def _duckdb_file(pipeline: dlt.Pipeline) -> str:
    destination = pipeline.destination
    credentials = destination.config_params.get("credentials") if destination else None
    if isinstance(credentials, DuckDbCredentials) and isinstance(credentials.database, str):
        return credentials.database
    return ""


def _is_scoped(resources: Sequence[str] | None, source_options: dict[str, Any]) -> bool:
    """Whether a run covers only some tables or some segments."""
    if resources and set(resources) != set(TABLES):
        return True
    return bool(source_options.get("segment_ids") or _configured_segment_ids())


def _configured_segment_ids() -> list[str] | None:
    """`segment_ids` from dlt config ([sources.klaviyo] or SOURCES__KLAVIYO__SEGMENT_IDS)."""
    configured: Any = dlt.config.get("sources.klaviyo.segment_ids")
    if isinstance(configured, str):
        configured = [part.strip() for part in configured.split(",") if part.strip()]
    return list(configured) if configured else None


def _loaded_row_counts(pipeline: dlt.Pipeline) -> dict[str, int]:
    trace = pipeline.last_trace
    normalize_info = trace.last_normalize_info if trace else None
    counts = dict(normalize_info.row_counts) if normalize_info else {}
    return {table: counts[table] for table in sorted(counts) if not table.startswith("_dlt")}


_MIN_SLICE_MINUTES = 0.05
"""A run past its deadline still makes one short extraction, so that it ends at a checkpoint."""


if __name__ == "__main__":
    report = load_segments(make_pipeline())
    for table, count in report.rows.items():
        print(f"{table}: {count} rows")
