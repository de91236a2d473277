"""Random changes to the emulator's account, and the check that the dataset follows them.

A `Timeline` runs the source after each round of changes (reconciling every segment) and
records the ground truth right after each run, so that the history table can be asked later
who was in which segment at each of those moments.
"""

from __future__ import annotations

import random
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from .conftest import Loader, Truth, utc

STEP_SECONDS = 10
"""The emulator's clock moves this much between changes and runs, so joins, leaves and run
times never share a second."""


def mutate(emu: Any, rng: random.Random, deleted: set[str]) -> None:
    """A few random changes: joins, leaves, re-joins, a deletion, an emptied segment, tags."""
    live = emu.segment_ids()
    for _ in range(rng.randint(2, 6)):
        segment = rng.choice(live)
        members = sorted(emu.members(segment))
        action = rng.choice(["join", "join", "leave", "leave", "rejoin", "tag", "new_profile"])
        if action == "join":
            outsiders = sorted(set(emu.profile_ids()) - set(members))
            if outsiders:
                emu.add_member(segment, rng.choice(outsiders))
        elif action == "new_profile":
            emu.add_member(segment, emu.create_profile(email=f"p{rng.random()}@example.com"))
        elif action == "leave" and members:
            for profile in rng.sample(members, min(len(members), rng.randint(1, 3))):
                emu.remove_member(segment, profile)
        elif action == "rejoin" and members:
            profile = rng.choice(members)
            emu.remove_member(segment, profile)
            emu.advance_clock(1)
            emu.add_member(segment, profile)
        elif action == "tag":
            _change_tags(emu, rng, segment)
    if rng.random() < 0.3:
        segment = rng.choice(live)
        for profile in list(emu.members(segment)):
            emu.remove_member(segment, profile)
    if rng.random() < 0.3 and len(live) > 2:
        segment = rng.choice(live)
        emu.delete_segment(segment)
        deleted.add(segment)


def _change_tags(emu: Any, rng: random.Random, segment: str) -> None:
    linked = sorted(emu.segment_tags(segment))
    if linked and rng.random() < 0.5:
        emu.unlink_tag(segment, rng.choice(linked))
    else:
        emu.link_tag(segment, rng.choice(sorted(emu.tag_ids())))


@dataclass
class Timeline:
    """Runs the source and checks the dataset against the emulator after every run.

    Attributes:
        loader: The pipeline under test.
        truth: The emulator's ground truth.
        moments: (time right after a run, who was in which segment then).
        seen_segments: Every segment id a run listed, with its last known name.
        seen_tags: Every (tag id, name) linked to a segment at some run.
        deleted: Segments deleted so far.
        closed: Every closed stay seen so far, with its `left_at`.
    """

    loader: Loader
    truth: Truth
    moments: list[tuple[datetime, set[tuple[str, str]]]] = field(default_factory=list)
    seen_segments: dict[str, str] = field(default_factory=dict)
    seen_tags: set[tuple[str, str]] = field(default_factory=set)
    deleted: set[str] = field(default_factory=set)
    closed: dict[tuple[str, str, datetime], datetime] = field(default_factory=dict)

    def run_and_check(self, **options: Any) -> Any:
        emu = self.truth.emu
        emu.advance_clock(STEP_SECONDS)
        stats = self.loader.run(reconcile_every_hours=0, reconcile_inactive=True, **options)
        self.moments.append((emu.now(), self.truth.members()))
        for segment_id in emu.segment_ids():
            self.seen_segments[segment_id] = emu.segment(segment_id)["name"]
        self.seen_tags |= self.truth.linked_tags()
        self.check()
        emu.advance_clock(STEP_SECONDS)
        return stats

    def check(self) -> None:
        with self.loader.reading():
            self._check()
        self._check_leaves(read_tables(self.loader))

    def _check_leaves(self, tables: Tables) -> None:
        """A leave is closed in both tables with one `left_at`, which no later run moves."""
        for (s, p), (joined, member, left) in tables.memberships.items():
            if member is False:
                assert left is not None and tables.history.get((s, p, joined)) == left, (s, p)
        moved = {k: v for k, v in self.closed.items() if tables.history.get(k) != v}
        assert not moved, f"closed stays reopened or moved: {moved}"
        self.closed.update({k: v for k, v in tables.history.items() if v is not None})

    def _check(self) -> None:
        loader, truth = self.loader, self.truth
        assert loader.memberships() == truth.memberships()
        assert loader.segment_tags() == truth.segment_tags()
        assert set(loader.rows("select id, name from tags")) == self.seen_tags
        segments = dict(loader.rows("select id, name from segments"))
        assert segments == self.seen_segments
        assert set(loader.deleted_segments()) == self.deleted
        # a reconciled segment has one open stay per member: the current one
        open_stays = {(s, p, j) for s, p, j, left in loader.stays() if left is None}
        assert open_stays == truth.memberships()

    def check_history(self) -> None:
        with self.loader.reading():
            for moment, members in self.moments:
                assert self.loader.members_on(moment) == members, f"members on {moment}"


