"""Locks the destination provides, so that runs on different workers see each other.

Two runs of one account must never overlap (they would lose each other's state), and loads
into a dataset that several accounts share must take turns: dlt's merge into shared tables
loses or duplicates rows when two loads interleave. A lock on the worker's disk cannot see
a run on another worker; these live where every run meets, the destination: a Postgres
advisory lock, or a file lock beside a DuckDB file (which only one machine can write).
"""

from __future__ import annotations

import fcntl
import hashlib
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager, nullcontext
from pathlib import Path
from typing import Any

import dlt
from dlt.destinations.impl.duckdb.configuration import DuckDbCredentials

from pipelines.account_settings import LOCK_POLL_SECONDS
from pipelines.errors import PipelineBusyError

LOCKING_DESTINATIONS = ("postgres", "duckdb")
"""Destinations whose locks this module knows; others rely on the orchestrator alone."""


def supports_locks(pipeline: dlt.Pipeline) -> bool:
    """Whether the pipeline's destination provides the locks of this module."""
    return _destination_type(pipeline) in LOCKING_DESTINATIONS


@contextmanager
def destination_lock(
    pipeline: dlt.Pipeline, name: str, timeout: float | None, busy: str
) -> Iterator[None]:
    """Hold the destination's lock called `name` for the block.

    Args:
        pipeline: Its destination holds the lock.
        name: What is locked, e.g. `load:<dataset>`; equal names exclude each other.
        timeout: Seconds to wait for a holder to let go; None does not wait.
        busy: The error's message when the lock could not be taken.

    Raises:
        PipelineBusyError: Another run holds the lock (after `timeout` seconds).
    """
    kind = _destination_type(pipeline)
    if kind == "postgres":
        with _postgres_lock(pipeline, name, timeout, busy):
            yield
    elif kind == "duckdb":
        with _file_lock(_duckdb_lock_path(pipeline, name), timeout, busy):
            yield
    else:
        with nullcontext():
            yield


def lock_key(name: str) -> int:
    """A signed 64-bit advisory lock key for `name`, the same on every worker."""
    digest = hashlib.blake2b(f"klaviyo-segments:{name}".encode(), digest_size=8).digest()
    return int.from_bytes(digest, "big", signed=True)


@contextmanager
def _postgres_lock(
    pipeline: dlt.Pipeline, name: str, timeout: float | None, busy: str
) -> Iterator[None]:
    # A session-level advisory lock on a connection of its own: it is released when the
    # block ends, and by the server when the worker dies and its connection drops.
    key = lock_key(name)
    with pipeline.sql_client() as client:
        _acquire(lambda: _try_advisory_lock(client, key), timeout, busy)
        try:
            yield
        finally:
            client.execute_sql("SELECT pg_advisory_unlock(%s)", key)


@contextmanager
def _file_lock(path: Path, timeout: float | None, busy: str) -> Iterator[None]:
    # flock: per open file, so it excludes other threads of this process too, and the
    # kernel lets go when the holder ends however it ends.
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "a+", encoding="utf-8") as handle:
        _acquire(lambda: _try_flock(handle), timeout, busy)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


def _try_advisory_lock(client: Any, key: int) -> bool:
    rows = client.execute_sql("SELECT pg_try_advisory_lock(%s)", key)
    return bool(rows and rows[0][0])


def _try_flock(handle: Any) -> bool:
    try:
        fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        return False
    return True


def _acquire(attempt: Callable[[], bool], timeout: float | None, busy: str) -> None:
    """`attempt()` until it succeeds, for up to `timeout` seconds, then `PipelineBusyError`."""
    deadline = time.monotonic() + (timeout or 0.0)
    while not attempt():
        if time.monotonic() >= deadline:
            raise PipelineBusyError(busy)
        time.sleep(LOCK_POLL_SECONDS)


def _duckdb_lock_path(pipeline: dlt.Pipeline, name: str) -> Path:
    credentials = pipeline.destination.config_params.get("credentials")  # type: ignore[union-attr]
    database = getattr(credentials, "database", None) if credentials is not None else None
    if not isinstance(credentials, DuckDbCredentials) or not isinstance(database, str):
        database = f"{pipeline.pipeline_name}.duckdb"
    file = Path(database)
    safe = "".join(c if c.isalnum() or c in "_-" else "_" for c in name)
    return file.with_name(f".{file.name}.{safe}.lock")


def _destination_type(pipeline: dlt.Pipeline) -> str:
    destination = pipeline.destination
    if destination is None:
        return ""
    return str(destination.destination_type).rsplit(".", 1)[-1]
