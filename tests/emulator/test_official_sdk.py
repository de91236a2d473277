"""Klaviyo's official Python SDK (klaviyo-api 25.0.0) against the emulator: every served operation
at the SDK's default revision (2026-10-15) and at 2024-06-15, paged as the SDK's README shows.

The SDK parses every answer into its generated models, so these calls also check the emulator's
bodies against Klaviyo's own reading of its spec. Skipped when the SDK is not installed.
"""

from __future__ import annotations

from typing import Any

import pytest

from klaviyo_emulator import Emulator

klaviyo_api = pytest.importorskip("klaviyo_api")


@pytest.fixture
def sdk(emu: Emulator) -> Any:
    return klaviyo_api.KlaviyoAPI(emu.api_key, max_retries=0, test_host=emu.base_url)


def _walk(call: Any, *args: Any, **kwargs: Any) -> list[list[str]]:
    """Ids per page, paging as the SDK's README says: `page_cursor=response.links.next`."""
    pages: list[list[str]] = []
    response = call(*args, **kwargs)
    while True:
        pages.append([item.id for item in response.data])
        if not response.links.next:
            return pages
        response = call(*args, page_cursor=response.links.next, **kwargs)
        assert len(pages) < 100


def _tagged_segment(emu: Emulator) -> str:
    return max(
        emu.segment_ids(), key=lambda sid: (bool(emu.segment_tags(sid)), len(emu.members(sid)))
    )


def test_sdk_sends_the_current_revision(sdk: Any) -> None:
    assert sdk.api_client.default_headers["revision"] == "2026-10-15"


def test_segments_and_their_paging(emu: Emulator, sdk: Any) -> None:
    everything = _walk(sdk.Segments.get_segments)
    assert [sid for page in everything for sid in page] == sorted(emu.segment_ids())
    pages = _walk(sdk.Segments.get_segments, page_size=2, sort="-id")
    assert len(pages) > 1
    assert [sid for page in pages for sid in page] == sorted(emu.segment_ids(), reverse=True)
    segment_id = _tagged_segment(emu)
    one = sdk.Segments.get_segment(segment_id, additional_fields_segment=["profile_count"])
    assert one.data.attributes.profile_count == len(emu.members(segment_id))


def test_members_paged_with_page_cursor(emu: Emulator, sdk: Any) -> None:
    segment_id = _tagged_segment(emu)
    expected = list(emu.members(segment_id))
    profiles = _walk(sdk.Segments.get_profiles_for_segment, segment_id, page_size=7)
    assert len(profiles) > 1
    assert [pid for page in profiles for pid in page] == expected
    ids = _walk(sdk.Segments.get_profile_ids_for_segment, segment_id, page_size=4)
    assert [pid for page in ids for pid in page] == expected


def test_profiles_paged_with_page_cursor(emu: Emulator, sdk: Any) -> None:
    watermark = emu.now().strftime("%Y-%m-%dT%H:%M:%SZ")
    emu.advance_clock(60)
    changed = emu.all_profile_ids()[5]
    emu.update_profile(changed, first_name="Via SDK")
    pages = _walk(sdk.Profiles.get_profiles, page_size=7, sort="updated")
    ids = [pid for page in pages for pid in page]
    assert len(pages) > 1 and len(ids) == len(set(ids))
    assert sorted(ids) == emu.all_profile_ids() and ids[-1] == changed
    newer = sdk.Profiles.get_profiles(filter=f"greater-than(updated,{watermark})")
    assert [profile.id for profile in newer.data] == [changed]
    extra = sdk.Profiles.get_profiles(
        additional_fields_profile=["subscriptions", "predictive_analytics"], page_size=3
    )
    assert extra.data[0].attributes.subscriptions.email.marketing.consent
    one = sdk.Profiles.get_profile(changed, include=["segments"])
    assert one.data.attributes.first_name == "Via SDK"


def test_flow_triggers(emu: Emulator, sdk: Any) -> None:
    segment_id = _tagged_segment(emu)
    assert sdk.Segments.get_flow_triggers_for_segment(segment_id).data == []
    assert sdk.Segments.get_flow_trigger_ids_for_segment(segment_id).data == []


