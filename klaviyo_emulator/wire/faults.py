"""Fault injection: the kinds of fault, one table, and the injector that hands them out.

A kind says what the client gets: an answer that replaces the real one (its status and body),
or the real answer delivered badly (dropped, truncated, late). Scripted faults are consumed
first, in order; random faults follow a seeded generator.
"""

from __future__ import annotations

import enum
import random
import threading
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass
from http import HTTPStatus

import orjson

from ..responses.errors import server_error, throttled
from ..settings import JSONAPI_CONTENT_TYPE

DEFAULT_SLOW_DELAY = 30.0
HTML_CONTENT_TYPE = "text/html; charset=UTF-8"
HTML_PAGE = """<!DOCTYPE html>
<html>
<head><title>{status} {reason}</title></head>
<body>
<center><h1>{status} {reason}</h1></center>
<hr><center>cloudflare</center>
</body>
</html>
"""
NOT_JSONAPI_BODY = {"status": "ok", "message": "Service is warming up, please retry."}

Body = tuple[str, bytes, dict[str, str]]  # content type, body, headers


class Delivery(enum.Enum):
    """How a response reaches the client."""

    ANSWER = "answer"  # whole, as it is
    DROP = "drop"  # not at all: the connection is closed
    TRUNCATE = "truncate"  # the real answer cut to half its declared length
    LATE = "late"  # the real answer after the fault's delay


@dataclass(frozen=True)
class FaultKind:
    """What one kind of fault does: replace the answer (`status` and `body`), or deliver the
    real answer another way (`status` None)."""

    name: str
    delivery: Delivery = Delivery.ANSWER
    status: int | None = None
    body: Callable[[int], Body] | None = None

    @property
    def is_html(self) -> bool:
        """True when the body is an HTML page (as a proxy or CDN would send it)."""
        return self.body is _html


def _html(status: int) -> Body:
    page = HTML_PAGE.format(status=status, reason=HTTPStatus(status).phrase)
    return HTML_CONTENT_TYPE, page.encode(), {}


def _json_error(status: int) -> Body:
    return JSONAPI_CONTENT_TYPE, orjson.dumps(server_error(status).document()), {}


def _throttled(status: int) -> Body:
    error = throttled(1, {"Retry-After": "1"})
    return JSONAPI_CONTENT_TYPE, orjson.dumps(error.document()), error.headers


def _not_jsonapi(status: int) -> Body:
    return "application/json", orjson.dumps(NOT_JSONAPI_BODY), {}


# The kinds of fault, one row each.
KINDS: dict[str, FaultKind] = {
    kind.name: kind
    for kind in (
        FaultKind("500", status=500, body=_json_error),
        FaultKind("502", status=502, body=_json_error),
        FaultKind("503", status=503, body=_json_error),
        FaultKind("504", status=504, body=_json_error),
        FaultKind("500-html", status=500, body=_html),
        FaultKind("502-html", status=502, body=_html),
        FaultKind("503-html", status=503, body=_html),
        FaultKind("504-html", status=504, body=_html),
        FaultKind("429", status=429, body=_throttled),
        FaultKind("drop", Delivery.DROP),
        FaultKind("truncate", Delivery.TRUNCATE),
        FaultKind("slow", Delivery.LATE),
        FaultKind("html-200", status=200, body=_html),
        FaultKind("json-200-not-jsonapi", status=200, body=_not_jsonapi),
    )
}
FAULT_KINDS = frozenset(KINDS)


@dataclass(frozen=True)
class Fault:
    """What to do to one response; `delay` is the wait of a late ("slow") fault."""

    kind: str
    delay: float = 0.0

    @property
    def definition(self) -> FaultKind:
        """The kind's row in `KINDS`."""
        return KINDS[self.kind]

    @property
    def status(self) -> int | None:
        """The HTTP status the fault answers with, None when the real answer goes out."""
        return self.definition.status

    @property
    def is_html(self) -> bool:
        return self.definition.is_html

    def replacement(self) -> tuple[int, Body] | None:
        """(status, body) that replace the real answer; None when the real answer goes out."""
        kind = self.definition
        if kind.status is None or kind.body is None:
            return None
        return kind.status, kind.body(kind.status)


@dataclass
class _Script:
    fault: Fault
    remaining: int
    path_contains: str | None


@dataclass(frozen=True)
class _Chance:
    fault: Fault
    p: float
    path_contains: str | None


def _fault(kind: str, delay: float) -> Fault:
    definition = KINDS.get(kind)
    if definition is None:
        raise ValueError(f"unknown fault kind {kind!r}; known: {', '.join(sorted(FAULT_KINDS))}")
    if delay < 0:
        raise ValueError(f"fault delay must not be negative: {delay!r}")
    return Fault(kind, delay if definition.delivery is Delivery.LATE else 0.0)


def _applies(path_contains: str | None, path: str) -> bool:
    return path_contains is None or path_contains in path


class FaultInjector:
    """Decides, per request, whether it gets a fault. Thread-safe and reproducible per seed.

    `injected` counts the faults handed out by kind.
    """

    def __init__(self, seed: int = 0) -> None:
        self._lock = threading.Lock()
        self._random = random.Random(seed)
        self._scripts: list[_Script] = []
        self._chances: list[_Chance] = []
        self.injected: Counter[str] = Counter()

    def script(
        self,
        *,
        kind: str,
        count: int = 1,
        path_contains: str | None = None,
        delay: float = DEFAULT_SLOW_DELAY,
    ) -> None:
        """The next `count` requests whose path contains `path_contains` get this fault."""
        if count < 0:
            raise ValueError(f"fault count must not be negative: {count!r}")
        fault = _fault(kind, delay)
        if count:
            with self._lock:
                self._scripts.append(_Script(fault, count, path_contains))

    def probability(
        self,
        *,
        kind: str,
        p: float,
        path_contains: str | None = None,
        delay: float = DEFAULT_SLOW_DELAY,
    ) -> None:
        """Each matching request gets this fault with probability `p` (seeded RNG)."""
        if not 0.0 <= p <= 1.0:
            raise ValueError(f"fault probability must be within [0, 1]: {p!r}")
        fault = _fault(kind, delay)
        with self._lock:
            self._chances.append(_Chance(fault, p, path_contains))

    def clear(self) -> None:
        """Forgets every scripted and random fault (the RNG keeps its position)."""
        with self._lock:
            self._scripts.clear()
            self._chances.clear()

    def pending(self) -> int:
        """Scripted faults not yet handed out."""
        with self._lock:
            return sum(script.remaining for script in self._scripts)

    def pick(self, path: str) -> Fault | None:
        """The fault for a request to `path`, or None; consumes a scripted fault first."""
        if not self._scripts and not self._chances:
            return None
        with self._lock:
            fault = self._pick_scripted(path) or self._pick_random(path)
            if fault is not None:
                self.injected[fault.kind] += 1
            return fault

    def _pick_scripted(self, path: str) -> Fault | None:
        for index, script in enumerate(self._scripts):
            if _applies(script.path_contains, path):
                script.remaining -= 1
                if script.remaining == 0:
                    del self._scripts[index]
                return script.fault
        return None

    def _pick_random(self, path: str) -> Fault | None:
        for chance in self._chances:
            if _applies(chance.path_contains, path) and self._random.random() < chance.p:
                return chance.fault
        return None
