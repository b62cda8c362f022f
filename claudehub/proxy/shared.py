"""One budget and one rate limit for every key proxy on a usage database.

Several key proxies (``keyproxy.replicas`` > 1, on PostgreSQL) must not give a learner a
budget each. Nothing here is on a request's path: :class:`Limits` decides every request from
memory, as with one replica, and :class:`SharedLimits` brings in what the others counted, every
``interval`` seconds, from the side:

1. it takes the usage this replica counted since the last round and writes it, with the usage
   rows, to the database, where an atomic upsert adds it to the user's total of the day;
2. it reads every user's total of the day (one small indexed query) and sets each budget to
   that total plus what this replica counted while the round ran;
3. it marks this replica alive and counts the live ones: each enforces ``1 / live`` of the
   rate limit (a pre-reserved share: together they allow the configured rate, no more);
4. it charges the reservations of replicas no longer alive (requests a crash cut,
   :mod:`claudehub.proxy.usage`) to their users' days, before reading the totals.

How far a user can overshoot: another replica's usage is visible here at most
``2 * interval`` seconds after its response ended (one round there, one round here). So on top
of what one replica allows (requests already running when the budget runs out finish), a user
can overshoot by the requests they start on other replicas in those ``2 * interval`` seconds
before the budget runs out everywhere: at most ``burst + rate * 2 * interval / 60`` requests
with a rate limit, each costing at most its input plus ``max_tokens_cap``. A learner sending
one request at a time, each taking longer than ``2 * interval`` (Claude's answers do), gets
at most the one request that crossed the budget, as with one replica. When the database is
unreachable, each replica goes on with what it knows and writes its usage once the database
is back.
"""

from __future__ import annotations

import asyncio
import logging
import time
import uuid

import sqlalchemy as sa

from claudehub.proxy.limits import Limits, utc_day
from claudehub.proxy.tasks import cancel_and_wait
from claudehub.proxy.usage import UsageRecorder, UsageStore, day_string

log = logging.getLogger("claudehub.proxy")


class SharedLimits:
    """Keeps a replica's :class:`Limits` in step with the others on one usage database."""

    def __init__(
        self,
        limits: Limits,
        recorder: UsageRecorder,
        store: UsageStore,
        *,
        interval: float = 1.0,
        stale_after: float | None = None,
        replica: str | None = None,
    ) -> None:
        self.limits = limits
        self.recorder = recorder
        self.store = store
        self.interval = interval
        #: a replica silent this long no longer holds a share of the rate limit
        self.stale_after = stale_after if stale_after is not None else max(10.0, 5 * interval)
        self.replica = replica or uuid.uuid4().hex
        recorder.replica = self.replica  # its reservations live as long as this heartbeat
        self.replicas = 1
        self.rounds = 0
        self.errors = 0
        self._task: asyncio.Task[None] | None = None

    async def sync(self) -> bool:
        """One round (see the module docstring). False when the database could not be used."""
        limits = self.limits
        now = limits.wallclock()
        day = utc_day(now)
        # No await between taking the count and the recorder closing its window: what the
        # window holds and what was taken are the same requests.
        taken = limits.take_unsynced()
        await self.recorder.flush()
        if self.recorder.backlog:  # not written: keep counting it here until it is
            limits.give_back_unsynced(taken)
            self.errors += 1
            return False
        try:
            totals, live = await self.recorder.run_in_db(self._read, day_string(now), time.time())
        except sa.exc.SQLAlchemyError as e:
            self.errors += 1
            log.warning("Cannot read the shared usage totals (limits stay local): %s", e)
            return False
        limits.set_shared_usage(day, {u: limits.budget_tokens(t) for u, t in totals.items()})
        self.replicas = max(1, live)
        limits.rate_share = 1.0 / self.replicas
        self.rounds += 1
        return True

    def _read(self, day: str, now: float) -> tuple[dict[str, list[int]], int]:
        live = self.store.heartbeat(self.replica, now, self.stale_after)
        # what a replica that died mid-answer reserved is charged before the totals are read
        charged = self.store.charge_orphans()
        if charged:
            log.warning(
                "Charged %d requests cut by a stopped key proxy at their reservation", charged
            )
        return self.store.daily_totals(day), live

    async def _run(self) -> None:
        while True:
            await asyncio.sleep(self.interval)
            await self.sync()

    def start(self) -> None:
        """Sync every ``interval`` seconds in the background."""
        self._task = asyncio.ensure_future(self._run())

    async def stop(self) -> None:
        """Stop syncing and give up this replica's share of the rate limit at once."""
        await cancel_and_wait(self._task)
        self._task = None
        try:
            await self.recorder.run_in_db(self.store.forget_replica, self.replica)
        except sa.exc.SQLAlchemyError as e:
            log.warning("Cannot remove this replica from the database: %s", e)
