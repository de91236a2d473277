"""Query parameters: what an operation accepts at a revision, and their validation (400s).

What each operation accepts is its row in `spec.operations`; this module reads it at the
revision of the request and checks a query string against it.
"""

from __future__ import annotations

import functools
import hashlib
from dataclasses import dataclass, field
from urllib.parse import parse_qsl

from ..spec import operations, resources
from ..spec.revisions import latest, served, since
from . import cursors, filters
from .errors import invalid


@dataclass
class Query:
    """A validated query string."""

    pairs: list[tuple[str, str]]
    fields: dict[str, tuple[str, ...]] = field(default_factory=dict)
    include: tuple[str, ...] = ()
    additional: tuple[str, ...] = ()
    sort: str | None = None
    page_size: int = 0  # the size asked for, else the operation's default (0: not paged)
    cursor: str | None = None
    conditions: list[filters.Condition] = field(default_factory=list)

    def as_mapping(self) -> dict[str, str]:
        return dict(self.pairs)

    def filter_scope(self) -> str:
        """A short digest of the `filter` text: a cursor is only valid with the filter it was
        issued under."""
        text = dict(self.pairs).get("filter", "")
        return hashlib.blake2b(text.encode(), digest_size=6).hexdigest() if text else ""


@dataclass(frozen=True)
class Accepts:
    """What one operation accepts at one revision."""

    families: dict[str, frozenset[str]] = field(default_factory=dict)
    trees: dict[str, tuple[str, ...]] = field(default_factory=dict)  # anything below these
    includes: frozenset[str] = frozenset()
    additional: tuple[str, frozenset[str]] | None = None
    sorts: tuple[str, ...] = ()
    filtered: bool = False
    paged: bool = False
    page_default: int = 0
    page_maximum: int | None = None  # None: no `page[size]`


@functools.cache
def accepts(name: str, revision: str) -> Accepts:
    """The query parameters an operation (by name or alias) takes at a revision."""
    params = operations.find(name).params
    families = {
        family: resources.family_fields(family, revision)
        for family in served(params.fields, revision)
    }
    if params.extra_fields is not None:
        family, names = params.extra_fields
        if family in families:
            families[family] = families[family] | frozenset(names)
    additional = None
    if params.additional is not None:
        family, names = params.additional
        additional = (family, frozenset(names))
        if family in families:
            families[family] = families[family] | additional[1]
    paging = params.paging
    maximum = None
    if paging is not None and since(revision, paging.size_from):
        maximum = latest(paging.maximum, revision)
    return Accepts(
        families=families,
        trees={family: resources.family_trees(family, revision) for family in families},
        includes=frozenset(served(params.include, revision)),
        additional=additional,
        sorts=params.sorts,
        filtered=bool(params.filters),
        paged=paging is not None,
        page_default=paging.default if paging is not None else 0,
        page_maximum=maximum,
    )


def parse(raw_query: str, operation: str, revision: str) -> Query:
    """Validate a raw query string for an operation; raises ApiError (400) naming the parameter."""
    pairs = parse_qsl(raw_query, keep_blank_values=True)
    spec = accepts(operation, revision)
    query = Query(pairs=pairs)
    seen: set[str] = set()
    for name, value in pairs:
        if name in seen:
            raise invalid(f"'{name}' may be given only once.", name)
        seen.add(name)
        _apply(query, spec, name, value, operation, revision)
    if not query.page_size:
        query.page_size = spec.page_default
    return query


def _apply(query: Query, spec: Accepts, name: str, value: str, operation: str, rev: str) -> None:
    if name.startswith("fields[") and name.endswith("]"):
        query.fields[name[7:-1]] = _fields(spec, name, value)
    elif name == "include" and spec.includes:
        query.include = _listed(value, spec.includes, name, "is not an allowed include parameter")
    elif name.startswith("additional-fields[") and spec.additional is not None:
        family, allowed = spec.additional
        if name != f"additional-fields[{family}]":
            raise invalid(f"'{name}' is not a valid query parameter for this endpoint.", name)
        query.additional = _listed(value, allowed, name, "is not an allowed additional field")
    elif name == "sort" and spec.sorts:
        if value not in spec.sorts:
            raise invalid(
                f"'{value}' is not a valid sort value for this resource. "
                f"Allowed values are {', '.join(spec.sorts)}.",
                name,
            )
        query.sort = value
    elif name == "filter" and spec.filtered:
        query.conditions = _conditions(value, operation, rev)
    elif name == "page[cursor]" and spec.paged:
        query.cursor = cursors.token_of(value)
    elif name == "page[size]" and spec.page_maximum is not None:
        query.page_size = _page_size(value, spec.page_maximum)
    else:
        raise invalid(f"'{name}' is not a valid query parameter for this endpoint.", name)


def _fields(spec: Accepts, name: str, value: str) -> tuple[str, ...]:
    family = name[7:-1]
    allowed = spec.families.get(family)
    if allowed is None:
        families = ", ".join(sorted(spec.families)) or "none"
        raise invalid(
            f"'{family}' is not an allowed field family for this resource. "
            f"Allowed field families are {families}.",
            name,
        )
    trees = spec.trees.get(family, ())
    requested = tuple(part.strip() for part in value.split(",") if part.strip())
    for item in requested:
        if item not in allowed and not (trees and item.startswith(trees)):
            raise invalid(f"'{item}' is not a valid field for the resource '{family}'.", name)
    return requested


def _listed(value: str, allowed: frozenset[str], name: str, message: str) -> tuple[str, ...]:
    items = tuple(part.strip() for part in value.split(","))
    for item in items:
        if item not in allowed:
            raise invalid(f"'{item}' {message} for this resource.", name)
    return items


def _conditions(value: str, operation: str, revision: str) -> list[filters.Condition]:
    try:
        conditions = filters.parse_filter(value)
        filters.check_allowed(conditions, operation, revision)
    except filters.FilterError as error:
        raise invalid(error.detail, "filter") from None
    return conditions


def _page_size(value: str, maximum: int) -> int:
    try:
        size = int(value)
    except ValueError:
        size = 0
    if not 1 <= size <= maximum:
        raise invalid(f"Page size must be an integer between 1 and {maximum}.", "page[size]")
    return size
