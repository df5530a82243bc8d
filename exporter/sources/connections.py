"""What the listeners (the http source, ``/metrics``, the unix source) share so that no
client can hold them: a cap on open connections, in all and per peer; reports that a
flood cannot turn into a flood of log lines; and enough file descriptors for the caps.
"""

from __future__ import annotations

import resource
import time
from collections.abc import Callable

_SPARE_DESCRIPTORS = 64
"""Descriptors beyond the connection caps: listeners, files, the spool, pipes."""
_WANTED_DESCRIPTORS = 1 << 16


class ConnectionCaps:
    """Open connections, in all and per peer; :meth:`admit` says whether one more may stay.

    A refused connection is answered and closed at once by its listener (a 503, or a plain
    close on a unix socket): accepting never stops, so a client that comes when the cap is
    reached always hears why, and the clients already in are not slowed by it.
    """

    def __init__(self, total: int, per_peer: int | None = None) -> None:
        self.total = total
        self.per_peer = per_peer
        self.open = 0
        self._by_peer: dict[str, int] = {}

    def admit(self, peer: str = "") -> str | None:
        """Count a new connection in, or say which cap refuses it (then nothing is counted)."""
        if self.open >= self.total:
            return f"{self.open} connections open (max_connections)"
        held = self._by_peer.get(peer, 0)
        if self.per_peer is not None and held >= self.per_peer:
            return f"{held} connections open from {peer} (max_connections_per_peer)"
        self.open += 1
        self._by_peer[peer] = held + 1
        return None

    def release(self, peer: str = "") -> None:
        self.open -= 1
        held = self._by_peer[peer] - 1
        if held:
            self._by_peer[peer] = held
        else:
            del self._by_peer[peer]  # a peer that left takes no room


class Throttle:
    """At most one report every ``interval`` seconds; those held back in between are
    counted and their number given with the next one shown."""

    def __init__(self, write: Callable[[str], None], interval: float = 10.0) -> None:
        self._write = write
        self._interval = interval
        self._last: float | None = None
        self._held = 0

    def __call__(self, message: str) -> None:
        now = time.monotonic()
        if self._last is not None and now - self._last < self._interval:
            self._held += 1
            return
        if self._held:
            message += f" ({self._held} more like it since the last report)"
        self._write(message)
        self._last, self._held = now, 0


def ensure_descriptors(connections: int) -> str | None:
    """Raise the soft limit on open files (up to the hard one) so that ``connections``
    fit with room to spare: with the usual soft limit of 1024, accept would fail (EMFILE)
    before a cap of 1024 is reached, and new clients would wait unanswered. Returns a
    warning when the hard limit is too low."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    needed = connections + _SPARE_DESCRIPTORS
    if soft != resource.RLIM_INFINITY and soft < needed:
        wanted = max(needed, _WANTED_DESCRIPTORS)
        target = wanted if hard == resource.RLIM_INFINITY else min(hard, wanted)
        if target > soft:
            try:
                resource.setrlimit(resource.RLIMIT_NOFILE, (target, hard))
                soft = target
            except (ValueError, OSError):
                pass
    if soft != resource.RLIM_INFINITY and soft < needed:
        return (
            f"{connections} connections need about {needed} open files, the limit is "
            f"{soft} (ulimit -n): past it, new connections wait unanswered"
        )
    return None
