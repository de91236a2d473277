"""Rate limits of API-NOTES §10: tiers, buckets, windows, Retry-After, and 429s over HTTP."""

from __future__ import annotations

import threading
import time
from typing import Any

import pytest
import requests
from hypothesis import given, settings
from hypothesis import strategies as st

from klaviyo_emulator.wire.ratelimit import Decision, RateLimiter, limits_for, parse_mode

NO_QUERY: dict[str, str] = {}
PROFILE_COUNT = {"additional-fields[segment]": "profile_count"}


class FakeClock:
    """A monotonic clock the test moves by hand."""

    def __init__(self, start: float = 1000.25) -> None:
        self.now = start

    def __call__(self) -> float:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += seconds


def _limiter(mode: str | float = "real", start: float = 1000.25) -> tuple[RateLimiter, FakeClock]:
    clock = FakeClock(start)
    return RateLimiter(mode, clock=clock), clock


def _burst(
    limiter: RateLimiter,
    count: int,
    operation: str = "get_segment_profiles",
    revision: str = "2024-06-15",
    query: dict[str, str] = NO_QUERY,
    account: str = "acct",
) -> list[Decision]:
    return [limiter.check(account, operation, revision, query) for _ in range(count)]


# --- tiers per operation and revision ---


@pytest.mark.parametrize(
    "operation, revision, burst, steady",
    [
        ("get_segments", "2024-06-15", 75, 700),
        ("get_segment", "2024-06-15", 75, 700),
        ("get_segment_profiles", "2024-06-15", 75, 700),
        ("get_segment_relationships_profiles", "2025-10-15", 75, 700),
        ("get_segments", "2026-01-15", 75, 750),
        ("get_profiles_for_segment", "2026-07-15", 75, 750),
        ("get_profile_ids_for_segment", "2026-07-15.pre", 75, 750),
        ("get_segment_tags", "2024-06-15", 3, 60),
        ("get_segment_relationships_tags", "2026-07-15", 3, 60),
        ("get_tags_for_segment", "2026-07-15", 3, 60),
        ("delete_segment", "2024-06-15", 3, 60),
        ("create_segment", "2024-06-15", 1, 15),
        ("update_segment", "2026-07-15", 1, 15),
    ],
)
def test_tiers(operation: str, revision: str, burst: int, steady: int) -> None:
    (_, limit), *extra = limits_for(operation, revision, NO_QUERY)
    assert (limit.burst, limit.steady) == (burst, steady)
    assert extra == []


def test_create_and_update_have_a_daily_cap() -> None:
    for operation in ("create_segment", "update_segment"):
        assert limits_for(operation, "2024-06-15", NO_QUERY)[0][1].daily == 100
    assert limits_for("get_segments", "2024-06-15", NO_QUERY)[0][1].daily is None


def test_profile_count_adds_the_strict_bucket() -> None:
    buckets = limits_for(
        "get_segment", "2024-06-15", {"additional-fields[segment]": "profile_count"}
    )
    assert [(limit.burst, limit.steady) for _, limit in buckets] == [(75, 700), (1, 15)]
    # only get_segment has it
    assert len(limits_for("get_segments", "2024-06-15", PROFILE_COUNT)) == 1


@pytest.mark.parametrize(
    "mode, scale",
    [("off", None), ("OFF", None), ("real", 1.0), (10.0, 10.0), ("2.5", 2.5), (1, 1.0)],
)
def test_parse_mode(mode: str | float, scale: float | None) -> None:
    assert parse_mode(mode) == scale


@pytest.mark.parametrize("mode", ["fast", "", 0, -1.0, "nan", float("inf")])
def test_parse_mode_rejects(mode: str | float) -> None:
    with pytest.raises(ValueError):
        parse_mode(mode)


# --- windows ---


def test_off_always_allows_with_tier_headers() -> None:
    limiter, _ = _limiter("off")
    decisions = _burst(limiter, 1000, "get_segment_tags")
    assert all(decision.allowed for decision in decisions)
    assert decisions[-1].headers == {
        "RateLimit-Limit": "60",
        "RateLimit-Remaining": "59",
        "RateLimit-Reset": "60",
    }
    decisions[-1].headers["X"] = "y"  # callers may add headers without harm
    assert "X" not in limiter.check("acct", "get_segment_tags", "2024-06-15", NO_QUERY).headers


def test_burst_window_of_the_l_tier() -> None:
    limiter, clock = _limiter()
    decisions = _burst(limiter, 76)
    assert [d.allowed for d in decisions] == [True] * 75 + [False]
    denied = decisions[-1]
    assert denied.retry_after == 1
    assert denied.headers == {"Retry-After": "1"}
    assert decisions[0].headers == {
        "RateLimit-Limit": "700",
        "RateLimit-Remaining": "699",
        "RateLimit-Reset": "20",  # the steady window ends at 1020 s, 19.75 s away
    }
    assert decisions[74].headers["RateLimit-Remaining"] == "625"
    clock.advance(denied.retry_after)
    assert limiter.check("acct", "get_segment_profiles", "2024-06-15", NO_QUERY).allowed


