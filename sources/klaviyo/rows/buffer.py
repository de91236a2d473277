"""Arrow tables of several batches, handed to dlt as one item."""

from __future__ import annotations

from collections.abc import Iterator

import pyarrow as pa

from .. import settings


class TableBuffer:
    """Collects the arrow tables one table's resource makes per batch, and hands them to dlt
    in fewer, larger items.

    dlt's extract works out the table's schema, checks its contract and writes a parquet row
    group for every item, at a cost of a few milliseconds whatever its size; a batch of a few
    thousand rows per item paid that hundreds of times in a large load. Buffered tables are
    compact arrow columns (the decoded pages they came from are freed), so holding tens of
    thousands of rows costs a few megabytes.

    The buffer is emptied on the walk's last batch: the rows of every batch reach dlt within
    the extraction whose state records that batch, so a cursor never runs ahead of its rows.

    Args:
        rows: Rows buffered before they are handed on; None: `settings.ARROW_ITEM_ROWS`.
        max_bytes: Bytes buffered before they are handed on (wide `profiles` rows); None:
            `settings.ARROW_ITEM_BYTES`.
    """

    def __init__(self, rows: int | None = None, max_bytes: int | None = None) -> None:
        self._rows_limit = settings.ARROW_ITEM_ROWS if rows is None else rows
        self._bytes_limit = settings.ARROW_ITEM_BYTES if max_bytes is None else max_bytes
        self._tables: list[pa.Table] = []
        self._rows = 0
        self._bytes = 0

    def add(self, table: pa.Table | None, last: bool = False) -> Iterator[pa.Table]:
        """Buffers `table` (None: a batch without rows for this table); yields the buffered
        rows as one table once enough are held, or when `last` says no more will come (the
        walk's last batch)."""
        if table is not None and table.num_rows:
            self._tables.append(table)
            self._rows += table.num_rows
            self._bytes += table.nbytes
        if last or self._rows >= self._rows_limit or self._bytes >= self._bytes_limit:
            yield from self.flush()

    def flush(self) -> Iterator[pa.Table]:
        """Yields the buffered rows as one table (nothing when none are held)."""
        tables, self._tables = self._tables, []
        self._rows = self._bytes = 0
        if len(tables) == 1:
            yield tables[0]
        elif tables:
            yield pa.concat_tables(tables)
