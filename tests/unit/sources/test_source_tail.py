"""The tail source on real files: appended lines in order, a partial line held until its
newline, rename rotation and copytruncate without loss or duplicates, a restart resuming
exactly from the state file, and a file that appears later.

Nothing here sleeps: the test's emit() sets an anyio.Event once the expected number of
events has come, and the source polls every 10 ms. To show that nothing more (no
duplicate) is coming, a test appends a last line and checks it is the next one to arrive.
"""

from __future__ import annotations

import io
import json
import os
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path

import anyio
import orjson
import pytest

from exporter.sources.tail import TailSource, TailSourceSettings
from tests.support.sources import Collector

pytestmark = pytest.mark.anyio
POLL = 0.01
LAST = -1  # the n of the line that shows nothing else is coming


def line(n: int) -> bytes:
    return b'{"event":"t","fields":{"n":%d,"pad":"%s"}}\n' % (n, b"p" * 30)


def lines(numbers: range) -> bytes:
    return b"".join(line(n) for n in numbers)


def append(path: Path, data: bytes) -> None:
    with open(path, "ab") as file:
        file.write(data)


@asynccontextmanager
async def following(
    path: Path, collector: Collector | None = None, **settings: object
) -> AsyncIterator[tuple[TailSource, Collector, io.StringIO]]:
    """A started source on ``path``; cancelled (as the daemon stops it) at the end."""
    collector = collector or Collector()
    errors = io.StringIO()
    values: dict[str, object] = {"poll_interval": POLL, **settings}
    source = TailSource(
        TailSourceSettings(str(path), **values),  # type: ignore[arg-type]
        collector,
        errors,
    )
    async with anyio.create_task_group() as tasks:
        await tasks.start(source.serve)
        yield source, collector, errors
        tasks.cancel_scope.cancel()


async def nothing_more(path: Path, collector: Collector, count: int) -> None:
    """Append a last line; it must be event ``count + 1``: no duplicate came before it."""
    append(path, line(LAST))
    await collector.wait_for(count + 1)
    assert len(collector.events) == count + 1
    assert collector.events[-1].fields["n"] == LAST
    del collector.events[-1]


async def test_appended_lines_arrive_in_order(tmp_path: Path) -> None:
    log = tmp_path / "events.log"
    log.write_bytes(lines(range(3)))
    with anyio.fail_after(10):
        async with following(log) as (source, collector, errors):
            await collector.wait_for(3)
            for n in range(3, 8):  # one write each
                append(log, line(n))
            await collector.wait_for(8)
            append(log, b"event:t\tfield:n=8\r\n" + b"not an event\n" + line(9))
            await collector.wait_for(10)
            await nothing_more(log, collector, 10)
    assert collector.numbers() == list(range(10))
    assert source.counts.events == 11  # with the last line
    assert source.counts.rejected_lines == 1
    report = errors.getvalue().splitlines()
    assert len(report) == 1
    assert report[0].startswith(
        f"event-exporter: tail source {log}: line 10 (byte {len(lines(range(8))) + 19}): "
    )
    assert "unknown item 'not an event'" in report[0]


async def test_a_partial_line_waits_for_its_newline(tmp_path: Path) -> None:
    log, state = tmp_path / "events.log", tmp_path / "state.json"
    log.write_bytes(line(0) + line(1)[:25])  # one read: both seen at once
    with anyio.fail_after(10):
        async with following(log, state_file=str(state)) as (_, collector, errors):
            await collector.wait_for(1)
            assert json.loads(state.read_bytes())["offset"] == len(line(0))
            append(log, line(1)[25:-1])  # still no newline
            append(log, b"\n")
            await collector.wait_for(2)
            await nothing_more(log, collector, 2)
    assert collector.numbers() == [0, 1]
    assert errors.getvalue() == ""


