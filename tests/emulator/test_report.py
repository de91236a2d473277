"""`Emulator.report()` and `--stats-file`: request counts and how full each rate-limit window was."""

from __future__ import annotations

import json
import signal
import subprocess
import sys
from pathlib import Path

import requests

from klaviyo_emulator import Emulator

REVISION = "2026-07-15"


def _get(base_url: str, api_key: str, path: str) -> int:
    headers = {"Authorization": f"Klaviyo-API-Key {api_key}", "revision": REVISION}
    return requests.get(f"{base_url}{path}", headers=headers, timeout=10).status_code


def test_report_counts_each_steady_window() -> None:
    # Scale 6000: a 10 ms steady window of 750 and a burst of 75 per 1/6000 s.
    with Emulator(dataset="tiny", rate_limits=6000) as emu:
        segment_id = emu.segment_ids()[0]
        statuses = [
            _get(emu.base_url, emu.api_key, f"/api/segments/{segment_id}/profiles")
            for _ in range(30)
        ]
        report = emu.report()
    assert report["rate_limit_scale"] == 6000
    assert report["requests"]["get_segment_profiles"] == 30
    windows = [w for w in report["steady_windows"] if w["bucket"] == "get_segment_profiles"]
    assert sum(w["allowed"] for w in windows) == statuses.count(200)
    assert sum(w["rejected"] for w in windows) == statuses.count(429) == report["throttled"]
    assert all(w["seconds"] == 60 / 6000 for w in windows)
    assert [w["start"] for w in windows] == sorted(w["start"] for w in windows)


def test_report_without_limits_has_no_windows(emu: Emulator) -> None:
    assert _get(emu.base_url, emu.api_key, "/api/segments") == 200
    report = emu.report()
    assert report["rate_limit_scale"] is None
    assert report["steady_windows"] == []
    assert report["statuses"] == {"200": 1}


def test_stats_file_is_written_on_stop(tmp_path: Path) -> None:
    stats_file = tmp_path / "stats.json"
    command = [sys.executable, "-m", "klaviyo_emulator", "--port", "0", "--dataset", "tiny"]
    command += ["--rate-limits", "real", "--stats-file", str(stats_file)]
    process = subprocess.Popen(command, stdout=subprocess.PIPE, text=True)
    try:
        assert process.stdout is not None
        values = dict(process.stdout.readline().strip().partition("=")[::2] for _ in range(2))
        assert _get(values["base_url"], values["api_key"], "/api/segments") == 200
        process.send_signal(signal.SIGTERM)
        assert process.wait(timeout=10) == 0
    finally:
        if process.poll() is None:
            process.kill()
        process.communicate(timeout=10)
    report = json.loads(stats_file.read_text())
    assert report["requests"] == {"get_segments": 1}
    assert [w["allowed"] for w in report["steady_windows"]] == [1]
    assert values["api_key"] not in stats_file.read_text()


def test_requests_are_counted_per_segment(emu: Emulator) -> None:
    first, second = emu.segment_ids()[:2]
    for path in (f"/api/segments/{first}/profiles", f"/api/segments/{first}", "/api/segments"):
        assert _get(emu.base_url, emu.api_key, path) == 200
    assert _get(emu.base_url, emu.api_key, f"/api/segments/{second}/tags") == 200
    assert dict(emu.stats.requests_by_segment) == {first: 2, second: 1}
    emu.stats.reset()
    assert not emu.stats.requests_by_segment
