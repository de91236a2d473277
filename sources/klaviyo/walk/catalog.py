"""The segment list of a run: fetched once, on first use, and shared by every resource."""

from __future__ import annotations

import threading
from collections.abc import Callable, Collection, Sequence
from dataclasses import dataclass, field

import dlt
from dlt.common.storages.exceptions import CurrentLoadPackageStateNotAvailable

from ..api import endpoints
from ..api.client import ClientFactory
from ..exceptions import KlaviyoNotFoundError
from ..rows.segments import segment_tag_ids
from ..typing import Resource


@dataclass
class Segments:
    """The segments in scope and the tags they carry, as Klaviyo listed them.

    Attributes:
        segments: Segment resources in the order Klaviyo listed them.
        tags: Included tag resources linked to at least one segment in scope, by id.
        scoped: True when the run is limited to requested segment ids.
        gone: Segments known from earlier runs that Klaviyo no longer lists (deleted): in
            scope when they were requested, or any of them in an unscoped run.
    """

    segments: list[Resource] = field(default_factory=list)
    tags: dict[str, Resource] = field(default_factory=dict)
    scoped: bool = False
    gone: list[str] = field(default_factory=list)

    @property
    def ids(self) -> list[str]:
        return [segment["id"] for segment in self.segments]


class SegmentCatalog:
    """Walks `/api/segments/?include=tags` at most once per run and caches the result.

    A run is identified by dlt's load id, so a source object extracted twice reads the list
    again instead of serving the first run's segments.

    Args:
        client_factory: Makes the client used for the walk.
        segment_ids: Segment ids that scope the run; None means every segment.
        known_ids: Returns the ids of the segments earlier runs loaded (read when the list
            is fetched), to tell a deleted segment from one that never existed.
    """

    def __init__(
        self,
        client_factory: ClientFactory,
        segment_ids: Sequence[str] | None = None,
        known_ids: Callable[[], Collection[str]] = frozenset,
    ) -> None:
        self._client_factory = client_factory
        self._known_ids = known_ids
        self._segment_ids = list(dict.fromkeys(segment_ids)) if segment_ids is not None else None
        self._lock = threading.Lock()
        self._segments: Segments | None = None
        self._run: str | None = None

    def get(self) -> Segments:
        """Returns the segments in scope, fetching the list on the run's first call only.

        Raises:
            KlaviyoNotFoundError: A requested segment id is neither in Klaviyo's list nor
                known from an earlier run.
        """
        run = _current_run()
        with self._lock:
            if self._segments is None or run != self._run:
                self._segments = self._fetch()
                self._run = run
            return self._segments

    def _fetch(self) -> Segments:
        client = self._client_factory()
        try:
            listed: list[Resource] = []
            included: dict[str, Resource] = {}
            for page in client.pages(endpoints.segments(client.revision)):
                listed.extend(page.get("data") or [])
                for resource in page.get("included") or []:
                    if resource.get("type") == "tag":
                        included[resource["id"]] = resource
        finally:
            client.close()
        return self._scope(listed, included)

    def _scope(self, listed: list[Resource], included: dict[str, Resource]) -> Segments:
        known = set(self._known_ids())
        by_id = {segment["id"]: segment for segment in listed}
        segments = listed
        gone = sorted(known - set(by_id))
        if self._segment_ids is not None:
            for segment_id in self._segment_ids:
                if segment_id not in by_id and segment_id not in known:
                    raise KlaviyoNotFoundError(f"segment {segment_id} does not exist", segment_id)
            segments = [by_id[s] for s in self._segment_ids if s in by_id]
            gone = [s for s in self._segment_ids if s not in by_id]
        linked = {tag_id for segment in segments for tag_id in segment_tag_ids(segment) or ()}
        tags = {tag_id: tag for tag_id, tag in included.items() if tag_id in linked}
        return Segments(
            segments=segments, tags=tags, scoped=self._segment_ids is not None, gone=gone
        )


def _current_run() -> str | None:
    """The load id of the extraction in progress; None outside of a pipeline run."""
    try:
        return dlt.current.load_package_state()["load_id"]
    except CurrentLoadPackageStateNotAvailable:
        return None
