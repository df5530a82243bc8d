"""``run`` with a FIFO where it writes: at the file destination, at the dead-letter path.

Both used to stop the daemon: at the destination the worker thread waited in ``open``
forever (and SIGTERM then hung on it), at the dead-letter path the event loop itself did
(the http source and ``/metrics`` stopped answering, SIGTERM was ignored). Now the FIFO
is refused at once: the batch is dead-lettered or counted as dropped with a fixed reason,
the daemon keeps answering, and one SIGTERM stops it.
"""

from __future__ import annotations

import contextlib
import os
import re
import signal
from pathlib import Path

import httpx
import pytest

from tests.support.config import numbered_lines, write_config
from tests.support.files import VICTIM_TEXT, plant_symlink, planted_fifo
from tests.support.processes import Child, exporter_child, wait_until

PORTS = re.compile(rb"listening on http://127\.0\.0\.1:(\d+)|metrics on http://127\.0\.0\.1:(\d+)")


def _config(tmp_path: Path, destination: Path, dead: Path) -> Path:
    return write_config(
        tmp_path / "c.toml",
        settings={
            "dead_letter": dead,
            "shutdown_timeout": 2.0,
            "summary_interval": 0,
            "metrics_listen": "127.0.0.1:0",
        },
        sources={"in": {"type": "http", "listen": "127.0.0.1:0"}},
        exporters={"archive": {"destination": f"file:{destination}", "batch_max_age": 0.02}},
        metrics={"all": {"filter": "event=e", "exporter": "archive"}},
    )


def _ports(child: Child) -> tuple[int, int]:
    """The http source's port and the metrics port, once the daemon said them."""

    def found() -> tuple[int, int] | None:
        pairs = PORTS.findall(bytes(child.stderr))
        source = next((int(a) for a, _ in pairs if a), None)
        scrape = next((int(b) for _, b in pairs if b), None)
        return None if source is None or scrape is None else (source, scrape)

    assert wait_until(lambda: found() is not None, timeout=15), bytes(child.stderr)
    ports = found()
    assert ports is not None
    return ports


def _metric(scrape: int, series: str) -> int | None:
    """A series' value, asked of /metrics (answered within 2 s, or the test fails)."""
    text = httpx.get(f"http://127.0.0.1:{scrape}/metrics", timeout=2).text
    for line in text.splitlines():
        if line.startswith(series + " "):
            return int(float(line.split()[-1]))
    return None


def _post(listen: int, numbers: range) -> None:
    body = numbered_lines(numbers)
    answer = httpx.post(f"http://127.0.0.1:{listen}/events", content=body, timeout=2)
    assert answer.status_code == 204


def _stops_on_one_sigterm(child: Child) -> str:
    os.kill(child.pid, signal.SIGTERM)
    assert child.wait(timeout=15) == 3  # events were dead-lettered or dropped
    return bytes(child.stderr).decode(errors="replace")


def test_a_fifo_at_the_file_destination_is_refused_and_the_batch_dead_lettered(
    tmp_path: Path,
) -> None:
    destination, dead = tmp_path / "events.fifo", tmp_path / "dead.ndjson"
    with exporter_child("run", str(_config(tmp_path, destination, dead))) as child:
        listen, scrape = _ports(child)
        os.mkfifo(destination)  # after the start, which refuses it; nobody reads it
        _post(listen, range(5))
        dead_lettered = 'event_exporter_exporter_dead_lettered_total{exporter="archive"}'
        assert wait_until(lambda: _metric(scrape, dead_lettered) == 5, timeout=15)
        _post(listen, range(5, 8))  # still answering
        assert wait_until(lambda: _metric(scrape, dead_lettered) == 8, timeout=15)
        stderr = _stops_on_one_sigterm(child)
    assert "dead-lettered 8" in stderr
    records = dead.read_text().splitlines()
    assert len(records) == 8
    assert "it is a FIFO, not a regular file" in records[0]


