"""Attribute names of each resource type: the families of sparse fieldsets (`fields[...]`).

What a later revision adds to a family is listed here with its `*_FROM` from `revisions`.
"""

from __future__ import annotations

import functools

from .revisions import (
    PROFILE_CHANNEL_AFFINITY_FROM,
    PROFILE_ID_FIELD_FROM,
    PROFILE_MOBILE_PUSH_FROM,
    PROFILE_OPEN_TRACKING_FROM,
    PROFILE_SMS_TRANSACTIONAL_FROM,
    PROFILE_WHATSAPP_FROM,
    SPARSE_ID_FROM,
    Since,
    served,
)

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
LIST_FIELDS = ("name", "created", "updated", "opt_in_process")
PUSH_TOKEN_METADATA_FIELDS = (
    "app_build",
    "app_id",
    "app_name",
    "app_version",
    "device_id",
    "device_model",
    "environment",
    "klaviyo_sdk",
    "manufacturer",
    "os_name",
    "os_version",
    "sdk_version",
)
PUSH_TOKEN_FIELDS = (
    "background",
    "created",
    "enablement_status",
    "metadata",
    *(f"metadata.{name}" for name in PUSH_TOKEN_METADATA_FIELDS),
    "platform",
    "recorded_date",
    "token",
    "vendor",
)
# The family appears with 2026-04-15, whose sparse fieldsets all take `id`.
CONVERSATION_FIELDS = ("channel", "id")

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
# A profile's attributes in the order the API renders them (joined_group_at follows on members).
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
EMAIL_MARKETING_FIELDS = (
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
SMS_MARKETING_FIELDS = (
    "can_receive_sms_marketing",
    "consent",
    "consent_timestamp",
    "method",
    "method_detail",
    "last_updated",
)
# A segment member's attribute besides a profile's, also in its `fields[profile]`.
MEMBER_FIELDS = ("joined_group_at",)
# The `fields[profile]` names of revision 2024-06-15 (segment members add MEMBER_FIELDS).
PROFILE_FIELDS = (
    *PROFILE_DEFAULT_FIELDS,
    *PROFILE_ADDITIONAL_FIELDS,
    *(f"location.{name}" for name in LOCATION_FIELDS),
    *(f"predictive_analytics.{name}" for name in PREDICTIVE_FIELDS),
    "subscriptions.email",
    "subscriptions.email.marketing",
    "subscriptions.sms",
    "subscriptions.sms.marketing",
    *(f"subscriptions.email.marketing.{name}" for name in EMAIL_MARKETING_FIELDS),
    *(f"subscriptions.sms.marketing.{name}" for name in SMS_MARKETING_FIELDS),
)
# Sub-trees of the profile that later revisions add, each in its `subscriptions` or
# `predictive_analytics` and in `fields[profile]` (anything below the name is accepted there).
PROFILE_TREES: tuple[str | Since[str], ...] = (
    Since(PROFILE_MOBILE_PUSH_FROM, "subscriptions.mobile_push"),
    Since(PROFILE_SMS_TRANSACTIONAL_FROM, "subscriptions.sms.transactional"),
    Since(PROFILE_WHATSAPP_FROM, "subscriptions.whatsapp"),
    Since(PROFILE_CHANNEL_AFFINITY_FROM, "predictive_analytics.ranked_channel_affinity"),
    Since(PROFILE_OPEN_TRACKING_FROM, "subscriptions.email.open_tracking"),
)

# family -> its attribute names; `Since` entries from their revision on
FAMILIES: dict[str, tuple[str | Since[str], ...]] = {
    "segment": (*SEGMENT_FIELDS, Since(SPARSE_ID_FROM, "id")),
    "tag": (*TAG_FIELDS, Since(SPARSE_ID_FROM, "id")),
    "tag-group": (*TAG_GROUP_FIELDS, Since(SPARSE_ID_FROM, "id")),
    "flow": (*FLOW_FIELDS, Since(SPARSE_ID_FROM, "id")),
    "profile": (*PROFILE_FIELDS, Since(PROFILE_ID_FIELD_FROM, "id")),
    "list": (*LIST_FIELDS, Since(SPARSE_ID_FROM, "id")),
    "push-token": (*PUSH_TOKEN_FIELDS, Since(SPARSE_ID_FROM, "id")),
    "conversation": CONVERSATION_FIELDS,
}
# family -> sub-trees accepted with everything below them
FAMILY_TREES: dict[str, tuple[str | Since[str], ...]] = {"profile": PROFILE_TREES}


@functools.cache
def family_fields(family: str, revision: str) -> frozenset[str]:
    """The names `fields[family]` takes at a revision (besides those below `family_trees`)."""
    return frozenset(served(FAMILIES[family], revision))


@functools.cache
def family_trees(family: str, revision: str) -> tuple[str, ...]:
    """Names under which `fields[family]` takes anything at a revision."""
    trees = FAMILY_TREES.get(family)
    return () if trees is None else served(trees, revision)


@functools.cache
def profile_trees(revision: str) -> frozenset[str]:
    """The later sub-trees a profile has at a revision (see PROFILE_TREES)."""
    return frozenset(served(PROFILE_TREES, revision))
