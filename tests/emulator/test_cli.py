"""`python -m klaviyo_emulator` and the `klaviyo-emulator` console script."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest
import requests

STARTUP_TIMEOUT = 30


def _start(command: list[str]) -> tuple[subprocess.Popen[str], str, str]:
    process = subprocess.Popen(
        command, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=dict(os.environ)
    )
    assert process.stdout is not None
    values: dict[str, str] = {}
    while len(values) < 2:
        line = process.stdout.readline()
        if not line:
            process.kill()
            _, stderr = process.communicate(timeout=STARTUP_TIMEOUT)
            pytest.fail(f"the emulator exited early: {stderr}")
        name, _, value = line.strip().partition("=")
        values[name] = value
    return process, values["base_url"], values["api_key"]


def _serves(base_url: str, api_key: str) -> None:
    headers = {"Authorization": f"Klaviyo-API-Key {api_key}", "revision": "2024-06-15"}
    response = requests.get(f"{base_url}/api/segments/", headers=headers, timeout=10)
    assert response.status_code == 200
    assert response.headers["Content-Type"] == "application/vnd.api+json"
    assert len(response.json()["data"]) == 6


@pytest.mark.parametrize("stop_signal", [signal.SIGTERM, signal.SIGINT])
def test_module_starts_prints_address_serves_and_stops(stop_signal: signal.Signals) -> None:
    command = [sys.executable, "-m", "klaviyo_emulator", "--port", "0", "--dataset", "tiny"]
    process, base_url, api_key = _start(command)
    try:
        assert base_url.startswith("http://127.0.0.1:")
        assert api_key.startswith("pk_") and len(api_key) == 37
        _serves(base_url, api_key)
        process.send_signal(stop_signal)
        assert process.wait(timeout=10) == 0
    finally:
        if process.poll() is None:
            process.kill()
        process.communicate(timeout=10)
    with pytest.raises(requests.ConnectionError):
        requests.get(f"{base_url}/api/segments/", timeout=5)


def test_console_script_with_options() -> None:
    script = Path(sys.executable).with_name("klaviyo-emulator")
    if not script.exists():
        pytest.skip("the console script is not installed in this environment")
    command = [
        str(script),
        "--port",
        "0",
        "--dataset",
        "tiny",
        "--seed",
        "1",
        "--rate-limits",
        "real",
        "--latency",
        "0.01",
        "--jitter",
        "0.005",
        "--fault-rate",
        "0.0",
    ]
    process, base_url, api_key = _start(command)
    try:
        _serves(base_url, api_key)
        process.terminate()
        assert process.wait(timeout=10) == 0
    finally:
        if process.poll() is None:
            process.kill()
        process.communicate(timeout=10)


def test_invalid_arguments_exit_with_usage() -> None:
    result = subprocess.run(
        [sys.executable, "-m", "klaviyo_emulator", "--dataset", "huge"],
        capture_output=True,
        text=True,
        timeout=30,
    )
    assert result.returncode == 2
    assert "--dataset" in result.stderr
