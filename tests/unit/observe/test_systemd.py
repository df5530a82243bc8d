"""sd_notify without a dependency: a datagram to $NOTIFY_SOCKET, path or abstract."""

from __future__ import annotations

import socket
from pathlib import Path

from exporter.observe.systemd import READY, notify


def test_ready_reaches_a_notify_socket(tmp_path: Path) -> None:
    path = str(tmp_path / "notify")
    with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as sock:
        sock.bind(path)
        sock.settimeout(5)
        assert notify(READY, environ={"NOTIFY_SOCKET": path})
        assert sock.recv(100) == b"READY=1"


def test_an_abstract_socket_too() -> None:
    with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as sock:
        sock.bind("\0event-exporter-test-notify")
        sock.settimeout(5)
        assert notify("STOPPING=1", environ={"NOTIFY_SOCKET": "@event-exporter-test-notify"})
        assert sock.recv(100) == b"STOPPING=1"


def test_without_systemd_nothing_is_sent(tmp_path: Path) -> None:
    assert not notify(READY, environ={})
    assert not notify(READY, environ={"NOTIFY_SOCKET": "relative/path"})
    assert not notify(READY, environ={"NOTIFY_SOCKET": str(tmp_path / "nobody")})
