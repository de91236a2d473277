"""The client's own guards: key shape, unreachable hosts, where the key is sent, odd pages;
its transport: keep-alive connections to the origin, or through the proxy the environment names."""

from __future__ import annotations

import http.client
import socket
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import urlsplit

import pytest

from klaviyo_emulator import Emulator
from sources.klaviyo import ExtractionStats, settings
from sources.klaviyo.api import transport
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


def test_a_tls_handshake_that_fails_is_retried_within_max_retries(fast_retries: None) -> None:
    stats = ExtractionStats()
    with Emulator(dataset="tiny") as emu:
        # the emulator speaks plain HTTP: the handshake fails after the connection was made
        base_url = emu.base_url.replace("http://", "https://")
        client = _client(base_url, key=emu.api_key, stats=stats, max_retries=1)
        with pytest.raises(KlaviyoRetriesExhaustedError) as raised:
            client.get(base_url + "/api/segments", None, "get_segments")
        client.close()

    assert not isinstance(raised.value, KlaviyoConnectionError)
    assert stats.requests == 2
    assert "failed 2 times, last with SSLError; gave up after 1 retry" in str(raised.value)


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


def test_requests_go_to_the_origin_with_path_and_query() -> None:
    connections = transport.OriginConnections("https://Proxy.internal:8443/klaviyo", 2.0, "")
    assert connections.origin == "https://Proxy.internal:8443"
    target = connections._target("https://Proxy.internal:8443/klaviyo/api/segments?a=1")
    assert target == "/klaviyo/api/segments?a=1"
    # the origin spelled otherwise, or with user info, is the same origin
    assert connections._target("https://u@proxy.internal:8443/api/s?b=2") == "/api/s?b=2"
    with pytest.raises(ValueError, match="is not on"):
        connections._target("https://proxy.internal:8444/klaviyo/api/segments")


def test_the_environment_names_the_proxy(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in ("HTTPS_PROXY", "https_proxy", "NO_PROXY", "no_proxy", "ALL_PROXY", "all_proxy"):
        monkeypatch.delenv(name, raising=False)
    assert transport.proxy_for("https://a.klaviyo.com") is None
    assert isinstance(
        transport.transport_for("https://a.klaviyo.com", 2.0), transport.OriginConnections
    )
    monkeypatch.setenv("HTTPS_PROXY", "http://proxy.internal:3128")
    assert transport.proxy_for("https://a.klaviyo.com") == "http://proxy.internal:3128"
    assert transport.proxy_for("http://127.0.0.1:8080") is None
    proxied = transport.transport_for("https://a.klaviyo.com", 2.0)
    assert isinstance(proxied, transport.ProxiedConnections)
    monkeypatch.setenv("NO_PROXY", "klaviyo.com")
    assert transport.proxy_for("https://a.klaviyo.com") is None


PROXY_VARIABLES = ("HTTP_PROXY", "http_proxy", "NO_PROXY", "no_proxy", "ALL_PROXY", "all_proxy")


def test_keep_alive_connections_are_reused_and_replaced_once_closed() -> None:
    with Emulator(dataset="tiny") as emu:
        headers = {"Authorization": f"Klaviyo-API-Key {emu.api_key}", "revision": "2026-07-15"}
        connections = transport.OriginConnections(emu.base_url, 5.0, "")
        url = emu.base_url + "/api/segments"
        assert connections.get(url, headers).status == 200
        (kept,) = connections._idle
        assert connections.get(url, headers).status == 200
        assert connections._idle == [kept]
        # an idle connection with nothing more to send to it (as after the server closed it)
        assert kept.sock is not None
        kept.sock.shutdown(socket.SHUT_RD)
        assert connections.get(url, headers).status == 200
        (fresh,) = connections._idle
        assert fresh is not kept
        assert kept.sock is None
        connections.close()
        assert connections._idle == []


def test_a_proxy_the_environment_names_carries_every_request(
    monkeypatch: pytest.MonkeyPatch, small_pages: int
) -> None:
    for name in PROXY_VARIABLES:
        monkeypatch.delenv(name, raising=False)
    with Emulator(dataset="tiny") as emu, _forward_proxy() as (proxy_url, seen):
        monkeypatch.setenv("HTTP_PROXY", proxy_url)
        client = _client(emu.base_url, key=emu.api_key)
        assert isinstance(client._transport, transport.ProxiedConnections)
        segment = max(emu.segment_ids(), key=lambda s: len(emu.members(s)))
        path = f"/api/segments/{segment}/profiles"
        pages = list(client.paginate(path, {"page[size]": "5"}, "get_segment_profiles", segment))
        client.close()
        members, base_url = len(emu.members(segment)), emu.base_url

    assert len(pages) > 1
    assert sum(len(page["data"]) for page in pages) == members
    # the proxy was asked for each page by its whole URL, the key passed on to the emulator
    assert len(seen) == len(pages)
    assert all(url.startswith(f"{base_url}{path}") for url in seen)


@contextmanager
def _forward_proxy() -> Iterator[tuple[str, list[str]]]:
    """A plain HTTP forward proxy on loopback; yields its URL and the URLs it was asked for."""
    seen: list[str] = []

    class Forward(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def do_GET(self) -> None:  # noqa: N802 (http.server's name)
            seen.append(self.path)
            target = urlsplit(self.path)
            upstream = http.client.HTTPConnection(target.hostname, target.port, timeout=10)
            hop = {"host", "proxy-connection", "connection", "keep-alive"}
            headers = {k: v for k, v in self.headers.items() if k.lower() not in hop}
            upstream.request(
                "GET", self.path[len(f"{target.scheme}://{target.netloc}") :], headers=headers
            )
            answer = upstream.getresponse()
            body = answer.read()
            upstream.close()
            self.send_response(answer.status)
            for name in (
                "Content-Type",
                "RateLimit-Limit",
                "RateLimit-Remaining",
                "RateLimit-Reset",
            ):
                if answer.getheader(name):
                    self.send_header(name, answer.getheader(name) or "")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, format: str, *args: Any) -> None:  # noqa: A002 (http.server's name)
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Forward)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}", seen
    finally:
        server.shutdown()
        server.server_close()
