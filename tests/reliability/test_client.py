"""The client's own guards: key shape, unreachable hosts, where the key is sent, odd pages."""

from __future__ import annotations

import socket
from typing import Any

import pytest

from klaviyo_emulator import Emulator
from sources.klaviyo import ExtractionStats, settings
from sources.klaviyo.api.client import KlaviyoClient, validate_api_key
from sources.klaviyo.exceptions import (
    KlaviyoConfigError,
    KlaviyoConnectionError,
    KlaviyoResponseError,
    KlaviyoRetriesExhaustedError,
)

KEY = "pk_" + "a1B2" * 8 + "c3"


def _client(base_url: str, key: str = KEY, **options: Any) -> KlaviyoClient:
    arguments = {"timeout": 2.0, "max_retries": 8, "stats": ExtractionStats(), **options}
    return KlaviyoClient(key, base_url, settings.DEFAULT_REVISION, **arguments)


def _closed_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


@pytest.mark.parametrize(
    "key",
    [
        "",
        "pk_",
        "pk_short",
        "AbC123",
        KEY + "x",
        KEY[:-1],
        "sk_" + KEY[3:],
        KEY[:10] + "-" + KEY[11:],
    ],
)
def test_malformed_keys_fail_before_any_request(key: str) -> None:
    with pytest.raises(KlaviyoConfigError) as raised:
        _client("http://127.0.0.1:9", key=key)

    assert str(raised.value).startswith("the Klaviyo API key is malformed")
    assert len(key) < 6 or key not in str(raised.value)


def test_a_well_formed_key_passes() -> None:
    assert validate_api_key(KEY) == KEY


def test_a_host_that_never_answered_fails_fast(fast_retries: None) -> None:
    stats = ExtractionStats()
    base_url = f"http://127.0.0.1:{_closed_port()}"
    client = _client(base_url, stats=stats)

    with pytest.raises(KlaviyoConnectionError) as raised:
        client.get(base_url + "/api/segments", None, "get_segments")

    assert stats.requests == 1 + 3  # UNREACHABLE_RETRIES, not max_retries
    assert str(raised.value) == (
        f"could not connect to {base_url} (connection refused, 4 attempts); "
        "check base_url and the network"
    )


def test_a_host_that_answered_before_gets_the_whole_budget(fast_retries: None) -> None:
    stats = ExtractionStats()
    with Emulator(dataset="tiny") as emu:
        base_url = emu.base_url
        client = _client(base_url, key=emu.api_key, stats=stats, max_retries=5)
        client.get(base_url + "/api/segments", None, "get_segments")
    client.close()

    with pytest.raises(KlaviyoRetriesExhaustedError) as raised:
        client.get(base_url + "/api/segments", None, "get_segments")

    assert not isinstance(raised.value, KlaviyoConnectionError)
    assert stats.requests == 1 + 1 + 5
    assert "failed 6 times, last with connection refused; gave up after 5 retries" in str(
        raised.value
    )


def test_next_links_elsewhere_are_rebased_on_the_configured_origin() -> None:
    client = _client("https://proxy.internal:8443/klaviyo")
    page = {"data": [], "links": {"next": "https://a.klaviyo.com/api/segments?page%5Bcursor%5D=x"}}
    same = {"data": [], "links": {"next": "https://proxy.internal:8443/klaviyo/api/s?a=1"}}
    relative = {"data": [], "links": {"next": "/api/segments?page%5Bcursor%5D=y"}}
    last = {"data": [], "links": {"next": None}}

    url = "https://proxy.internal:8443/klaviyo/api/segments"
    assert client._next_url(page, url) == (
        "https://proxy.internal:8443/klaviyo/api/segments?page%5Bcursor%5D=x"
    )
    assert client._next_url(same, url) == "https://proxy.internal:8443/klaviyo/api/s?a=1"
    assert client._next_url(relative, url) == (
        "https://proxy.internal:8443/klaviyo/api/segments?page%5Bcursor%5D=y"
    )
    assert client._next_url(last, url) is None


def test_a_page_without_links_stops_the_run_instead_of_ending_the_walk() -> None:
    client = _client("https://a.klaviyo.com")

    with pytest.raises(KlaviyoResponseError, match="without links"):
        client._next_url({"data": [{"id": "x"}]}, "https://a.klaviyo.com/api/segments")


def test_the_walk_follows_every_page_under_another_host_name(small_pages: int) -> None:
    with Emulator(dataset="tiny") as emu:
        # the emulator's links name 127.0.0.1; the client is configured with localhost
        base_url = emu.base_url.replace("127.0.0.1", "localhost")
        client = _client(base_url, key=emu.api_key)
        segment = max(emu.segment_ids(), key=lambda s: len(emu.members(s)))
        path = f"/api/segments/{segment}/profiles"
        pages = list(client.paginate(path, {"page[size]": "5"}, "get_segment_profiles", segment))

    assert len(pages) > 1
    assert sum(len(page["data"]) for page in pages) == len(emu.members(segment))
