"""Constants of the emulated Klaviyo API: revisions, operations, scopes, parameters and limits."""

from __future__ import annotations

import re
from datetime import datetime, timezone

JSONAPI_CONTENT_TYPE = "application/vnd.api+json"
ACCEPTED_REQUEST_CONTENT_TYPES = ("application/vnd.api+json", "application/json")
PUBLIC_BASE_URL = "https://a.klaviyo.com"
ACCOUNT_ID = "emulated-account"

# Stable revisions served, oldest first (API-NOTES §1, 2024-06-15 to 2026-07-15 inclusive).
REVISIONS = (
    "2024-06-15",
    "2024-07-15",
    "2024-10-15",
    "2025-01-15",
    "2025-04-15",
    "2025-07-15",
    "2025-10-15",
    "2026-01-15",
    "2026-04-15",
    "2026-07-15",
)
# Released revisions without a spec at hand, and the revision served in their place.
# 2026-10-15 is Klaviyo's current revision and the official SDK's default (API-NOTES §1); its
# spec is not in the snapshot, so the endpoints answer as at the newest one that is. Later dates
# are not released, and Klaviyo refuses an unreleased revision (API-NOTES §11): a 400 here.
REVISIONS_SERVED_AS: dict[str, str] = {"2026-10-15": "2026-07-15"}
ACCEPTED_REVISIONS = REVISIONS + tuple(REVISIONS_SERVED_AS)
REVISION_PATTERN = re.compile(r"^(\d{4}-\d{2}-\d{2})(?:\.([A-Za-z0-9_-]+))?$")

# Revisions at which behaviour changes.
# include=flow-triggers, fields[flow], relationships.flow-triggers, the flow-triggers endpoints
REVISION_FLOW_TRIGGERS = "2024-10-15"
REVISION_RELATIONSHIPS_PAGE_100 = "2024-10-15"  # relationships/profiles page[size] max 1000 -> 100
REVISION_PROFILE_ID_FILTER = "2025-10-15"
REVISION_2026_ATTRIBUTES = "2026-01-15"  # newer subscription channels, id in fields[profile]
REVISION_SEGMENTS_PAGE_SIZE = "2026-04-15"  # page[size] on get_segments, fields[segment] on writes
REVISION_SPARSE_ID = "2026-04-15"  # id in fields[segment], [tag], [tag-group] and [flow]
REVISION_TAGS_PAGE_SIZE = "2026-04-15"  # page[size] on get_tags

SCOPE_SEGMENTS_READ = "segments:read"
SCOPE_SEGMENTS_WRITE = "segments:write"
SCOPE_PROFILES_READ = "profiles:read"
SCOPE_TAGS_READ = "tags:read"
SCOPE_FLOWS_READ = "flows:read"
ALL_SCOPES = frozenset(
    {
        SCOPE_SEGMENTS_READ,
        SCOPE_SEGMENTS_WRITE,
        SCOPE_PROFILES_READ,
        SCOPE_TAGS_READ,
        SCOPE_FLOWS_READ,
    }
)

# Operation names as at revision 2024-06-15 (API-NOTES §1).
GET_SEGMENTS = "get_segments"
GET_SEGMENT = "get_segment"
CREATE_SEGMENT = "create_segment"
UPDATE_SEGMENT = "update_segment"
DELETE_SEGMENT = "delete_segment"
GET_SEGMENT_PROFILES = "get_segment_profiles"
GET_SEGMENT_RELATIONSHIPS_PROFILES = "get_segment_relationships_profiles"
GET_SEGMENT_TAGS = "get_segment_tags"
GET_SEGMENT_RELATIONSHIPS_TAGS = "get_segment_relationships_tags"
# From 2024-10-15 (their aliases in the 2026-07-15 spec; the operationIds there are
# get_flows_triggered_by_segment and get_ids_for_flows_triggered_by_segment).
GET_SEGMENT_FLOW_TRIGGERS = "get_segment_flow_triggers"
GET_SEGMENT_RELATIONSHIPS_FLOW_TRIGGERS = "get_segment_relationships_flow_triggers"
GET_TAGS = "get_tags"
GET_TAG = "get_tag"
GET_TAG_RELATIONSHIPS_SEGMENTS = "get_tag_relationships_segments"
UNKNOWN_OPERATION = "unknown"

