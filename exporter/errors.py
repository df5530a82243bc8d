"""Every error event-exporter raises on purpose, in one tree.

    EventExporterError
    ├── FilterSyntaxError     a filter expression does not parse (position + expectation)
    ├── EventParseError       one input line is not a Dovecot json / tab-text event
    ├── EventFormatError      an event built in-process holds something no format can write
    ├── UsageError            a command-line option or setting has a value we do not accept
    └── DeliveryError         a driver could not deliver a batch; drivers raise only these:
        ├── RetryableDeliveryError   try again (optionally not before ``retry_after`` s)
        └── PermanentDeliveryError   never going to work: dead-letter the batch
            └── DriverClosedError    send() on a driver that was closed

Code that calls into us catches ``EventExporterError``; anything else escaping is a bug.
"""

from __future__ import annotations


class EventExporterError(Exception):
    """Base of every error event-exporter raises on purpose."""


class UsageError(EventExporterError):
    """An option or setting has a value that is not allowed; the message says which are."""


class FilterSyntaxError(EventExporterError):
    """A filter expression does not parse.

    ``position`` is the 0-based offset into the source where the problem is; ``line``
    and ``column`` are 1-based. ``expected`` lists what would have been accepted there.
    """

    def __init__(self, source: str, position: int, problem: str, expected: tuple[str, ...]) -> None:
        self.source = source
        self.position = position
        self.problem = problem
        self.expected = expected
        before = source[:position]
        self.line = before.count("\n") + 1
        self.column = position - (before.rfind("\n") + 1) + 1
        super().__init__(self._render())

    def _render(self) -> str:
        where = (
            f"column {self.column}" if self.line == 1 else f"line {self.line}, column {self.column}"
        )
        text = f"event filter: {self.problem} at {where}"
        if self.expected:
            text += ", expecting " + _or_list(self.expected)
        return text

    def caret(self) -> str:
        """The offending source line with a caret under the error position."""
        line_text = self.source.split("\n")[self.line - 1]
        return f"  {line_text}\n  {' ' * (self.column - 1)}^"


class EventParseError(EventExporterError):
    """One input line is not an event we can read; ``column`` is 1-based when known."""

    def __init__(self, message: str, column: int | None = None) -> None:
        self.message = message
        self.column = column
        super().__init__(message if column is None else f"column {column}: {message}")


class EventFormatError(EventExporterError):
    """An event cannot be written (a value of a type no format knows)."""


def _or_list(items: tuple[str, ...]) -> str:
    if len(items) == 1:
        return items[0]
    return ", ".join(items[:-1]) + " or " + items[-1]


class DeliveryError(EventExporterError):
    """A driver could not deliver a batch. Drivers raise only subclasses of this."""


class RetryableDeliveryError(DeliveryError):
    """The destination may take the batch later; ``retry_after`` seconds when it said so.

    A ``retry_after`` pauses the whole exporter, not just this batch.
    """

    def __init__(self, message: str, retry_after: float | None = None) -> None:
        super().__init__(message)
        self.retry_after = retry_after


class PermanentDeliveryError(DeliveryError):
    """The destination will never take this batch: it goes to the dead-letter file."""


class DriverClosedError(PermanentDeliveryError):
    """send() was called on a driver after aclose()."""
