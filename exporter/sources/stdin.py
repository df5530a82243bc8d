"""The ``stdin`` source: Dovecot json or tab-text lines from standard input until its end.

A bad line, or one longer than ``max_line_bytes`` (never held whole), is reported on the
error stream with its number and skipped (the first 100; after that they are counted
only); whatever reading one line raises is that line's rejection, never the end of the
source. A last line without newline is taken at the end of the input. At shutdown the
rest of a chunk already read is still queued (``force``), so no line taken from stdin is
lost.
"""

from __future__ import annotations

import sys
from dataclasses import dataclass
from typing import TextIO

import anyio
import anyio.abc

from exporter.sources.intake import Intake
from exporter.sources.lines import LineCounts, LineFeed
from exporter.sources.reports import SourceReports


@dataclass(frozen=True)
class StdinSourceSettings:
    max_line_bytes: int = 1 << 20
    """A longer line (without its newline) is reported and skipped, never held whole."""


class StdinSource:
    """``serve()`` reads until the end of the input (or until cancelled)."""

    def __init__(
        self,
        name: str,
        intake: Intake,
        errors: TextIO | SourceReports,
        settings: StdinSourceSettings | None = None,
        *,
        fd: int | None = None,
    ) -> None:
        self.name = name
        self.settings = settings or StdinSourceSettings()
        self._fd = sys.stdin.fileno() if fd is None else fd
        self.counts = LineCounts()
        self._feed = LineFeed(
            intake,
            errors,
            about=f"source {name}: ",
            max_line_bytes=self.settings.max_line_bytes,
            counts=self.counts,
        )

    def announce(self) -> str | None:
        """What the daemon's log says once this source runs: nothing."""
        return None

    async def serve(
        self, task_status: anyio.abc.TaskStatus[None] = anyio.TASK_STATUS_IGNORED
    ) -> None:
        task_status.started()
        await self._feed.read(self._fd, "line {}".format)
