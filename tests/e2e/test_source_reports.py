"""What every source of ``run`` rejects is in the daemon's log, with where: the http
source's refused requests (their status and what the client was told) and the bad lines
of a batch (peer, endpoint, line), the unix source's (connection, line), the file
source's (line, byte); each a warning with the source's name as context, rate-limited
(the first ten of a kind, the rest only counted in /metrics)."""

from __future__ import annotations

import os
import signal
import socket
from pathlib import Path

import httpx
import orjson

from tests.support.drivers import socket_dir
from tests.support.processes import (
    Child,
    announced_port,
    exporter_child,
    numbered_tab_line,
    wait_until,
)

TOKEN = "s3cret-token"
BAD_IN_BATCH = 50


def _config(tmp_path: Path, sock: str) -> Path:
    path = tmp_path / "c.toml"
    path.write_text(
        f"""
[global]
log_format = "json"
dead_letter = "{tmp_path / "dead.ndjson"}"
shutdown_timeout = 5.0
summary_interval = 0
metrics_listen = "127.0.0.1:0"
[source.web]
type = "http"
listen = "127.0.0.1:0"
bearer_token_env = "TEST_SOURCE_TOKEN"
[source.sock]
type = "unix"
path = "{sock}"
[source.tailed]
type = "file"
path = "{tmp_path / "in.log"}"
state_file = ""
start_at = "beginning"
poll_interval = 0.01
[exporter.out]
destination = "file:{tmp_path / "out.ndjson"}"
batch_max_age = 0.01
[metric.all]
filter = "event=*"
exporter = "out"
"""
    )
    return path


def _records(child: Child) -> list[dict[str, object]]:
    return [orjson.loads(line) for line in bytes(child.stderr).splitlines() if line.strip()]


def _delivered(tmp_path: Path) -> int:
    out = tmp_path / "out.ndjson"
    return out.read_bytes().count(b"\n") if out.exists() else 0


def test_every_source_logs_what_it_rejects_with_where_rate_limited(tmp_path: Path) -> None:
    (tmp_path / "in.log").write_bytes(numbered_tab_line(0) + b"not tab text\n")
    with socket_dir() as directory:
        sock = os.path.join(directory, "in.sock")
        env = {"TEST_SOURCE_TOKEN": TOKEN}
        with exporter_child("run", str(_config(tmp_path, sock)), env=env) as child:
            web = announced_port(child, rb"listening on http://127\.0\.0\.1:(\d+)")
            scrape = announced_port(child, rb"metrics on http://127\.0\.0\.1:(\d+)/metrics")
            url = f"http://127.0.0.1:{web}/events"
            bearer = {"Authorization": f"Bearer {TOKEN}"}
            batch = numbered_tab_line(1) + b"\n".join([b"{bad"] * BAD_IN_BATCH)
            with httpx.Client(timeout=10) as client:
                assert client.post(url, content=batch, headers=bearer).status_code == 200
                assert client.post(url, content=numbered_tab_line(2)).status_code == 401
                assert client.post(url, content=b"{bad", headers=bearer).status_code == 400
                with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as conn:
                    conn.settimeout(10)
                    conn.connect(sock)
                    conn.sendall(numbered_tab_line(3) + b"\x1b[31m red\n")
                assert wait_until(lambda: _delivered(tmp_path) == 3, timeout=15)
                counted = client.get(f"http://127.0.0.1:{scrape}/metrics").text
            os.kill(child.pid, signal.SIGTERM)
            assert child.wait(timeout=15) == 0
    warnings = [r for r in _records(child) if r["level"] == "warning"]
    by_source: dict[object, list[str]] = {}
    for record in warnings:
        by_source.setdefault(record.get("source"), []).append(str(record["message"]))

    batch_lines = [
        m for m in by_source["web"] if m.startswith("rejected 127.0.0.1 POST /events line ")
    ]
    assert len(batch_lines) == 10  # the first ten of fifty; the rest are only counted
    assert batch_lines[0].startswith("rejected 127.0.0.1 POST /events line 2: ")
    assert batch_lines[-1].startswith("rejected 127.0.0.1 POST /events line 11: ")
    assert 'event_exporter_source_rejected_lines_total{source="web"} 51' in counted
    assert (
        "rejected 127.0.0.1 POST /events: answered 401: a valid bearer token is required"
        in by_source["web"]
    )
    # a batch with no good line: its lines said, not once more as an empty 400
    assert not [m for m in by_source["web"] if m.endswith("answered 400: ")]
    (unix,) = [m for m in by_source["sock"] if m.startswith("rejected ")]
    assert unix.startswith("rejected connection 1, line 2: ")
    assert "\x1b" not in unix  # the sender's bytes, escaped
    assert "\\x1b[31m" in unix
    (tailed,) = [m for m in by_source["tailed"] if m.startswith("rejected ")]
    assert tailed.startswith(f"rejected line 2 (byte {len(numbered_tab_line(0))}): ")
