"""What worker threads put on a run's event queue, in the order a segment's walk makes them.

For each segment: any number of `Page` and `Closed`, then one `Finished`; or one `Failed`,
which stops the run. Only the generator thread takes events off the queue (`batches`).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime

from ..rows.emitted import ProfileKey, profile_keys
from ..typing import Closure, Resource


@dataclass
class Page:
    """Members of one segment, as profile resources, with their parsed `joined_group_at`.

    `attributes_only` are members whose membership rows are loaded already (a refresh):
    rows of `profiles` only. The keys of both lists (`rows.profiles.profile_keys`) are made
    with the page, in the worker, while its profiles are fresh in memory.
    """

    segment_id: str
    profiles: list[Resource]
    joined: list[datetime | None]
    attributes_only: list[Resource] = field(default_factory=list)
    keys: list[ProfileKey] = field(init=False, repr=False)
    attributes_only_keys: list[ProfileKey] = field(init=False, repr=False)

    def __post_init__(self) -> None:
        self.keys = profile_keys(self.profiles)
        self.attributes_only_keys = profile_keys(self.attributes_only)


@dataclass
class Closed:
    """Stays of one segment that ended."""

    segment_id: str
    closures: list[Closure]


@dataclass
class Finished:
    """A segment is done: every event about it is on the queue before this one.

    Attributes:
        segment_id: The segment.
        cursor: The cursor it may advance to; None leaves it as it is.
        walked: Its members were walked (False for a segment that is only retired).
        reconciled: Its membership was compared with what the destination holds.
        vanished: It answered 404: deleted in Klaviyo during the run.
        processing: Klaviyo was still computing it.
        retired: Every open stay of it was closed: forget its cursors.
        partial: The walk stopped at a checkpoint before its last page; `cursor` is the
            newest `joined_group_at` of the pages already queued (pages come sorted by it).
        deferred: The walk did not start: the run reached a checkpoint first.
        remaining_pages: For a partial walk, an estimate of the pages still to read.
        refreshed: Every member was read with its attributes (`walk.refresh`).
    """

    segment_id: str
    cursor: str | None = None
    walked: bool = True
    reconciled: bool = False
    vanished: bool = False
    retired: bool = False
    processing: bool = False
    partial: bool = False
    deferred: bool = False
    remaining_pages: int | None = None
    refreshed: bool = False


@dataclass
class Failed:
    """A walk failed; the run stops with this error."""

    error: BaseException


Event = Page | Closed | Finished | Failed
"""Anything a worker puts on the queue."""
