"""``reuse_port = true``: two ``run`` daemons on one http address share its connections
(SO_REUSEPORT), each with its own file, dead letters and metrics port; every event posted
lands in exactly one of the two files."""

from __future__ import annotations

import re
import signal
from pathlib import Path

import httpx
import orjson

from tests.support.config import write_config
from tests.support.processes import announced_port, exporter_child, wait_until

LISTENING = re.compile(rb"listening on http://127\.0\.0\.1:(\d+)")
REQUESTS = 60  # each on its own connection: all on one daemon has odds 2**-59


def _config(tmp: Path, name: str, port: int) -> Path:
    return write_config(
        tmp / f"{name}.toml",
        settings={"dead_letter": tmp / f"dead-{name}.ndjson", "metrics_listen": "127.0.0.1:0"},
        sources={"web": {"type": "http", "listen": f"127.0.0.1:{port}", "reuse_port": True}},
        exporters={"out": {"destination": f"file:{tmp / f'{name}.ndjson'}", "batch_max_age": 0.01}},
        metrics={"all": {"filter": "event=*", "exporter": "out"}},
    )


def _numbers(path: Path) -> list[int]:
    if not path.exists():
        return []
    return [orjson.loads(line)["fields"]["n"] for line in path.read_bytes().splitlines()]


def test_two_daemons_share_one_listener_and_each_event_lands_once(tmp_path: Path) -> None:
    with exporter_child("run", str(_config(tmp_path, "first", 0))) as first:
        port = announced_port(first, LISTENING.pattern)
        with exporter_child("run", str(_config(tmp_path, "second", port))) as second:
            assert announced_port(second, LISTENING.pattern) == port
            url = f"http://127.0.0.1:{port}/events"
            for n in range(REQUESTS):
                with httpx.Client(timeout=10) as client:  # a new connection each time
                    body = b'{"event":"e","fields":{"n":%d}}\n' % n
                    assert client.post(url, content=body).status_code in (200, 204)

            def files() -> list[int]:
                return _numbers(tmp_path / "first.ndjson") + _numbers(tmp_path / "second.ndjson")

            assert wait_until(lambda: len(files()) >= REQUESTS, timeout=15)
            for child in (second, first):
                child.proc.send_signal(signal.SIGTERM)
                assert child.wait(timeout=15) == 0
    assert sorted(files()) == list(range(REQUESTS))
    assert _numbers(tmp_path / "first.ndjson")
    assert _numbers(tmp_path / "second.ndjson")


def test_without_reuse_port_the_second_daemon_says_the_address_is_taken(tmp_path: Path) -> None:
    with exporter_child("run", str(_config(tmp_path, "first", 0))) as first:
        port = announced_port(first, LISTENING.pattern)
        plain = write_config(
            tmp_path / "plain.toml",
            settings={"dead_letter": tmp_path / "dead-plain.ndjson"},
            sources={"web": {"type": "http", "listen": f"127.0.0.1:{port}"}},
            exporters={"out": {"destination": "drop"}},
            metrics={"all": {"filter": "event=*", "exporter": "out"}},
        )
        with exporter_child("run", str(plain)) as second:
            assert second.wait(timeout=15) != 0
            assert b"address already in use" in bytes(second.stderr)
