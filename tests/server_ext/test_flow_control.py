"""FlowControl's decisions, without a pty or an event loop: holds of three kinds (pause, send
window, congestion) per client, their expiry on a fake clock, and ``on_change`` exactly when
the read/no-read decision flips."""

from __future__ import annotations

from collections.abc import Callable

import pytest

from claudehub.server_ext.flow import CONGESTED, PAUSE, WINDOW, FlowControl

TIMEOUT = 10.0
WINDOW_SIZE = 1000


class FakeTimer:
    def __init__(self, clock: FakeClock, when: float, callback: Callable[[], None]) -> None:
        self.clock, self.when, self.callback = clock, when, callback
        self.cancelled = False

    def cancel(self) -> None:
        self.cancelled = True


class FakeClock:
    """``call_later`` on a clock that moves only when told to."""

    def __init__(self) -> None:
        self.now = 0.0
        self.timers: list[FakeTimer] = []

    def call_later(self, delay: float, callback: Callable[[], None]) -> FakeTimer:
        timer = FakeTimer(self, self.now + delay, callback)
        self.timers.append(timer)
        return timer

    def advance(self, seconds: float) -> None:
        self.now += seconds
        due = [t for t in self.timers if not t.cancelled and t.when <= self.now]
        self.timers = [t for t in self.timers if t not in due]
        for timer in sorted(due, key=lambda t: t.when):
            timer.callback()

    @property
    def pending(self) -> int:
        return sum(not t.cancelled for t in self.timers)


class Harness:
    def __init__(self, ack_window: int = WINDOW_SIZE) -> None:
        self.clock = FakeClock()
        self.changes: list[bool] = []
        self.flow = FlowControl(
            pause_timeout=TIMEOUT,
            ack_window=ack_window,
            on_change=lambda: self.changes.append(self.flow.held),
            call_later=self.clock.call_later,
        )


@pytest.fixture
def h() -> Harness:
    return Harness()


A, B = "tab-a", "tab-b"


def test_nothing_held_at_first(h: Harness) -> None:
    h.flow.attach(A)
    assert not h.flow.held
    assert h.flow.holds(A) == frozenset()
    assert h.flow.in_flight(A) is None  # it has not acknowledged anything: no window
    h.flow.sent(A, 10 * WINDOW_SIZE)
    assert not h.flow.held  # a client that never acks is not windowed
    assert h.changes == []


def test_pause_holds_until_resume(h: Harness) -> None:
    h.flow.attach(A)
    h.flow.pause(A)
    assert h.flow.held and h.flow.holds(A) == {PAUSE}
    h.flow.pause(A)  # again: re-armed, not a second hold
    assert h.changes == [True]
    assert h.clock.pending == 1
    h.flow.resume(A)
    assert not h.flow.held
    assert h.changes == [True, False]
    assert h.clock.pending == 0
    h.flow.resume(A)  # a resume without a pause changes nothing
    assert h.changes == [True, False]


def test_a_pause_from_a_client_not_attached_is_ignored(h: Harness) -> None:
    h.flow.pause(A)
    assert not h.flow.held and h.changes == []


def test_a_pause_expires(h: Harness) -> None:
    h.flow.attach(A)
    h.flow.pause(A)
    h.clock.advance(TIMEOUT - 1)
    assert h.flow.held
    h.flow.pause(A)  # re-arming restarts the timeout
    h.clock.advance(TIMEOUT - 1)
    assert h.flow.held
    h.clock.advance(1)
    assert not h.flow.held
    assert h.changes == [True, False]


def test_the_window_closes_when_more_than_ack_window_is_in_flight(h: Harness) -> None:
    h.flow.attach(A, sent=100)  # the replay
    h.flow.ack(A, 100)
    assert h.flow.in_flight(A) == 0
    h.flow.sent(A, WINDOW_SIZE)
    assert not h.flow.held  # exactly the window: still open
    h.flow.sent(A, 1)
    assert h.flow.holds(A) == {WINDOW}
    assert h.flow.in_flight(A) == WINDOW_SIZE + 1
    h.flow.sent(A, 500)  # while closed, more output (already read) does not add a hold
    assert h.clock.pending == 1


