"""The bounded queue: backpressure, overflow policies, and how batches close."""

from __future__ import annotations

import anyio
import pytest

from exporter.delivery.queue import EventQueue
from exporter.errors import UsageError
from tests.support.fakes import lines

pytestmark = pytest.mark.anyio


def _queue(
    max_events: int = 4,
    max_bytes: int = 1000,
    overflow: str = "block",
    *,
    batch: tuple[int, int, float] = (10, 1000, 0),
) -> tuple[EventQueue, dict[str, int]]:
    """A queue; ``batch`` is (batch_max_events, batch_max_bytes, batch_max_age)."""
    drops: dict[str, int] = {}

    def on_drop(reason: str, count: int) -> None:
        drops[reason] = drops.get(reason, 0) + count

    events, size, age = batch
    queue = EventQueue(
        max_events,
        max_bytes,
        overflow,
        on_drop,
        batch_max_events=events,
        batch_max_bytes=size,
        batch_max_age=age,
    )
    return queue, drops


async def test_block_refuses_when_full_by_count_or_bytes() -> None:
    queue, drops = _queue(max_events=2)
    assert queue.offer(b"a\n")
    assert queue.offer(b"b\n")
    assert not queue.offer(b"c\n")
    queue, _ = _queue(max_bytes=5)
    assert queue.offer(b"abc\n")
    assert not queue.offer(b"de\n")  # 4 + 3 bytes > 5
    assert drops == {}


async def test_an_item_larger_than_the_byte_bound_fits_an_empty_queue() -> None:
    queue, _ = _queue(max_bytes=2)
    assert queue.offer(b"larger than two\n")
    assert not queue.offer(b"x\n")


async def test_drop_newest_and_drop_oldest_count_what_they_drop() -> None:
    queue, drops = _queue(max_events=2, overflow="drop_newest")
    for item in lines(5):
        assert queue.offer(item)
    assert drops == {"queue full (drop_newest)": 3}
    batch = await queue.next_batch()
    assert batch is not None
    assert list(batch.lines()) == [b"e0", b"e1"]

    queue, drops = _queue(max_events=2, overflow="drop_oldest")
    for item in lines(5):
        assert queue.offer(item)
    assert drops == {"queue full (drop_oldest)": 3}
    batch = await queue.next_batch()
    assert batch is not None
    assert list(batch.lines()) == [b"e3", b"e4"]


async def test_unknown_policy_and_bad_bounds_are_refused() -> None:
    with pytest.raises(UsageError, match="allowed: block, drop_newest, drop_oldest"):
        _queue(overflow="spill")
    with pytest.raises(UsageError, match="positive"):
        _queue(max_events=0)


async def test_batch_closes_at_max_events_and_max_bytes() -> None:
    by_count, _ = _queue(max_events=100, batch=(4, 1000, 60))
    by_size, _ = _queue(max_events=100, batch=(100, 7, 60))
    for item in lines(10):
        by_count.offer(item)
        by_size.offer(item)
    with anyio.fail_after(5):
        first = await by_count.next_batch()
        second = await by_size.next_batch()  # "e0\n" + "e1\n" = 6 bytes; + 3 > 7
    assert first is not None
    assert list(first.lines()) == [b"e0", b"e1", b"e2", b"e3"]
    assert second is not None
    assert list(second.lines()) == [b"e0", b"e1"]


async def test_batch_closes_at_max_age_after_its_first_event() -> None:
    queue, _ = _queue(batch=(100, 1000, 0.05))
    queue.offer(b"only\n")
    with anyio.fail_after(5):
        start = anyio.current_time()
        batch = await queue.next_batch()
    assert batch is not None
    assert list(batch.lines()) == [b"only"]
    assert anyio.current_time() - start >= 0.05


async def test_consumer_wakes_for_an_event_arriving_later() -> None:
    queue, _ = _queue(batch=(1, 1000, 60))
    got: list[bytes] = []

    async def consume() -> None:
        batch = await queue.next_batch()
        assert batch is not None
        got.extend(batch.lines())

    with anyio.fail_after(5):
        async with anyio.create_task_group() as tasks:
            tasks.start_soon(consume)
            await anyio.wait_all_tasks_blocked()
            queue.offer(b"late\n")
    assert got == [b"late"]


async def test_close_drains_without_waiting_then_ends() -> None:
    queue, _ = _queue(batch=(100, 1000, 60))
    for item in lines(3):
        queue.offer(item)
    queue.close()
    with anyio.fail_after(5):
        batch = await queue.next_batch()
        assert batch is not None
        assert len(batch) == 3
        assert await queue.next_batch() is None


async def test_block_is_real_backpressure_and_the_bound_holds() -> None:
    """A producer of 1,000 events into a queue of 10 waits for the consumer; the queue
    never holds more than its bound and nothing is lost or reordered."""
    queue, drops = _queue(max_events=10, max_bytes=10_000, batch=(3, 10_000, 0))
    seen: list[bytes] = []
    high_water = 0

    async def produce() -> None:
        nonlocal high_water
        for item in lines(1000):
            if not queue.offer(item):
                await queue.put(item)
            high_water = max(high_water, len(queue))
        queue.close()

    async def consume() -> None:
        while (batch := await queue.next_batch()) is not None:
            seen.extend(batch.lines())
            await anyio.lowlevel.checkpoint()

    with anyio.fail_after(10):
        async with anyio.create_task_group() as tasks:
            tasks.start_soon(consume)
            tasks.start_soon(produce)
    assert seen == [item[:-1] for item in lines(1000)]
    assert high_water <= 10
    assert drops == {}


async def test_waiting_for_space_waits_until_this_item_fits_by_bytes() -> None:
    """Under the byte bound by less than the item: the producer waits (it used to spin)."""
    queue = EventQueue(100, 1000, "block", lambda reason, count: None, batch_max_events=2)
    for item in [b"x" * 299 + b"\n"] * 3:
        assert queue.offer(item)
    assert queue.queued_bytes == 900
    assert not queue.offer(b"y" * 299 + b"\n")
    with anyio.move_on_after(0.05) as waited:
        await queue.wait_for_space(300)
    assert waited.cancelled_caught  # 100 bytes free is not room for 300
    with anyio.fail_after(5):
        batch = await queue.next_batch()
        assert batch is not None
        await queue.wait_for_space(300)  # now it fits
