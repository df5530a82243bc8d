"""A progress line for ``export`` over large files, on a terminal only.

``\\r  42%  118.2 MB of 281.0 MB  512,345 events`` rewritten in place at most five times a
second on stderr, erased at the end; nothing at all when stderr is not a terminal or the
input's size is unknown (a pipe), so logs and scripts never see it.
"""

from __future__ import annotations

import time
from typing import TextIO

_EVERY = 0.2


class Progress:
    def __init__(self, stream: TextIO, total_bytes: int) -> None:
        self._stream = stream
        self._total = max(total_bytes, 1)
        self._done = 0
        self._next = 0.0
        self._shown = False

    @classmethod
    def for_terminal(cls, stream: TextIO, total_bytes: int | None) -> Progress | None:
        """A progress line if ``stream`` is a terminal and the size is known, else None."""
        if total_bytes is None or not stream.isatty():
            return None
        return cls(stream, total_bytes)

    def advance(self, chunk_bytes: int, events: int) -> None:
        self._done += chunk_bytes
        now = time.monotonic()
        if now < self._next:
            return
        self._next = now + _EVERY
        percent = min(100, self._done * 100 // self._total)
        self._stream.write(
            f"\r  {percent:3d}%  {self._done / 1e6:,.1f} MB of {self._total / 1e6:,.1f} MB"
            f"  {events:,} events"
        )
        self._stream.flush()
        self._shown = True

    def finish(self) -> None:
        if self._shown:
            self._stream.write("\r\033[K")
            self._stream.flush()
