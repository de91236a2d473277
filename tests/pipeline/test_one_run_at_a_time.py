"""Two runs of one pipeline at once: the second is refused before it touches anything."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import time
from collections.abc import Callable
from pathlib import Path

import pytest

from klaviyo_emulator import Emulator

from .conftest import ERROR_PREFIX, Project, Tables

LOCK_FILE = Path(".dlt/pipelines/klaviyo_segments.lock")
# Slow enough answers that the first run is still walking segments when the second starts;
# the latency drops to 0 once the second run has been refused.
SLOW_ANSWER_SECONDS = 1.5


def wait_for_lock(project: Project, holder: subprocess.Popen[str]) -> dict[str, object]:
    """The lock file's content once `holder` has taken the lock (it writes its pid there)."""
    path = project.root / LOCK_FILE
    for _ in range(1200):
        if holder.poll() is not None:
            _, stderr = holder.communicate()
            pytest.fail(f"the first run ended before taking the lock: {stderr}")
        if path.exists() and path.read_text().strip():
            content: dict[str, object] = json.loads(path.read_text())
            if content.get("pid") == holder.pid:
                return content
        time.sleep(0.05)
    pytest.fail("the first run never took the lock")


@pytest.fixture(params=["duckdb", pytest.param("postgres", marks=pytest.mark.postgres)])
def destination(
    request: pytest.FixtureRequest, project: Project
) -> tuple[tuple[str, ...], Callable[[], Tables]]:
    """CLI arguments and the tables of each destination."""
    if request.param == "duckdb":
        return (), lambda: project.tables
    tables: Tables = request.getfixturevalue("postgres_dataset")
    project.env["DESTINATION__POSTGRES__CREDENTIALS"] = tables.postgres_url or ""
    return ("--destination", "postgres", "--dataset", tables.dataset), lambda: tables


def test_second_run_is_refused_in_one_line_naming_the_first(
    project: Project,
    emu: Emulator,
    destination: tuple[tuple[str, ...], Callable[[], Tables]],
) -> None:
    arguments, tables = destination
    emu.set_latency(SLOW_ANSWER_SECONDS)
    first = project.start("--quiet", "--workers", "1", *arguments)
    try:
        holder = wait_for_lock(project, first)
        second = project.run("--quiet", *arguments)
    finally:
        emu.set_latency(0.0)
        stdout, stderr = first.communicate(timeout=180)

    assert second.returncode == 1
    assert second.stdout == ""
    lines = second.stderr.splitlines()
    assert len(lines) == 1, second.stderr
    assert lines[0].startswith(ERROR_PREFIX + "pipeline 'klaviyo_segments' is already running")
    assert f"pid {first.pid} on {socket.gethostname()}, started {holder['started']}" in lines[0]
    assert first.returncode == 0, stderr
    assert stderr == ""  # --quiet: a run of several seconds and not one progress line
    tables().assert_matches_account(emu)


def test_lock_of_a_killed_run_does_not_block(project: Project, emu: Emulator) -> None:
    emu.set_latency(SLOW_ANSWER_SECONDS)
    killed = project.start("--quiet")
    try:
        wait_for_lock(project, killed)
    finally:
        os.kill(killed.pid, signal.SIGKILL)
        killed.communicate()
        emu.set_latency(0.0)
    assert (project.root / LOCK_FILE).exists()

    assert project.main() == 0

    project.tables.assert_matches_account(emu)
    assert json.loads((project.root / LOCK_FILE).read_text())["pid"] == os.getpid()
