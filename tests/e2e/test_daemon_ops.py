"""``run`` as an operator runs it under systemd: its own log (json), READY/RELOADING/
STOPPING on $NOTIFY_SOCKET, SIGHUP reloading the configuration while events flow, a
reload that does not check, and /ready following an exporter that fails and recovers."""

from __future__ import annotations

import os
import re
import signal
import socket
import threading
from collections.abc import Mapping
from pathlib import Path

import httpx
import orjson

from tests.support.config import Block, numbered_lines, write_config
from tests.support.drivers import socket_dir
from tests.support.processes import Child, Listener, exporter_child, wait_until

POSTS = 200
"""Posts of the flowing test (bounded): each a few numbered events of two kinds."""


def _config(
    tmp_path: Path,
    event_filter: str = "event=e",
    exporter: str = "out",
    exporters: Mapping[str, Block] | None = None,
    metrics: Mapping[str, Block] | None = None,
) -> Path:
    """An http source, metric ``picked`` (``event_filter``) into ``exporter`` (``out``:
    a file, ``out.ndjson``), self-metrics on a free port; plus ``exporters`` and
    ``metrics``."""
    return write_config(
        tmp_path / "c.toml",
        settings={
            "dead_letter": tmp_path / "dead.ndjson",
            "shutdown_timeout": 5.0,
            "summary_interval": 0,
            "metrics_listen": "127.0.0.1:0",
            "unready_after": 0.3,
        },
        sources={"web": {"type": "http", "listen": "127.0.0.1:0"}},
        exporters={
            "out": {"destination": f"file:{tmp_path / 'out.ndjson'}", "batch_max_age": 0.01},
            **(exporters or {}),
        },
        metrics={"picked": {"filter": event_filter, "exporter": exporter}, **(metrics or {})},
    )


def _ports(child: Child) -> tuple[int, int]:
    """The http source's port and the metrics listener's, from the start lines."""
    source = re.compile(rb"listening on http://127\.0\.0\.1:(\d+)")
    scrape = re.compile(rb"metrics on http://127\.0\.0\.1:(\d+)/metrics")

    def found() -> bool:
        text = bytes(child.stderr)
        return source.search(text) is not None and scrape.search(text) is not None

    assert wait_until(found, timeout=15), bytes(child.stderr).decode(errors="replace")
    text = bytes(child.stderr)
    a, b = source.search(text), scrape.search(text)
    assert a is not None and b is not None  # noqa: PT018 - both were found above
    return int(a[1]), int(b[1])


def _records(child: Child) -> list[dict[str, object]]:
    """Every line of the child's stderr, each a json object (fails on one that is not)."""
    return [orjson.loads(line) for line in bytes(child.stderr).splitlines()]


def _delivered(tmp_path: Path) -> list[tuple[str, int]]:
    out = tmp_path / "out.ndjson"
    if not out.exists():
        return []
    return [
        (record["event"], record["fields"]["n"])
        for record in map(orjson.loads, out.read_bytes().splitlines())
    ]


def _said(child: Child, text: str) -> bool:
    return any(text in str(record["message"]) for record in _records(child))


def _post(port: int, events: list[tuple[str, int]]) -> None:
    body = b"".join(numbered_lines([n], event=name) for name, n in events)
    answer = httpx.post(f"http://127.0.0.1:{port}/events", content=body, timeout=10)
    assert answer.status_code == 204, answer.text


