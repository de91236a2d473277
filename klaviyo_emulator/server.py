"""The threaded HTTP/1.1 server (keep-alive) that feeds requests to the dispatcher."""

from __future__ import annotations

import contextlib
import socket
import threading
from email.utils import formatdate
from http import HTTPStatus
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

from .dispatch import Dispatcher, Response

IDLE_TIMEOUT_SECONDS = 120
SERVER_NAME = "klaviyo-emulator"


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

    def _dispatch(self) -> None:
        length = int(self.headers.get("Content-Length") or 0)
        body = self.rfile.read(length) if length > 0 else b""
        headers = {name.lower(): value for name, value in self.headers.items()}
        dispatcher = self.server.dispatcher
        assert dispatcher is not None
        response = dispatcher.handle(self.command, self.path, headers, body)
        self._write(response)

    do_GET = do_POST = do_PATCH = do_DELETE = do_PUT = do_HEAD = do_OPTIONS = _dispatch

    def _write(self, response: Response) -> None:
        if response.delivery == "drop":
            self.close_connection = True
            self._abort()
            return
        status = response.status
        lines = [
            f"HTTP/1.1 {status} {_reason(status)}",
            f"Server: {SERVER_NAME}",
            f"Date: {formatdate(usegmt=True)}",
        ]
        body = response.body
        if status != 204:
            lines.append(f"Content-Type: {response.content_type}")
            lines.append(f"Content-Length: {len(body)}")
        lines.extend(f"{name}: {value}" for name, value in response.headers.items())
        if response.delivery == "truncate" or self.close_connection:
            self.close_connection = True
            lines.append("Connection: close")
        head = ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1")
        if self.command == "HEAD":
            body = b""
        if response.delivery == "truncate":
            self.wfile.write(head + body[: len(body) // 2])
            self._abort()
            return
        self.wfile.write(head + body)

    def _abort(self) -> None:
        with contextlib.suppress(OSError):
            self.connection.shutdown(socket.SHUT_RDWR)


def _reason(status: int) -> str:
    try:
        return HTTPStatus(status).phrase
    except ValueError:
        return "Unknown"
