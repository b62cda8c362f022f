"""Token usage: read from responses as they pass, recorded per user, written in batches.

Parsing is built for the hot path: SSE chunks are only searched (in C) for ``message_`` and
just the ``message_start``/``message_delta`` events are decoded; JSON responses decode only
their ``usage`` object. Records are queued in memory and written to the database (SQLAlchemy:
SQLite by default, PostgreSQL by URL) by a background task in a worker thread. Each write also
adds the window's tokens to a per-user, per-day total (an atomic upsert), which is what key
proxies sharing one database read to enforce one budget between them
(:mod:`claudehub.proxy.shared`).

A crash must not make a budget exceedable (by killing the key proxy mid-answer): before a
Messages request of a user with a daily budget goes upstream, its *reservation* (the most it can cost:
its body's length, a token being at least a byte, plus its ``max_tokens``) is written to the
in-flight table, group-committed with the others waiting. The usage write that records the
finished request deletes its reservation in the same transaction. A reservation whose key
proxy is gone (no heartbeat, :mod:`claudehub.proxy.shared`) is charged in full to its user's
day: a request cut by a crash costs its user the most it could have cost, never nothing.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import datetime
import json
import logging
import time
import uuid
from collections.abc import Iterable
from typing import Any

import sqlalchemy as sa
from sqlalchemy.dialects import postgresql, sqlite

from claudehub.proxy.tasks import cancel_and_wait

log = logging.getLogger("claudehub.proxy")

_DECODER = json.JSONDecoder()
_MAX_PENDING = 1 << 20  # an SSE event bigger than this is not scanned for usage
USAGE_FIELDS = (
    "input_tokens",
    "output_tokens",
    "cache_creation_input_tokens",
    "cache_read_input_tokens",
)


def _usage_from(obj: Any, into: list[int]) -> None:
    if not isinstance(obj, dict):
        return
    for i, name in enumerate(USAGE_FIELDS):
        value = obj.get(name)
        if isinstance(value, int):
            into[i] = value


class SSEUsage:
    """Collects model and usage from a Messages API event stream, chunk by chunk."""

    __slots__ = ("model", "pending", "usage")

    def __init__(self) -> None:
        self.pending = b""
        self.model = ""
        self.usage = [0, 0, 0, 0]

    def feed(self, data: bytes) -> None:
        if self.pending:
            data = self.pending + data
            self.pending = b""
        end = data.rfind(b"\n\n")
        if end == -1:
            if len(data) <= _MAX_PENDING:
                self.pending = data
            return
        if end + 2 < len(data):
            tail = data[end + 2 :]
            if len(tail) <= _MAX_PENDING:
                self.pending = tail
        pos = data.find(b"message_", 0, end)
        while pos != -1:
            start = data.rfind(b"\n\n", 0, pos)
            start = 0 if start == -1 else start + 2
            stop = data.find(b"\n\n", pos, end + 2)
            if stop == -1:
                stop = end
            self._event(data[start:stop])
            pos = data.find(b"message_", stop + 2, end)

    def _event(self, block: bytes) -> None:
        payload = b"".join(
            line[5:].lstrip(b" ") for line in block.split(b"\n") if line.startswith(b"data:")
        )
        if not payload:
            return
        try:
            event = json.loads(payload)
        except ValueError:
            return
        if not isinstance(event, dict):
            return
        kind = event.get("type")
        if kind == "message_start":
            message = event.get("message")
            if isinstance(message, dict):
                model = message.get("model")
                if isinstance(model, str):
                    self.model = model
                _usage_from(message.get("usage"), self.usage)
        elif kind == "message_delta":
            _usage_from(event.get("usage"), self.usage)


def _decode_after(text_bytes: bytes, key: bytes) -> Any:
    """Decode the JSON value following ``"key":`` (the last occurrence for usage)."""
    pos = text_bytes.rfind(key) if key == b'"usage"' else text_bytes.find(key)
    if pos == -1:
        return None
    colon = text_bytes.find(b":", pos + len(key))
    if colon == -1:
        return None
    tail = text_bytes[colon + 1 : colon + 1 + 4096].decode("utf-8", "replace").lstrip()
    try:
        value, _ = _DECODER.raw_decode(tail)
    except ValueError:
        return None
    return value


def json_usage(body: bytes) -> tuple[str, list[int]]:
    """Model and usage of a non-streaming Messages API response."""
    usage = [0, 0, 0, 0]
    found = _decode_after(body, b'"usage"')
    model = _decode_after(body, b'"model"')
    if not (isinstance(found, dict) and "output_tokens" in found and isinstance(model, str)):
        try:  # unusual layout: decode the whole thing
            data = json.loads(body)
        except ValueError:
            return "", usage
        if not isinstance(data, dict):
            return "", usage
        found, model = data.get("usage"), data.get("model")
    _usage_from(found, usage)
    return (model if isinstance(model, str) else ""), usage


# (user, server, model, path, status, stream)
UsageKey = tuple[str, str, str, str, int, bool]


metadata = sa.MetaData()
usage_table = sa.Table(
    "claudehub_keyproxy_usage",
    metadata,
    sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
    # start of the flush window the row sums up (UNIX time), and its UTC day
    sa.Column("ts", sa.Float, nullable=False),
    sa.Column("day", sa.String(10), nullable=False),
    sa.Column("user", sa.String(255), nullable=False),
    sa.Column("server", sa.String(255), nullable=False, default=""),
    sa.Column("model", sa.String(255), nullable=False, default=""),
    sa.Column("path", sa.String(64), nullable=False),
    sa.Column("status", sa.Integer, nullable=False),
    sa.Column("stream", sa.Boolean, nullable=False),
    sa.Column("requests", sa.Integer, nullable=False),
    sa.Column("input_tokens", sa.BigInteger, nullable=False, default=0),
    sa.Column("output_tokens", sa.BigInteger, nullable=False, default=0),
    sa.Column("cache_creation_input_tokens", sa.BigInteger, nullable=False, default=0),
    sa.Column("cache_read_input_tokens", sa.BigInteger, nullable=False, default=0),
    sa.Column("latency_ms_sum", sa.Float, nullable=False),
    sa.Column("latency_ms_max", sa.Float, nullable=False),
    sa.Column("ttfb_ms_sum", sa.Float, nullable=False, default=0.0),
    sa.Index("ix_claudehub_keyproxy_usage_day_user", "day", "user"),
)


#: Today's tokens per user, summed over every replica's writes (the shared budget).
daily_table = sa.Table(
    "claudehub_keyproxy_daily",
    metadata,
    sa.Column("day", sa.String(10), primary_key=True),
    sa.Column("user", sa.String(255), primary_key=True),
    sa.Column("requests", sa.BigInteger, nullable=False, default=0),
    sa.Column("input_tokens", sa.BigInteger, nullable=False, default=0),
    sa.Column("output_tokens", sa.BigInteger, nullable=False, default=0),
    sa.Column("cache_creation_input_tokens", sa.BigInteger, nullable=False, default=0),
    sa.Column("cache_read_input_tokens", sa.BigInteger, nullable=False, default=0),
)
_DAILY_SUMS = ("requests", *USAGE_FIELDS)

#: The key proxies writing to this database, each seen at its last sync (the rate share).
replicas_table = sa.Table(
    "claudehub_keyproxy_replicas",
    metadata,
    sa.Column("id", sa.String(64), primary_key=True),
    sa.Column("seen", sa.Float, nullable=False),
)


#: Requests sent upstream and not yet recorded, each with the most it can cost: what a key
#: proxy that dies mid-answer leaves behind, charged by :meth:`UsageStore.charge_orphans`.
inflight_table = sa.Table(
    "claudehub_keyproxy_inflight",
    metadata,
    sa.Column("id", sa.String(64), primary_key=True),
    sa.Column("replica", sa.String(64), nullable=False, index=True),
    sa.Column("ts", sa.Float, nullable=False),
    sa.Column("day", sa.String(10), nullable=False),
    sa.Column("user", sa.String(255), nullable=False),
    sa.Column("server", sa.String(255), nullable=False, default=""),
    sa.Column("path", sa.String(64), nullable=False),
    sa.Column("tokens", sa.BigInteger, nullable=False),
)

#: Seconds a request waits for its reservation to be written before it goes on regardless.
RESERVE_WAIT = 2.0

#: The status of a usage row charged from a reservation its key proxy never settled.
CUT_STATUS = 0


def reservation_tokens(body: bytes) -> int:
    """The most a Messages request with ``body`` can cost: every byte of it as an input token
    (a token is never shorter than a byte) plus the output it may ask for (``max_tokens``)."""
    max_tokens = _decode_after(body, b'"max_tokens"')
    out = max_tokens if isinstance(max_tokens, int) and max_tokens > 0 else 0
    return len(body) + out


def day_string(ts: float) -> str:
    return datetime.datetime.fromtimestamp(ts, datetime.UTC).strftime("%Y-%m-%d")


#: Every SQLite connection of the store. A budgeted request waits for its reservation's
#: commit before it goes upstream: in SQLite's default rollback journal a commit is several
#: fsyncs (10-30 ms on this project's benchmark VM), in WAL mode with ``synchronous=NORMAL``
#: one append to the log, synced at checkpoints. That keeps every commit through a crash of
#: the key proxy (what the reservation is for); a power loss of the node may lose the last
#: ones, never corrupt the file. WAL needs a local filesystem (the chart's PVC), as SQLite
#: always does.
SQLITE_PRAGMAS = ("PRAGMA journal_mode=WAL", "PRAGMA synchronous=NORMAL")


def _tune_sqlite(dbapi_connection: Any, _record: Any) -> None:
    cursor = dbapi_connection.cursor()
    try:
        for pragma in SQLITE_PRAGMAS:
            cursor.execute(pragma)
    finally:
        cursor.close()


class UsageStore:
    """The usage table. Blocking calls: run them in a worker thread."""

    def __init__(self, url: str) -> None:
        kwargs: dict[str, Any] = {}
        if url.startswith("sqlite"):
            kwargs["connect_args"] = {"check_same_thread": False}
        if url.startswith("postgresql://"):
            url = "postgresql+psycopg://" + url[len("postgresql://") :]
        if url.startswith("postgresql"):
            # A database host that vanished (its pod killed, its node gone) answers nothing:
            # without these a write waits for TCP's own timeout (minutes), and with it every
            # request's reservation (libpq: connect, unacknowledged-send and keepalive limits).
            kwargs["connect_args"] = {
                "connect_timeout": 5,
                "tcp_user_timeout": 5000,
                "keepalives": 1,
                "keepalives_idle": 5,
                "keepalives_interval": 2,
                "keepalives_count": 2,
            }
        self.engine = sa.create_engine(url, pool_pre_ping=True, **kwargs)
        if self.engine.dialect.name == "sqlite" and self.engine.url.database not in (
            None,
            "",
            ":memory:",
        ):
            sa.event.listen(self.engine, "connect", _tune_sqlite)
        self._schema_ready = False

    def _ensure_schema(self) -> None:
        # lazily, so the proxy starts (and serves) even while the database is unreachable
        if not self._schema_ready:
            with self.engine.begin() as conn:
                new_daily = not sa.inspect(conn).has_table(daily_table.name)
                metadata.create_all(conn)
                if new_daily:
                    self._backfill_daily(conn)
            self._schema_ready = True

    @staticmethod
    def _backfill_daily(conn: sa.Connection) -> None:
        # A database from before the daily table: today's budgets keep what was spent.
        t = usage_table
        sums = [sa.func.sum(t.c[name]) for name in _DAILY_SUMS]
        select = sa.select(t.c.day, t.c.user, *sums).group_by(t.c.day, t.c.user)
        conn.execute(daily_table.insert().from_select(["day", "user", *_DAILY_SUMS], select))

    def _upsert(self, table: sa.Table) -> Any:
        dialect = postgresql if self.engine.dialect.name == "postgresql" else sqlite
        return dialect.insert(table)

    def write(
        self, ts: float, window: dict[UsageKey, list[float]], releases: Iterable[str] = ()
    ) -> None:
        """Insert one row per key of a flush window (see :meth:`UsageRecorder.record`) and
        delete the reservations of the requests it records (``releases``), in one transaction."""
        releases = list(releases)
        day = day_string(ts)
        rows = [
            {
                "ts": ts,
                "day": day,
                "user": key[0],
                "server": key[1],
                "model": key[2],
                "path": key[3],
                "status": key[4],
                "stream": key[5],
                "requests": int(agg[0]),
                "input_tokens": int(agg[1]),
                "output_tokens": int(agg[2]),
                "cache_creation_input_tokens": int(agg[3]),
                "cache_read_input_tokens": int(agg[4]),
                "latency_ms_sum": round(agg[5], 3),
                "latency_ms_max": round(agg[6], 3),
                "ttfb_ms_sum": round(agg[7], 3),
            }
            for key, agg in window.items()
        ]
        per_user: dict[str, list[int]] = {}
        for key, agg in window.items():  # agg starts with requests and the four token sums
            sums = per_user.setdefault(key[0], [0] * len(_DAILY_SUMS))
            for i in range(len(_DAILY_SUMS)):
                sums[i] += int(agg[i])
        # sorted, so two replicas' upserts take row locks in the same order (no deadlock)
        daily = [
            {"day": day, "user": user, **dict(zip(_DAILY_SUMS, sums, strict=True))}
            for user, sums in sorted(per_user.items())
        ]
        self._ensure_schema()
        with self.engine.begin() as conn:
            if rows:
                conn.execute(usage_table.insert(), rows)
            self._add_daily(conn, daily)
            if releases:
                conn.execute(inflight_table.delete().where(inflight_table.c.id.in_(releases)))

    def _add_daily(self, conn: sa.Connection, daily: list[dict[str, Any]]) -> None:
        if daily:
            stmt = self._upsert(daily_table).values(daily)
            stmt = stmt.on_conflict_do_update(
                index_elements=["day", "user"],
                set_={n: daily_table.c[n] + stmt.excluded[n] for n in _DAILY_SUMS},
            )
            conn.execute(stmt)

    def reserve(self, rows: list[dict[str, Any]]) -> None:
        """Write reservations (rows of the in-flight table), all in one transaction."""
        self._ensure_schema()
        with self.engine.begin() as conn:
            conn.execute(inflight_table.insert(), rows)

    def charge_orphans(self, everyone: bool = False) -> int:
        """Charge every reservation whose key proxy is gone (not in the replicas table; with
        ``everyone``, all of them: a lone key proxy starting has none of its own in flight) to
        its user's day, as a usage row of status :data:`CUT_STATUS`; return how many."""
        t = inflight_table
        query = sa.select(t.c.id, t.c.ts, t.c.day, t.c.user, t.c.server, t.c.path, t.c.tokens)
        if not everyone:
            query = query.where(t.c.replica.not_in(sa.select(replicas_table.c.id)))
        self._ensure_schema()
        with self.engine.begin() as conn:
            found = list(conn.execute(query.order_by(t.c.user)))
            if not found:
                return 0
            rows = [
                {
                    "ts": r.ts,
                    "day": r.day,
                    "user": r.user,
                    "server": r.server,
                    "model": "",
                    "path": r.path,
                    "status": CUT_STATUS,
                    "stream": True,
                    "requests": 1,
                    "input_tokens": int(r.tokens),
                    "output_tokens": 0,
                    "cache_creation_input_tokens": 0,
                    "cache_read_input_tokens": 0,
                    "latency_ms_sum": 0.0,
                    "latency_ms_max": 0.0,
                    "ttfb_ms_sum": 0.0,
                }
                for r in found
            ]
            conn.execute(usage_table.insert(), rows)
            per_day: dict[tuple[str, str], list[int]] = {}
            for r in found:
                sums = per_day.setdefault((r.day, r.user), [0] * len(_DAILY_SUMS))
                sums[0] += 1
                sums[1] += int(r.tokens)
            self._add_daily(
                conn,
                [
                    {"day": d, "user": u, **dict(zip(_DAILY_SUMS, sums, strict=True))}
                    for (d, u), sums in sorted(per_day.items())
                ],
            )
            conn.execute(t.delete().where(t.c.id.in_([r.id for r in found])))
            return len(found)

    def daily_totals(self, day: str) -> dict[str, list[int]]:
        """Per-user (input, output, cache creation, cache read) tokens of one UTC day, as
        written by every key proxy on this database."""
        t = daily_table
        q = sa.select(t.c.user, *(t.c[name] for name in USAGE_FIELDS)).where(t.c.day == day)
        self._ensure_schema()
        with self.engine.connect() as conn:
            return {row[0]: [int(x or 0) for x in row[1:]] for row in conn.execute(q)}

    def heartbeat(self, replica: str, now: float, stale_after: float) -> int:
        """Mark ``replica`` alive at ``now``; forget replicas silent for ``stale_after``
        seconds; return how many are alive (this one included)."""
        t = replicas_table
        self._ensure_schema()
        with self.engine.begin() as conn:
            stmt = self._upsert(t).values(id=replica, seen=now)
            conn.execute(
                stmt.on_conflict_do_update(index_elements=["id"], set_={"seen": stmt.excluded.seen})
            )
            conn.execute(t.delete().where(t.c.seen < now - stale_after))
            return int(conn.execute(sa.select(sa.func.count()).select_from(t)).scalar_one())

    def forget_replica(self, replica: str) -> None:
        """Remove ``replica`` (a clean stop), so the others take its share at once."""
        self._ensure_schema()
        with self.engine.begin() as conn:
            conn.execute(replicas_table.delete().where(replicas_table.c.id == replica))

    def summary(self, since: str, until: str, user: str | None = None) -> list[dict[str, Any]]:
        """Usage per day, user and model between two UTC days (inclusive)."""
        t = usage_table
        q = sa.select(
            t.c.day,
            t.c.user,
            t.c.model,
            sa.func.sum(t.c.requests),
            sa.func.sum(sa.case((t.c.status >= 400, t.c.requests), else_=0)),
            sa.func.sum(t.c.input_tokens),
            sa.func.sum(t.c.output_tokens),
            sa.func.sum(t.c.cache_creation_input_tokens),
            sa.func.sum(t.c.cache_read_input_tokens),
            sa.func.sum(t.c.latency_ms_sum),
            sa.func.max(t.c.latency_ms_max),
        ).where(t.c.day >= since, t.c.day <= until)
        if user:
            q = q.where(t.c.user == user)
        q = q.group_by(t.c.day, t.c.user, t.c.model).order_by(t.c.day, t.c.user, t.c.model)
        self._ensure_schema()
        with self.engine.connect() as conn:
            return [
                {
                    "day": row[0],
                    "user": row[1],
                    "model": row[2],
                    "requests": int(row[3]),
                    "errors": int(row[4] or 0),
                    "input_tokens": int(row[5] or 0),
                    "output_tokens": int(row[6] or 0),
                    "cache_creation_input_tokens": int(row[7] or 0),
                    "cache_read_input_tokens": int(row[8] or 0),
                    "mean_latency_ms": round(float(row[9] or 0) / max(1, int(row[3] or 0)), 2),
                    "max_latency_ms": round(float(row[10] or 0), 2),
                }
                for row in conn.execute(q)
            ]

    def close(self) -> None:
        self.engine.dispose()


