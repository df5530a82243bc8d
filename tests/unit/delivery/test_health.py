"""An exporter says what goes wrong, and keeps what /ready and /metrics read: the first
failed delivery at once, then at most a line per 30 s, then its recovery; dropped events
rate-limited; at debug, batches and new connections; its health, its latency and queue-age
histograms; a spool moved aside."""

from __future__ import annotations

import random
import re
import time
from pathlib import Path

import anyio
import pytest

from drivers.base import Batch
from drivers.drop import DropDriver
from drivers.file import FileDriver
from exporter.delivery.deadletter import DeadLetterFile
from exporter.delivery.exporter import DeliverySettings, Exporter
from exporter.delivery.health import Failing, Report, counted
from exporter.delivery.retry import RetryPolicy
from exporter.errors import RetryableDeliveryError
from tests.support.fakes import ScriptedDriver, lines, run_exporter
from tests.support.logs import CapturedLog

pytestmark = pytest.mark.anyio
FAST = RetryPolicy(initial_delay=0.001, max_delay=0.002)


class _Clocked(ScriptedDriver):
    """Each send moves the exporter's clock 10 s on: failures 10 s apart, without waiting."""

    def __init__(self, failures: int) -> None:
        super().__init__([RetryableDeliveryError("dest: connect failed: refused")] * failures)
        self.now = 0.0

    async def send(self, batch: Batch) -> None:
        self.now += 10.0
        await super().send(batch)


def _exporter(
    driver: ScriptedDriver, log: CapturedLog, *, clock: object = None, **settings: object
) -> Exporter:
    values: dict[str, object] = {"batch_max_age": 0.0, "retry": FAST, **settings}
    return Exporter(
        "collector",
        driver,
        DeliverySettings(**values),  # type: ignore[arg-type]
        None,
        rng=random.Random(1),
        log=log.log,
        clock=clock or time.monotonic,  # type: ignore[arg-type]
    )


async def test_a_run_of_failures_is_said_at_once_then_every_30_s_then_its_end() -> None:
    """Issue 14, item 1: the daemon was silent while deliveries failed."""
    driver = _Clocked(failures=5)  # failures at 10, 20, 30, 40, 50 s; delivered at 60 s
    log = CapturedLog()
    exporter = _exporter(driver, log, clock=lambda: driver.now)
    seen: list[tuple[float | None, str | None]] = []
    real_fail = exporter.health.fail

    def watch(error: str) -> Report | None:
        report = real_fail(error)
        seen.append((exporter.health.failing_since, exporter.health.last_error))
        return report

    exporter.health.fail = watch  # type: ignore[method-assign]  # it watches what /ready reads
    await run_exporter(exporter, [b"a\n"])
    assert driver.lines == [b"a"]
    records = log.records()
    assert [r["level"] for r in records] == ["warning", "warning", "info"]
    assert {(r["exporter"], r["destination"]) for r in records} == {("collector", "scripted")}
    first, again, works = (r["message"] for r in records)
    error = "dest: connect failed: refused"
    assert re.fullmatch(rf"delivery failed \(attempt 1\): {error}; next try in \S+ s", first)
    assert re.fullmatch(  # held back at 20 and 30 s; the one at 50 s too
        rf"delivery still failing after 30 s: 3 failed attempts since the last report; the "
        rf"last \(attempt 4\): {error}; next try in \S+ s",
        again,
    )
    assert works == (
        f"delivery works again after failing for 50 s (5 failed attempts; the last: {error});"
        " 1 event delayed"
    )
    assert seen == [(10.0, error)] * 5  # what /ready reads: since the first failure
    assert exporter.health.failing_since is None  # delivered: not failing any more
    assert exporter.health.last_error == error


async def test_a_flapping_destination_is_two_lines_not_two_per_failure() -> None:
    driver = ScriptedDriver([RetryableDeliveryError("dest: 500"), None] * 10)
    log = CapturedLog()
    exporter = _exporter(driver, log, batch_max_events=1)
    await run_exporter(exporter, lines(10))  # each batch fails once, then is delivered
    assert driver.lines == [line[:-1] for line in lines(10)]
    assert exporter.stats.retried == 10
    (failed,) = log.messages("warning")
    assert failed.startswith("delivery failed (attempt 1): dest: 500; next try in ")
    (works,) = log.messages("info")  # the run that was said; the 9 others were not
    assert works.startswith("delivery works again after failing for ")


def test_a_destination_failing_every_other_time_is_not_a_line_per_failure() -> None:
    """The limit holds across runs of failures (a flapping link); the end of a run no
    failure of which was said is not said either."""
    now = [0.0]
    failing = Failing(clock=lambda: now[0])
    assert failing.fail("down") == Report(1, first=True)  # the first, at once
    now[0] = 5.0
    assert failing.fail("down") is None
    run = failing.succeed()
    assert run is not None
    assert (run.seconds, run.failures, run.reported) == (5.0, 2, True)
    now[0] = 6.0  # a new run within 30 s of the last report: held
    assert failing.fail("down again") is None
    assert failing.failing_since == 6.0
    run = failing.succeed()
    assert run is not None
    assert not run.reported
    now[0] = 31.0
    assert failing.fail("down once more") == Report(3, first=True)  # 2 held since


