"""The key proxy assembled: server, token checks, hub poller, limits, usage, metrics, file watcher.

:class:`KeyProxy` is what the ``claudehub-keyproxy`` application runs, and what tests start
in-process. It holds no configuration logic of its own: everything comes in through
:class:`KeyProxyOptions`.
"""

from __future__ import annotations

import asyncio
import logging
import os
from collections.abc import Sequence
from dataclasses import dataclass, field

import sqlalchemy as sa

from claudehub.contract.tokens import load_token_secret, read_secret_file
from claudehub.proxy.admin import AdminAuth, LocalEndpoints
from claudehub.proxy.audit import AuditLog, AuditStore
from claudehub.proxy.auth import HubPoller, TokenAuthenticator
from claudehub.proxy.limits import Limits, utc_day
from claudehub.proxy.metrics import Metrics
from claudehub.proxy.server import KeyProxyServer
from claudehub.proxy.settings import ProxySettings
from claudehub.proxy.shared import SharedLimits
from claudehub.proxy.tasks import cancel_and_wait
from claudehub.proxy.usage import UsageRecorder, UsageStore, day_string

log = logging.getLogger("claudehub.proxy")


def _stamp(path: str) -> tuple[int, int, int] | None:
    """What tells a changed (or swapped-in) file apart; None when it cannot be read."""
    try:
        st = os.stat(path)
    except OSError:
        return None
    return (st.st_mtime_ns, st.st_size, st.st_ino)


@dataclass
class KeyProxyOptions:
    """Everything a :class:`KeyProxy` needs. Hub mode is on when both hub fields are set."""

    settings: ProxySettings = field(default_factory=ProxySettings)
    token_secret: bytes = b""
    limits: Limits = field(default_factory=Limits)
    hub_api_url: str = ""
    hub_api_token: str = ""
    hub_poll_interval: float = 15.0
    hub_stale_after: float = 60.0
    db_url: str = ""
    usage_flush_interval: float = 1.0
    admin_tokens: Sequence[str] = ()
    authenticate_metrics: bool = True
    service_prefix: str = ""
    api_key_file: str = ""
    token_secret_file: str = ""
    file_poll_interval: float = 5.0
    shared_limits_interval: float = 1.0
    audit_retention_days: float = 365.0

    @property
    def hub_mode(self) -> bool:
        return bool(self.hub_api_url and self.hub_api_token)


