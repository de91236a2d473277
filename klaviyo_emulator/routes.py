"""Paths and methods of the emulated endpoints; both the `/`-terminated and the bare path forms."""

from __future__ import annotations

import re
from dataclasses import dataclass

from . import settings as s

_SEGMENT = r"/api/segments/(?P<segment_id>[^/]+)"
ROUTES: tuple[tuple[re.Pattern[str], dict[str, str]], ...] = (
    (re.compile(r"/api/segments/?"), {"GET": s.GET_SEGMENTS, "POST": s.CREATE_SEGMENT}),
    (
        re.compile(_SEGMENT + "/?"),
        {"GET": s.GET_SEGMENT, "PATCH": s.UPDATE_SEGMENT, "DELETE": s.DELETE_SEGMENT},
    ),
    (re.compile(_SEGMENT + "/profiles/?"), {"GET": s.GET_SEGMENT_PROFILES}),
    (
        re.compile(_SEGMENT + "/relationships/profiles/?"),
        {"GET": s.GET_SEGMENT_RELATIONSHIPS_PROFILES},
    ),
    (re.compile(_SEGMENT + "/tags/?"), {"GET": s.GET_SEGMENT_TAGS}),
    (re.compile(_SEGMENT + "/relationships/tags/?"), {"GET": s.GET_SEGMENT_RELATIONSHIPS_TAGS}),
)


@dataclass(frozen=True)
class Route:
    """The outcome of routing: an operation, or why there is none."""

    operation: str | None
    segment_id: str | None = None
    path_known: bool = False


def match(method: str, path: str) -> Route:
    """Route a method and a path (without query string)."""
    for pattern, methods in ROUTES:
        found = pattern.fullmatch(path)
        if found is None:
            continue
        segment_id = found.groupdict().get("segment_id")
        return Route(methods.get(method), segment_id, path_known=True)
    return Route(None)
