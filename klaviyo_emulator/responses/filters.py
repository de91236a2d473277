"""Klaviyo's `filter` query parameter: grammar, checks against an operation's filters, evaluation.

The grammar (API-NOTES §6.1) is a comma-separated list of `op(field,value)` expressions, implicitly
AND-ed, with `and(...)` as the only combinator. Strings are quoted, datetimes are not, and Klaviyo
answers 400 for anything else. Which fields and operators each operation takes, and the type of
their values, are in `spec.operations`. Parses are cached because the same filter text arrives
on every page of a walk.
"""

from __future__ import annotations

import functools
import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime

from ..spec import operations, shapes
from ..spec.dates import parse_datetime
from ..spec.revisions import served

SYNTAX_DETAIL = "Invalid filter provided. Verify your parentheses match."

OPERATORS = frozenset(
    {
        "equals",
        "less-than",
        "less-or-equal",
        "greater-than",
        "greater-or-equal",
        "contains",
        "contains-any",
        "contains-all",
        "ends-with",
        "starts-with",
        "any",
        "has",
    }
)
COMPARISONS = frozenset({"less-than", "less-or-equal", "greater-than", "greater-or-equal"})

_NUMBER_RE = re.compile(r"-?\d+(\.\d+)?([eE][+-]?\d+)?")
_FIELD_RE = re.compile(r"[A-Za-z_$][A-Za-z0-9_.$\-]*")
_OPERATOR_RE = re.compile(r"[a-z][a-z\-]*")
_BARE_STOP = ",()[]\"'"


class FilterError(ValueError):
    """A filter Klaviyo rejects with 400 `invalid`; `detail` is the error's detail text."""

    def __init__(self, detail: str) -> None:
        super().__init__(detail)
        self.detail = detail


@dataclass(frozen=True)
class Condition:
    """One `operator(field,value)` term; lists are read-only (parses are cached and shared)."""

    operator: str
    field: str
    value: object


def parse_filter(text: str) -> list[Condition]:
    """Parses a filter expression into its AND-ed conditions (`and(...)` flattened).

    Raises:
        FilterError: on any syntax error, an unknown operator, an unquoted string, or an
            unterminated quote or list.
    """
    result = _parse_cached(text)
    if isinstance(result, FilterError):
        raise FilterError(result.detail)
    return list(result)


@functools.lru_cache(maxsize=1024)
def _parse_cached(text: str) -> tuple[Condition, ...] | FilterError:
    try:
        return tuple(_Parser(text).parse())
    except FilterError as error:
        return error


