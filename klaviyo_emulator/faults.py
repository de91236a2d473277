"""Fault injection: scripted faults (consumed first, in order) and seeded random faults.

The injector only decides which fault a request gets; the dispatcher applies it
(`fault_pages.py` builds error bodies and HTML pages; `server.py` drops or truncates the
connection, or answers slowly).
"""

from __future__ import annotations

import random
import threading
from collections import Counter
from dataclasses import dataclass

FAULT_KINDS = frozenset(
    {
        "500",
        "502",
        "503",
        "504",
        "500-html",
        "502-html",
        "503-html",
        "504-html",
        "429",
        "drop",
        "truncate",
        "slow",
        "html-200",
        "json-200-not-jsonapi",
    }
)
DEFAULT_SLOW_DELAY = 30.0


@dataclass(frozen=True)
class Fault:
    """What to do to one response; `delay` is the sleep of a "slow" fault."""

    kind: str
    delay: float = 0.0

    @property
    def status(self) -> int | None:
        """The HTTP status the fault answers with, None for connection-level faults."""
        if self.kind in ("drop", "truncate", "slow"):
            return None
        if self.kind in ("html-200", "json-200-not-jsonapi"):
            return 200
        return int(self.kind.split("-")[0])

    @property
    def is_html(self) -> bool:
        """True when the body is an HTML page (as a proxy or CDN would send it)."""
        return self.kind.endswith("-html") or self.kind == "html-200"


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
    if kind not in FAULT_KINDS:
        raise ValueError(f"unknown fault kind {kind!r}; known: {', '.join(sorted(FAULT_KINDS))}")
    if delay < 0:
        raise ValueError(f"fault delay must not be negative: {delay!r}")
    return Fault(kind, delay if kind == "slow" else 0.0)


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
