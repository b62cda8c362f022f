"""The start queue: a few starts at a time, the others in arrival order, told their place."""

from __future__ import annotations

import asyncio

import pytest

from claudehub.spawner.startqueue import StartQueue, start_timeout_for, waiting_message
from tests.helpers import eventually


@pytest.mark.asyncio
async def test_starts_beyond_the_slots_wait_in_arrival_order() -> None:
    queue = StartQueue(2)
    order: list[int] = []
    tickets: dict[int, asyncio.Future[None] | None] = {}
    gate = asyncio.Event()

    async def start(i: int) -> None:
        async with queue.slot(lambda t: tickets.__setitem__(i, t)):
            order.append(i)
            await gate.wait()

    tasks = [asyncio.create_task(start(i)) for i in range(5)]
    await eventually(lambda: queue.waiting == 3, what="three learners queued")
    assert order == [0, 1] and queue.busy == 2 and queue.waiting == 3
    assert [queue.ahead_of(tickets[i]) for i in range(5)] == [0, 0, 0, 1, 2]
    gate.set()
    await asyncio.gather(*tasks)
    assert order == [0, 1, 2, 3, 4] and queue.busy == 0 and queue.waiting == 0


@pytest.mark.asyncio
async def test_a_learner_who_gives_up_leaves_the_queue_and_frees_no_one_elses_slot() -> None:
    queue = StartQueue(1)
    release = asyncio.Event()
    entered: list[str] = []

    async def start(name: str) -> None:
        async with queue.slot():
            entered.append(name)
            await release.wait()

    first = asyncio.create_task(start("first"))
    quitter = asyncio.create_task(start("quitter"))
    last = asyncio.create_task(start("last"))
    await eventually(lambda: queue.waiting == 2, what="two learners queued")
    quitter.cancel()
    with pytest.raises(asyncio.CancelledError):
        await quitter
    assert queue.busy == 1 and queue.waiting == 1
    release.set()
    await asyncio.gather(first, last)
    assert entered == ["first", "last"] and queue.busy == 0


def test_a_queue_needs_a_slot() -> None:
    with pytest.raises(ValueError, match="at least one slot, not 0"):
        StartQueue(0)


def test_the_messages_and_the_timeout() -> None:
    assert waiting_message(0).endswith("you are next in the queue.")
    assert "1 learner is ahead of you" in waiting_message(1)
    assert "7 learners are ahead of you" in waiting_message(7)
    # 100 learners on 2 cores: about 250 CPU-seconds of starts, with a margin
    assert start_timeout_for(100, 2) == 60 + 375
    assert start_timeout_for(1, 64) >= 60


@pytest.mark.asyncio
async def test_the_queue_is_measured_on_the_hubs_metrics_registry() -> None:
    """/hub/metrics serves prometheus_client's default registry: the gauges add up every
    live queue's waiting starts and busy slots."""
    from prometheus_client import REGISTRY

    def sample(name: str) -> float:
        value = REGISTRY.get_sample_value(name)
        assert value is not None, name
        return value

    before = sample("claudehub_start_queue_waiting"), sample("claudehub_start_queue_busy")
    queue = StartQueue(1)
    gate = asyncio.Event()

    async def start() -> None:
        async with queue.slot():
            await gate.wait()

    tasks = [asyncio.create_task(start()) for _ in range(3)]
    await eventually(lambda: queue.waiting == 2, what="two starts queued")
    assert sample("claudehub_start_queue_waiting") == before[0] + 2
    assert sample("claudehub_start_queue_busy") == before[1] + 1
    gate.set()
    await asyncio.gather(*tasks)
    assert sample("claudehub_start_queue_waiting") == before[0]
    assert sample("claudehub_start_queue_busy") == before[1]