class KeyProxy:
    """A running key proxy."""

    def __init__(self, options: KeyProxyOptions) -> None:
        self.options = options
        o = options
        self.metrics = Metrics()
        # Stamped before they are read: a file replaced from here on is read again by the
        # watcher, however late its first look.
        self._key_stamp = _stamp(o.api_key_file) if o.api_key_file else None
        self._secret_stamp = _stamp(o.token_secret_file) if o.token_secret_file else None
        if o.api_key_file:
            o.settings.api_key = self._read_key_file()
        secret = load_token_secret(o.token_secret, o.token_secret_file)
        self.authenticator = TokenAuthenticator(
            secret, hub_mode=o.hub_mode, stale_after=o.hub_stale_after
        )
        self.limits = o.limits
        self.store = UsageStore(o.db_url) if o.db_url else None
        self.recorder = UsageRecorder(self.store, flush_interval=o.usage_flush_interval)
        self.shared: SharedLimits | None = None
        if self.store is not None and o.shared_limits_interval > 0:
            self.shared = SharedLimits(
                self.limits, self.recorder, self.store, interval=o.shared_limits_interval
            )
        self.audit = AuditLog(
            AuditStore(self.store) if self.store is not None else None,
            self.recorder,
            retention_days=o.audit_retention_days,
            flush_interval=max(o.usage_flush_interval, 0.2),
        )
        self.admin_auth = AdminAuth(o.admin_tokens, o.hub_api_url if o.hub_mode else "")
        self.local = LocalEndpoints(
            lambda: self.server,
            self.admin_auth,
            prefixes=[o.service_prefix] if o.service_prefix else [],
            authenticate_metrics=o.authenticate_metrics,
            hub_mode=o.hub_mode,
            audit=self.audit,
        )
        self.server = KeyProxyServer(
            o.settings, self.authenticator, self.limits, self.recorder, self.metrics, self.local
        )
        self.server.report_forged = self.audit.token_forged
        self.poller: HubPoller | None = None
        if o.hub_mode:
            self.poller = HubPoller(
                self.authenticator,
                o.hub_api_url,
                o.hub_api_token,
                interval=o.hub_poll_interval,
                metrics=self.metrics,
                limits=self.limits,
            )
            self.server.refresh_servers = self.poller.refresh_now
        self._watcher: asyncio.Task[None] | None = None
        self._stopped = False
        srv, rec, m = self.server, self.recorder, self.metrics
        m.usage_written = lambda: rec.written
        m.usage_write_errors = lambda: rec.errors
        m.gauge("client_connections", "Open client connections.", lambda: len(srv.connections))
        m.gauge("upstream_connections", "Open upstream connections.", lambda: len(srv.pool.open))
        m.gauge(
            "upstream_connections_idle",
            "Idle pooled upstream connections.",
            lambda: len(srv.pool.idle),
        )
        m.gauge("key_configured", "1 when a real key is configured.", lambda: int(srv.has_key))
        m.gauge("usage_queue", "Usage rows waiting to be written.", lambda: rec.pending)
        shared = self.shared
        if shared is not None:
            m.gauge(
                "replicas",
                "Key proxies sharing this one's usage database (at the last sync).",
                lambda: shared.replicas,
            )
            m.gauge(
                "shared_limits_errors",
                "Syncs with the usage database that failed (limits stayed local).",
                lambda: shared.errors,
            )
        limits = self.limits
        m.gauge(
            "classes_with_limits",
            "Hub groups whose limits this key proxy applies (claudehub.contract.limits).",
            lambda: len(limits.classes),
        )
        m.gauge(
            "hub_mode",
            "1 when tokens are checked against the hub's running servers.",
            lambda: int(o.hub_mode),
        )

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.server.port}"

    def _read_key_file(self) -> str:
        try:
            return read_secret_file(self.options.api_key_file)
        except OSError as e:
            log.error("Cannot read the API key file %s: %s", self.options.api_key_file, e.strerror)
            return ""

    async def start(self, host: str = "127.0.0.1", port: int = 0) -> None:
        """Restore today's budgets from the database, start background tasks, listen."""
        if self.shared is not None:
            # Registers this replica (the others take a smaller rate share from their next
            # sync) and restores today's budgets from the shared totals.
            await self.shared.sync()
            self.shared.start()
        elif self.store is not None:
            now = self.limits.wallclock()
            try:
                # a lone key proxy has nothing in flight yet: every reservation is a cut request
                await self.recorder.run_in_db(self.store.charge_orphans, True)
                totals = await self.recorder.run_in_db(self.store.daily_totals, day_string(now))
            except sa.exc.SQLAlchemyError as e:
                # serve anyway; usage is kept in memory and written once the database is back
                log.error("Cannot read today's usage from the database (budgets start at 0): %s", e)
                totals = {}
            self.limits.set_shared_usage(
                utc_day(now), {u: self.limits.budget_tokens(t) for u, t in totals.items()}
            )
        if self.poller is not None:
            self.poller.start()
        self.recorder.start()
        self.audit.start()
        await self.server.start(host, port)
        if not self.authenticator.secret:
            log.warning(
                "No token secret configured (CLAUDEHUB_TOKEN_SECRET): every request will be refused."
            )
        if not self.server.has_key:
            log.warning(
                "No Anthropic API key configured (ANTHROPIC_API_KEY or api_key_file): "
                "every request will be refused."
            )
        if self.options.api_key_file or self.options.token_secret_file:
            self._watcher = asyncio.ensure_future(self._watch_files())

    async def stop(self, grace: float = 0.0) -> None:
        """Stop accepting; give open requests ``grace`` seconds; flush usage; close."""
        if self._stopped:
            return
        self._stopped = True
        await cancel_and_wait(self._watcher)
        if self.poller is not None:
            await self.poller.stop()
        await self.server.shutdown(grace)
        if self.shared is not None:
            await self.shared.stop()
        await self.audit.stop()
        await self.recorder.stop()
        await self.admin_auth.close()

    async def _watch_files(self) -> None:
        """Re-read the key and secret files when they change (rotation without restart)."""
        o = self.options
        stamp = _stamp
        key_stamp, secret_stamp = self._key_stamp, self._secret_stamp
        if o.api_key_file and self.server.has_key:
            self.metrics.count_key_reload()
        while True:
            await asyncio.sleep(o.file_poll_interval)
            if o.api_key_file:
                s = stamp(o.api_key_file)
                if s is not None and s != key_stamp:
                    key_stamp = s
                    try:
                        self.server.set_api_key(self._read_key_file())
                    except ValueError as e:
                        log.error("Ignoring the new API key file: %s", e)
                    else:
                        self.metrics.count_key_reload()
                        log.info("Reloaded the API key from %s", o.api_key_file)
                        self.audit.key_rotated(o.api_key_file)
            if o.token_secret_file:
                s = stamp(o.token_secret_file)
                if s is not None and s != secret_stamp:
                    secret_stamp = s
                    try:
                        self.authenticator.set_secret(load_token_secret("", o.token_secret_file))
                    except OSError as e:
                        log.error("Cannot read the token secret file: %s", e.strerror)
                    else:
                        log.info("Reloaded the token secret from %s", o.token_secret_file)
