"""Klaviyo's `filter` query parameter: grammar, per-endpoint allowed pairs, and evaluation.

The grammar (API-NOTES §6.1) is a comma-separated list of `op(field,value)` expressions, implicitly
AND-ed, with `and(...)` as the only combinator. Strings are quoted, datetimes are not, and Klaviyo
answers 400 for anything else. Parses are cached because the same filter text arrives on every
page of a walk.
"""

from __future__ import annotations

import functools
import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import date, datetime, timedelta, timezone

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

# value type of every filterable field of the segment endpoints (and get_tags)
FIELD_TYPES: dict[str, str] = {
    "email": "string",
    "phone_number": "string",
    "push_token": "string",
    "_kx": "string",
    "profile_id": "string",
    "name": "string",
    "id": "string",
    "is_active": "boolean",
    "is_starred": "boolean",
    "created": "datetime",
    "updated": "datetime",
    "joined_group_at": "datetime",
}

_ANY_EQUALS = ("any", "equals")
_DATETIME_RANGE = ("greater-or-equal", "greater-than", "less-or-equal", "less-than")
_SEGMENT_PROFILE_FIELDS: dict[str, tuple[str, ...]] = {
    "email": _ANY_EQUALS,
    "phone_number": _ANY_EQUALS,
    "push_token": _ANY_EQUALS,
    "_kx": ("equals",),
    "joined_group_at": _DATETIME_RANGE,
}

# field -> allowed operators per operation (API-NOTES §6.3, 2024-06-15 names)
ALLOWED_FILTERS: dict[str, dict[str, tuple[str, ...]]] = {
    "get_segments": {
        "name": _ANY_EQUALS,
        "id": _ANY_EQUALS,
        "created": ("greater-than",),
        "updated": ("greater-than",),
        "is_active": _ANY_EQUALS,
        "is_starred": ("equals",),
    },
    "get_segment_profiles": _SEGMENT_PROFILE_FIELDS,
    "get_segment_relationships_profiles": _SEGMENT_PROFILE_FIELDS,
    "get_tags": {"name": ("contains", "ends-with", "equals", "starts-with")},
}

# fields that only exist from a revision on: (operation, field) -> first revision
FIELD_SINCE: dict[tuple[str, str], str] = {
    ("get_segment_profiles", "profile_id"): "2025-10-15",
    ("get_segment_relationships_profiles", "profile_id"): "2025-10-15",
}
_FIELD_SINCE_OPERATORS: dict[str, tuple[str, ...]] = {"profile_id": _ANY_EQUALS}

# operation names of revision 2024-10-15 and later
OPERATION_ALIASES: dict[str, str] = {
    "get_profiles_for_segment": "get_segment_profiles",
    "get_profile_ids_for_segment": "get_segment_relationships_profiles",
    "get_tags_for_segment": "get_segment_tags",
    "get_tag_ids_for_segment": "get_segment_relationships_tags",
}

_DATETIME_RE = re.compile(
    r"(\d{4})-(\d{2})-(\d{2})"
    r"(?:[T ](\d{2}):(\d{2})(?::(\d{2})(?:\.(\d{1,9}))?)?"
    r"(Z|z|[+-]\d{2}:?\d{2})?)?"
)
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


def parse_datetime(text: str) -> datetime | None:
    """Parses the datetime forms Klaviyo accepts in filters (API-NOTES §6.2), as tz-aware UTC.

    Accepts `Z` and `±HH:MM` offsets, fractional seconds, a space instead of `T`, naive values
    (taken as UTC) and date-only values (midnight UTC). Returns None for anything else.
    """
    return _parse_datetime_cached(text)


@functools.lru_cache(maxsize=4096)
def _parse_datetime_cached(text: str) -> datetime | None:
    match = _DATETIME_RE.fullmatch(text)
    if match is None:
        return None
    year, month, day, hour, minute, second, fraction, offset = match.groups()
    try:
        if hour is None:
            date(int(year), int(month), int(day))
            return datetime(int(year), int(month), int(day), tzinfo=timezone.utc)
        micros = int((fraction or "0")[:6].ljust(6, "0"))
        tz = _offset(offset)
        value = datetime(
            int(year), int(month), int(day), int(hour), int(minute), int(second or 0), micros, tz
        )
    except ValueError:
        return None
    return value.astimezone(timezone.utc)


def _offset(text: str | None) -> timezone:
    if text is None or text in ("Z", "z"):
        return timezone.utc
    sign = -1 if text[0] == "-" else 1
    digits = text[1:].replace(":", "")
    hours, minutes = int(digits[:2]), int(digits[2:])
    if hours > 23 or minutes > 59:
        raise ValueError("offset out of range")
    return timezone(sign * timedelta(hours=hours, minutes=minutes))


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
    return dict(_allowed_fields(operation, revision[:10]))


@functools.lru_cache(maxsize=256)
def _allowed_fields(operation: str, revision: str) -> dict[str, tuple[str, ...]]:
    operation = OPERATION_ALIASES.get(operation, operation)
    fields = dict(ALLOWED_FILTERS.get(operation, {}))
    for (since_operation, field), since in FIELD_SINCE.items():
        if since_operation == operation and revision >= since:
            fields[field] = _FIELD_SINCE_OPERATORS[field]
    return fields


def check_allowed(conditions: Sequence[Condition], operation: str, revision: str) -> None:
    """Checks every condition against the operation's field/operator table and value types.

    Raises:
        FilterError: for a field that is not filterable, an operator the field does not allow,
            or a value of the wrong type (a quoted datetime, a scalar for `any`, ...).
    """
    fields = _allowed_fields(operation, revision[:10])
    if not fields:
        raise FilterError("'filter' is not an allowed query parameter for this endpoint.")
    for condition in conditions:
        operators = fields.get(condition.field)
        if operators is None:
            raise FilterError(
                f"'{condition.field}' is not an allowed filter field for this resource. "
                f"Allowed fields are {', '.join(fields)}."
            )
        if condition.operator not in operators:
            raise FilterError(
                f"'{condition.operator}' is not an allowed operator for '{condition.field}'. "
                f"Allowed operators are {', '.join(operators)}."
            )
        _check_value(condition)


def _check_value(condition: Condition) -> None:
    kind = FIELD_TYPES.get(condition.field, "string")
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
    if kind == "datetime" and not isinstance(value, datetime):
        raise FilterError(
            f"Invalid filter provided. '{condition.field}' takes an unquoted datetime "
            "such as 2024-01-01T00:00:00Z."
        )
    if kind == "boolean" and not isinstance(value, bool):
        raise FilterError(
            f"Invalid filter provided. '{condition.field}' takes an unquoted true or false."
        )
    if kind == "string" and not isinstance(value, str):
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
