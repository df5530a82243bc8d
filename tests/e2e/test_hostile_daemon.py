"""Hypothesis against one running daemon: arbitrary bytes (deep nesting, huge numbers,
control characters, invalid UTF-8, long lines) sent to its unix and http sources, each
followed by a good event. The daemon keeps running, every good event is delivered, and
one SIGTERM ends it cleanly (exit 0: rejected input on these sources loses nothing)."""

from __future__ import annotations

import os
import re
import signal
import socket
from pathlib import Path

import httpx
import orjson
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tests.support.config import write_config
from tests.support.drivers import socket_dir
from tests.support.processes import announced_port, exporter_child, wait_until

LISTENING = re.compile(rb"listening on http://127\.0\.0\.1:(\d+)")
JSON_N = b'{"event":"e","fields":{"n":'
HOSTILE = st.one_of(
    st.binary(max_size=2000),
    st.integers(1, 3000).map(lambda depth: b"[" * depth + b"]" * depth),
    st.integers(1, 3000).map(lambda depth: JSON_N + b"[" * depth),
    st.integers(20, 6000).map(lambda digits: b"event:e\tfield:n=" + b"9" * digits),
    st.integers(20, 6000).map(lambda digits: JSON_N + b"9" * digits + b"}}"),
    st.text(max_size=200).map(lambda text: text.encode("utf-8", "surrogatepass")),
    st.integers(60_000, 300_000).map(lambda size: b"x" * size),  # past max_line_bytes
)


def _delivered(out: Path) -> set[int]:
    if not out.exists():
        return set()
    found = set()
    for line in out.read_bytes().splitlines():
        fields = orjson.loads(line).get("fields", {})
        if isinstance(fields.get("good"), str):
            found.add(int(fields["good"]))
    return found


def _good(n: int) -> bytes:
    return b'{"event":"e","fields":{"good":"%d"}}\n' % n


def test_hostile_bytes_to_a_running_daemon_never_stop_it(tmp_path: Path) -> None:
    out = tmp_path / "out.ndjson"
    with socket_dir() as directory:
        sock = os.path.join(directory, "in.sock")
        config = write_config(
            tmp_path / "c.toml",
            settings={"dead_letter": tmp_path / "dead.ndjson", "summary_interval": 0},
            sources={
                "web": {"type": "http", "listen": "127.0.0.1:0"},
                "sock": {"type": "unix", "path": sock, "max_line_bytes": 50_000},
            },
            exporters={"out": {"destination": f"file:{out}", "batch_max_age": 0.01}},
            metrics={"all": {"filter": "event=*", "exporter": "out"}},
        )
        with exporter_child("run", str(config)) as child, httpx.Client(timeout=10) as client:
            url = f"http://127.0.0.1:{announced_port(child, LISTENING.pattern)}/events"
            assert wait_until(lambda: os.path.exists(sock), timeout=15)
            sent: list[int] = []

            @settings(
                max_examples=40,
                deadline=None,
                suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture],
            )
            @given(hostile=HOSTILE)
            def each(hostile: bytes) -> None:
                n = len(sent)
                with socket.socket(socket.AF_UNIX) as conn:
                    conn.settimeout(10)
                    conn.connect(sock)
                    conn.sendall(hostile + b"\n" + _good(2 * n))
                answer = client.post(url, content=hostile + b"\n" + _good(2 * n + 1))
                assert answer.status_code in (200, 204), answer.text
                sent.append(n)
                wanted = {2 * n, 2 * n + 1}
                assert wait_until(lambda: wanted <= _delivered(out), timeout=10), bytes(
                    child.stderr
                ).decode(errors="replace")[-2000:]

            each()
            assert child.proc.poll() is None  # still running
            os.kill(child.pid, signal.SIGTERM)
            assert child.wait(timeout=15) == 0
    assert _delivered(out) == set(range(2 * len(sent)))
    assert "Traceback" not in bytes(child.stderr).decode(errors="replace")
