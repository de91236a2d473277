"""Every operation the emulator serves, one row each: the one table the rest reads.

A row holds the method and path, the key scopes, the rate-limit tier and daily cap, the query
parameters and filters it accepts, its later name, and the revisions that have it. Routing
(`urls`), the scope check and the limiter (`wire`), parameter validation and the handler lookup
(`responses`) all come from here. Names are those of revision 2024-06-15 (API-NOTES §1): what
`emu.stats.requests` counts by, and what the source's settings call the operations.
"""

from __future__ import annotations

from dataclasses import dataclass

from .revisions import (
    FIRST,
    FLOW_TRIGGERS_FROM,
    L_STEADY_750_FROM,
    PROFILE_ID_FILTER_FROM,
    RELATIONSHIPS_PAGE_100_FROM,
    SEGMENT_WRITE_FIELDS_FROM,
    SEGMENTS_PAGE_SIZE_FROM,
    TAGS_PAGE_SIZE_FROM,
    Since,
    between,
    latest,
)

SEGMENTS_READ = "segments:read"
SEGMENTS_WRITE = "segments:write"
PROFILES_READ = "profiles:read"
TAGS_READ = "tags:read"
FLOWS_READ = "flows:read"
ALL_SCOPES = frozenset({SEGMENTS_READ, SEGMENTS_WRITE, PROFILES_READ, TAGS_READ, FLOWS_READ})

# tier -> (burst per second, steady per minute), oldest revision first (API-NOTES §10)
TIERS: dict[str, tuple[Since[tuple[int, int]], ...]] = {
    "XS": (Since(FIRST, (1, 15)),),
    "S": (Since(FIRST, (3, 60)),),
    "L": (Since(FIRST, (75, 700)), Since(L_STEADY_750_FROM, (75, 750))),
}

# value types of filterable fields
STRING, BOOLEAN, DATETIME = "string", "boolean", "datetime"
ANY_EQUALS = ("any", "equals")
DATETIME_RANGE = ("greater-or-equal", "greater-than", "less-or-equal", "less-than")


@dataclass(frozen=True)
class Filter:
    """A filterable field: the operators it takes and the type of its values."""

    field: str
    operators: tuple[str, ...]
    kind: str = STRING


@dataclass(frozen=True)
class Paging:
    """A paged listing: the page size, and from which revision `page[size]` may change it."""

    default: int
    maximum: tuple[Since[int], ...]
    size_from: str = FIRST


@dataclass(frozen=True)
class Params:
    """The query parameters of an operation; `Since` entries from their revision on.

    `fields` names the families of `fields[...]` (see `resources`); the additional fields are
    also valid in their family's `fields[...]`.
    """

    fields: tuple[str | Since[str], ...] = ()
    include: tuple[str | Since[str], ...] = ()
    additional: tuple[str, tuple[str, ...]] | None = None  # (family, names)
    sorts: tuple[str, ...] = ()
    filters: tuple[Filter | Since[Filter], ...] = ()
    paging: Paging | None = None


@dataclass(frozen=True, eq=False)
class Operation:
    """One served operation. `additional_tier`: requests with `additional-fields` also count
    against a stricter bucket of that tier, one per field, shared by every operation."""

    name: str
    method: str
    path: str  # `{segment_id}` and `{tag_id}` stand for ids
    scopes: frozenset[str]
    tier: str
    params: Params = Params()
    daily_cap: int | None = None
    additional_tier: str | None = None
    alias: str | None = None  # its name (operationId) from 2024-10-15 on
    first: str = FIRST  # before it, Klaviyo answers 404 "No valid revisions found for method"
    last: str | None = None

    def served_at(self, revision: str) -> bool:
        return between(revision, self.first, self.last)

    def limits(self, revision: str) -> tuple[int, int]:
        """(burst per second, steady per minute) of its tier at a revision."""
        return tier_limits(self.tier, revision)


def tier_limits(tier: str, revision: str) -> tuple[int, int]:
    return latest(TIERS[tier], revision)


SEGMENT = "/api/segments/{segment_id}"
TAG = "/api/tags/{tag_id}"
SEGMENT_SORTS = ("created", "-created", "id", "-id", "name", "-name", "updated", "-updated")
TAG_SORTS = ("id", "-id", "name", "-name")
MEMBER_SORTS = ("joined_group_at", "-joined_group_at")
FLOW_FAMILY = Since(FLOW_TRIGGERS_FROM, "flow")
SEGMENT_INCLUDES = ("tags", Since(FLOW_TRIGGERS_FROM, "flow-triggers"))
MEMBER_FILTERS = (
    Filter("email", ANY_EQUALS),
    Filter("phone_number", ANY_EQUALS),
    Filter("push_token", ANY_EQUALS),
    Filter("_kx", ("equals",)),
    Filter("joined_group_at", DATETIME_RANGE, DATETIME),
    Since(PROFILE_ID_FILTER_FROM, Filter("profile_id", ANY_EQUALS)),
)
MEMBER_PAGE_DEFAULT = 20
SEGMENT_WRITE = Params(fields=(Since(SEGMENT_WRITE_FIELDS_FROM, "segment"),))

