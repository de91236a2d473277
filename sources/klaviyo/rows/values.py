"""Values every destination can store: UTC timestamps, finite numbers, and JSON with exact
wide integers."""

from __future__ import annotations

import json
import math
from collections.abc import Sequence
from typing import Any

import orjson
import pyarrow as pa
import pyarrow.compute as pc

UTC_TIMESTAMP = pa.timestamp("us", tz="UTC")


def finite_number(value: Any) -> float | None:
    """`value` as a finite float; None for booleans, None, text that is no number, inf, nan,
    and integers beyond a double's range."""
    if isinstance(value, bool):
        return None
    try:
        number = float(value)
    except (TypeError, ValueError, OverflowError):
        return None
    return number if math.isfinite(number) else None


def finite_number_column(values: Sequence[Any]) -> pa.Array:
    """A double array of `finite_number` of each value.

    Numbers and numeric text (Klaviyo documents coordinates as either) are converted by
    arrow; a value it refuses (a boolean, text such as " 4" that Python reads and arrow does
    not, an integer beyond 64 bits) sends the column through `finite_number`, value by
    value, so the array is the same either way.
    """
    kinds = set(map(type, values))
    try:
        if kinds <= _NUMBER_OR_NULL:
            numbers = pa.array(values, pa.float64())
        elif kinds <= _NUMBER_TEXT_OR_NULL:
            texts = pa.array([v if v.__class__ is str else None for v in values], pa.string())
            numbers = pa.array([None if v.__class__ is str else v for v in values], pa.float64())
            numbers = pc.coalesce(numbers, texts.cast(pa.float64()))
        else:
            return pa.array([finite_number(value) for value in values], pa.float64())
    except (pa.ArrowInvalid, pa.ArrowTypeError):
        return pa.array([finite_number(value) for value in values], pa.float64())
    return pc.if_else(pc.is_finite(numbers), numbers, pa.scalar(None, pa.float64()))


_NUMBER_OR_NULL = frozenset((float, int, type(None)))
_NUMBER_TEXT_OR_NULL = frozenset((float, int, str, type(None)))


def json_text(value: Any) -> str | None:
    """JSON text of a value; integers beyond 64 bits are written exactly."""
    if value is None:
        return None
    try:
        return orjson.dumps(value, option=orjson.OPT_NON_STR_KEYS).decode()
    except orjson.JSONEncodeError:
        # orjson refuses integers beyond 64 bits, which the client keeps exact
        return json.dumps(value, ensure_ascii=False, separators=(",", ":"))


def json_bytes(value: Any) -> bytes:
    """JSON text of a value as UTF-8 bytes; integers beyond 64 bits are written exactly."""
    try:
        return _dumps(value, option=_NON_STR_KEYS)
    except orjson.JSONEncodeError:
        return json.dumps(value, ensure_ascii=False, separators=(",", ":")).encode()


def json_column(values: Sequence[Any]) -> pa.Array:
    """A string array of `json_text` of each value, built from orjson's bytes as they are.

    A value that is already bytes is taken as JSON text (`json_bytes`): decoded JSON never
    holds bytes.
    """
    try:
        texts: list[Any] = [
            value
            if value is None or value.__class__ is bytes
            else _dumps(value, option=_NON_STR_KEYS)
            for value in values
        ]
    except orjson.JSONEncodeError:
        texts = [
            value if value is None or value.__class__ is bytes else json_bytes(value)
            for value in values
        ]
    # orjson writes UTF-8: the cast checks it and keeps the buffers.
    return pa.array(texts, pa.binary()).cast(pa.string())


_dumps = orjson.dumps
_NON_STR_KEYS = orjson.OPT_NON_STR_KEYS


def dlt_json(value: Any) -> Any:
    """A value for a JSON column of dict rows: dlt writes those with orjson, so an integer
    beyond 64 bits becomes its decimal text (exact, where a float would round it)."""
    try:
        orjson.dumps(value)
    except orjson.JSONEncodeError:
        return _wide_integers_as_text(value)
    return value


def _wide_integers_as_text(value: Any) -> Any:
    if isinstance(value, dict):
        return {key: _wide_integers_as_text(item) for key, item in value.items()}
    if isinstance(value, list):
        return [_wide_integers_as_text(item) for item in value]
    if type(value) is int and not _INT64_MIN <= value <= _UINT64_MAX:
        return str(value)
    return value


_INT64_MIN, _UINT64_MAX = -(2**63), 2**64 - 1
