"""A receiver that answers item by item: what it took is delivered once, what it asks for
again is retried alone, what it refuses is dead-lettered with its reason or counted."""

from __future__ import annotations

import random
from pathlib import Path

import orjson
import pytest

from drivers.base import Batch, Partial
from exporter.delivery.deadletter import DeadLetterFile
from exporter.delivery.exporter import REFUSED_BY_RECEIVER, DeliverySettings, Exporter
from exporter.delivery.retry import RetryPolicy
from exporter.errors import PermanentDeliveryError
from tests.support.fakes import ScriptedDriver, lines, run_exporter

pytestmark = pytest.mark.anyio
FAST = RetryPolicy(initial_delay=0.001, max_delay=0.002)


def _exporter(driver: ScriptedDriver, tmp_path: Path) -> tuple[Exporter, Path]:
    path = tmp_path / "dead.ndjson"
    settings = DeliverySettings(batch_max_events=10, batch_max_age=0.0, retry=FAST)
    exporter = Exporter("test", driver, settings, DeadLetterFile(path), rng=random.Random(1))
    return exporter, path


def _dead(path: Path) -> list[dict[str, object]]:
    if not path.exists():
        return []
    return [orjson.loads(line) for line in path.read_bytes().splitlines()]


def test_a_subset_is_those_events_in_that_order() -> None:
    batch = Batch()
    for item in lines(5):
        batch.append(item)
    part = batch.subset([3, 0])
    assert list(part.lines()) == [batch.line(3), batch.line(0)]
    assert part.key != batch.key
    assert bytes(part.data) == lines(5)[3] + lines(5)[0]


async def test_only_the_items_asked_for_again_are_sent_again(tmp_path: Path) -> None:
    answer = Partial(
        retry=[1, 3], retry_reason="2 items: 429", rejected={"mapper_parsing_exception": [2]}
    )
    driver = ScriptedDriver([answer, Partial(retry=[1], retry_reason="busy")])
    exporter, dead = _exporter(driver, tmp_path)
    await run_exporter(exporter, lines(10))
    sent = [item[:-1] for item in lines(10)]
    assert sorted(driver.lines) == sorted(sent[:2] + sent[3:])  # each once, 2 never
    assert len(driver.lines) == 9
    records = _dead(dead)
    assert [r["event"] for r in records] == [sent[2].decode()]
    assert records[0]["reason"] == "scripted: refused by the receiver: mapper_parsing_exception"
    stats = exporter.stats
    assert (stats.exported, stats.rejected, stats.dead_lettered, stats.retried) == (9, 1, 1, 2)
    assert driver.sends == 3


async def test_refused_items_the_receiver_does_not_name_are_counted(tmp_path: Path) -> None:
    driver = ScriptedDriver([Partial(refused=2, refused_reason="2 log records rejected: bad")])
    exporter, dead = _exporter(driver, tmp_path)
    await run_exporter(exporter, lines(10))
    stats = exporter.stats
    assert (stats.exported, stats.rejected, stats.dead_lettered) == (8, 2, 0)
    assert stats.dropped == {REFUSED_BY_RECEIVER: 2}
    assert not dead.exists()


async def test_a_remainder_that_fails_for_good_is_all_that_is_dead_lettered(
    tmp_path: Path,
) -> None:
    driver = ScriptedDriver(
        [Partial(retry=[4, 5], retry_reason="503"), PermanentDeliveryError("scripted: 400")]
    )
    exporter, dead = _exporter(driver, tmp_path)
    await run_exporter(exporter, lines(10))
    sent = [item[:-1] for item in lines(10)]
    assert [r["event"] for r in _dead(dead)] == [sent[4].decode(), sent[5].decode()]
    stats = exporter.stats
    assert (stats.exported, stats.dead_lettered, stats.rejected) == (8, 2, 0)