def test_counted_says_1_attempt() -> None:
    """Issue 14, item 9: "gave up after 1 attempts"."""
    assert [counted(n, "attempt") for n in (0, 1, 2)] == ["0 attempts", "1 attempt", "2 attempts"]


async def test_gave_up_after_1_attempt(tmp_path: Path) -> None:
    driver = ScriptedDriver([RetryableDeliveryError("down")])
    log = CapturedLog()
    dead = DeadLetterFile(tmp_path / "dead")
    exporter = Exporter(
        "x",
        driver,
        DeliverySettings(batch_max_age=0.0, retry=RetryPolicy(0.001, 0.001, max_attempts=1)),
        dead,
        log=log.log,
    )
    await run_exporter(exporter, [b"a\n"])
    (reason,) = tmp_path.joinpath("dead").read_text().splitlines()
    assert '"reason":"gave up after 1 attempt: down"' in reason


class _Told(FileDriver):
    """A file driver that says when a batch was written."""

    def __init__(self, path: Path) -> None:
        super().__init__(path)
        self.sent = anyio.Event()

    async def send(self, batch: Batch) -> None:
        await super().send(batch)
        self.sent.set()


async def test_debug_says_each_batch_sent_and_each_new_connection(tmp_path: Path) -> None:
    out = tmp_path / "out"
    log = CapturedLog(level="debug")
    driver = _Told(out)
    exporter = Exporter("archive", driver, DeliverySettings(batch_max_age=0.0), None, log=log.log)
    with anyio.fail_after(10):
        async with anyio.create_task_group() as tasks:
            tasks.start_soon(exporter.run)
            for item in lines(3):
                assert exporter.offer(item)
            await driver.sent.wait()
            out.rename(tmp_path / "out.1")  # rotated: the next batch opens a new file
            await exporter.reopen()
            assert exporter.offer(b"again\n")
            exporter.queue.close()
    debug = log.messages("debug")
    assert [m for m in debug if m.startswith("connected")] == [
        "connected: 1 new connection (1 since start)",
        "connected: 1 new connection (2 since start)",
    ]
    sent = [m for m in debug if m.startswith("batch sent")]
    assert sent, debug
    assert all(re.fullmatch(r"batch sent: \d+ events?, \d+ bytes, in [0-9.]+ s", m) for m in sent)
    assert log.records("debug")[0]["destination"] == f"file:{out}"


class _Signalling(ScriptedDriver):
    def __init__(self) -> None:
        super().__init__()
        self.sent = anyio.Event()

    async def send(self, batch: Batch) -> None:
        await super().send(batch)
        self.sent.set()


async def test_latency_and_queue_age_are_timed_per_batch_from_its_first_event() -> None:
    """What /metrics turns into histograms: a batch whose first event waited 0.2 s."""
    driver = _Signalling()
    exporter = _exporter(driver, CapturedLog(), batch_max_age=0.2)
    with anyio.fail_after(10):
        async with anyio.create_task_group() as tasks:
            tasks.start_soon(exporter.run)
            for item in lines(3):  # the batch waits its age: it could still grow
                assert exporter.offer(item)
            await driver.sent.wait()
            exporter.queue.close()
    stats = exporter.stats
    assert (stats.queue_age.count, stats.latency.count) == (1, 1)
    assert 0.15 < stats.queue_age.sum < 5
    assert stats.latency.sum >= stats.queue_age.sum


async def test_the_drop_driver_counts_discarded_not_exported() -> None:
    """Issue 14, item 9: --to drop said "exported 3"."""
    exporter = Exporter("x", DropDriver(), DeliverySettings(batch_max_age=0.0), None)
    await run_exporter(exporter, lines(3))
    await exporter.close_driver()
    assert (exporter.stats.exported, exporter.stats.discarded) == (0, 3)
    assert exporter.stats.summary() == (
        "received 3, exported 0, retried 0, dropped 0, dead-lettered 0, discarded 3"
    )


async def test_a_spool_moved_aside_is_exposed_and_logged_as_an_error(tmp_path: Path) -> None:
    path = tmp_path / "spool.db"
    path.write_bytes(b"not a database" * 100)
    log = CapturedLog()
    exporter = _exporter(ScriptedDriver(), log, spool=str(path))
    aside = exporter.spool_moved_aside
    assert aside is not None
    assert aside.startswith(f"{path}.corrupt-")
    await run_exporter(exporter, lines(1))
    await exporter.close_driver()
    (error,) = log.messages("error")
    assert error == (
        f"spool {path} was unreadable (file is not a database): moved aside to {aside}, a new "
        "one started; what it held is there (spool export reads it), not sent"
    )
    assert _exporter(ScriptedDriver(), CapturedLog()).spool_moved_aside is None
