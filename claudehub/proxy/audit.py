"""The audit log of privileged actions: stored beside usage, written off the event loop.

Events (:mod:`claudehub.contract.audit`) come from the hub (``POST /audit``: a session ended
by someone else, a server opened by someone else, a class's limits changed) and from the key
proxy itself (the real key rotated, a forged sandbox token refused). They are queued in memory
and written by the usage thread to ``claudehub_audit`` in the usage database (SQLite or
PostgreSQL, the tables of :mod:`claudehub.proxy.usage`); rows older than the retention are
pruned hourly. Forged tokens are recorded at most once per client address per minute, with a
count, so a flood of them costs a row a minute, not a row a request.
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import collections
import csv
import io
import json
import logging
import time
from collections.abc import Callable, Sequence
from typing import Any

import sqlalchemy as sa

from claudehub.contract.audit import (
    FIELD_LIMITS,
    KEY_ROTATE,
    TOKEN_FORGED,
    AuditEventError,
    check_event,
    format_ts,
)
from claudehub.proxy.tasks import cancel_and_wait
from claudehub.proxy.usage import UsageRecorder, UsageStore, metadata

log = logging.getLogger("claudehub.proxy")

audit_table = sa.Table(
    "claudehub_audit",
    metadata,
    sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
    sa.Column("ts", sa.Float, nullable=False),  # UNIX time (UTC)
    sa.Column("action", sa.String(FIELD_LIMITS["action"]), nullable=False),
    sa.Column("actor", sa.String(FIELD_LIMITS["actor"]), nullable=False),
    sa.Column("actor_kind", sa.String(FIELD_LIMITS["actor_kind"]), nullable=False),
    sa.Column("target", sa.String(FIELD_LIMITS["target"]), nullable=False, default=""),
    sa.Column("source", sa.String(FIELD_LIMITS["source"]), nullable=False, default=""),
    sa.Column("detail", sa.Text, nullable=False, default="{}"),  # JSON, checked
    sa.Index("ix_claudehub_audit_ts", "ts"),
)

#: The columns of an export, in order.
COLUMNS = ("ts", "action", "actor", "actor_kind", "target", "source", "detail")
#: Most events one query returns (GET /audit's ``limit`` is capped here).
MAX_RESULTS = 10_000
DEFAULT_RESULTS = 1000
#: A forged token from one address is recorded at most once per this many seconds.
FORGED_WINDOW = 60.0
_FORGED_SOURCES_MAX = 10_000
_QUEUE_MAX = 10_000
_PRUNE_EVERY = 3600.0
_OPERATOR_KEY_FILE = "operator (key file)"


def _row(row: Any) -> dict[str, Any]:
    try:
        detail = json.loads(row.detail or "{}")
    except ValueError:
        detail = {}
    return {
        "ts": format_ts(row.ts),
        "action": row.action,
        "actor": row.actor,
        "actor_kind": row.actor_kind,
        "target": row.target,
        "source": row.source,
        "detail": detail,
    }


class AuditStore:
    """The audit table on the usage database. Blocking calls: run them in the usage thread."""

    def __init__(self, usage: UsageStore) -> None:
        self.usage = usage

    def write(self, events: Sequence[dict[str, Any]]) -> None:
        rows = [
            {
                "ts": e["ts"],
                "action": e["action"],
                "actor": e["actor"],
                "actor_kind": e["actor_kind"],
                "target": e["target"],
                "source": e["source"],
                "detail": json.dumps(e["detail"], separators=(",", ":"), sort_keys=True),
            }
            for e in events
        ]
        self.usage._ensure_schema()
        with self.usage.engine.begin() as conn:
            conn.execute(audit_table.insert(), rows)

    def query(
        self,
        since: float | None = None,
        until: float | None = None,
        action: str | None = None,
        actor: str | None = None,
        limit: int = DEFAULT_RESULTS,
    ) -> list[dict[str, Any]]:
        """Events, newest first, at most ``limit``."""
        t = audit_table
        q = sa.select(t)
        if since is not None:
            q = q.where(t.c.ts >= since)
        if until is not None:
            q = q.where(t.c.ts <= until)
        if action:
            q = q.where(t.c.action == action)
        if actor:
            q = q.where(t.c.actor == actor)
        q = q.order_by(t.c.ts.desc(), t.c.id.desc()).limit(limit)
        self.usage._ensure_schema()
        with self.usage.engine.connect() as conn:
            return [_row(r) for r in conn.execute(q)]

    def prune(self, before: float) -> int:
        """Delete events older than ``before`` (UNIX time); how many went."""
        self.usage._ensure_schema()
        with self.usage.engine.begin() as conn:
            result = conn.execute(audit_table.delete().where(audit_table.c.ts < before))
            return int(result.rowcount or 0)


def claimed_user(token: str) -> str:
    """The user a (forged) sandbox token claims, read without trusting it; "" if unreadable.

    The token itself is never kept: only this name (checked like any audit value) is.
    """
    parts = token.split(".")
    if len(parts) != 3 or len(parts[1]) > 2048:
        return ""
    try:
        raw = json.loads(base64.urlsafe_b64decode(parts[1] + "=" * (-len(parts[1]) % 4)))
    except (ValueError, binascii.Error):
        return ""
    sub = raw.get("sub") if isinstance(raw, dict) else None
    return sub[: FIELD_LIMITS["target"]] if isinstance(sub, str) else ""


class AuditLog:
    """Queues events and writes them in the usage thread; prunes; rate-limits forged tokens.

    Without a database (no ``db_url``) the newest 1000 events are kept in memory only.
    """

    def __init__(
        self,
        store: AuditStore | None,
        recorder: UsageRecorder,
        *,
        retention_days: float = 365.0,
        flush_interval: float = 1.0,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.store = store
        self.recorder = recorder
        self.retention_days = retention_days
        self.flush_interval = flush_interval
        self.clock = clock
        self.queue: list[dict[str, Any]] = []
        self.memory: collections.deque[dict[str, Any]] = collections.deque(maxlen=1000)
        self.recorded = 0
        self.dropped = 0
        self.errors = 0
        # source -> [time of its last record, refusals since, claimed users since]
        self._forged: dict[str, list[Any]] = {}
        self._last_prune = 0.0
        self._task: asyncio.Task[None] | None = None
        self._lock = asyncio.Lock()

    # -- recording ------------------------------------------------------------------------
    def record(self, event: dict[str, Any]) -> dict[str, Any]:
        """Check ``event`` (:func:`check_event`, which raises on a bad one) and queue it."""
        checked = check_event(event)
        checked.setdefault("ts", self.clock())
        if len(self.queue) >= _QUEUE_MAX:
            # the database is down and events keep coming: keep the newest
            del self.queue[: _QUEUE_MAX // 10]
            self.dropped += _QUEUE_MAX // 10
            log.error("Audit queue full (database unreachable?): dropped the oldest events")
        self.queue.append(checked)
        self.recorded += 1
        return checked

    def key_rotated(self, key_file: str) -> None:
        """The real key's file changed and the new key is in use (never the key itself)."""
        event: dict[str, Any] = {
            "action": KEY_ROTATE,
            "actor": _OPERATOR_KEY_FILE,
            "actor_kind": "operator",
            "target": "anthropic api key",
            "detail": {"key_file": key_file[-200:]},
        }
        try:
            self.record(event)
        except AuditEventError as e:  # an odd path: the rotation is still worth a record
            log.warning("Recording the key rotation without its file name: %s", e)
            self.record({**event, "detail": {}})

    def token_forged(self, source: str, token: str) -> None:
        """A sandbox token with a bad signature came from ``source``: record it, at most once
        per :data:`FORGED_WINDOW` per source (the next record carries the count)."""
        now = self.clock()
        source = source[: FIELD_LIMITS["source"]]
        user = claimed_user(token)
        state = self._forged.get(source)
        if state is None:
            if len(self._forged) >= _FORGED_SOURCES_MAX:
                source = "(many sources)"
                state = self._forged.get(source)
        if state is None:
            self._forged[source] = [now, 0, set()]
            self._record_forged(source, 1, {user} if user else set())
            return
        state[1] += 1
        if user and len(state[2]) < 10:
            state[2].add(user)
        if now - state[0] >= FORGED_WINDOW:
            self._emit_forged(source, state, now)

    def _emit_forged(self, source: str, state: list[Any], now: float) -> None:
        count, users = state[1], state[2]
        state[0], state[1], state[2] = now, 0, set()
        self._record_forged(source, count, users)

    def _record_forged(self, source: str, count: int, users: set[str]) -> None:
        names = sorted(users)
        detail: dict[str, Any] = {"count": count, "window_seconds": int(FORGED_WINDOW)}
        if names:
            detail["target_claimed"] = True
        if len(names) > 1:
            detail["claimed_users"] = names
        try:
            self.record(
                {
                    "action": TOKEN_FORGED,
                    "actor": source or "unknown",
                    "actor_kind": "source",
                    "target": names[0] if names else "",
                    "source": source,
                    "detail": detail,
                }
            )
        except ValueError:
            # a claimed name that looks like a secret (the forger chose it): keep the count
            detail.pop("claimed_users", None)
            detail["target_claimed"] = False
            self.record(
                {
                    "action": TOKEN_FORGED,
                    "actor": source or "unknown",
                    "actor_kind": "source",
                    "source": source,
                    "detail": detail,
                }
            )

    def _sweep_forged(self, now: float) -> None:
        for source, state in list(self._forged.items()):
            if now - state[0] < FORGED_WINDOW:
                continue
            if state[1]:
                self._emit_forged(source, state, now)
            else:
                del self._forged[source]

    # -- reading ----------------------------------------------------------------------------
    async def query(self, **filters: Any) -> list[dict[str, Any]]:
        """Events, newest first (:meth:`AuditStore.query`'s filters); what is queued first."""
        await self.flush()
        if self.store is not None:
            result: list[dict[str, Any]] = await self.recorder.run_in_db(
                lambda: self.store.query(**filters) if self.store is not None else []
            )
            return result
        limit = filters.get("limit", DEFAULT_RESULTS)
        out = []
        for e in reversed(self.memory):
            if filters.get("since") is not None and e["ts"] < filters["since"]:
                continue
            if filters.get("until") is not None and e["ts"] > filters["until"]:
                continue
            if filters.get("action") and e["action"] != filters["action"]:
                continue
            if filters.get("actor") and e["actor"] != filters["actor"]:
                continue
            out.append({**e, "ts": format_ts(e["ts"])})
            if len(out) >= limit:
                break
        return out

    # -- writing ----------------------------------------------------------------------------
    async def flush(self) -> None:
        """Write every queued event (kept queued when the database fails)."""
        async with self._lock:
            self._sweep_forged(self.clock())
            if not self.queue:
                return
            batch, self.queue = self.queue, []
            if self.store is None:
                self.memory.extend(batch)
                return
            try:
                await self.recorder.run_in_db(self.store.write, batch)
            except sa.exc.SQLAlchemyError as e:
                self.errors += 1
                log.error("Writing %d audit events failed (will retry): %s", len(batch), e)
                self.queue = batch + self.queue

    async def prune(self, now: float | None = None) -> int:
        """Delete events older than the retention (none when it is 0)."""
        if self.retention_days <= 0 or self.store is None:
            return 0
        before = (self.clock() if now is None else now) - self.retention_days * 86400.0
        try:
            removed: int = await self.recorder.run_in_db(self.store.prune, before)
        except sa.exc.SQLAlchemyError as e:
            log.error("Pruning the audit log failed: %s", e)
            return 0
        if removed:
            log.info("Pruned %d audit events older than %g days", removed, self.retention_days)
        return removed

    async def run(self) -> None:
        while True:
            await asyncio.sleep(self.flush_interval)
            await self.flush()
            now = time.monotonic()
            if now - self._last_prune >= _PRUNE_EVERY:
                self._last_prune = now
                await self.prune()

    def start(self) -> None:
        self._task = asyncio.ensure_future(self.run())

    async def stop(self) -> None:
        """Write what is queued (before the usage thread closes)."""
        await cancel_and_wait(self._task)
        self._task = None
        await self.flush()


def to_csv(events: Sequence[dict[str, Any]]) -> str:
    """Events as CSV (``detail`` as JSON). A cell a spreadsheet would run as a formula is
    prefixed with ``'`` (user and group names are chosen by users)."""
    out = io.StringIO()
    writer = csv.writer(out)
    writer.writerow(COLUMNS)
    for e in events:
        cells = [
            json.dumps(e[c], separators=(",", ":"), sort_keys=True) if c == "detail" else str(e[c])
            for c in COLUMNS
        ]
        writer.writerow(
            ["'" + c if c[:1] in ("=", "+", "-", "@", "\t", "\r") else c for c in cells]
        )
    return out.getvalue()
