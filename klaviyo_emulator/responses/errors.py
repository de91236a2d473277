"""Klaviyo's JSON:API error documents (API-NOTES §9) and the exception that carries one."""

from __future__ import annotations

import uuid
from typing import Any

POINTER_DATA = {"pointer": "/data/"}

TITLE_INVALID = "Invalid input."
TITLE_NOT_AUTHENTICATED = "Authentication credentials were not provided."
TITLE_AUTHENTICATION_FAILED = "Incorrect authentication credentials."
TITLE_PERMISSION_DENIED = "You do not have permission to perform this action."
TITLE_NOT_FOUND = "Not found."
TITLE_THROTTLED = "Request was throttled."
TITLE_SERVER_ERROR = "A server error occurred."

SERVER_ERRORS = {
    500: ("error", TITLE_SERVER_ERROR, "Something went wrong. Please try again later."),
    502: ("bad_gateway", "Bad gateway.", "The server received an invalid response upstream."),
    503: ("service_unavailable", "Service unavailable.", "Service temporarily unavailable."),
    504: ("gateway_timeout", "Gateway timeout.", "The upstream server timed out."),
}


class ApiError(Exception):
    """An error answer: HTTP status plus one error object."""

    def __init__(
        self,
        status: int,
        code: str,
        title: str,
        detail: str,
        source: dict[str, str] | None = None,
        headers: dict[str, str] | None = None,
    ) -> None:
        super().__init__(detail)
        self.status = status
        self.code = code
        self.title = title
        self.detail = detail
        self.source = source if source is not None else dict(POINTER_DATA)
        self.headers = headers or {}

    def document(self) -> dict[str, Any]:
        """The `{"errors": [...]}` body."""
        return error_document(self.status, self.code, self.title, self.detail, self.source)


def error_document(
    status: int, code: str, title: str, detail: str, source: dict[str, str] | None = None
) -> dict[str, Any]:
    """One error object in Klaviyo's shape."""
    return {
        "errors": [
            {
                "id": str(uuid.uuid4()),
                "status": status,
                "code": code,
                "title": title,
                "detail": detail,
                "source": source if source is not None else dict(POINTER_DATA),
                "links": {},
                "meta": {},
            }
        ]
    }


def invalid(detail: str, parameter: str | None = None, pointer: str | None = None) -> ApiError:
    """A 400 `invalid`, pointing at a query parameter or a body member when one is named."""
    if parameter:
        source = {"parameter": parameter}
    else:
        source = {"pointer": pointer} if pointer else dict(POINTER_DATA)
    return ApiError(400, "invalid", TITLE_INVALID, detail, source)


def invalid_cursor() -> ApiError:
    return invalid("Invalid cursor provided.")


def not_found(detail: str) -> ApiError:
    return ApiError(404, "not_found", TITLE_NOT_FOUND, detail)


def not_authenticated() -> ApiError:
    return ApiError(
        401,
        "not_authenticated",
        TITLE_NOT_AUTHENTICATED,
        "Missing or invalid authorization scheme. Please use Klaviyo-API-Key.",
    )


def authentication_failed() -> ApiError:
    return ApiError(
        401,
        "authentication_failed",
        TITLE_AUTHENTICATION_FAILED,
        "Missing or invalid private key.",
    )


def permission_denied() -> ApiError:
    return ApiError(403, "permission_denied", TITLE_PERMISSION_DENIED, TITLE_PERMISSION_DENIED)


def method_not_allowed(method: str) -> ApiError:
    title = f'Method "{method}" not allowed.'
    return ApiError(405, "method_not_allowed", title, title)


def unsupported_media_type(content_type: str) -> ApiError:
    title = f'Unsupported media type "{content_type}" in request.'
    return ApiError(415, "unsupported_media_type", title, title)


def throttled(retry_after: int, headers: dict[str, str]) -> ApiError:
    unit = "second" if retry_after == 1 else "seconds"
    error = ApiError(
        429,
        "throttled",
        TITLE_THROTTLED,
        f"Request was throttled. Expected available in {retry_after} {unit}.",
        {"pointer": "/data/"},
        headers,
    )
    return error


def server_error(status: int) -> ApiError:
    code, title, detail = SERVER_ERRORS.get(status, SERVER_ERRORS[500])
    return ApiError(status, code, title, detail)
