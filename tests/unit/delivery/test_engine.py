"""An exporter end to end with a scripted driver: order, dead letters, pauses, abandon."""

from __future__ import annotations

import random
from pathlib import Path

import anyio
import orjson
import pytest

from drivers.base import Batch
from exporter.delivery.deadletter import DeadLetterFile, read_dead_letters
from exporter.delivery.exporter import DeliverySettings, Exporter
from exporter.delivery.queue import Overflow
from exporter.delivery.retry import RetryPolicy
from exporter.errors import PermanentDeliveryError, RetryableDeliveryError
from tests.support.fakes import ScriptedDriver, lines, run_exporter
from tests.support.logs import CapturedLog

pytestmark = pytest.mark.anyio
FAST = RetryPolicy(initial_delay=0.001, max_delay=0.002)


def _exporter(driver: ScriptedDriver, tmp_path: Path, **settings: object) -> tuple[Exporter, Path]:
    path = tmp_path / "dead.ndjson"
    values: dict[str, object] = {"batch_max_age": 0.0, "retry": FAST, **settings}
    exporter = Exporter(
        "test",
        driver,
        DeliverySettings(**values),  # type: ignore[arg-type]
        DeadLetterFile(path),
        rng=random.Random(1),
    )
    return exporter, path


async def test_every_event_delivered_in_order_in_batches(tmp_path: Path) -> None:
    driver = ScriptedDriver([RetryableDeliveryError("blip")])
    exporter, dead = _exporter(driver, tmp_path, batch_max_events=100, queue_max_events=250)
    await run_exporter(exporter, lines(1000))
    assert driver.lines == [item[:-1] for item in lines(1000)]
    stats = exporter.stats
    assert (stats.received, stats.exported, stats.retried, stats.dead_lettered) == (
        1000,
        1000,
        1,
        0,
    )
    assert not dead.exists()


async def test_permanent_failure_goes_to_the_dead_letter_file(tmp_path: Path) -> None:
    driver = ScriptedDriver([PermanentDeliveryError("dest: 400 bad request")])
    exporter, dead = _exporter(driver, tmp_path, batch_max_events=2)
    await run_exporter(exporter, [b'{"event":"a"}\n', b"b\xff\n", b"c\n"])
    assert driver.lines == [b"c"]
    records = [orjson.loads(line) for line in dead.read_bytes().splitlines()]
    assert [r["reason"] for r in records] == ["dest: 400 bad request"] * 2
    assert records[0]["event"] == '{"event":"a"}'
    assert records[0]["attempts"] == 1
    assert records[0]["destination"] == "scripted"
    assert records[0]["time"].endswith("Z")
    assert [event for _, event in read_dead_letters(dead)] == [b'{"event":"a"}', b"b\xff"]
    assert exporter.stats.summary() == (
        "received 3, exported 1, retried 0, dropped 0, dead-lettered 2"
    )


async def test_exhausted_retries_are_dead_lettered_with_attempts(tmp_path: Path) -> None:
    driver = ScriptedDriver([RetryableDeliveryError("down")] * 3)
    exporter, dead = _exporter(driver, tmp_path, retry=RetryPolicy(0.001, 0.001, max_attempts=3))
    await run_exporter(exporter, [b"x\n"])
    (record,) = [orjson.loads(line) for line in dead.read_bytes().splitlines()]
    assert record["attempts"] == 3
    assert record["reason"] == "gave up after 3 attempts: down"


async def test_retry_after_pauses_the_whole_exporter(tmp_path: Path) -> None:
    """The batch after the one that got Retry-After also waits for the pause."""
    driver = ScriptedDriver([RetryableDeliveryError("busy", retry_after=0.2)])
    exporter, _ = _exporter(driver, tmp_path, batch_max_events=1)
    start = anyio.current_time()
    await run_exporter(exporter, [b"a\n", b"b\n"])
    assert driver.lines == [b"a", b"b"]
    assert anyio.current_time() - start >= 0.2
    assert exporter.stats.delivery.retry_after_pauses == 1


