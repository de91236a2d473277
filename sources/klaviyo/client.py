"""HTTP client for the Klaviyo REST API: auth, revision, pagination, rate limits, retries, errors."""

from __future__ import annotations

import random
import re
import threading
from collections.abc import Iterator
from typing import Any
from urllib.parse import urlsplit

import orjson
import requests
from dlt.common import logger
from requests.adapters import HTTPAdapter

from . import settings
from .exceptions import (
    KlaviyoAuthError,
    KlaviyoError,
    KlaviyoNotFoundError,
    KlaviyoPermissionError,
    KlaviyoRequestError,
    KlaviyoResponseError,
    KlaviyoRetriesExhaustedError,
    redact,
)
from .ratelimit import EndpointLimiter, Interrupted, shared_limiter, sleep_interruptibly
from .stats import ExtractionStats

JsonDoc = dict[str, Any]
_LEADING_NUMBER = re.compile(r"^\s*(\d+(?:\.\d+)?)")
_SCOPE_IN_TEXT = re.compile(r"\b([a-z][a-z-]*:(?:read|write))\b")
_TRANSIENT_ERRORS = (
    requests.ConnectionError,
    requests.Timeout,
    requests.exceptions.ChunkedEncodingError,
    requests.exceptions.ContentDecodingError,
)


class _Retry(Exception):
    """One attempt failed in a way a later attempt may not."""

    def __init__(self, reason: str, wait: float | None = None, malformed: bool = False):
        super().__init__(reason)
        self.reason = reason
        self.wait = wait
        self.malformed = malformed


class KlaviyoClient:
    """Talks to one Klaviyo account at one revision; safe to share between threads.

    Args:
        api_key: Private API key, sent as `Authorization: Klaviyo-API-Key <key>`.
        base_url: Scheme and host, e.g. `https://a.klaviyo.com`.
        revision: Value of the `revision` header, `YYYY-MM-DD[.pre]`.
        timeout: Seconds to wait for the connection and for each read.
        max_retries: Retries after the first attempt, for 429, 5xx and broken connections.
        stats: Counters to update (requests, retries, throttling, waiting).
        stop: When set, waits are cut short and the client raises `Interrupted`.
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
        self._api_key = api_key
        self.base_url = base_url.rstrip("/")
        self.revision = revision
        self._timeout = timeout
        self._max_retries = max_retries
        self._stats = stats
        self._stop = stop
        self._local = threading.local()
        self._pools: list[requests.Session] = []
        self._pools_lock = threading.Lock()

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
            links = page.get("links") or {}
            url = links.get("next") if isinstance(links, dict) else None
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
        attempts = 0
        malformed = 0
        while True:
            attempts += 1
            self._stats.add(wait_seconds=limiter.acquire(self._stop))
            try:
                return self._attempt(url, params, operation, segment_id, limiter)
            except _Retry as retry:
                malformed += retry.malformed
                give_up = attempts > self._max_retries or (
                    retry.malformed and malformed > settings.MALFORMED_BODY_RETRIES
                )
                if give_up:
                    raise self._exhausted(url, operation, attempts, retry) from None
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
    ) -> JsonDoc:
        self._stats.add(requests=1)
        try:
            response = self._http().get(url, params=params, timeout=self._timeout)
            body = response.content
        except _TRANSIENT_ERRORS as exc:
            raise _Retry(f"{type(exc).__name__}: {exc}") from None
        status = response.status_code
        if status == 429:
            self._stats.add(throttled=1)
            wait = _retry_after(response)
            if wait is not None:
                limiter.pause(wait)
            raise _Retry("HTTP 429 throttled", wait=0.0 if wait is not None else None)
        limiter.observe(
            _header_number(response, "RateLimit-Remaining"),
            _header_number(response, "RateLimit-Reset"),
        )
        document = self._decode(response, body)
        if 200 <= status < 300:
            if not isinstance(document, dict) or "data" not in document:
                raise _Retry(
                    _what_came_back(response, body, "not a JSON:API document"), malformed=True
                )
            return document
        if status in settings.RETRY_STATUSES:
            raise _Retry(f"HTTP {status}{_error_detail_suffix(document)}")
        raise self._error(status, document, response, body, url, operation, segment_id)

    def _decode(self, response: requests.Response, body: bytes) -> Any:
        content_type = response.headers.get("Content-Type", "")
        try:
            return orjson.loads(body)
        except orjson.JSONDecodeError:
            if "json" in content_type.lower():
                # A JSON content type with a broken body is a truncated response.
                raise _Retry(f"truncated JSON body ({len(body)} bytes)") from None
            if response.status_code in settings.RETRY_STATUSES:
                raise _Retry(_what_came_back(response, body, "error page")) from None
            if 200 <= response.status_code < 300:
                raise _Retry(_what_came_back(response, body, "not JSON"), malformed=True) from None
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

    def _exhausted(self, url: str, operation: str, attempts: int, retry: _Retry) -> KlaviyoError:
        if retry.malformed:
            return KlaviyoResponseError(
                self._redact(f"Klaviyo answered {_describe(url)} with {retry}")
            )
        return KlaviyoRetriesExhaustedError(
            self._redact(
                f"{operation} ({_describe(url)}) failed {attempts} times, last with {retry}; "
                f"gave up after {self._max_retries} retries"
            )
        )

    def _limiter(self, operation: str) -> EndpointLimiter:
        burst, steady = settings.RATE_LIMITS.get(operation, (75, 700))
        if steady == 700 and _revision_date(self.revision) >= settings.STEADY_750_FROM:
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
    if _revision_date(revision) >= settings.PATHS_WITHOUT_TRAILING_SLASH_FROM:
        path = path.rstrip("/")
    return path


def _revision_date(revision: str) -> str:
    return revision.split(".", 1)[0]


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


__all__ = ["KlaviyoClient", "Interrupted", "api_path"]
