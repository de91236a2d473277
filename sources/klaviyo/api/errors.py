"""From an answer to an error: what is retried, within which budget, and what the user reads.

A failed attempt that a later one may not repeat is a `FailedAttempt` of one kind; each kind
has its own budget (`RetryBudget`). Anything else becomes a `KlaviyoError` naming the cause
in one line, with the API key masked.
"""

from __future__ import annotations

import random
import re
from collections import Counter
from collections.abc import Sequence
from typing import Any
from urllib.parse import urlsplit

from urllib3.exceptions import (
    ConnectTimeoutError,
    DecodeError,
    NewConnectionError,
    ReadTimeoutError,
)

from .. import settings
from ..exceptions import (
    KlaviyoAuthError,
    KlaviyoConnectionError,
    KlaviyoError,
    KlaviyoNotFoundError,
    KlaviyoPermissionError,
    KlaviyoRequestError,
    KlaviyoResponseError,
    KlaviyoRetriesExhaustedError,
    redact,
)
from ..typing import JsonDoc
from .decoding import decode_json
from .transport import Answer, ExchangeFailed

# Kinds of failed attempt; each has its own retry budget.
FAILED = "failed"
THROTTLED = "throttled"
MALFORMED = "malformed"
UNREACHABLE = "unreachable"

_LEADING_NUMBER = re.compile(r"^\s*(\d+(?:\.\d+)?)")
_SCOPE_IN_TEXT = re.compile(r"\b([a-z][a-z-]*:(?:read|write))\b")


class FailedAttempt(Exception):
    """One attempt failed in a way a later attempt may not.

    Attributes:
        reason: What went wrong, for logs and the final error.
        wait: Seconds to wait before the next attempt; None takes the backoff.
        kind: Which budget the failure counts against (FAILED, THROTTLED, ...).
    """

    def __init__(self, reason: str, wait: float | None = None, kind: str = FAILED):
        super().__init__(reason)
        self.reason = reason
        self.wait = wait
        self.kind = kind


class RetryBudget:
    """The attempts one request may make, counted by kind of failure.

    5xx, broken connections and malformed bodies share `max_retries`; 429s have
    `THROTTLED_RETRIES_PER_RETRY` times as many; a malformed body and a host that never
    answered in this process get fewer (`MALFORMED_BODY_RETRIES`, `UNREACHABLE_RETRIES`).
    """

    def __init__(self, max_retries: int) -> None:
        self._max_retries = max_retries
        self.failures: Counter[str] = Counter()

    @property
    def attempts(self) -> int:
        """Failed attempts so far."""
        return sum(self.failures.values())

    def allows_another(self, failure: FailedAttempt, answered: bool) -> bool:
        """Counts `failure`; whether the budgets allow another attempt.

        Args:
            failure: The attempt that just failed.
            answered: The base URL answered before in this process.
        """
        kind, failures = failure.kind, self.failures
        failures[kind] += 1
        if kind == THROTTLED:
            return failures[THROTTLED] <= self._max_retries * settings.THROTTLED_RETRIES_PER_RETRY
        if sum(n for k, n in failures.items() if k != THROTTLED) > self._max_retries:
            return False
        if kind == MALFORMED:
            return failures[MALFORMED] <= settings.MALFORMED_BODY_RETRIES
        if kind == UNREACHABLE and not answered:
            return failures[UNREACHABLE] <= settings.UNREACHABLE_RETRIES
        return True

    def exhausted(
        self,
        failure: FailedAttempt,
        url: str,
        operation: str,
        base_url: str,
        answered: bool,
        secrets: Sequence[str],
    ) -> KlaviyoError:
        """The error that ends a request whose budget `failure` used up."""
        attempts = self.attempts
        if failure.kind == MALFORMED:
            return KlaviyoResponseError(
                redact(f"Klaviyo answered {describe(url)} with {failure}", secrets)
            )
        if failure.kind == UNREACHABLE and not answered:
            return KlaviyoConnectionError(
                redact(
                    f"could not connect to {origin(base_url)} ({failure}, {attempts} "
                    "attempts); check base_url and the network",
                    secrets,
                )
            )
        throttled = failure.kind == THROTTLED
        retries = self.failures[THROTTLED] - 1 if throttled else self._max_retries
        bound = _count(retries, "retry", "retries") + (" on 429" if throttled else "")
        return KlaviyoRetriesExhaustedError(
            redact(
                f"{operation} ({describe(url)}) failed {_count(attempts, 'time', 'times')}, "
                f"last with {failure}; gave up after {bound}",
                secrets,
            )
        )


def backoff(attempt: int) -> float:
    """Seconds before retry number `attempt`: doubling from RETRY_BACKOFF_BASE, full jitter."""
    ceiling = min(settings.RETRY_BACKOFF_CAP, settings.RETRY_BACKOFF_BASE * 2 ** (attempt - 1))
    return random.uniform(ceiling / 2, ceiling)


def transport_failure(failure: ExchangeFailed, timeout: float) -> FailedAttempt:
    """A connection that broke, timed out or could not be made (`failure`).

    Args:
        failure: What the transport raised.
        timeout: The timeout in use, for the message.
    """
    kind = UNREACHABLE if failure.connecting else FAILED
    return FailedAttempt(_transport_reason(failure, timeout), kind=kind)


def throttled(wait: float | None) -> FailedAttempt:
    """A 429; with a `Retry-After` (`wait`) the limiter already pauses for it."""
    return FailedAttempt(
        "HTTP 429 throttled", wait=0.0 if wait is not None else None, kind=THROTTLED
    )


