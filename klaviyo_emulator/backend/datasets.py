"""Deterministic datasets: segments, tags and memberships generated from a preset and a seed."""

from __future__ import annotations

import random
from dataclasses import dataclass
from typing import Any

from ..settings import DATASET_ANCHOR, DATASET_SPAN_SECONDS, PRESETS
from . import ids
from .memberships import SegmentMembers, make_key
from .models import Segment, Tag
from .profiles import ProfileFactory

SEGMENT_NAMES = (
    "VIP customers ⭐",
    "Newsletter subscribers",
    "Churn risk – lapsed 180 days",
    "Recently imported (processing)",
    "Empty: legacy promo",
    "Clientes en España",
    "Repeat Purchasers",
    "Engaged last 30 days",
    "Käufer mit Rabatt",
    "高价值客户",
    "SMS opted-in",
    "Pro plan",
    "Abandoned checkout",
    "Winback — 2 years",
    "Boston area",
    "Predicted high CLV",
    "Birthday this month 🎂",
    "Wholesale / B2B",
    "Unengaged (sunset)",
    "Beta testers",
)
TAG_NAMES = (
    "VIP",
    "Newsletter",
    "Återförsäljare",
    "Q4 2025 campaign",
    "retention",
    "標籤",
    "sms",
    "experimental 🧪",
)
# Special roles in presets with at least 5 segments; the `tiny` checks rely on them.
INACTIVE_SEGMENT = 2
PROCESSING_SEGMENT = 3
EMPTY_SEGMENT = 4
TINY_SIZES = (30, 20, 15, 10, 0, 12)
TINY_TIE_GROUP = 7
JOIN_HORIZON = int(DATASET_ANCHOR.timestamp()) - 24 * 3600


@dataclass
class Dataset:
    """Everything generated for one (preset, seed)."""

    factory: ProfileFactory
    segments: list[Segment]
    tags: list[Tag]


def build(
    preset: str, seed: int, profiles: int | None = None, memberships: int | None = None
) -> Dataset:
    """Generate the dataset of a preset; `profiles` and `memberships` override its sizes."""
    if preset not in PRESETS:
        raise ValueError(f"unknown dataset {preset!r}; choose one of {', '.join(PRESETS)}")
    sizes = PRESETS[preset]
    profile_count = sizes["profiles"] if profiles is None else profiles
    membership_count = sizes["memberships"] if memberships is None else memberships
    segment_count = sizes["segments"]
    if segment_count == 0 and (membership_count or profiles):
        segment_count = 1
    factory = ProfileFactory(seed, profile_count)
    tags = [Tag(ids.tag_id(seed, n), TAG_NAMES[n % len(TAG_NAMES)]) for n in range(sizes["tags"])]
    counts = _segment_sizes(preset, segment_count, membership_count, profile_count)
    segments = [
        _segment(seed, number, factory, counts[number], tags) for number in range(segment_count)
    ]
    return Dataset(factory=factory, segments=segments, tags=tags)


def _segment_sizes(preset: str, segments: int, memberships: int, profiles: int) -> list[int]:
    if preset == "tiny" and segments == len(TINY_SIZES) and memberships == sum(TINY_SIZES):
        return [min(size, profiles) for size in TINY_SIZES]
    special_empty = EMPTY_SEGMENT if segments > EMPTY_SEGMENT else -1
    weights = [0.0 if n == special_empty else (n + 2) ** -0.5 for n in range(segments)]
    total = sum(weights) or 1.0
    sizes = [min(profiles, int(memberships * w / total)) for w in weights]
    shortfall = memberships - sum(sizes)
    for n in range(segments):
        if shortfall <= 0:
            break
        if weights[n]:
            grow = min(shortfall, profiles - sizes[n])
            sizes[n] += grow
            shortfall -= grow
    return sizes