def every_kind_of_change(emu: Any, step: int, deleted: set[str]) -> None:
    """A fixed sequence that makes every kind of change at least once over two steps."""
    segments = [s for s in emu.segment_ids() if len(emu.members(s)) >= 3]
    first, second, third = segments[:3]
    if step == 1:
        members = sorted(emu.members(first))
        emu.remove_member(first, members[0])  # a leave
        emu.remove_member(first, members[1])  # a re-join
        emu.advance_clock(1)
        emu.add_member(first, members[1])
        outsider = sorted(set(emu.profile_ids()) - set(emu.members(second)))[0]
        emu.add_member(second, outsider)  # a join
        emu.add_member(second, emu.create_profile(email="new@example.com"))
        for profile in list(emu.members(third)):  # an emptied segment
            emu.remove_member(third, profile)
        _change_tags(emu, random.Random(step), second)
    else:
        emu.delete_segment(second)  # a deleted segment
        deleted.add(second)
        emu.remove_member(first, sorted(emu.members(first))[-1])
        emu.link_tag(first, sorted(emu.tag_ids())[-1])


Membership = tuple[datetime, bool | None, datetime | None]
"""A `segment_memberships` row: (joined_group_at, is_member, left_at)."""


@dataclass(frozen=True)
class Tables:
    """The rows of the tables a run can change, keyed like the tables (dlt's columns left out).

    Attributes:
        memberships: (segment, profile) -> (joined_group_at, is_member, left_at).
        history: (segment, profile, joined_group_at) -> left_at.
        segment_tags: (segment, tag) links.
        segments: segment id -> (deleted_at, is_active, is_processing).
    """

    memberships: dict[tuple[str, str], Membership] = field(default_factory=dict)
    history: dict[tuple[str, str, datetime], datetime | None] = field(default_factory=dict)
    segment_tags: frozenset[tuple[str, str]] = frozenset()
    segments: dict[str, tuple[datetime | None, bool, bool]] = field(default_factory=dict)

    def table(self, name: str, segment_ids: set[str] | None = None) -> set[tuple[Any, ...]]:
        """Rows of one table as a set, only those of `segment_ids` when given."""
        rows: set[tuple[Any, ...]]
        if name == "segment_memberships":
            rows = {(*key, *value) for key, value in self.memberships.items()}
        elif name == "segment_membership_history":
            rows = {(*key, value) for key, value in self.history.items()}
        elif name == "segment_tags":
            rows = set(self.segment_tags)
        elif name == "segments":
            rows = {(key, *value) for key, value in self.segments.items()}
        else:
            raise ValueError(name)
        if segment_ids is None:
            return rows
        return {row for row in rows if row[0] in segment_ids}

    def members(self, segment_id: str) -> set[tuple[str, datetime]]:
        """(profile, joined_group_at) of the rows of a segment that are members (null counts)."""
        return {
            (p, joined)
            for (s, p), (joined, member, _) in self.memberships.items()
            if s == segment_id and member is not False
        }

    def open_stays(self, segment_id: str) -> set[tuple[str, datetime]]:
        return {
            (p, joined)
            for (s, p, joined), left in self.history.items()
            if s == segment_id and left is None
        }

    def segment_ids(self) -> set[str]:
        """Segments with a row in any membership table."""
        return {s for s, _ in self.memberships} | {s for s, _, _ in self.history}


def read_tables(loader: Loader) -> Tables:
    """Reads back the tables that exist so far; a table never loaded reads as empty."""
    dataset = loader.pipeline.dataset_name
    with loader.reading():
        existing = {
            name
            for (name,) in loader.rows(
                f"select table_name from information_schema.tables where table_schema = '{dataset}'"
            )
        }

        def select(table: str, columns: str) -> list[tuple[Any, ...]]:
            return loader.rows(f"select {columns} from {table}") if table in existing else []

        return Tables(
            memberships={
                (s, p): (utc(j), m, utc(left) if left else None)
                for s, p, j, m, left in select(
                    "segment_memberships",
                    "segment_id, profile_id, joined_group_at, is_member, left_at",
                )
            },
            history={
                (s, p, utc(j)): utc(left) if left else None
                for s, p, j, left in select(
                    "segment_membership_history",
                    "segment_id, profile_id, joined_group_at, left_at",
                )
            },
            segment_tags=frozenset(select("segment_tags", "segment_id, tag_id")),
            segments={
                i: (utc(d) if d else None, a, p)
                for i, d, a, p in select("segments", "id, deleted_at, is_active, is_processing")
            },
        )
