"""Fault injection: the injector's choices, and every fault kind as a client sees it over HTTP."""

from __future__ import annotations

import uuid
from typing import Any

import pytest
import requests

from klaviyo_emulator.wire.faults import FAULT_KINDS, Fault, FaultInjector

# --- the injector ---


def test_nothing_configured_picks_nothing() -> None:
    assert FaultInjector().pick("/api/segments/") is None


def test_scripted_faults_are_consumed_in_order() -> None:
    faults = FaultInjector()
    faults.script(kind="503", count=2)
    faults.script(kind="drop")
    picked = [faults.pick("/api/segments/") for _ in range(4)]
    assert [fault.kind if fault else None for fault in picked] == ["503", "503", "drop", None]
    assert faults.injected == {"503": 2, "drop": 1}
    assert faults.pending() == 0


def test_scripted_faults_match_on_path() -> None:
    faults = FaultInjector()
    faults.script(kind="500", count=2, path_contains="/profiles")
    assert faults.pick("/api/segments/") is None
    assert faults.pick("/api/segments/abc/profiles/") == Fault("500")
    assert faults.pick("/api/segments/abc/tags/") is None
    assert faults.pick("/api/segments/abc/relationships/profiles") == Fault("500")
    assert faults.pick("/api/segments/abc/profiles/") is None


def test_scripted_before_random() -> None:
    faults = FaultInjector(seed=3)
    faults.probability(kind="502", p=1.0)
    faults.script(kind="504")
    assert faults.pick("/x") == Fault("504")
    assert faults.pick("/x") == Fault("502")


def test_slow_carries_its_delay_only() -> None:
    faults = FaultInjector()
    faults.script(kind="slow")
    faults.script(kind="slow", delay=0.25)
    faults.script(kind="503", delay=9.0)
    assert [faults.pick("/") for _ in range(3)] == [
        Fault("slow", 30.0),
        Fault("slow", 0.25),
        Fault("503", 0.0),
    ]


@pytest.mark.parametrize("p, expected", [(0.0, 0), (1.0, 200)])
def test_probability_extremes(p: float, expected: int) -> None:
    faults = FaultInjector(seed=1)
    faults.probability(kind="503", p=p)
    assert sum(faults.pick("/api/segments/") is not None for _ in range(200)) == expected


def test_probability_is_reproducible_per_seed() -> None:
    def sequence(seed: int) -> list[bool]:
        faults = FaultInjector(seed=seed)
        faults.probability(kind="503", p=0.3, path_contains="/profiles")
        return [faults.pick(f"/api/segments/s/profiles/?page={i}") is not None for i in range(300)]

    assert sequence(7) == sequence(7)
    assert sequence(7) != sequence(8)
    hits = sum(sequence(7))
    assert 40 < hits < 140  # about 90 of 300


def test_probability_respects_path() -> None:
    faults = FaultInjector(seed=1)
    faults.probability(kind="503", p=1.0, path_contains="/tags")
    assert faults.pick("/api/segments/") is None
    assert faults.pick("/api/segments/a/tags/") == Fault("503")


def test_clear_forgets_everything() -> None:
    faults = FaultInjector()
    faults.script(kind="500", count=5)
    faults.probability(kind="503", p=1.0)
    faults.clear()
    assert faults.pick("/") is None
    assert faults.pending() == 0


@pytest.mark.parametrize(
    "call",
    [
        lambda f: f.script(kind="418"),
        lambda f: f.script(kind="503", count=-1),
        lambda f: f.script(kind="slow", delay=-1.0),
        lambda f: f.probability(kind="503", p=1.5),
        lambda f: f.probability(kind="nope", p=0.5),
    ],
)
def test_bad_configuration_is_rejected(call: Any) -> None:
    with pytest.raises(ValueError):
        call(FaultInjector())


def test_fault_properties() -> None:
    assert Fault("503-html").status == 503 and Fault("503-html").is_html
    assert Fault("html-200").status == 200 and Fault("html-200").is_html
    assert Fault("json-200-not-jsonapi").status == 200
    assert Fault("drop").status is None and not Fault("drop").is_html
    assert {Fault(kind).status for kind in FAULT_KINDS} >= {500, 502, 503, 504, 429, 200, None}


# --- over HTTP ---


def _url(emu: Any) -> str:
    return f"{emu.base_url}/api/segments/{emu.segment_ids()[0]}/profiles/"


