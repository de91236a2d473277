"""Paths and methods of the emulated endpoints; both the `/`-terminated and the bare path forms.

A method that the official API has on a served path but the emulator does not serve (creating
or changing tags, say) answers 404 like any other unserved operation, not 405: a 405 would tell
the client that Klaviyo has no such method.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from . import settings as s

_SEGMENT = r"/api/segments/(?P<segment_id>[^/]+)"
_TAG = r"/api/tags/(?P<tag_id>[^/]+)"


@dataclass(frozen=True)
class _Path:
    pattern: re.Pattern[str]
    methods: dict[str, str]  # served: method -> operation
    unserved: frozenset[str] = frozenset()  # methods of the official API not served here


ROUTES: tuple[_Path, ...] = (
    _Path(re.compile(r"/api/segments/?"), {"GET": s.GET_SEGMENTS, "POST": s.CREATE_SEGMENT}),
    _Path(
        re.compile(_SEGMENT + "/?"),
        {"GET": s.GET_SEGMENT, "PATCH": s.UPDATE_SEGMENT, "DELETE": s.DELETE_SEGMENT},
    ),
    _Path(re.compile(_SEGMENT + "/profiles/?"), {"GET": s.GET_SEGMENT_PROFILES}),
    _Path(
        re.compile(_SEGMENT + "/relationships/profiles/?"),
        {"GET": s.GET_SEGMENT_RELATIONSHIPS_PROFILES},
    ),
    _Path(re.compile(_SEGMENT + "/tags/?"), {"GET": s.GET_SEGMENT_TAGS}),
    _Path(
        re.compile(_SEGMENT + "/relationships/tags/?"), {"GET": s.GET_SEGMENT_RELATIONSHIPS_TAGS}
    ),
    _Path(re.compile(_SEGMENT + "/flow-triggers/?"), {"GET": s.GET_SEGMENT_FLOW_TRIGGERS}),
    _Path(
        re.compile(_SEGMENT + "/relationships/flow-triggers/?"),
        {"GET": s.GET_SEGMENT_RELATIONSHIPS_FLOW_TRIGGERS},
    ),
    _Path(re.compile(r"/api/tags/?"), {"GET": s.GET_TAGS}, frozenset({"POST"})),
    _Path(re.compile(_TAG + "/?"), {"GET": s.GET_TAG}, frozenset({"PATCH", "DELETE"})),
    _Path(
        re.compile(_TAG + "/relationships/segments/?"),
        {"GET": s.GET_TAG_RELATIONSHIPS_SEGMENTS},
        frozenset({"POST", "DELETE"}),
    ),
)


@dataclass(frozen=True)
class Route:
    """The outcome of routing: an operation, or why there is none.

    Without an operation, `path_known` tells a method the path does not have (405) from an
    unknown path or an official method the emulator does not serve (404).
    """

    operation: str | None
    segment_id: str | None = None
    path_known: bool = False
    tag_id: str | None = None


def match(method: str, path: str) -> Route:
    """Route a method and a path (without query string)."""
    for route in ROUTES:
        found = route.pattern.fullmatch(path)
        if found is None:
            continue
        groups = found.groupdict()
        known = method not in route.unserved
        return Route(
            route.methods.get(method), groups.get("segment_id"), known, groups.get("tag_id")
        )
    return Route(None)
