"""Where a source says what it rejected and what troubles it.

In ``run`` that is the daemon's log (:class:`LogReports`): a warning with the source's
name as context, rejections rate-limited so that a flood of bad input is a few lines and
a count, never a flood of lines (every rejection is counted in ``/metrics``). ``export``,
``export --to`` and the Python API write to a stream instead (:class:`StreamReports`):
``event-exporter: ABOUT...`` lines, the first :data:`REPORTED_MAX` rejections, then only
a count.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Final, Protocol, TextIO, cast

from exporter.observe.log import Log, RateLimit

REPORTED_MAX: Final = 100
"""Rejections a stream shows before the rest are only counted."""
LOGGED_BURST: Final = 10
"""Rejections of one kind the log shows at once, before at most one per interval."""
LOGGED_INTERVAL: Final = 10.0


class SourceReports(Protocol):
    def rejected(self, where: str, why: str, kind: str = "line") -> None:
        """An input that is not taken (a line, a request): ``where`` it was (peer, line,
        column), ``why``; ``kind`` keeps one kind's flood from hiding another's."""

    def warning(self, message: str) -> None:
        """Trouble on the source itself (a connection cap, a file it cannot read)."""


class StreamReports:
    """Reports as ``event-exporter: {about}{message}`` lines on ``errors``."""

    def __init__(self, errors: TextIO, about: str = "") -> None:
        self._errors = errors
        self._about = about
        self._first = FirstReported(
            self.warning, "further rejected lines are counted but not shown"
        )

    def rejected(self, where: str, why: str, kind: str = "line") -> None:
        self._first(f"{where}: {why}")

    def warning(self, message: str) -> None:
        self._errors.write(f"event-exporter: {self._about}{message}\n")


class LogReports:
    """Reports as warnings of ``log`` (bound to the source's name): rejections the first
    :data:`LOGGED_BURST` of each kind at once, then one per :data:`LOGGED_INTERVAL` s,
    saying how many were held back."""

    def __init__(self, log: Log, limit: RateLimit | None = None) -> None:
        self._log = log
        self._limit = limit or RateLimit(LOGGED_INTERVAL, burst=LOGGED_BURST)

    def rejected(self, where: str, why: str, kind: str = "line") -> None:
        held = self._limit.allow(kind)
        if held is not None:
            self._log.warning(f"rejected {where}: {why}{self._limit.note(held)}")

    def warning(self, message: str) -> None:
        self._log.warning(message)


class FirstReported:
    """Writes the first REPORTED_MAX messages it is given, then once ``more`` (that the
    others are counted but not shown): a flood of bad input is never a flood of reports."""

    def __init__(self, write: Callable[[str], None], more: str) -> None:
        self.count = 0
        self._write = write
        self._more = more

    def __call__(self, message: str) -> None:
        self.count += 1
        if self.count <= REPORTED_MAX:
            self._write(message)
        elif self.count == REPORTED_MAX + 1:
            self._write(self._more)


def reports_for(errors: TextIO | SourceReports, about: str) -> SourceReports:
    """``errors`` as reports: a stream (``export``, the API, tests) gets ``about`` before
    each of its lines; reports (the daemon's) are taken as they are."""
    if hasattr(errors, "write"):
        return StreamReports(cast(TextIO, errors), about)
    return errors
