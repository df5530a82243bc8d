"""A spool has one owner: a second daemon, ``spool drain`` and ``spool export`` beside a
running daemon are refused, naming the process that holds it, and the spool is left as it
was."""

from __future__ import annotations

import re
import sqlite3
import subprocess
import sys
from pathlib import Path

import httpx

from tests.support.config import numbered_lines
from tests.support.processes import exporter_child, wait_until
from tests.support.spool import spooled_daemon_config

LISTENING = re.compile(rb"listening on http://127\.0\.0\.1:(\d+)")


def _rows(spool: Path) -> int:
    with sqlite3.connect(f"file:{spool}?mode=ro", uri=True) as db:
        return int(db.execute("SELECT coalesce(sum(count), 0) FROM chunks").fetchone()[0])


def _command(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "exporter", *args], capture_output=True, text=True, timeout=60
    )


def test_a_second_owner_is_refused_and_the_spool_left_as_it_was(tmp_path: Path) -> None:
    """Regression: spool drain emptied a spool a running daemon owned."""
    spool = tmp_path / "spool.db"
    nobody = f"unix:{tmp_path / 'nobody.sock'}"  # nothing listens: events stay spooled
    config = spooled_daemon_config(tmp_path, nobody, {"type": "http", "listen": "127.0.0.1:0"})
    with exporter_child("run", str(config)) as daemon:
        assert wait_until(lambda: LISTENING.search(bytes(daemon.stderr)) is not None, timeout=15)
        found = LISTENING.search(bytes(daemon.stderr))
        assert found is not None
        body = numbered_lines(range(50))
        answer = httpx.post(f"http://127.0.0.1:{int(found[1])}/events", content=body, timeout=5)
        assert answer.status_code == 204  # committed to the spool
        held = _rows(spool)
        assert held == 50

        holder = f"is in use by process {daemon.pid} ("
        second = _command("run", str(config))
        assert second.returncode == 2
        assert holder in second.stderr
        drain = _command("spool", "drain", str(spool), "--to", f"file:{tmp_path / 'out'}")
        assert drain.returncode == 2
        assert holder in drain.stderr
        export = _command("spool", "export", str(spool), "--output", str(tmp_path / "dump"))
        assert export.returncode == 2
        assert holder in export.stderr
        stats = _command("spool", "stats", str(spool))  # only reads: allowed
        assert stats.returncode == 0
        assert "50 events" in stats.stdout
        assert _rows(spool) == held
        assert not (tmp_path / "out").exists()
        daemon.terminate()
        assert daemon.wait(timeout=30) in (0, 3)

    drain = _command("spool", "drain", str(spool), "--to", f"file:{tmp_path / 'out'}")
    assert drain.returncode == 0, drain.stderr
    assert len((tmp_path / "out").read_bytes().splitlines()) == 50
