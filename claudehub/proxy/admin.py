"""Endpoints the key proxy answers itself: health, readiness, metrics, the admin usage API.

``GET /health``   200 while the process serves.
``GET /ready``    200 when it can forward (hub picture fresh in hub mode), else 503.
``GET /metrics``  Prometheus text; admin-only unless ``authenticate_metrics`` is off.
``GET /usage``    admin-only JSON usage per day, user and model (``since``, ``until``, ``user``).

Each also answers under the hub service prefix (``/services/keyproxy/health`` ...), which is how
they are reached through the hub's proxy. Admins are callers presenting one of the configured
admin tokens, or a JupyterHub API token whose owner is a hub admin (``read:metrics`` is enough
for ``/metrics``).
"""

from __future__ import annotations

import datetime
import hmac
import json
import logging
import time
import urllib.parse
from collections.abc import Awaitable, Callable, Sequence
from typing import Any

import aiohttp

from claudehub.proxy.errors import error_response, json_response
from claudehub.proxy.request import Request
from claudehub.proxy.server import KeyProxyServer

log = logging.getLogger("claudehub.proxy")
_HUB_CACHE_SECONDS = 60.0


class AdminAuth:
    """Decides whether a caller of the local endpoints is an administrator."""

    def __init__(self, admin_tokens: Sequence[str] = (), hub_api_url: str = "") -> None:
        self.admin_tokens = [t for t in admin_tokens if t]
        self.hub_api_url = hub_api_url.rstrip("/")
        self._cache: dict[str, tuple[float, set[str]]] = {}
        self._session: aiohttp.ClientSession | None = None

    @staticmethod
    def credential(req: Request) -> str:
        """The token from ``Authorization: token|Bearer X`` or ``x-api-key``."""
        authz = req.authz.strip()
        scheme, _, value = authz.partition(" ")
        if scheme.lower() in ("token", "bearer") and value.strip():
            return value.strip()
        return req.token

    async def permissions(self, token: str) -> set[str]:
        """``{"admin"}`` for administrators, ``{"metrics"}`` for metrics readers, else empty."""
        if not token:
            return set()
        for admin_token in self.admin_tokens:
            if hmac.compare_digest(token.encode(), admin_token.encode()):
                return {"admin", "metrics"}
        if not self.hub_api_url:
            return set()
        cached = self._cache.get(token)
        now = time.monotonic()
        if cached is not None and now - cached[0] < _HUB_CACHE_SECONDS:
            return cached[1]
        perms = await self._ask_hub(token)
        if len(self._cache) > 10_000:
            self._cache.clear()
        self._cache[token] = (now, perms)
        return perms

    async def _ask_hub(self, token: str) -> set[str]:
        if self._session is None:
            self._session = aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=10))
        try:
            async with self._session.get(
                f"{self.hub_api_url}/user", headers={"Authorization": f"token {token}"}
            ) as resp:
                if resp.status != 200:
                    return set()
                model = await resp.json(content_type=None)
        except (aiohttp.ClientError, TimeoutError, ValueError) as e:
            log.warning("Asking the hub who a caller is failed: %s", e)
            return set()
        if not isinstance(model, dict):
            return set()
        scopes = set(model.get("scopes") or [])
        perms = set()
        if model.get("admin") is True or "admin:users" in scopes:
            perms |= {"admin", "metrics"}
        if "read:metrics" in scopes:
            perms.add("metrics")
        return perms

    async def close(self) -> None:
        if self._session is not None:
            await self._session.close()
            self._session = None


def _json(status: int, obj: Any, keep_alive: bool) -> bytes:
    return json_response(status, json.dumps(obj).encode(), keep_alive=keep_alive)


def _day(value: str | None, default: datetime.date) -> str:
    if not value:
        return default.isoformat()
    return datetime.date.fromisoformat(value).isoformat()


