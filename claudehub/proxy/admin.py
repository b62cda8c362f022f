"""Endpoints the key proxy answers itself: health, readiness, metrics, the admin usage API.

``GET /health``   200 while the process serves.
``GET /ready``    200 when it can forward (hub picture fresh in hub mode), else 503.
``GET /metrics``  Prometheus text; admin-only unless ``authenticate_metrics`` is off.
``GET /usage``    admin-only JSON usage per day, user and model (``since``, ``until``, ``user``).
``GET /audit``    admin-only audit log, newest first (``since``, ``until``, ``action``, ``actor``,
                  ``limit``; ``format=csv`` for CSV); ``POST /audit`` records one event (the hub).

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

from claudehub.contract.audit import ACTIONS, AuditEventError, parse_ts
from claudehub.proxy.audit import DEFAULT_RESULTS, MAX_RESULTS, AuditLog, to_csv
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
        audit: AuditLog | None = None,
    ) -> None:
        self.audit = audit
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
                if name in ("health", "ready", "metrics", "usage", "audit"):
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
        if name == "audit" and req.method in (b"GET", b"POST"):
            return self._audit(req, urllib.parse.parse_qs(query))
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

    async def _audit(self, req: Request, query: dict[str, list[str]]) -> bytes:
        """``GET /audit`` (read, JSON or CSV) and ``POST /audit`` (record one event)."""
        keep = req.keep_alive
        credential = self.auth.credential(req)
        if not credential:
            return error_response(
                401,
                "authentication_error",
                "The audit log needs an admin token (Authorization: Bearer).",
                keep_alive=keep,
            )
        perms = await self.auth.permissions(credential)
        if "admin" not in perms:
            return error_response(
                403,
                "permission_error",
                "The audit log is for administrators only (hub admin token or admin token).",
                keep_alive=keep,
            )
        if self.audit is None:
            return error_response(
                404, "not_found_error", "This key proxy keeps no audit log.", keep_alive=keep
            )
        if req.method == b"POST":
            return self._audit_post(req)
        return await self._audit_get(req, query)

    def _audit_post(self, req: Request) -> bytes:
        keep = req.keep_alive
        assert self.audit is not None
        try:
            event = json.loads(b"".join(req.body) or b"null")
        except ValueError:
            return error_response(
                400, "invalid_request_error", "The body must be one JSON event.", keep_alive=keep
            )
        try:
            checked = self.audit.record(event)
        except AuditEventError as e:
            # the message names the field, never repeats its value
            return error_response(400, "invalid_request_error", str(e), keep_alive=keep)
        return _json(201, {"recorded": checked["action"]}, keep)

    async def _audit_get(self, req: Request, query: dict[str, list[str]]) -> bytes:
        keep = req.keep_alive
        assert self.audit is not None

        def arg(name: str) -> str:
            return (query.get(name) or [""])[0]

        try:
            since = parse_ts(arg("since")).timestamp() if arg("since") else None
            until = parse_ts(arg("until")).timestamp() if arg("until") else None
        except ValueError:
            return error_response(
                400,
                "invalid_request_error",
                "since/until must be ISO 8601 times or dates (2025-05-01, 2025-05-01T12:00Z).",
                keep_alive=keep,
            )
        if until is not None and len(arg("until")) == 10:
            until += 86400.0 - 0.001  # a day: up to its end
        action = arg("action") or None
        if action is not None and action not in ACTIONS:
            return error_response(
                400,
                "invalid_request_error",
                f"action must be one of {', '.join(sorted(ACTIONS))}.",
                keep_alive=keep,
            )
        try:
            limit = int(arg("limit") or DEFAULT_RESULTS)
        except ValueError:
            limit = -1
        if not 1 <= limit <= MAX_RESULTS:
            return error_response(
                400,
                "invalid_request_error",
                f"limit must be a whole number from 1 to {MAX_RESULTS}.",
                keep_alive=keep,
            )
        fmt = arg("format") or "json"
        if fmt not in ("json", "csv"):
            return error_response(
                400, "invalid_request_error", "format must be json or csv.", keep_alive=keep
            )
        events = await self.audit.query(
            since=since, until=until, action=action, actor=arg("actor") or None, limit=limit
        )
        if fmt == "csv":
            return json_response(
                200,
                to_csv(events).encode(),
                keep_alive=keep,
                content_type=b"text/csv; charset=utf-8",
                headers=(("content-disposition", 'attachment; filename="claudehub-audit.csv"'),),
            )
        return _json(200, {"events": events, "truncated": len(events) >= limit}, keep)
