"""What the destination already holds: the open stays of a segment, read back through dlt.

Reconciliation compares Klaviyo's members with what earlier runs loaded. That lives in the
destination, so it is read with dlt's own dataset API (`pipeline.dataset()`), which turns one
filtered relation into the destination's SQL: no per-destination SQL here.
"""

from __future__ import annotations

import threading
from collections.abc import Collection, Iterator, Sequence
from datetime import datetime, timezone
from typing import Any

import dlt
import sqlglot.expressions as sge
from dlt.common.configuration.container import Container
from dlt.common.pipeline import PipelineContext
from dlt.common.storages.exceptions import CurrentLoadPackageStateNotAvailable
from dlt.destinations.exceptions import DatabaseUndefinedRelation

from .. import settings
from ..exceptions import KlaviyoConfigError
from ..options import ACCOUNT_ID_COLUMN
from ..settings import HISTORY_TABLE, MEMBERSHIPS_TABLE
from ..typing import Stays

# Which rows of each table are open stays. Rows loaded before reconciliation existed have
# no `is_member` yet: they count as members until a reconciliation says otherwise.
_OPEN_CONDITIONS = {
    HISTORY_TABLE: ("left_at", "left_at IS NULL"),
    MEMBERSHIPS_TABLE: ("is_member", "is_member IS NULL OR is_member = TRUE"),
}


class KnownMemberships:
    """Reads the open stays of a segment from the tables this run loads.

    Safe to use from worker threads: every call opens its own dataset, hence its own
    connection. Memory is the ids and datetimes of one segment's open stays.

    Args:
        destination: The pipeline's destination; None reads nothing.
        dataset_name: The pipeline's dataset.
        schema: What earlier runs loaded (the pipeline's schema); None reads nothing.
        tables: Tables being loaded whose open stays count, from `settings.RECONCILED_TABLES`.
        account_id: Read only the rows of this account (a dataset several accounts share);
            None reads every row.
    """

    def __init__(
        self,
        destination: Any | None,
        dataset_name: str,
        schema: dlt.Schema | None,
        tables: Sequence[str],
        account_id: str | None = None,
    ) -> None:
        self._destination = destination
        self._account_id = account_id
        self._dataset_name = dataset_name
        self._schema = schema
        self._tables = [table for table in tables if table in _OPEN_CONDITIONS]
        self._local = threading.local()
        self._opened: list[Any] = []
        self._lock = threading.Lock()

    @classmethod
    def of_running_pipeline(
        cls, tables: Sequence[str], account_id: str | None = None
    ) -> KnownMemberships:
        """Reader for the pipeline being run; tables dropped by a refresh hold nothing.

        With `account_id` (a dataset several accounts share), only that account's rows are
        read: segment ids may repeat across accounts.

        Call it from the generator thread: it takes a copy of the pipeline's schema (what
        earlier runs loaded), so worker threads never touch the live pipeline.
        """
        pipeline = _running_pipeline()
        if pipeline is None or pipeline.destination is None or not pipeline.default_schema_name:
            return cls(None, "", None, ())
        refreshed = _refreshed_tables()
        return cls(
            pipeline.destination,
            pipeline.dataset_name,
            pipeline.default_schema.clone(),
            [table for table in tables if table not in refreshed],
            account_id,
        )

    @property
    def tables(self) -> tuple[str, ...]:
        """The tables whose open stays this reader sees."""
        return tuple(self._tables)

    def open_stays(
        self,
        segment_id: str,
        profile_ids: Collection[str] | None = None,
        tables: Collection[str] | None = None,
    ) -> Stays:
        """`joined_group_at` of every stay of `segment_id` not closed yet, by profile id.

        Args:
            segment_id: The segment.
            profile_ids: Only these profiles; None reads every open stay of the segment.
            tables: Only these of the reader's tables; None reads all of them.
        """
        read = [t for t in self._tables if tables is None or t in tables]
        if self._schema is None or not read or profile_ids is not None and not profile_ids:
            return {}
        dataset = self._dataset()
        stays: Stays = {}
        for table in read:
            relation = _open_stays_relation(
                dataset, table, segment_id, profile_ids, self._account_id
            )
            for profile_id, joined in _fetch(relation):
                if joined is not None:
                    _add_stay(stays, profile_id, _utc(joined))
        return stays

    def current_members(self, profile_ids: Collection[str]) -> set[str]:
        """The profiles of `profile_ids` with an open stay in any segment (by
        `segment_memberships`; empty when the reader does not see that table)."""
        if self._schema is None or MEMBERSHIPS_TABLE not in self._tables or not profile_ids:
            return set()
        dataset = self._dataset()
        relation = _open_stays_relation(
            dataset, MEMBERSHIPS_TABLE, None, profile_ids, self._account_id
        )
        return {profile_id for profile_id, _ in _fetch(relation)}

    def close(self) -> None:
        """Closes the connections the threads opened; call it when the walks are over."""
        with self._lock:
            opened, self._opened = self._opened, []
        for dataset in opened:
            dataset.__exit__(None, None, None)

    def _dataset(self) -> Any:
        """This thread's dataset, with one connection kept open for all its queries."""
        dataset = getattr(self._local, "dataset", None)
        if dataset is None:
            # Its own schema copy and connection: nothing is shared between threads.
            schema = self._schema.clone() if self._schema is not None else None
            dataset = dlt.dataset(self._destination, self._dataset_name, schema=schema)
            dataset.__enter__()
            self._local.dataset = dataset
            with self._lock:
                self._opened.append(dataset)
        return dataset


