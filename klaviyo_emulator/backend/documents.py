"""Profile documents as the account holds them: JSON values, some held as exact JSON text."""

from __future__ import annotations

import json
from typing import Any

import orjson


def exact_json(value: Any) -> orjson.Fragment:
    """A value as JSON that the API's orjson renderer embeds verbatim.

    orjson refuses integers beyond 64 bits and strings holding lone UTF-16 surrogates; here
    integers of any width stay exact, a lone surrogate is written as its `\\uXXXX` escape (as a
    JSON encoder that escapes non-ASCII would send it) and NUL as `\\u0000`. An
    `orjson.Fragment` is taken as already encoded, for JSON text no Python value produces.

    Raises:
        ValueError: The value is NaN or infinite, which JSON cannot carry.
    """
    if isinstance(value, orjson.Fragment):
        return value
    text = json.dumps(value, ensure_ascii=False, separators=(",", ":"), allow_nan=False)
    # a lone surrogate can only sit in a string, where its backslash escape is exact JSON
    return orjson.Fragment(text.encode("utf-8", "backslashreplace"))


def copy_document(value: Any) -> Any:
    """A copy of a JSON document that shares nothing mutable with it.

    Objects and arrays (dicts, lists, tuples) are copied; every other JSON value is immutable
    and kept as it is, `orjson.Fragment` included (which `copy.deepcopy` cannot copy).
    """
    if isinstance(value, dict):
        return {key: copy_document(item) for key, item in value.items()}
    if isinstance(value, list):
        return [copy_document(item) for item in value]
    if isinstance(value, tuple):
        return tuple(copy_document(item) for item in value)
    return value
