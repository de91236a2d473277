"""What each request the source sends looks like, for the revision in use.

The one place that compares revisions: paths (trailing slash), page sizes, parameters,
filters and rate limits. A new revision that changes a request is a change here and a
threshold in `settings`. Page sizes are read from `settings` at call time.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from datetime import datetime, timezone
from typing import NamedTuple

from .. import dates, settings


class Request(NamedTuple):
    """The first page of a collection: where, with which parameters, under which operation.

    Attributes:
        path: API path, e.g. `/api/segments`.
        params: Query parameters of the first page; later pages carry them in `links.next`.
        operation: Klaviyo's operation id: selects the rate limit and the error wording.
        segment_id: The segment the path is about (a 404 then means it was deleted).
    """

    path: str
    params: dict[str, str]
    operation: str
    segment_id: str | None = None


def revision_at_least(revision: str, since: str) -> bool:
    """True when `revision` (`YYYY-MM-DD[.pre]`) is `since` or newer."""
    return revision.split(".", 1)[0] >= since


def api_path(template: str, revision: str, **values: str) -> str:
    """Fills a path template and drops the trailing slash for revisions that have none."""
    path = template.format(**values)
    if revision_at_least(revision, settings.PATHS_WITHOUT_TRAILING_SLASH_FROM):
        path = path.rstrip("/")
    return path


def segments(revision: str) -> Request:
    """`get_segments` with its tags included: every segment of the account."""
    params = {"include": "tags"}
    if revision_at_least(revision, settings.SEGMENTS_PAGE_SIZE_PARAM_FROM):
        params["page[size]"] = str(settings.SEGMENTS_PAGE_SIZE)
    return Request(api_path(settings.SEGMENTS_PATH, revision), params, "get_segments")


def segment_profiles(
    revision: str, segment_id: str, params: Mapping[str, str], since: datetime | None
) -> Request:
    """`get_segment_profiles`: members joined at or after `since` (None: every member).

    Args:
        revision: The API revision.
        segment_id: The segment.
        params: `profile_params` of the run.
        since: Lower bound of `joined_group_at`, inclusive, clamped to now.
    """
    query = dict(params)
    if since is not None:
        query["filter"] = joined_since_filter(since)
    path = api_path(settings.SEGMENT_PROFILES_PATH, revision, segment_id=segment_id)
    return Request(path, query, "get_segment_profiles", segment_id)


def segment_profile_ids(revision: str, segment_id: str, since: datetime | None) -> Request:
    """`get_segment_relationships_profiles`: ids of members joined at or after `since`."""
    params = {"page[size]": str(profile_ids_page_size(revision))}
    if since is not None:
        params["filter"] = joined_since_filter(since)
    path = api_path(settings.SEGMENT_PROFILE_IDS_PATH, revision, segment_id=segment_id)
    return Request(path, params, "get_segment_relationships_profiles", segment_id)


def changed_profiles(
    revision: str,
    profile_fields: Sequence[str] | None,
    additional_fields: Sequence[str],
    since: datetime,
) -> Request:
    """`get_profiles`: every profile of the account updated after `since`, oldest first.

    Args:
        revision: The API revision.
        profile_fields: The run's profile fields (None: every default attribute);
            `updated` is always requested, it is the cursor.
        additional_fields: Requested additional fields.
        since: Lower bound of `updated`, exclusive, clamped to now.
    """
    bound = filter_bound(since)
    params = {
        "page[size]": str(settings.PROFILES_PAGE_SIZE),
        "sort": "updated",
        "filter": f"greater-than(updated,{dates.format_filter_datetime(bound)})",
    }
    if profile_fields is not None:
        fields = [*profile_fields, *additional_fields, "updated"]
        fields = [f for f in dict.fromkeys(fields) if f != settings.JOINED_GROUP_AT]
        params["fields[profile]"] = ",".join(fields)
    if additional_fields:
        params["additional-fields[profile]"] = ",".join(additional_fields)
    return Request(api_path(settings.PROFILES_PATH, revision), params, "get_profiles")


def profile_params(
    profile_fields: Sequence[str] | None, additional_fields: Sequence[str]
) -> dict[str, str]:
    """Query parameters shared by every segment's first profile page.

    The largest page, sorted by `joined_group_at` (a cursor may advance mid-segment), and
    the sparse fieldset with `joined_group_at` always last.
    """
    params = {
        "page[size]": str(settings.SEGMENT_PROFILES_PAGE_SIZE),
        "sort": settings.JOINED_GROUP_AT,
    }
    if profile_fields is not None:
        # A sparse fieldset hides additional fields unless they are named in it too.
        fields = [*profile_fields, *additional_fields]
        fields = [f for f in dict.fromkeys(fields) if f != settings.JOINED_GROUP_AT]
        params["fields[profile]"] = ",".join([*fields, settings.JOINED_GROUP_AT])
    if additional_fields:
        params["additional-fields[profile]"] = ",".join(additional_fields)
    return params


def profile_ids_page_size(revision: str) -> int:
    """The largest page of get_segment_relationships_profiles the revision allows."""
    if revision_at_least(revision, settings.PROFILE_IDS_PAGE_100_FROM):
        return settings.SEGMENT_PROFILE_IDS_PAGE_SIZE
    return settings.SEGMENT_PROFILE_IDS_PAGE_SIZE_EARLIER


def rate_limits(operation: str, revision: str) -> tuple[int, int]:
    """Burst (per second) and steady (per minute) limits of `operation` at `revision`."""
    burst, steady = settings.RATE_LIMITS.get(operation, settings.L_TIER)
    l_tier = (burst, steady) == settings.L_TIER
    if l_tier and revision_at_least(revision, settings.L_TIER_STEADY_750_FROM):
        steady = settings.L_TIER_STEADY_750
    return burst, steady


def filter_bound(since: datetime, now: datetime | None = None) -> datetime:
    """The bound a `joined_group_at` filter really sends: clamped to now, in whole seconds.

    Klaviyo rejects some filters on future datetimes, and a cursor can only be ahead of
    the local clock through skew, so the bound never goes past now.
    """
    bound = min(since, now or dates.utc_now())
    return bound.astimezone(timezone.utc).replace(microsecond=0)


def joined_since_filter(since: datetime, now: datetime | None = None) -> str:
    """Builds `greater-or-equal(joined_group_at,<since>Z)` with `since` clamped to now.

    Args:
        since: The lower bound, inclusive.
        now: The current time; defaults to the local clock.

    Returns:
        The filter expression, not yet URL-encoded (requests encodes the whole value).
    """
    bound = filter_bound(since, now)
    return f"greater-or-equal(joined_group_at,{dates.format_filter_datetime(bound)})"