async def test_drops_are_counted_with_their_reason(tmp_path: Path) -> None:
    driver = ScriptedDriver()
    driver.gate = anyio.Event()  # the destination takes nothing until released
    exporter, _ = _exporter(
        driver, tmp_path, queue_max_events=5, overflow=Overflow.DROP_NEWEST, batch_max_events=5
    )
    log = CapturedLog()
    exporter.log = log.log
    with anyio.fail_after(10):
        async with anyio.create_task_group() as tasks:
            tasks.start_soon(exporter.run)
            await anyio.wait_all_tasks_blocked()
            for item in lines(5):
                assert exporter.offer(item)
            await anyio.wait_all_tasks_blocked()  # those 5 are in flight now
            for item in lines(20, b"late"):
                assert exporter.offer(item)
            driver.gate.set()
            exporter.queue.close()
    stats = exporter.stats
    assert stats.received == 25
    assert stats.exported == 10
    assert dict(stats.dropped) == {"queue full (drop_newest)": 15}
    assert "dropped 15 (queue full (drop_newest): 15)" in stats.summary()
    (warning,) = log.messages("warning")  # the first at once, the others held back 30 s
    assert warning == (
        "1 event dropped (queue full (drop_newest)): the queue holds 5 events, 30 bytes "
        f"(queue_max_events 5, queue_max_bytes {64 << 20}) (further such warnings: at most one "
        "per 30 s)"
    )


async def test_abandon_dead_letters_in_flight_and_queued(tmp_path: Path) -> None:
    driver = ScriptedDriver()
    driver.gate = anyio.Event()  # never released: a destination that hangs
    exporter, dead = _exporter(driver, tmp_path, batch_max_events=2)
    with anyio.fail_after(10):
        async with anyio.create_task_group() as tasks:
            tasks.start_soon(exporter.run)
            for item in lines(5):
                exporter.offer(item)
            await anyio.wait_all_tasks_blocked()
            tasks.cancel_scope.cancel()
    exporter.abandon("shutdown: deadline passed")
    events = [event for _, event in read_dead_letters(dead)]
    assert events == [item[:-1] for item in lines(5)]
    assert exporter.stats.dead_lettered == 5


class _FailsThenHangs(ScriptedDriver):
    """Fails as scripted, then hangs (a destination that stopped answering)."""

    def __init__(self, script: list[BaseException | None]) -> None:
        super().__init__(script)
        self.hanging = anyio.Event()

    async def send(self, batch: Batch) -> None:
        if not self.script:
            self.hanging.set()
            await anyio.sleep_forever()
        await super().send(batch)


async def test_abandon_records_the_attempts_made(tmp_path: Path) -> None:
    driver = _FailsThenHangs([RetryableDeliveryError("blip"), RetryableDeliveryError("blip")])
    exporter, dead = _exporter(driver, tmp_path, batch_max_events=2)
    with anyio.fail_after(10):
        async with anyio.create_task_group() as tasks:
            tasks.start_soon(exporter.run)
            for item in lines(3):
                exporter.offer(item)
            await driver.hanging.wait()  # the third attempt at the first batch
            tasks.cancel_scope.cancel()
    exporter.abandon("shutdown: deadline passed")
    records = [orjson.loads(line) for line in dead.read_bytes().splitlines()]
    assert [(r["attempts"], r["event"]) for r in records] == [
        (3, lines(3)[0][:-1].decode()),
        (3, lines(3)[1][:-1].decode()),
        (0, lines(3)[2][:-1].decode()),  # still queued: never tried
    ]


class _FailingHousekeeping(ScriptedDriver):
    """Delivers, but its flush, reopen and close fail (a last fsync on a full disk)."""

    async def flush(self) -> None:
        raise RetryableDeliveryError("scripted: fsync failed (ENOSPC)")

    async def reopen(self) -> None:
        raise PermanentDeliveryError("scripted: close failed (EIO)")

    async def aclose(self) -> None:
        await super().aclose()
        raise RetryableDeliveryError("scripted: close failed (EIO)")