def test_rate_limit_reset_counts_to_the_steady_window_end() -> None:
    limiter, clock = _limiter(start=1020.0)  # a steady window starts at 1020
    first = limiter.check("acct", "get_segments", "2024-06-15", NO_QUERY)
    assert first.headers["RateLimit-Reset"] == "60"
    clock.advance(45.5)
    later = limiter.check("acct", "get_segments", "2024-06-15", NO_QUERY)
    assert later.headers["RateLimit-Reset"] == "15"
    assert later.headers["RateLimit-Remaining"] == "698"


def test_steady_window_and_its_retry_after() -> None:
    limiter, clock = _limiter("real", start=1020.0)
    allowed = 0
    for _ in range(20):  # 20 seconds of 40 requests each: 700 fit
        allowed += sum(d.allowed for d in _burst(limiter, 40))
        clock.advance(1.0)
    assert allowed == 700
    denied = limiter.check("acct", "get_segment_profiles", "2024-06-15", NO_QUERY)
    assert not denied.allowed
    assert denied.retry_after == 40  # the minute started at 1020, now is 1040
    clock.advance(denied.retry_after - 0.5)
    assert not limiter.check("acct", "get_segment_profiles", "2024-06-15", NO_QUERY).allowed
    clock.advance(0.5)
    assert limiter.check("acct", "get_segment_profiles", "2024-06-15", NO_QUERY).allowed


def test_steady_750_from_2026_01_15() -> None:
    limiter, clock = _limiter("real", start=1020.0)
    allowed = 0
    for _ in range(15):
        allowed += sum(d.allowed for d in _burst(limiter, 75, revision="2026-01-15"))
        clock.advance(1.0)
    assert allowed == 750


def test_s_tier_tags_and_independent_buckets() -> None:
    limiter, _ = _limiter()
    assert [d.allowed for d in _burst(limiter, 4, "get_segment_tags")] == [True] * 3 + [False]
    # another operation, and another account, have their own buckets
    assert all(d.allowed for d in _burst(limiter, 3, "get_segment_relationships_tags"))
    assert all(d.allowed for d in _burst(limiter, 3, "get_segment_tags", account="other"))
    assert _burst(limiter, 1, "get_segments")[0].allowed


def test_profile_count_bucket_is_shared_and_strict() -> None:
    limiter, clock = _limiter(start=1020.0)
    first, second = _burst(limiter, 2, "get_segment", query=PROFILE_COUNT)
    assert first.allowed and not second.allowed
    assert first.headers["RateLimit-Limit"] == "15"  # the tighter bucket is reported
    assert first.headers["RateLimit-Remaining"] == "14"
    # a rejected request consumes nothing: plain get_segment still has 74 of 75 this second
    assert sum(d.allowed for d in _burst(limiter, 75, "get_segment")) == 74
    allowed = 1
    for _ in range(30):
        clock.advance(1.0)
        allowed += sum(d.allowed for d in _burst(limiter, 2, "get_segment", query=PROFILE_COUNT))
    assert allowed == 15


def test_daily_cap_of_create_segment() -> None:
    limiter, clock = _limiter(start=0.5)
    created = 0
    for _ in range(300):
        created += sum(d.allowed for d in _burst(limiter, 1, "create_segment"))
        clock.advance(4.0)  # 15 per minute fits
    assert created == 100
    denied = limiter.check("acct", "create_segment", "2024-06-15", NO_QUERY)
    assert not denied.allowed
    assert denied.retry_after == pytest.approx(86400 - clock.now, abs=1)
    clock.advance(denied.retry_after)
    assert limiter.check("acct", "create_segment", "2024-06-15", NO_QUERY).allowed


def test_scaled_mode_shrinks_windows_not_counts() -> None:
    limiter, clock = _limiter(10.0, start=102.0)  # scaled time 1020: a fresh minute
    assert sum(d.allowed for d in _burst(limiter, 80)) == 75
    denied = _burst(limiter, 1)[0]
    assert denied.retry_after == 1  # 0.1 s, rounded up to a whole second
    clock.advance(0.1)
    assert sum(d.allowed for d in _burst(limiter, 80)) == 75
    first = _burst(limiter, 1, "get_segment_tags")[0]
    assert first.headers["RateLimit-Reset"] == "6"  # 60 s / 10, minus 0.1 s, rounded up


def test_set_mode_switches_and_forgets() -> None:
    limiter, _ = _limiter()
    assert not all(d.allowed for d in _burst(limiter, 4, "get_segment_tags"))
    limiter.set_mode("off")
    assert limiter.scale is None
    assert all(d.allowed for d in _burst(limiter, 100, "get_segment_tags"))
    limiter.set_mode(5.0)
    assert [d.allowed for d in _burst(limiter, 4, "get_segment_tags")] == [True] * 3 + [False]


