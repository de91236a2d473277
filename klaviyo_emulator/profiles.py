"""Profile documents generated on demand from (seed, profile index), so millions cost no memory."""

from __future__ import annotations

import functools
import unicodedata
from typing import Any

from . import ids
from .settings import DATASET_ANCHOR, DATASET_SPAN_SECONDS
from .timefmt import render_epoch

FIRST_NAMES = (
    "Sarah", "José", "Zoë", "Øyvind", "Saoirse", "Mei", "Ahmed", "Léa", "Jürgen", "Ana",
    "Chidi", "Priya", "Björn", "Łucja", "Kenji", "Amélie", "Mateo", "Fatima", "Noah", "Siobhán",
    "李", "Νίκος", "Дмитрий", "Olivia", "Emeka", "Ines", "Tomás", "Yuki", "Aroha", "Grace",
)  # fmt: skip
LAST_NAMES = (
    "Mason", "García", "Müller", "Ødegaard", "O'Brien", "Nguyễn", "Kowalski", "Dubois", "Silva",
    "Okafor", "Sharma", "Johansson", "Tanaka", "Rossi", "Smith", "Jones", "Papadopoulos", "Ivanova",
    "Brown", "Wiśniewska", "王", "Fernández", "Cohen", "Hughes", "Kim",
)  # fmt: skip
DOMAINS = ("example.com", "example.org", "mail.example.net", "exemple.fr", "beispiel.de")
ORGANIZATIONS = ("Example Corporation", "Acme Ltd", "Globex", "Initech", "Umbrella Coöperative")
TITLES = ("Regional Manager", "Engineer", "Buyer", "Founder", "Designer", "Analyst")
LOCALES = ("en-US", "en-GB", "de-DE", "fr-FR", "es-ES", "ja-JP", "pt-BR")
PLANS = ("free", "basic", "pro", "enterprise")
CHANNELS = ("email", "sms", "push")
# (city, country, region, zip, timezone, latitude, longitude)
PLACES = (
    ("Boston", "United States", "MA", "02110", "America/New_York", 42.3601, -71.0589),
    ("New York", "United States", "NY", "10017", "America/New_York", 40.7128, -74.006),
    ("London", "United Kingdom", "England", "EC1A 1BB", "Europe/London", 51.5072, -0.1276),
    ("Berlin", "Germany", "Berlin", "10115", "Europe/Berlin", 52.52, 13.405),
    ("São Paulo", "Brazil", "SP", "01000-000", "America/Sao_Paulo", -23.5505, -46.6333),
    ("Tōkyō", "Japan", "Tokyo", "100-0001", "Asia/Tokyo", 35.6762, 139.6503),
    ("Montréal", "Canada", "QC", "H2Y 1C6", "America/Toronto", 45.5019, -73.5674),
    ("Zürich", "Switzerland", "ZH", "8001", "Europe/Zurich", 47.3769, 8.5417),
)
PHONE_PREFIXES = ("+1617", "+1212", "+44770", "+4915", "+5511", "+8190", "+1514", "+4179")


class _Draws:
    """A stream of small deterministic integers decoded from a hash of (seed, kind, index).

    The 512-bit digest is read as one integer and consumed by successive `divmod`s, which is
    cheaper than slicing bytes and wastes no entropy.
    """

    __slots__ = ("_state", "_seed", "_kind", "_index", "_round")

    def __init__(self, seed: int, kind: str, index: int) -> None:
        self._seed, self._kind, self._index, self._round = seed, kind, index, 0
        self._state = int.from_bytes(ids.digest(seed, kind, index, 64), "big")

    def next(self, modulo: int) -> int:
        state = self._state
        if state < _REFILL_BELOW:
            self._round += 1
            more = ids.digest(self._seed, f"{self._kind}/{self._round}", self._index, 64)
            state = int.from_bytes(more, "big")
        self._state, value = divmod(state, modulo)
        return value

    def chance(self, percent: int) -> bool:
        return self.next(100) < percent

    def pick(self, options: tuple[Any, ...]) -> Any:
        return options[self.next(len(options))]


_REFILL_BELOW = 1 << 64


