"""What the benchmarks share: the emulator in its own process, process figures, output rules.

Every benchmark prints exactly one JSON line of figures on stdout; everything else goes to
stderr. The emulator always runs as `python -m klaviyo_emulator` in a separate process, so it
never competes with the code being measured for the same interpreter lock.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import urlencode, urlsplit

STARTUP_TIMEOUT_SECONDS = 60


@dataclass
class EmulatorProcess:
    """A running `python -m klaviyo_emulator`; `report` is filled in once it has stopped."""

    base_url: str
    api_key: str
    pid: int
    report: dict[str, Any] = field(default_factory=dict)


@contextlib.contextmanager
def emulator_process(*options: str) -> Iterator[EmulatorProcess]:
    """Start the emulator on a free port with `options`; stop it (SIGTERM) on exit.

    After the block, `report` holds the emulator's request counts and rate-limit windows.
    """
    with tempfile.TemporaryDirectory(prefix="klaviyo-bench-") as folder:
        stats_file = Path(folder) / "emulator-stats.json"
        command = [sys.executable, "-m", "klaviyo_emulator", "--port", "0", *options]
        command += ["--stats-file", str(stats_file)]
        process = subprocess.Popen(
            command, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True
        )
        emulator: EmulatorProcess | None = None
        try:
            values = _announced(process)
            emulator = EmulatorProcess(values["base_url"], values["api_key"], process.pid)
            yield emulator
        finally:
            process.terminate()
            process.wait(timeout=30)
            if emulator is not None and stats_file.exists():
                emulator.report = json.loads(stats_file.read_text(encoding="utf-8"))


def _announced(process: subprocess.Popen[str]) -> dict[str, str]:
    assert process.stdout is not None
    values: dict[str, str] = {}
    deadline = time.monotonic() + STARTUP_TIMEOUT_SECONDS
    while len(values) < 2 and time.monotonic() < deadline:
        line = process.stdout.readline()
        if not line:
            raise RuntimeError("the emulator exited before announcing its address")
        name, _, value = line.strip().partition("=")
        values[name] = value
    if len(values) < 2:
        raise RuntimeError("the emulator did not announce its address in time")
    return values


def process_cpu_seconds(pid: int | None = None) -> float:
    """User plus system CPU seconds used so far by a process (this one by default)."""
    with open(f"/proc/{pid or 'self'}/stat", encoding="ascii") as stat:
        fields = stat.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def peak_rss_mb(pid: int | None = None) -> float | None:
    """Peak resident memory of a process (this one by default), from /proc (VmHWM)."""
    try:
        with open(f"/proc/{pid or 'self'}/status", encoding="ascii") as status:
            for line in status:
                if line.startswith("VmHWM:"):
                    return round(int(line.split()[1]) / 1024, 1)
    except OSError:
        return None
    return None


def machine() -> dict[str, Any]:
    """What the figures were measured on, and how busy it was when the run started."""
    model = ""
    with contextlib.suppress(OSError), open("/proc/cpuinfo", encoding="utf-8") as cpuinfo:
        for line in cpuinfo:
            if line.startswith("model name"):
                model = line.split(":", 1)[1].strip()
                break
    return {
        "cpu_count": os.cpu_count(),
        "cpu_model": model,
        "load_average_1m": round(os.getloadavg()[0], 2),
    }


@contextlib.contextmanager
def dlt_workspace() -> Iterator[Path]:
    """A temporary folder for dlt's pipelines and the DuckDB file; no telemetry."""
    with tempfile.TemporaryDirectory(prefix="klaviyo-bench-dlt-") as folder:
        path = Path(folder)
        previous = {name: os.environ.get(name) for name in _DLT_ENVIRONMENT}
        os.environ.update(
            {"XDG_DATA_HOME": str(path / "xdg"), "RUNTIME__DLTHUB_TELEMETRY": "false"}
        )
        try:
            yield path
        finally:
            for name, value in previous.items():
                if value is None:
                    os.environ.pop(name, None)
                else:
                    os.environ[name] = value


_DLT_ENVIRONMENT = ("XDG_DATA_HOME", "RUNTIME__DLTHUB_TELEMETRY")


def scale_client_windows(scale: float | None) -> None:
    """Shortens the source's rate-limit windows like the emulator's (None: no client limits).

    The emulator's `--rate-limits SCALE` keeps Klaviyo's counts and makes its windows SCALE
    times shorter. The source's own limiter has to see the same windows, or it would pace a
    scaled account at the real rate (and a limit-free one at Klaviyo's burst rate).
    """
    from sources.klaviyo import settings

    real = _REAL_WINDOWS.setdefault(
        "seconds", (settings.BURST_WINDOW_SECONDS, settings.STEADY_WINDOW_SECONDS)
    )
    factor = 1e9 if scale is None else scale
    settings.BURST_WINDOW_SECONDS = real[0] / factor
    settings.STEADY_WINDOW_SECONDS = real[1] / factor