def test_thread_safety_counts_exactly() -> None:
    limiter, _ = _limiter(start=1020.0)
    results: list[bool] = []
    lock = threading.Lock()

    def worker() -> None:
        decisions = _burst(limiter, 50, "get_segment_tags")
        with lock:
            results.extend(d.allowed for d in decisions)

    threads = [threading.Thread(target=worker) for _ in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert len(results) == 400
    assert sum(results) == 3


@settings(max_examples=60, deadline=None)
@given(
    scale=st.sampled_from([1.0, 3.0, 10.0, 60.0]),
    start=st.floats(min_value=0, max_value=10_000, allow_nan=False),
    steps=st.lists(
        st.tuples(
            st.sampled_from(["get_segment_profiles", "get_segment_tags", "create_segment"]),
            st.floats(min_value=0, max_value=0.05),
        ),
        min_size=1,
        max_size=250,
    ),
)
def test_waiting_retry_after_always_succeeds(
    scale: float, start: float, steps: list[tuple[str, float]]
) -> None:
    limiter, clock = _limiter(scale, start=start)
    for operation, pause in steps:
        clock.advance(pause)
        decision = limiter.check("acct", operation, "2024-06-15", NO_QUERY)
        if not decision.allowed:
            assert decision.retry_after >= 1
            assert set(decision.headers) == {"Retry-After"}
            clock.advance(decision.retry_after)
            assert limiter.check("acct", operation, "2024-06-15", NO_QUERY).allowed


# --- over HTTP ---


def _session(emu: Any, revision: str = "2024-06-15") -> requests.Session:
    session = requests.Session()
    session.headers.update(
        {
            "Authorization": f"Klaviyo-API-Key {emu.api_key}",
            "revision": revision,
            "accept": "application/vnd.api+json",
        }
    )
    return session


def _until_throttled(session: requests.Session, url: str, limit: int = 300) -> requests.Response:
    for _ in range(limit):
        response = session.get(url, timeout=10)
        if response.status_code == 429:
            return response
        assert response.status_code == 200, response.text
    raise AssertionError(f"no 429 in {limit} requests")


@pytest.mark.parametrize("revision, steady", [("2024-06-15", "700"), ("2026-07-15", "750")])
def test_http_headers_on_success(emu: Any, revision: str, steady: str) -> None:
    session = _session(emu, revision)
    segment_id = emu.segment_ids()[0]
    response = session.get(f"{emu.base_url}/api/segments/{segment_id}/profiles/", timeout=10)
    assert response.status_code == 200
    assert response.headers["RateLimit-Limit"] == steady
    assert int(response.headers["RateLimit-Remaining"]) <= int(steady)
    assert 1 <= int(response.headers["RateLimit-Reset"]) <= 60
    assert "Retry-After" not in response.headers
    tags = session.get(f"{emu.base_url}/api/segments/{segment_id}/tags/", timeout=10)
    assert tags.headers["RateLimit-Limit"] == "60"


def test_http_scaled_burst_gets_429_and_retry_after_is_enough(emu: Any) -> None:
    emu.set_rate_limits(10.0)
    session = _session(emu)
    segment_id = emu.segment_ids()[0]
    url = f"{emu.base_url}/api/segments/{segment_id}/?additional-fields%5Bsegment%5D=profile_count"
    throttled = _until_throttled(session, url)
    for header in ("RateLimit-Limit", "RateLimit-Remaining", "RateLimit-Reset"):
        assert header not in throttled.headers
    retry_after = int(throttled.headers["Retry-After"])
    assert retry_after >= 1
    assert throttled.headers["Content-Type"].startswith("application/vnd.api+json")
    error = throttled.json()["errors"][0]
    assert (error["status"], error["code"]) == (429, "throttled")
    assert error["title"] == "Request was throttled."
    assert error["detail"].startswith("Request was throttled. Expected available in")
    assert emu.stats.throttled >= 1
    time.sleep(retry_after)
    assert session.get(url, timeout=10).status_code == 200


def test_http_real_limits_on_tags(emu: Any) -> None:
    emu.set_rate_limits("real")
    session = _session(emu, "2026-07-15")
    url = f"{emu.base_url}/api/segments/{emu.segment_ids()[0]}/relationships/tags"
    throttled = _until_throttled(session, url)
    retry_after = int(throttled.headers["Retry-After"])
    time.sleep(retry_after)
    recovered = session.get(url, timeout=10)
    assert recovered.status_code == 200
    assert recovered.headers["RateLimit-Limit"] == "60"
    emu.set_rate_limits("off")
    assert all(session.get(url, timeout=10).status_code == 200 for _ in range(10))
