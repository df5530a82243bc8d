"""Dead letters: written off the event loop, in order and exactly once (a shutdown in the
middle included), bounded by ``dead_letter_max_bytes``, and dropped events counted under a
fixed set of reasons whatever a receiver says, its text escaped where it is shown."""

from __future__ import annotations

import os
import random
import re
import threading
from collections import Counter
from pathlib import Path

import anyio
import anyio.to_thread
import orjson
import pytest

from drivers.base import Batch
from exporter.cli import main
from exporter.config import ConfigError, parse_config
from exporter.delivery.deadletter import REASON_LIMIT, DeadLetterFile, read_dead_letters
from exporter.delivery.exporter import (
    DEAD_LETTER_FAILED,
    DEAD_LETTER_FULL,
    NO_DEAD_LETTER_FILE,
    DeliverySettings,
    Exporter,
)
from exporter.delivery.retry import RetryPolicy
from exporter.errors import PermanentDeliveryError
from exporter.observe.prometheus import render
from exporter.routing import Pipeline
from tests.support.fakes import ScriptedDriver, lines, run_exporter
from tests.support.logs import CapturedLog
from tests.support.samples import EVENTS_FILE

pytestmark = pytest.mark.anyio
FAST = RetryPolicy(initial_delay=0.001, max_delay=0.002)


class _Refusing(ScriptedDriver):
    """Refuses every batch for good, with the text a hostile receiver chooses, up to
    ``limit`` batches at once."""

    def __init__(self, text: str = "dest: 400", limit: int = 1) -> None:
        super().__init__()
        self.text = text
        self.limit = limit

    @property
    def concurrency(self) -> int:
        return self.limit

    async def send(self, batch: Batch) -> None:
        self.sends += 1
        await anyio.lowlevel.checkpoint()
        raise PermanentDeliveryError(self.text.format(n=self.sends))


def _exporter(
    driver: ScriptedDriver,
    dead: DeadLetterFile | None,
    log: CapturedLog | None = None,
    **settings: object,
) -> Exporter:
    values: dict[str, object] = {"batch_max_age": 0.0, "retry": FAST, **settings}
    return Exporter(
        "test",
        driver,
        DeliverySettings(**values),  # type: ignore[arg-type]
        dead,
        rng=random.Random(1),
        log=(log or CapturedLog()).log,
    )


class _HeldFsync:
    """Stands in for os.fsync: the first call waits (a slow disk) until ``release``."""

    def __init__(self) -> None:
        self.entered = threading.Event()
        self.release = threading.Event()
        self.calls = 0

    def __call__(self, fd: int) -> None:
        self.calls += 1
        if self.calls == 1:
            self.entered.set()
            self.release.wait(10)


@pytest.fixture
def held_fsync(monkeypatch: pytest.MonkeyPatch) -> _HeldFsync:
    held = _HeldFsync()
    monkeypatch.setattr(os, "fsync", held)
    return held


