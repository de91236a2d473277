"""Profile pages per second the emulator serves: prints one JSON line.

The emulator runs in its own process (latency 0, rate limits off); clients walk
`/api/segments/{id}/profiles/?page[size]=100` by following `links.next` on keep-alive sessions:
one client on a fresh emulator (cold: every profile document is generated), one client again
(warm), then several client threads walking different segments at once.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager

import orjson
import requests

REVISION = "2026-07-15"
PAGE_SIZE = 100


@contextmanager
def emulator_process(*options: str) -> Iterator[tuple[str, str, int]]:
    """Start `python -m klaviyo_emulator` on a free port; yield (base_url, api_key, pid)."""
    command = [sys.executable, "-m", "klaviyo_emulator", "--port", "0", *options]
    process = subprocess.Popen(
        command, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True
    )
    try:
        assert process.stdout is not None
        values: dict[str, str] = {}
        while len(values) < 2:
            line = process.stdout.readline()
            if not line:
                raise RuntimeError("the emulator exited before announcing its address")
            name, _, value = line.strip().partition("=")
            values[name] = value
        yield values["base_url"], values["api_key"], process.pid
    finally:
        process.terminate()
        process.wait(timeout=10)


def walk(session: requests.Session, url: str, deadline: float) -> tuple[int, int]:
    """Follow links.next from `url` until the end or the deadline; (pages, profiles)."""
    pages = profiles = 0
    next_url: str | None = url
    while next_url and time.perf_counter() < deadline:
        response = session.get(next_url, timeout=30)
        response.raise_for_status()
        document = orjson.loads(response.content)
        pages += 1
        profiles += len(document["data"])
        next_url = document["links"]["next"]
    return pages, profiles


def run_clients(
    base_url: str, api_key: str, segment_ids: list[str], clients: int, seconds: float
) -> dict[str, float]:
    """`clients` threads, each walking segments round-robin for `seconds`."""
    totals = {"pages": 0, "profiles": 0}
    lock = threading.Lock()
    deadline = time.perf_counter() + seconds

    def client(offset: int) -> None:
        session = _session(api_key)
        turn = offset
        while time.perf_counter() < deadline:
            segment_id = segment_ids[turn % len(segment_ids)]
            turn += clients
            url = f"{base_url}/api/segments/{segment_id}/profiles/?page[size]={PAGE_SIZE}"
            pages, profiles = walk(session, url, deadline)
            with lock:
                totals["pages"] += pages
                totals["profiles"] += profiles

    started = time.perf_counter()
    threads = [threading.Thread(target=client, args=(n,)) for n in range(clients)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    elapsed = time.perf_counter() - started
    return {
        "pages_per_s": round(totals["pages"] / elapsed, 1),
        "profiles_per_s": round(totals["profiles"] / elapsed, 1),
        "pages": totals["pages"],
    }


def large_preset_figures() -> dict[str, float | int | None]:
    """Start-up time, size and peak memory of an emulator serving the `large` preset."""
    started = time.perf_counter()
    with emulator_process("--dataset", "large") as (base_url, api_key, pid):
        ready = time.perf_counter() - started
        session = _session(api_key)
        memberships = 0
        next_url: str | None = f"{base_url}/api/segments"
        while next_url:
            document = session.get(next_url, timeout=30).json()
            for item in document["data"]:
                segment = session.get(
                    f"{base_url}/api/segments/{item['id']}",
                    params={"additional-fields[segment]": "profile_count"},
                    timeout=30,
                ).json()
                memberships += segment["data"]["attributes"]["profile_count"]
            next_url = document["links"]["next"]
        peak_mb = _peak_rss_mb(pid)
    return {
        "large_start_s": round(ready, 2),
        "large_memberships": memberships,
        "large_peak_rss_mb": peak_mb,
    }


def _peak_rss_mb(pid: int) -> float | None:
    try:
        with open(f"/proc/{pid}/status", encoding="ascii") as status:
            for line in status:
                if line.startswith("VmHWM:"):
                    return round(int(line.split()[1]) / 1024, 1)
    except OSError:
        return None
    return None


def _session(api_key: str) -> requests.Session:
    session = requests.Session()
    session.headers.update(
        {
            "Authorization": f"Klaviyo-API-Key {api_key}",
            "revision": REVISION,
            "Accept": "application/vnd.api+json",
        }
    )
    return session


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--profiles", type=int, default=50_000)
    parser.add_argument("--memberships", type=int, default=100_000)
    parser.add_argument("--seconds", type=float, default=5.0)
    parser.add_argument("--clients", type=int, default=2)
    args = parser.parse_args()
    sizes = ["--profiles", str(args.profiles), "--memberships", str(args.memberships)]
    with emulator_process("--dataset", "demo", *sizes) as (base_url, api_key, _):
        session = _session(api_key)
        listing = session.get(f"{base_url}/api/segments", timeout=30).json()
        segment_ids = [item["id"] for item in listing["data"]]
        # The first walk renders every profile document; later walks reuse cached fragments.
        cold = run_clients(base_url, api_key, segment_ids, 1, args.seconds)
        warm = run_clients(base_url, api_key, segment_ids, 1, args.seconds)
        several = run_clients(base_url, api_key, segment_ids, args.clients, args.seconds)
    figures = {
        "bench": "emulator_throughput",
        "page_size": PAGE_SIZE,
        "profiles": args.profiles,
        "memberships": args.memberships,
        "seconds_per_run": args.seconds,
        "pages_per_s_1_client_cold": cold["pages_per_s"],
        "pages_per_s_1_client": warm["pages_per_s"],
        "profiles_per_s_1_client": warm["profiles_per_s"],
        "clients": args.clients,
        f"pages_per_s_{args.clients}_clients": several["pages_per_s"],
        f"profiles_per_s_{args.clients}_clients": several["profiles_per_s"],
        **large_preset_figures(),
        "cpu_count": os.cpu_count(),
    }
    print(json.dumps(figures))


if __name__ == "__main__":
    main()
