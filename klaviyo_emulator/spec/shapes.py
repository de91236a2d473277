"""What a row of `operations` is made of: an operation, its query parameters, filters and
paging, the stricter buckets some parameters add, and the rate-limit tiers they name."""

from __future__ import annotations

from dataclasses import dataclass

from .revisions import FIRST, L_STEADY_750_FROM, Since, between, latest

# tier -> (burst per second, steady per minute), oldest revision first (API-NOTES §10)
TIERS: dict[str, tuple[Since[tuple[int, int]], ...]] = {
    "XS": (Since(FIRST, (1, 15)),),
    "S": (Since(FIRST, (3, 60)),),
    "M": (Since(FIRST, (10, 150)),),
    "L": (Since(FIRST, (75, 700)), Since(L_STEADY_750_FROM, (75, 750))),
}

# value types of filterable fields
STRING, BOOLEAN, DATETIME = "string", "boolean", "datetime"
ANY_EQUALS = ("any", "equals")
DATETIME_RANGE = ("greater-or-equal", "greater-than", "less-or-equal", "less-than")


@dataclass(frozen=True)
class Filter:
    """A filterable field: the operators it takes and the type of its values."""

    field: str
    operators: tuple[str, ...]
    kind: str = STRING


@dataclass(frozen=True)
class Paging:
    """A paged listing: the page size, and from which revision `page[size]` may change it."""

    default: int
    maximum: tuple[Since[int], ...]
    size_from: str = FIRST


@dataclass(frozen=True)
class Params:
    """The query parameters of an operation; `Since` entries from their revision on.

    `fields` names the families of `fields[...]` (see `resources`); the additional fields, and
    the `extra_fields` of a family, are also valid in their family's `fields[...]`.
    """

    fields: tuple[str | Since[str], ...] = ()
    extra_fields: tuple[str, tuple[str, ...]] | None = None  # (family, names)
    include: tuple[str | Since[str], ...] = ()
    additional: tuple[str, tuple[str, ...]] | None = None  # (family, names)
    sorts: tuple[str, ...] = ()
    filters: tuple[Filter | Since[Filter], ...] = ()
    paging: Paging | None = None


@dataclass(frozen=True)
class ParameterTier:
    """Requests whose `parameter` lists `value` also count against a stricter bucket of `tier`,
    named `parameter=value` and shared by every operation that has it (API-NOTES §10)."""

    parameter: str
    value: str
    tier: str
    first: str = FIRST


@dataclass(frozen=True, eq=False)
class Operation:
    """One served operation; `parameter_tiers` are the stricter buckets some parameters add."""

    name: str
    method: str
    path: str  # `{segment_id}`, `{tag_id}` and `{profile_id}` stand for ids
    scopes: frozenset[str]
    tier: str
    params: Params = Params()
    daily_cap: int | None = None
    parameter_tiers: tuple[ParameterTier, ...] = ()
    alias: str | None = None  # its name (operationId) from 2024-10-15 on
    first: str = FIRST  # before it, Klaviyo answers 404 "No valid revisions found for method"
    last: str | None = None

    def served_at(self, revision: str) -> bool:
        return between(revision, self.first, self.last)

    def limits(self, revision: str) -> tuple[int, int]:
        """(burst per second, steady per minute) of its tier at a revision."""
        return tier_limits(self.tier, revision)


def tier_limits(tier: str, revision: str) -> tuple[int, int]:
    return latest(TIERS[tier], revision)
