"""The segment list of a run: fetched once, on first use, and shared by every resource."""

from __future__ import annotations

import threading
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

import dlt
from dlt.common.storages.exceptions import CurrentLoadPackageStateNotAvailable

from . import settings
from .client import KlaviyoClient, api_path
from .exceptions import KlaviyoNotFoundError
from .rows import Resource, segment_tag_ids


@dataclass
class Segments:
    """The segments in scope and the tags they carry, as Klaviyo listed them.

    Attributes:
        segments: Segment resources in the order Klaviyo listed them.
        tags: Included tag resources linked to at least one segment in scope, by id.
        scoped: True when the run is limited to requested segment ids.
    """

    segments: list[Resource] = field(default_factory=list)
    tags: dict[str, Resource] = field(default_factory=dict)
    scoped: bool = False

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
    """

    def __init__(
        self,
        client_factory: Callable[[], KlaviyoClient],
        segment_ids: Sequence[str] | None = None,
    ) -> None:
        self._client_factory = client_factory
        self._segment_ids = list(dict.fromkeys(segment_ids)) if segment_ids is not None else None
        self._lock = threading.Lock()
        self._segments: Segments | None = None
        self._run: str | None = None

    def get(self) -> Segments:
        """Returns the segments in scope, fetching the list on the run's first call only.

        Raises:
            KlaviyoNotFoundError: A requested segment id is not in Klaviyo's list.
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
            path = api_path(settings.SEGMENTS_PATH, client.revision)
            for page in client.paginate(path, self._params(client.revision), "get_segments"):
                listed.extend(page.get("data") or [])
                for resource in page.get("included") or []:
                    if resource.get("type") == "tag":
                        included[resource["id"]] = resource
        finally:
            client.close()
        return self._scope(listed, included)

    def _params(self, revision: str) -> dict[str, str]:
        params = {"include": "tags"}
        if revision.split(".")[0] >= settings.SEGMENTS_PAGE_SIZE_PARAM_FROM:
            params["page[size]"] = str(settings.SEGMENTS_PAGE_SIZE)
        return params

    def _scope(self, listed: list[Resource], included: dict[str, Resource]) -> Segments:
        segments = listed
        if self._segment_ids is not None:
            by_id = {segment["id"]: segment for segment in listed}
            for segment_id in self._segment_ids:
                if segment_id not in by_id:
                    raise KlaviyoNotFoundError(f"segment {segment_id} does not exist", segment_id)
            segments = [by_id[segment_id] for segment_id in self._segment_ids]
        linked = {tag_id for segment in segments for tag_id in segment_tag_ids(segment) or ()}
        tags = {tag_id: tag for tag_id, tag in included.items() if tag_id in linked}
        return Segments(segments=segments, tags=tags, scoped=self._segment_ids is not None)


def _current_run() -> str | None:
    """The load id of the extraction in progress; None outside of a pipeline run."""
    try:
        return dlt.current.load_package_state()["load_id"]
    except CurrentLoadPackageStateNotAvailable:
        return None
