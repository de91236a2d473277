"""How a GET reaches Klaviyo: keep-alive connections to the account's origin.

Without a proxy, requests go out on the standard library's `http.client` connections, kept
alive between requests and shared by the walk's threads (`OriginConnections`). The same page
through urllib3's pool cost about twice the CPU (232-281 µs a page against 108-112 over the
loopback): urllib3 parses and re-encodes every URL byte by byte (Klaviyo's cursors are
percent-encoded, which takes its slow path), and wraps each answer in objects of its own. Behind a proxy that the environment names
(`HTTPS_PROXY`, `NO_PROXY`, ...), urllib3's proxy manager does the tunnelling
(`ProxiedConnections`). Either way the transport neither retries nor follows redirects: the
client decides that.
"""

from __future__ import annotations

import http.client
import os
import select
import socket
import ssl
from typing import NamedTuple, Protocol
from urllib.parse import urlsplit
from urllib.request import getproxies, proxy_bypass

import certifi
import urllib3

from .. import settings

_FAILURES = (OSError, http.client.HTTPException)
"""What an `http.client` exchange raises when it gets no whole answer."""
_PROXIED_FAILURES = (urllib3.exceptions.HTTPError, *_FAILURES)


class Headers(Protocol):
    """An answer's headers, looked up without regard to case."""

    def get(self, name: str, /) -> str | None: ...


class Answer(NamedTuple):
    """A whole answer: its status, its headers and its body."""

    status: int
    headers: Headers
    body: bytes


class ExchangeFailed(Exception):
    """A GET that got no whole answer.

    Attributes:
        cause: What the connection raised.
        connecting: No connection could be made (refused, unknown host, connect timeout).
        in_body: The status line had come; the body broke off.
    """

    def __init__(self, cause: BaseException, connecting: bool = False, in_body: bool = False):
        super().__init__(str(cause))
        self.cause = cause
        self.connecting = connecting
        self.in_body = in_body


class Transport(Protocol):
    """Sends GETs to one origin; safe to share between threads."""

    def get(self, url: str, headers: dict[str, str]) -> Answer:
        """One GET of `url` and its whole answer.

        Raises:
            ExchangeFailed: The connection could not be made, broke, or timed out.
        """

    def close(self) -> None:
        """Closes the idle connections; later requests open new ones."""


def transport_for(base_url: str, timeout: float) -> Transport:
    """Connections to `base_url`'s origin, through the proxy the environment names for it.

    Proxy variables and the CA bundle variables that `requests` honours
    (`REQUESTS_CA_BUNDLE`, `CURL_CA_BUNDLE`) are read once, here.
    """
    ca_certs = (
        os.environ.get("REQUESTS_CA_BUNDLE") or os.environ.get("CURL_CA_BUNDLE") or certifi.where()
    )
    proxy = proxy_for(base_url)
    if proxy:
        return ProxiedConnections(proxy, timeout, ca_certs)
    return OriginConnections(base_url, timeout, ca_certs)


def proxy_for(base_url: str) -> str | None:
    """The proxy the environment names for `base_url`, or None (none, or `NO_PROXY`)."""
    parts = urlsplit(base_url)
    if parts.hostname and proxy_bypass(parts.hostname):
        return None
    proxies = getproxies()
    return proxies.get(parts.scheme) or proxies.get("all")


