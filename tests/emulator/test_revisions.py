"""What a segment member's profile has at each revision: `fields[profile]` names, the later
sub-trees of `subscriptions` and `predictive_analytics`, and the `push-tokens` relationship.

The revisions are those of Klaviyo's published specs, taking the last version of each
revision's spec; the two specs at hand (2024-06-15 and 2026-07-15) are checked directly.
"""

from __future__ import annotations

from typing import Any

import pytest
import requests
import spec

from klaviyo_emulator import Emulator
from klaviyo_emulator.spec.revisions import REVISIONS

OLD, NEW = "2024-06-15", "2026-07-15"
needs_specs = pytest.mark.skipif(spec.specs_dir() is None, reason="Klaviyo OpenAPI specs not found")

# a `fields[profile]` name -> the first revision that takes it
LATER_FIELDS = {
    "subscriptions.mobile_push": "2024-07-15",
    "subscriptions.mobile_push.marketing.consent": "2024-07-15",
    "subscriptions.sms.transactional": "2024-10-15",
    "subscriptions.sms.transactional.consent": "2024-10-15",
    "subscriptions.whatsapp.marketing.consent": "2025-07-15",
    "predictive_analytics.ranked_channel_affinity": "2025-07-15",
    "id": "2026-04-15",
    "subscriptions.email.open_tracking": "2026-04-15",
    "subscriptions.email.open_tracking.consent": "2026-04-15",
}
# (additional field, path of a later sub-tree inside it) -> its first revision
LATER_TREES = {
    ("subscriptions", ("mobile_push",)): "2024-07-15",
    ("subscriptions", ("sms", "transactional")): "2024-10-15",
    ("subscriptions", ("whatsapp",)): "2025-07-15",
    ("predictive_analytics", ("ranked_channel_affinity",)): "2025-07-15",
    ("subscriptions", ("email", "open_tracking")): "2026-04-15",
}
PUSH_TOKENS_FROM = "2025-01-15"


def _profiles(emu: Emulator, revision: str, **params: str) -> requests.Response:
    segment_id = max(emu.segment_ids(), key=lambda sid: len(emu.members(sid)))
    return requests.get(
        f"{emu.base_url}/api/segments/{segment_id}/profiles",
        params={"page[size]": "1", **params},
        headers={"Authorization": f"Klaviyo-API-Key {emu.api_key}", "revision": revision},
        timeout=10,
    )


def _has(document: dict[str, Any], path: tuple[str, ...]) -> bool:
    for part in path:
        if not isinstance(document, dict) or part not in document:
            return False
        document = document[part]
    return True


@pytest.mark.parametrize("revision", REVISIONS)
def test_later_profile_fields_are_taken_from_their_revision(emu: Emulator, revision: str) -> None:
    for name, first in LATER_FIELDS.items():
        response = _profiles(emu, revision, **{"fields[profile]": f"email,{name}"})
        if revision >= first:
            assert response.status_code == 200, (name, response.text)
        else:
            assert response.status_code == 400, name
            error = response.json()["errors"][0]
            assert error["source"] == {"parameter": "fields[profile]"}
            assert error["detail"] == f"'{name}' is not a valid field for the resource 'profile'."


@pytest.mark.parametrize("revision", REVISIONS)
def test_later_sub_trees_are_served_from_their_revision(emu: Emulator, revision: str) -> None:
    additional = {"additional-fields[profile]": "subscriptions,predictive_analytics"}
    (member,) = _profiles(emu, revision, **additional).json()["data"]
    for (field, path), first in LATER_TREES.items():
        assert _has(member["attributes"][field], path) is (revision >= first), (field, path)
    assert ("push-tokens" in member["relationships"]) is (revision >= PUSH_TOKENS_FROM)


def test_a_selected_later_sub_tree_is_served(emu: Emulator) -> None:
    response = _profiles(
        emu,
        "2025-07-15",
        **{
            "additional-fields[profile]": "subscriptions",
            "fields[profile]": "subscriptions.whatsapp",
        },
    )
    (member,) = response.json()["data"]
    assert member["attributes"] == {
        "subscriptions": {
            "whatsapp": {"marketing": None, "transactional": None, "conversational": None}
        }
    }


def _spec_profile_fields(revision: str) -> set[str]:
    official = spec.operation(spec.load_full_spec(revision), "GET", "/api/segments/{id}/profiles")
    (parameter,) = [p for p in official["parameters"] if p["name"] == "fields[profile]"]
    return set(parameter["schema"]["items"]["enum"])


@needs_specs
def test_profile_fields_are_the_specs(emu: Emulator) -> None:
    old, new = _spec_profile_fields(OLD), _spec_profile_fields(NEW)
    assert old < new
    for revision, names in ((OLD, old), (NEW, new)):
        for name in sorted(names):
            response = _profiles(emu, revision, **{"fields[profile]": name})
            assert response.status_code == 200, (revision, name, response.text)
    for name in sorted(new - old):
        assert _profiles(emu, OLD, **{"fields[profile]": name}).status_code == 400, name
