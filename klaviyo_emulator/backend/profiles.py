"""Profile documents generated on demand from (seed, profile index), so millions cost no memory."""

from __future__ import annotations

import unicodedata
from collections.abc import Collection
from typing import Any

import orjson

from ..settings import DATASET_ANCHOR, DATASET_SPAN_SECONDS
from ..spec.dates import render_epoch
from . import ids
from .vocabulary import (
    CHANNELS,
    COLOURS,
    DOMAINS,
    FIRST_NAMES,
    FREQUENCIES,
    LAST_NAMES,
    LOCALES,
    ORGANIZATIONS,
    PHONE_PREFIXES,
    PLACES,
    PLANS,
    TITLES,
)

SUBSCRIPTIONS = "profile-subscriptions"  # the hash kind of a profile's subscriptions
SUPPRESSION_REASON = "HARD_BOUNCE"


class _Draws:
    """A stream of small deterministic integers decoded from a hash of (seed, kind, index).

    The 512-bit digest is read as one integer and consumed by successive `divmod`s, which is
    cheaper than slicing bytes and wastes no entropy.
    """

    __slots__ = ("_state", "_seed", "_kind", "_index", "_round")

    def __init__(self, seed: int, kind: str, index: int, first: bytes | None = None) -> None:
        """`first`: the first digest, when the caller has it (from an `ids.Digester`)."""
        self._seed, self._kind, self._index, self._round = seed, kind, index, 0
        if first is None:
            first = ids.digest(seed, kind, index, 64)
        self._state = int.from_bytes(first, "big")

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
        self._core_digest = ids.Digester(seed, "profile", 14)
        self._attributes_digest = ids.Digester(seed, "profile-attributes", 64)
        self._subscriptions_digest = ids.Digester(seed, SUBSCRIPTIONS, 64)

    def created_epoch(self, index: int) -> int:
        return self._core(index)[0]

    def profile_id(self, index: int) -> str:
        return self.identity(index)[0]

    def identity(self, index: int) -> tuple[str, int]:
        """(profile id, created epoch) of a profile, from one hash."""
        created, randomness = self._core(index)
        return ids.ulid(created * 1000, randomness), created

    def _core(self, index: int) -> tuple[int, bytes]:
        """(created epoch, ULID randomness) of a profile, from one hash."""
        raw = self._core_digest(index)
        jitter = int.from_bytes(raw[10:], "big") % self.step
        return self.start + index * self.step + jitter, raw[:10]

    def attributes(self, index: int) -> dict[str, Any]:
        """The default attributes as the API renders them (no joined_group_at)."""
        document: dict[str, Any] = orjson.loads(self.attributes_json(index))
        return document

    def attributes_json(self, index: int, created: int | None = None) -> bytes:
        """The default attributes as the API renders them, as JSON (no joined_group_at).

        This is the one definition of a generated profile; `attributes` decodes it. Pages are
        rendered on demand, millions of profiles per walk, so this is the emulator's hottest
        code: every choice reads its own byte of one 64-byte hash, every value drawn from a
        fixed list was encoded at import, and a p% chance is spelled `byte * 100 < p * 256`
        inline (a call per draw would cost more than the draw). `created` saves a hash.
        """
        b = self._attributes_digest(index)
        if created is None:
            created = self._core(index)[0]
        updated = _updated(b, created)
        first, last = b[0] % len(FIRST_NAMES), b[1] % len(LAST_NAMES)
        email = _quoted(_email(b, index))
        external_id = _quoted(_external_id(b, index))
        image = _NULL
        if b[17] * 100 < 10 * 256:
            image = f'"https://images.example.com/avatars/{index}.jpg"'
        last_event = _NULL
        if b[18] * 100 < 75 * 256:
            last_event = f'"{render_epoch(updated - (b[19] << 8 | b[20]) % 3600)}"'
        return (
            f'{{"email":{email},"phone_number":{_quoted(_phone(b, index))}'
            f',"external_id":{external_id}'
            f',"first_name":{_FIRST_NAMES_JSON[first] if b[9] * 100 < 92 * 256 else _NULL}'
            f',"last_name":{_LAST_NAMES_JSON[last] if b[10] * 100 < 88 * 256 else _NULL}'
            f',"organization":{_pick(_ORGANIZATIONS_JSON, b[12]) if b[11] * 100 < 25 * 256 else _NULL}'
            f',"locale":{_pick(_LOCALES_JSON, b[14]) if b[13] * 100 < 70 * 256 else _NULL}'
            f',"title":{_pick(_TITLES_JSON, b[16]) if b[15] * 100 < 20 * 256 else _NULL}'
            f',"image":{image},"created":"{render_epoch(created)}"'
            f',"updated":"{render_epoch(updated)}","last_event_date":{last_event}'
            f',"location":{_location(b, index)},"properties":{_properties(b, index)}}}'
        ).encode()

    def updated_epoch(self, index: int) -> int:
        """`updated` of a generated profile, as epoch seconds."""
        return _updated(self._attributes_digest(index), self._core(index)[0])

    def identifiers(self, index: int) -> tuple[str | None, str | None, str | None]:
        """(email, phone_number, external_id) of a generated profile, from one hash."""
        b = self._attributes_digest(index)
        return _email(b, index), _phone(b, index), _external_id(b, index)

    def email(self, index: int) -> str | None:
        return _email(self._attributes_digest(index), index)

    def suppression(self, index: int) -> tuple[str, int] | None:
        """(reason, epoch) of the profile's email suppression, or None when it has none."""
        draw, since = self._subscription_draws(index)
        suppressed = _email_marketing_draws(draw)[3]
        return (SUPPRESSION_REASON, since) if suppressed else None

    def _subscription_draws(self, index: int) -> tuple[_Draws, int]:
        """The draws of `subscriptions` and the time its consents date from."""
        draw = _Draws(self.seed, SUBSCRIPTIONS, index, self._subscriptions_digest(index))
        return draw, self.created_epoch(index) + draw.next(1000) * 60

    def subscriptions(self, index: int, trees: Collection[str]) -> dict[str, Any]:
        """The `subscriptions` additional field with the later sub-trees in `trees` (as
        `spec.resources.profile_trees` names them); the account has no consent in those."""
        draw, since_epoch = self._subscription_draws(index)
        since = render_epoch(since_epoch)
        email_marketing = self._email_marketing(draw, since_epoch)
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
        if "subscriptions.email.open_tracking" in trees:
            result["email"]["open_tracking"] = None
        if "subscriptions.sms.transactional" in trees:
            result["sms"]["transactional"] = None
        if "subscriptions.mobile_push" in trees:
            result["mobile_push"] = {"marketing": None}
        if "subscriptions.whatsapp" in trees:
            result["whatsapp"] = {"marketing": None, "transactional": None, "conversational": None}
        return result

    @staticmethod
    def _email_marketing(draw: _Draws, since_epoch: int) -> dict[str, Any]:
        """`subscriptions.email.marketing`, taking its draws from `draw`."""
        since = render_epoch(since_epoch)
        consent, method, double_optin, suppressed = _email_marketing_draws(draw)
        return {
            "can_receive_email_marketing": consent == "SUBSCRIBED",
            "consent": consent,
            "consent_timestamp": since if consent != "NEVER_SUBSCRIBED" else None,
            "last_updated": since,
            "method": method,
            "method_detail": "",
            "custom_method_detail": None,
            "double_optin": double_optin,
            "suppression": (
                [{"reason": SUPPRESSION_REASON, "timestamp": since}] if suppressed else []
            ),
            "list_suppressions": [],
        }

    def predictive_analytics(self, index: int, trees: Collection[str]) -> dict[str, Any]:
        """The `predictive_analytics` additional field with the later sub-trees in `trees`."""
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
        if "predictive_analytics.ranked_channel_affinity" in trees:
            result["ranked_channel_affinity"] = None
        return result


