"""A client that disconnects mid-request (a killed run) is normal: one line, no traceback."""

from __future__ import annotations

import socket
import struct
import time
from urllib.parse import urlsplit

import pytest
import requests

from klaviyo_emulator import Emulator


def _reset_mid_request(emu: Emulator) -> None:
    """Send a request and reset the connection before the (delayed) answer is written."""
    address = urlsplit(emu.base_url)
    with socket.create_connection((address.hostname, address.port), timeout=5) as connection:
        connection.sendall(
            b"GET /api/segments HTTP/1.1\r\nHost: emulator\r\nrevision: 2026-07-15\r\n"
            b"Authorization: Klaviyo-API-Key " + emu.api_key.encode() + b"\r\n\r\n"
        )
        # linger 0: close sends a reset, as the kernel does for a killed process with unread data
        connection.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))


def test_a_client_gone_mid_request_is_one_line(capsys: pytest.CaptureFixture[str]) -> None:
    with Emulator(dataset="tiny", latency=0.3) as emu:
        _reset_mid_request(emu)
        output = ""
        deadline = time.monotonic() + 10
        while "disconnected" not in output and time.monotonic() < deadline:
            time.sleep(0.05)
            output += capsys.readouterr().err
        # the emulator goes on serving
        headers = {"Authorization": f"Klaviyo-API-Key {emu.api_key}", "revision": "2026-07-15"}
        response = requests.get(f"{emu.base_url}/api/segments", headers=headers, timeout=10)
        assert response.status_code == 200
    output += capsys.readouterr().err
    assert "Traceback" not in output
    lines = output.splitlines()
    assert len(lines) == 1, output
    assert lines[0].startswith("klaviyo-emulator: 127.0.0.1:")
    assert lines[0].endswith(
        ("disconnected (ConnectionResetError)", "disconnected (BrokenPipeError)")
    )
