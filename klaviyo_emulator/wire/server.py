"""The threaded HTTP/1.1 server (keep-alive) that feeds requests to the dispatcher."""

from __future__ import annotations

import contextlib
import socket
import sys
import threading
import time
from email.utils import formatdate
from http import HTTPStatus
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

from .dispatch import Dispatcher, Response
from .faults import Delivery

IDLE_TIMEOUT_SECONDS = 120
SERVER_NAME = "klaviyo-emulator"
MAX_HEADER_LINE = 65536
MAX_HEADERS = 100
FAST_VERSIONS = (b"HTTP/1.1", b"HTTP/1.0")


class EmulatorServer(ThreadingHTTPServer):
    """Serves one dispatcher; remembers open connections so that stopping closes them."""

    daemon_threads = True
    allow_reuse_address = True
    request_queue_size = 128

    def __init__(self, address: tuple[str, int], dispatcher: Dispatcher | None = None) -> None:
        super().__init__(address, RequestHandler)
        self.dispatcher = dispatcher
        self.connections: set[socket.socket] = set()
        self.connections_lock = threading.Lock()

    def handle_error(self, request: Any, client_address: Any) -> None:
        """A client that goes away mid-request (a killed run, a timeout) is normal: one line,
        no traceback. Anything else is shown in full, as the standard library does."""
        error = sys.exc_info()[1]
        if not isinstance(error, ConnectionError):
            super().handle_error(request, client_address)
            return
        peer = ":".join(str(part) for part in client_address[:2])
        print(f"{SERVER_NAME}: {peer} disconnected ({type(error).__name__})", file=sys.stderr)

    def close_connections(self) -> None:
        with self.connections_lock:
            connections = list(self.connections)
        for connection in connections:
            with contextlib.suppress(OSError):
                connection.shutdown(socket.SHUT_RDWR)


class RequestHandler(BaseHTTPRequestHandler):
    """Reads a request, asks the dispatcher, writes the answer in one send."""

    protocol_version = "HTTP/1.1"
    server_version = SERVER_NAME
    timeout = IDLE_TIMEOUT_SECONDS
    server: EmulatorServer
    raw_requestline: bytes
    fields: dict[str, str]  # request headers by lower-case name

    def setup(self) -> None:
        super().setup()
        # Headers and body leave in one write; no Nagle delay on small answers either way.
        self.connection.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        with self.server.connections_lock:
            self.server.connections.add(self.connection)

    def finish(self) -> None:
        with self.server.connections_lock:
            self.server.connections.discard(self.connection)
        with contextlib.suppress(OSError):
            super().finish()

    def log_message(self, format: str, *args: Any) -> None:  # noqa: A002
        """Silent: per-request logging costs throughput and could echo request details."""

    def parse_request(self) -> bool:
        """Parses a well-formed HTTP/1.x request head without the `email` package.

        The standard library parses headers as an e-mail message, which costs more than
        answering a cached page; anything unusual still goes through it, with its errors.
        """
        words = self.raw_requestline.split()
        if len(words) != 3 or words[2] not in FAST_VERSIONS or words[1].startswith(b"//"):
            if not super().parse_request():
                return False
            self.fields = {name.lower(): value for name, value in self.headers.items()}
            return True
        self.command, self.path, self.request_version = (w.decode("latin-1") for w in words)
        self.requestline = str(self.raw_requestline, "latin-1").rstrip("\r\n")
        self.close_connection = words[2] != b"HTTP/1.1"
        fields = self._read_fields()
        if fields is None:
            return False
        self.fields = fields
        connection = fields.get("connection", "").lower()
        if connection == "close":
            self.close_connection = True
        elif connection == "keep-alive":
            self.close_connection = False
        if fields.get("expect", "").lower() == "100-continue" and words[2] == b"HTTP/1.1":
            return self.handle_expect_100()
        return True

    def _read_fields(self) -> dict[str, str] | None:
        fields: dict[str, str] = {}
        for _ in range(MAX_HEADERS + 1):
            line = self.rfile.readline(MAX_HEADER_LINE + 1)
            if len(line) > MAX_HEADER_LINE:
                self.send_error(HTTPStatus.REQUEST_HEADER_FIELDS_TOO_LARGE, "Line too long")
                return None
            if line in (b"\r\n", b"\n", b""):
                return fields
            name, colon, value = line.decode("latin-1").partition(":")
            if colon:
                fields[name.strip().lower()] = value.strip()
        self.send_error(HTTPStatus.REQUEST_HEADER_FIELDS_TOO_LARGE, "Too many headers")
        return None

    def _dispatch(self) -> None:
        length = int(self.fields.get("content-length") or 0)
        body = self.rfile.read(length) if length > 0 else b""
        dispatcher = self.server.dispatcher
        assert dispatcher is not None
        response = dispatcher.handle(self.command, self.path, self.fields, body)
        self._write(response)

    do_GET = do_POST = do_PATCH = do_DELETE = do_PUT = do_HEAD = do_OPTIONS = _dispatch

    def _write(self, response: Response) -> None:
        if response.delivery is Delivery.DROP:
            self.close_connection = True
            self._abort()
            return
        status = response.status
        lines = [
            f"HTTP/1.1 {status} {_reason(status)}",
            f"Server: {SERVER_NAME}",
            f"Date: {_http_date()}",
        ]
        body = response.body
        if status != 204:
            lines.append(f"Content-Type: {response.content_type}")
            lines.append(f"Content-Length: {len(body)}")
        lines.extend(f"{name}: {value}" for name, value in response.headers.items())
        truncate = response.delivery is Delivery.TRUNCATE
        if truncate or self.close_connection:
            self.close_connection = True
            lines.append("Connection: close")
        head = ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1")
        if self.command == "HEAD":
            body = b""
        if truncate:
            self.wfile.write(head + body[: len(body) // 2])
            self._abort()
            return
        self.wfile.write(head + body)

    def _abort(self) -> None:
        with contextlib.suppress(OSError):
            self.connection.shutdown(socket.SHUT_RDWR)


_date_header: tuple[int, str] = (0, "")


def _http_date() -> str:
    """The Date header value, formatted once a second."""
    global _date_header
    now = int(time.time())
    if _date_header[0] != now:
        _date_header = (now, formatdate(now, usegmt=True))
    return _date_header[1]


def _reason(status: int) -> str:
    try:
        return HTTPStatus(status).phrase
    except ValueError:
        return "Unknown"
