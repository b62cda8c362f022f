"""Flow control of a terminal's output: whether the pty may be read right now.

A pty session fans its output out to every attached client (browser tab). Reading the pty
faster than a client takes the output only moves the backlog from the kernel (where it blocks
the producer, e.g. ``yes``, for free) into the server's memory and the browser. Three holds,
each per client, stop the reading; any one of them, from any client, is enough:

``pause``
    The client said it cannot keep up (``["pause"]`` ... ``["resume"]``).
``window``
    The client acknowledges what it has drawn (``["ack", n]``) and more than ``ack_window``
    bytes sent to it are not drawn yet. Pause/resume alone cannot bound the backlog: what is
    in flight (socket buffers, proxies) when a pause is sent can be megabytes. The window
    opens again once at most half of it is outstanding.
``congested``
    The client's connection holds too much unsent output (transport backpressure): the
    safety net for clients that neither pause nor acknowledge.

Every hold expires after ``pause_timeout`` seconds: a throttled background tab that stops
answering must not stall the foreground one. An expired window also stops windowing the
client until it acknowledges again.

The class decides only; it neither reads nor writes. ``on_change`` is called whenever
``held`` flips, so the owner can add or remove its fd reader. Timers come from
``call_later`` (the running asyncio loop by default), so the decisions can be tested with
a fake clock.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable
from typing import Protocol

log = logging.getLogger(__name__)

PAUSE, WINDOW, CONGESTED = "pause", "window", "congested"


class Timer(Protocol):
    """What ``call_later`` returns (an ``asyncio.TimerHandle``)."""

    def cancel(self) -> None: ...


CallLater = Callable[[float, Callable[[], None]], Timer]


def _loop_call_later(delay: float, callback: Callable[[], None]) -> Timer:
    return asyncio.get_running_loop().call_later(delay, callback)


class FlowControl:
    """The read/no-read decision of one pty session, from its clients' holds."""

    def __init__(
        self,
        *,
        pause_timeout: float,
        ack_window: int,
        on_change: Callable[[], None] = lambda: None,
        call_later: CallLater = _loop_call_later,
    ) -> None:
        self.pause_timeout = pause_timeout
        #: bytes a client that acknowledges may have sent but not drawn (<= 0: no window)
        self.ack_window = ack_window
        self._on_change = on_change
        self._call_later = call_later
        self._sent: dict[object, int] = {}  # attached clients: bytes sent since attaching
        self._acked: dict[object, int] = {}  # clients that acknowledge: bytes drawn
        # (kind, client) -> the timer that expires the hold
        self._holds: dict[tuple[str, object], Timer] = {}

    # ------------------------------------------------------------------ state

    @property
    def held(self) -> bool:
        """Some client holds the output: do not read the pty."""
        return bool(self._holds)

    def holds(self, client: object) -> frozenset[str]:
        """The holds ``client`` has (``pause``, ``window``, ``congested``)."""
        return frozenset(kind for kind, holder in self._holds if holder == client)

    def in_flight(self, client: object) -> int | None:
        """Bytes sent to ``client`` and not drawn yet, if it acknowledges."""
        if client not in self._acked:
            return None
        return self._sent.get(client, 0) - self._acked[client]

    # ------------------------------------------------------------------ clients

    def attach(self, client: object, sent: int = 0) -> None:
        """``client`` is attached and has been sent ``sent`` bytes already (the replay)."""
        self._sent[client] = sent

    def detach(self, client: object) -> None:
        """``client`` is gone: forget it and lift its holds."""
        self._sent.pop(client, None)
        self._acked.pop(client, None)
        was = self.held
        for kind in (PAUSE, WINDOW, CONGESTED):
            self._cancel(kind, client)
        self._notify(was)

    def release_all(self) -> None:
        """Lift every hold, without calling ``on_change`` (the process is stopping; the
        owner updates its reader itself). Byte counts are kept."""
        for timer in self._holds.values():
            timer.cancel()
        self._holds.clear()

    # ------------------------------------------------------------------ events

    def pause(self, client: object) -> None:
        """``client`` cannot keep up: hold until it resumes (or ``pause_timeout``)."""
        if client in self._sent:
            self._hold(PAUSE, client, self.resume)

    def resume(self, client: object) -> None:
        was = self.held
        self._cancel(PAUSE, client)
        self._notify(was)

    def ack(self, client: object, drawn: int) -> None:
        """``client`` has drawn the first ``drawn`` bytes it was sent since attaching."""
        if client not in self._sent:
            return
        self._acked[client] = max(drawn, self._acked.get(client, 0))
        if self._sent[client] - self._acked[client] <= self.ack_window // 2:
            was = self.held
            self._cancel(WINDOW, client)
            self._notify(was)

    def sent(self, client: object, size: int) -> None:
        """``size`` more bytes went to ``client``: its send window may be full now."""
        if client not in self._sent:
            return
        self._sent[client] += size
        if (
            self.ack_window > 0
            and client in self._acked
            and (WINDOW, client) not in self._holds
            and self._sent[client] - self._acked[client] > self.ack_window
        ):
            self._hold(WINDOW, client, self._expire_window)

    def congested(self, client: object, congested: bool) -> None:
        """The client's connection holds too much unsent output (or no longer does)."""
        if congested and client in self._sent:
            self._hold(CONGESTED, client, lambda c: self.congested(c, False))
        else:
            was = self.held
            self._cancel(CONGESTED, client)
            self._notify(was)

    # ------------------------------------------------------------------ internals

    def _expire_window(self, client: object) -> None:
        # it stopped acknowledging (a throttled background tab?): stop waiting for it
        log.debug("send window of a terminal client expired after %ss", self.pause_timeout)
        self._acked.pop(client, None)
        was = self.held
        self._cancel(WINDOW, client)
        self._notify(was)

    def _hold(self, kind: str, client: object, expire: Callable[[object], None]) -> None:
        """Set (or re-arm) a hold that ``expire(client)`` lifts after ``pause_timeout``."""
        was = self.held
        old = self._holds.pop((kind, client), None)
        if old is not None:
            old.cancel()

        def expired() -> None:
            log.debug("%s hold of a terminal client expired after %ss", kind, self.pause_timeout)
            expire(client)

        self._holds[(kind, client)] = self._call_later(self.pause_timeout, expired)
        self._notify(was)

    def _cancel(self, kind: str, client: object) -> None:
        timer = self._holds.pop((kind, client), None)
        if timer is not None:
            timer.cancel()

    def _notify(self, was: bool) -> None:
        if was != self.held:
            self._on_change()
