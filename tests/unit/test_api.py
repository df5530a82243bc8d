"""The Python API: emit events built in-process into a configuration's metrics and
exporters, from async code and from plain threads; leaving the block drains or
dead-letters every event."""

from __future__ import annotations

import threading
from pathlib import Path

import anyio
import pytest

from exporter.api import DROPPED_NOT_WAITING, EventExporter, ThreadedEventExporter
from exporter.config import parse_config
from exporter.delivery.deadletter import read_dead_letters
from exporter.event import Event
from exporter.formats import FormatSpec, make_formatter

pytestmark = pytest.mark.anyio
START = 1_795_304_520_000_000_000


def _config_text(tmp_path: Path, destination: str, **exporter: object) -> str:
    extra = "".join(f"{key} = {value!r}\n".replace("'", '"') for key, value in exporter.items())
    return f"""
[global]
dead_letter = "{tmp_path / "dead.ndjson"}"
shutdown_timeout = 0.3

[exporter.out]
destination = "{destination}"
batch_max_age = 0.01
{extra}
[metric.logins]
filter = "event=login"
exporter = "out"
include = ["name", "timestamps", "fields"]
"""


def _events(count: int, name: str = "login") -> list[Event]:
    return [
        Event(name, "h", START + i, START + i, ["auth"], {"n": i, "user": f"u{i}"})
        for i in range(count)
    ]


def _expected(events: list[Event]) -> bytes:
    fmt = make_formatter(
        FormatSpec(include=frozenset({"name", "timestamps", "fields"})), newline=True
    )
    return b"".join(fmt(e) for e in events)


async def test_emit_routes_what_the_metric_selects_to_its_exporter(tmp_path: Path) -> None:
    config = parse_config(_config_text(tmp_path, f"file:{tmp_path / 'out.ndjson'}"))
    logins, others = _events(50), _events(5, name="logout")
    with anyio.fail_after(10):
        async with EventExporter(config) as events:
            for event in logins + others:
                assert events.emit(event)
    assert (tmp_path / "out.ndjson").read_bytes() == _expected(logins)
    summary = events.summary()
    assert "submitted 55, matched by no metric 5; metric logins: matched 50" in summary
    assert "received 50, exported 50, retried 0, dropped 0, dead-lettered 0" in summary


async def test_emit_never_waits_and_counts_what_a_full_block_queue_refused(
    tmp_path: Path,
) -> None:
    config = parse_config(
        _config_text(tmp_path, f"file:{tmp_path / 'out.ndjson'}", queue_max_events=10)
    )
    with anyio.fail_after(10):
        async with EventExporter(config) as events:
            accepted = [events.emit(e) for e in _events(100)]  # no await: nothing drains
    assert accepted.count(True) == 10
    stats = events.pipeline.exporters["out"].stats
    assert stats.dropped == {DROPPED_NOT_WAITING: 90}
    assert stats.exported == 10


async def test_emit_wait_waits_for_room(tmp_path: Path) -> None:
    config = parse_config(
        _config_text(tmp_path, f"file:{tmp_path / 'out.ndjson'}", queue_max_events=10)
    )
    logins = _events(500)
    with anyio.fail_after(10):
        async with EventExporter(config) as events:
            for event in logins:
                await events.emit_wait(event)
    assert (tmp_path / "out.ndjson").read_bytes() == _expected(logins)


async def test_leaving_the_block_dead_letters_what_cannot_be_delivered(tmp_path: Path) -> None:
    absent = tmp_path / "absent.sock"  # no listener: retried until the shutdown deadline
    config = parse_config(_config_text(tmp_path, f"unix:{absent}"))
    logins = _events(20)
    with anyio.fail_after(10):
        async with EventExporter(config) as events:
            for event in logins:
                events.emit(event)
    dead = [event for _, event in read_dead_letters(tmp_path / "dead.ndjson")]
    assert b"".join(line + b"\n" for line in dead) == _expected(logins)
    assert "dead-lettered 20" in events.summary()


def test_threads_emit_through_the_threaded_exporter(tmp_path: Path) -> None:
    config = parse_config(_config_text(tmp_path, f"file:{tmp_path / 'out.ndjson'}"))
    logins = _events(2000)
    with ThreadedEventExporter(config) as events:
        workers = [
            threading.Thread(target=lambda part=part: [events.emit(e) for e in part])
            for part in (logins[::2], logins[1::2])
        ]
        for worker in workers:
            worker.start()
        for worker in workers:
            worker.join(timeout=20)
            assert not worker.is_alive()
        summary = events.summary()
    lines = (tmp_path / "out.ndjson").read_bytes().splitlines(keepends=True)
    assert sorted(lines) == sorted(_expected(logins).splitlines(keepends=True))
    assert "submitted 2000" in summary
    with pytest.raises(RuntimeError, match="with block"):
        events.emit(logins[0])
    # after the block, what happened in all: every event delivered by then
    assert "received 2000, exported 2000, retried 0, dropped 0" in events.summary()


def test_the_threaded_exporter_has_no_summary_before_its_block(tmp_path: Path) -> None:
    config = parse_config(_config_text(tmp_path, f"file:{tmp_path / 'out.ndjson'}"))
    with pytest.raises(RuntimeError, match="with block"):
        ThreadedEventExporter(config).summary()


@pytest.mark.parametrize(("overflow", "busy"), [("drop_newest", True), ("block", False)])
async def test_the_pipeline_is_busy_when_a_dropping_queue_is_full(
    tmp_path: Path, overflow: str, busy: bool
) -> None:
    config = parse_config(_config_text(tmp_path, "drop", queue_max_events=2, overflow=overflow))
    events = EventExporter(config)
    pipeline = events.pipeline
    assert not pipeline.busy()
    for event in _events(2):
        events.emit(event)
    assert pipeline.busy() is busy


@pytest.mark.parametrize("way_out", ["exception", "cancellation"])
async def test_leaving_the_block_early_still_accounts_for_every_event(
    tmp_path: Path, way_out: str
) -> None:
    config = parse_config(_config_text(tmp_path, f"file:{tmp_path / 'out.ndjson'}"))
    logins = _events(5)
    with anyio.fail_after(10):
        if way_out == "exception":
            events = EventExporter(config)

            async def fail_inside() -> None:
                async with events:
                    for event in logins:
                        events.emit(event)
                    raise KeyError("the caller's")

            with pytest.raises(KeyError, match="the caller's"):  # as raised, not grouped
                await fail_inside()
        else:
            with anyio.move_on_after(0.01) as scope:
                async with EventExporter(config) as events:
                    for event in logins:
                        events.emit(event)
                    await anyio.sleep_forever()
            assert scope.cancelled_caught
    assert (tmp_path / "out.ndjson").read_bytes() == _expected(logins)
    with pytest.raises(RuntimeError, match="closed"):
        events.emit(logins[0])


async def test_an_event_a_metric_cannot_write_is_counted_and_is_a_loss(tmp_path: Path) -> None:
    config = parse_config(_config_text(tmp_path, "drop"))
    events = EventExporter(config)
    unwritable = Event("login", "h", 10**21, 10**21, [], {})  # after the year 9999
    assert events.emit(unwritable)
    assert events.pipeline.counts.rejected == {"logins": 1}
    assert events.pipeline.lost
    assert "metric logins: matched 1, rejected 1" in events.summary()
