"""Routing, derived from `spec.operations`: both the `/`-terminated and the bare path forms.

A method that the official API has on a served path but the emulator does not serve (creating
or changing tags, say) answers 404 like any other unserved operation, not 405: a 405 would tell
the client that Klaviyo has no such method.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from .spec.operations import OPERATIONS, UNSERVED_METHODS
from .spec.shapes import Operation

_ID = re.compile(r"\{(\w+)\}")


@dataclass(frozen=True)
class _Path:
    pattern: re.Pattern[str]
    methods: dict[str, Operation]  # served: method -> operation
    unserved: frozenset[str] = frozenset()  # methods of the official API not served here


def _routes() -> tuple[_Path, ...]:
    by_path: dict[str, dict[str, Operation]] = {}
    for operation in OPERATIONS:
        by_path.setdefault(operation.path, {})[operation.method] = operation
    return tuple(
        _Path(
            re.compile(_ID.sub(r"(?P<\1>[^/]+)", path) + "/?"),
            methods,
            UNSERVED_METHODS.get(path, frozenset()),
        )
        for path, methods in by_path.items()
    )


ROUTES = _routes()


@dataclass(frozen=True)
class Route:
    """The outcome of routing: an operation, or why there is none.

    Without an operation, `path_known` tells a method the path does not have (405) from an
    unknown path or an official method the emulator does not serve (404).
    """

    operation: Operation | None
    segment_id: str | None = None
    path_known: bool = False
    tag_id: str | None = None
    profile_id: str | None = None


def match(method: str, path: str) -> Route:
    """Route a method and a path (without query string)."""
    for route in ROUTES:
        found = route.pattern.fullmatch(path)
        if found is None:
            continue
        groups = found.groupdict()
        known = method not in route.unserved
        return Route(
            route.methods.get(method),
            groups.get("segment_id"),
            known,
            groups.get("tag_id"),
            groups.get("profile_id"),
        )
    return Route(None)