class UsageRecorder:
    """Sums usage per (user, server, model, path, status, stream) and writes it in batches.

    Recording is a dict update on the hot path; every ``flush_interval`` seconds the window's
    sums become one database row per key, written in a worker thread. At thousands of
    requests per second that is a handful of rows, not thousands.
    """

    def __init__(self, store: UsageStore | None, *, flush_interval: float = 1.0) -> None:
        self.store = store
        self.flush_interval = flush_interval
        self.window: dict[UsageKey, list[float]] = {}
        self.window_start = time.time()
        # reservations the requests of the current window settle (deleted with its rows)
        self.releases: list[str] = []
        self.backlog: list[tuple[float, dict[UsageKey, list[float]], list[str]]] = []
        self.recorded = 0
        self.written = 0
        self.errors = 0
        #: The key proxy whose reservations these are (:class:`~claudehub.proxy.shared.SharedLimits`
        #: heartbeats under the same id; a reservation outliving it is charged).
        self.replica = uuid.uuid4().hex
        self.reserved = 0
        self.reserve_errors = 0
        self._executor = concurrent.futures.ThreadPoolExecutor(1, "claudehub-usage")
        self._task: asyncio.Task[None] | None = None
        self._lock = asyncio.Lock()
        self._to_reserve: list[tuple[dict[str, Any], asyncio.Future[bool]]] = []
        self._reserver: asyncio.Task[None] | None = None

    def record(
        self,
        key: UsageKey,
        usage: list[int],
        latency_ms: float,
        ttfb_ms: float,
        reservation: str | None = None,
    ) -> None:
        """Add one answered request: ``usage`` is (input, output, cache creation, cache read);
        ``reservation`` (from :meth:`reserve`) is settled by the write that records it."""
        self.recorded += 1
        if reservation is not None:
            self.releases.append(reservation)
        agg = self.window.get(key)
        if agg is None:
            self.window[key] = [
                1,
                usage[0],
                usage[1],
                usage[2],
                usage[3],
                latency_ms,
                latency_ms,
                ttfb_ms,
            ]
            return
        agg[0] += 1
        agg[1] += usage[0]
        agg[2] += usage[1]
        agg[3] += usage[2]
        agg[4] += usage[3]
        agg[5] += latency_ms
        if latency_ms > agg[6]:
            agg[6] = latency_ms
        agg[7] += ttfb_ms

    @property
    def pending(self) -> int:
        """Rows waiting to be written."""
        return len(self.window) + sum(len(w) for _, w, _ in self.backlog)

    async def reserve(self, user: str, server: str, path: str, tokens: int) -> str | None:
        """Write a reservation of ``tokens`` for a request about to go upstream; return its id
        once it is in the database (None without a database, or when the write failed: the
        request then goes on, counted in memory as before)."""
        if self.store is None:
            return None
        now = time.time()
        rid = uuid.uuid4().hex
        row: dict[str, Any] = {
            "id": rid,
            "replica": self.replica,
            "ts": now,
            "day": day_string(now),
            "user": user,
            "server": server,
            "path": path,
            "tokens": int(tokens),
        }
        done: asyncio.Future[bool] = asyncio.get_running_loop().create_future()
        self._to_reserve.append((row, done))
        if self._reserver is None or self._reserver.done():
            self._reserver = asyncio.ensure_future(self._write_reservations())
        try:
            # A slow database delays an answer by this much at most; the reservation is
            # still written (and released) after the request went on.
            ok = await asyncio.wait_for(asyncio.shield(done), RESERVE_WAIT)
        except TimeoutError:
            log.warning("Reserving usage took over %g s: the request goes on", RESERVE_WAIT)
            return rid
        return rid if ok else None

    async def _write_reservations(self) -> None:
        # Group commit: whoever arrived while a batch was written goes in the next one.
        while self._to_reserve:
            batch, self._to_reserve = self._to_reserve, []
            try:
                await self.run_in_db(self.store.reserve, [row for row, _ in batch])  # type: ignore[union-attr]
            except sa.exc.SQLAlchemyError as e:
                self.reserve_errors += 1
                log.warning(
                    "Cannot reserve usage for %d requests (counted in memory): %s", len(batch), e
                )
                ok = False
            else:
                self.reserved += len(batch)
                ok = True
            for _, done in batch:
                if not done.done():
                    done.set_result(ok)

    def release(self, reservation: str) -> None:
        """Settle a reservation whose request recorded nothing (it never went upstream)."""
        self.releases.append(reservation)

    async def run_in_db(self, fn: Any, *args: Any) -> Any:
        """Run a blocking store call in the usage thread (serialised with the writes)."""
        return await asyncio.get_running_loop().run_in_executor(self._executor, fn, *args)

    async def flush(self) -> None:
        """Close the current window and write every window not written yet."""
        if self.window or self.releases:
            self.backlog.append((self.window_start, self.window, self.releases))
            self.window = {}
            self.releases = []
        self.window_start = time.time()
        if self.store is None:
            self.backlog.clear()
            return
        async with self._lock:  # the timer and the usage API may flush at the same time
            while self.backlog:
                ts, window, releases = self.backlog[0]
                try:
                    await self.run_in_db(self.store.write, ts, window, releases)
                except sa.exc.SQLAlchemyError as e:
                    self.errors += 1
                    log.error("Writing %d usage rows failed (will retry): %s", len(window), e)
                    del self.backlog[:-1000]  # bounded: keep the newest windows
                    return
                self.backlog.pop(0)
                self.written += len(window)

    async def run(self) -> None:
        while True:
            await asyncio.sleep(self.flush_interval)
            await self.flush()

    def start(self) -> None:
        self._task = asyncio.ensure_future(self.run())

    async def stop(self) -> None:
        await cancel_and_wait(self._task)
        self._task = None
        if self._reserver is not None:
            await asyncio.wait([self._reserver])
        await self.flush()
        if self.store is not None:
            await self.run_in_db(self.store.close)
        self._executor.shutdown(wait=True)
