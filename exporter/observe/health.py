"""Whether the daemon is ready, as ``GET /ready`` answers it: every source listens, no
exporter has been failing for longer than ``unready_after`` seconds, and no spool was
found corrupt and moved aside (that stays until a restart: someone should look at it).

An exporter's delivery state is the delivery engine's (``Exporter.health``: since when it
has been failing, its last error; ``Exporter.spool_moved_aside``: where a corrupt spool
went); it is read here through :func:`failing_since`, :func:`last_error` and
:func:`moved_aside` only, so that each reads what an exporter has of it.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass, field

import anyio

from exporter.delivery.exporter import Exporter
from exporter.observe.text import printable


def failing_since(exporter: Exporter) -> float | None:
    """The monotonic time of the first failed attempt of the current run of failures;
    None while deliveries succeed."""
    since = getattr(getattr(exporter, "health", None), "failing_since", None)
    return since if isinstance(since, int | float) else None


def last_error(exporter: Exporter) -> str | None:
    error = getattr(getattr(exporter, "health", None), "last_error", None)
    return None if error is None else printable(str(error), 300)


def moved_aside(exporter: Exporter) -> str | None:
    """Where a spool found corrupt at start was moved (None: it was not)."""
    moved = getattr(exporter, "spool_moved_aside", None)
    return None if moved is None else str(moved)


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
            moved = moved_aside(exporter)
            if moved is not None:
                found.append(
                    {
                        "exporter": exporter.name,
                        "reason": f"its spool was found corrupt at start and moved aside to "
                        f"{moved} (ready again after a restart)",
                    }
                )
            since = failing_since(exporter)
            if since is not None and now - since > self.unready_after:
                error = last_error(exporter)
                found.append(
                    {
                        "exporter": exporter.name,
                        "reason": f"failing to deliver for {now - since:.0f} s (longer than "
                        f"unready_after, {self.unready_after:g} s)"
                        + (f"; last error: {error}" if error else ""),
                    }
                )
        return found