class LocalEndpoints:
    """Routes local requests; returns response bytes, or an awaitable for the slow ones."""

    def __init__(
        self,
        server_ref: Callable[[], KeyProxyServer],
        auth: AdminAuth,
        *,
        prefixes: Sequence[str] = ("/",),
        authenticate_metrics: bool = True,
        hub_mode: bool = False,
    ) -> None:
        self.server_ref = server_ref
        self.auth = auth
        self.prefixes = sorted(
            {p if p.endswith("/") else p + "/" for p in ("/", *prefixes)}, key=len, reverse=True
        )
        self.authenticate_metrics = authenticate_metrics
        self.hub_mode = hub_mode

    def route(self, path: str) -> str | None:
        for prefix in self.prefixes:
            if path.startswith(prefix):
                name = path[len(prefix) :]
                if name in ("health", "ready", "metrics", "usage"):
                    return name
        return None

    def __call__(self, req: Request) -> bytes | Awaitable[bytes]:
        keep = req.keep_alive
        raw_path, _, query = req.url.decode("latin-1").partition("?")
        name = self.route(raw_path)
        if name is None:
            return error_response(
                404,
                "not_found_error",
                "Not found. This key proxy forwards only POST /v1/messages and "
                "POST /v1/messages/count_tokens.",
                keep_alive=keep,
            )
        if req.method != b"GET":
            return error_response(
                405, "invalid_request_error", f"/{name} only accepts GET.", keep_alive=keep
            )
        srv = self.server_ref()
        if name == "health":
            return _json(200, {"status": "ok"}, keep)
        if name == "ready":
            state = self.readiness(srv)
            return _json(200 if state["ready"] else 503, state, keep)
        if name == "metrics":
            if not self.authenticate_metrics:
                return json_response(
                    200,
                    srv.metrics.render(),
                    keep_alive=keep,
                    content_type=b"text/plain; version=0.0.4",
                )
            return self._metrics(req, srv)
        return self._usage(req, srv, urllib.parse.parse_qs(query))

    def readiness(self, srv: KeyProxyServer) -> dict[str, Any]:
        hub = "not used"
        ok = not srv.closing
        if self.hub_mode:
            fresh = srv.authenticator.hub_fresh()
            hub = "ok" if fresh else "unreachable"
            ok = ok and fresh
        return {
            "ready": ok,
            "shutting_down": srv.closing,
            "hub": hub,
            "key_configured": srv.has_key,
        }

    async def _metrics(self, req: Request, srv: KeyProxyServer) -> bytes:
        perms = await self.auth.permissions(self.auth.credential(req))
        if "metrics" not in perms:
            return error_response(
                403,
                "permission_error",
                "Metrics are for administrators only.",
                keep_alive=req.keep_alive,
            )
        return json_response(
            200,
            srv.metrics.render(),
            keep_alive=req.keep_alive,
            content_type=b"text/plain; version=0.0.4",
        )

    async def _usage(self, req: Request, srv: KeyProxyServer, query: dict[str, list[str]]) -> bytes:
        keep = req.keep_alive
        perms = await self.auth.permissions(self.auth.credential(req))
        if "admin" not in perms:
            return error_response(
                403,
                "permission_error",
                "The usage API is for administrators only (hub admin token or admin token).",
                keep_alive=keep,
            )
        today = datetime.datetime.now(datetime.UTC).date()
        try:
            since = _day((query.get("since") or [""])[0], today)
            until = _day((query.get("until") or [""])[0], today)
        except ValueError:
            return error_response(
                400, "invalid_request_error", "since/until must be YYYY-MM-DD.", keep_alive=keep
            )
        user = (query.get("user") or [""])[0] or None
        # write what is queued first, so the answer includes requests up to now
        await srv.usage.flush()
        rows: list[dict[str, Any]] = []
        if srv.usage.store is not None:
            rows = await srv.usage.run_in_db(srv.usage.store.summary, since, until, user)
        limits = srv.limits
        users = sorted({r["user"] for r in rows if r["day"] == today.isoformat()})
        budgets = {
            u: {"budget": limits.budget_for(u), "used_today": limits.used_today(u)} for u in users
        }
        return _json(200, {"since": since, "until": until, "usage": rows, "budgets": budgets}, keep)
