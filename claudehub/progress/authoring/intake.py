"""A paper comes in: an uploaded file, or a URL the course service fetches itself.

The fetch is guarded against server-side request forgery: the service resolves the host
itself (:class:`GuardedResolver`), refuses every address that is not public (private,
loopback, link-local (cloud metadata's 169.254.169.254 among them), unique-local,
multicast, unspecified, reserved, or an IPv4 address mapped into IPv6), and connects to
exactly the addresses it checked, so a DNS answer cannot change between the check and the
connection. Redirects are followed by hand, each hop checked the same way; size and time
are capped. Operators may open chosen private networks (``Authoring.fetch_allowed_networks``).
"""

from __future__ import annotations

import asyncio
import ipaddress
import socket
import time
from collections.abc import Sequence
from typing import Any
from urllib.parse import urljoin, urlsplit

from tornado.httpclient import HTTPClientError, HTTPRequest
from tornado.netutil import DefaultLoopResolver, Resolver
from tornado.simple_httpclient import SimpleAsyncHTTPClient

IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address
IPNetwork = ipaddress.IPv4Network | ipaddress.IPv6Network


class IntakeError(Exception):
    """A paper that cannot be taken in; ``status`` is the HTTP answer, the message names
    what was wrong."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.message = message


class _TooBig(Exception):
    """The response passed the size cap (raised from the body callback to stop reading)."""


class AddressRefused(OSError):
    """A host resolved to an address the service does not fetch from."""


def refused_reason(addr: IPAddress, allowed: Sequence[IPNetwork] = ()) -> str | None:
    """Why the service would not connect to ``addr`` (None: it may)."""
    if isinstance(addr, ipaddress.IPv6Address) and addr.ipv4_mapped is not None:
        inner = refused_reason(addr.ipv4_mapped, allowed)
        return inner or "an IPv4 address mapped into IPv6"
    if any(addr in net for net in allowed):
        return None
    for test, what in (
        ("is_loopback", "a loopback address"),
        ("is_link_local", "a link-local address (cloud metadata lives there)"),
        ("is_multicast", "a multicast address"),
        ("is_unspecified", "the unspecified address"),
        ("is_private", "a private address"),
        ("is_reserved", "a reserved address"),
    ):
        if getattr(addr, test):
            return what
    if isinstance(addr, ipaddress.IPv6Address) and addr in ipaddress.ip_network("fc00::/7"):
        return "a unique-local address"
    if not addr.is_global:
        return "an address that is not public"
    return None


class GuardedResolver(Resolver):
    """Resolves with the loop's resolver and refuses a host if any of its addresses is
    refused (:func:`refused_reason`); tornado then connects only to the addresses returned."""

    def initialize(self, allowed: Sequence[IPNetwork] = ()) -> None:
        self.allowed = tuple(allowed)
        self.inner = DefaultLoopResolver()

    async def resolve(
        self, host: str, port: int, family: socket.AddressFamily = socket.AF_UNSPEC
    ) -> list[tuple[int, Any]]:
        try:
            literal: IPAddress | None = ipaddress.ip_address(host.strip("[]"))
        except ValueError:
            literal = None
        if literal is not None:
            reason = refused_reason(literal, self.allowed)
            if reason:
                raise AddressRefused(f"{host} is {reason}")
        try:
            found = await self.inner.resolve(host, port, family)
        except OSError as e:
            raise AddressRefused(f"{host} does not resolve: {e}") from None
        if not found:
            raise AddressRefused(f"{host} does not resolve")
        for _family, sockaddr in found:
            addr = ipaddress.ip_address(str(sockaddr[0]).split("%", 1)[0])
            reason = refused_reason(addr, self.allowed)
            if reason:
                raise AddressRefused(f"{host} resolves to {addr}, {reason}")
        return list(found)


def check_url(url: str) -> str:
    """``url`` if it is an http(s) URL with a host and no credentials; else IntakeError."""
    parts = urlsplit(url.strip())
    if parts.scheme not in ("http", "https"):
        raise IntakeError(400, f"url must be http:// or https://, not {parts.scheme or 'none'!r}")
    if not parts.hostname:
        raise IntakeError(400, "url has no host")
    if parts.username or parts.password:
        raise IntakeError(400, "url must not carry a user name or password")
    return url.strip()


async def fetch_paper(
    url: str,
    *,
    max_bytes: int,
    time_limit: float,
    max_redirects: int = 5,
    allowed: Sequence[IPNetwork] = (),
) -> bytes:
    """The body of ``url``, fetched behind the guard; redirects followed by hand, each
    one checked; at most ``max_bytes`` and ``time_limit`` seconds in all."""
    resolver = GuardedResolver(allowed=allowed)
    # the body callback enforces max_bytes; the client's own cap is only a backstop
    client = SimpleAsyncHTTPClient(
        force_instance=True, resolver=resolver, max_body_size=2 * max_bytes + 1024 * 1024
    )
    deadline = time.monotonic() + time_limit
    try:
        for _hop in range(max_redirects + 1):
            url = check_url(url)
            left = deadline - time.monotonic()
            if left <= 0:
                raise IntakeError(422, f"fetching the paper took longer than {time_limit:.0f}s")
            body = await _one(client, url, max_bytes, left)
            if isinstance(body, bytes):
                return body
            url = urljoin(url, body[1])
        raise IntakeError(422, f"more than {max_redirects} redirects")
    finally:
        client.close()
        resolver.close()


async def _one(
    client: SimpleAsyncHTTPClient, url: str, max_bytes: int, time_limit: float
) -> bytes | tuple[int, str]:
    """One request: the body, or (status, location) for a redirect."""
    chunks: list[bytes] = []
    size = 0
    too_big = False

    def on_chunk(chunk: bytes) -> None:
        nonlocal size, too_big
        size += len(chunk)
        if size > max_bytes or too_big:
            too_big = True
            raise _TooBig
        chunks.append(chunk)

    def on_header(line: str) -> None:
        nonlocal too_big
        name, _, value = line.partition(":")
        if name.strip().lower() == "content-length":
            try:
                too_big = too_big or int(value.strip()) > max_bytes
            except ValueError:
                pass

    req = HTTPRequest(
        url,
        follow_redirects=False,
        connect_timeout=min(time_limit, 10.0),
        request_timeout=time_limit,
        streaming_callback=on_chunk,
        header_callback=on_header,
        decompress_response=False,
        user_agent="claudehub-course-service (paper fetch)",
        headers={"Accept": "application/pdf, */*;q=0.5"},
    )
    try:
        resp = await client.fetch(req, raise_error=False)
    except AddressRefused as e:
        raise IntakeError(422, f"refused to fetch {urlsplit(url).hostname}: {e}") from None
    except _TooBig:
        raise IntakeError(413, f"the paper is larger than {max_bytes} bytes") from None
    except asyncio.CancelledError:
        raise
    except HTTPClientError as e:
        if too_big:
            raise IntakeError(413, f"the paper is larger than {max_bytes} bytes") from None
        raise IntakeError(422, f"fetching the paper failed: {e}") from None
    except (OSError, ValueError) as e:
        if too_big:
            raise IntakeError(413, f"the paper is larger than {max_bytes} bytes") from None
        raise IntakeError(422, f"fetching the paper failed: {e}") from None
    if too_big:
        raise IntakeError(413, f"the paper is larger than {max_bytes} bytes")
    if resp.code in (301, 302, 303, 307, 308):
        location = resp.headers.get("Location")
        if not location:
            raise IntakeError(422, f"the paper's URL redirected ({resp.code}) to nowhere")
        return resp.code, location
    if resp.code == 599:
        error = resp.error
        if isinstance(error, AddressRefused):
            raise IntakeError(422, f"refused to fetch {urlsplit(url).hostname}: {error}")
        if error is not None and "size" in str(error).lower():
            raise IntakeError(413, f"the paper is larger than {max_bytes} bytes")
        raise IntakeError(422, f"fetching the paper failed: {error}")
    if resp.code != 200:
        raise IntakeError(422, f"fetching the paper failed: the server answered {resp.code}")
    return b"".join(chunks)


def parse_networks(networks: Sequence[str]) -> list[IPNetwork]:
    """The operator's allowed networks, parsed (checked by the trait already)."""
    return [ipaddress.ip_network(n, strict=False) for n in networks]
