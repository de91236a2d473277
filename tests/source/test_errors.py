"""Errors the user can act on, retries that hide transient failures, and a key that never leaks."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from dlt.pipeline.exceptions import PipelineStepFailed

from sources.klaviyo import klaviyo_source
from sources.klaviyo.exceptions import (
    KlaviyoAuthError,
    KlaviyoConfigError,
    KlaviyoError,
    KlaviyoNotFoundError,
    KlaviyoPermissionError,
    KlaviyoRequestError,
    KlaviyoResponseError,
    KlaviyoRetriesExhaustedError,
    find_klaviyo_error,
)

from .conftest import Loader, Truth

WRONG_KEY = "pk_" + "Wr0ngKey" * 4 + "zz"


def _failure(loader: Loader, **options: Any) -> tuple[PipelineStepFailed, KlaviyoError]:
    with pytest.raises(PipelineStepFailed) as raised:
        loader.run(**options)
    error = find_klaviyo_error(raised.value)
    assert error is not None, f"no KlaviyoError behind {raised.value!r}"
    assert "\n" not in str(error)
    return raised.value, error


def _assert_key_absent(key: str, loader: Loader, failure: BaseException, root: Path) -> None:
    assert key not in str(failure) and key not in repr(failure)
    assert key not in str(loader.pipeline.last_trace)
    assert key not in str(loader.pipeline.state)
    for path in root.rglob("*"):
        if path.is_file() and path.stat().st_size < 5_000_000:
            assert key.encode() not in path.read_bytes(), f"key written to {path}"


def test_bad_key(duckdb_loader: Loader, tmp_path: Path) -> None:
    failure, error = _failure(duckdb_loader, api_key=WRONG_KEY)

    assert isinstance(error, KlaviyoAuthError)
    assert str(error).startswith("Klaviyo rejected the API key (401 authentication_failed")
    _assert_key_absent(WRONG_KEY, duckdb_loader, failure, tmp_path)


def test_missing_scope(duckdb_loader: Loader, emu: Any, tmp_path: Path) -> None:
    key = emu.create_api_key(scopes={"segments:read"})

    failure, error = _failure(duckdb_loader, api_key=key)

    assert isinstance(error, KlaviyoPermissionError)
    assert error.scope == "profiles:read"
    assert str(error).startswith("the API key lacks scope profiles:read")
    _assert_key_absent(key, duckdb_loader, failure, tmp_path)


def test_missing_segments_scope(duckdb_loader: Loader, emu: Any) -> None:
    _, error = _failure(duckdb_loader, api_key=emu.create_api_key(scopes={"profiles:read"}))

    assert isinstance(error, KlaviyoPermissionError) and error.scope == "segments:read"


def test_unknown_segment_id(duckdb_loader: Loader, emu: Any, tmp_path: Path) -> None:
    known = emu.segment_ids()[0]

    failure, error = _failure(duckdb_loader, segment_ids=[known, "NoSuch1"])

    assert isinstance(error, KlaviyoNotFoundError)
    assert str(error) == "segment NoSuch1 does not exist"
    _assert_key_absent(emu.api_key, duckdb_loader, failure, tmp_path)


@pytest.mark.parametrize(
    "options, fragment",
    [
        ({"revision": "2024-6-15"}, "revision '2024-6-15'"),
        ({"revision": "2024-06-15.beta"}, "YYYY-MM-DD.pre"),
        ({"revision": "2024-02-30"}, "revision '2024-02-30'"),
        ({"max_workers": 0}, "max_workers must be an integer >= 1"),
        ({"max_retries": -1}, "max_retries must be an integer >= 0"),
        ({"request_timeout": 0}, "request_timeout must be"),
        ({"start_date": "last tuesday"}, "start_date 'last tuesday' is not an ISO date"),
        ({"start_date": "2999-01-01"}, "is in the future"),
        ({"additional_fields": ["subscriptions", "scores"]}, "unknown additional field(s) scores"),
        ({"profile_fields": ["email", "shoe_size"]}, "unknown profile field(s) shoe_size"),
        ({"api_key": "  "}, "API key is empty"),
        ({"base_url": "a.klaviyo.com"}, "base_url 'a.klaviyo.com' is not an http(s) URL"),
    ],
)
def test_bad_configuration(emu: Any, options: dict[str, Any], fragment: str) -> None:
    arguments = {"api_key": emu.api_key, "base_url": emu.base_url, **options}
    with pytest.raises(KlaviyoConfigError) as raised:
        klaviyo_source(**arguments)

    assert isinstance(raised.value, ValueError)
    assert fragment in str(raised.value)
    assert emu.api_key not in str(raised.value)
    assert emu.stats.total == 0


@pytest.mark.parametrize("kind", ["503", "502-html", "500", "504", "drop", "truncate", "429"])
def test_transient_faults_are_retried(
    duckdb_loader: Loader, truth: Truth, emu: Any, fast_retries: None, kind: str
) -> None:
    emu.faults.script(path_contains="/profiles", count=2, kind=kind)
    emu.faults.script(path_contains="/api/segments", count=1, kind=kind)

    stats = duckdb_loader.run()

    assert duckdb_loader.memberships() == truth.memberships()
    assert stats.retries == 3
    assert stats.throttled == (3 if kind == "429" else 0)
    if kind == "429":
        assert stats.wait_seconds > 0


def test_slow_answer_times_out_and_is_retried(
    duckdb_loader: Loader, truth: Truth, emu: Any, fast_retries: None
) -> None:
    emu.faults.script(path_contains="/profiles", count=1, kind="slow", delay=2.0)

    stats = duckdb_loader.run(request_timeout=0.5)

    assert stats.retries == 1
    assert duckdb_loader.memberships() == truth.memberships()


def test_one_html_page_with_200_is_retried(
    duckdb_loader: Loader, truth: Truth, emu: Any, fast_retries: None
) -> None:
    emu.faults.script(path_contains="/profiles", count=1, kind="html-200")

    duckdb_loader.run()

    assert duckdb_loader.memberships() == truth.memberships()


@pytest.mark.parametrize(
    "kind, fragment",
    [("html-200", "with HTTP 200 text/html"), ("json-200-not-jsonapi", "not a JSON:API document")],
)
def test_body_that_is_not_jsonapi_is_reported(
    duckdb_loader: Loader, emu: Any, fast_retries: None, kind: str, fragment: str
) -> None:
    emu.faults.script(path_contains="/api/segments", count=10, kind=kind)

    _, error = _failure(duckdb_loader)

    assert isinstance(error, KlaviyoResponseError)
    assert str(error).startswith("Klaviyo answered GET /api/segments")
    assert fragment in str(error)
    # the first answer plus MALFORMED_BODY_RETRIES, not max_retries
    assert emu.stats.total == 3


def test_retries_exhausted(duckdb_loader: Loader, emu: Any, fast_retries: None) -> None:
    emu.faults.script(path_contains="/profiles", count=100, kind="503")

    segment = emu.segment_ids()[0]

    _, error = _failure(duckdb_loader, max_retries=2, segment_ids=[segment])

    assert isinstance(error, KlaviyoRetriesExhaustedError)
    assert "get_segment_profiles" in str(error)
    assert "failed 3 times, last with HTTP 503" in str(error)
    assert emu.stats.requests["get_segment_profiles"] == 3


def test_revision_klaviyo_does_not_know(duckdb_loader: Loader) -> None:
    _, error = _failure(duckdb_loader, revision="2024-06-16")

    assert isinstance(error, KlaviyoRequestError) and error.status == 400
    assert str(error).startswith("Klaviyo rejected GET /api/segments")
    assert "revision" in str(error)
