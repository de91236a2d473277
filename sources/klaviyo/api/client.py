"""HTTP client for the Klaviyo REST API: auth headers, pagination, rate limits, retries.

What a request looks like is `endpoints`' business, what an answer means is `errors`'; this
module sends requests, follows `links.next` and waits where the limiter or a retry says so.

Requests go out on keep-alive connections of `transport`, not through `requests`, whose
sessions rebuild the request, its URL, cookies and the TLS settings on every call. Retries and
redirects are this module's decisions.
"""

from __future__ import annotations

import re
import threading
from collections.abc import Iterator
from typing import Any, Protocol
from urllib.parse import urlencode, urlsplit

from dlt.common import logger

from .. import settings
from ..exceptions import KlaviyoConfigError, KlaviyoResponseError
from ..stats import ExtractionStats
from ..typing import JsonDoc
from . import errors
from .endpoints import Request, rate_limits
from .errors import FailedAttempt, RetryBudget
from .profile_pages import decode_profile_page
from .ratelimit import Admission, EndpointLimiter, Interrupted, shared_limiter, sleep_interruptibly
from .transport import Answer, ExchangeFailed, transport_for

PRIVATE_KEY_PATTERN = re.compile(settings.PRIVATE_KEY_PATTERN)

_ANSWERED_BASE_URLS: set[str] = set()
_ANSWERED_LOCK = threading.Lock()


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
        self._transport = transport_for(self.base_url, timeout)
        self._headers = {
            "Authorization": f"Klaviyo-API-Key {api_key}",
            "revision": revision,
            "Accept": settings.ACCEPT,
            "Accept-Encoding": settings.ACCEPT_ENCODING,
            "User-Agent": settings.USER_AGENT,
        }

    def pages(self, request: Request) -> Iterator[JsonDoc]:
        """Yields every page of a request built by `endpoints`."""
        return self.paginate(request.path, request.params, request.operation, request.segment_id)

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
        budget = RetryBudget(self._max_retries)
        while True:
            admission = limiter.acquire(self._stop)
            self._stats.add(wait_seconds=admission.waited)
            try:
                return self._attempt(url, params, operation, segment_id, limiter, admission)
            except FailedAttempt as failure:
                if not budget.allows_another(failure, _has_answered(self.base_url)):
                    answered = _has_answered(self.base_url)
                    raise budget.exhausted(
                        failure, url, operation, self.base_url, answered, (self._api_key,)
                    ) from None
                wait = failure.wait if failure.wait is not None else errors.backoff(budget.attempts)
                logger.info(
                    f"Klaviyo {errors.describe(url)} will be retried in {wait:.1f}s: {failure}"
                )
                self._stats.add(retries=1)
                self._sleep(wait)

    def close(self) -> None:
        """Closes the keep-alive connections of every thread; later requests open new ones."""
        self._transport.close()

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
        target = f"{url}{'&' if '?' in url else '?'}{urlencode(params)}" if params else url
        response = self._exchange(target)
        _mark_answered(self.base_url)
        status = response.status
        if status == 429:
            self._stats.add(throttled=1)
            wait = errors.retry_after(response)
            if wait is not None:
                limiter.pause(wait)
            raise errors.throttled(wait)
        limiter.observe(
            errors.header_number(response, "RateLimit-Remaining"),
            errors.header_number(response, "RateLimit-Reset"),
            admission.ticket,
        )
        document = None
        if 200 <= status < 300 and operation in settings.PROFILE_PAGE_OPERATIONS:
            document = decode_profile_page(response.body)
        if document is None:
            document = errors.decode_answer(response)
        if 200 <= status < 300:
            return errors.checked_document(response, document)
        if status in settings.RETRY_STATUSES:
            raise errors.server_failure(response, document)
        secrets = (self._api_key,)
        raise errors.answer_error(response, document, url, operation, segment_id, secrets)

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
                f"Klaviyo answered {errors.describe(url)} with a page without links; "
                "cannot tell whether more pages follow"
            )
        next_url = links.get("next")
        if not next_url or not isinstance(next_url, str):
            return None
        parts = urlsplit(next_url)
        if parts.scheme and errors.origin(next_url) == errors.origin(self.base_url):
            return next_url
        query = f"?{parts.query}" if parts.query else ""
        return f"{self.base_url}{parts.path}{query}"

    def _limiter(self, operation: str) -> EndpointLimiter:
        burst, steady = rate_limits(operation, self.revision)
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

    def _exchange(self, url: str) -> Answer:
        """One GET and its whole answer.

        Raises:
            FailedAttempt: The connection could not be made, broke, or timed out.
        """
        try:
            return self._transport.get(url, self._headers)
        except ExchangeFailed as failure:
            raise errors.transport_failure(failure, self._timeout) from None


class ClientFactory(Protocol):
    """Makes the client of a run's walk; `stop` cuts its waits short when the run stops."""

    def __call__(self, stop: threading.Event | None = None) -> KlaviyoClient: ...


def _mark_answered(base_url: str) -> None:
    if base_url not in _ANSWERED_BASE_URLS:
        with _ANSWERED_LOCK:
            _ANSWERED_BASE_URLS.add(base_url)


def _has_answered(base_url: str) -> bool:
    return base_url in _ANSWERED_BASE_URLS


__all__ = ["ClientFactory", "Interrupted", "KlaviyoClient", "validate_api_key"]
