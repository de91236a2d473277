"""Fixtures shared by every suite: the emulator, isolated dlt directories, Postgres."""

from __future__ import annotations

import os
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

POSTGRES_URL = os.environ.get(
    "KLAVIYO_TEST_POSTGRES_URL", "postgresql://postgres:unused@127.0.0.1:5432/test"
)


@pytest.fixture(autouse=True)
def isolated_dlt(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """Keep dlt's pipelines, data and telemetry inside the test's own temporary folder."""
    data_home = tmp_path / "xdg"
    data_home.mkdir()
    monkeypatch.setenv("XDG_DATA_HOME", str(data_home))
    monkeypatch.setenv("RUNTIME__DLTHUB_TELEMETRY", "false")
    monkeypatch.delenv("SOURCES__KLAVIYO__API_KEY", raising=False)
    return tmp_path


@pytest.fixture
def pipelines_dir(tmp_path: Path) -> str:
    """A `pipelines_dir` for dlt.pipeline(...) private to the test."""
    path = tmp_path / "pipelines"
    path.mkdir()
    return str(path)


@pytest.fixture
def emu() -> Iterator[object]:
    """A running emulator with the `tiny` dataset, limits off, no latency."""
    from klaviyo_emulator import Emulator

    with Emulator(dataset="tiny", seed=1) as emulator:
        yield emulator


@pytest.fixture
def fast_retries(monkeypatch: pytest.MonkeyPatch) -> None:
    """Backoff in milliseconds, so retry tests stay fast; the retry bounds stay the real ones."""
    from sources.klaviyo import settings

    monkeypatch.setattr(settings, "RETRY_BACKOFF_BASE", 0.01)
    monkeypatch.setattr(settings, "RETRY_BACKOFF_CAP", 0.05)


def _postgres_answers() -> bool:
    try:
        import psycopg2

        psycopg2.connect(
            POSTGRES_URL.replace("postgres:unused@", "postgres@"), connect_timeout=3
        ).close()
    except Exception:
        return False
    return True


@pytest.fixture
def postgres_url() -> str:
    """Credentials of the Postgres server; skips (or fails, when CI requires it) without one."""
    if not _postgres_answers():
        message = f"no PostgreSQL server answers at {POSTGRES_URL.split('@')[-1]}"
        if os.environ.get("KLAVIYO_REQUIRE_POSTGRES"):
            pytest.fail(message + " and KLAVIYO_REQUIRE_POSTGRES is set")
        pytest.skip(message)
    return POSTGRES_URL


@pytest.fixture
def dataset_name() -> str:
    """A dataset (schema) name no other test uses, so tests can share one Postgres database."""
    return f"klaviyo_test_{uuid.uuid4().hex[:10]}"
