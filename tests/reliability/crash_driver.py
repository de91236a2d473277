"""Runs `klaviyo-segments run ...` and kills itself with SIGKILL at a chosen point of the run.

Usage: python crash_driver.py POINT [klaviyo-segments arguments...]

POINT is one of:
  never              run to the end
  pages:N            during extraction, once N profile pages were received
  leaves:N           during extraction, once N leaves (closed memberships) were handed on
  after-extract      after `pipeline.extract()` returned (package extracted, not normalized)
  normalize-commit   inside normalize, before the normalized package is committed
  after-normalize    after `pipeline.normalize()` returned (package normalized, not loaded)
  load-job:N         inside load, once N load jobs have run against the destination
  before-sql         inside load, when the first SQL job (merge, state) is about to run
  complete-load      inside load, right after the load was recorded in the destination

KLAVIYO_CRASH_PAGE_SIZE and KLAVIYO_CRASH_BATCH_ROWS shrink profile pages and membership
batches, so that extraction spans many pages and batches. Every job file name that runs is
printed to stdout as `job: NAME`.
"""

from __future__ import annotations

import functools
import os
import signal
import sys
import threading
from collections.abc import Callable
from typing import Any

from dlt.common.destination.client import RunnableLoadJob
from dlt.common.storages.load_storage import LoadStorage
from dlt.destinations.job_client_impl import SqlJobClientBase
from dlt.pipeline.pipeline import Pipeline

from pipelines import cli
from sources.klaviyo import ExtractionStats, settings

_lock = threading.Lock()
_jobs_run = 0


def die() -> None:
    """Ends the process at once, as the OOM killer or a lost node would."""
    sys.stdout.flush()
    os.kill(os.getpid(), signal.SIGKILL)


def after(owner: Any, name: str, when: Callable[..., bool] = lambda *a, **k: True) -> None:
    """Replaces `owner.name` with a version that dies after the original returns."""
    original = getattr(owner, name)

    @functools.wraps(original)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        result = original(*args, **kwargs)
        if when(*args, **kwargs):
            die()
        return result

    setattr(owner, name, wrapper)


def before(owner: Any, name: str, when: Callable[..., bool] = lambda *a, **k: True) -> None:
    """Replaces `owner.name` with a version that dies before the original runs."""
    original = getattr(owner, name)

    @functools.wraps(original)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        if when(*args, **kwargs):
            die()
        return original(*args, **kwargs)

    setattr(owner, name, wrapper)


def count_job(job: RunnableLoadJob, *args: Any) -> int:
    global _jobs_run
    with _lock:
        _jobs_run += 1
        print(f"job: {job.file_name()}", flush=True)
        return _jobs_run


def arm(point: str) -> None:
    """Installs the kill at `point`."""
    name, _, argument = point.partition(":")
    if name == "never":
        after(RunnableLoadJob, "run_managed", lambda job, *a: count_job(job) < 0)
    elif name == "pages":
        after(ExtractionStats, "add", lambda stats, **counts: stats.pages >= int(argument))
    elif name == "leaves":
        after(ExtractionStats, "add", lambda stats, **counts: stats.leaves >= int(argument))
    elif name == "after-extract":
        after(Pipeline, "extract")
    elif name == "normalize-commit":
        before(LoadStorage, "commit_new_load_package")
    elif name == "after-normalize":
        after(Pipeline, "normalize")
    elif name == "load-job":
        after(RunnableLoadJob, "run_managed", lambda job, *a: count_job(job) >= int(argument))
    elif name == "before-sql":
        before(RunnableLoadJob, "run_managed", lambda job, *a: job.file_name().endswith(".sql"))
    elif name == "complete-load":
        after(SqlJobClientBase, "complete_load")
    else:
        raise SystemExit(f"unknown kill point {point!r}")


def main(argv: list[str]) -> int:
    point, arguments = argv[0], argv[1:]
    if os.environ.get("KLAVIYO_CRASH_PAGE_SIZE"):
        settings.SEGMENT_PROFILES_PAGE_SIZE = int(os.environ["KLAVIYO_CRASH_PAGE_SIZE"])
    if os.environ.get("KLAVIYO_CRASH_BATCH_ROWS"):
        settings.MEMBERSHIP_BATCH_ROWS = int(os.environ["KLAVIYO_CRASH_BATCH_ROWS"])
    arm(point)
    return cli.main(arguments)


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
