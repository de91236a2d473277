"""One request from arrival to answer, with the checks in Klaviyo's order (API-NOTES §13)."""

from __future__ import annotations

import random
import time
import traceback
from collections.abc import Mapping
from dataclasses import dataclass, field

import orjson

from .. import urls
from ..backend.account import Account
from ..responses import params
from ..responses.errors import (
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
from ..responses.handlers import Handlers
from ..responses.request import Context, Request
from ..settings import ACCEPTED_REQUEST_CONTENT_TYPES, ACCOUNT_ID, JSONAPI_CONTENT_TYPE
from ..spec.revisions import ACCEPTED_REVISIONS, REVISION_PATTERN, SERVED_AS
from .faults import Delivery, Fault, FaultInjector
from .ratelimit import RateLimiter
from .stats import Stats

AUTH_SCHEME = "Klaviyo-API-Key "
REVISION_RANGE = f"{ACCEPTED_REVISIONS[0]} to {ACCEPTED_REVISIONS[-1]}"
NO_REVISION_FOR_METHOD = "No valid revisions found for method"
UNKNOWN_OPERATION = "unknown"  # what the stats count unrouted requests by


@dataclass
class Response:
    """An answer, and how a fault has it delivered (`Delivery.DROP` or `TRUNCATE` on the wire)."""

    status: int
    body: bytes = b""
    headers: dict[str, str] = field(default_factory=dict)
    content_type: str = JSONAPI_CONTENT_TYPE
    delivery: Delivery = Delivery.ANSWER


class Dispatcher:
    """Everything a request goes through; shared by all server threads."""

    def __init__(
        self,
        account: Account,
        limiter: RateLimiter,
        faults: FaultInjector,
        stats: Stats,
        base_url: str,
    ) -> None:
        self.account = account
        self.handlers = Handlers(account)
        self.limiter = limiter
        self.faults = faults
        self.stats = stats
        self.base_url = base_url
        self.latency = 0.0
        self.jitter = 0.0
        self._random = random.Random(account.seed)

    def handle(self, method: str, target: str, headers: Mapping[str, str], body: bytes) -> Response:
        """Answer one request; counts it in the stats."""
        path, _, raw_query = target.partition("?")
        route = urls.match(method, path)
        name = route.operation.name if route.operation is not None else UNKNOWN_OPERATION
        self.stats.begin()
        response: Response | None = None
        try:
            response = self._answer(route, method, path, raw_query, headers, body)
        except Exception:
            # A bug in the emulator must not kill the connection silently; show it once.
            traceback.print_exc()
            response = _error_response(server_error(500))
        finally:
            dropped = response is None or response.delivery is Delivery.DROP
            status = None if response is None or dropped else response.status
            self.stats.end(name, status, route.segment_id)
        return response

    def _answer(
        self,
        route: urls.Route,
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
        if fault is not None and fault.definition.delivery is Delivery.TRUNCATE:
            response.delivery = Delivery.TRUNCATE
        return response

    def _apply_fault(self, fault: Fault) -> Response | None:
        """The answer that replaces the real one; None when the real one goes out."""
        delivery = fault.definition.delivery
        if delivery is Delivery.DROP:
            return Response(0, delivery=Delivery.DROP)
        if delivery is Delivery.LATE:
            time.sleep(fault.delay)
        replaced = fault.replacement()
        if replaced is None:
            return None
        status, (content_type, body, headers) = replaced
        return Response(status, body, dict(headers), content_type)

    def _checked(
        self,
        route: urls.Route,
        method: str,
        path: str,
        raw_query: str,
        headers: Mapping[str, str],
        body: bytes,
    ) -> Response:
        scopes = self._authenticate(headers.get("authorization"))
        operation = route.operation
        if operation is not None and not operation.scopes <= scopes:
            raise permission_denied()
        revision = check_revision(headers.get("revision"))
        if operation is None:
            if route.path_known:
                raise method_not_allowed(method)
            raise not_found(f"The path {path} does not exist.")
        if not operation.served_at(revision):
            raise not_found(NO_REVISION_FOR_METHOD)
        if method in ("POST", "PATCH"):
            _check_content_type(headers.get("content-type"))
        query = params.parse(raw_query, operation.name, revision)
        decision = self.limiter.check(ACCOUNT_ID, operation.name, revision, query.as_mapping())
        if not decision.allowed:
            raise throttled(decision.retry_after, dict(decision.headers))
        host = headers.get("host")
        ctx = Context(
            base=f"http://{host}" if host else self.base_url,
            slash=path.endswith("/"),
            revision=revision,
        )
        request = Request(
            ctx, path, raw_query, query, route.segment_id, body, route.tag_id, route.profile_id
        )
        status, payload = self.handlers.run(operation, request)
        return Response(status, payload, dict(decision.headers))

    def _authenticate(self, authorization: str | None) -> frozenset[str]:
        if not authorization or not authorization.startswith(AUTH_SCHEME):
            raise not_authenticated()
        scopes = self.account.keys.get(authorization[len(AUTH_SCHEME) :].strip())
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

    A released revision without a spec at hand is answered as the one `SERVED_AS` names for it.
    """
    if value is None or not value.strip():
        raise invalid(
            f"The 'revision' header is required. Accepted revisions are {REVISION_RANGE}.",
            "revision",
        )
    match = REVISION_PATTERN.fullmatch(value.strip())
    if match is None:
        raise invalid(
            f"Invalid revision '{value}'. Use the format YYYY-MM-DD, optionally with a suffix "
            f"such as .pre. Accepted revisions are {REVISION_RANGE}.",
            "revision",
        )
    revision = match.group(1)
    if revision not in ACCEPTED_REVISIONS:
        raise invalid(
            f"'{revision}' is not a valid revision. Accepted revisions are {REVISION_RANGE}: "
            f"{', '.join(ACCEPTED_REVISIONS)}.",
            "revision",
        )
    return SERVED_AS.get(revision, revision)


def _check_content_type(value: str | None) -> None:
    media_type = (value or "").split(";")[0].strip().lower()
    if media_type not in ACCEPTED_REQUEST_CONTENT_TYPES:
        raise unsupported_media_type(media_type)


def _error_response(error: ApiError) -> Response:
    return Response(error.status, orjson.dumps(error.document()), dict(error.headers))
