"""One request from arrival to answer, with the checks in Klaviyo's order (API-NOTES §13)."""

from __future__ import annotations

import random
import time
import traceback
from collections.abc import Mapping
from dataclasses import dataclass, field

import orjson

from . import params, routes
from . import settings as s
from .api import Operations, Request
from .errors import (
    ApiError,
    authentication_failed,
    invalid,
    method_not_allowed,
    not_authenticated,
    not_found,
    permission_denied,
    server_error,
    throttled,
    unsupported_media_type,
)
from .fault_pages import fault_response
from .faults import Fault, FaultInjector
from .ratelimit import RateLimiter
from .render import Context
from .stats import Stats
from .store import Store

AUTH_SCHEME = "Klaviyo-API-Key "
REVISION_RANGE = f"{s.ACCEPTED_REVISIONS[0]} to {s.ACCEPTED_REVISIONS[-1]}"
NO_REVISION_FOR_METHOD = "No valid revisions found for method"


@dataclass
class Response:
    """An answer; `delivery` is "drop" or "truncate" when a fault mangles it on the wire."""

    status: int
    body: bytes = b""
    headers: dict[str, str] = field(default_factory=dict)
    content_type: str = s.JSONAPI_CONTENT_TYPE
    delivery: str | None = None


class Dispatcher:
    """Everything a request goes through; shared by all server threads."""

    def __init__(
        self,
        store: Store,
        limiter: RateLimiter,
        faults: FaultInjector,
        stats: Stats,
        base_url: str,
    ) -> None:
        self.store = store
        self.operations = Operations(store)
        self.limiter = limiter
        self.faults = faults
        self.stats = stats
        self.base_url = base_url
        self.latency = 0.0
        self.jitter = 0.0
        self._random = random.Random(store.seed)

    def handle(self, method: str, target: str, headers: Mapping[str, str], body: bytes) -> Response:
        """Answer one request; counts it in the stats."""
        path, _, raw_query = target.partition("?")
        route = routes.match(method, path)
        operation = route.operation or s.UNKNOWN_OPERATION
        self.stats.begin()
        response: Response | None = None
        try:
            response = self._answer(route, method, path, raw_query, headers, body)
        except Exception:
            # A bug in the emulator must not kill the connection silently; show it once.
            traceback.print_exc()
            response = _error_response(server_error(500))
        finally:
            status = None if response is None or response.delivery == "drop" else response.status
            self.stats.end(operation, status, route.segment_id)
        return response

    def _answer(
        self,
        route: routes.Route,
        method: str,
        path: str,
        raw_query: str,
        headers: Mapping[str, str],
        body: bytes,
    ) -> Response:
        fault = self.faults.pick(path)
        if fault is not None:
            replaced = self._apply_fault(fault)
            if replaced is not None:
                return replaced
        self._sleep()
        try:
            response = self._checked(route, method, path, raw_query, headers, body)
        except ApiError as error:
            response = _error_response(error)
        if fault is not None and fault.kind == "truncate":
            response.delivery = "truncate"
        return response

    def _apply_fault(self, fault: Fault) -> Response | None:
        if fault.kind == "drop":
            return Response(0, delivery="drop")
        if fault.kind == "slow":
            time.sleep(fault.delay)
            return None
        replaced = fault_response(fault)
        if replaced is None:
            return None
        status, content_type, body, headers = replaced
        return Response(status, body, dict(headers), content_type)

    def _checked(
        self,
        route: routes.Route,
        method: str,
        path: str,
        raw_query: str,
        headers: Mapping[str, str],
        body: bytes,
    ) -> Response:
        scopes = self._authenticate(headers.get("authorization"))
        if route.operation is not None and not s.OPERATION_SCOPES[route.operation] <= scopes:
            raise permission_denied()
        revision = check_revision(headers.get("revision"))
        if route.operation is None:
            if route.path_known:
                raise method_not_allowed(method)
            raise not_found(f"The path {path} does not exist.")
        operation = route.operation
        since = s.OPERATION_SINCE.get(operation)
        if since is not None and revision < since:
            raise not_found(NO_REVISION_FOR_METHOD)
        if method in ("POST", "PATCH"):
            _check_content_type(headers.get("content-type"))
        query = params.parse(raw_query, operation, revision)
        decision = self.limiter.check(s.ACCOUNT_ID, operation, revision, query.as_mapping())
        if not decision.allowed:
            raise throttled(decision.retry_after, dict(decision.headers))
        host = headers.get("host")
        ctx = Context(
            base=f"http://{host}" if host else self.base_url,
            slash=path.endswith("/"),
            revision=revision,
        )
        request = Request(ctx, path, raw_query, query, route.segment_id, body, route.tag_id)
        status, payload = self.operations.run(operation, request)
        return Response(status, payload, dict(decision.headers))

    def _authenticate(self, authorization: str | None) -> frozenset[str]:
        if not authorization or not authorization.startswith(AUTH_SCHEME):
            raise not_authenticated()
        scopes = self.store.keys.get(authorization[len(AUTH_SCHEME) :].strip())
        if scopes is None:
            raise authentication_failed()
        return scopes

    def _sleep(self) -> None:
        if self.latency <= 0 and self.jitter <= 0:
            return
        delay = self.latency + self._random.uniform(-self.jitter, self.jitter)
        if delay > 0:
            time.sleep(delay)


def check_revision(value: str | None) -> str:
    """The revision to answer as: the date part of a valid `revision` header; 400 otherwise.

    A released revision without a spec at hand is answered as the one `REVISIONS_SERVED_AS`
    names for it.
    """
    if value is None or not value.strip():
        raise invalid(
            f"The 'revision' header is required. Accepted revisions are {REVISION_RANGE}.",
            "revision",
        )
    match = s.REVISION_PATTERN.fullmatch(value.strip())
    if match is None:
        raise invalid(
            f"Invalid revision '{value}'. Use the format YYYY-MM-DD, optionally with a suffix "
            f"such as .pre. Accepted revisions are {REVISION_RANGE}.",
            "revision",
        )
    revision = match.group(1)
    if revision not in s.ACCEPTED_REVISIONS:
        raise invalid(
            f"'{revision}' is not a valid revision. Accepted revisions are {REVISION_RANGE}: "
            f"{', '.join(s.ACCEPTED_REVISIONS)}.",
            "revision",
        )
    return s.REVISIONS_SERVED_AS.get(revision, revision)


def _check_content_type(value: str | None) -> None:
    media_type = (value or "").split(";")[0].strip().lower()
    if media_type not in s.ACCEPTED_REQUEST_CONTENT_TYPES:
        raise unsupported_media_type(media_type)


def _error_response(error: ApiError) -> Response:
    return Response(error.status, orjson.dumps(error.document()), dict(error.headers))
