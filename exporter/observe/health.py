"""Whether the daemon is ready, as ``GET /ready`` answers it: every source listens, no
exporter has been failing for longer than ``unready_after`` seconds, and no spool was
found corrupt and moved aside (that stays until a restart: someone should look at it).

An exporter's delivery state is the delivery engine's (``Exporter.health``: since when it
has been failing, its last error; ``Exporter.spool_moved_aside``: where a corrupt spool
went), read at each request.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass, field

import anyio

from exporter.delivery.exporter import Exporter
from exporter.observe.text import printable


@dataclass
class Readiness:
    """What ``/ready`` needs to know, kept up to date by the daemon (a reload changes
    ``unready_after`` and the exporters)."""

    exporters: Callable[[], Iterable[Exporter]]
    """Every exporter (those a reload removed, still draining, among them)."""
    unready_after: float = 60.0
    sources: dict[str, bool] = field(default_factory=dict)
    """Each source's name, and whether it listens (reads) yet."""
    clock: Callable[[], float] = anyio.current_time

    def reasons(self) -> list[dict[str, str]]:
        """Why it is not ready, one entry each (``source`` or ``exporter``, ``reason``);
        none when it is."""
        found = [
            {"source": name, "reason": "not listening yet"}
            for name, listening in self.sources.items()
            if not listening
        ]
        now = self.clock()
        for exporter in self.exporters():
            moved = exporter.spool_moved_aside
            if moved is not None:
                found.append(
                    {
                        "exporter": exporter.name,
                        "reason": f"its spool was found corrupt at start and moved aside to "
                        f"{moved} (ready again after a restart)",
                    }
                )
            since = exporter.health.failing_since
            if since is not None and now - since > self.unready_after:
                error = exporter.health.last_error
                found.append(
                    {
                        "exporter": exporter.name,
                        "reason": f"failing to deliver for {now - since:.0f} s (longer than "
                        f"unready_after, {self.unready_after:g} s)"
                        + (f"; last error: {printable(error, 300)}" if error else ""),
                    }
                )
        return found

    def failovers(self) -> list[dict[str, str]]:
        """The http exporters whose requests go to another URL than their primary
        (failover): ready still, but worth a look; one entry each."""
        found = []
        for exporter in self.exporters():
            endpoints = exporter.endpoints
            if endpoints is None or endpoints.active == 0:
                continue
            primary = endpoints.stats[0]
            away = endpoints.away_for()
            gone = "" if away is None else f" {away:.0f} s ago"
            back = endpoints.failback_in()
            found.append(
                {
                    "exporter": exporter.name,
                    "url": endpoints.stats[endpoints.active].url,
                    "reason": f"failed over from the primary {primary.url}{gone}"
                    + (f" ({printable(primary.last_error, 300)})" if primary.last_error else "")
                    + (f"; it is tried again in {back:.0f} s" if back is not None else ""),
                }
            )
        return found