def _segment(
    seed: int, number: int, factory: ProfileFactory, size: int, tags: list[Tag]
) -> Segment:
    rng = random.Random(f"{seed}:segment:{number}")
    created = (
        int(DATASET_ANCHOR.timestamp())
        - DATASET_SPAN_SECONDS
        + rng.randrange(DATASET_SPAN_SECONDS // 2)
    )
    updated = created + rng.randrange(JOIN_HORIZON - created)
    name = SEGMENT_NAMES[number % len(SEGMENT_NAMES)]
    if number >= len(SEGMENT_NAMES):
        name = f"{name} #{number // len(SEGMENT_NAMES) + 1}"
    return Segment(
        id=ids.segment_id(seed, number),
        name=name,
        definition=_definition(rng, number),
        created=created,
        updated=updated,
        is_active=number != INACTIVE_SEGMENT,
        is_processing=number == PROCESSING_SEGMENT,
        is_starred=rng.random() < 0.3,
        members=SegmentMembers(_member_keys(rng, factory, size, number)),
        tag_ids=_tag_links(rng, number, tags),
    )


def _member_keys(rng: random.Random, factory: ProfileFactory, size: int, number: int) -> list[int]:
    if size <= 0 or factory.count == 0:
        return []
    members = rng.sample(range(factory.count), size)
    if factory.count > 0 and 0 not in members and size > 1:
        # Profile 0 is in every non-empty segment: a profile with many memberships.
        members[0] = 0
    step, start, horizon = factory.step, factory.start, JOIN_HORIZON
    random_ = rng.random
    joined = [
        start + (i + 1) * step + int(random_() * (horizon - start - (i + 1) * step))
        for i in members
    ]
    _add_ties(rng, joined, members, number)
    return [make_key(j, i) for j, i in zip(joined, members, strict=True)]


def _add_ties(rng: random.Random, joined: list[int], members: list[int], number: int) -> None:
    """Give runs of members one shared joined_group_at, as bulk imports do."""
    order = sorted(range(len(members)), key=joined.__getitem__)
    # The first segment gets one long run early on, so ties straddle small page boundaries.
    long_run = number == 0 and len(order) >= TINY_TIE_GROUP + 5
    groups = [(5, TINY_TIE_GROUP)] if long_run else []
    position = 0
    while position < len(order):
        if rng.random() < 0.04:
            groups.append((position, rng.randint(2, 9)))
        position += rng.randint(1, 12)
    for begin, length in groups:
        run = order[begin : begin + length]
        if len(run) < 2:
            continue
        # The latest member of the run sets the stamp, so no join precedes its profile's creation.
        stamp = max(joined[k] for k in run)
        for k in run:
            joined[k] = stamp


def _tag_links(rng: random.Random, number: int, tags: list[Tag]) -> list[str]:
    if not tags:
        return []
    if number < 2:
        # The first two segments share the first tag.
        chosen = {0} | {rng.randrange(len(tags))}
    elif rng.random() < 0.3:
        chosen = set()
    else:
        chosen = set(rng.sample(range(len(tags)), rng.randint(1, min(3, len(tags)))))
    return [tags[n].id for n in sorted(chosen)]


def _definition(rng: random.Random, number: int) -> dict[str, Any]:
    templates = (
        _property_condition("properties['plan']", "string", "equals", "pro"),
        {
            "type": "profile-metric",
            "metric_id": "RESQ6t",
            "measurement": "count",
            "measurement_filter": {"type": "numeric", "operator": "greater-than", "value": 2},
            "timeframe_filter": {
                "type": "date",
                "operator": "in-the-last",
                "unit": "day",
                "quantity": 90,
            },
            "metric_filters": None,
        },
        {
            "type": "profile-marketing-consent",
            "consent": {
                "channel": "email",
                "can_receive_marketing": True,
                "consent_status": {"subscription": "any", "filters": None},
            },
        },
        {
            "type": "profile-region",
            "in_region": True,
            "region": "european_union",
        },
        _property_condition("location['city']", "string", "equals", "Boston"),
        {
            "type": "profile-predictive-analytics",
            "dimension": "predicted_clv",
            "filter": {"type": "numeric", "operator": "greater-than", "value": 500},
        },
    )
    groups = []
    for _ in range(1 + rng.randrange(2)):
        count = 1 + rng.randrange(2)
        groups.append({"conditions": [rng.choice(templates) for _ in range(count)]})
    if number % 5 == 4:
        groups.append(
            {
                "conditions": [
                    {
                        "type": "profile-group-membership",
                        "is_member": True,
                        "group_ids": ["XyZ123"],
                        "timeframe_filter": None,
                    }
                ]
            }
        )
    return {"condition_groups": groups}


def _property_condition(prop: str, kind: str, operator: str, value: Any) -> dict[str, Any]:
    return {
        "type": "profile-property",
        "property": prop,
        "filter": {"type": kind, "operator": operator, "value": value},
    }
