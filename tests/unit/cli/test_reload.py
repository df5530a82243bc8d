"""A reload in process: the pipeline and exporters of ``run`` delivering while the
configuration changes under them (real files, a real unix path nobody listens on)."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from pathlib import Path

import anyio
import orjson
import pytest

from exporter.cli.reload import Retargetable, Running, reload, retargetable
from exporter.config import load_config
from exporter.delivery.exporter import Exporter
from exporter.delivery.lifecycle import Fleet, ship
from exporter.event import Event
from exporter.observe.health import Readiness
from exporter.routing import Pipeline
from tests.support.logs import CapturedLog
from tests.support.processes import until

pytestmark = pytest.mark.anyio


def _exporter(name: str, destination: str, more: str = "") -> str:
    return f"""
[exporter.{name}]
destination = "{destination}"
batch_max_age = 0.01
retry_initial_delay = 0.01
retry_max_delay = 0.02
{more}
"""


def _metric(name: str, event_filter: str, exporter: str) -> str:
    return f'\n[metric.{name}]\nfilter = "{event_filter}"\nexporter = "{exporter}"\n'


def _write(tmp_path: Path, *blocks: str, shutdown_timeout: float = 5.0) -> Path:
    path = tmp_path / "c.toml"
    head = f"""
[global]
dead_letter = "{tmp_path / "dead.ndjson"}"
shutdown_timeout = {shutdown_timeout}
[source.in]
type = "stdin"
"""
    path.write_text(head + "".join(blocks))
    return path


def _lines(path: Path) -> list[tuple[str, int]]:
    """(event name, n) of each event a file destination got."""
    if not path.exists():
        return []
    return [
        (record["event"], record["fields"]["n"])
        for record in map(orjson.loads, path.read_bytes().splitlines())
    ]


def _event(name: str, n: int) -> Event:
    return Event(name, fields={"n": n})


async def _daemon(
    path: Path, scenario: Callable[[Running], Awaitable[None]], *, stop: bool = False
) -> tuple[Pipeline[Exporter], CapturedLog]:
    """The configuration at ``path`` run as ``run`` runs it, with ``scenario`` as its one
    source; ``stop``: a shutdown (deadline) once it is done, else the end of input."""
    captured = CapturedLog()
    config = load_config(path)
    pipeline = Pipeline.from_config(config, retargetable, captured.log)
    fleet = Fleet(pipeline.exporters.values())
    readiness = Readiness(lambda: pipeline.every_exporter)
    stopping = anyio.Event()
    with anyio.fail_after(20):
        async with anyio.create_task_group() as tasks:
            running = Running(str(path), config, pipeline, fleet, captured.log, readiness, tasks)

            async def producer() -> None:
                await scenario(running)
                if stop:
                    stopping.set()
                    await anyio.sleep_forever()

            try:
                await ship(
                    producer,
                    fleet,
                    shutdown_timeout=config.settings.shutdown_timeout,
                    handle_signals=False,
                    stop=stopping,
                    log=captured.log,
                )
            finally:
                await pipeline.close_drivers()
    return pipeline, captured


async def test_a_reload_applies_changed_metrics_and_exporters_losing_nothing(
    tmp_path: Path,
) -> None:
    a, b, c = (tmp_path / f"{name}.ndjson" for name in "abc")
    path = _write(
        tmp_path,
        _exporter("a", f"file:{a}"),
        _exporter("b", f"file:{b}"),
        _metric("xs", "event=x", "a"),
        _metric("ys", "event=y", "b"),
    )

    async def scenario(running: Running) -> None:
        pipeline = running.pipeline
        for n in range(3):
            for name in "xyz":
                await pipeline.emit(_event(name, n))
        _write(
            tmp_path,
            _exporter("a", f"file:{a}"),
            _exporter("c", f"file:{c}"),
            _metric("xs", "event=x OR event=z", "a"),
            _metric("ys", "event=y", "c"),
        )
        text = path.read_text().replace('type = "stdin"', 'type = "stdin"\nmax_line_bytes = 100')
        path.write_text(text)
        await reload(running)
        for n in range(3, 5):
            for name in "xyz":
                await pipeline.emit(_event(name, n))

    pipeline, log = await _daemon(path, scenario)
    assert _lines(a) == [("x", 0), ("x", 1), ("x", 2), ("x", 3), ("z", 3), ("x", 4), ("z", 4)]
    assert _lines(b) == [("y", 0), ("y", 1), ("y", 2)]  # removed: delivered what it held
    assert _lines(c) == [("y", 3), ("y", 4)]
    # a metric kept keeps its counts (it fed b, now c)
    assert [(route.metric, route.matched) for route in pipeline.routes] == [("xs", 7), ("ys", 5)]
    assert [exporter.name for exporter in pipeline.retired] == ["b"]
    assert "exporter b (file:" in pipeline.summary()
    said = {(r.get("exporter") or r.get("metric") or r.get("source"), r["message"])
            for r in log.records()}  # fmt: skip
    assert ("c", f"added: to file:{c}") in said
    removed = [m for who, m in said if who == "b" and m.startswith("removed: ")]
    assert removed[0].endswith(" events), then closes"), removed
    assert ("xs", "changed: event=x -> exporter a; now event=x OR event=z -> exporter a") in said
    assert ("ys", "changed: event=y -> exporter b; now event=y -> exporter c") in said
    assert (
        "in",
        "changed: sources are not restarted by a reload; restart event-exporter to apply it",
    ) in said
    assert (None, "reload done: 2 metrics, 2 exporters (1 added, 1 removed, 0 changed)") in said


async def test_a_reload_that_does_not_check_keeps_the_configuration_in_effect(
    tmp_path: Path,
) -> None:
    a = tmp_path / "a.ndjson"
    path = _write(tmp_path, _exporter("a", f"file:{a}"), _metric("xs", "event=x", "a"))

    async def scenario(running: Running) -> None:
        routes = running.pipeline.routes
        await running.pipeline.emit(_event("x", 0))
        path.write_text(path.read_text().replace('filter = "event=x"', 'filter = "event=(x"'))
        path.write_text(path.read_text().replace("batch_max_age = 0.01", "batch_max_age = -1"))
        await reload(running)
        assert running.pipeline.routes is routes
        await running.pipeline.emit(_event("x", 1))
        await running.pipeline.emit(_event("y", 2))

    _, log = await _daemon(path, scenario)
    assert _lines(a) == [("x", 0), ("x", 1)]
    errors = log.messages("error")
    assert errors[0].startswith(f"reload: {path}:")
    assert "exporter.a.batch_max_age" in " ".join(errors)
    assert "metric.xs.filter" in " ".join(errors)
    assert errors[-1] == "reload failed (2 problems): still running the configuration in effect"


async def test_an_exporter_whose_destination_changed_carries_its_queue_there(
    tmp_path: Path,
) -> None:
    """The old destination is gone (nobody listens): the batch being retried and the queued
    events go to the new one."""
    a = tmp_path / "a.ndjson"
    nobody = f"unix:{tmp_path / 'nobody.sock'}"
    path = _write(
        tmp_path, _exporter("a", nobody, "batch_max_events = 2"), _metric("all", "event=*", "a")
    )

    async def scenario(running: Running) -> None:
        exporter = running.pipeline.exporters["a"]
        for n in range(5):
            await running.pipeline.emit(_event("x", n))
        await until(lambda: exporter.stats.retried >= 2)  # the first batch retries
        text = path.read_text().replace(nobody, f"file:{a}").replace("events = 2", "events = 3")
        path.write_text(text.replace("retry_max_delay = 0.02", "retry_max_delay = 0.03"))
        await reload(running)
        assert running.pipeline.exporters["a"] is exporter
        assert isinstance(exporter.driver, Retargetable)
        assert exporter.driver.name == f"file:{a}"
        assert exporter.settings.retry.max_delay == 0.03
        await running.pipeline.emit(_event("x", 5))

    pipeline, log = await _daemon(path, scenario)
    assert sorted(_lines(a)) == [("x", n) for n in range(6)]
    stats = pipeline.exporters["a"].stats
    assert (stats.received, stats.exported, stats.dead_lettered) == (6, 6, 0)
    said = log.messages()
    assert any(
        m.startswith(f"destination changed: {nobody} -> file:{a}; its queue (") for m in said
    )
    assert "retry settings changed: they apply from the next batch on" in said
    assert "batch_max_events changed: applies at the next start (the running queue is kept)" in (
        said
    )


async def test_an_event_waiting_for_room_in_a_removed_exporter_goes_in_at_once(
    tmp_path: Path,
) -> None:
    """Its source is not left blocked on an exporter that is gone: the event is queued
    there past the bounds, and at the shutdown deadline dead-lettered with the rest."""
    nobody = f"unix:{tmp_path / 'nobody.sock'}"
    small = "queue_max_events = 1\nbatch_max_events = 1"
    a = tmp_path / "a.ndjson"
    path = _write(
        tmp_path,
        _exporter("a", f"file:{a}"),
        _exporter("stuck", nobody, small),
        _metric("all", "event=*", "stuck"),
        shutdown_timeout=0.2,
    )

    async def scenario(running: Running) -> None:
        pipeline = running.pipeline
        stuck = pipeline.exporters["stuck"]
        await pipeline.emit(_event("x", 0))  # the batch in flight
        await until(lambda: stuck.stats.retried > 0)
        await pipeline.emit(_event("x", 1))  # the queue is full now
        waiting = anyio.Event()

        async def blocked() -> None:
            await pipeline.emit(_event("x", 2))
            waiting.set()

        async with anyio.create_task_group() as tasks:
            tasks.start_soon(blocked)
            await anyio.sleep(0.05)
            assert not waiting.is_set()  # waits for room (block)
            path.write_text(path.read_text().replace('exporter = "stuck"', 'exporter = "a"'))
            path.write_text(path.read_text().replace("[exporter.stuck]", "[exporter.gone]"))
            await reload(running)
            await waiting.wait()  # bounded by fail_after
        await pipeline.emit(_event("x", 3))

    pipeline, _ = await _daemon(path, scenario, stop=True)
    assert _lines(a) == [("x", 3)]
    stuck = pipeline.retired[0]
    assert (stuck.name, stuck.stats.received, stuck.stats.dead_lettered) == ("stuck", 3, 3)
    dead = [orjson.loads(line) for line in (tmp_path / "dead.ndjson").read_bytes().splitlines()]
    assert [record["exporter"] for record in dead] == ["stuck"] * 3


async def test_a_driver_that_refuses_its_settings_fails_the_reload_before_any_change(
    tmp_path: Path,
) -> None:
    a, b = tmp_path / "a.ndjson", tmp_path / "b.ndjson"
    path = _write(tmp_path, _exporter("a", f"file:{a}"), _metric("xs", "event=x", "a"))
    too_long = "unix:/tmp/" + "s" * 120  # past sun_path: the unix driver refuses it

    async def scenario(running: Running) -> None:
        routes, exporter = running.pipeline.routes, running.pipeline.exporters["a"]
        await running.pipeline.emit(_event("x", 0))
        text = path.read_text().replace(f"file:{a}", too_long)
        path.write_text(text + _exporter("b", f"file:{b}") + _metric("ys", "event=x", "b"))
        await reload(running)
        assert running.pipeline.routes is routes
        assert list(running.pipeline.exporters) == ["a"]
        assert exporter.driver.name == f"file:{a}"
        await running.pipeline.emit(_event("x", 1))

    _, log = await _daemon(path, scenario)
    assert _lines(a) == [("x", 0), ("x", 1)]
    assert not b.exists()
    failed = log.messages("error")
    assert len(failed) == 1
    assert failed[0].startswith("reload failed: ")
    assert failed[0].endswith("; still running the configuration in effect")


async def test_what_run_sends_to_drop_is_counted_as_discarded_across_a_retarget(
    tmp_path: Path,
) -> None:
    """run's drivers can be retargeted (Retargetable): whether what was sent is discarded
    is the driver's of the moment, not the exporter's at its start."""
    a = tmp_path / "a.ndjson"
    path = _write(tmp_path, _exporter("a", "drop"), _metric("all", "event=*", "a"))

    async def scenario(running: Running) -> None:
        exporter = running.pipeline.exporters["a"]
        for n in range(3):
            await running.pipeline.emit(_event("x", n))
        await until(lambda: exporter.stats.discarded == 3)
        path.write_text(path.read_text().replace('"drop"', f'"file:{a}"'))
        await reload(running)
        await running.pipeline.emit(_event("x", 3))

    pipeline, _ = await _daemon(path, scenario)
    stats = pipeline.exporters["a"].stats
    assert (stats.discarded, stats.exported) == (3, 1)
    assert _lines(a) == [("x", 3)]
