"""Constants of the emulator itself: media types, the account, generated datasets, latency.

What Klaviyo's API is (operations, revisions, resources) lives in `spec/`.
"""

from __future__ import annotations

from datetime import datetime, timezone

JSONAPI_CONTENT_TYPE = "application/vnd.api+json"
ACCEPTED_REQUEST_CONTENT_TYPES = ("application/vnd.api+json", "application/json")
ACCOUNT_ID = "emulated-account"
# Every account has one Default Tag Group, and tags belong to it unless put elsewhere (the
# spec's description of `default`); its name is not documented.
DEFAULT_TAG_GROUP_NAME = "Default"

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
