"""A first-come, first-served queue for server starts: a class logging in at once waits its
turn instead of getting an error page.

A single-user server's start is CPU-bound (about a CPU-second of Python imports). When a
whole class logs in at once, starting every server at the same moment makes each of them
slow — all of them reach the hub's timeouts together and some fail. Admitting a few at a
time (``slots``, about the number of cores) finishes each start quickly and in order; the
others wait in the queue, and the spawn-pending page tells each learner how many are ahead.

A slot is held from the start of the spawn (the course fetch) until the server listens, so
the hub's ``http_timeout`` only covers a server that is already up; the wait in the queue
counts against ``start_timeout``, which :func:`start_timeout_for` derives from the class size.

The queue's length and the slots in use are Prometheus gauges on the default registry, which
JupyterHub serves at ``/hub/metrics`` (``claudehub_start_queue_waiting``, ``_busy``).
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import math
import weakref
from collections.abc import AsyncIterator, Awaitable, Callable

from prometheus_client import Gauge


class StartQueue:
    """At most ``slots`` holders at a time; the others wait in arrival order."""

    def __init__(self, slots: int) -> None:
        if slots < 1:
            raise ValueError(f"a start queue needs at least one slot, not {slots}")
        self.slots = slots
        self._busy = 0
        self._waiting: collections.deque[asyncio.Future[None]] = collections.deque()
        _QUEUES.add(self)

    @property
    def busy(self) -> int:
        """Slots in use now."""
        return self._busy

    @property
    def waiting(self) -> int:
        """Starts waiting for a slot now."""
        return len(self._waiting)

    def ahead_of(self, ticket: asyncio.Future[None] | None) -> int:
        """How many waiting starts are ahead of ``ticket`` (0 once it holds a slot)."""
        if ticket is None or ticket.done():
            return 0
        try:
            return self._waiting.index(ticket)
        except ValueError:
            return 0

    @contextlib.asynccontextmanager
    async def slot(
        self, on_ticket: Callable[[asyncio.Future[None] | None], None] | None = None
    ) -> AsyncIterator[None]:
        """Hold a slot for the body. ``on_ticket`` gets the waiting ticket (for
        :meth:`ahead_of`), or None when a slot was free at once."""
        if self._busy < self.slots and not self._waiting:
            self._busy += 1
            if on_ticket:
                on_ticket(None)
        else:
            ticket: asyncio.Future[None] = asyncio.get_running_loop().create_future()
            self._waiting.append(ticket)
            if on_ticket:
                on_ticket(ticket)
            try:
                await ticket  # _release hands its slot straight to the first waiter
            except asyncio.CancelledError:
                if ticket in self._waiting:
                    self._waiting.remove(ticket)
                elif ticket.done() and not ticket.cancelled():
                    self._release()  # handed a slot just as it gave up: pass it on
                raise
        try:
            yield
        finally:
            self._release()

    def _release(self) -> None:
        while self._waiting:
            ticket = self._waiting.popleft()
            if not ticket.done():
                ticket.set_result(None)
                return
        self._busy -= 1


#: Every live queue (one per spawner class in a hub); the gauges add them up.
_QUEUES: weakref.WeakSet[StartQueue] = weakref.WeakSet()

START_QUEUE_WAITING = Gauge(
    "claudehub_start_queue_waiting", "Server starts waiting in the start queue for a slot."
)
START_QUEUE_WAITING.set_function(lambda: sum(q.waiting for q in list(_QUEUES)))
START_QUEUE_BUSY = Gauge(
    "claudehub_start_queue_busy", "Slots of the start queue in use: server starts under way."
)
START_QUEUE_BUSY.set_function(lambda: sum(q.busy for q in list(_QUEUES)))


def shared_queue(owner: type, slots: int) -> StartQueue:
    """The one queue of ``owner``'s spawners (every spawner of the hub process shares it, as
    ``owner._start_queue``), made again when ``slots`` has been changed."""
    queue: StartQueue | None = getattr(owner, "_start_queue", None)
    if queue is None or queue.slots != slots:
        queue = StartQueue(slots)
        owner._start_queue = queue  # type: ignore[attr-defined]
    return queue


async def wait_until_listening(
    host: str, port: int, exited: Callable[[], Awaitable[int | None]], within: float
) -> None:
    """Wait until something accepts TCP connections on ``host:port``; raise RuntimeError if
    ``exited()`` reports the process gone first, TimeoutError after ``within`` seconds."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + within
    delay = 0.05
    while True:
        try:
            _, writer = await asyncio.open_connection(host, port)
        except OSError:
            pass
        else:
            writer.close()
            with contextlib.suppress(OSError):
                await writer.wait_closed()
            return
        status = await exited()
        if status is not None:
            raise RuntimeError(f"the server exited with status {status} while starting")
        if loop.time() > deadline:
            raise TimeoutError(f"the server did not listen on port {port} in {within:g} s")
        await asyncio.sleep(delay)
        delay = min(delay * 1.5, 0.5)


#: CPU-seconds one learner's start costs on this kind of machine (benchmarks/load, local
#: mode, 2026-12-02): the single-user server about 1, the hub about 0.4, and Claude Code's
#: first screen, which competes for the same cores while later servers start, about 3.5.
CPU_SECONDS_PER_LOGIN = 5.0


def start_timeout_for(class_size: int, cores: int, single_start: float = 60.0) -> int:
    """``Spawner.start_timeout`` that lets the last of ``class_size`` learners logging in at
    once on ``cores`` cores wait its turn: the time the machine needs for everyone's start
    (CPU-bound, see CPU_SECONDS_PER_LOGIN) with a 1.5x margin, plus one lone start."""
    queued = class_size * CPU_SECONDS_PER_LOGIN / max(1, cores)
    return int(single_start + math.ceil(1.5 * queued))


def start_slots_for(cores: int) -> int:
    """Starts admitted at once: two per core keeps the cores busy while a start waits on
    disk or the hub, and few enough that each one finishes in seconds."""
    return max(2, 2 * cores)


def waiting_message(ahead: int) -> str:
    """What the spawn-pending page shows a learner waiting in the queue."""
    if ahead == 0:
        return "Many learners are starting at once: you are next in the queue."
    others = "learner is" if ahead == 1 else "learners are"
    return f"Many learners are starting at once: {ahead} {others} ahead of you in the queue."


def queued_start_timeout(single_start: int, slots: int, starting: int) -> int:
    """``Spawner.start_timeout`` for a hub whose starts queue ``slots`` at a time while at
    most ``starting`` start at once (JupyterHub's ``concurrent_spawn_limit``; 0: no bound):
    each wave of ``slots`` may take ``single_start``, so the last learner's wait and start
    fit. Without a queue or a bound it is ``single_start``."""
    if slots <= 0 or starting <= slots:
        return single_start
    return single_start * math.ceil(starting / slots)
