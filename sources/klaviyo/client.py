"""HTTP client for the Klaviyo REST API: auth, revision, pagination, rate limits, retries, errors."""

from __future__ import annotations

import json
import os
import random
import re
import threading
from collections import Counter
from collections.abc import Iterator
from typing import Any
from urllib.parse import urlsplit

import orjson
import requests
from dlt.common import logger
from requests.adapters import HTTPAdapter
from requests.utils import get_environ_proxies
from urllib3.exceptions import NewConnectionError

from . import settings
from .exceptions import (
    KlaviyoAuthError,
    KlaviyoConfigError,
    KlaviyoConnectionError,
    KlaviyoError,
    KlaviyoNotFoundError,
    KlaviyoPermissionError,
    KlaviyoRequestError,
    KlaviyoResponseError,
    KlaviyoRetriesExhaustedError,
    redact,
)
from .ratelimit import Admission, EndpointLimiter, Interrupted, shared_limiter, sleep_interruptibly
from .stats import ExtractionStats

JsonDoc = dict[str, Any]
PRIVATE_KEY_PATTERN = re.compile(settings.PRIVATE_KEY_PATTERN)

_LEADING_NUMBER = re.compile(r"^\s*(\d+(?:\.\d+)?)")
# An escaped backslash, a surrogate pair, or (named) a NUL or lone surrogate escape. Matching
# `\\` as a unit keeps the count of backslashes right: in JSON, `\\u0000` is a backslash and
# the text "u0000".
_ESCAPE = re.compile(
    rb"\\(?:\\|u[dD][89abAB][0-9a-fA-F]{2}\\u[dD][c-fC-F][0-9a-fA-F]{2}"
    rb"|(?P<unstorable>u(?:0000|[dD][89a-fA-F][0-9a-fA-F]{2})))"
)
_NUL_ESCAPE = b"\\u0000"
_DIGITS_AS_ZERO = bytes.maketrans(b"123456789", b"000000000")
_DIGIT_RUN = b"0" * settings.EXACT_INTEGER_DIGITS
_ZEROS = re.compile(rb"0*")
# What may precede an integer literal (b"": the start of the text); digits after anything
# else sit in a string, a fraction or an exponent.
_BEFORE_NUMBER = frozenset((b"", b":", b",", b"[", b" ", b"\t", b"\r", b"\n"))
_SCOPE_IN_TEXT = re.compile(r"\b([a-z][a-z-]*:(?:read|write))\b")
_TRANSIENT_ERRORS = (
    requests.ConnectionError,
    requests.Timeout,
    requests.exceptions.ChunkedEncodingError,
    requests.exceptions.ContentDecodingError,
)
# Kinds of failed attempt; each has its own retry budget.
_FAILED = "failed"
_THROTTLED = "throttled"
_MALFORMED = "malformed"
_UNREACHABLE = "unreachable"

_ANSWERED_BASE_URLS: set[str] = set()
_ANSWERED_LOCK = threading.Lock()


class _Retry(Exception):
    """One attempt failed in a way a later attempt may not."""

    def __init__(self, reason: str, wait: float | None = None, kind: str = _FAILED):
        super().__init__(reason)
        self.reason = reason
        self.wait = wait
        self.kind = kind


def validate_api_key(api_key: str) -> str:
    """Checks the shape of a private key, so a pasted public key or typo fails before any request.

    Raises:
        KlaviyoConfigError: The key is not `pk_` followed by 34 letters and digits.
    """
    if not PRIVATE_KEY_PATTERN.fullmatch(api_key):
        raise KlaviyoConfigError(
            "the Klaviyo API key is malformed: a private key is pk_ followed by 34 letters "
            "and digits; check [sources.klaviyo] api_key or SOURCES__KLAVIYO__API_KEY"
        )
    return api_key


