"""The source's shared vocabulary: Klaviyo resources, members, stays and their closures."""

from __future__ import annotations

from datetime import datetime
from typing import Any, NamedTuple

JsonDoc = dict[str, Any]
"""One decoded JSON:API document (a page or an error)."""

Resource = dict[str, Any]
"""One JSON:API resource (`id`, `type`, `attributes`, `relationships`), as Klaviyo sent it."""

NO_ATTRIBUTES: Resource = {}
"""The attributes of every profile that came without any; shared, so never written to."""

Member = tuple[str, Resource, "datetime | None"]
"""(segment id, profile resource, its joined_group_at parsed once by the walk)."""

Stays = dict[str, tuple[datetime, ...]]
"""Open stays of one segment: `joined_group_at` of each stay not yet closed, by profile id."""


class Closure(NamedTuple):
    """The end of one stay of a profile in a segment.

    Attributes:
        profile_id: The profile.
        joined_group_at: Start of the stay (part of the history key).
        left_at: When the stay ended: the detection time for a leave, or the start of the
            profile's next stay when it re-joined in between.
        leaves: True for the stay that ends the profile's membership (it is no longer in
            the segment); False for an earlier stay closed by a re-join.
    """

    profile_id: str
    joined_group_at: datetime
    left_at: datetime
    leaves: bool