def _get(emu: Any, url: str, timeout: float = 10) -> requests.Response:
    return requests.get(
        url,
        headers={
            "Authorization": f"Klaviyo-API-Key {emu.api_key}",
            "revision": "2024-06-15",
            "accept": "application/vnd.api+json",
        },
        timeout=timeout,
    )


@pytest.mark.parametrize("kind", ["500", "502", "503", "504"])
def test_http_json_server_errors(emu: Any, kind: str) -> None:
    emu.faults.script(kind=kind, path_contains="/profiles")
    response = _get(emu, _url(emu))
    assert response.status_code == int(kind)
    assert response.headers["Content-Type"].startswith("application/vnd.api+json")
    error = response.json()["errors"][0]
    assert error["status"] == int(kind)
    uuid.UUID(error["id"])
    assert {"code", "title", "detail"} <= set(error)
    assert _get(emu, _url(emu)).status_code == 200  # one fault only


@pytest.mark.parametrize("kind", ["500-html", "502-html", "503-html", "504-html"])
def test_http_html_error_pages(emu: Any, kind: str) -> None:
    emu.faults.script(kind=kind)
    response = _get(emu, _url(emu))
    assert response.status_code == int(kind[:3])
    assert response.headers["Content-Type"].startswith("text/html")
    assert response.text.lstrip().lower().startswith(("<!doctype html", "<html"))
    with pytest.raises(ValueError):
        response.json()


def test_http_429_fault_has_retry_after(emu: Any) -> None:
    emu.faults.script(kind="429")
    response = _get(emu, _url(emu))
    assert response.status_code == 429
    assert int(response.headers["Retry-After"]) >= 0
    assert "RateLimit-Remaining" not in response.headers
    assert response.json()["errors"][0]["code"] == "throttled"


def test_http_drop_closes_without_answer(emu: Any) -> None:
    emu.faults.script(kind="drop")
    with pytest.raises(requests.ConnectionError):
        _get(emu, _url(emu))
    assert _get(emu, _url(emu)).status_code == 200


def test_http_truncate_sends_half_a_body(emu: Any) -> None:
    emu.faults.script(kind="truncate")
    with pytest.raises((requests.exceptions.ChunkedEncodingError, requests.ConnectionError)):
        _get(emu, _url(emu))
    assert _get(emu, _url(emu)).status_code == 200


def test_http_slow_answers_late_but_correctly(emu: Any) -> None:
    emu.faults.script(kind="slow", delay=1.5)
    with pytest.raises(requests.exceptions.ReadTimeout):
        _get(emu, _url(emu), timeout=0.3)
    emu.faults.script(kind="slow", delay=0.05)
    response = _get(emu, _url(emu))
    assert response.status_code == 200
    assert "data" in response.json()


def test_http_html_200(emu: Any) -> None:
    emu.faults.script(kind="html-200")
    response = _get(emu, _url(emu))
    assert response.status_code == 200
    assert response.headers["Content-Type"].startswith("text/html")
    with pytest.raises(ValueError):
        response.json()


def test_http_json_200_not_jsonapi(emu: Any) -> None:
    emu.faults.script(kind="json-200-not-jsonapi")
    response = _get(emu, _url(emu))
    assert response.status_code == 200
    body = response.json()
    assert "data" not in body and "errors" not in body


def test_http_fault_only_on_matching_path(emu: Any) -> None:
    emu.faults.script(kind="503", count=2, path_contains="/relationships/profiles")
    assert _get(emu, _url(emu)).status_code == 200
    assert _get(emu, f"{emu.base_url}/api/segments/").status_code == 200
    relationships = f"{emu.base_url}/api/segments/{emu.segment_ids()[0]}/relationships/profiles/"
    assert [_get(emu, relationships).status_code for _ in range(3)] == [503, 503, 200]


def test_http_probability_is_reproducible_for_a_seed() -> None:
    from klaviyo_emulator import Emulator

    def statuses(seed: int) -> list[int]:
        with Emulator(dataset="tiny", seed=seed) as emulator:
            emulator.faults.probability(kind="503", p=0.4)
            return [_get(emulator, _url(emulator)).status_code for _ in range(40)]

    first = statuses(5)
    assert first == statuses(5)
    assert set(first) == {200, 503}


def test_http_clear_stops_faults(emu: Any) -> None:
    emu.faults.probability(kind="502", p=1.0)
    assert _get(emu, _url(emu)).status_code == 502
    emu.faults.clear()
    assert _get(emu, _url(emu)).status_code == 200
