"""Deterministic identifiers in Klaviyo's formats: profile ULIDs, segment ids, tag UUIDs, API keys."""

from __future__ import annotations

import hashlib

CROCKFORD = "0123456789ABCDEFGHJKMNPQRSTVWXYZ"
_PAIRS = tuple(CROCKFORD[i >> 5] + CROCKFORD[i & 31] for i in range(1024))
_PERSON = b"klaviyo-emu"
ALPHANUMERIC = "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789"


def digest(seed: int, kind: str, number: int, size: int = 16) -> bytes:
    """Stable pseudo-random bytes for (seed, kind, number)."""
    return hashlib.blake2b(
        f"{seed}:{kind}:{number}".encode(), digest_size=size, person=_PERSON
    ).digest()


class Digester:
    """`digest(seed, kind, number, size)` for one (seed, kind, size), at half the cost.

    The hash state after `seed:kind:` is kept and copied, so each number hashes only its digits.
    """

    def __init__(self, seed: int, kind: str, size: int) -> None:
        self._prefix = hashlib.blake2b(f"{seed}:{kind}:".encode(), digest_size=size, person=_PERSON)

    def __call__(self, number: int) -> bytes:
        state = self._prefix.copy()
        state.update(b"%d" % number)
        return state.digest()


def ulid(created_ms: int, randomness: bytes) -> str:
    """A 26-character ULID from a millisecond timestamp and 10 bytes of randomness.

    Profiles are numbered in creation order with strictly increasing `created_ms`, so their ULIDs
    sort like the profile indexes; the membership order relies on that.
    """
    v = (created_ms << 80) | int.from_bytes(randomness, "big")
    # 130 bits as 13 ten-bit groups, each two characters; unrolled because it runs per profile.
    # (A table of three-character groups needs fewer lookups but misses the CPU cache more.)
    p = _PAIRS
    return (
        p[v >> 120 & 1023] + p[v >> 110 & 1023] + p[v >> 100 & 1023] + p[v >> 90 & 1023]
        + p[v >> 80 & 1023] + p[v >> 70 & 1023] + p[v >> 60 & 1023] + p[v >> 50 & 1023]
        + p[v >> 40 & 1023] + p[v >> 30 & 1023] + p[v >> 20 & 1023] + p[v >> 10 & 1023]
        + p[v & 1023]
    )  # fmt: skip


def profile_ulid(seed: int, index: int, created_ms: int) -> str:
    """The ULID of a profile created through the emulator."""
    return ulid(created_ms, digest(seed, "profile", index, 10))


def ulid_time_ms(ulid: str) -> int:
    """The millisecond timestamp held in the first 10 characters of a ULID."""
    value = 0
    for char in ulid[:10]:
        value = value * 32 + CROCKFORD.index(char)
    return value


def segment_id(seed: int, number: int) -> str:
    """A short alphanumeric segment id such as `Y6nRLr`."""
    raw = digest(seed, "segment", number, 12)
    return "".join(ALPHANUMERIC[b % len(ALPHANUMERIC)] for b in raw[:6])


def tag_id(seed: int, number: int, kind: str = "tag") -> str:
    """A UUID4-shaped tag id."""
    raw = bytearray(digest(seed, kind, number, 16))
    raw[6] = (raw[6] & 0x0F) | 0x40
    raw[8] = (raw[8] & 0x3F) | 0x80
    text = raw.hex()
    return f"{text[:8]}-{text[8:12]}-{text[12:16]}-{text[16:20]}-{text[20:]}"


def tag_group_id(seed: int, number: int) -> str:
    """A UUID4-shaped tag group id, like the spec's example."""
    return tag_id(seed, number, kind="tag-group")


def api_key(seed: int, number: int) -> str:
    """A private key: `pk_` followed by 34 alphanumerics."""
    raw = digest(seed, "api-key", number, 34)
    return "pk_" + "".join(ALPHANUMERIC[b % len(ALPHANUMERIC)] for b in raw)