_REAL_WINDOWS: dict[str, tuple[float, float]] = {}


@dataclass
class FloorWalk:
    """What the cheapest possible client spent on every profile page of the account.

    Attributes:
        cpu_s: CPU seconds of the walking thread (user and system).
        seconds: Wall seconds of the walk.
        pages: Profile pages read.
        memberships: Members listed on them.
    """

    cpu_s: float
    seconds: float
    pages: int
    memberships: int


def floor_walk(base_url: str, api_key: str) -> FloorWalk:
    """Reads every segment's profile pages the cheapest way: the CPU floor of a walk.

    One thread, one pooled urllib3 connection, `orjson.loads` of each page and nothing else:
    the same requests as the source's walk (`EmulatorPages`), so its CPU per membership is
    what any client of these pages pays at least. Only the profile pages are timed, not the
    segment list.
    """
    emulator = EmulatorPages(base_url, api_key)
    segment_ids = emulator.segment_ids()
    walked = members = 0
    cpu, started = time.thread_time(), time.perf_counter()
    for segment_id in segment_ids:
        for _, page in emulator.profile_pages(segment_id):
            walked += 1
            members += len(page["data"])
    cpu, seconds = time.thread_time() - cpu, time.perf_counter() - started
    emulator.close()
    return FloorWalk(cpu, seconds, walked, members)


class EmulatorPages:
    """An emulator's pages, asked for as the source's walk asks (revision, page size, sort,
    `links.next`), on one pooled urllib3 connection."""

    def __init__(self, base_url: str, api_key: str) -> None:
        import urllib3

        from sources.klaviyo import settings

        origin = urlsplit(base_url)
        self._pool = urllib3.HTTPConnectionPool(
            origin.hostname or "127.0.0.1", origin.port, maxsize=1, retries=False, timeout=60.0
        )
        self._headers = {
            "Authorization": f"Klaviyo-API-Key {api_key}",
            "revision": settings.DEFAULT_REVISION,
            "Accept": settings.ACCEPT,
        }

    def segment_ids(self) -> list[str]:
        """Every segment's id, from the segment list."""
        from sources.klaviyo import settings
        from sources.klaviyo.api import endpoints

        pages = self._pages(endpoints.segments(settings.DEFAULT_REVISION))
        return [segment["id"] for _, page in pages for segment in page["data"]]

    def profile_pages(self, segment_id: str) -> Iterator[tuple[bytes, Any]]:
        """Every profile page of a segment: its body, and the body decoded by `orjson`."""
        from sources.klaviyo import settings
        from sources.klaviyo.api import endpoints

        params = endpoints.profile_params(None, ())
        revision = settings.DEFAULT_REVISION
        return self._pages(endpoints.segment_profiles(revision, segment_id, params, None))

    def close(self) -> None:
        self._pool.close()

    def _pages(self, first: Any) -> Iterator[tuple[bytes, Any]]:
        import orjson

        target: str | None = f"{first.path}?{urlencode(first.params)}"
        while target:
            body = self._pool.request("GET", target, headers=self._headers).data
            page = orjson.loads(body)
            yield body, page
            following = page["links"].get("next")
            target = _path_and_query(following) if following else None


def _path_and_query(url: str) -> str:
    parts = urlsplit(url)
    return f"{parts.path}?{parts.query}" if parts.query else parts.path


def log(message: str) -> None:
    """A progress or diagnostic line, on stderr."""
    print(message, file=sys.stderr, flush=True)


def emit(figures: dict[str, Any]) -> None:
    """The benchmark's one line of figures, on stdout."""
    print(json.dumps(figures), flush=True)


def finish(figures: dict[str, Any]) -> int:
    """Prints the figures; the exit code says whether any run failed."""
    emit(figures)
    return 1 if figures["failed_runs"] else 0


def bench_pipeline(folder: Path, name: str) -> Any:
    """A pipeline of the benchmark `name` whose DuckDB file and state live in `folder`."""
    from pipelines.klaviyo_segments_pipeline import make_pipeline

    return make_pipeline(
        duckdb_file=str(folder / f"{name}.duckdb"),
        pipelines_dir=str(folder / "pipelines"),
        pipeline_name=f"klaviyo_{name}",
    )


LARGE_MEMBERSHIPS = 1_050_000
"""Memberships of the emulator's `large` preset."""


def large_preset_parser(description: str | None) -> argparse.ArgumentParser:
    """An argument parser with `--memberships`: how much of the `large` preset to load."""
    parser = argparse.ArgumentParser(
        description=description, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument(
        "--memberships",
        type=int,
        default=0,
        help=f"memberships of the `large` preset to load (default all {LARGE_MEMBERSHIPS:,})",
    )
    return parser