class KlaviyoClient:
    """Talks to one Klaviyo account at one revision; safe to share between threads.

    Args:
        api_key: Private API key, sent as `Authorization: Klaviyo-API-Key <key>`.
        base_url: Scheme and host, e.g. `https://a.klaviyo.com`.
        revision: Value of the `revision` header, `YYYY-MM-DD[.pre]`.
        timeout: Seconds to wait for the connection and for each read.
        max_retries: Retries after the first attempt, for 5xx and broken connections (429s:
            `settings.THROTTLED_RETRIES_PER_RETRY` times as many).
        stats: Counters to update (requests, retries, throttling, waiting).
        stop: When set, waits are cut short and the client raises `Interrupted`.

    Raises:
        KlaviyoConfigError: The API key is malformed.
    """

    def __init__(
        self,
        api_key: str,
        base_url: str,
        revision: str,
        timeout: float,
        max_retries: int,
        stats: ExtractionStats,
        stop: threading.Event | None = None,
    ) -> None:
        self._api_key = validate_api_key(api_key)
        self.base_url = base_url.rstrip("/")
        self.revision = revision
        self._timeout = timeout
        self._max_retries = max_retries
        self._stats = stats
        self._stop = stop
        self._local = threading.local()
        self._pools: list[requests.Session] = []
        self._pools_lock = threading.Lock()
        self._proxies = get_environ_proxies(self.base_url)
        self._ca_bundle = os.environ.get("REQUESTS_CA_BUNDLE") or os.environ.get("CURL_CA_BUNDLE")

    def paginate(
        self,
        path: str,
        params: dict[str, Any],
        operation: str,
        segment_id: str | None = None,
    ) -> Iterator[JsonDoc]:
        """Yields every page of a collection, following `links.next` verbatim.

        Args:
            path: API path of the first page, e.g. `/api/segments/`.
            params: Query parameters of the first page; later pages carry them in `next`.
            operation: Klaviyo operation id, which selects the rate limit and error wording.
            segment_id: The segment the path is about, for a clear 404.
        """
        url: str | None = self.base_url + path
        page_params: dict[str, Any] | None = params
        while url:
            page = self.get(url, page_params, operation, segment_id)
            yield page
            url = self._next_url(page, url)
            page_params = None

    def get(
        self,
        url: str,
        params: dict[str, Any] | None,
        operation: str,
        segment_id: str | None = None,
    ) -> JsonDoc:
        """GETs one JSON:API document, retrying what is worth retrying.

        Raises:
            KlaviyoError: A subclass naming what went wrong, see `exceptions`.
        """
        limiter = self._limiter(operation)
        failures: Counter[str] = Counter()
        while True:
            admission = limiter.acquire(self._stop)
            self._stats.add(wait_seconds=admission.waited)
            try:
                return self._attempt(url, params, operation, segment_id, limiter, admission)
            except _Retry as retry:
                failures[retry.kind] += 1
                if not self._may_retry(retry.kind, failures):
                    raise self._exhausted(url, operation, failures, retry) from None
                attempts = sum(failures.values())
                wait = retry.wait if retry.wait is not None else self._backoff(attempts)
                logger.info(f"Klaviyo {_describe(url)} will be retried in {wait:.1f}s: {retry}")
                self._stats.add(retries=1)
                self._sleep(wait)

    def close(self) -> None:
        """Closes the keep-alive connections of every thread."""
        with self._pools_lock:
            for pool in self._pools:
                pool.close()
            self._pools.clear()

    def _attempt(
        self,
        url: str,
        params: dict[str, Any] | None,
        operation: str,
        segment_id: str | None,
        limiter: EndpointLimiter,
        admission: Admission,
    ) -> JsonDoc:
        self._stats.add(requests=1)
        try:
            response = self._http().get(url, params=params, timeout=self._timeout)
            body = response.content
        except _TRANSIENT_ERRORS as exc:
            kind = _UNREACHABLE if _is_connect_failure(exc) else _FAILED
            raise _Retry(_transport_reason(exc, self._timeout), kind=kind) from None
        _mark_answered(self.base_url)
        status = response.status_code
        if status == 429:
            self._stats.add(throttled=1)
            wait = _retry_after(response)
            if wait is not None:
                limiter.pause(wait)
            raise _Retry(
                "HTTP 429 throttled", wait=0.0 if wait is not None else None, kind=_THROTTLED
            )
        limiter.observe(
            _header_number(response, "RateLimit-Remaining"),
            _header_number(response, "RateLimit-Reset"),
            admission.ticket,
        )
        document = self._decode(response, body)
        if 200 <= status < 300:
            if not isinstance(document, dict) or "data" not in document:
                raise _Retry(
                    _what_came_back(response, body, "not a JSON:API document"), kind=_MALFORMED
                )
            return document
        if status in settings.RETRY_STATUSES:
            # A Retry-After on a 5xx (maintenance) is honoured, within the backoff's cap.
            asked = _retry_after(response)
            wait = min(asked, settings.RETRY_BACKOFF_CAP) if asked is not None else None
            raise _Retry(f"HTTP {status}{_error_detail_suffix(document)}", wait=wait)
        raise self._error(status, document, response, body, url, operation, segment_id)

    def _decode(self, response: requests.Response, body: bytes) -> Any:
        content_type = response.headers.get("Content-Type", "")
        try:
            return decode_json(body)
        except ValueError:
            if "json" in content_type.lower():
                # A JSON content type with a broken body is a truncated response.
                raise _Retry(f"truncated JSON body ({len(body)} bytes)") from None
            if response.status_code in settings.RETRY_STATUSES:
                raise _Retry(_what_came_back(response, body, "error page")) from None
            if 200 <= response.status_code < 300:
                raise _Retry(_what_came_back(response, body, "not JSON"), kind=_MALFORMED) from None
            return None

    def _error(
        self,
        status: int,
        document: Any,
        response: requests.Response,
        body: bytes,
        url: str,
        operation: str,
        segment_id: str | None,
    ) -> KlaviyoError:
        error = _first_error(document)
        if error is None:
            text = _what_came_back(response, body, "not a JSON:API error")
            return KlaviyoResponseError(
                self._redact(f"Klaviyo answered {_describe(url)} with {text}")
            )
        code = str(error.get("code") or "")
        detail = self._redact(str(error.get("detail") or error.get("title") or ""))
        if status == 401:
            return KlaviyoAuthError(
                f"Klaviyo rejected the API key (401 {code}: {detail}); "
                "check [sources.klaviyo] api_key or SOURCES__KLAVIYO__API_KEY",
                status,
            )
        if status == 403:
            scope = _scope_from(detail) or settings.OPERATION_SCOPES.get(operation, "unknown")
            return KlaviyoPermissionError(
                f"the API key lacks scope {scope} (403 {code} on {_describe(url)}: {detail})",
                scope,
            )
        # A revision without the method also answers 404 ("No valid revisions found").
        if status == 404 and segment_id is not None and "revision" not in detail.lower():
            return KlaviyoNotFoundError(f"segment {segment_id} does not exist", segment_id)
        source = error.get("source") if isinstance(error.get("source"), dict) else {}
        where = " ".join(f"[{key} {value}]" for key, value in (source or {}).items())
        return KlaviyoRequestError(
            f"Klaviyo rejected {_describe(url)} ({status} {code}): {detail} {where}".strip(),
            status,
        )

    def _may_retry(self, kind: str, failures: Counter[str]) -> bool:
        """Whether the budgets allow another attempt after failures counted by kind."""
        if kind == _THROTTLED:
            return failures[_THROTTLED] <= self._max_retries * settings.THROTTLED_RETRIES_PER_RETRY
        if sum(n for k, n in failures.items() if k != _THROTTLED) > self._max_retries:
            return False
        if kind == _MALFORMED:
            return failures[_MALFORMED] <= settings.MALFORMED_BODY_RETRIES
        if kind == _UNREACHABLE and not _has_answered(self.base_url):
            return failures[_UNREACHABLE] <= settings.UNREACHABLE_RETRIES
        return True

    def _exhausted(
        self, url: str, operation: str, failures: Counter[str], retry: _Retry
    ) -> KlaviyoError:
        attempts = sum(failures.values())
        if retry.kind == _MALFORMED:
            return KlaviyoResponseError(
                self._redact(f"Klaviyo answered {_describe(url)} with {retry}")
            )
        if retry.kind == _UNREACHABLE and not _has_answered(self.base_url):
            return KlaviyoConnectionError(
                self._redact(
                    f"could not connect to {_origin(self.base_url)} ({retry}, {attempts} "
                    "attempts); check base_url and the network"
                )
            )
        retries = failures[_THROTTLED] - 1 if retry.kind == _THROTTLED else self._max_retries
        bound = _count(retries, "retry", "retries") + (
            " on 429" if retry.kind == _THROTTLED else ""
        )
        return KlaviyoRetriesExhaustedError(
            self._redact(
                f"{operation} ({_describe(url)}) failed {_count(attempts, 'time', 'times')}, "
                f"last with {retry}; gave up after {bound}"
            )
        )

    def _next_url(self, page: JsonDoc, url: str) -> str | None:
        """`links.next`, verbatim when it is on the configured origin.

        A next link on another origin (a proxy in front of Klaviyo, a host name spelled
        differently) is re-based on `base_url`: the key is only ever sent there.

        Raises:
            KlaviyoResponseError: The page has no `links`: whether more pages follow is
                unknown, and ending the walk there would pass members by silently.
        """
        links = page.get("links")
        if not isinstance(links, dict):
            raise KlaviyoResponseError(
                f"Klaviyo answered {_describe(url)} with a page without links; "
                "cannot tell whether more pages follow"
            )
        next_url = links.get("next")
        if not next_url or not isinstance(next_url, str):
            return None
        parts = urlsplit(next_url)
        if parts.scheme and _origin(next_url) == _origin(self.base_url):
            return next_url
        query = f"?{parts.query}" if parts.query else ""
        return f"{self.base_url}{parts.path}{query}"

    def _limiter(self, operation: str) -> EndpointLimiter:
        burst, steady = settings.RATE_LIMITS.get(operation, (75, 700))
        if steady == 700 and revision_at_least(self.revision, settings.STEADY_750_FROM):
            steady = settings.L_TIER_STEADY_FROM_2026
        return shared_limiter(
            self.base_url,
            self._api_key,
            operation,
            burst,
            steady,
            settings.BURST_WINDOW_SECONDS,
            settings.STEADY_WINDOW_SECONDS,
        )

    def _sleep(self, seconds: float) -> None:
        if seconds > 0:
            sleep_interruptibly(seconds, self._stop)
            self._stats.add(wait_seconds=seconds)

    def _backoff(self, attempt: int) -> float:
        ceiling = min(settings.RETRY_BACKOFF_CAP, settings.RETRY_BACKOFF_BASE * 2 ** (attempt - 1))
        return random.uniform(ceiling / 2, ceiling)

    def _http(self) -> requests.Session:
        """This thread's keep-alive connection pool with the Klaviyo headers set."""
        http: requests.Session | None = getattr(self._local, "http", None)
        if http is None:
            http = requests.Session()
            # With trust_env, requests reads proxy variables, .netrc and CA bundle variables
            # again on every request: a measurable share of a page's CPU. They are read once.
            http.trust_env = False
            http.proxies.update(self._proxies)
            if self._ca_bundle:
                http.verify = self._ca_bundle
            # Retries are ours: urllib3 must not retry behind our back.
            http.mount("https://", HTTPAdapter(max_retries=0))
            http.mount("http://", HTTPAdapter(max_retries=0))
            http.headers.update(
                {
                    "Authorization": f"Klaviyo-API-Key {self._api_key}",
                    "revision": self.revision,
                    "Accept": settings.ACCEPT,
                    "User-Agent": settings.USER_AGENT,
                }
            )
            self._local.http = http
            with self._pools_lock:
                self._pools.append(http)
        return http

    def _redact(self, text: str) -> str:
        return redact(text, (self._api_key,))