class OriginConnections:
    """Keep-alive `http.client` connections to one origin, straight to it.

    A connection is taken for one exchange and put back once its answer was read whole;
    `settings.HTTP_CONNECTIONS_KEPT` idle ones are kept. An idle connection that the server
    closed meanwhile is found before it is used (it reads as ready) and replaced.
    """

    def __init__(self, base_url: str, timeout: float, ca_certs: str) -> None:
        parts = urlsplit(base_url)
        self.origin = f"{parts.scheme}://{parts.netloc.rpartition('@')[2]}"
        self._host = parts.hostname or ""
        self._port = parts.port
        self._timeout = timeout
        self._tls = ssl.create_default_context(cafile=ca_certs) if parts.scheme == "https" else None
        self._idle: list[http.client.HTTPConnection] = []

    def get(self, url: str, headers: dict[str, str]) -> Answer:
        target = self._target(url)
        connection = self._connection()
        try:
            connection.request("GET", target, headers=headers)
            response = connection.getresponse()
        except _FAILURES as exc:
            connection.close()
            raise ExchangeFailed(exc) from None
        try:
            body = response.read()
        except _FAILURES as exc:
            connection.close()
            raise ExchangeFailed(exc, in_body=True) from None
        if response.will_close or len(self._idle) >= settings.HTTP_CONNECTIONS_KEPT:
            connection.close()
        else:
            self._idle.append(connection)
        return Answer(response.status, response.headers, body)

    def close(self) -> None:
        while self._idle:
            try:
                self._idle.pop().close()
            except IndexError:  # another thread took the last one
                break

    def _target(self, url: str) -> str:
        """The path and query of `url`, which must be on the origin."""
        if url.startswith(self.origin) and url.startswith("/", len(self.origin)):
            return url[len(self.origin) :]
        parts = urlsplit(url)  # the origin spelled otherwise, or with user info
        if (parts.hostname, parts.port) != (self._host, self._port):
            raise ValueError(f"{parts.path} is not on {self.origin}")
        return f"{parts.path or '/'}{'?' if parts.query else ''}{parts.query}"

    def _connection(self) -> http.client.HTTPConnection:
        """An idle connection still open, or a new one, connected.

        Raises:
            ExchangeFailed: No connection could be made.
        """
        while self._idle:
            try:
                connection = self._idle.pop()
            except IndexError:  # another thread took the last one
                break
            if connection.sock is not None and not _readable(connection.sock):
                return connection
            connection.close()
        connection = self._new_connection()
        try:
            connection.connect()
        except OSError as exc:
            connection.close()
            # a certificate or handshake failure is a connection made, then refused by TLS
            raise ExchangeFailed(exc, connecting=not isinstance(exc, ssl.SSLError)) from None
        return connection

    def _new_connection(self) -> http.client.HTTPConnection:
        if self._tls is None:
            return http.client.HTTPConnection(self._host, self._port, timeout=self._timeout)
        return http.client.HTTPSConnection(
            self._host, self._port, timeout=self._timeout, context=self._tls
        )


def _readable(sock: socket.socket) -> bool:
    """Whether an idle connection has something to read: the server closed it (or sent
    what no request asked for), so it cannot carry another exchange."""
    poller = select.poll()
    poller.register(sock, select.POLLIN)
    return bool(poller.poll(0))


class ProxiedConnections:
    """Keep-alive connections through a proxy (urllib3's proxy manager), to any origin."""

    def __init__(self, proxy: str, timeout: float, ca_certs: str) -> None:
        self._manager = urllib3.ProxyManager(
            proxy, maxsize=settings.HTTP_CONNECTIONS_KEPT, ca_certs=ca_certs
        )
        self._timeouts = urllib3.Timeout(connect=timeout, read=timeout)

    def get(self, url: str, headers: dict[str, str]) -> Answer:
        try:
            response = self._manager.urlopen(
                "GET",
                url,
                headers=headers,
                timeout=self._timeouts,
                retries=False,
                redirect=False,
                preload_content=False,
            )
        except _PROXIED_FAILURES as exc:
            connecting = isinstance(exc, urllib3.exceptions.ConnectTimeoutError)
            raise ExchangeFailed(exc, connecting=connecting) from None
        try:
            return Answer(response.status, response.headers, response.read())
        except _PROXIED_FAILURES as exc:
            raise ExchangeFailed(exc, in_body=True) from None
        finally:
            response.release_conn()

    def close(self) -> None:
        self._manager.clear()
