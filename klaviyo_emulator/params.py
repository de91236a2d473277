"""Query parameters: which each operation accepts at each revision, and their validation (400s)."""

from __future__ import annotations

import functools
import hashlib
from dataclasses import dataclass, field
from urllib.parse import parse_qsl

from . import cursor as cursors
from . import filters
from . import settings as s
from .errors import invalid

PROFILE_FIELDS_2024 = frozenset(
    [*s.PROFILE_DEFAULT_FIELDS, "joined_group_at", "subscriptions", "predictive_analytics"]
    + [f"location.{name}" for name in s.LOCATION_FIELDS]
    + [f"predictive_analytics.{name}" for name in s.PREDICTIVE_FIELDS]
    + [
        "subscriptions.email",
        "subscriptions.email.marketing",
        "subscriptions.sms",
        "subscriptions.sms.marketing",
    ]
    + [
        f"subscriptions.email.marketing.{name}"
        for name in (
            "can_receive_email_marketing",
            "consent",
            "consent_timestamp",
            "last_updated",
            "method",
            "method_detail",
            "custom_method_detail",
            "double_optin",
            "suppression",
            "list_suppressions",
        )
    ]
    + [
        f"subscriptions.sms.marketing.{name}"
        for name in (
            "can_receive_sms_marketing",
            "consent",
            "consent_timestamp",
            "method",
            "method_detail",
            "last_updated",
        )
    ]
)
# Sub-trees added by the 2026 revisions; anything below these prefixes is accepted there.
PROFILE_FIELD_PREFIXES_2026 = (
    "subscriptions.email.open_tracking",
    "subscriptions.sms.transactional",
    "subscriptions.mobile_push",
    "subscriptions.whatsapp",
    "predictive_analytics.ranked_channel_affinity",
)


@dataclass
class Query:
    """A validated query string."""

    pairs: list[tuple[str, str]]
    fields: dict[str, tuple[str, ...]] = field(default_factory=dict)
    include: tuple[str, ...] = ()
    additional: tuple[str, ...] = ()
    sort: str | None = None
    page_size: int = 0
    cursor: str | None = None
    conditions: list[filters.Condition] = field(default_factory=list)

    def as_mapping(self) -> dict[str, str]:
        return dict(self.pairs)

    def filter_scope(self) -> str:
        """A short digest of the `filter` text: a cursor is only valid with the filter it was
        issued under."""
        text = dict(self.pairs).get("filter", "")
        return hashlib.blake2b(text.encode(), digest_size=6).hexdigest() if text else ""


@dataclass(frozen=True)
class Accepts:
    """What one operation accepts at one revision."""

    families: dict[str, frozenset[str]] = field(default_factory=dict)
    includes: frozenset[str] = frozenset()
    additional: tuple[str, frozenset[str]] | None = None
    sorts: tuple[str, ...] = ()
    filtered: bool = False
    page_size: tuple[int, int] | None = None  # (default, maximum)
    paged: bool = False


@functools.cache
def accepts(operation: str, revision: str) -> Accepts:
    """The query parameters an operation takes at a revision (API-NOTES §1, §5)."""
    newer = revision >= s.REVISION_2026_ATTRIBUTES
    flows = revision >= s.REVISION_FLOW_TRIGGERS
    ids = ("id",) if revision >= s.REVISION_SPARSE_ID else ()
    tag = frozenset(s.TAG_FIELDS + ids)
    segment = frozenset(s.SEGMENT_FIELDS + ids)
    flow = frozenset(s.FLOW_FIELDS + ids)
    tag_families = {"tag": tag, "tag-group": frozenset(s.TAG_GROUP_FIELDS + ids)}
    includes = frozenset({"tags", "flow-triggers"} if flows else {"tags"})
    segment_families = {"segment": segment, "tag": tag}
    if flows:
        segment_families["flow"] = flow
    if operation == s.GET_SEGMENTS:
        sized = revision >= s.REVISION_SEGMENTS_PAGE_SIZE
        return Accepts(
            families=segment_families,
            includes=includes,
            sorts=s.SEGMENT_SORTS,
            filtered=True,
            page_size=(s.SEGMENTS_PAGE_SIZE, s.SEGMENTS_PAGE_SIZE) if sized else None,
            paged=True,
        )
    if operation == s.GET_SEGMENT:
        families = dict(segment_families, segment=segment | {"profile_count"})
        return Accepts(
            families=families,
            includes=includes,
            additional=("segment", frozenset({"profile_count"})),
        )
    if operation == s.GET_SEGMENT_PROFILES:
        return Accepts(
            families={"profile": PROFILE_FIELDS_2024 | ({"id"} if newer else set())},
            additional=("profile", frozenset(s.PROFILE_ADDITIONAL_FIELDS)),
            sorts=s.MEMBER_SORTS,
            filtered=True,
            page_size=(s.PROFILES_PAGE_DEFAULT, s.PROFILES_PAGE_MAX),
            paged=True,
        )
    if operation == s.GET_SEGMENT_RELATIONSHIPS_PROFILES:
        old = revision < s.REVISION_RELATIONSHIPS_PAGE_100
        maximum = s.RELATIONSHIPS_PAGE_MAX_OLD if old else s.RELATIONSHIPS_PAGE_MAX
        return Accepts(
            sorts=s.MEMBER_SORTS,
            filtered=True,
            page_size=(s.PROFILES_PAGE_DEFAULT, maximum),
            paged=True,
        )
    if operation == s.GET_SEGMENT_TAGS:
        return Accepts(families={"tag": tag})
    if operation == s.GET_SEGMENT_FLOW_TRIGGERS:
        return Accepts(families={"flow": flow})
    if operation == s.GET_TAGS:
        tags_sized = revision >= s.REVISION_TAGS_PAGE_SIZE
        return Accepts(
            families=tag_families,
            includes=frozenset({"tag-group"}),
            sorts=s.TAG_SORTS,
            filtered=True,
            page_size=(s.TAGS_PAGE_SIZE, s.TAGS_PAGE_SIZE) if tags_sized else None,
            paged=True,
        )
    if operation == s.GET_TAG:
        return Accepts(families=tag_families, includes=frozenset({"tag-group"}))
    if operation in (s.CREATE_SEGMENT, s.UPDATE_SEGMENT) and (
        revision >= s.REVISION_SEGMENTS_PAGE_SIZE
    ):
        return Accepts(families={"segment": segment})
    return Accepts()


