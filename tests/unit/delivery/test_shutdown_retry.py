"""Shutdown does not wait out a long backoff: a batch whose retry is due in 30 s is tried
again as soon as input stops, and every second while the exporters drain, so a receiver
back within ``shutdown_timeout`` gets it (before, it went to the dead-letter file at the
deadline although the receiver was back). What the rate limit held back is said at the
end: every event dead-lettered is in a warning, not only the first ones."""

from __future__ import annotations

import random
from pathlib import Path

import anyio
import pytest

from exporter.delivery.deadletter import DeadLetterFile
from exporter.delivery.exporter import DeliverySettings, Exporter
from exporter.delivery.lifecycle import ship
from exporter.delivery.retry import RetryPolicy
from exporter.errors import RetryableDeliveryError
from tests.support.fakes import ScriptedDriver, lines
from tests.support.logs import CapturedLog
from tests.support.processes import until

pytestmark = pytest.mark.anyio


class Longest(random.Random):
    """Every backoff draw at its cap."""

    def uniform(self, a: float, b: float) -> float:
        return b


def _exporter(driver: ScriptedDriver, tmp_path: Path, log: CapturedLog) -> Exporter:
    retry = RetryPolicy(initial_delay=30.0, max_delay=30.0)
    settings = DeliverySettings(batch_max_events=5, batch_max_age=0.0, retry=retry)
    dead = DeadLetterFile(str(tmp_path / "dead.ndjson"))
    return Exporter("out", driver, settings, dead, rng=Longest(), log=log.log)


async def test_a_retry_waiting_30_s_is_tried_at_shutdown_and_delivers(tmp_path: Path) -> None:
    driver = ScriptedDriver([RetryableDeliveryError("down")])
    log = CapturedLog()
    exporter = _exporter(driver, tmp_path, log)
    stop = anyio.Event()

    async def producer() -> None:
        for line in lines(5):
            assert exporter.offer(line)
        await until(lambda: driver.sends == 1)  # the first attempt failed: next in 30 s
        stop.set()  # a shutdown, as at SIGTERM
        await anyio.sleep_forever()

    with anyio.fail_after(10):  # the backoff alone would take 30 s
        interrupted = await ship(
            producer, [exporter], shutdown_timeout=5.0, handle_signals=False, stop=stop
        )
    assert interrupted
    assert driver.lines == [line[:-1] for line in lines(5)]
    assert exporter.stats.dead_lettered == 0
    assert driver.sends == 2


async def test_what_the_rate_limit_held_back_is_said_at_the_end(tmp_path: Path) -> None:
    """Three batches dead-lettered: the first said at once, the other two at the end."""
    driver = ScriptedDriver([RetryableDeliveryError("down")] * 1000)
    log = CapturedLog()
    exporter = _exporter(driver, tmp_path, log)
    stop = anyio.Event()

    async def producer() -> None:
        for line in lines(15):
            assert exporter.offer(line)
        await until(lambda: driver.sends == 1)
        stop.set()
        await anyio.sleep_forever()

    with anyio.fail_after(10):
        await ship(producer, [exporter], shutdown_timeout=0.3, handle_signals=False, stop=stop)
    assert exporter.stats.dead_lettered == 15
    said = [m for m in log.messages("warning") if "dead-lettered" in m]
    assert said[0].startswith("5 events dead-lettered to ")
    assert said[1].startswith("10 events dead-lettered to ")
    assert len(said) == 2