OPERATION_SCOPES: dict[str, frozenset[str]] = {
    GET_SEGMENTS: frozenset({SCOPE_SEGMENTS_READ}),
    GET_SEGMENT: frozenset({SCOPE_SEGMENTS_READ}),
    CREATE_SEGMENT: frozenset({SCOPE_SEGMENTS_WRITE}),
    UPDATE_SEGMENT: frozenset({SCOPE_SEGMENTS_WRITE}),
    DELETE_SEGMENT: frozenset({SCOPE_SEGMENTS_WRITE}),
    GET_SEGMENT_PROFILES: frozenset({SCOPE_SEGMENTS_READ, SCOPE_PROFILES_READ}),
    GET_SEGMENT_RELATIONSHIPS_PROFILES: frozenset({SCOPE_SEGMENTS_READ, SCOPE_PROFILES_READ}),
    GET_SEGMENT_TAGS: frozenset({SCOPE_SEGMENTS_READ, SCOPE_TAGS_READ}),
    GET_SEGMENT_RELATIONSHIPS_TAGS: frozenset({SCOPE_SEGMENTS_READ, SCOPE_TAGS_READ}),
    GET_SEGMENT_FLOW_TRIGGERS: frozenset({SCOPE_FLOWS_READ, SCOPE_SEGMENTS_READ}),
    GET_SEGMENT_RELATIONSHIPS_FLOW_TRIGGERS: frozenset({SCOPE_FLOWS_READ, SCOPE_SEGMENTS_READ}),
    GET_TAGS: frozenset({SCOPE_TAGS_READ}),
    GET_TAG: frozenset({SCOPE_TAGS_READ}),
    GET_TAG_RELATIONSHIPS_SEGMENTS: frozenset({SCOPE_SEGMENTS_READ, SCOPE_TAGS_READ}),
}
# The first revision of operations that are not in every revision served; before it Klaviyo
# answers 404 "No valid revisions found for method" (API-NOTES §11).
OPERATION_SINCE: dict[str, str] = {
    GET_SEGMENT_FLOW_TRIGGERS: REVISION_FLOW_TRIGGERS,
    GET_SEGMENT_RELATIONSHIPS_FLOW_TRIGGERS: REVISION_FLOW_TRIGGERS,
}

# Page sizes (API-NOTES §7).
SEGMENTS_PAGE_SIZE = 10
PROFILES_PAGE_DEFAULT = 20
PROFILES_PAGE_MAX = 100
RELATIONSHIPS_PAGE_MAX_OLD = 1000
RELATIONSHIPS_PAGE_MAX = 100
TAGS_PAGE_SIZE = 50  # get_tags: 50 a page; page[size] (1-50) from 2026-04-15

SEGMENT_SORTS = ("created", "-created", "id", "-id", "name", "-name", "updated", "-updated")
TAG_SORTS = ("id", "-id", "name", "-name")
MEMBER_SORTS = ("joined_group_at", "-joined_group_at")

SEGMENT_FIELDS = (
    "name",
    "definition",
    "definition.condition_groups",
    "created",
    "updated",
    "is_active",
    "is_processing",
    "is_starred",
)
TAG_FIELDS = ("name",)
TAG_GROUP_FIELDS = ("default", "exclusive", "name")
FLOW_FIELDS = ("archived", "created", "name", "status", "trigger_type", "updated")
# Every account has one Default Tag Group, and tags belong to it unless put elsewhere (the
# spec's description of `default`); its name is not documented.
DEFAULT_TAG_GROUP_NAME = "Default"

LOCATION_FIELDS = (
    "address1",
    "address2",
    "city",
    "country",
    "latitude",
    "longitude",
    "region",
    "zip",
    "timezone",
    "ip",
)
PROFILE_DEFAULT_FIELDS = (
    "email",
    "phone_number",
    "external_id",
    "first_name",
    "last_name",
    "organization",
    "locale",
    "title",
    "image",
    "created",
    "updated",
    "last_event_date",
    "location",
    "properties",
)
PROFILE_ADDITIONAL_FIELDS = ("subscriptions", "predictive_analytics")
PREDICTIVE_FIELDS = (
    "historic_clv",
    "predicted_clv",
    "total_clv",
    "historic_number_of_orders",
    "predicted_number_of_orders",
    "average_days_between_orders",
    "average_order_value",
    "churn_probability",
    "expected_date_of_next_order",
)
PREDICTIVE_FIELDS_2026 = ("ranked_channel_affinity",)

# Datasets are generated relative to this instant so that they do not depend on the day they are built;
# every generated timestamp lies before it.
DATASET_ANCHOR = datetime(2025, 12, 31, tzinfo=timezone.utc)
DATASET_SPAN_SECONDS = 6 * 365 * 24 * 3600

PRESETS: dict[str, dict[str, int]] = {
    "empty": {"segments": 0, "profiles": 0, "memberships": 0, "tags": 0},
    "tiny": {"segments": 6, "profiles": 60, "memberships": 87, "tags": 4},
    "demo": {"segments": 10, "profiles": 5_000, "memberships": 14_000, "tags": 6},
    "large": {"segments": 20, "profiles": 400_000, "memberships": 1_050_000, "tags": 8},
}

REALISTIC_LATENCY = 0.15
REALISTIC_JITTER = 0.05
