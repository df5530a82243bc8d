"""``import-dovecot`` on the two real capture configurations, then ``run`` with the result.

Each sample dovecot.conf (2.3 and 2.4 syntax, paths and ports moved to this test's) is
imported; the daemon, fed the sample events as Dovecot's relay exporter posts them (one
json event per request to ``/dovecot``), writes or posts for every driver kind the bytes
Dovecot wrote: http-post bodies, files, a unix socket's stream, log lines; the drop
exporter takes every event and writes nothing.
"""

from __future__ import annotations

import os
import re
import signal
from collections import Counter
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest

from exporter.cli import main
from tests.support.drivers import socket_dir
from tests.support.http_receiver import Receiver
from tests.support.processes import Child, Listener, announced_port, exporter_child, wait_until
from tests.support.samples import (
    CONF_23,
    CONF_24,
    CONFIGS,
    CONFIGS_24,
    EVENTS_24_FILE,
    EVENTS_FILE,
    expected_bodies,
    expected_file_24,
)

LISTENING = rb"listening on http://127\.0\.0\.1:(\d+)"
CAPTURE_PORT = re.compile(r"127\.0\.0\.1:311\d\d")


@dataclass
class Imported:
    config: Path
    base: str
    """Where the capture's files and sockets now are."""


def _import(conf: Path, capture_dir: str, base: str, port: int, tmp_path: Path) -> Imported:
    """The capture's dovecot.conf with its paths under ``base`` and its receivers at
    ``port``, imported as an admin would (the source on a free port)."""
    text = CAPTURE_PORT.sub(f"127.0.0.1:{port}", conf.read_text().replace(capture_dir, base))
    dovecot = tmp_path / "dovecot.conf"
    dovecot.write_text(text)
    for sub in ("file", "unix"):
        os.makedirs(f"{base}/{sub}", exist_ok=True)
    config = tmp_path / "imported.toml"
    status = main(["import-dovecot", str(dovecot), "-o", str(config), "--listen", "127.0.0.1:0"])
    assert status == 0
    return Imported(config, base)


@contextmanager
def _daemon(imported: Imported, tmp_path: Path) -> Iterator[tuple[Child, int]]:
    with exporter_child("run", str(imported.config), cwd=tmp_path) as child:
        yield child, announced_port(child, LISTENING)


def _relay(port: int, events: Path) -> int:
    """Post each event as Dovecot's http-post exporter does: one json body per request."""
    lines = events.read_bytes().splitlines()
    with httpx.Client(timeout=5) as client:
        for line in lines:
            answer = client.post(
                f"http://127.0.0.1:{port}/dovecot",
                content=line,
                headers={"Content-Type": "application/json"},
            )
            assert answer.status_code == 204, answer.text
    return len(lines)


def _stop(child: Child) -> str:
    os.kill(child.pid, signal.SIGTERM)
    assert child.wait(timeout=30) == 0, bytes(child.stderr).decode(errors="replace")
    return bytes(child.stderr).decode(errors="replace")


def _bodies(receiver: Receiver, path: str) -> list[bytes]:
    return [r.body for r in receiver.received if r.path == path]


def test_the_2_4_capture_imported_writes_dovecots_bytes_with_every_driver(tmp_path: Path) -> None:
    with socket_dir() as base, Receiver(path="/") as receiver:
        imported = _import(CONF_24, "/tmp/dovecot24-capture", base, receiver.port, tmp_path)
        sockets = {
            name: Listener(f"{base}/unix/unix_{name}.sock")
            for name in ("json_unix_all", "tabtext_rfc3339_all")
        }
        try:
            with _daemon(imported, tmp_path) as (child, port):
                count = _relay(port, EVENTS_24_FILE)
                files = {name: Path(f"{base}/file/{name}.log") for name in CONFIGS_24}

                def done() -> bool:
                    posted = all(len(_bodies(receiver, f"/{n}")) == count for n in CONFIGS_24)
                    written = all(
                        p.exists() and p.read_bytes().count(b"\n") == count for p in files.values()
                    )
                    return posted and written

                assert wait_until(done, timeout=60)
                stderr = _stop(child)
                written = {name: path.read_bytes() for name, path in files.items()}
        finally:
            for listener in sockets.values():
                listener.finish(timeout=10)
    for name in CONFIGS_24:  # file driver: each event then "\n", in event order
        assert written[name] == expected_file_24(name), name
        # http-post: the same bytes, one event per request, without the "\n"
        assert _bodies(receiver, f"/{name}") == expected_file_24(name)[:-1].split(b"\n"), name
        request = next(r for r in receiver.received if r.path == f"/{name}")
        json = CONFIGS_24[name][0] == "json"
        assert request.header("Content-Type") == ("application/json" if json else "text/plain")
    for name, listener in sockets.items():  # unix driver: a stream of lines
        assert b"".join(listener.connections) == expected_file_24(name), name
    log_lines = stderr.encode().split(b"\n")  # log driver: the events among our messages
    for config in ("json_rfc3339_all", "tabtext_unix_all"):
        wanted = expected_file_24(config)[:-1].split(b"\n")
        assert [line for line in log_lines if line in set(wanted)] == wanted, config
    # drop driver: every event taken (formatted) and discarded, nothing lost
    dropped = r"exporter drop_json \(drop\): received 43, exported 0, .*discarded 43"
    assert re.search(dropped, stderr)


def test_the_2_3_capture_imported_posts_dovecots_bodies(tmp_path: Path) -> None:
    with socket_dir() as base, Receiver(path="/") as receiver:
        imported = _import(CONF_23, "/tmp/dovecot-capture", base, receiver.port, tmp_path)
        with _daemon(imported, tmp_path) as (child, port):
            count = _relay(port, EVENTS_FILE)
            assert wait_until(
                lambda: all(len(_bodies(receiver, f"/{n}")) == count for n in CONFIGS), timeout=60
            )
            stderr = _stop(child)
    for name in CONFIGS:
        ours = Counter(_bodies(receiver, f"/{name}"))
        theirs = Counter(expected_bodies(name))
        # the capture holds each exporter's first 36 in its arrival order: two may differ
        assert sum((ours - theirs).values()) <= 2, name
    log_lines = set(stderr.encode().split(b"\n"))
    wanted = Counter(expected_bodies("json_rfc3339_all"))
    assert sum((wanted - Counter(line for line in log_lines if line in wanted)).values()) <= 2


@pytest.mark.parametrize(
    ("conf", "capture_dir"),
    [(CONF_23, "/tmp/dovecot-capture"), (CONF_24, "/tmp/dovecot24-capture")],
    ids=["2.3", "2.4"],
)
def test_the_imported_configuration_checks(tmp_path: Path, conf: Path, capture_dir: str) -> None:
    with socket_dir() as base:
        imported = _import(conf, capture_dir, base, 31180, tmp_path)
        assert main(["check", str(imported.config)]) == 0