async def test_rename_rotation_loses_nothing_and_duplicates_nothing(tmp_path: Path) -> None:
    log = tmp_path / "events.log"
    log.write_bytes(lines(range(5)))
    with anyio.fail_after(10):
        async with following(log) as (source, collector, errors):
            await collector.wait_for(5)
            writer = os.open(log, os.O_WRONLY | os.O_APPEND)  # a writer holding it open
            try:
                os.write(writer, lines(range(5, 10)))
                os.rename(log, tmp_path / "events.log.1")  # logrotate
                os.write(writer, lines(range(10, 13)))  # before the writer reopens
                await collector.wait_for(13)  # the old file is read while no new one
                os.write(writer, lines(range(13, 15)))
                log.write_bytes(lines(range(15, 20)))  # create; the writer reopens
            finally:
                os.close(writer)
            await collector.wait_for(20)
            append(log, lines(range(20, 22)))
            await collector.wait_for(22)
            await nothing_more(log, collector, 22)
    assert collector.numbers() == list(range(22))
    assert source.counts.rotations == 1
    assert errors.getvalue() == ""


async def test_a_partial_line_left_in_a_rotated_file_is_reported(tmp_path: Path) -> None:
    log = tmp_path / "events.log"
    log.write_bytes(line(0) + line(1)[:10])
    with anyio.fail_after(10):
        async with following(log) as (source, collector, errors):
            await collector.wait_for(1)
            os.rename(log, tmp_path / "events.log.1")
            log.write_bytes(line(2))
            await collector.wait_for(2)
            await nothing_more(log, collector, 2)
    assert collector.numbers() == [0, 2]
    assert (source.counts.rotations, source.counts.rejected_lines) == (1, 1)
    assert errors.getvalue() == (
        f"event-exporter: tail source {log}: line 2 (byte {len(line(0))}): truncated: the "
        "file was replaced 10 bytes into its last line, before its newline\n"
    )


async def test_copytruncate_starts_again_from_the_start(tmp_path: Path) -> None:
    log = tmp_path / "events.log"
    log.write_bytes(lines(range(5)))
    with anyio.fail_after(10):
        async with following(log) as (source, collector, errors):
            await collector.wait_for(5)
            os.truncate(log, 0)  # copytruncate, then the writer goes on
            append(log, lines(range(5, 7)))
            await collector.wait_for(7)
            await nothing_more(log, collector, 7)
    assert collector.numbers() == list(range(7))
    assert source.counts.truncations == 1
    assert "truncated: reading it again from the start" in errors.getvalue()


async def test_a_restart_resumes_exactly_where_the_state_says(tmp_path: Path) -> None:
    log, state = tmp_path / "events.log", tmp_path / "state.json"
    log.write_bytes(lines(range(10)))
    with anyio.fail_after(10):
        async with following(log, state_file=str(state)) as (_, first, _):
            await first.wait_for(10)
        append(log, lines(range(10, 15)) + line(15)[:20])  # while stopped; 15 unfinished
        async with following(log, state_file=str(state)) as (_, second, errors):
            await second.wait_for(5)
            append(log, line(15)[20:] + line(16))
            await second.wait_for(7)
            await nothing_more(log, second, 7)
    assert first.numbers() == list(range(10))
    assert second.numbers() == list(range(10, 17))
    assert errors.getvalue() == ""
    saved = json.loads(state.read_bytes())
    found = log.stat()
    assert saved == {
        "path": str(log),
        "dev": found.st_dev,
        "inode": found.st_ino,
        "offset": found.st_size,
        "line": 18,
    }
    assert sorted(os.listdir(tmp_path)) == ["events.log", "state.json"]  # no temporary left


async def test_a_stop_while_emit_waits_keeps_the_lines_not_taken(tmp_path: Path) -> None:
    log, state = tmp_path / "events.log", tmp_path / "state.json"
    log.write_bytes(lines(range(10)))
    with anyio.fail_after(10):
        full = Collector(block_at=4)  # the 4th event finds the queue full; then SIGTERM
        async with following(log, full, state_file=str(state)) as (source, _, _):
            await full.blocked.wait()
        assert json.loads(state.read_bytes())["offset"] == len(lines(range(4)))
        async with following(log, state_file=str(state)) as (_, second, _):
            await second.wait_for(6)
            await nothing_more(log, second, 6)
    assert full.numbers() == [0, 1, 2, 3]  # the 4th queued as emit was cancelled
    assert source.counts.events == 4
    assert second.numbers() == list(range(4, 10))