def test_the_window_opens_at_half(h: Harness) -> None:
    h.flow.attach(A)
    h.flow.ack(A, 0)
    h.flow.sent(A, 2 * WINDOW_SIZE)
    assert h.flow.held
    h.flow.ack(A, WINDOW_SIZE)  # 1000 in flight: more than half
    assert h.flow.held
    h.flow.ack(A, 500)  # an older ack does not move it back
    assert h.flow.in_flight(A) == WINDOW_SIZE
    h.flow.ack(A, 2 * WINDOW_SIZE - WINDOW_SIZE // 2)  # exactly half in flight
    assert not h.flow.held
    assert h.changes == [True, False]


def test_an_expired_window_stops_windowing_until_the_next_ack(h: Harness) -> None:
    h.flow.attach(A)
    h.flow.ack(A, 0)
    h.flow.sent(A, WINDOW_SIZE + 1)
    h.clock.advance(TIMEOUT)
    assert not h.flow.held
    assert h.flow.in_flight(A) is None
    h.flow.sent(A, 10 * WINDOW_SIZE)
    assert not h.flow.held  # a background tab that stopped acking no longer stalls anyone
    h.flow.ack(A, WINDOW_SIZE)  # it is back: windowed again
    assert not h.flow.held
    h.flow.sent(A, 1)
    assert h.flow.holds(A) == {WINDOW}


def test_no_window_when_ack_window_is_zero() -> None:
    h = Harness(ack_window=0)
    h.flow.attach(A)
    h.flow.ack(A, 0)
    h.flow.sent(A, 1 << 30)
    assert not h.flow.held


def test_congestion_holds_until_it_clears_or_expires(h: Harness) -> None:
    h.flow.attach(A)
    h.flow.congested(A, True)
    h.flow.congested(A, True)  # re-armed
    assert h.flow.holds(A) == {CONGESTED} and h.changes == [True]
    h.flow.congested(A, False)
    assert not h.flow.held
    h.flow.congested(A, False)
    assert h.changes == [True, False]
    h.flow.congested(A, True)
    h.clock.advance(TIMEOUT)
    assert not h.flow.held
    assert h.changes == [True, False, True, False]


def test_congestion_of_a_client_not_attached_is_ignored(h: Harness) -> None:
    h.flow.congested(A, True)
    assert not h.flow.held


def test_any_hold_of_any_client_stops_reading(h: Harness) -> None:
    h.flow.attach(A)
    h.flow.attach(B)
    h.flow.ack(B, 0)
    h.flow.pause(A)
    h.flow.congested(A, True)
    h.flow.sent(B, WINDOW_SIZE + 1)
    assert h.flow.holds(A) == {PAUSE, CONGESTED} and h.flow.holds(B) == {WINDOW}
    assert h.changes == [True]  # one flip, however many holds
    h.flow.resume(A)
    h.flow.congested(A, False)
    assert h.flow.held  # B's window is still full
    h.flow.ack(B, WINDOW_SIZE + 1)
    assert not h.flow.held
    assert h.changes == [True, False]


def test_detach_lifts_every_hold_of_that_client(h: Harness) -> None:
    h.flow.attach(A)
    h.flow.attach(B)
    h.flow.ack(A, 0)
    h.flow.pause(A)
    h.flow.congested(A, True)
    h.flow.sent(A, WINDOW_SIZE + 1)
    h.flow.pause(B)
    h.flow.detach(A)
    assert h.flow.holds(A) == frozenset() and h.flow.held
    h.flow.detach(B)
    assert not h.flow.held
    assert h.changes == [True, False]
    assert h.clock.pending == 0
    h.flow.ack(A, 0)  # events of a detached client are ignored
    h.flow.sent(A, 1 << 20)
    h.flow.pause(A)
    assert not h.flow.held


def test_release_all_lifts_everything_without_notifying(h: Harness) -> None:
    h.flow.attach(A)
    h.flow.attach(B)
    h.flow.pause(A)
    h.flow.congested(B, True)
    h.flow.release_all()
    assert not h.flow.held and h.clock.pending == 0
    assert h.changes == [True]  # the owner updates its reader itself
    h.flow.pause(A)  # the clients are still attached
    assert h.flow.held


def test_expiry_of_one_hold_keeps_the_others(h: Harness) -> None:
    h.flow.attach(A)
    h.flow.pause(A)
    h.clock.advance(TIMEOUT / 2)
    h.flow.congested(A, True)
    h.clock.advance(TIMEOUT / 2)  # the pause expires, the congestion does not
    assert h.flow.holds(A) == {CONGESTED}
    h.clock.advance(TIMEOUT / 2)
    assert not h.flow.held
    assert h.changes == [True, False]