OPERATIONS: tuple[Operation, ...] = (
    Operation(
        "get_segments",
        "GET",
        "/api/segments",
        frozenset({SEGMENTS_READ}),
        "L",
        Params(
            fields=("segment", "tag", FLOW_FAMILY),
            include=SEGMENT_INCLUDES,
            sorts=SEGMENT_SORTS,
            filters=(
                Filter("name", ANY_EQUALS),
                Filter("id", ANY_EQUALS),
                Filter("created", ("greater-than",), DATETIME),
                Filter("updated", ("greater-than",), DATETIME),
                Filter("is_active", ANY_EQUALS, BOOLEAN),
                Filter("is_starred", ("equals",), BOOLEAN),
            ),
            paging=Paging(10, (Since(FIRST, 10),), SEGMENTS_PAGE_SIZE_FROM),
        ),
    ),
    Operation(
        "create_segment",
        "POST",
        "/api/segments",
        frozenset({SEGMENTS_WRITE}),
        "XS",
        SEGMENT_WRITE,
        daily_cap=100,
    ),
    Operation(
        "get_segment",
        "GET",
        SEGMENT,
        frozenset({SEGMENTS_READ}),
        "L",
        Params(
            fields=("segment", "tag", FLOW_FAMILY),
            include=SEGMENT_INCLUDES,
            additional=("segment", ("profile_count",)),
        ),
        additional_tier="XS",
    ),
    Operation(
        "update_segment",
        "PATCH",
        SEGMENT,
        frozenset({SEGMENTS_WRITE}),
        "XS",
        SEGMENT_WRITE,
        daily_cap=100,
    ),
    Operation("delete_segment", "DELETE", SEGMENT, frozenset({SEGMENTS_WRITE}), "S"),
    Operation(
        "get_segment_profiles",
        "GET",
        SEGMENT + "/profiles",
        frozenset({SEGMENTS_READ, PROFILES_READ}),
        "L",
        Params(
            fields=("profile",),
            additional=("profile", ("subscriptions", "predictive_analytics")),
            sorts=MEMBER_SORTS,
            filters=MEMBER_FILTERS,
            paging=Paging(MEMBER_PAGE_DEFAULT, (Since(FIRST, 100),)),
        ),
        alias="get_profiles_for_segment",
    ),
    Operation(
        "get_segment_relationships_profiles",
        "GET",
        SEGMENT + "/relationships/profiles",
        frozenset({SEGMENTS_READ, PROFILES_READ}),
        "L",
        Params(
            sorts=MEMBER_SORTS,
            filters=MEMBER_FILTERS,
            paging=Paging(
                MEMBER_PAGE_DEFAULT,
                (Since(FIRST, 1000), Since(RELATIONSHIPS_PAGE_100_FROM, 100)),
            ),
        ),
        alias="get_profile_ids_for_segment",
    ),
    Operation(
        "get_segment_tags",
        "GET",
        SEGMENT + "/tags",
        frozenset({SEGMENTS_READ, TAGS_READ}),
        "S",
        Params(fields=("tag",)),
        alias="get_tags_for_segment",
    ),
    Operation(
        "get_segment_relationships_tags",
        "GET",
        SEGMENT + "/relationships/tags",
        frozenset({SEGMENTS_READ, TAGS_READ}),
        "S",
        alias="get_tag_ids_for_segment",
    ),
    Operation(
        "get_segment_flow_triggers",
        "GET",
        SEGMENT + "/flow-triggers",
        frozenset({FLOWS_READ, SEGMENTS_READ}),
        "S",
        Params(fields=("flow",)),
        alias="get_flows_triggered_by_segment",
        first=FLOW_TRIGGERS_FROM,
    ),
    Operation(
        "get_segment_relationships_flow_triggers",
        "GET",
        SEGMENT + "/relationships/flow-triggers",
        frozenset({FLOWS_READ, SEGMENTS_READ}),
        "S",
        alias="get_ids_for_flows_triggered_by_segment",
        first=FLOW_TRIGGERS_FROM,
    ),
    Operation(
        "get_tags",
        "GET",
        "/api/tags",
        frozenset({TAGS_READ}),
        "S",
        Params(
            fields=("tag", "tag-group"),
            include=("tag-group",),
            sorts=TAG_SORTS,
            filters=(Filter("name", ("contains", "ends-with", "equals", "starts-with")),),
            paging=Paging(50, (Since(FIRST, 50),), TAGS_PAGE_SIZE_FROM),
        ),
    ),
    Operation(
        "get_tag",
        "GET",
        TAG,
        frozenset({TAGS_READ}),
        "S",
        Params(fields=("tag", "tag-group"), include=("tag-group",)),
    ),
    Operation(
        "get_tag_relationships_segments",
        "GET",
        TAG + "/relationships/segments",
        frozenset({SEGMENTS_READ, TAGS_READ}),
        "S",
        alias="get_segment_ids_for_tag",
    ),
)

# Methods the official API has on served paths that the emulator does not serve: they answer
# 404 like any other unserved operation, not 405 (which would say Klaviyo has no such method).
UNSERVED_METHODS: dict[str, frozenset[str]] = {
    "/api/tags": frozenset({"POST"}),
    TAG: frozenset({"PATCH", "DELETE"}),
    TAG + "/relationships/segments": frozenset({"POST", "DELETE"}),
}

BY_NAME: dict[str, Operation] = {operation.name: operation for operation in OPERATIONS}
# operation names of revision 2024-10-15 and later
ALIASES: dict[str, str] = {
    operation.alias: operation.name for operation in OPERATIONS if operation.alias is not None
}


def find(name: str) -> Operation:
    """The operation of a name or of its later name (alias).

    Raises:
        KeyError: no served operation has that name.
    """
    return BY_NAME[ALIASES.get(name, name)]
