"""Validation of the source's arguments into one immutable set of options."""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import date, datetime
from typing import Any
from urllib.parse import urlsplit

from . import settings
from .api.client import validate_api_key
from .dates import parse_datetime, utc_now
from .exceptions import KlaviyoConfigError
from .rows.values import finite_number

ACCOUNT_ID_COLUMN = "account_id"
"""Column that `account_id` adds to every table and every primary key."""
_ACCOUNT_ID_PATTERN = r"[a-z0-9][a-z0-9_]{0,62}"

_PROFILE_FIELD_ROOTS = frozenset(
    {
        *settings.PROFILE_STRING_ATTRIBUTES,
        *settings.PROFILE_DATETIME_ATTRIBUTES,
        "location",
        *settings.PROFILE_JSON_ATTRIBUTES,
        *settings.ADDITIONAL_PROFILE_FIELDS,
        settings.JOINED_GROUP_AT,
    }
)


@dataclass(frozen=True)
class SourceOptions:
    """Validated arguments of `klaviyo_source`; see its docstring for their meaning."""

    api_key: str
    base_url: str
    revision: str
    segment_ids: tuple[str, ...] | None
    start_date: datetime | None
    profile_fields: tuple[str, ...] | None
    additional_fields: tuple[str, ...]
    max_workers: int
    request_timeout: float
    max_retries: int
    reconcile_every_hours: float = settings.RECONCILE_EVERY_HOURS
    reconcile_segments: tuple[str, ...] = ()
    reconcile_inactive: bool = False
    rewalk_segments: tuple[str, ...] = ()
    refresh_profiles_every_hours: float | None = settings.REFRESH_PROFILES_EVERY_HOURS
    refresh_profiles_by: str = settings.REFRESH_BY_SEGMENTS
    checkpoint_pages: int | None = None
    checkpoint_minutes: float | None = None
    account_id: str | None = None

    def __repr__(self) -> str:
        # Keeps the key out of any log or traceback that prints the options.
        return f"SourceOptions(base_url={self.base_url!r}, revision={self.revision!r}, ...)"


def validate_options(
    api_key: Any,
    base_url: Any,
    revision: Any,
    segment_ids: Any,
    start_date: Any,
    profile_fields: Any,
    additional_fields: Any,
    max_workers: Any,
    request_timeout: Any,
    max_retries: Any,
    reconcile_every_hours: Any = settings.RECONCILE_EVERY_HOURS,
    reconcile_segments: Any = None,
    reconcile_inactive: Any = False,
    rewalk_segments: Any = None,
    refresh_profiles_every_hours: Any = settings.REFRESH_PROFILES_EVERY_HOURS,
    refresh_profiles_by: Any = settings.REFRESH_BY_SEGMENTS,
    checkpoint_pages: Any = None,
    checkpoint_minutes: Any = None,
    account_id: Any = None,
) -> SourceOptions:
    """Checks every argument and normalises it.

    Raises:
        KlaviyoConfigError: An argument is missing, malformed or out of range.
    """
    return SourceOptions(
        api_key=_api_key(api_key),
        base_url=_base_url(base_url),
        revision=validate_revision(revision),
        segment_ids=_string_list("segment_ids", segment_ids),
        start_date=_start_date(start_date),
        profile_fields=_profile_fields(profile_fields),
        additional_fields=_additional_fields(additional_fields),
        max_workers=_at_least("max_workers", max_workers, 1),
        request_timeout=_positive_float("request_timeout", request_timeout),
        max_retries=_at_least("max_retries", max_retries, 0),
        reconcile_every_hours=_hours("reconcile_every_hours", reconcile_every_hours),
        reconcile_segments=_string_list("reconcile_segments", reconcile_segments) or (),
        reconcile_inactive=_flag("reconcile_inactive", reconcile_inactive),
        rewalk_segments=_string_list("rewalk_segments", rewalk_segments) or (),
        refresh_profiles_every_hours=_refresh_hours(refresh_profiles_every_hours),
        refresh_profiles_by=_refresh_by(refresh_profiles_by),
        checkpoint_pages=_optional(_at_least, "checkpoint_pages", checkpoint_pages, 1),
        checkpoint_minutes=_optional(_positive_minutes, "checkpoint_minutes", checkpoint_minutes),
        account_id=_account_id(account_id),
    )


def validate_revision(revision: Any) -> str:
    """Accepts `YYYY-MM-DD` or `YYYY-MM-DD.pre` naming a real date."""
    text = str(revision or "").strip()
    match = re.match(settings.REVISION_PATTERN, text)
    valid_date = False
    if match:
        try:
            date.fromisoformat(match.group(1))
            valid_date = True
        except ValueError:
            pass
    if not valid_date:
        raise KlaviyoConfigError(
            f"revision {text!r} is not of the form YYYY-MM-DD or YYYY-MM-DD.pre, "
            f"e.g. {settings.DEFAULT_REVISION}"
        )
    return text


def _api_key(value: Any) -> str:
    key = str(value or "").strip()
    if not key:
        raise KlaviyoConfigError(
            "the Klaviyo API key is empty; set [sources.klaviyo] api_key or SOURCES__KLAVIYO__API_KEY"
        )
    return validate_api_key(key)


