"""Who is calling: sandbox-token checks on the hot path, and the hub's view of running servers.

:class:`TokenAuthenticator` answers "which user is this?" from an in-memory cache (no network
round trip per request). In hub mode it also requires the token's server to be running and to
have started no later than the token was issued, using the picture :class:`HubPoller` refreshes
from the JupyterHub REST API in the background.
"""

from __future__ import annotations

import asyncio
import datetime
import logging
import time
from collections.abc import Callable
from typing import Any

import aiohttp

from claudehub.contract.limits import GROUP_LIMITS_PROPERTY, parse_limits
from claudehub.contract.tokens import InvalidToken, TokenClaims, verify_token
from claudehub.proxy.errors import Refusal
from claudehub.proxy.limits import Limits
from claudehub.proxy.metrics import Metrics
from claudehub.proxy.tasks import cancel_and_wait

log = logging.getLogger("claudehub.proxy")

# iat and the hub's "started" both come from the hub's clock; this only absorbs rounding.
_STARTED_TOLERANCE = 1.0
_CACHE_MAX = 50_000


class TokenAuthenticator:
    """Verifies sandbox tokens with a cache keyed by the token string.

    ``hub_mode`` adds the server-liveness rule; until the first successful hub poll, and
    whenever the hub picture is older than ``stale_after`` seconds, requests fail closed
    with 503 (clients retry those).
    """

    def __init__(
        self,
        secret: bytes,
        *,
        hub_mode: bool = False,
        stale_after: float = 60.0,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.secret = secret
        self.hub_mode = hub_mode
        self.stale_after = stale_after
        self.clock = clock
        self._cache: dict[str, TokenClaims] = {}
        # user -> {server name -> started (epoch seconds)}
        self.active: dict[str, dict[str, float]] = {}
        self.hub_updated: float | None = None  # time.monotonic() of the last good poll

    def set_secret(self, secret: bytes) -> None:
        self.secret = secret
        self._cache.clear()

    def set_active(self, active: dict[str, dict[str, float]]) -> None:
        """Replace the hub picture (called by the poller after each successful poll)."""
        self.active = active
        self.hub_updated = time.monotonic()

    def hub_fresh(self) -> bool:
        return (
            self.hub_updated is not None and time.monotonic() - self.hub_updated <= self.stale_after
        )

    def check(self, token: str) -> TokenClaims:
        """Return the token's claims or raise :class:`Refusal` (never mentions the token)."""
        if not token:
            raise Refusal(
                401,
                "authentication_error",
                "No sandbox token: send the token this hub gave your server as x-api-key "
                "(ANTHROPIC_API_KEY) or as Authorization: Bearer (ANTHROPIC_AUTH_TOKEN).",
                "no_token",
            )
        claims = self._cache.get(token)
        if claims is None:
            if not self.secret:
                raise Refusal(
                    401,
                    "authentication_error",
                    "The claudehub key proxy has no token secret configured. An operator must set "
                    "CLAUDEHUB_TOKEN_SECRET (the secret the hub signs sandbox tokens with) for it.",
                    "no_token_secret",
                )
            try:
                claims = verify_token(self.secret, token, now=self.clock())
            except InvalidToken as e:
                raise Refusal(
                    401,
                    "authentication_error",
                    f"Invalid sandbox token ({e.reason}). Restart your server from the hub "
                    "to get a fresh token.",
                    "invalid_token",
                    forged=e.forged,
                ) from None
            if len(self._cache) >= _CACHE_MAX:
                self._cache.clear()
            self._cache[token] = claims
        elif claims.expires_at is not None and self.clock() >= claims.expires_at:
            del self._cache[token]
            raise Refusal(
                401,
                "authentication_error",
                "Invalid sandbox token (sandbox token has expired). Restart your server from "
                "the hub to get a fresh token.",
                "invalid_token",
            )
        if self.hub_mode:
            self._check_server(claims)
        return claims

    def _check_server(self, claims: TokenClaims) -> None:
        if not self.hub_fresh():
            raise Refusal(
                503,
                "api_error",
                "The key proxy cannot confirm with JupyterHub that your server is running "
                "(the hub API is unreachable). Try again shortly.",
                "hub_unavailable",
            )
        servers = self.active.get(claims.user)
        started = None if servers is None else servers.get(claims.server)
        if started is None:
            raise Refusal(
                401,
                "authentication_error",
                "This sandbox token belongs to a server that is not running any more. Start "
                "your server again from the hub.",
                "server_stopped",
            )
        if claims.issued_at + _STARTED_TOLERANCE < started:
            raise Refusal(
                401,
                "authentication_error",
                "This sandbox token was issued for an earlier session of your server. Use the "
                "token of the running session (restart your terminal).",
                "stale_token",
            )


def _parse_time(value: Any) -> float | None:
    if not isinstance(value, str) or not value:
        return None
    try:
        dt = datetime.datetime.fromisoformat(value.replace("Z", "+00:00"))
    except ValueError:
        return None
    if dt.tzinfo is None:
        dt = dt.replace(tzinfo=datetime.UTC)
    return dt.timestamp()


def active_servers_from_users(users: list[dict[str, Any]]) -> dict[str, dict[str, float]]:
    """Turn JupyterHub user models (with ``servers``) into ``{user: {server: started}}``.

    A server counts when it is not stopped; one without a start time (should not happen for an
    active server) counts as started at the epoch, so only the signature/expiry rules apply.
    """
    active: dict[str, dict[str, float]] = {}
    for user in users:
        name = user.get("name")
        servers = user.get("servers") or {}
        if not isinstance(name, str) or not isinstance(servers, dict):
            continue
        for server_name, model in servers.items():
            if not isinstance(model, dict) or model.get("stopped"):
                continue
            started = _parse_time(model.get("started"))
            active.setdefault(name, {})[str(server_name)] = started if started is not None else 0.0
    return active


def classes_from_groups(
    groups: list[dict[str, Any]],
) -> tuple[dict[str, tuple[list[str], dict[str, Any]]], list[str]]:
    """Turn JupyterHub group models into ``{class: (members, limits)}`` and a list of problems.

    Only groups whose properties carry :data:`GROUP_LIMITS_PROPERTY` are classes with limits.
    A group whose limits are malformed (someone wrote them through the hub's API) is left
    out, with a problem naming it: its members get the key proxy's defaults.
    """
    classes: dict[str, tuple[list[str], dict[str, Any]]] = {}
    problems: list[str] = []
    for group in groups:
        name = group.get("name")
        properties = group.get("properties")
        if not isinstance(name, str) or not isinstance(properties, dict):
            continue
        if GROUP_LIMITS_PROPERTY not in properties:
            continue
        try:
            spec = parse_limits(
                properties[GROUP_LIMITS_PROPERTY], f"group {name!r} {GROUP_LIMITS_PROPERTY}"
            )
        except ValueError as e:
            problems.append(str(e))
            continue
        users = group.get("users") or []
        members = [u for u in users if isinstance(u, str)] if isinstance(users, list) else []
        classes[name] = (members, spec)
    return classes, problems


class HubPoller:
    """Polls ``GET {api_url}/users?state=active`` and feeds the authenticator; with
    ``limits``, also ``GET {api_url}/groups`` for the classes' limits.

    The API token needs the ``list:users`` and ``read:servers`` scopes, and ``list:groups``
    and ``read:groups`` for class limits.
    """

    def __init__(
        self,
        authenticator: TokenAuthenticator,
        api_url: str,
        api_token: str,
        *,
        interval: float = 15.0,
        metrics: Metrics | None = None,
        page_size: int = 200,
        limits: Limits | None = None,
    ) -> None:
        self.authenticator = authenticator
        self.api_url = api_url.rstrip("/")
        self.api_token = api_token
        self.interval = interval
        self.metrics = metrics
        self.page_size = page_size
        self.limits = limits
        self._task: asyncio.Task[None] | None = None
        self._session: aiohttp.ClientSession | None = None
        self._refreshing: asyncio.Task[None] | None = None
        self._last_refresh = 0.0
        #: Least seconds between two on-demand polls, so tokens of stopped servers cannot
        #: make the proxy hammer the hub.
        self.min_refresh_interval = 1.0
        self._group_problems: list[str] = []
        self._groups_forbidden = False

    async def refresh_now(self) -> None:
        """Poll the hub now (coalesced with a poll already running, and rate limited)."""
        if self._refreshing is None or self._refreshing.done():
            if time.monotonic() - self._last_refresh < self.min_refresh_interval:
                return
            self._last_refresh = time.monotonic()
            self._refreshing = asyncio.ensure_future(self.poll_once())
        await asyncio.shield(self._refreshing)

    async def _get_all(self, path: str, params: dict[str, str]) -> list[dict[str, Any]]:
        """Every item of a paginated hub API list."""
        if self._session is None:
            self._session = aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=20))
        headers = {
            "Authorization": f"token {self.api_token}",
            "Accept": "application/jupyterhub-pagination+json",
        }
        items: list[dict[str, Any]] = []
        offset = 0
        while True:
            query = {**params, "offset": str(offset), "limit": str(self.page_size)}
            async with self._session.get(
                f"{self.api_url}{path}", params=query, headers=headers
            ) as resp:
                resp.raise_for_status()
                data = await resp.json(content_type=None)
            if isinstance(data, list):  # hub without pagination support
                items.extend(data)
                break
            page = data.get("items") or []
            items.extend(page)
            nxt = (data.get("_pagination") or {}).get("next")
            if not nxt or not page:
                break
            offset = int(nxt.get("offset", offset + len(page)))
        return items

    async def poll_once(self) -> None:
        """Fetch every user with an active server (all pages) and publish the result; then
        the classes' limits, when this poller has limits to feed."""
        users = await self._get_all("/users", {"state": "active"})
        self.authenticator.set_active(active_servers_from_users(users))
        if self.limits is not None:
            await self._poll_groups(self.limits)

    async def _poll_groups(self, limits: Limits) -> None:
        # A failure here keeps the classes last seen (and never makes the hub picture stale:
        # whose servers run is what tokens depend on).
        try:
            groups = await self._get_all("/groups", {})
        except aiohttp.ClientResponseError as e:
            if e.status != 403:
                raise
            if not self._groups_forbidden:
                log.warning(
                    "The key proxy's hub token may not read groups (it needs list:groups and "
                    "read:groups): class limits are not applied, every learner gets the defaults"
                )
            self._groups_forbidden = True
            limits.set_classes({})
            return
        self._groups_forbidden = False
        classes, problems = classes_from_groups(groups)
        if problems != self._group_problems:
            for problem in problems:
                log.warning(
                    "Ignoring a class's limits (its learners get the defaults): %s", problem
                )
        self._group_problems = problems
        if limits.set_classes(classes):
            log.info("Class limits now: %d class(es) with limits", len(classes))

    async def run(self) -> None:
        while True:
            try:
                await self.poll_once()
            except asyncio.CancelledError:
                raise
            except (aiohttp.ClientError, TimeoutError, ValueError, KeyError, TypeError) as e:
                if self.metrics is not None:
                    self.metrics.count_hub_poll_error()
                log.warning("Polling the hub (running servers, classes) failed: %s", e)
            await asyncio.sleep(self.interval)

    def start(self) -> None:
        self._task = asyncio.ensure_future(self.run())

    async def stop(self) -> None:
        await cancel_and_wait(self._task)
        self._task = None
        if self._session is not None:
            await self._session.close()
            self._session = None