def ensure_merge(tables: Sequence[str]) -> None:
    """Fails before any walk when the destination would load `tables` with `append`.

    Reconciliation rewrites rows by key (a stay gets its `left_at`, a membership its
    `is_member`); appended, every run would add rows and open stays would never close.

    Raises:
        KlaviyoConfigError: The destination cannot merge one of the tables.
    """
    pipeline = _running_pipeline()
    if pipeline is None or pipeline.destination is None:
        return
    capabilities = pipeline.destination.capabilities()
    resources = dlt.current.source().resources
    for table in tables:
        strategies = capabilities.supported_merge_strategies or []
        selector = capabilities.merge_strategies_selector
        if selector is not None:
            schema = resources[table].compute_table_schema()
            strategies = selector(strategies, table_schema=schema)
        if not strategies:
            raise KlaviyoConfigError(
                f"the {pipeline.destination.destination_name} destination cannot merge table "
                f"{table}, and reconciling memberships needs merge; give the membership tables "
                "a table format (e.g. source.segment_memberships.apply_hints(table_format="
                '"delta"), the same for segment_membership_history), or load only segments, '
                "tags, segment_tags and profiles"
            )


def _running_pipeline() -> dlt.Pipeline | None:
    context = Container()[PipelineContext]
    return dlt.current.pipeline() if context.is_active() else None


def _open_stays_relation(
    dataset: Any,
    table: str,
    segment_id: str | None,
    profile_ids: Collection[str] | None = None,
    account_id: str | None = None,
) -> Any | None:
    """Open stays of `table` in `segment_id` (None: in any segment), as (profile id, join)."""
    columns = dataset.schema.tables.get(table, {}).get("columns", {})
    if not {"segment_id", "profile_id", settings.JOINED_GROUP_AT} <= set(columns):
        return None  # never loaded: nothing is known
    relation = dataset.table(table)
    if segment_id is not None:
        of_segment = sge.column("segment_id", quoted=True).eq(sge.Literal.string(segment_id))
        relation = relation.where(of_segment)
    if account_id is not None:
        if ACCOUNT_ID_COLUMN not in columns:
            raise KlaviyoConfigError(
                f"table {table} of dataset {dataset.dataset_name} has no {ACCOUNT_ID_COLUMN} "
                f"column, so its rows cannot be told apart by account; load account "
                f"{account_id} into a new dataset, or without account_id"
            )
        in_account = sge.column(ACCOUNT_ID_COLUMN, quoted=True).eq(sge.Literal.string(account_id))
        relation = relation.where(in_account)
    if profile_ids is not None:
        literals = [sge.Literal.string(profile_id) for profile_id in sorted(profile_ids)]
        relation = relation.where(sge.column("profile_id", quoted=True).isin(*literals))
    column, condition = _OPEN_CONDITIONS[table]
    if column in columns:
        relation = relation.where(condition)
    return relation.select("profile_id", settings.JOINED_GROUP_AT)


def _fetch(relation: Any | None) -> Iterator[tuple[str, Any]]:
    """The (profile id, joined_group_at) rows of a relation; none when it is None or its
    table was declared in the schema by an earlier extract but never created by a load."""
    if relation is None:
        return
    try:
        for rows in relation.iter_fetch(settings.KNOWN_MEMBERSHIPS_FETCH_ROWS):
            yield from rows
    except DatabaseUndefinedRelation:
        return


def _add_stay(stays: Stays, profile_id: str, joined: datetime) -> None:
    # Almost every profile has one open stay: a 1-tuple, no set, keeps a million of them small.
    current = stays.get(profile_id)
    if current is None:
        stays[profile_id] = (joined,)
    elif joined not in current:
        stays[profile_id] = tuple(sorted((*current, joined)))


def _refreshed_tables() -> set[str]:
    """Tables this run drops or truncates before loading (`refresh=...`): their rows are gone."""
    try:
        state: dict[str, Any] = dict(dlt.current.load_package_state())
    except CurrentLoadPackageStateNotAvailable:
        return set()
    tables = [*(state.get("dropped_tables") or ()), *(state.get("truncated_tables") or ())]
    return {str(table["name"]) for table in tables}


def _utc(value: datetime) -> datetime:
    if value.tzinfo is None:
        return value.replace(tzinfo=timezone.utc)
    return value.astimezone(timezone.utc)