async def test_a_slow_dead_letter_write_leaves_the_event_loop_running(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Today's regression: open, write and fsync ran inline, freezing every task (the
    http source, /metrics, signals) for as long as the disk took."""
    entered, loop_ran = threading.Event(), threading.Event()
    ran_meanwhile: list[bool] = []

    def slow_fsync(fd: int) -> None:  # a disk that takes its time
        entered.set()
        ran_meanwhile.append(loop_ran.wait(5))

    async def meanwhile() -> None:  # comes back only if the loop runs during the fsync
        await anyio.to_thread.run_sync(entered.wait, 10)
        loop_ran.set()

    monkeypatch.setattr(os, "fsync", slow_fsync)
    exporter = _exporter(_Refusing(), DeadLetterFile(tmp_path / "dead"), batch_max_events=2)
    with anyio.fail_after(20):
        async with anyio.create_task_group() as tasks:
            tasks.start_soon(meanwhile)
            await run_exporter(exporter, lines(2))
    assert ran_meanwhile == [True], "the event loop stood still during the dead-letter write"
    assert exporter.stats.dead_lettered == 2


async def test_concurrent_failures_are_dead_lettered_each_event_once(tmp_path: Path) -> None:
    dead = tmp_path / "dead"
    exporter = _exporter(
        _Refusing("dest: refused batch {n}", limit=3),
        DeadLetterFile(dead),
        batch_max_events=10,
    )
    await run_exporter(exporter, lines(300))
    events = [event for _, event in read_dead_letters(dead)]
    assert Counter(events) == Counter(item[:-1] for item in lines(300))
    records = [orjson.loads(line) for line in dead.read_bytes().splitlines()]
    by_reason: dict[str, list[int]] = {}
    for index, record in enumerate(records):
        by_reason.setdefault(record["reason"], []).append(index)
    assert len(by_reason) == 30
    for indexes in by_reason.values():  # each batch's records written together
        assert indexes == list(range(indexes[0], indexes[0] + 10))
    assert (exporter.stats.dead_lettered, sum(exporter.stats.dropped.values())) == (300, 0)


async def test_a_shutdown_while_dead_letters_wait_writes_each_batch_once_with_its_reason(
    tmp_path: Path, held_fsync: _HeldFsync
) -> None:
    """Batch 1's write is in the worker thread (held), batch 2 waits for its turn, batch 3
    is queued: the deadline comes. Batch 1 finishes in its thread, batch 2 is written by
    abandon() with its own reason, batch 3 with the shutdown's."""
    dead = tmp_path / "dead"
    exporter = _exporter(
        _Refusing("dest: refused batch {n}", limit=2), DeadLetterFile(dead), batch_max_events=2
    )
    with anyio.fail_after(20):
        async with anyio.create_task_group() as tasks:
            tasks.start_soon(exporter.run)
            for item in lines(4):
                assert exporter.offer(item)
            await anyio.to_thread.run_sync(held_fsync.entered.wait, 10)
            await anyio.wait_all_tasks_blocked()  # batch 2 waits for the dead-letter file
            assert exporter.stats.dead_lettered == 0  # nothing written yet: both in flight
            assert len(exporter._in_flight) == 2
            for item in lines(2, b"late"):
                assert exporter.offer(item)  # batch 3: no slot, stays queued
            tasks.cancel_scope.cancel()
            held_fsync.release.set()
    exporter.abandon("shutdown: deadline passed")
    records = [orjson.loads(line) for line in dead.read_bytes().splitlines()]
    assert [(r["event"], r["reason"]) for r in records] == [
        ("e0", "dest: refused batch 1"),
        ("e1", "dest: refused batch 1"),
        ("e2", "dest: refused batch 2"),
        ("e3", "dest: refused batch 2"),
        # never tried: the shutdown's reason, and the exporter's last error beside it
        ("late0", "shutdown: deadline passed; last error: dest: refused batch 2"),
        ("late1", "shutdown: deadline passed; last error: dest: refused batch 2"),
    ]
    assert exporter.stats.dead_lettered == 6
    assert not exporter.stats.dropped


# -- the bound ----------------------------------------------------------------------------


