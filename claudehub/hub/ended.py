"""Who ended a learner's session, kept in the hub process so the learner can be told.

The audit hook (:mod:`claudehub.hub.audit`) remembers an instructor's or admin's
``DELETE /hub/api/users/<learner>/server`` here. The learner's page, on losing its server
(its own URL then answers through the hub: 424, "not running"), goes to
``/hub/claudehub/session-ended``, which says in plain words who ended it and when, or just
that it ended (the idle culler, the learner's own stop elsewhere). The hook sees a request
only once it has finished, and the page can get there first: the page waits while the
server is still stopping, then briefly for the record.
"""

from __future__ import annotations

import asyncio
import datetime
import time
from dataclasses import dataclass

from jupyterhub.handlers import BaseHandler
from tornado import web

#: How long a record is told (after that the learner sees "Your session has ended").
KEEP_SECONDS = 3600.0
#: Most seconds the page waits for a stopping server, then for the record of who stopped it.
STOP_WAIT = 20.0
RECORD_WAIT = 3.0


@dataclass(frozen=True)
class Ended:
    """One ended session: by whom (a hub user), whether they are an admin, when (UNIX)."""

    by: str
    by_admin: bool
    at: float

    @property
    def role(self) -> str:
        return "an administrator" if self.by_admin else "your instructor"

    @property
    def time_text(self) -> str:
        return datetime.datetime.fromtimestamp(self.at, datetime.UTC).strftime("%H:%M UTC")


class EndedSessions:
    """Learner -> the last time someone else ended their session (bounded, in memory)."""

    def __init__(self, limit: int = 10_000) -> None:
        self.limit = limit
        self._by_user: dict[str, Ended] = {}
        self._changed: asyncio.Event | None = None  # made at the first wait (in the loop)

    def remember(self, learner: str, by: str, *, is_admin: bool, when: float) -> None:
        if len(self._by_user) >= self.limit:
            oldest = min(self._by_user, key=lambda u: self._by_user[u].at)
            del self._by_user[oldest]
        self._by_user[learner] = Ended(by, is_admin, when)
        if self._changed is not None:
            self._changed.set()
            self._changed = None

    def forget(self, learner: str) -> None:
        """The learner starts again: the old news is not theirs to read any more."""
        self._by_user.pop(learner, None)

    def get(self, learner: str, now: float | None = None) -> Ended | None:
        record = self._by_user.get(learner)
        if record is None or (now or time.time()) - record.at > KEEP_SECONDS:
            return None
        return record

    async def wait_for(self, learner: str, within: float) -> Ended | None:
        """The learner's record, waiting up to ``within`` seconds for one to arrive."""
        record = self.get(learner)
        loop = asyncio.get_running_loop()
        end = loop.time() + within
        while record is None and loop.time() < end:
            if self._changed is None:
                self._changed = asyncio.Event()
            try:
                async with asyncio.timeout(end - loop.time()):
                    await self._changed.wait()
            except TimeoutError:
                break
            record = self.get(learner)
        return record


ENDED = EndedSessions()


class SessionEndedHandler(BaseHandler):  # type: ignore[misc]
    """``GET /hub/claudehub/session-ended``: why the learner's session is gone, in words."""

    @web.authenticated
    async def get(self) -> None:
        user = self.current_user
        spawner = user.spawner if hasattr(user, "spawner") else None
        # The stop that closed the page's connection may still be under way: JupyterHub's
        # stop future (a private attribute; without it the page just does not wait).
        stopping = getattr(spawner, "_stop_future", None)
        if stopping is not None and not stopping.done():
            # asyncio.wait neither raises the stop's own failure (the hub reports it) nor
            # cancels the stop when the wait ends
            await asyncio.wait({stopping}, timeout=STOP_WAIT)
        record = ENDED.get(user.name)
        if record is None and not (spawner is not None and spawner.active):
            # the request that stopped it finishes (and is seen by the hook) just after
            record = await ENDED.wait_for(user.name, RECORD_WAIT)
        running = bool(spawner is not None and spawner.active)
        html = await self.render_template(
            "session_ended.html",
            ended=record,
            running=running,
            spawn_url=f"{self.hub.base_url}spawn/{user.escaped_name}",
            server_url=user.url if running else "",
        )
        self.set_header("Cache-Control", "no-store")
        self.finish(html)
