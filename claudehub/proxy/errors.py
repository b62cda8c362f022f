"""Anthropic-style error responses, pre-encoded for the hot path.

Every refusal the key proxy makes looks like an error from the Messages API itself
(``{"type":"error","error":{"type":...,"message":...}}``), so Claude Code and the SDKs show
the message to the person and apply their usual retry rules (they retry 429 and 5xx, not 4xx).
"""

from __future__ import annotations

import json
from collections.abc import Iterable


class Refusal(Exception):
    """A request the proxy answers itself with an Anthropic-style error.

    Raised by the token checks (401/503) and by the limits (403/429/400) alike, which is why it
    lives here and not with either of them. ``reason`` is the ``refusals_total`` label; the
    message is shown to the person at the keyboard and never contains a token.
    """

    def __init__(
        self,
        status: int,
        kind: str,
        message: str,
        reason: str,
        headers: tuple[tuple[str, str], ...] = (),
        *,
        forged: bool = False,
    ) -> None:
        super().__init__(message)
        self.status = status
        self.kind = kind
        self.message = message
        self.reason = reason
        self.headers = headers
        # a well-formed sandbox token with a bad signature: the audit log records it
        self.forged = forged


REASONS = {
    200: b"OK",
    201: b"Created",
    400: b"Bad Request",
    401: b"Unauthorized",
    403: b"Forbidden",
    404: b"Not Found",
    405: b"Method Not Allowed",
    408: b"Request Timeout",
    413: b"Payload Too Large",
    429: b"Too Many Requests",
    431: b"Request Header Fields Too Large",
    500: b"Internal Server Error",
    502: b"Bad Gateway",
    503: b"Service Unavailable",
    504: b"Gateway Timeout",
}


def reason(status: int) -> bytes:
    """The reason phrase for ``status`` (any phrase is valid HTTP; clients ignore it)."""
    return REASONS.get(status, b"Unknown")


def error_json(kind: str, message: str) -> bytes:
    """The Messages API's error body."""
    return json.dumps(
        {"type": "error", "error": {"type": kind, "message": message}}, separators=(",", ":")
    ).encode()


def json_response(
    status: int,
    body: bytes,
    *,
    keep_alive: bool = True,
    headers: Iterable[tuple[str, str]] = (),
    content_type: bytes = b"application/json",
) -> bytes:
    """A complete HTTP/1.1 response with a ``Content-Length`` body."""
    parts = [
        b"HTTP/1.1 %d %s\r\ncontent-type: %s\r\ncontent-length: %d\r\n"
        % (status, reason(status), content_type, len(body))
    ]
    for name, value in headers:
        parts.append(b"%s: %s\r\n" % (name.encode("latin-1"), value.encode("latin-1")))
    parts.append(b"connection: keep-alive\r\n\r\n" if keep_alive else b"connection: close\r\n\r\n")
    parts.append(body)
    return b"".join(parts)


def error_response(
    status: int,
    kind: str,
    message: str,
    *,
    keep_alive: bool = True,
    headers: Iterable[tuple[str, str]] = (),
) -> bytes:
    """A complete HTTP response carrying an Anthropic-style error.

    ``x-should-retry`` tells the SDKs (and Claude Code) whether retrying can help, as the API
    itself does: refusals that only an operator or a new session can fix are not retried.
    """
    retry = "true" if status in (408, 429, 500, 502, 503, 504) else "false"
    return json_response(
        status,
        error_json(kind, message),
        keep_alive=keep_alive,
        headers=(*headers, ("x-should-retry", retry)),
    )


def sse_error_event(kind: str, message: str) -> bytes:
    """An SSE ``error`` event, as the API sends when a stream fails after it started."""
    return b"event: error\ndata: " + error_json(kind, message) + b"\n\n"