def _base_url(value: Any) -> str:
    url = str(value or settings.DEFAULT_BASE_URL).strip().rstrip("/")
    if not re.match(r"^https?://[^/\s]+", url):
        raise KlaviyoConfigError(
            f"base_url {url!r} is not an http(s) URL like {settings.DEFAULT_BASE_URL}"
        )
    parts = urlsplit(url)
    if parts.path or parts.query or parts.fragment:
        # Every request path is appended to it, and a query would travel to Klaviyo.
        raise KlaviyoConfigError(
            f"base_url {url!r} must be a scheme and host only, like "
            f"{settings.DEFAULT_BASE_URL}: no path, query or fragment"
        )
    return url


def _string_list(name: str, value: Any) -> tuple[str, ...] | None:
    if value is None:
        return None
    items = value.split(",") if isinstance(value, str) else value
    if not isinstance(items, (list, tuple)):
        raise KlaviyoConfigError(f"{name} must be a list of strings, got {type(value).__name__}")
    cleaned = tuple(dict.fromkeys(str(item).strip() for item in items if str(item).strip()))
    # An empty list means nothing was asked for, not "no segments at all".
    return cleaned or None


def _start_date(value: Any) -> datetime | None:
    if value is None or (isinstance(value, str) and not value.strip()):
        return None
    parsed = parse_datetime(value)
    if parsed is None:
        raise KlaviyoConfigError(
            f"start_date {value!r} is not an ISO date or datetime, e.g. 2024-01-31T00:00:00Z"
        )
    if parsed > utc_now():
        raise KlaviyoConfigError(f"start_date {parsed.isoformat()} is in the future")
    return parsed


def _account_id(value: Any) -> str | None:
    if value is None or (isinstance(value, str) and not value.strip()):
        return None
    text = str(value).strip()
    if not re.fullmatch(_ACCOUNT_ID_PATTERN, text):
        raise KlaviyoConfigError(
            f"account_id {text!r} must be 1 to 63 lowercase letters, digits and underscores, "
            "starting with a letter or digit, e.g. acme_eu"
        )
    return text


def _profile_fields(value: Any) -> tuple[str, ...] | None:
    fields = _string_list("profile_fields", value)
    if fields is None:
        return None
    unknown = [f for f in fields if f.split(".")[0] not in _PROFILE_FIELD_ROOTS]
    if unknown:
        raise KlaviyoConfigError(
            f"unknown profile field(s) {', '.join(unknown)}; "
            f"allowed: {', '.join(sorted(_PROFILE_FIELD_ROOTS))} (and dotted sub-fields)"
        )
    return fields


def _additional_fields(value: Any) -> tuple[str, ...]:
    fields = _string_list("additional_fields", value) or ()
    unknown = [f for f in fields if f not in settings.ADDITIONAL_PROFILE_FIELDS]
    if unknown:
        raise KlaviyoConfigError(
            f"unknown additional field(s) {', '.join(unknown)}; "
            f"allowed: {', '.join(settings.ADDITIONAL_PROFILE_FIELDS)}"
        )
    return fields


def _at_least(name: str, value: Any, minimum: int) -> int:
    number: int | None = None
    if isinstance(value, int) and not isinstance(value, bool):
        number = value
    elif isinstance(value, str) and re.fullmatch(r"\s*-?\d+\s*", value):
        number = int(value)
    if number is None or number < minimum:
        raise KlaviyoConfigError(f"{name} must be an integer >= {minimum}, got {value!r}")
    return number


def _positive_float(name: str, value: Any) -> float:
    try:
        number = float(value)
    except (TypeError, ValueError):
        number = 0.0
    if not number > 0:
        raise KlaviyoConfigError(f"{name} must be a number of seconds > 0, got {value!r}")
    return number


def _hours(name: str, value: Any) -> float:
    number = finite_number(value)
    if number is None or not number >= 0:
        raise KlaviyoConfigError(f"{name} must be a number of hours >= 0, got {value!r}")
    return number


def _refresh_hours(value: Any) -> float | None:
    """Hours between refreshes of the members' attributes; None for `off`."""
    if isinstance(value, str) and value.strip().lower() == settings.REFRESH_PROFILES_OFF:
        return None
    number = finite_number(value)
    if number is None or not number >= 0:
        raise KlaviyoConfigError(
            "refresh_profiles_every_hours must be a number of hours >= 0 or "
            f"{settings.REFRESH_PROFILES_OFF!r}, got {value!r}"
        )
    return number


def _refresh_by(value: Any) -> str:
    text = str(value or "").strip().lower()
    choices = (settings.REFRESH_BY_SEGMENTS, settings.REFRESH_BY_UPDATED)
    if text not in choices:
        raise KlaviyoConfigError(
            f"refresh_profiles_by must be one of {', '.join(choices)}, got {value!r}"
        )
    return text


def _flag(name: str, value: Any) -> bool:
    if isinstance(value, bool):
        return value
    text = str(value).strip().lower()
    if text in ("true", "1", "yes"):
        return True
    if text in ("false", "0", "no", "", "none"):
        return False
    raise KlaviyoConfigError(f"{name} must be true or false, got {value!r}")


def _optional(check: Any, name: str, value: Any, *args: Any) -> Any:
    """`check(name, value, *args)`, or None when the value is not set."""
    if value is None or (isinstance(value, str) and not value.strip()):
        return None
    return check(name, value, *args)


def _positive_minutes(name: str, value: Any) -> float:
    number = finite_number(value)
    if number is None or not number > 0:
        raise KlaviyoConfigError(f"{name} must be a number of minutes > 0, got {value!r}")
    return number