class ProfileFactory:
    """Builds the documents of generated profiles; index order equals creation order and id order."""

    def __init__(self, seed: int, count: int) -> None:
        self.seed = seed
        self.count = count
        self.start = int(DATASET_ANCHOR.timestamp()) - DATASET_SPAN_SECONDS
        # Leave the last tenth of the span for memberships that follow the newest profile.
        self.step = max(1, (DATASET_SPAN_SECONDS * 9 // 10) // max(count, 1))

    def created_epoch(self, index: int) -> int:
        return self._core(index)[0]

    def profile_id(self, index: int) -> str:
        created, randomness = self._core(index)
        return ids.ulid(created * 1000, randomness)

    def _core(self, index: int) -> tuple[int, bytes]:
        """(created epoch, ULID randomness) of a profile, from one hash."""
        raw = ids.digest(self.seed, "profile", index, 14)
        jitter = int.from_bytes(raw[10:], "big") % self.step
        return self.start + index * self.step + jitter, raw[:10]

    def attributes(self, index: int) -> dict[str, Any]:
        """The default attributes as the API renders them (no joined_group_at).

        Every choice reads its own byte of one 64-byte hash: far cheaper than a generator per
        profile, which matters when millions of profiles are rendered on demand.
        """
        b = ids.digest(self.seed, "profile-attributes", index, 64)
        first, last = FIRST_NAMES[b[0] % len(FIRST_NAMES)], LAST_NAMES[b[1] % len(LAST_NAMES)]
        created = self.created_epoch(index)
        updated = created + (b[2] << 8 | b[3]) % 60_000 * 60
        return {
            "email": _email(b, first, last, index),
            "phone_number": _phone(b, index),
            "external_id": f"ext-{index:08d}" if _chance(b[8], 30) else None,
            "first_name": first if _chance(b[9], 92) else None,
            "last_name": last if _chance(b[10], 88) else None,
            "organization": _maybe(b[11], 25, ORGANIZATIONS, b[12]),
            "locale": _maybe(b[13], 70, LOCALES, b[14]),
            "title": _maybe(b[15], 20, TITLES, b[16]),
            "image": f"https://images.example.com/avatars/{index}.jpg"
            if _chance(b[17], 10)
            else None,
            "created": render_epoch(created),
            "updated": render_epoch(updated),
            "last_event_date": render_epoch(updated - (b[19] << 8 | b[20]) % 3600)
            if _chance(b[18], 75)
            else None,
            "location": _location(b, index),
            "properties": _properties(b, index),
        }

    def subscriptions(self, index: int, newer: bool) -> dict[str, Any]:
        """The `subscriptions` additional field; `newer` adds the channels of the 2026 revisions."""
        draw = _Draws(self.seed, "profile-subscriptions", index)
        since = render_epoch(self.created_epoch(index) + draw.next(1000) * 60)
        email_consent = draw.pick(("SUBSCRIBED", "SUBSCRIBED", "UNSUBSCRIBED", "NEVER_SUBSCRIBED"))
        email_marketing = {
            "can_receive_email_marketing": email_consent == "SUBSCRIBED",
            "consent": email_consent,
            "consent_timestamp": since if email_consent != "NEVER_SUBSCRIBED" else None,
            "last_updated": since,
            "method": draw.pick(("FORM", "API", "MANUAL_IMPORT")),
            "method_detail": "",
            "custom_method_detail": None,
            "double_optin": draw.chance(30) or None,
            "suppression": (
                [{"reason": "HARD_BOUNCE", "timestamp": since}] if draw.chance(5) else []
            ),
            "list_suppressions": [],
        }
        sms_marketing = None
        if draw.chance(40):
            sms_consent = draw.pick(("SUBSCRIBED", "UNSUBSCRIBED"))
            sms_marketing = {
                "can_receive_sms_marketing": sms_consent == "SUBSCRIBED",
                "consent": sms_consent,
                "consent_timestamp": since,
                "method": "TEXT",
                "method_detail": "JOIN",
                "last_updated": since,
            }
        result: dict[str, Any] = {
            "email": {"marketing": email_marketing},
            "sms": {"marketing": sms_marketing},
        }
        if newer:
            result["email"]["open_tracking"] = None
            result["sms"]["transactional"] = None
            result["mobile_push"] = {"marketing": None}
            result["whatsapp"] = {"marketing": None, "transactional": None, "conversational": None}
        return result

    def predictive_analytics(self, index: int, newer: bool) -> dict[str, Any]:
        """The `predictive_analytics` additional field."""
        draw = _Draws(self.seed, "profile-predictive", index)
        orders = draw.next(12)
        historic = round(orders * (20 + draw.next(8000) / 100), 2)
        predicted = round(draw.next(20000) / 100, 2)
        result: dict[str, Any] = {
            "historic_clv": historic,
            "predicted_clv": predicted,
            "total_clv": round(historic + predicted, 2),
            "historic_number_of_orders": orders,
            "predicted_number_of_orders": round(draw.next(300) / 100, 2),
            "average_days_between_orders": draw.next(300) if orders > 1 else None,
            "average_order_value": round(historic / orders, 2) if orders else 0.0,
            "churn_probability": round(draw.next(100) / 100, 2),
            "expected_date_of_next_order": (
                render_epoch(self.created_epoch(index) + draw.next(30_000) * 3600)
                if orders
                else None
            ),
        }
        if newer:
            result["ranked_channel_affinity"] = None
        return result


def _chance(byte: int, percent: int) -> bool:
    return byte * 100 < percent * 256


def _maybe(byte: int, percent: int, options: tuple[str, ...], pick: int) -> str | None:
    return options[pick % len(options)] if _chance(byte, percent) else None


def _email(b: bytes, first: str, last: str, index: int) -> str | None:
    if _chance(b[4], 8):
        return None
    return f"{_local_part(first, last)}.{index}@{DOMAINS[b[5] % len(DOMAINS)]}"


@functools.lru_cache(maxsize=1024)
def _local_part(first: str, last: str) -> str:
    plain = unicodedata.normalize("NFKD", f"{first}.{last}".lower())
    local = "".join(ch for ch in plain if ch.isascii() and ch.isalnum() or ch == ".")
    return local.strip(".") or "user"


def _phone(b: bytes, index: int) -> str | None:
    if _chance(b[6], 45):
        return None
    prefix = PHONE_PREFIXES[b[7] % len(PHONE_PREFIXES)]
    digits = f"{index % 10_000_000:07d}"
    return (prefix + digits)[:12] if prefix.startswith("+1") else prefix + digits


def _location(b: bytes, index: int) -> dict[str, Any] | None:
    kind = b[21] % 10
    if kind == 0:
        return None
    city, country, region, zip_code, timezone_name, lat, lon = PLACES[b[22] % len(PLACES)]
    if kind < 4:
        latitude: Any = f"{lat:.4f}"
        longitude: Any = f"{lon:.4f}"
    elif kind < 8:
        latitude, longitude = lat, lon
    else:
        latitude = longitude = None
    return {
        "address1": f"{1 + index % 400} Main St" if _chance(b[23], 40) else None,
        "address2": "1st floor" if _chance(b[24], 5) else None,
        "city": city,
        "country": country,
        "latitude": latitude,
        "longitude": longitude,
        "region": region,
        "zip": zip_code,
        "timezone": timezone_name,
        "ip": f"192.0.2.{index % 250 + 1}" if _chance(b[25], 30) else None,
    }


def _properties(b: bytes, index: int) -> dict[str, Any]:
    properties: dict[str, Any] = {"plan": PLANS[b[26] % len(PLANS)]}
    if _chance(b[27], 60):
        properties["lifetime_orders"] = b[28] % 40
    if _chance(b[29], 40):
        properties["vip"] = _chance(b[30], 30)
    if _chance(b[31], 40):
        properties["score"] = round((b[32] << 8 | b[33]) % 1000 / 10, 1)
    if _chance(b[34], 35):
        properties["preferences"] = {
            "channels": [c for c, byte in zip(CHANNELS, b[35:38], strict=True) if byte < 128],
            "frequency": ("daily", "weekly", "monthly")[b[38] % 3],
            "quiet_hours": {"start": "22:00", "end": "07:00"} if _chance(b[39], 30) else None,
        }
    if _chance(b[40], 20):
        properties["Favourite Colour"] = ("bleu", "grün", "赤", "verde")[b[41] % 4]
    if _chance(b[42], 10):
        properties["signup_source"] = None
    if _chance(b[43], 15):
        properties["loyalty_points"] = (b[44] << 8 | b[45]) * 10**6 + index
    return properties
