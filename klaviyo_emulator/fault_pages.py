"""Bodies of injected faults: Klaviyo JSON errors, and HTML pages as a proxy or CDN sends them."""

from __future__ import annotations

from http import HTTPStatus

import orjson

from .errors import server_error, throttled
from .faults import Fault
from .settings import JSONAPI_CONTENT_TYPE

HTML_CONTENT_TYPE = "text/html; charset=UTF-8"
HTML_PAGE = """<!DOCTYPE html>
<html>
<head><title>{status} {reason}</title></head>
<body>
<center><h1>{status} {reason}</h1></center>
<hr><center>cloudflare</center>
</body>
</html>
"""
NOT_JSONAPI_BODY = {"status": "ok", "message": "Service is warming up, please retry."}


def fault_response(fault: Fault) -> tuple[int, str, bytes, dict[str, str]] | None:
    """(status, content type, body, headers) that replace the answer; None when the fault
    changes how the real answer is delivered (drop, truncate, slow)."""
    kind = fault.kind
    if kind in ("drop", "truncate", "slow"):
        return None
    if kind == "html-200":
        return 200, HTML_CONTENT_TYPE, _html(200), {}
    if kind == "json-200-not-jsonapi":
        return 200, "application/json", orjson.dumps(NOT_JSONAPI_BODY), {}
    status = int(kind.split("-")[0])
    if kind.endswith("-html"):
        return status, HTML_CONTENT_TYPE, _html(status), {}
    if status == 429:
        error = throttled(1, {"Retry-After": "1"})
        return 429, JSONAPI_CONTENT_TYPE, orjson.dumps(error.document()), error.headers
    error = server_error(status)
    return status, JSONAPI_CONTENT_TYPE, orjson.dumps(error.document()), {}


def _html(status: int) -> bytes:
    reason = HTTPStatus(status).phrase
    return HTML_PAGE.format(status=status, reason=reason).encode()