def _email_marketing_draws(draw: _Draws) -> tuple[str, str, bool | None, bool]:
    """(consent, method, double_optin, suppressed) of `subscriptions.email.marketing`."""
    consent = draw.pick(("SUBSCRIBED", "SUBSCRIBED", "UNSUBSCRIBED", "NEVER_SUBSCRIBED"))
    method = draw.pick(("FORM", "API", "MANUAL_IMPORT"))
    return consent, method, draw.chance(30) or None, draw.chance(5)


def _json(value: Any) -> str:
    return orjson.dumps(value).decode()


_NULL = "null"
_FIRST_NAMES_JSON = tuple(map(_json, FIRST_NAMES))
_LAST_NAMES_JSON = tuple(map(_json, LAST_NAMES))
_ORGANIZATIONS_JSON = tuple(map(_json, ORGANIZATIONS))
_LOCALES_JSON = tuple(map(_json, LOCALES))
_TITLES_JSON = tuple(map(_json, TITLES))
_PLANS_JSON = tuple(map(_json, PLANS))
_COLOURS_JSON = tuple(map(_json, COLOURS))
# round(i / 10, 1) as orjson writes it, for every score the hash can draw.
_SCORES_JSON = tuple(_json(round(i / 10, 1)) for i in range(1000))


def _local_part(first: str, last: str) -> str:
    plain = unicodedata.normalize("NFKD", f"{first}.{last}".lower())
    local = "".join(ch for ch in plain if ch.isascii() and ch.isalnum() or ch == ".")
    return local.strip(".") or "user"


# The ASCII local part of the e-mail address, by (first name, last name).
_LOCAL_PARTS = tuple(
    tuple(_local_part(first, last) for last in LAST_NAMES) for first in FIRST_NAMES
)


def _pick(options: tuple[str, ...], byte: int) -> str:
    return options[byte % len(options)]


