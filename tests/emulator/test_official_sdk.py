"""Klaviyo's official Python SDK (klaviyo-api 25.0.0, revision 2026-10-15) against the emulator.

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
