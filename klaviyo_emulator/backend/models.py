"""Records of the account: segments, tags and tag groups (profiles: `profiles.py`, `account.py`)."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from .memberships import SegmentMembers


@dataclass
class Segment:
    """One segment; timestamps are epoch seconds."""

    id: str
    name: str
    definition: dict[str, Any] | None
    created: int
    updated: int
    is_active: bool = True
    is_processing: bool = False
    is_starred: bool = False
    members: SegmentMembers = field(default_factory=SegmentMembers)
    tag_ids: list[str] = field(default_factory=list)


@dataclass
class Tag:
    """One tag."""

    id: str
    name: str


@dataclass(frozen=True)
class TagGroup:
    """A tag group; the emulated account has only its Default Tag Group, which holds every tag."""

    id: str
    name: str
    exclusive: bool = False
    default: bool = True