def test_a_reload_applies_a_new_filter_while_events_flow_losing_none(tmp_path: Path) -> None:
    """Posts of numbered ``e`` and ``f`` events flow while SIGHUP widens the filter from
    ``event=e`` to ``event=e OR event=f``: every ``e`` accepted arrives once, every ``f``
    posted after the reload is done arrives, none posted before SIGHUP does. Then a
    reload that does not check is logged and changes nothing. Every line is json."""
    config = _config(tmp_path)
    with exporter_child("run", "--log-format", "json", str(config)) as child:
        port, scrape = _ports(child)
        posted: list[list[tuple[str, int]]] = []
        sighup_at: list[int] = []
        reloaded_at: list[int] = []
        stop = threading.Event()

        def flow() -> None:
            for n in range(POSTS):  # bounded; 20 posts past the reload are enough
                if stop.is_set() or (reloaded_at and n >= reloaded_at[0] + 20):
                    return
                if not reloaded_at and b'"reload done' in bytes(child.stderr):
                    reloaded_at.append(n)
                _post(port, [("e", n), ("f", n)])
                posted.append([("e", n), ("f", n)])

        poster = threading.Thread(target=flow, name="poster", daemon=True)
        poster.start()
        assert wait_until(lambda: len(posted) >= 20, timeout=15)
        _config(tmp_path, "event=e OR event=f")
        sighup_at.append(len(posted))
        child.proc.send_signal(signal.SIGHUP)
        poster.join(timeout=60)
        stop.set()
        assert not poster.is_alive()
        assert reloaded_at, "the reload was not done before the posts ended"
        total = len(posted)
        last = ("e", total - 1)
        assert wait_until(lambda: last in _delivered(tmp_path), timeout=15)

        # a reload that does not check: logged, nothing changes, still ready
        _config(tmp_path, "event=e OR event=f", exporter="nowhere")
        child.proc.send_signal(signal.SIGHUP)
        assert wait_until(lambda: _said(child, "reload failed"), timeout=15)
        _post(port, [("e", POSTS), ("f", POSTS), ("g", POSTS)])
        assert wait_until(lambda: ("f", POSTS) in _delivered(tmp_path), timeout=15)
        ready = httpx.get(f"http://127.0.0.1:{scrape}/ready", timeout=10)
        child.proc.send_signal(signal.SIGTERM)
        assert child.wait(timeout=15) == 0
    delivered = _delivered(tmp_path)
    es = sorted(n for name, n in delivered if name == "e")
    fs = {n for name, n in delivered if name == "f"}
    assert es == list(range(total)) + [POSTS]  # none lost, none twice
    assert set(range(reloaded_at[0], total)) <= fs  # after the reload: the new filter
    assert not fs & set(range(sighup_at[0]))  # before SIGHUP: the old one
    assert ("g", POSTS) not in delivered
    assert ready.status_code == 200

    records = _records(child)  # each line one json object: time, level, message, context
    assert all({"time", "level", "message"} <= set(record) for record in records)
    by_message = {str(record["message"]): record for record in records}
    start = records[0]
    assert str(start["message"]).startswith("event-exporter ")
    assert str(start["message"]).endswith(f"config {config})")
    assert by_message["event=e -> exporter out"]["metric"] == "picked"
    assert by_message[f"to file:{tmp_path / 'out.ndjson'} (batch_max_age 0.01 s)"] == {
        **by_message[f"to file:{tmp_path / 'out.ndjson'} (batch_max_age 0.01 s)"],
        "exporter": "out",
        "level": "info",
    }
    assert by_message[f"SIGHUP: reloading {config}"]["level"] == "info"
    changed = "changed: event=e -> exporter out; now event=e OR event=f -> exporter out"
    assert by_message[changed]["metric"] == "picked"
    problem = [r for r in records if "metric.picked.exporter" in str(r["message"])]
    assert problem, records
    assert problem[0]["level"] == "error"
    assert "no exporter named 'nowhere'" in str(problem[0]["message"])
    failed = "reload failed (1 problem): still running the configuration in effect"
    assert by_message[failed]["level"] == "error"
    assert any(str(r["message"]).startswith("SIGTERM: input stopped; delivering") for r in records)
    assert str(records[-1]["message"]).startswith("submitted ")


def test_systemd_is_told_ready_reloading_and_stopping(tmp_path: Path) -> None:
    config = _config(tmp_path)
    notify_path = str(tmp_path / "notify")
    with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as notify:
        notify.bind(notify_path)
        notify.settimeout(15)
        with exporter_child("run", str(config), env={"NOTIFY_SOCKET": notify_path}) as child:
            assert notify.recv(200) == b"READY=1"
            port, _ = _ports(child)  # (the log's writer thread may say it a moment later)
            with socket.create_connection(("127.0.0.1", port), timeout=5):
                pass  # READY=1 came once the source listened
            child.proc.send_signal(signal.SIGHUP)
            reloading = notify.recv(200)
            assert re.fullmatch(rb"RELOADING=1\nMONOTONIC_USEC=\d+", reloading), reloading
            assert notify.recv(200) == b"READY=1"
            child.proc.send_signal(signal.SIGTERM)
            assert notify.recv(200) == b"STOPPING=1"
            assert child.wait(timeout=15) == 0


def test_ready_goes_503_while_an_exporter_fails_and_200_once_it_recovers(tmp_path: Path) -> None:
    """A unix receiver nobody listens on refuses every connection: past unready_after
    (0.3 s) /ready answers 503 naming the exporter; once a listener is there and takes
    the events, 200 again. /health answers 200 throughout."""
    with socket_dir() as directory:
        sock = os.path.join(directory, "receiver.sock")
        remote = {
            "destination": f"unix:{sock}",
            "batch_max_age": 0.01,
            "retry_initial_delay": 0.01,
            "retry_max_delay": 0.05,
        }
        config = _config(
            tmp_path,
            exporters={"remote": remote},
            metrics={"everything": {"filter": "event=*", "exporter": "remote"}},
        )
        with exporter_child("run", str(config)) as child:
            port, scrape = _ports(child)
            ready_url = f"http://127.0.0.1:{scrape}/ready"
            assert httpx.get(ready_url, timeout=10).status_code == 200
            _post(port, [("e", n) for n in range(10)])
            answers: list[httpx.Response] = []

            def unready() -> bool:
                answers.append(httpx.get(ready_url, timeout=10))
                return answers[-1].status_code == 503

            assert wait_until(unready, timeout=15)
            reasons = answers[-1].json()["reasons"]
            assert [reason["exporter"] for reason in reasons] == ["remote"]
            assert "failing to deliver for" in reasons[0]["reason"]
            health = httpx.get(f"http://127.0.0.1:{scrape}/health", timeout=10)
            assert health.status_code == 200
            listener = Listener(sock)
            try:
                assert wait_until(
                    lambda: httpx.get(ready_url, timeout=10).status_code == 200, timeout=15
                )
                child.proc.send_signal(signal.SIGTERM)
                assert child.wait(timeout=15) == 0
                listener.finish(timeout=10)
            finally:
                listener.close()
    lines, torn = listener.lines()
    assert (len(lines), torn) == (10, 0)
