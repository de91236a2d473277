"""The emulated account's state: segments, tags, profiles, memberships, API keys and the clock."""

from __future__ import annotations

import copy
import threading
import time
from collections.abc import Collection, Iterable
from datetime import datetime, timezone
from typing import Any

from ..settings import DEFAULT_TAG_GROUP_NAME
from ..spec.dates import datetime_to_epoch, epoch_to_datetime, parse_datetime, render_epoch
from ..spec.operations import ALL_SCOPES
from ..spec.resources import PROFILE_DEFAULT_FIELDS
from . import ids
from .datasets import Dataset
from .documents import copy_document
from .memberships import key_epoch, key_index
from .models import Segment, Tag, TagGroup
from .ordering import ProfileOrder

WRITABLE_PROFILE_FIELDS = frozenset(PROFILE_DEFAULT_FIELDS)


class NotFound(KeyError):
    """An id that the account does not hold."""


class Account:
    """Thread-safe state: mutators and ground-truth readers take `lock`; the plain lookups
    (`segment`, `tag`, `profile_*`) do not, so callers hold `lock` around them (as
    `responses.handlers.Handlers.run` does)."""

    def __init__(self, dataset: Dataset, seed: int) -> None:
        self.lock = threading.RLock()
        self.seed = seed
        self.factory = dataset.factory
        self.segments: dict[str, Segment] = {s.id: s for s in dataset.segments}
        self.tags: dict[str, Tag] = {t.id: t for t in dataset.tags}
        self.tag_group = TagGroup(ids.tag_group_id(seed, 0), DEFAULT_TAG_GROUP_NAME)
        self.clock_offset = 0.0
        self._segment_counter = len(dataset.segments)
        self._tag_counter = len(dataset.tags)
        self._profile_overrides: dict[int, dict[str, Any]] = {}
        self._created_profile_ids: dict[str, int] = {}
        self._created_profile_list: list[str] = []
        # every profile in get_profiles' sort orders (reads the overrides as they change)
        self.profile_order = ProfileOrder(self.factory, self._profile_overrides, self.profile_id)
        # counts profiles created or changed: what was computed from them before is stale
        self.profile_changes = 0
        self._last_profile_ms = (
            self.factory.created_epoch(self.factory.count - 1) * 1000 if self.factory.count else 0
        )
        self.keys: dict[str, frozenset[str]] = {}
        self._key_counter = 0
        self.api_key = self.create_api_key(ALL_SCOPES)

    # --- keys and clock -------------------------------------------------------------------------

    def create_api_key(self, scopes: Iterable[str]) -> str:
        with self.lock:
            key = ids.api_key(self.seed, self._key_counter)
            self._key_counter += 1
            self.keys[key] = frozenset(scopes)
            return key

    def now_epoch(self) -> float:
        return time.time() + self.clock_offset

    def now(self) -> datetime:
        return datetime.fromtimestamp(int(self.now_epoch()), tz=timezone.utc)

    def advance_clock(self, seconds: float) -> None:
        if seconds < 0:
            raise ValueError("the clock only moves forward")
        with self.lock:
            self.clock_offset += seconds

    # --- segments and tags ----------------------------------------------------------------------

    def segment(self, segment_id: str) -> Segment:
        try:
            return self.segments[segment_id]
        except KeyError:
            raise NotFound(segment_id) from None

    def create_segment(
        self,
        name: str,
        definition: dict[str, Any] | None = None,
        is_active: bool = True,
        is_processing: bool = False,
        is_starred: bool = False,
    ) -> Segment:
        with self.lock:
            while True:
                segment_id = ids.segment_id(self.seed, self._segment_counter)
                self._segment_counter += 1
                if segment_id not in self.segments:
                    break
            now = int(self.now_epoch())
            segment = Segment(
                id=segment_id,
                name=name,
                definition=copy.deepcopy(definition)
                if definition is not None
                else {"condition_groups": []},
                created=now,
                updated=now,
                is_active=is_active,
                is_processing=is_processing,
                is_starred=is_starred,
            )
            self.segments[segment_id] = segment
            return segment

    def update_segment(self, segment_id: str, **attributes: Any) -> Segment:
        """Set name, definition or flags; None leaves an attribute alone. Bumps `updated`."""
        with self.lock:
            segment = self.segment(segment_id)
            for name, value in attributes.items():
                if value is None:
                    continue
                if name not in ("name", "definition", "is_active", "is_processing", "is_starred"):
                    raise ValueError(f"{name!r} is not a segment attribute")
                setattr(segment, name, copy.deepcopy(value))
            segment.updated = max(segment.updated, int(self.now_epoch()))
            return segment

    def delete_segment(self, segment_id: str) -> None:
        with self.lock:
            self.segment(segment_id)
            del self.segments[segment_id]

    def create_tag(self, name: str) -> str:
        with self.lock:
            tag_id = ids.tag_id(self.seed, self._tag_counter)
            self._tag_counter += 1
            self.tags[tag_id] = Tag(tag_id, name)
            return tag_id

    def tag(self, tag_id: str) -> Tag:
        try:
            return self.tags[tag_id]
        except KeyError:
            raise NotFound(tag_id) from None

    def tag_segment_ids(self, tag_id: str) -> list[str]:
        """The segments that carry a tag, in the order the account holds segments."""
        self.tag(tag_id)
        return [s.id for s in self.segments.values() if tag_id in s.tag_ids]

    def link_tag(self, segment_id: str, tag_id: str) -> None:
        with self.lock:
            segment, _ = self.segment(segment_id), self.tag(tag_id)
            if tag_id not in segment.tag_ids:
                segment.tag_ids.append(tag_id)

    def unlink_tag(self, segment_id: str, tag_id: str) -> None:
        with self.lock:
            segment = self.segment(segment_id)
            if tag_id in segment.tag_ids:
                segment.tag_ids.remove(tag_id)

    # --- profiles -------------------------------------------------------------------------------

    def profile_index(self, profile_id: str) -> int:
        """The index of a profile id, generated or created."""
        created = self._created_profile_ids.get(profile_id)
        if created is not None:
            return created
        factory = self.factory
        try:
            created_ms = ids.ulid_time_ms(profile_id)
        except ValueError:
            raise NotFound(profile_id) from None
        index = (created_ms // 1000 - factory.start) // factory.step
        if 0 <= index < factory.count and factory.profile_id(index) == profile_id:
            return index
        raise NotFound(profile_id)

    def profile_id(self, index: int) -> str:
        if index < self.factory.count:
            return self.factory.profile_id(index)
        return self._created_profile_list[index - self.factory.count]

    def profile_count(self) -> int:
        """How many profiles the account holds; their indexes are `range(profile_count())`."""
        return self.factory.count + len(self._created_profile_list)

    def profile_segment_ids(self, index: int) -> list[str]:
        """The segments a profile is a member of, in the order the account holds segments."""
        return [s.id for s in self.segments.values() if s.members.contains(index)]

    def profile_attributes(self, index: int) -> dict[str, Any]:
        """Default attributes as rendered; callers must not modify the result."""
        override = self._profile_overrides.get(index)
        if override is not None:
            return override
        return self.factory.attributes(index)

    def is_mutated_profile(self, index: int) -> bool:
        """True for profiles created or updated through the emulator (never cached)."""
        return index in self._profile_overrides

    def mutated_profiles(self) -> Collection[int]:
        """Indexes of the profiles created or updated through the emulator (a live view)."""
        return self._profile_overrides.keys()

    def create_profile(self, **attributes: Any) -> str:
        _check_profile_fields(attributes)
        with self.lock:
            now = self.now_epoch()
            created_ms = max(int(now * 1000), self._last_profile_ms + 1)
            self._last_profile_ms = created_ms
            index = self.factory.count + len(self._created_profile_list)
            profile_id = ids.profile_ulid(self.seed, index, created_ms)
            document: dict[str, Any] = dict.fromkeys(PROFILE_DEFAULT_FIELDS)
            document.update(created=render_epoch(int(now)), updated=render_epoch(int(now)))
            document["properties"] = {}
            document.update(copy_document(attributes))
            self._created_profile_list.append(profile_id)
            self._created_profile_ids[profile_id] = index
            self._profile_overrides[index] = document
            self.profile_changes += 1
            return profile_id

    def update_profile(self, profile_id: str, **attributes: Any) -> None:
        """Replace the given attributes (a whole `properties` or `location` object) and bump `updated`.

        `updated` becomes the clock's time, or one second after the profile's previous
        `updated` when that is not earlier: a change is always newer than what a client saw,
        also twice in one second. An `updated` among the attributes is kept as given.
        """
        _check_profile_fields(attributes)
        with self.lock:
            index = self.profile_index(profile_id)
            document = copy_document(self.profile_attributes(index))
            previous = document.get("updated")
            document.update(copy_document(attributes))
            if "updated" not in attributes:
                stamp = int(self.now_epoch())
                seen = parse_datetime(previous) if isinstance(previous, str) else None
                if seen is not None:
                    stamp = max(stamp, datetime_to_epoch(seen) + 1)
                document["updated"] = render_epoch(stamp)
            self._profile_overrides[index] = document
            self.profile_changes += 1

    # --- memberships ----------------------------------------------------------------------------

    def add_member(
        self, segment_id: str, profile_id: str, joined_group_at: datetime | None = None
    ) -> datetime:
        with self.lock:
            segment = self.segment(segment_id)
            index = self.profile_index(profile_id)
            epoch = (
                int(self.now_epoch())
                if joined_group_at is None
                else datetime_to_epoch(joined_group_at)
            )
            segment.members.add(index, epoch)
            return epoch_to_datetime(epoch)

    def remove_member(self, segment_id: str, profile_id: str) -> None:
        with self.lock:
            segment = self.segment(segment_id)
            segment.members.remove(self.profile_index(profile_id))

    def members(self, segment_id: str) -> dict[str, datetime]:
        with self.lock:
            segment = self.segment(segment_id)
            return {
                self.profile_id(key_index(key)): epoch_to_datetime(key_epoch(key))
                for key in segment.members.ordered_keys()
            }

    def all_profile_ids(self) -> list[str]:
        """Every profile's id, in id order (which is index order)."""
        with self.lock:
            return [self.profile_id(index) for index in range(self.profile_count())]

    def member_profile_ids(self) -> list[str]:
        with self.lock:
            indexes: set[int] = set()
            for segment in self.segments.values():
                indexes.update(key_index(key) for key in segment.members.ordered_keys())
            return [self.profile_id(index) for index in sorted(indexes)]


def _check_profile_fields(attributes: dict[str, Any]) -> None:
    unknown = set(attributes) - WRITABLE_PROFILE_FIELDS
    if unknown:
        raise ValueError(f"not profile attributes: {', '.join(sorted(unknown))}")