def api_path(template: str, revision: str, **values: str) -> str:
    """Fills a path template and drops the trailing slash for revisions that have none."""
    path = template.format(**values)
    if revision_at_least(revision, settings.PATHS_WITHOUT_TRAILING_SLASH_FROM):
        path = path.rstrip("/")
    return path


def decode_json(body: bytes) -> Any:
    """Decodes an answer into values every destination can store.

    NUL characters and lone UTF-16 surrogates become U+FFFD, in keys and values alike, and
    integers beyond 64 bits stay exact Python ints (orjson would round them to floats). Normal
    pages take orjson after two scans of the raw bytes; only a page with such an escape or
    such a number takes a slower path.

    Raises:
        ValueError: The body is not JSON (a truncated body, an error page).
    """
    if _has_wide_integer(body):
        text = (_storable_escapes(body) if b"\\" in body else body).decode()
        try:
            return json.loads(text, parse_constant=_not_json)
        except RecursionError:
            raise ValueError("JSON nested too deeply") from None
    if b"\\" in body and _NUL_ESCAPE in body:
        body = _storable_escapes(body)
    try:
        return orjson.loads(body)
    except orjson.JSONDecodeError:
        # orjson refuses lone surrogates; any other failure is a broken body
        repaired = _storable_escapes(body) if b"\\" in body else body
        if repaired == body:
            raise
        return orjson.loads(repaired)