class _Parser:
    """Recursive-descent parser over the raw filter text."""

    def __init__(self, text: str) -> None:
        self.text = text
        self.pos = 0

    def parse(self) -> list[Condition]:
        conditions = self._expression()
        while self._accept(","):
            conditions.extend(self._expression())
        self._skip_spaces()
        if self.pos != len(self.text):
            raise FilterError(SYNTAX_DETAIL)
        return conditions

    def _expression(self) -> list[Condition]:
        operator = self._match(_OPERATOR_RE)
        self._expect("(")
        if operator == "and":
            terms = self._expression()
            count = 1
            while self._accept(","):
                terms.extend(self._expression())
                count += 1
            self._expect(")")
            if count < 2:
                raise FilterError(SYNTAX_DETAIL)
            return terms
        if operator not in OPERATORS:
            raise FilterError(SYNTAX_DETAIL)
        field = self._match(_FIELD_RE)
        if operator == "has":
            self._expect(")")
            return [Condition(operator, field, None)]
        self._expect(",")
        value = self._value(allow_list=True)
        self._expect(")")
        return [Condition(operator, field, value)]

    def _value(self, *, allow_list: bool) -> object:
        self._skip_spaces()
        char = self._peek()
        if char in ("'", '"'):
            return self._quoted(char)
        if char == "[" and allow_list:
            self.pos += 1
            items = [self._value(allow_list=False)]
            while self._accept(","):
                items.append(self._value(allow_list=False))
            self._expect("]")
            return items
        return _bare_value(self._bare())

    def _quoted(self, quote: str) -> str:
        chars: list[str] = []
        index = self.pos + 1
        text = self.text
        while index < len(text):
            char = text[index]
            if char == "\\" and index + 1 < len(text) and text[index + 1] in (quote, "\\"):
                chars.append(text[index + 1])
                index += 2
                continue
            if char == quote:
                self.pos = index + 1
                return "".join(chars)
            chars.append(char)
            index += 1
        raise FilterError(SYNTAX_DETAIL)

    def _bare(self) -> str:
        start = self.pos
        text = self.text
        while self.pos < len(text) and text[self.pos] not in _BARE_STOP:
            self.pos += 1
        token = text[start : self.pos].strip()
        if not token:
            raise FilterError(SYNTAX_DETAIL)
        return token

    def _match(self, pattern: re.Pattern[str]) -> str:
        self._skip_spaces()
        match = pattern.match(self.text, self.pos)
        if match is None:
            raise FilterError(SYNTAX_DETAIL)
        self.pos = match.end()
        return match.group()

    def _peek(self) -> str:
        return self.text[self.pos] if self.pos < len(self.text) else ""

    def _skip_spaces(self) -> None:
        text = self.text
        while self.pos < len(text) and text[self.pos] == " ":
            self.pos += 1

    def _accept(self, char: str) -> bool:
        self._skip_spaces()
        if self._peek() == char:
            self.pos += 1
            return True
        return False

    def _expect(self, char: str) -> None:
        if not self._accept(char):
            raise FilterError(SYNTAX_DETAIL)


def _bare_value(token: str) -> object:
    """Reads an unquoted token: boolean, null, number or datetime; anything else is invalid."""
    if token in ("true", "false"):
        return token == "true"
    if token == "null":
        return None
    if _NUMBER_RE.fullmatch(token):
        return float(token) if any(c in token for c in ".eE") else int(token)
    parsed = parse_datetime(token)
    if parsed is None:
        # an unquoted string, e.g. equals(email,me@test.com)
        raise FilterError(SYNTAX_DETAIL)
    return parsed


def allowed_fields(operation: str, revision: str) -> dict[str, tuple[str, ...]]:
    """The filterable fields and their operators for an operation at a revision."""
    return {name: allowed.operators for name, allowed in _allowed(operation, revision).items()}


@functools.lru_cache(maxsize=256)
def _allowed(operation: str, revision: str) -> dict[str, shapes.Filter]:
    try:
        filters = operations.find(operation).params.filters
    except KeyError:
        return {}
    return {allowed.field: allowed for allowed in served(filters, revision)}


def check_allowed(conditions: Sequence[Condition], operation: str, revision: str) -> None:
    """Checks every condition against the operation's field/operator table and value types.

    Raises:
        FilterError: for a field that is not filterable, an operator the field does not allow,
            or a value of the wrong type (a quoted datetime, a scalar for `any`, ...).
    """
    fields = _allowed(operation, revision[:10])
    if not fields:
        raise FilterError("'filter' is not an allowed query parameter for this endpoint.")
    for condition in conditions:
        allowed = fields.get(condition.field)
        if allowed is None:
            raise FilterError(
                f"'{condition.field}' is not an allowed filter field for this resource. "
                f"Allowed fields are {', '.join(fields)}."
            )
        if condition.operator not in allowed.operators:
            raise FilterError(
                f"'{condition.operator}' is not an allowed operator for '{condition.field}'. "
                f"Allowed operators are {', '.join(allowed.operators)}."
            )
        _check_value(condition, allowed.kind)


