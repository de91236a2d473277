"""Profile rendering: the fast byte path, the fragment cache, and the request-head parser."""

from __future__ import annotations

import hashlib
import socket
from urllib.parse import urlsplit

import orjson
import pytest
import requests

from klaviyo_emulator import Emulator
from klaviyo_emulator.backend.profiles import ProfileFactory
from klaviyo_emulator.spec.resources import PROFILE_DEFAULT_FIELDS

REVISION = "2026-07-15"
# sha256 over (id, attributes JSON) of profiles 0-1999 of seed 1, from the dict-built renderer
# that the byte renderer replaced: generated data must not drift.
SEED_1_PROFILES_SHA256 = "d99bf7e57a42c866656586137256fbcdb92e2aa2f8cafad5b75cce216a8c112b"


def _session(emu: Emulator) -> requests.Session:
    session = requests.Session()
    session.headers.update(
        {"Authorization": f"Klaviyo-API-Key {emu.api_key}", "revision": REVISION}
    )
    return session


def _pages(session: requests.Session, url: str) -> list[bytes]:
    bodies: list[bytes] = []
    next_url: str | None = url
    while next_url:
        response = session.get(next_url)
        assert response.status_code == 200, response.text
        bodies.append(response.content)
        next_url = orjson.loads(response.content)["links"]["next"]
    return bodies


def test_generated_profiles_are_unchanged() -> None:
    factory = ProfileFactory(1, 5000)
    digest = hashlib.sha256()
    for index in range(2000):
        profile_id, created = factory.identity(index)
        assert created == factory.created_epoch(index)
        assert profile_id == factory.profile_id(index)
        digest.update(profile_id.encode())
        digest.update(factory.attributes_json(index, created))
    assert digest.hexdigest() == SEED_1_PROFILES_SHA256


@pytest.mark.parametrize("seed", [1, 2, 99])
def test_attributes_json_is_the_documented_object(seed: int) -> None:
    factory = ProfileFactory(seed, 3000)
    for index in range(0, 3000, 7):
        encoded = factory.attributes_json(index)
        document = orjson.loads(encoded)
        assert tuple(document) == PROFILE_DEFAULT_FIELDS
        assert document == factory.attributes(index)
        # orjson writes the same bytes back: compact, no escapes beyond what JSON needs.
        assert orjson.dumps(document) == encoded


def test_default_shape_equals_the_full_sparse_fieldset() -> None:
    with Emulator(dataset="demo", seed=3, profiles=400, memberships=900) as emu:
        session = _session(emu)
        segment_id = max(emu.segment_ids(), key=lambda s: len(emu.members(s)))
        base = f"{emu.base_url}/api/segments/{segment_id}/profiles"
        fields = ",".join([*PROFILE_DEFAULT_FIELDS, "joined_group_at"])
        fast = [orjson.loads(b)["data"] for b in _pages(session, f"{base}?page[size]=100")]
        generic = [
            orjson.loads(b)["data"]
            for b in _pages(session, f"{base}?page[size]=100&fields[profile]={fields}")
        ]
        assert fast == generic
        assert sum(map(len, fast)) == len(emu.members(segment_id))


def test_cached_pages_equal_fresh_pages_and_updates_are_never_stale() -> None:
    with Emulator(dataset="demo", seed=4, profiles=300, memberships=700) as emu:
        session = _session(emu)
        segment_id = emu.segment_ids()[0]
        url = f"{emu.base_url}/api/segments/{segment_id}/profiles?page[size]=50"
        first = _pages(session, url)
        assert _pages(session, url) == first
        profile_id = orjson.loads(first[0])["data"][0]["id"]
        emu.update_profile(profile_id, first_name="Renamed")
        served = orjson.loads(_pages(session, url)[0])["data"][0]
        assert served["id"] == profile_id
        assert served["attributes"]["first_name"] == "Renamed"


def _raw_exchange(emu: Emulator, head: bytes) -> bytes:
    address = urlsplit(emu.base_url)
    with socket.create_connection((address.hostname, address.port), timeout=5) as connection:
        connection.sendall(head)
        received = b""
        while chunk := connection.recv(65536):
            received += chunk
    return received


def test_request_heads_keep_http_semantics(emu: Emulator) -> None:
    auth = f"Authorization: Klaviyo-API-Key {emu.api_key}\r\nrevision: {REVISION}\r\n".encode()
    # HTTP/1.0 closes after the answer (the read ends); header names are case-blind.
    shouted = f"AUTHORIZATION: Klaviyo-API-Key {emu.api_key}\r\nREVISION: {REVISION}\r\n"
    answer = _raw_exchange(emu, b"GET /api/segments HTTP/1.0\r\n" + shouted.encode() + b"\r\n")
    assert answer.startswith(b"HTTP/1.1 200 OK\r\n")
    assert answer.endswith(b"}")
    answer = _raw_exchange(
        emu, b"GET /api/segments HTTP/1.1\r\n" + auth + b"Connection: close\r\n\r\n"
    )
    assert answer.startswith(b"HTTP/1.1 200 OK\r\n") and b"Connection: close" in answer
    too_many = b"".join(b"X-Filler-%d: x\r\n" % n for n in range(101))
    answer = _raw_exchange(emu, b"GET /api/segments HTTP/1.1\r\n" + too_many + b"\r\n")
    assert answer.startswith(b"HTTP/1.1 431 ")
    answer = _raw_exchange(emu, b"GET /api/segments HTTP/2.0\r\n\r\n")
    assert b" 505 " in answer.split(b"\r\n")[0]
