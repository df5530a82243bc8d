"""End-to-end acknowledgement (what the nats source acks by): an event emitted between
two marks is settled once every exporter that took it delivered, dead-lettered or dropped
it, in queue order, and not before."""

from __future__ import annotations

import anyio
import pytest

from exporter.delivery.exporter import DeliverySettings, Exporter
from exporter.delivery.queue import Overflow
from exporter.event import Event
from exporter.formats import FormatSpec, make_formatter
from exporter.routing import Pipeline, Route
from exporter.sources.intake import Settles
from tests.support.fakes import ScriptedDriver

pytestmark = pytest.mark.anyio


def _exporter(name: str, driver: ScriptedDriver, **settings: object) -> Exporter:
    delivery = DeliverySettings(batch_max_events=2, batch_max_age=0.01, **settings)  # type: ignore[arg-type]
    return Exporter(name, driver, delivery, None)


async def test_an_event_is_settled_once_delivered_by_the_exporters_that_took_it() -> None:
    slow, fast = ScriptedDriver(), ScriptedDriver()
    slow.gate = anyio.Event()
    a, b = _exporter("a", slow), _exporter("b", fast)
    encode = make_formatter(FormatSpec(), newline=True)
    matches_a = lambda event: event.name == "to_a"  # noqa: E731
    pipeline: Pipeline[Exporter] = Pipeline(
        {"a": a, "b": b}, [Route("a", matches_a, encode, a), Route("b", None, encode, b)]
    )
    assert isinstance(pipeline, Settles)
    with anyio.fail_after(10):
        async with anyio.create_task_group() as tasks:
            tasks.start_soon(a.run)
            tasks.start_soon(b.run)
            before = pipeline.mark()
            await pipeline.emit(Event.create("to_b"))
            only_b = (before, pipeline.mark())
            await pipeline.emit(Event.create("to_a"))
            both = (only_b[1], pipeline.mark())
            await pipeline.settled(*only_b)  # a holds its batch: no matter, it did not take it
            assert fast.lines
            settled = anyio.Event()

            async def wait_both() -> None:
                await pipeline.settled(*both)
                settled.set()

            tasks.start_soon(wait_both)
            await anyio.wait_all_tasks_blocked()
            assert not settled.is_set()  # a has not delivered it yet
            slow.gate.set()
            await settled.wait()
            assert slow.lines
            a.queue.close()
            b.queue.close()


async def test_an_event_dropped_or_dead_lettered_is_settled_too() -> None:
    driver = ScriptedDriver()
    driver.gate = anyio.Event()
    exporter = _exporter("a", driver, queue_max_events=2, overflow=Overflow.DROP_OLDEST)
    with anyio.fail_after(10):
        async with anyio.create_task_group() as tasks:
            tasks.start_soon(exporter.run)
            for n in range(2):
                exporter.offer(b"e%d\n" % n)
            await anyio.wait_all_tasks_blocked()  # the first batch is in flight, held
            first = exporter.position
            for n in range(2, 6):
                exporter.offer(b"e%d\n" % n)  # the queue cuts the oldest
            assert exporter.settled == 0
            driver.gate.set()
            await exporter.wait_settled(exporter.position)
            assert exporter.settled == exporter.position >= first
            exporter.queue.close()
    assert sum(exporter.stats.dropped.values()) + exporter.stats.exported == 6
