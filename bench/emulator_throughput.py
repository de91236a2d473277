"""Profile pages per second the emulator serves: prints one JSON line of figures.

The emulator runs in its own process (latency 0, rate limits off). Clients walk
`/api/segments/{id}/profiles/?page[size]=100` by following `links.next` on keep-alive
connections. One client walks every segment once on a fresh emulator (cold: every profile
document is rendered for the first time), then once more (warm: documents come from the
emulator's cache), then several client threads walk segments at once for a few seconds.

A client has to cost less than the emulator, or the rate measures the client: the clients use
`http.client` and decode only each page's `links` (and count its profiles), about 0.2 ms a
page where `requests` plus a full JSON decode costs over 1 ms. The emulator's own CPU time per
page (from /proc) is reported beside each rate, and `pages_per_s_requests_client_cold` shows
a fresh emulator walked by one `requests` client that decodes every page in full.
"""

from __future__ import annotations

import argparse
import http.client
import sys
import threading
import time
from urllib.parse import urlsplit

import orjson
import requests
from support import emit, emulator_process, machine, peak_rss_mb, process_cpu_seconds

REVISION = "2026-07-15"
PAGE_SIZE = 100
PROFILE_MARK = b'{"type":"profile",'
LINKS_MARK = b'"links":'


class PageClient:
    """One keep-alive connection that walks profile pages, reading only what it must."""

    def __init__(self, base_url: str, api_key: str) -> None:
        address = urlsplit(base_url)
        self._base_url = base_url
        host = address.hostname or "127.0.0.1"
        self._connection = http.client.HTTPConnection(host, address.port, timeout=30)
        self._headers = {
            "Authorization": f"Klaviyo-API-Key {api_key}",
            "revision": REVISION,
            "Accept": "application/vnd.api+json",
        }

    def walk(self, segment_id: str, deadline: float) -> tuple[int, int]:
        """Follow links.next through a segment until the end or the deadline; (pages, profiles)."""
        pages = profiles = 0
        target: str | None = f"/api/segments/{segment_id}/profiles/?page[size]={PAGE_SIZE}"
        while target and time.perf_counter() < deadline:
            self._connection.request("GET", target, headers=self._headers)
            response = self._connection.getresponse()
            body = response.read()
            if response.status != 200:
                raise RuntimeError(f"the emulator answered {response.status}")
            links = orjson.loads(body[body.rindex(LINKS_MARK) + len(LINKS_MARK) : -1])
            pages += 1
            profiles += body.count(PROFILE_MARK)
            target = links["next"][len(self._base_url) :] if links["next"] else None
        return pages, profiles

    def close(self) -> None:
        self._connection.close()


def one_pass(
    base_url: str, api_key: str, segment_ids: list[str], pid: int, seconds: float
) -> dict[str, float]:
    """One client walks every segment once (or until `seconds` ran out)."""
    client = PageClient(base_url, api_key)
    deadline = time.perf_counter() + seconds
    emulator_cpu, client_cpu = process_cpu_seconds(pid), time.process_time()
    started = time.perf_counter()
    pages = profiles = 0
    for segment_id in segment_ids:
        walked = client.walk(segment_id, deadline)
        pages, profiles = pages + walked[0], profiles + walked[1]
    client.close()
    figures = _rates(pages, profiles, time.perf_counter() - started, pid, emulator_cpu)
    client_cpu = time.process_time() - client_cpu
    figures["client_cpu_ms_per_page"] = round(1000 * client_cpu / pages, 3) if pages else 0.0
    return figures


