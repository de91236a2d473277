"""Set-up mistakes a new user makes, through the CLI: one line that says what to fix."""

from __future__ import annotations

import os
import socket

from klaviyo_emulator import Emulator
from pipelines.klaviyo_segments_pipeline import make_pipeline
from pipelines.lock import pipeline_lock

from .conftest import ERROR_PREFIX, Project


def test_base_url_with_a_query_is_refused_before_any_request(
    project: Project, emu: Emulator
) -> None:
    url = emu.base_url + "/api/segments/?x=1"

    result = project.run("--quiet", "--base-url", url)

    assert result.returncode == 1
    assert result.stderr == (
        f"{ERROR_PREFIX}base_url {url!r} must be a scheme and host only, like "
        "https://a.klaviyo.com: no path, query or fragment\n"
    )
    assert emu.stats.total == 0
    assert not project.tables.names()


def test_postgres_url_without_a_password_asks_for_one(project: Project, emu: Emulator) -> None:
    project.env["DESTINATION__POSTGRES__CREDENTIALS"] = "postgresql://postgres@127.0.0.1:5432/test"

    result = project.run("--quiet", "--destination", "postgres")

    assert result.returncode == 1
    assert result.stderr.startswith(ERROR_PREFIX)
    assert result.stderr.count("\n") == 1
    line = result.stderr.removeprefix(ERROR_PREFIX)
    assert line.startswith("the postgres connection URL has no password")
    assert "any password if the server trusts the connection (trust auth)" in line
    assert "DESTINATION__POSTGRES__CREDENTIALS" in line
    assert "missing configuration" not in line


def test_a_run_waits_for_no_one_while_the_lock_is_held(project: Project, emu: Emulator) -> None:
    pipeline = make_pipeline()

    with pipeline_lock(pipeline):
        result = project.run("--quiet")

    assert result.returncode == 1
    assert result.stderr.startswith(
        f"{ERROR_PREFIX}pipeline 'klaviyo_segments' is already running "
        f"(pid {os.getpid()} on {socket.gethostname()}, started "
    )
    assert emu.stats.total == 0
    with pipeline_lock(pipeline):  # released when the block ended
        pass