def parse(raw_query: str, operation: str, revision: str) -> Query:
    """Validate a raw query string for an operation; raises ApiError (400) naming the parameter."""
    pairs = parse_qsl(raw_query, keep_blank_values=True)
    spec = accepts(operation, revision)
    query = Query(pairs=pairs)
    seen: set[str] = set()
    for name, value in pairs:
        if name in seen:
            raise invalid(f"'{name}' may be given only once.", name)
        seen.add(name)
        _apply(query, spec, name, value, operation, revision)
    if spec.page_size is not None and not query.page_size:
        query.page_size = spec.page_size[0]
    return query


def _apply(query: Query, spec: Accepts, name: str, value: str, operation: str, rev: str) -> None:
    if name.startswith("fields[") and name.endswith("]"):
        query.fields[name[7:-1]] = _fields(spec, name, value)
    elif name == "include" and spec.includes:
        query.include = _listed(value, spec.includes, name, "is not an allowed include parameter")
    elif name.startswith("additional-fields[") and spec.additional is not None:
        family, allowed = spec.additional
        if name != f"additional-fields[{family}]":
            raise invalid(f"'{name}' is not a valid query parameter for this endpoint.", name)
        query.additional = _listed(value, allowed, name, "is not an allowed additional field")
    elif name == "sort" and spec.sorts:
        if value not in spec.sorts:
            raise invalid(
                f"'{value}' is not a valid sort value for this resource. "
                f"Allowed values are {', '.join(spec.sorts)}.",
                name,
            )
        query.sort = value
    elif name == "filter" and spec.filtered:
        query.conditions = _conditions(value, operation, rev)
    elif name == "page[cursor]" and spec.paged:
        query.cursor = cursors.token_of(value)
    elif name == "page[size]" and spec.page_size is not None:
        query.page_size = _page_size(value, spec.page_size[1])
    else:
        raise invalid(f"'{name}' is not a valid query parameter for this endpoint.", name)


def _fields(spec: Accepts, name: str, value: str) -> tuple[str, ...]:
    family = name[7:-1]
    allowed = spec.families.get(family)
    if allowed is None:
        families = ", ".join(sorted(spec.families)) or "none"
        raise invalid(
            f"'{family}' is not an allowed field family for this resource. "
            f"Allowed field families are {families}.",
            name,
        )
    requested = tuple(part.strip() for part in value.split(",") if part.strip())
    for item in requested:
        if item not in allowed and not (
            family == "profile" and "id" in allowed and item.startswith(PROFILE_FIELD_PREFIXES_2026)
        ):
            raise invalid(f"'{item}' is not a valid field for the resource '{family}'.", name)
    return requested


def _listed(value: str, allowed: frozenset[str], name: str, message: str) -> tuple[str, ...]:
    items = tuple(part.strip() for part in value.split(","))
    for item in items:
        if item not in allowed:
            raise invalid(f"'{item}' {message} for this resource.", name)
    return items


def _conditions(value: str, operation: str, revision: str) -> list[filters.Condition]:
    try:
        conditions = filters.parse_filter(value)
        filters.check_allowed(conditions, operation, revision)
    except filters.FilterError as error:
        raise invalid(error.detail, "filter") from None
    return conditions


def _page_size(value: str, maximum: int) -> int:
    try:
        size = int(value)
    except ValueError:
        size = 0
    if not 1 <= size <= maximum:
        raise invalid(f"Page size must be an integer between 1 and {maximum}.", "page[size]")
    return size
