"""One run of a pipeline at a time: an OS file lock beside the pipeline's working folder."""

from __future__ import annotations

import fcntl
import functools
import json
import os
import socket
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from datetime import datetime, timezone
from pathlib import Path
from typing import IO, Any, Concatenate, ParamSpec, TypeVar

import dlt

from pipelines.errors import PipelineBusyError

_Params = ParamSpec("_Params")
_Result = TypeVar("_Result")


def lock_path(pipeline: dlt.Pipeline) -> Path:
    """The run lock's file, beside the pipeline's working folder: dlt may wipe that folder."""
    return Path(pipeline.pipelines_dir) / f"{pipeline.pipeline_name}.lock"


@contextmanager
def pipeline_lock(pipeline: dlt.Pipeline) -> Iterator[None]:
    """Hold the pipeline's run lock for the block; refuse at once if another run holds it.

    Two runs in one working folder break each other's load packages and state. The lock is
    an OS file lock (``flock``), which the kernel releases when its holder ends however it
    ends, so a lock file left by a killed run never blocks the next one.

    Raises:
        PipelineBusyError: Another run of this pipeline holds the lock; names that run.
    """
    path = lock_path(pipeline)
    path.parent.mkdir(parents=True, exist_ok=True)
    # "a+" opens without truncating: the holder's details stay readable by a refused run.
    with open(path, "a+", encoding="utf-8") as handle:
        try:
            fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            raise PipelineBusyError(_busy_message(pipeline, path, handle)) from None
        try:
            handle.seek(0)
            handle.truncate()
            handle.write(json.dumps(_this_run()))
            handle.flush()
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


def _this_run() -> dict[str, Any]:
    started = datetime.now(timezone.utc).replace(microsecond=0)
    return {"pid": os.getpid(), "host": socket.gethostname(), "started": started.isoformat()}


def _busy_message(pipeline: dlt.Pipeline, path: Path, handle: IO[str]) -> str:
    handle.seek(0)
    try:
        holder = json.loads(handle.read())
        other = f"pid {holder['pid']} on {holder['host']}, started {holder['started']}"
    except (ValueError, KeyError, TypeError):
        # The holder took the lock an instant ago and has not written its details yet.
        other = f"lock file {path}"
    return (
        f"pipeline {pipeline.pipeline_name!r} is already running ({other}); nothing was "
        "loaded: wait for that run to end, or run this one under another --pipeline-name"
    )


def one_run_at_a_time(
    run: Callable[Concatenate[dlt.Pipeline, _Params], _Result],
) -> Callable[Concatenate[dlt.Pipeline, _Params], _Result]:
    """Hold the pipeline's run lock for the whole call of ``run(pipeline, ...)``."""

    @functools.wraps(run)
    def locked(pipeline: dlt.Pipeline, *args: _Params.args, **kwargs: _Params.kwargs) -> _Result:
        with pipeline_lock(pipeline):
            return run(pipeline, *args, **kwargs)

    return locked
