"""What every source hands its events to: one intake object.

The daemon's and the Python API's intake is :class:`exporter.routing.Pipeline` (every
metric feeding its exporter); ``export`` and ``export --to`` use a one-route Pipeline;
tests use a collector. A source never sees queues, routes or exporters.
"""

from __future__ import annotations

from typing import Any, Protocol, runtime_checkable

from exporter.event import Event


class Intake(Protocol):
    async def emit(self, event: Event) -> None:
        """Queue ``event``, waiting for room where a queue is full under ``block``.

        Cancelled while it waits (shutdown), it has still queued the event, past the
        bounds: an event a source emitted is taken, delivered or dead-lettered."""

    def force(self, event: Event) -> None:
        """Queue ``event`` past every bound (shutdown: the input was already read)."""

    async def committed(self) -> None:
        """Make what was emitted durable (a spool) and return once it is: a source awaits it
        before it answers its sender or records how far it read. A write that fails (a
        full disk) is tried again until it works, a ``full`` fsync runs off the event
        loop; the sender waits meanwhile (and others are told 503 by :meth:`busy`)."""

    def commit(self) -> None:
        """Write what was emitted at once, without waiting (an answer that is an error,
        shutdown): what cannot be written yet stays in memory, delivered or dead-lettered."""

    def busy(self) -> bool:
        """Whether a queue that drops when full is full, or a spool cannot write: a source
        that can tell its sender to come back later (HTTP 503) should, rather than have
        its events dropped or held in memory."""


@runtime_checkable
class Settles(Protocol):
    """An intake that tells when what was emitted is delivered, end to end (the daemon's
    :class:`exporter.routing.Pipeline`): a source that acknowledges each message (NATS)
    does so only then.

        before = intake.mark(); await intake.emit(event); after = intake.mark()
        ...
        await intake.settled(before, after)   # delivered, dead-lettered or dropped by
                                              # every exporter it went to, or spooled
    """

    def mark(self) -> Any:
        """Where the exporters' queues stand now (opaque)."""

    async def settled(self, before: Any, after: Any) -> None:
        """Return once what was emitted between the two marks is delivered, dead-lettered
        or dropped, or committed to a spool, wherever it went."""


class RejectedEvent(Exception):
    """Raised by :meth:`Intake.emit` or :meth:`Intake.force` for an event it cannot take at
    all (``export``'s one route cannot write it); nothing of it was queued. The source
    reports it as its line's rejection, with ``reason``."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason
