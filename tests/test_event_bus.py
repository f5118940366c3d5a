"""The event bus's queues: every event in order for a reader that keeps up, and a bounded backlog for one that
does not (the dashboard's all-calls stream to a browser that stopped reading)."""

from __future__ import annotations

import asyncio

from ivrsim.engine.events import CallEvent, EventBus, utc_now


def event(call_id: str, sequence: int) -> CallEvent:
    return CallEvent(call_id, sequence, "call.ringing", 0.0, utc_now(), {"status": "ringing"})


def test_a_queue_gets_its_calls_events_in_order() -> None:
    async def scenario() -> list[tuple[str, int]]:
        bus = EventBus()
        queue, unsubscribe = bus.queue("call_a")
        for sequence in range(1, 4):
            bus.publish(event("call_a", sequence))
            bus.publish(event("call_b", sequence))
        unsubscribe()
        bus.publish(event("call_a", 4))  # after unsubscribing: not delivered
        return [(e.call_id, e.sequence) for e in (queue.get_nowait() for _ in range(queue.qsize()))]

    assert asyncio.run(scenario()) == [("call_a", 1), ("call_a", 2), ("call_a", 3)]


def test_a_bounded_queue_keeps_the_oldest_events_and_says_it_dropped_the_rest() -> None:
    async def scenario() -> tuple[int, bool, list[int]]:
        bus = EventBus()
        queue, _ = bus.queue(None, max_events=5)
        for sequence in range(1, 10_001):  # a busy server and a reader that never reads
            bus.publish(event("call_a", sequence))
        kept = [queue.get_nowait().sequence for _ in range(queue.qsize())]
        return len(kept), queue.overflowed, kept

    size, overflowed, kept = asyncio.run(scenario())
    assert size == 5 and overflowed and kept == [1, 2, 3, 4, 5]