def test_a_fifo_at_the_dead_letter_path_leaves_the_daemon_answering(tmp_path: Path) -> None:
    destination, dead = tmp_path / "a-directory", tmp_path / "dead.ndjson"
    with exporter_child("run", str(_config(tmp_path, destination, dead))) as child:
        listen, scrape = _ports(child)
        # after the start, which refuses both: a directory refuses every batch for good
        # (EISDIR), so they go to the dead letters, where a FIFO now is
        destination.mkdir()
        os.mkfifo(dead)
        _post(listen, range(5))
        dropped = (
            'event_exporter_exporter_dropped_total{exporter="archive",'
            'reason="dead-letter write failed"}'
        )
        assert wait_until(lambda: _metric(scrape, dropped) == 5, timeout=15)
        _post(listen, range(5, 8))
        assert wait_until(lambda: _metric(scrape, dropped) == 8, timeout=15)
        stderr = _stops_on_one_sigterm(child)
    assert "dropped 8 (dead-letter write failed: 8), dead-lettered 0" in stderr
    assert f"dead-letter file {dead} could not be written: it is a FIFO" in stderr
    # rate-limited: the first at once, what was held back in one line at the end
    said = [int(n) for n in re.findall(r"(\d+) undeliverable events dropped", stderr)]
    assert said == [5, 3]


@pytest.mark.parametrize("kind", ["symlink", "fifo"])
def test_run_refuses_a_dead_letter_path_that_is_not_a_file(tmp_path: Path, kind: str) -> None:
    dead, victim = tmp_path / "dead.ndjson", tmp_path / "victim"
    if kind == "symlink":
        plant_symlink(dead, victim)
    else:
        os.mkfifo(dead)
    with exporter_child("run", str(_config(tmp_path, tmp_path / "out", dead))) as child:
        assert child.wait(timeout=15) == 2
    found = "symlink" if kind == "symlink" else "FIFO"
    # refused at start, as check refuses it: at the key, with what is there
    assert f"global.dead_letter: {dead}: it is a {found}" in bytes(child.stderr).decode()
    if kind == "symlink":
        assert victim.read_bytes() == VICTIM_TEXT


@pytest.mark.parametrize("kind", ["symlink", "fifo"])
@pytest.mark.parametrize("where", ["destination", "state_file", "spool"])
def test_run_refuses_a_path_it_writes_that_is_not_a_file(
    tmp_path: Path, kind: str, where: str
) -> None:
    """Every file the daemon writes, with a symlink or a FIFO planted there: refused at
    start, at its key, never followed nor waited on; the victim file unchanged."""
    target, victim = tmp_path / f"{where}.planted", tmp_path / "victim"
    destination = target if where == "destination" else tmp_path / "out.ndjson"
    exporter: dict[str, object] = {"destination": f"file:{destination}"}
    sources: dict[str, dict[str, object]] = {"in": {"type": "http", "listen": "127.0.0.1:0"}}
    if where == "spool":
        exporter["spool"] = target
    if where == "state_file":
        (tmp_path / "in.log").write_bytes(numbered_lines(range(3)))
        sources = {"in": {"type": "file", "path": tmp_path / "in.log", "state_file": target}}
    config = write_config(
        tmp_path / "c.toml",
        settings={"dead_letter": tmp_path / "dead.ndjson", "summary_interval": 0},
        sources=sources,
        exporters={"archive": exporter},
        metrics={"all": {"filter": "event=e", "exporter": "archive"}},
    )
    guard = None
    with contextlib.ExitStack() as planted:
        if kind == "symlink":
            plant_symlink(target, victim)
        else:
            guard = planted.enter_context(planted_fifo(target))
        with exporter_child("run", str(config)) as child:
            code = child.wait(timeout=15)
    stderr = bytes(child.stderr).decode(errors="replace")
    assert code == 2, stderr
    key = {"destination": "exporter.archive.destination", "spool": "exporter.archive.spool"}
    named = key.get(where, "source.in.state_file")
    found = "symlink" if kind == "symlink" else "FIFO"
    assert re.search(rf"{re.escape(named)}: .*it is a {found}", stderr), stderr
    if kind == "symlink":
        assert victim.read_bytes() == VICTIM_TEXT
    else:
        assert guard is not None
        assert not guard.waited_on  # refused at open, never blocked on
    assert "Traceback" not in stderr
