"""Every operation the emulator serves, one row each: the one table the rest reads.

A row (`shapes.Operation`) holds the method and path, the key scopes, the rate-limit tier and
daily cap, the query parameters and filters it accepts, its later name, and the revisions that
have it. Routing (`urls`), the scope check and the limiter (`wire`), parameter validation and
the handler lookup (`responses`) all come from here. Names are those of revision 2024-06-15 (API-NOTES §1): what
`emu.stats.requests` counts by, and what the source's settings call the operations.
"""

from __future__ import annotations

from .resources import MEMBER_FIELDS
from .revisions import (
    FIRST,
    FLOW_TRIGGERS_FROM,
    PROFILE_CONVERSATION_FROM,
    PROFILE_CONVERSATIONS_FROM,
    PROFILE_ID_FILTER_FROM,
    PROFILE_INCLUDE_LIMITS_FROM,
    PROFILES_INCLUDE_FROM,
    PROFILES_PUSH_TOKEN_FIELDS_FROM,
    RELATIONSHIPS_PAGE_100_FROM,
    SEGMENT_WRITE_FIELDS_FROM,
    SEGMENTS_PAGE_SIZE_FROM,
    TAGS_PAGE_SIZE_FROM,
    Since,
)
from .shapes import (
    ANY_EQUALS,
    BOOLEAN,
    DATETIME,
    DATETIME_RANGE,
    Filter,
    Operation,
    Paging,
    ParameterTier,
    Params,
)

SEGMENTS_READ = "segments:read"
SEGMENTS_WRITE = "segments:write"
PROFILES_READ = "profiles:read"
TAGS_READ = "tags:read"
FLOWS_READ = "flows:read"
ALL_SCOPES = frozenset({SEGMENTS_READ, SEGMENTS_WRITE, PROFILES_READ, TAGS_READ, FLOWS_READ})

SEGMENT = "/api/segments/{segment_id}"
TAG = "/api/tags/{tag_id}"
PROFILE = "/api/profiles/{profile_id}"
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
SUPPRESSION = "subscriptions.email.marketing.suppression"
LIST_SUPPRESSIONS = "subscriptions.email.marketing.list_suppressions"
PROFILE_SORTS = tuple(
    sign + name
    for name in (
        "created",
        "email",
        "id",
        "updated",
        f"{LIST_SUPPRESSIONS}.timestamp",
        f"{SUPPRESSION}.timestamp",
    )
    for sign in ("", "-")
)
PROFILE_FILTERS = (
    Filter("id", ANY_EQUALS),
    Filter("email", ANY_EQUALS),
    Filter("phone_number", ANY_EQUALS),
    Filter("external_id", ANY_EQUALS),
    Filter("_kx", ("equals",)),
    Filter("created", ("greater-than", "less-than"), DATETIME),
    Filter("updated", ("greater-than", "less-than"), DATETIME),
    Filter(f"{LIST_SUPPRESSIONS}.reason", ("equals",)),
    Filter(f"{LIST_SUPPRESSIONS}.timestamp", DATETIME_RANGE, DATETIME),
    Filter(f"{LIST_SUPPRESSIONS}.list_id", ("equals",)),
    Filter(f"{SUPPRESSION}.reason", ("equals",)),
    Filter(f"{SUPPRESSION}.timestamp", DATETIME_RANGE, DATETIME),
)
PROFILE_ADDITIONAL = ("profile", ("subscriptions", "predictive_analytics"))
# The related resources a profile can include, by revision (API-NOTES §1: the specs' history).
CONVERSATION_INCLUDES = (
    Since(PROFILE_CONVERSATION_FROM, "conversation", until=PROFILE_CONVERSATIONS_FROM),
    Since(PROFILE_CONVERSATIONS_FROM, "conversations"),
)
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
        parameter_tiers=(ParameterTier("additional-fields[segment]", "profile_count", "XS"),),
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
            extra_fields=("profile", MEMBER_FIELDS),
            additional=PROFILE_ADDITIONAL,
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
    Operation(
        "get_profiles",
        "GET",
        "/api/profiles",
        frozenset({PROFILES_READ}),
        "L",
        Params(
            fields=(
                "profile",
                Since(PROFILES_PUSH_TOKEN_FIELDS_FROM, "push-token"),
                Since(PROFILE_CONVERSATION_FROM, "conversation"),
            ),
            include=(
                Since(PROFILES_INCLUDE_FROM, "lists", until=PROFILES_PUSH_TOKEN_FIELDS_FROM),
                Since(PROFILES_INCLUDE_FROM, "push-tokens"),
                Since(PROFILES_INCLUDE_FROM, "segments", until=PROFILES_PUSH_TOKEN_FIELDS_FROM),
                *CONVERSATION_INCLUDES,
            ),
            additional=PROFILE_ADDITIONAL,
            sorts=PROFILE_SORTS,
            filters=PROFILE_FILTERS,
            paging=Paging(MEMBER_PAGE_DEFAULT, (Since(FIRST, 100),)),
        ),
        parameter_tiers=(ParameterTier("additional-fields[profile]", "predictive_analytics", "M"),),
    ),
    Operation(
        "get_profile",
        "GET",
        PROFILE,
        frozenset({PROFILES_READ}),
        "L",
        Params(
            fields=(
                "profile",
                "list",
                "segment",
                Since(PROFILES_INCLUDE_FROM, "push-token"),
                Since(PROFILE_CONVERSATION_FROM, "conversation"),
            ),
            include=(
                "lists",
                "segments",
                Since(PROFILES_INCLUDE_FROM, "push-tokens"),
                *CONVERSATION_INCLUDES,
            ),
            additional=PROFILE_ADDITIONAL,
        ),
        parameter_tiers=(
            ParameterTier("include", "lists", "XS", PROFILE_INCLUDE_LIMITS_FROM),
            ParameterTier("include", "segments", "XS", PROFILE_INCLUDE_LIMITS_FROM),
        ),
    ),
)

# Methods the official API has on served paths that the emulator does not serve: they answer
# 404 like any other unserved operation, not 405 (which would say Klaviyo has no such method).
UNSERVED_METHODS: dict[str, frozenset[str]] = {
    "/api/profiles": frozenset({"POST"}),
    PROFILE: frozenset({"PATCH"}),
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