async def test_failed_flush_reopen_and_close_are_warnings_not_crashes(tmp_path: Path) -> None:
    driver = _FailingHousekeeping()
    log = CapturedLog()
    exporter = Exporter("test", driver, DeliverySettings(batch_max_age=0.0), None, log=log.log)
    await run_exporter(exporter, lines(3))
    await exporter.reopen()
    await exporter.close_driver()
    assert driver.lines == [item[:-1] for item in lines(3)]
    assert exporter.stats.exported == 3
    assert log.messages("warning") == [
        "flush failed: scripted: fsync failed (ENOSPC)",
        "reopen failed: scripted: close failed (EIO)",
        "close failed: scripted: close failed (EIO)",
    ]
    assert driver.closed


class _Concurrent(ScriptedDriver):
    """Takes up to ``limit`` batches at once; each waits until ``limit`` are in flight."""

    def __init__(self, limit: int) -> None:
        super().__init__()
        self.limit = limit
        self.in_flight = 0
        self.most = 0
        self.all_in = anyio.Event()

    @property
    def concurrency(self) -> int:
        return self.limit

    async def send(self, batch: Batch) -> None:
        self.in_flight += 1
        self.most = max(self.most, self.in_flight)
        if self.in_flight == self.limit:
            self.all_in.set()
        await self.all_in.wait()
        await anyio.lowlevel.checkpoint()
        self.in_flight -= 1
        await super().send(batch)


@pytest.mark.parametrize("limit", [1, 3])
async def test_up_to_the_drivers_concurrency_batches_are_in_flight(
    tmp_path: Path, limit: int
) -> None:
    driver = _Concurrent(limit)
    exporter, _ = _exporter(driver, tmp_path, batch_max_events=10)
    await run_exporter(exporter, lines(100))
    assert driver.most == limit
    assert sorted(driver.lines) == sorted(item[:-1] for item in lines(100))
    assert exporter.stats.exported == 100


async def test_abandon_dead_letters_every_batch_in_flight(tmp_path: Path) -> None:
    driver = _Concurrent(4)  # 30 events make 3 batches: never 4 in flight, every send hangs
    exporter, dead = _exporter(driver, tmp_path, batch_max_events=10)
    with anyio.fail_after(10):
        async with anyio.create_task_group() as tasks:
            tasks.start_soon(exporter.run)
            for item in lines(30):
                assert exporter.offer(item)
            exporter.queue.close()
            while driver.in_flight < 3:
                await anyio.lowlevel.checkpoint()
            tasks.cancel_scope.cancel()
    exporter.abandon("shutdown: deadline passed")
    assert exporter.stats.dead_lettered == 30
    assert sorted(event for _, event in read_dead_letters(dead)) == sorted(
        item[:-1] for item in lines(30)
    )


async def test_a_dead_letter_file_that_cannot_be_written_counts_the_events_as_dropped(
    tmp_path: Path,
) -> None:
    driver = ScriptedDriver([PermanentDeliveryError("dest: 400")])
    log = CapturedLog()
    exporter = Exporter(
        "test",
        driver,
        DeliverySettings(batch_max_age=0.0, batch_max_events=2),
        DeadLetterFile(tmp_path / "missing" / "dead.ndjson"),
        log=log.log,
    )
    await run_exporter(exporter, lines(2))
    assert dict(exporter.stats.dropped) == {"dead-letter write failed": 2}
    failed, warning = log.messages("warning")
    assert failed == "delivery failed (attempt 1): dest: 400; given up"
    assert warning.startswith("2 undeliverable events dropped (dead-letter write failed): ")
    assert f"dead-letter file {tmp_path / 'missing' / 'dead.ndjson'} could not" in warning
    assert "No such file or directory; dest: 400" in warning