def _check_value(condition: Condition, kind: str) -> None:
    value = condition.value
    if condition.operator == "any" or (condition.operator == "equals" and isinstance(value, list)):
        if not isinstance(value, list):
            raise FilterError(
                f"Invalid filter provided. '{condition.operator}' on '{condition.field}' "
                "takes a list such as ['a','b']."
            )
        for item in value:
            _check_scalar(condition, item, kind)
        return
    _check_scalar(condition, value, kind)


def _check_scalar(condition: Condition, value: object, kind: str) -> None:
    if kind == shapes.DATETIME and not isinstance(value, datetime):
        raise FilterError(
            f"Invalid filter provided. '{condition.field}' takes an unquoted datetime "
            "such as 2024-01-01T00:00:00Z."
        )
    if kind == shapes.BOOLEAN and not isinstance(value, bool):
        raise FilterError(
            f"Invalid filter provided. '{condition.field}' takes an unquoted true or false."
        )
    if kind == shapes.STRING and not isinstance(value, str):
        raise FilterError(
            f"Invalid filter provided. '{condition.field}' takes a quoted string value."
        )


def matches(conditions: Iterable[Condition], record: Mapping[str, object]) -> bool:
    """True when the record satisfies every condition (missing fields compare as null)."""
    return all(_matches_one(condition, record.get(condition.field)) for condition in conditions)


def _matches_one(condition: Condition, actual: object) -> bool:
    operator, expected = condition.operator, condition.value
    if isinstance(expected, datetime) and isinstance(actual, str):
        actual = parse_datetime(actual)
    if operator == "has":
        return actual is not None
    if operator == "any":
        return isinstance(expected, list) and actual in expected
    if operator == "equals":
        return actual in expected if isinstance(expected, list) else actual == expected
    if operator in COMPARISONS:
        return _compare(operator, actual, expected)
    return _matches_text(operator, actual, expected)


def _compare(operator: str, actual: object, expected: object) -> bool:
    if actual is None or expected is None:
        return False
    try:
        if operator == "greater-than":
            return actual > expected  # type: ignore[operator]
        if operator == "greater-or-equal":
            return actual >= expected  # type: ignore[operator]
        if operator == "less-than":
            return actual < expected  # type: ignore[operator]
        return actual <= expected  # type: ignore[operator]
    except TypeError:
        return False


def _matches_text(operator: str, actual: object, expected: object) -> bool:
    if operator in ("contains-any", "contains-all"):
        if not isinstance(actual, (list, tuple)) or not isinstance(expected, list):
            return False
        found = [item in actual for item in expected]
        return any(found) if operator == "contains-any" else all(found)
    if isinstance(actual, (list, tuple)) and operator == "contains":
        return expected in actual
    if not isinstance(actual, str) or not isinstance(expected, str):
        return False
    if operator == "contains":
        return expected in actual
    if operator == "starts-with":
        return actual.startswith(expected)
    if operator == "ends-with":
        return actual.endswith(expected)
    return False


def joined_group_at_bounds(
    conditions: Iterable[Condition],
) -> tuple[datetime | None, bool, datetime | None, bool]:
    """The tightest `joined_group_at` range the conditions allow, for range scans.

    Returns:
        (lower, lower_inclusive, upper, upper_inclusive); a bound is None when unconstrained.
    """
    lower: datetime | None = None
    lower_inclusive = True
    upper: datetime | None = None
    upper_inclusive = True
    for condition in conditions:
        value = condition.value
        if condition.field != "joined_group_at" or not isinstance(value, datetime):
            continue
        if condition.operator in ("greater-than", "greater-or-equal"):
            inclusive = condition.operator == "greater-or-equal"
            if lower is None or value > lower or (value == lower and not inclusive):
                lower, lower_inclusive = value, inclusive
        elif condition.operator in ("less-than", "less-or-equal"):
            inclusive = condition.operator == "less-or-equal"
            if upper is None or value < upper or (value == upper and not inclusive):
                upper, upper_inclusive = value, inclusive
    return lower, lower_inclusive, upper, upper_inclusive
