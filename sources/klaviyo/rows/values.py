"""Values every destination can store: UTC timestamps, and JSON with exact wide integers."""

from __future__ import annotations

import json
from typing import Any

import orjson
import pyarrow as pa

UTC_TIMESTAMP = pa.timestamp("us", tz="UTC")


def json_text(value: Any) -> str | None:
    """JSON text of a value; integers beyond 64 bits are written exactly."""
    if value is None:
        return None
    try:
        return orjson.dumps(value, option=orjson.OPT_NON_STR_KEYS).decode()
    except orjson.JSONEncodeError:
        # orjson refuses integers beyond 64 bits, which the client keeps exact
        return json.dumps(value, ensure_ascii=False, separators=(",", ":"))


def json_column(values: list[Any]) -> pa.Array:
    """A string array of `json_text` of each value, built from orjson's bytes as they are."""
    try:
        texts: list[Any] = [
            None if value is None else _dumps(value, option=_NON_STR_KEYS) for value in values
        ]
    except orjson.JSONEncodeError:
        return pa.array([json_text(value) for value in values], pa.string())
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
