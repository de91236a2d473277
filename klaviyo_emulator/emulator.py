"""`Emulator`: a local Klaviyo API server with methods to change and inspect its data."""

from __future__ import annotations

import copy
import threading
import time
from collections.abc import Iterable, Mapping, Sequence
from datetime import datetime
from types import TracebackType
from typing import Any

from . import settings as s
from .backend import datasets
from .backend.account import Account
from .backend.documents import copy_document, exact_json
from .responses.render import segment_attributes
from .spec.operations import ALL_SCOPES
from .wire.dispatch import Dispatcher
from .wire.faults import FaultInjector
from .wire.ratelimit import RateLimiter
from .wire.server import EmulatorServer
from .wire.stats import Stats

FaultConfig = FaultInjector | Mapping[str, Any] | Sequence[Mapping[str, Any]] | None


class Emulator:
    """A running emulated Klaviyo account.

    Use as a context manager (or call `start()` and `stop()`); the server listens on `host:port`
    (port 0 picks a free one) and `base_url` is where it answers.
    """

    def __init__(
        self,
        dataset: str = "tiny",
        seed: int = 1,
        port: int = 0,
        host: str = "127.0.0.1",
        rate_limits: str | float = "off",
        latency: float | str = 0.0,
        jitter: float = 0.0,
        faults: FaultConfig = None,
        profiles: int | None = None,
        memberships: int | None = None,
    ) -> None:
        self.dataset = dataset
        self.seed = seed
        self._account = Account(_build(dataset, seed, profiles, memberships), seed)
        self.stats = Stats()
        self.faults = faults if isinstance(faults, FaultInjector) else FaultInjector(seed)
        _configure_faults(self.faults, faults)
        self._limiter = RateLimiter(rate_limits, clock=self._monotonic)
        self._dispatcher = Dispatcher(
            self._account, self._limiter, self.faults, self.stats, base_url=""
        )
        self.set_latency(latency, jitter)
        self._address = (host, port)
        self._server: EmulatorServer | None = None
        self._thread: threading.Thread | None = None

    # --- lifecycle ------------------------------------------------------------------------------

    def start(self) -> Emulator:
        """Bind and serve in a background thread."""
        if self._server is not None:
            return self
        server = EmulatorServer(self._address, self._dispatcher)
        host, port = server.server_address[:2]
        self._dispatcher.base_url = f"http://{_url_host(str(host))}:{port}"
        self._server = server
        self._thread = threading.Thread(
            target=server.serve_forever, kwargs={"poll_interval": 0.1}, daemon=True
        )
        self._thread.start()
        return self

    def stop(self) -> None:
        """Stop serving and close every connection."""
        server, self._server = self._server, None
        if server is None:
            return
        server.shutdown()
        server.close_connections()
        server.server_close()
        if self._thread is not None:
            self._thread.join(timeout=5)

    def __enter__(self) -> Emulator:
        return self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        self.stop()

    @property
    def base_url(self) -> str:
        """`http://host:port`, no trailing slash; API paths are base_url + "/api/..."."""
        if self._server is None:
            raise RuntimeError("the emulator is not running; use it as a context manager")
        return self._dispatcher.base_url

    @property
    def api_key(self) -> str:
        """A private key with every scope."""
        return self._account.api_key

    def create_api_key(self, scopes: Iterable[str] = ALL_SCOPES) -> str:
        """A new private key holding only `scopes`."""
        return self._account.create_api_key(scopes)

    # --- behaviour ------------------------------------------------------------------------------

    def set_rate_limits(self, mode: str | float) -> None:
        """ "off", "real", or a time-scale factor (windows that many times shorter)."""
        self._limiter.set_mode(mode)

    def set_latency(self, fixed: float | str, jitter: float = 0.0) -> None:
        """Seconds added to every answer; "realistic" is about 0.15 s with jitter."""
        if fixed == "realistic":
            fixed, jitter = s.REALISTIC_LATENCY, max(jitter, s.REALISTIC_JITTER)
        self._dispatcher.latency = float(fixed)
        self._dispatcher.jitter = float(jitter)

    def now(self) -> datetime:
        """The emulator's clock: real UTC time plus what `advance_clock` added."""
        return self._account.now()

    def advance_clock(self, seconds: float) -> None:
        """Move the clock forward (also the rate-limit windows)."""
        self._account.advance_clock(seconds)

    def report(self) -> dict[str, Any]:
        """Request counters and per-window rate-limit counts so far, ready for `json.dumps`.

        Window starts are on the limiter's clock: `time.monotonic()` plus `advance_clock` time.
        """
        stats = self.stats
        return {
            "requests": dict(stats.requests),
            "requests_by_segment": dict(stats.requests_by_segment),
            "statuses": {str(status): count for status, count in stats.statuses.items()},
            "throttled": stats.throttled,
            "total": stats.total,
            "max_in_flight": stats.max_in_flight,
            "rate_limit_scale": self._limiter.scale,
            "steady_windows": self._limiter.steady_windows(),
        }

    def _monotonic(self) -> float:
        return time.monotonic() + self._account.clock_offset

    # --- mutations ------------------------------------------------------------------------------

    def create_segment(
        self,
        name: str,
        *,
        definition: dict[str, Any] | None = None,
        is_active: bool = True,
        is_processing: bool = False,
        is_starred: bool = False,
    ) -> str:
        segment = self._account.create_segment(
            name, definition, is_active, is_processing, is_starred
        )
        return segment.id

    def rename_segment(self, segment_id: str, name: str) -> None:
        self._account.update_segment(segment_id, name=name)

    def set_segment_flags(
        self,
        segment_id: str,
        *,
        is_active: bool | None = None,
        is_processing: bool | None = None,
        is_starred: bool | None = None,
    ) -> None:
        self._account.update_segment(
            segment_id, is_active=is_active, is_processing=is_processing, is_starred=is_starred
        )

    def delete_segment(self, segment_id: str) -> None:
        self._account.delete_segment(segment_id)

    def create_tag(self, name: str) -> str:
        return self._account.create_tag(name)

    def link_tag(self, segment_id: str, tag_id: str) -> None:
        self._account.link_tag(segment_id, tag_id)

    def unlink_tag(self, segment_id: str, tag_id: str) -> None:
        self._account.unlink_tag(segment_id, tag_id)

    def create_profile(self, **attributes: Any) -> str:
        return self._account.create_profile(**attributes)

    def update_profile(self, profile_id: str, **attributes: Any) -> None:
        """Replace attributes (`email`, `first_name`, a whole `properties` object, ...) of a
        generated or created profile; `updated` moves to the emulator's clock, and always
        past its previous value (see `Account.update_profile`)."""
        self._account.update_profile(profile_id, **attributes)

    def update_profile_exactly(self, profile_id: str, **attributes: Any) -> None:
        """Replace attributes with values served exactly, even those orjson cannot write.

        For odd data: integers beyond 64 bits, lone UTF-16 surrogates (sent as `\\ud800`
        escapes), NUL characters, long strings, nested nulls, a `location` that is not an
        object. Each value is a Python value or an `orjson.Fragment` of JSON text; such values
        are served as they are, `profile()` returns them as fragments, and `filter` conditions
        on that attribute do not see them.
        """
        exact = {name: exact_json(value) for name, value in attributes.items()}
        self._account.update_profile(profile_id, **exact)

    def add_member(
        self, segment_id: str, profile_id: str, joined_group_at: datetime | None = None
    ) -> datetime:
        return self._account.add_member(segment_id, profile_id, joined_group_at)

    def remove_member(self, segment_id: str, profile_id: str) -> None:
        self._account.remove_member(segment_id, profile_id)

    # --- ground truth ---------------------------------------------------------------------------

    def segment_ids(self) -> list[str]:
        with self._account.lock:
            return list(self._account.segments)

    def segment(self, segment_id: str) -> dict[str, Any]:
        """The segment's attributes as the API renders them (datetimes as strings)."""
        with self._account.lock:
            attributes = segment_attributes(self._account.segment(segment_id), None, None)
            return copy.deepcopy(attributes)

    def tag_ids(self) -> list[str]:
        with self._account.lock:
            return list(self._account.tags)

    def tag(self, tag_id: str) -> dict[str, Any]:
        with self._account.lock:
            return {"name": self._account.tag(tag_id).name}

    def segment_tags(self, segment_id: str) -> set[str]:
        with self._account.lock:
            return set(self._account.segment(segment_id).tag_ids)

    def members(self, segment_id: str) -> dict[str, datetime]:
        return self._account.members(segment_id)

    def profile(self, profile_id: str) -> dict[str, Any]:
        with self._account.lock:
            index = self._account.profile_index(profile_id)
            return copy_document(self._account.profile_attributes(index))

    def profile_ids(self) -> list[str]:
        """The profiles that are a member of some segment, in id order."""
        return self._account.member_profile_ids()

    def all_profile_ids(self) -> list[str]:
        """Every profile of the account, members or not, in id order (what get_profiles lists)."""
        return self._account.all_profile_ids()


def _build(name: str, seed: int, profiles: int | None, memberships: int | None) -> datasets.Dataset:
    return datasets.build(name, seed, profiles=profiles, memberships=memberships)


def _configure_faults(injector: FaultInjector, config: FaultConfig) -> None:
    if config is None or isinstance(config, FaultInjector):
        return
    entries = [config] if isinstance(config, Mapping) else list(config)
    for entry in entries:
        options = dict(entry)
        if "p" in options:
            injector.probability(**options)
        else:
            injector.script(**options)


def _url_host(host: str) -> str:
    if host in ("0.0.0.0", ""):
        return "127.0.0.1"
    return f"[{host}]" if ":" in host else host