def _quoted(text: str | None) -> str:
    """A generated identifier as JSON: none holds a character JSON escapes."""
    return _NULL if text is None else f'"{text}"'


def _updated(b: bytes, created: int) -> int:
    return created + (b[2] << 8 | b[3]) % 60_000 * 60


def _email(b: bytes, index: int) -> str | None:
    if b[4] * 100 < 8 * 256:
        return None
    first, last = b[0] % len(FIRST_NAMES), b[1] % len(LAST_NAMES)
    return f"{_LOCAL_PARTS[first][last]}.{index}@{DOMAINS[b[5] % len(DOMAINS)]}"


def _external_id(b: bytes, index: int) -> str | None:
    return f"ext-{index:08d}" if b[8] * 100 < 30 * 256 else None


def _phone(b: bytes, index: int) -> str | None:
    if b[6] * 100 < 45 * 256:
        return None
    prefix = PHONE_PREFIXES[b[7] % len(PHONE_PREFIXES)]
    # The last seven digits are the index (modulo 10^7): `lookup` finds a profile by them.
    number = f"{prefix}{index % 10_000_000:07d}"
    # North American numbers have 10 digits after the +1.
    return number[:12] if prefix.startswith("+1") else number


def _place_json(place: tuple[Any, ...], coordinates: str) -> str:
    """A place's location fields from `city` to `timezone`, as they sit inside the object."""
    city, country, region, zip_code, timezone_name, lat, lon = place
    latitude: Any = None
    longitude: Any = None
    if coordinates == "text":
        latitude, longitude = f"{lat:.4f}", f"{lon:.4f}"
    elif coordinates == "number":
        latitude, longitude = lat, lon
    fields = {
        "city": city,
        "country": country,
        "latitude": latitude,
        "longitude": longitude,
        "region": region,
        "zip": zip_code,
        "timezone": timezone_name,
    }
    return "," + _json(fields)[1:-1]


# Location kinds 1-3 carry coordinates as strings, 4-7 as numbers, 8-9 none (kind 0: no location).
_COORDINATES_BY_KIND = ("", "text", "text", "text", "number", "number", "number", "number", "", "")
_PLACES_JSON = tuple(
    tuple(_place_json(place, coordinates) for coordinates in _COORDINATES_BY_KIND)
    for place in PLACES
)


def _location(b: bytes, index: int) -> str:
    kind = b[21] % 10
    if kind == 0:
        return _NULL
    address1 = f'"{1 + index % 400} Main St"' if b[23] * 100 < 40 * 256 else _NULL
    address2 = '"1st floor"' if b[24] * 100 < 5 * 256 else _NULL
    ip = f'"192.0.2.{index % 250 + 1}"' if b[25] * 100 < 30 * 256 else _NULL
    place = _PLACES_JSON[b[22] % len(PLACES)][kind]
    return f'{{"address1":{address1},"address2":{address2}{place},"ip":{ip}}}'


def _preferences_json(channels_mask: int, frequency: int, quiet_hours: bool) -> str:
    return _json(
        {
            "channels": [c for bit, c in enumerate(CHANNELS) if channels_mask >> bit & 1],
            "frequency": FREQUENCIES[frequency],
            "quiet_hours": {"start": "22:00", "end": "07:00"} if quiet_hours else None,
        }
    )


# By (channels bit mask, frequency, quiet hours), one bit per entry of CHANNELS.
_PREFERENCES_JSON = {
    (mask, frequency, quiet): _preferences_json(mask, frequency, quiet)
    for mask in range(1 << len(CHANNELS))
    for frequency in range(len(FREQUENCIES))
    for quiet in (False, True)
}


def _properties(b: bytes, index: int) -> str:
    parts = ['{"plan":', _PLANS_JSON[b[26] % len(PLANS)]]
    if b[27] * 100 < 60 * 256:
        parts.append(f',"lifetime_orders":{b[28] % 40}')
    if b[29] * 100 < 40 * 256:
        parts.append(',"vip":true' if b[30] * 100 < 30 * 256 else ',"vip":false')
    if b[31] * 100 < 40 * 256:
        parts += ',"score":', _SCORES_JSON[(b[32] << 8 | b[33]) % 1000]
    if b[34] * 100 < 35 * 256:
        mask = (b[35] < 128) | (b[36] < 128) << 1 | (b[37] < 128) << 2
        parts += ',"preferences":', _PREFERENCES_JSON[mask, b[38] % 3, b[39] * 100 < 30 * 256]
    if b[40] * 100 < 20 * 256:
        parts += ',"Favourite Colour":', _COLOURS_JSON[b[41] % len(COLOURS)]
    if b[42] * 100 < 10 * 256:
        parts.append(',"signup_source":null')
    if b[43] * 100 < 15 * 256:
        parts.append(f',"loyalty_points":{(b[44] << 8 | b[45]) * 10**6 + index}')
    parts.append("}")
    return "".join(parts)
