"""The source's facts about Klaviyo agree with the emulator's.

The two packages never import each other (the emulator is the oracle the tests trust), so
each keeps its own copy of what Klaviyo does: page maxima, rate tiers, key scopes, profile
attributes, and the revisions at which these change. This test is where the copies meet.
"""

from __future__ import annotations

import pytest

from klaviyo_emulator.spec import operations, resources, revisions
from sources.klaviyo import settings
from sources.klaviyo.api import endpoints
from sources.klaviyo.options import validate_revision

SERVED = (*revisions.REVISIONS, *revisions.SERVED_AS)
CALLED = (
    "get_segments",
    "get_segment_profiles",
    "get_segment_relationships_profiles",
    "get_profiles",
)


def _maximum(operation: str, revision: str) -> int:
    paging = operations.find(operation).params.paging
    assert paging is not None
    return revisions.latest(paging.maximum, revisions.SERVED_AS.get(revision, revision))


def _served_as(revision: str) -> str:
    return revisions.SERVED_AS.get(revision, revision)


@pytest.mark.parametrize("revision", SERVED)
def test_page_sizes_are_the_maxima(revision: str) -> None:
    assert endpoints.profile_ids_page_size(revision) == _maximum(
        "get_segment_relationships_profiles", revision
    )
    assert _maximum("get_segment_profiles", revision) == settings.SEGMENT_PROFILES_PAGE_SIZE
    assert _maximum("get_segments", revision) == settings.SEGMENTS_PAGE_SIZE
    assert _maximum("get_profiles", revision) == settings.PROFILES_PAGE_SIZE


@pytest.mark.parametrize("revision", SERVED)
def test_segment_page_size_is_sent_only_where_accepted(revision: str) -> None:
    paging = operations.find("get_segments").params.paging
    assert paging is not None
    sent = "page[size]" in endpoints.segments(revision).params
    assert sent == revisions.since(_served_as(revision), paging.size_from)


@pytest.mark.parametrize("revision", SERVED)
@pytest.mark.parametrize("operation", CALLED)
def test_rate_limits_agree(operation: str, revision: str) -> None:
    expected = operations.find(operation).limits(_served_as(revision))
    assert endpoints.rate_limits(operation, revision) == expected


@pytest.mark.parametrize("operation", CALLED)
def test_scopes_the_source_names_are_required(operation: str) -> None:
    assert settings.OPERATION_SCOPES[operation] in operations.find(operation).scopes


def test_revision_thresholds_agree() -> None:
    assert settings.SEGMENTS_PAGE_SIZE_PARAM_FROM == revisions.SEGMENTS_PAGE_SIZE_FROM
    assert settings.PROFILE_IDS_PAGE_100_FROM == revisions.RELATIONSHIPS_PAGE_100_FROM
    assert settings.L_TIER_STEADY_750_FROM == revisions.L_STEADY_750_FROM


def test_profile_attributes_agree() -> None:
    source = {
        *settings.PROFILE_STRING_ATTRIBUTES,
        *settings.PROFILE_DATETIME_ATTRIBUTES,
        "location",
        *settings.PROFILE_JSON_ATTRIBUTES,
    }
    assert source == set(resources.PROFILE_DEFAULT_FIELDS)
    assert tuple(settings.LOCATION_FIELDS) == tuple(resources.LOCATION_FIELDS)
    assert tuple(settings.ADDITIONAL_PROFILE_FIELDS) == tuple(resources.PROFILE_ADDITIONAL_FIELDS)


def test_every_served_revision_is_accepted_and_the_default_is_served() -> None:
    for revision in SERVED:
        assert validate_revision(revision) == revision
    assert settings.DEFAULT_REVISION in revisions.REVISIONS