async def test_past_dead_letter_max_bytes_events_are_dropped_counted_and_warned(
    tmp_path: Path,
) -> None:
    dead = tmp_path / "dead"
    probe = DeadLetterFile(tmp_path / "probe")
    probe.write([b"e0"], destination="scripted", reason="dest: 400", attempts=1, exporter="test")
    record = (tmp_path / "probe").stat().st_size
    log = CapturedLog()
    dead_letters = DeadLetterFile(dead, max_bytes=3 * record + record // 2)
    exporter = _exporter(_Refusing(), dead_letters, log, batch_max_events=2)
    await run_exporter(exporter, lines(10))  # 5 batches of 2: the first, and one of the second, fit
    assert exporter.stats.dead_lettered == 3
    assert dict(exporter.stats.dropped) == {DEAD_LETTER_FULL: 7}
    assert dead.stat().st_size == 3 * record
    assert len(read_dead_letters_list(dead)) == 3
    (warning,) = [m for m in log.messages("warning") if "dropped" in m]  # the others held
    assert warning.startswith(f"1 undeliverable event dropped ({DEAD_LETTER_FULL}): ")
    assert f"dead-letter file {dead} is full ({3 * record} bytes, dead_letter_max_bytes " in warning
    assert "at most one per 30 s" in warning
    assert exporter.stats.summary().endswith(f"dropped 7 ({DEAD_LETTER_FULL}: 7), dead-lettered 3")
    dead.rename(tmp_path / "dead.1")  # rotated away: there is room again
    await run_exporter(_exporter(_Refusing(), dead_letters), lines(1))
    assert len(read_dead_letters_list(dead)) == 1


def read_dead_letters_list(path: Path) -> list[bytes]:
    return [event for _, event in read_dead_letters(path)]


async def test_loss_warnings_come_at_once_then_at_most_every_30_seconds(
    tmp_path: Path,
) -> None:
    """Per reason, each line counting the events since the last (what was LossWarnings is
    the exporter's RateLimit now)."""
    now = [100.0]
    log = CapturedLog()
    exporter = Exporter(
        "test",
        ScriptedDriver(),
        DeliverySettings(),
        DeadLetterFile(tmp_path / "d", max_bytes=1),  # every record makes it too big
        log=log.log,
        clock=lambda: now[0],
    )
    await exporter.dead_letter(lines(5), "dest: 400", 1)
    now[0] += 29.9
    await exporter.dead_letter(lines(7), "dest: 400", 1)
    now[0] += 0.1
    await exporter.dead_letter(lines(1), "dest: 400", 1)
    assert [re.sub(r": dead-letter file .*", "", line) for line in log.messages("warning")] == [
        f"5 undeliverable events dropped ({DEAD_LETTER_FULL})",
        f"8 undeliverable events dropped ({DEAD_LETTER_FULL})",
    ]
    assert exporter.stats.dropped == {DEAD_LETTER_FULL: 13}
    assert log.messages()[0].endswith("(further such warnings: at most one per 30 s)")
    assert log.records()[0]["exporter"] == "test"
    assert log.records()[0]["destination"] == "scripted"


def test_dead_letter_max_bytes_is_a_global_setting_checked_with_its_line() -> None:
    base = '[exporter.a]\ndestination = "drop"\n'
    config = parse_config(f"[global]\ndead_letter_max_bytes = 4096\n{base}")
    assert config.settings.dead_letter_max_bytes == 4096
    dead_letters = Pipeline.from_config(config).exporters["a"]._dead_letters
    assert dead_letters is not None
    assert dead_letters.max_bytes == 4096
    with pytest.raises(ConfigError) as caught:
        parse_config(f"[global]\n\ndead_letter_max_bytes = 0\n{base}")
    assert str(caught.value) == "config:3: global.dead_letter_max_bytes: must be at least 1, not 0"


def test_export_to_with_dead_letter_max_bytes(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """A unix destination nobody listens on, with one attempt: every batch is given up.
    (A directory at a file: destination, which refused every batch, is refused at start.)"""
    dead = tmp_path / "dead"
    to = ["--to", f"unix:{tmp_path / 'nobody.sock'}", "--retry-max-attempts", "1"]
    args = [*to, "--dead-letter", str(dead)]
    code = main(["export", *args, "--dead-letter-max-bytes", "2000", str(EVENTS_FILE)])
    assert code == 3
    err = capsys.readouterr().err
    written = len(read_dead_letters_list(dead))
    assert 0 < written < 36
    assert dead.stat().st_size <= 2000
    assert f"dropped {36 - written} ({DEAD_LETTER_FULL}: {36 - written})" in err
    assert f"dead-letter file {dead} is full" in err
    assert main(["export", *args, "--dead-letter-max-bytes", "0", str(EVENTS_FILE)]) == 2


# -- fixed drop reasons, receiver text escaped -----------------------------------------------


async def test_drop_reasons_are_fixed_whatever_the_receiver_says(tmp_path: Path) -> None:
    """Today each distinct receiver text became a /metrics series (and a token it echoed
    was published)."""
    hostile = "\x1b[2J\x1b]0;pwned\x07 token=s3cr3t-{n} \u202e"
    log = CapturedLog()
    unwritable = DeadLetterFile(tmp_path / "missing" / "dead")
    failing = _exporter(_Refusing(hostile), unwritable, log, batch_max_events=1)
    await run_exporter(failing, lines(5))
    without = _exporter(_Refusing(hostile), None, log, batch_max_events=1)
    await run_exporter(without, lines(3))
    assert dict(failing.stats.dropped) == {DEAD_LETTER_FAILED: 5}
    assert dict(without.stats.dropped) == {NO_DEAD_LETTER_FILE: 3}
    pipeline = Pipeline[Exporter]({"failing": failing, "without": without}, [])
    series = [
        line for line in render(pipeline, {}).splitlines() if "exporter_dropped_total{" in line
    ]
    dropped = "event_exporter_exporter_dropped_total"
    assert series == [
        f'{dropped}{{exporter="failing",reason="{DEAD_LETTER_FAILED}"}} 5',
        f'{dropped}{{exporter="without",reason="{NO_DEAD_LETTER_FILE}"}} 3',
    ]
    warnings = [m for m in log.messages("warning") if "dropped" in m]
    assert len(warnings) == 2  # rate-limited: one per reason
    for warning in log.messages():
        assert "\x1b" not in warning
        assert "\u202e" not in warning
        assert "\\x1b[2J\\x1b]0;pwned\\x07 token=s3cr3t-1 \\u202e" in warning


async def test_dead_letter_reasons_are_escaped_and_capped(tmp_path: Path) -> None:
    dead = tmp_path / "dead"
    exporter = _exporter(_Refusing("\x1b[31m" + "x" * 5000 + "\n"), DeadLetterFile(dead))
    await run_exporter(exporter, lines(1))
    (record,) = [orjson.loads(line) for line in dead.read_bytes().splitlines()]
    assert record["reason"].startswith("\\x1b[31mxxx")
    assert record["reason"].endswith("x...")
    assert len(record["reason"]) <= REASON_LIMIT + len("...") + len("\\x1b")
    assert len(dead.read_bytes()) < 1500
