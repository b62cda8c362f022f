"""What a parsed client request is, shared by the client connection, the exchange and admin.

Kept apart from :mod:`claudehub.proxy.connection` so that the modules that only read requests
(the exchange, the local endpoints) do not depend on the connection that parses them.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field

from claudehub.proxy.errors import Refusal

#: The only paths forwarded upstream, compared byte for byte (no normalisation on purpose:
#: ``..``, ``%2e`` or double slashes never match), mapped to their name in metrics and usage.
FORWARDED_PATHS = {
    b"/v1/messages": "/v1/messages",
    b"/v1/messages/count_tokens": "/v1/messages/count_tokens",
}

#: The query strings a forwarded request may carry: none, or the Messages API's beta flag
#: (Claude Code and the SDKs' beta client send ``?beta=true``). Anything else is refused.
ALLOWED_QUERIES = frozenset({b"", b"beta=true"})


@dataclass(slots=True)
class Request:
    """A complete request, ready to be answered."""

    method: bytes
    url: bytes
    keep_alive: bool
    started: float
    http10: bool = False
    route: str = ""  # forwarded path name, "" for a local request
    user: str = ""
    server: str = ""
    forward: list[bytes] = field(default_factory=list)
    body: list[bytes] = field(default_factory=list)
    body_len: int = 0
    refusal: Refusal | None = None
    token: str = ""  # kept for local requests (admin auth) and for a hub re-check
    authz: str = ""


#: Answers a local (not forwarded) request: the response bytes, or an awaitable of them.
LocalHandler = Callable[[Request], "bytes | Awaitable[bytes]"]
