"""Errors of the Klaviyo source. Each renders as one line a user can act on, never with the key."""

from __future__ import annotations

import re
from collections.abc import Iterable, Iterator

# Private keys are `pk_` + 34 alphanumerics; any long pk_ token is masked in case one leaks
# into a message through a URL, a server detail or a repr.
_KEY_PATTERN = re.compile(r"pk_[A-Za-z0-9]{6,}")
_MASK = "pk_***"


def redact(text: str, secrets: Iterable[str] = ()) -> str:
    """Masks the given secrets and anything shaped like a private key, and folds to one line.

    Args:
        text: The text to clean.
        secrets: Exact secret values to mask besides the key pattern.

    Returns:
        The text on a single line with secrets masked.
    """
    for secret in secrets:
        if secret:
            text = text.replace(secret, _MASK)
    text = _KEY_PATTERN.sub(_MASK, text)
    return " ".join(text.split())


class KlaviyoError(Exception):
    """Base of every error raised by the Klaviyo source."""

    def __init__(self, message: str) -> None:
        self.message = redact(message)
        super().__init__(self.message)

    def __str__(self) -> str:
        return self.message


class KlaviyoConfigError(KlaviyoError, ValueError):
    """The source was given a value it cannot work with (revision, workers, dates, fields)."""


class KlaviyoHTTPError(KlaviyoError):
    """Klaviyo answered with an error status that retrying does not fix."""

    def __init__(self, message: str, status: int | None = None) -> None:
        super().__init__(message)
        self.status = status


class KlaviyoAuthError(KlaviyoHTTPError):
    """401: the API key is missing, malformed, wrong or revoked."""


class KlaviyoPermissionError(KlaviyoHTTPError):
    """403: the API key lacks a scope the endpoint needs."""

    def __init__(self, message: str, scope: str, status: int | None = 403) -> None:
        super().__init__(message, status)
        self.scope = scope


class KlaviyoNotFoundError(KlaviyoHTTPError):
    """404: a requested segment does not exist (or no longer does)."""

    def __init__(self, message: str, segment_id: str | None = None) -> None:
        super().__init__(message, 404)
        self.segment_id = segment_id


class KlaviyoRequestError(KlaviyoHTTPError):
    """400 or another 4xx: Klaviyo refused the request; the message carries its detail."""


class KlaviyoResponseError(KlaviyoError):
    """The body was not a JSON:API document (HTML error page, proxy, wrong base URL)."""


class KlaviyoRetriesExhaustedError(KlaviyoError):
    """A request kept failing (throttling, 5xx, broken connections) after every retry."""


class KlaviyoConnectionError(KlaviyoRetriesExhaustedError):
    """No connection could be made to a base URL that has not answered yet (wrong URL, no network)."""


def find_klaviyo_error(exc: BaseException) -> KlaviyoError | None:
    """Finds the KlaviyoError that caused `exc`, e.g. inside dlt's PipelineStepFailed.

    Args:
        exc: Any exception, usually the one `pipeline.run` raised.

    Returns:
        The first KlaviyoError in the cause/context chain, or None.
    """
    return next((e for e in exception_chain(exc) if isinstance(e, KlaviyoError)), None)


def exception_chain(exc: BaseException) -> Iterator[BaseException]:
    """`exc`, then what caused it (`__cause__`, else `__context__`), each once."""
    seen: set[int] = set()
    current: BaseException | None = exc
    while current is not None and id(current) not in seen:
        seen.add(id(current))
        yield current
        current = current.__cause__ or current.__context__