def decode_answer(response: Answer) -> Any:
    """The decoded body; None for a non-JSON error answer that retrying does not fix.

    Raises:
        FailedAttempt: A truncated JSON body, an HTML error page on a 5xx, or a 2xx that
            is not JSON.
    """
    content_type = response.headers.get("Content-Type") or ""
    body = response.body
    try:
        return decode_json(body)
    except ValueError:
        if "json" in content_type.lower():
            # A JSON content type with a broken body is a truncated response.
            raise FailedAttempt(f"truncated JSON body ({len(body)} bytes)") from None
        if response.status in settings.RETRY_STATUSES:
            raise FailedAttempt(_what_came_back(response, "error page")) from None
        if 200 <= response.status < 300:
            raise FailedAttempt(_what_came_back(response, "not JSON"), kind=MALFORMED) from None
        return None


def checked_document(response: Answer, document: Any) -> JsonDoc:
    """A 2xx document, if it is JSON:API (a dict with `data`).

    Raises:
        FailedAttempt: Anything else: usually a wrong base URL.
    """
    if not isinstance(document, dict) or "data" not in document:
        raise FailedAttempt(_what_came_back(response, "not a JSON:API document"), kind=MALFORMED)
    return document


def server_failure(response: Answer, document: Any) -> FailedAttempt:
    """A 5xx; a Retry-After on it (maintenance) is honoured, within the backoff's cap."""
    asked = retry_after(response)
    wait = min(asked, settings.RETRY_BACKOFF_CAP) if asked is not None else None
    return FailedAttempt(f"HTTP {response.status}{_error_detail_suffix(document)}", wait=wait)


def answer_error(
    response: Answer,
    document: Any,
    url: str,
    operation: str,
    segment_id: str | None,
    secrets: Sequence[str],
) -> KlaviyoError:
    """The error a 4xx (or an unexpected status) means, in one line without the key."""
    status = response.status
    error = _first_error(document)
    if error is None:
        text = _what_came_back(response, "not a JSON:API error")
        return KlaviyoResponseError(
            redact(f"Klaviyo answered {describe(url)} with {text}", secrets)
        )
    code = str(error.get("code") or "")
    detail = redact(str(error.get("detail") or error.get("title") or ""), secrets)
    if status == 401:
        return KlaviyoAuthError(
            f"Klaviyo rejected the API key (401 {code}: {detail}); "
            "check [sources.klaviyo] api_key or SOURCES__KLAVIYO__API_KEY",
            status,
        )
    if status == 403:
        scope = _scope_from(detail) or settings.OPERATION_SCOPES.get(operation, "unknown")
        return KlaviyoPermissionError(
            f"the API key lacks scope {scope} (403 {code} on {describe(url)}: {detail})",
            scope,
        )
    # A revision without the method also answers 404 ("No valid revisions found").
    if status == 404 and segment_id is not None and "revision" not in detail.lower():
        return KlaviyoNotFoundError(f"segment {segment_id} does not exist", segment_id)
    source = error.get("source") if isinstance(error.get("source"), dict) else {}
    where = " ".join(f"[{key} {value}]" for key, value in (source or {}).items())
    return KlaviyoRequestError(
        f"Klaviyo rejected {describe(url)} ({status} {code}): {detail} {where}".strip(),
        status,
    )


def header_number(response: Answer, name: str) -> Any | None:
    """The leading number of a header (`RateLimit-Remaining`, `Retry-After`), or None."""
    value = response.headers.get(name)
    match = _LEADING_NUMBER.match(value) if value else None
    if not match:
        return None
    number = float(match.group(1))
    return int(number) if number.is_integer() else number


def retry_after(response: Answer) -> float | None:
    """Seconds the answer's `Retry-After` asks to wait, or None."""
    value = header_number(response, "Retry-After")
    return None if value is None else float(value)


def origin(url: str) -> str:
    """`scheme://host[:port]` without any user info, for comparisons and messages."""
    parts = urlsplit(url)
    host = parts.hostname or ""
    if ":" in host:
        host = f"[{host}]"
    return f"{parts.scheme}://{host}" + (f":{parts.port}" if parts.port else "")


def describe(url: str) -> str:
    """`GET <path>`: a request in a message, without host or query."""
    return f"GET {urlsplit(url).path}"


def _count(number: int, one: str, many: str) -> str:
    return f"{number} {one if number == 1 else many}"


def _transport_reason(failure: ExchangeFailed, timeout: float) -> str:
    """A short account of a failed exchange; the transport's own text may repeat the URL."""
    exc = failure.cause
    # urllib3 raises a refused connection or an unknown host as a kind of connect timeout
    timeouts = (TimeoutError, ConnectTimeoutError, ReadTimeoutError)
    if isinstance(exc, timeouts) and not isinstance(exc, NewConnectionError):
        return f"no {'connection' if failure.connecting else 'answer'} within {timeout:g}s"
    if isinstance(exc, DecodeError):
        return "answer body could not be decoded"
    if failure.in_body:
        return "connection broken in the middle of the answer (incomplete body)"
    text = str(exc)
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


def _what_came_back(response: Answer, what: str) -> str:
    content_type = response.headers.get("Content-Type") or "no content type"
    excerpt = " ".join(
        response.body[: settings.BODY_EXCERPT_CHARS].decode("utf-8", "replace").split()
    )
    return f"HTTP {response.status} {content_type}, {what}: {excerpt!r}"


def _scope_from(detail: str) -> str | None:
    match = _SCOPE_IN_TEXT.search(detail)
    return match.group(1) if match else None
