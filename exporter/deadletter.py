"""The dead-letter file: every event that could not be delivered, with why.

One NDJSON record per event::

    {"time":"2026-11-22T01:02:03.000000Z","exporter":"export","destination":"unix:/run/x",
     "reason":"gave up after 5 attempts: ...","attempts":5,"event":"<the encoded event>"}

The event is kept exactly as it was encoded (``event`` as text, or ``event_base64`` when
its bytes are not UTF-8), so ``event-exporter replay`` sends the same bytes again. The
file is opened for each write and appended to; it is the rare path.
"""

from __future__ import annotations

import base64
import os
import time
from collections.abc import Iterable, Iterator
from pathlib import Path

import orjson

from exporter.errors import EventParseError
from exporter.formats.timefmt import make_time_formatter

_now_text = make_time_formatter("rfc3339", "us")


class DeadLetterFile:
    """Appends dead-letter records; counts what it wrote."""

    def __init__(self, path: str | os.PathLike[str], *, exporter: str = "export") -> None:
        self.path = Path(path)
        self.exporter = exporter
        self.written = 0

    def write(
        self,
        events: Iterable[bytes],
        *,
        destination: str,
        reason: str,
        attempts: int,
        exporter: str | None = None,
    ) -> int:
        """Append one record per event (each without its newline); returns how many."""
        stamp = _now_text(time.time_ns())
        out = bytearray()
        count = 0
        for event in events:
            record: dict[str, object] = {
                "time": stamp,
                "exporter": exporter or self.exporter,
                "destination": destination,
                "reason": reason,
                "attempts": attempts,
            }
            try:
                record["event"] = event.decode("utf-8")
            except UnicodeDecodeError:
                record["event_base64"] = base64.b64encode(event).decode("ascii")
            out += orjson.dumps(record, option=orjson.OPT_APPEND_NEWLINE)
            count += 1
        if count:
            fd = os.open(self.path, os.O_WRONLY | os.O_APPEND | os.O_CREAT | os.O_CLOEXEC, 0o600)
            try:
                view = memoryview(out)
                while view:
                    view = view[os.write(fd, view) :]
                os.fsync(fd)
            finally:
                os.close(fd)
        self.written += count
        return count


def read_dead_letters(path: str | os.PathLike[str]) -> Iterator[tuple[int, bytes]]:
    """(line number, encoded event) for every record; EventParseError names a bad line."""
    with open(path, "rb") as f:
        for lineno, line in enumerate(f, 1):
            if not line.strip():
                continue
            try:
                record = orjson.loads(line)
                if "event" in record:
                    event = record["event"].encode("utf-8")
                else:
                    event = base64.b64decode(record["event_base64"], validate=True)
            except (orjson.JSONDecodeError, KeyError, TypeError, AttributeError, ValueError):
                raise EventParseError(
                    f"{path}:{lineno}: not a dead-letter record "
                    "(a JSON object with 'event' or 'event_base64')"
                ) from None
            yield lineno, event