async def test_a_state_for_another_file_or_past_the_end_reads_from_the_start(
    tmp_path: Path,
) -> None:
    log, state = tmp_path / "events.log", tmp_path / "state.json"
    log.write_bytes(lines(range(3)))
    found = log.stat()
    cases = [
        ({"dev": found.st_dev, "inode": found.st_ino + 1, "offset": len(line(0))}, ""),
        ({"dev": found.st_dev, "inode": found.st_ino, "offset": 10_000}, "shorter"),
    ]
    with anyio.fail_after(10):
        for position, note in cases:
            state.write_bytes(json.dumps({"path": str(log), **position}).encode())
            async with following(log, state_file=str(state)) as (_, collector, errors):
                await collector.wait_for(3)
                await nothing_more(log, collector, 3)
            log.write_bytes(lines(range(3)))  # without the last line again
            assert collector.numbers() == [0, 1, 2]
            assert note in errors.getvalue()


async def test_a_file_that_appears_later_is_read_from_its_start(tmp_path: Path) -> None:
    log = tmp_path / "events.log"
    with anyio.fail_after(10):
        async with following(log, start_at="end") as (_, collector, _):
            log.write_bytes(lines(range(3)))
            await collector.wait_for(3)
            await nothing_more(log, collector, 3)
    assert collector.numbers() == [0, 1, 2]


async def test_start_at_end_skips_what_was_there_but_the_line_being_written(
    tmp_path: Path,
) -> None:
    log = tmp_path / "events.log"
    log.write_bytes(lines(range(5)) + line(5)[:12])
    with anyio.fail_after(10):
        async with following(log, start_at="end") as (_, collector, errors):
            append(log, line(5)[12:] + line(6))
            await collector.wait_for(2)
            await nothing_more(log, collector, 2)
    assert collector.numbers() == [5, 6]
    assert errors.getvalue() == ""


async def test_an_oversized_line_is_reported_and_skipped(tmp_path: Path) -> None:
    log = tmp_path / "events.log"
    huge = b'{"event":"t","fields":{"pad":"' + b"x" * 5000 + b'"}}\n'
    log.write_bytes(line(0) + huge + line(1))
    with anyio.fail_after(10):
        async with following(log, max_line_bytes=1000) as (source, collector, errors):
            await collector.wait_for(2)
            await nothing_more(log, collector, 2)
    assert collector.numbers() == [0, 1]
    assert source.counts.rejected_lines == 1
    assert f"line 2 (byte {len(line(0))}): {len(huge) - 1} bytes, longer than 1000" in (
        errors.getvalue()
    )


async def test_every_saved_position_follows_a_commit_of_what_came_before_it(
    tmp_path: Path,
) -> None:
    """With a spool, the state file must never point past events not yet on disk: the
    source commits (the pipeline's commit) before it saves a position."""
    log, state = tmp_path / "events.log", tmp_path / "state.json"
    log.write_bytes(lines(range(5)))
    committed: list[int] = []  # events emitted at each commit

    class Committing(Collector):
        def commit(self) -> None:
            committed.append(len(self.events))

    collector = Committing()
    source = TailSource(
        TailSourceSettings(str(log), state_file=str(state), poll_interval=POLL),
        collector,
        io.StringIO(),
    )
    with anyio.fail_after(10):
        async with anyio.create_task_group() as tasks:
            await tasks.start(source.serve)
            await collector.wait_for(5)
            append(log, lines(range(5, 9)))
            await collector.wait_for(9)
            tasks.cancel_scope.cancel()
    assert committed
    assert committed[-1] == 9  # the last save came after all 9 were committed
    assert orjson.loads(state.read_bytes())["offset"] == len(lines(range(9)))
