"""Sources over a spool that cannot write (a full disk): a sender is answered only once
its events are on disk, and the others are told to come back later (503) meanwhile,
rather than being acknowledged events that only memory holds."""

from __future__ import annotations

import sqlite3
from contextlib import closing
from pathlib import Path

import anyio
import httpx
import pytest

from exporter.delivery.exporter import DeliverySettings, Exporter
from exporter.delivery.spool import SpoolQueue
from exporter.formats import FormatSpec, make_formatter
from exporter.routing import Pipeline
from exporter.sources.http import HttpSource, HttpSourceSettings
from tests.support.fakes import ScriptedDriver
from tests.support.logs import CapturedLog
from tests.support.processes import until
from tests.support.samples import EVENTS_FILE

pytestmark = pytest.mark.anyio
LINES = EVENTS_FILE.read_bytes().splitlines()
FULL = "CREATE TRIGGER full BEFORE INSERT ON chunks BEGIN SELECT RAISE(ABORT, 'full'); END"


def _spooled_rows(path: Path) -> int:
    with closing(sqlite3.connect(path)) as db:
        return int(db.execute("SELECT count(*) FROM chunks").fetchone()[0])


def _sql(path: Path, statement: str) -> None:
    with closing(sqlite3.connect(path)) as db:
        db.execute(statement)
        db.commit()


async def test_an_http_answer_waits_for_the_spool_and_others_are_told_503(
    tmp_path: Path,
) -> None:
    path = tmp_path / "spool.db"
    settings = DeliverySettings(spool=str(path), batch_max_age=0.0)
    exporter = Exporter("out", ScriptedDriver(), settings, None, log=CapturedLog().log)
    assert isinstance(exporter.queue, SpoolQueue)
    pipeline = Pipeline.one_route(exporter, make_formatter(FormatSpec(), newline=True), None)
    source = HttpSource(HttpSourceSettings(port=0), pipeline)
    answers: list[int] = []
    with anyio.fail_after(15):
        async with anyio.create_task_group() as tasks, httpx.AsyncClient(timeout=10) as client:
            await tasks.start(source.serve)
            url = f"http://127.0.0.1:{source.port}/events"
            assert (await client.post(url, content=LINES[0])).status_code == 204
            assert _spooled_rows(path) == 1
            _sql(path, FULL)  # the next insert fails, as on a full disk

            async def post() -> None:
                answers.append((await client.post(url, content=LINES[1])).status_code)

            tasks.start_soon(post)
            await until(lambda: exporter.queue.commit_failing)
            assert answers == []  # not acknowledged: its event is only in memory
            later = await client.post(url, content=LINES[2])
            assert later.status_code == 503
            assert later.headers["retry-after"] == "1"
            assert answers == []
            _sql(path, "DROP TRIGGER full")  # room again: the write is tried again
            await until(lambda: answers == [204])
            assert _spooled_rows(path) == 2
            tasks.cancel_scope.cancel()
    exporter.queue.shut()
