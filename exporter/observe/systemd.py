"""Telling systemd how the daemon is doing (``Type=notify``), without a dependency.

systemd gives a service started with ``Type=notify`` the path of a datagram socket in
``$NOTIFY_SOCKET`` (``@name`` for an abstract one); a datagram ``READY=1`` says that the
start is over (every source listens), ``RELOADING=1`` and ``STOPPING=1`` what follows.
Without the variable (not under systemd) nothing is sent. A failure to send is not the
daemon's failure: it is reported once by the caller and forgotten.
"""

from __future__ import annotations

import os
import socket

READY = "READY=1"
STOPPING = "STOPPING=1"
RELOADING = "RELOADING=1"


def notify(state: str, *, environ: dict[str, str] | None = None) -> bool:
    """Send ``state`` (``READY=1``, ``STATUS=...``, several joined by newlines) to systemd;
    False when not under systemd, or when the socket does not take it."""
    path = (os.environ if environ is None else environ).get("NOTIFY_SOCKET", "")
    if not path or path[0] not in "/@":
        return False
    address = "\0" + path[1:] if path[0] == "@" else path
    try:
        with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM | socket.SOCK_CLOEXEC) as sock:
            sock.setblocking(False)  # a datagram to a local socket: it goes or it fails
            sock.sendto(state.encode(), address)
    except OSError:
        return False
    return True