def run_clients(
    base_url: str, api_key: str, segment_ids: list[str], pid: int, clients: int, seconds: float
) -> dict[str, float]:
    """`clients` threads, each walking segments round-robin for `seconds`."""
    totals = {"pages": 0, "profiles": 0}
    lock = threading.Lock()
    deadline = time.perf_counter() + seconds

    def walk_segments(offset: int) -> None:
        client = PageClient(base_url, api_key)
        turn = offset
        while time.perf_counter() < deadline:
            pages, profiles = client.walk(segment_ids[turn % len(segment_ids)], deadline)
            turn += clients
            with lock:
                totals["pages"] += pages
                totals["profiles"] += profiles
        client.close()

    emulator_cpu, started = process_cpu_seconds(pid), time.perf_counter()
    threads = [threading.Thread(target=walk_segments, args=(n,)) for n in range(clients)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    elapsed = time.perf_counter() - started
    return _rates(totals["pages"], totals["profiles"], elapsed, pid, emulator_cpu)


def requests_client_pass(base_url: str, api_key: str, segment_ids: list[str]) -> float:
    """Pages per second of one `requests` client decoding every page in full, one pass."""
    session = requests.Session()
    session.headers.update({"Authorization": f"Klaviyo-API-Key {api_key}", "revision": REVISION})
    pages, started = 0, time.perf_counter()
    for segment_id in segment_ids:
        url: str | None = f"{base_url}/api/segments/{segment_id}/profiles/?page[size]={PAGE_SIZE}"
        while url:
            response = session.get(url, timeout=30)
            response.raise_for_status()
            url = orjson.loads(response.content)["links"]["next"]
            pages += 1
    session.close()
    return round(pages / (time.perf_counter() - started), 1)


def _rates(
    pages: int, profiles: int, elapsed: float, pid: int, emulator_cpu: float
) -> dict[str, float]:
    cpu = process_cpu_seconds(pid) - emulator_cpu
    return {
        "pages_per_s": round(pages / elapsed, 1),
        "profiles_per_s": round(profiles / elapsed, 1),
        "pages": pages,
        "emulator_cpu_ms_per_page": round(1000 * cpu / pages, 3) if pages else 0.0,
    }


def large_preset_figures() -> dict[str, float | int | None]:
    """Start-up time, size and peak memory of an emulator serving the `large` preset."""
    started = time.perf_counter()
    with emulator_process("--dataset", "large") as emulator:
        ready = time.perf_counter() - started
        session = requests.Session()
        session.headers.update(
            {"Authorization": f"Klaviyo-API-Key {emulator.api_key}", "revision": REVISION}
        )
        memberships = 0
        next_url: str | None = f"{emulator.base_url}/api/segments"
        while next_url:
            document = session.get(next_url, timeout=30).json()
            for item in document["data"]:
                segment = session.get(
                    f"{emulator.base_url}/api/segments/{item['id']}",
                    params={"additional-fields[segment]": "profile_count"},
                    timeout=30,
                ).json()
                memberships += segment["data"]["attributes"]["profile_count"]
            next_url = document["links"]["next"]
        peak_mb = peak_rss_mb(emulator.pid)
    return {
        "large_start_s": round(ready, 2),
        "large_memberships": memberships,
        "large_peak_rss_mb": peak_mb,
    }


def segment_ids_of(base_url: str, api_key: str) -> list[str]:
    headers = {"Authorization": f"Klaviyo-API-Key {api_key}", "revision": REVISION}
    listing = requests.get(f"{base_url}/api/segments", headers=headers, timeout=30).json()
    return [item["id"] for item in listing["data"]]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--profiles", type=int, default=50_000, help="profiles (50,000)")
    parser.add_argument(
        "--memberships",
        type=int,
        default=100_000,
        help="memberships over the 10 segments (100,000; the warm pass needs them all cached)",
    )
    parser.add_argument(
        "--seconds", type=float, default=10.0, help="limit of each pass, length of the last run"
    )
    parser.add_argument("--clients", type=int, default=2, help="client threads of the last run")
    parser.add_argument("--skip-large", action="store_true", help="skip the `large` preset")
    args = parser.parse_args(argv)
    sizes = ["--profiles", str(args.profiles), "--memberships", str(args.memberships)]
    with emulator_process("--dataset", "demo", *sizes) as emulator:
        base_url, api_key, pid = emulator.base_url, emulator.api_key, emulator.pid
        segment_ids = segment_ids_of(base_url, api_key)
        cold = one_pass(base_url, api_key, segment_ids, pid, args.seconds)
        warm = one_pass(base_url, api_key, segment_ids, pid, args.seconds)
        several = run_clients(base_url, api_key, segment_ids, pid, args.clients, args.seconds)
    with emulator_process("--dataset", "demo", *sizes) as emulator:
        segment_ids = segment_ids_of(emulator.base_url, emulator.api_key)
        requests_cold = requests_client_pass(emulator.base_url, emulator.api_key, segment_ids)
    emit(
        {
            "bench": "emulator_throughput",
            "page_size": PAGE_SIZE,
            "profiles": args.profiles,
            "memberships": args.memberships,
            "pages_per_s_1_client_cold": cold["pages_per_s"],
            "emulator_cpu_ms_per_page_cold": cold["emulator_cpu_ms_per_page"],
            "client_cpu_ms_per_page_cold": cold["client_cpu_ms_per_page"],
            "pages_cold": cold["pages"],
            "pages_per_s_1_client": warm["pages_per_s"],
            "profiles_per_s_1_client": warm["profiles_per_s"],
            "emulator_cpu_ms_per_page_warm": warm["emulator_cpu_ms_per_page"],
            "clients": args.clients,
            f"pages_per_s_{args.clients}_clients": several["pages_per_s"],
            f"profiles_per_s_{args.clients}_clients": several["profiles_per_s"],
            "pages_per_s_requests_client_cold": requests_cold,
            **({} if args.skip_large else large_preset_figures()),
            **machine(),
        }
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
