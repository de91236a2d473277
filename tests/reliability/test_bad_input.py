"""Wrong configuration through the CLI: exit code 1, one line on stderr, nothing committed."""

from __future__ import annotations

import socket
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from klaviyo_emulator import Emulator

from .cli import ERROR_PREFIX, Workspace

WELL_FORMED_WRONG_KEY = "pk_" + "Rel1ab1eWr0ngKey" * 2 + "zz"


def _closed_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def _key(emu: Emulator) -> dict[str, str]:
    return {"SOURCES__KLAVIYO__API_KEY": emu.api_key, "SOURCES__KLAVIYO__BASE_URL": emu.base_url}


# Each case: (env for the run, extra CLI arguments, a fragment the error line must contain).
Case = Callable[[Emulator], tuple[dict[str, str], list[str], str]]
CASES: dict[str, Case] = {
    "missing key": lambda emu: (
        {"SOURCES__KLAVIYO__BASE_URL": emu.base_url},
        [],
        "no Klaviyo API key: set SOURCES__KLAVIYO__API_KEY",
    ),
    "malformed key": lambda emu: (
        {**_key(emu), "SOURCES__KLAVIYO__API_KEY": "pk_short"},
        [],
        "the Klaviyo API key is malformed",
    ),
    "rejected key": lambda emu: (
        {**_key(emu), "SOURCES__KLAVIYO__API_KEY": WELL_FORMED_WRONG_KEY},
        [],
        "Klaviyo rejected the API key (401 authentication_failed",
    ),
    "key without profiles:read": lambda emu: (
        {**_key(emu), "SOURCES__KLAVIYO__API_KEY": emu.create_api_key({"segments:read"})},
        [],
        "the API key lacks scope profiles:read",
    ),
    "unknown segment id": lambda emu: (_key(emu), ["--segment-id", "NoSuch1"], "segment NoSuch1 does not exist"),
    "unsupported revision": lambda emu: (_key(emu), ["--revision", "2024-06-16"], "'2024-06-16' is not a valid revision"),
    "malformed revision": lambda emu: (_key(emu), ["--revision", "2024-6-15"], "revision '2024-6-15' is not of the form YYYY-MM-DD"),
    "base URL that does not answer": lambda emu: (
        {**_key(emu), "SOURCES__KLAVIYO__BASE_URL": f"http://127.0.0.1:{_closed_port()}"},
        [],
        "(connection refused, 4 attempts); check base_url",
    ),
    "server answers HTML with 200": lambda emu: (_faulty(emu, "html-200"), [], "with HTTP 200 text/html"),
    "server answers other JSON with 200": lambda emu: (_faulty(emu, "json-200-not-jsonapi"), [], "not a JSON:API document"),
    "zero workers": lambda emu: (_key(emu), ["--workers", "0"], "max_workers must be an integer >= 1, got 0"),
    "negative workers": lambda emu: (_key(emu), ["--workers=-3"], "max_workers must be an integer >= 1, got -3"),
    "start date in the future": lambda emu: (_key(emu), ["--start-date", "2999-01-01"], "is in the future"),
    "unparseable start date": lambda emu: (_key(emu), ["--start-date", "last tuesday"], "start_date 'last tuesday' is not an ISO date"),
    "unknown destination": lambda emu: (_key(emu), ["--destination", "nosuchdest"], "unknown destination 'nosuchdest'"),
    "destination credentials that fail": lambda emu: (
        {
            **_key(emu),
            "DESTINATION__POSTGRES__CREDENTIALS": f"postgresql://loader:S3cretPw@127.0.0.1:{_closed_port()}/db",
        },
        ["--destination", "postgres"],
        "Connection refused",
    ),
    "duckdb file that cannot be created": lambda emu: (
        _key(emu),
        ["--duckdb-file", "/nonexistent/folder/k.duckdb"],
        "/nonexistent/folder/k.duckdb",
    ),
}  # fmt: skip


def _faulty(emu: Emulator, kind: str) -> dict[str, str]:
    emu.faults.probability(kind=kind, p=1.0)
    return _key(emu)


@pytest.mark.parametrize("case", sorted(CASES))
def test_bad_input_fails_in_one_line_and_commits_nothing(
    emu: Emulator, tmp_path: Path, case: str
) -> None:
    env, arguments, fragment = CASES[case](emu)
    workspace = Workspace(tmp_path)

    result = workspace.run(*arguments, env=env)

    assert result.returncode == 1, result.stdout + result.stderr
    lines = [line for line in result.stderr.splitlines() if line.strip()]
    assert len(lines) == 1, result.stderr
    assert lines[0].startswith(ERROR_PREFIX)
    assert fragment in lines[0], lines[0]
    assert "Traceback" not in result.stdout + result.stderr
    for secret in (env.get("SOURCES__KLAVIYO__API_KEY"), emu.api_key, "S3cretPw"):
        assert not secret or secret not in result.stdout + result.stderr
    _assert_nothing_committed(workspace)


def _assert_nothing_committed(workspace: Workspace) -> None:
    sources: dict[str, Any] = workspace.state().get("sources", {})
    assert not sources.get("klaviyo", {}).get("resources"), "cursors were committed"
    assert workspace.pending_packages() == []
    assert [t for t in workspace.tables() if not t.startswith("_dlt")] == []


def test_bad_input_after_good_runs_leaves_tables_and_cursors_as_they_were(
    emu: Emulator, tmp_path: Path
) -> None:
    workspace = Workspace(tmp_path)
    assert workspace.run(env=_key(emu)).returncode == 0
    state, tables = workspace.state(), workspace.tables()
    emu.add_member(emu.segment_ids()[0], emu.create_profile(email="late@example.com"))

    for case in ("rejected key", "unknown segment id", "server answers HTML with 200"):
        env, arguments, fragment = CASES[case](emu)
        result = workspace.run(*arguments, env=env)
        assert result.returncode == 1 and fragment in result.stderr
    emu.faults.clear()

    assert workspace.state().get("sources") == state.get("sources")
    assert workspace.tables() == tables
    assert workspace.pending_packages() == []
    assert workspace.run(env=_key(emu)).returncode == 0