def _storable_escapes(body: bytes) -> bytes:
    """The JSON text with every NUL and lone surrogate escape replaced by that of U+FFFD."""
    return _ESCAPE.sub(_storable_escape, body)


def _storable_escape(match: re.Match[bytes]) -> bytes:
    return settings.UNSTORABLE_TEXT_REPLACEMENT if match["unstorable"] else match[0]


def _has_wide_integer(body: bytes) -> bool:
    """Whether the JSON text may hold an integer literal beyond orjson's 64-bit range.

    True for a positive literal of 20 digits or more, or a negative one of 19 or more; false
    alarms (a 20-digit number below 2**64, digits in a string after a colon) only cost the
    slower decoder.
    """
    digits = body.translate(_DIGITS_AS_ZERO)
    start = digits.find(_DIGIT_RUN)
    while start != -1:
        run = _ZEROS.match(digits, start)
        end = run.end() if run else start
        before = body[start - 1 : start]
        if before == b"-" or (before in _BEFORE_NUMBER and end - start > len(_DIGIT_RUN)):
            return True
        start = digits.find(_DIGIT_RUN, end)
    return False


def _not_json(constant: str) -> Any:
    raise ValueError(f"{constant} is not JSON")


def _count(number: int, one: str, many: str) -> str:
    return f"{number} {one if number == 1 else many}"