def test_tags(emu: Emulator, sdk: Any) -> None:
    segment_id = _tagged_segment(emu)
    tag_ids = emu.segment_tags(segment_id)
    assert {t.id for t in sdk.Segments.get_tags_for_segment(segment_id).data} == tag_ids
    assert {t.id for t in sdk.Segments.get_tag_ids_for_segment(segment_id).data} == tag_ids
    tag_id = sorted(tag_ids)[0]
    carriers = [item.id for item in sdk.Tags.get_segment_ids_for_tag(tag_id).data]
    assert carriers == [sid for sid in emu.segment_ids() if tag_id in emu.segment_tags(sid)]
    tag = sdk.Tags.get_tag(tag_id, include=["tag-group"])
    assert tag.data.attributes.name == emu.tag(tag_id)["name"]
    assert tag.included[0].attributes.default is True
    listed = _walk(sdk.Tags.get_tags, page_size=1)
    assert sorted(tid for page in listed for tid in page) == sorted(emu.tag_ids())


def test_segment_writes(emu: Emulator, sdk: Any) -> None:
    definition = {"condition_groups": [{"conditions": []}]}
    body = {
        "data": {"type": "segment", "attributes": {"name": "Via SDK", "definition": definition}}
    }
    created = sdk.Segments.create_segment(body)
    segment_id = created.data.id
    assert emu.segment(segment_id)["name"] == "Via SDK"
    patch = {"data": {"type": "segment", "id": segment_id, "attributes": {"name": "Renamed"}}}
    assert sdk.Segments.update_segment(segment_id, patch).data.attributes.name == "Renamed"
    sdk.Segments.delete_segment(segment_id)
    assert segment_id not in emu.segment_ids()


@pytest.fixture
def old_sdk(sdk: Any) -> Any:
    """The SDK sending the revision the source's spec documents."""
    sdk.api_client.default_headers["revision"] = "2024-06-15"
    return sdk


def test_every_operation_at_2024_06_15(emu: Emulator, old_sdk: Any) -> None:
    sdk = old_sdk
    assert [s for page in _walk(sdk.Segments.get_segments) for s in page] == sorted(
        emu.segment_ids()
    )
    segment_id = _tagged_segment(emu)
    assert sdk.Segments.get_segment(segment_id).data.id == segment_id
    expected = list(emu.members(segment_id))
    profiles = _walk(sdk.Segments.get_profiles_for_segment, segment_id, page_size=7)
    assert len(profiles) > 1 and [p for page in profiles for p in page] == expected
    ids = _walk(sdk.Segments.get_profile_ids_for_segment, segment_id, page_size=4)
    assert [p for page in ids for p in page] == expected
    tag_ids = emu.segment_tags(segment_id)
    assert {t.id for t in sdk.Segments.get_tags_for_segment(segment_id).data} == tag_ids
    assert {t.id for t in sdk.Segments.get_tag_ids_for_segment(segment_id).data} == tag_ids
    tag_id = sorted(tag_ids)[0]
    assert sdk.Tags.get_tag(tag_id).data.id == tag_id
    assert segment_id in {s.id for s in sdk.Tags.get_segment_ids_for_tag(tag_id).data}
    assert sorted(t for page in _walk(sdk.Tags.get_tags) for t in page) == sorted(emu.tag_ids())
    profiles = _walk(sdk.Profiles.get_profiles, page_size=25, sort="-updated")
    assert len(profiles) > 1
    assert sorted(p for page in profiles for p in page) == emu.all_profile_ids()
    assert sdk.Profiles.get_profile(expected[0]).data.id == expected[0]
    # flow triggers came with 2024-10-15: Klaviyo answers 404 before it
    from openapi_client.exceptions import ApiException  # the SDK's generated client

    with pytest.raises(ApiException) as refused:
        sdk.Segments.get_flow_triggers_for_segment(segment_id)
    assert refused.value.status == 404


def test_segment_writes_at_2024_06_15(emu: Emulator, old_sdk: Any) -> None:
    test_segment_writes(emu, old_sdk)