def _origin(url: str) -> str:
    """`scheme://host[:port]` without any user info, for comparisons and messages."""
    parts = urlsplit(url)
    host = parts.hostname or ""
    if ":" in host:
        host = f"[{host}]"
    return f"{parts.scheme}://{host}" + (f":{parts.port}" if parts.port else "")


def _mark_answered(base_url: str) -> None:
    if base_url not in _ANSWERED_BASE_URLS:
        with _ANSWERED_LOCK:
            _ANSWERED_BASE_URLS.add(base_url)


def _has_answered(base_url: str) -> bool:
    return base_url in _ANSWERED_BASE_URLS


def _is_connect_failure(exc: BaseException) -> bool:
    """True when no connection could be made at all (refused, unknown host, connect timeout)."""
    if isinstance(exc, requests.ConnectTimeout):
        return True
    if not isinstance(exc, requests.ConnectionError) or isinstance(
        exc, requests.exceptions.ChunkedEncodingError
    ):
        return False
    reason = exc.args[0] if exc.args else None
    return isinstance(getattr(reason, "reason", reason), NewConnectionError)


def _transport_reason(exc: BaseException, timeout: float) -> str:
    """A short account of a failed exchange; requests' own text repeats the whole URL."""
    text = str(exc)
    if isinstance(exc, requests.ConnectTimeout):
        return f"no connection within {timeout:g}s"
    if isinstance(exc, requests.ReadTimeout):
        return f"no answer within {timeout:g}s"
    if isinstance(exc, requests.exceptions.ChunkedEncodingError):
        return "connection broken in the middle of the answer (incomplete body)"
    if isinstance(exc, requests.exceptions.ContentDecodingError):
        return "answer body could not be decoded"
    for marker, reason in (
        ("Connection refused", "connection refused"),
        ("Name or service not known", "host name not found"),
        ("Failed to resolve", "host name not found"),
        ("without response", "connection closed without an answer"),
        ("Connection reset", "connection reset"),
        ("Connection aborted", "connection aborted"),
    ):
        if marker in text:
            return reason
    return type(exc).__name__


def revision_at_least(revision: str, since: str) -> bool:
    """True when `revision` (`YYYY-MM-DD[.pre]`) is `since` or newer."""
    return revision.split(".", 1)[0] >= since


def _describe(url: str) -> str:
    return f"GET {urlsplit(url).path}"


def _first_error(document: Any) -> dict[str, Any] | None:
    if isinstance(document, dict):
        errors = document.get("errors")
        if isinstance(errors, list) and errors and isinstance(errors[0], dict):
            return errors[0]
    return None


def _error_detail_suffix(document: Any) -> str:
    error = _first_error(document)
    detail = error.get("detail") or error.get("title") if error else None
    return f" ({detail})" if detail else ""


def _what_came_back(response: requests.Response, body: bytes, what: str) -> str:
    content_type = response.headers.get("Content-Type") or "no content type"
    excerpt = " ".join(body[: settings.BODY_EXCERPT_CHARS].decode("utf-8", "replace").split())
    return f"HTTP {response.status_code} {content_type}, {what}: {excerpt!r}"


def _scope_from(detail: str) -> str | None:
    match = _SCOPE_IN_TEXT.search(detail)
    return match.group(1) if match else None


def _header_number(response: requests.Response, name: str) -> Any | None:
    value = response.headers.get(name)
    match = _LEADING_NUMBER.match(value) if value else None
    if not match:
        return None
    number = float(match.group(1))
    return int(number) if number.is_integer() else number


def _retry_after(response: requests.Response) -> float | None:
    value = _header_number(response, "Retry-After")
    return None if value is None else float(value)


__all__ = ["KlaviyoClient", "Interrupted", "api_path", "decode_json", "validate_api_key"]
