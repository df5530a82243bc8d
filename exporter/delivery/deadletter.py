"""The dead-letter file: every event that could not be delivered, with why.

One NDJSON record per event::

    {"time":"2026-11-22T01:02:03.000000Z","exporter":"export","destination":"unix:/run/x",
     "reason":"gave up after 5 attempts: ...","attempts":5,"event":"<the encoded event>"}

The event is kept exactly as it was encoded (``event`` as text, or ``event_base64`` when
its bytes are not UTF-8), so ``event-exporter replay`` sends the same bytes again. The
``reason`` is outside text (a receiver's error): its control characters are escaped and
its length capped. The file is opened for each write and appended to (it is the rare
path, and a rotated file is let go at once), always through :mod:`exporter.files`: a
symlink, a FIFO or a device at the path is refused, never written to or waited on.

The file grows to at most ``max_bytes``: the records that would take it past are not
written, and the caller counts their events as dropped ("dead-letter file full").
"""

from __future__ import annotations

import base64
import contextlib
import os
import threading
import time
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from functools import partial
from pathlib import Path

import anyio
import orjson

from exporter.errors import EventParseError, UsageError
from exporter.files import RefusedFileError, check_regular, open_regular, write_all
from exporter.formats.timefmt import make_time_formatter
from exporter.observe.text import printable

DEFAULT_MAX_BYTES = 1 << 30
"""``dead_letter_max_bytes``: 1 GiB, about a million events of 1 KiB."""
REASON_LIMIT = 1000
"""Characters kept of a record's reason (the receiver's part of it is capped before)."""

_now_text = make_time_formatter("rfc3339", "us")


@dataclass(frozen=True, slots=True)
class DeadLetterResult:
    """What became of the events of one write."""

    written: int = 0
    full: int = 0
    """Not written: the file would have passed ``max_bytes``."""
    failed: int = 0
    """Not written: the file could not be written (``error`` says why)."""
    error: OSError | None = None
    size: int = 0
    """The file's size after the write (or when it was found full)."""


class DeadLetterFile:
    """Appends dead-letter records, in order, one write at a time; counts what it wrote.

    :meth:`write_async` runs the write in a worker thread, so an open, a write or an fsync
    that takes long (a slow disk, NFS) never stops the event loop; writes queue up on a
    lock, first come first written. :meth:`write` is the same write, blocking: for the
    shutdown, once nothing else runs.
    """

    def __init__(
        self,
        path: str | os.PathLike[str],
        *,
        exporter: str = "export",
        max_bytes: int = DEFAULT_MAX_BYTES,
    ) -> None:
        """Refuses (UsageError) a path where something other than a regular file is
        already (a symlink, a FIFO): better at start than when the first batch fails."""
        if max_bytes < 1:
            raise UsageError(f"dead-letter max bytes must be at least 1, got {max_bytes}")
        self.path = Path(path)
        self.exporter = exporter
        self.max_bytes = max_bytes
        self.written = 0
        try:
            check_regular(self.path)
        except RefusedFileError as exc:
            raise UsageError(f"dead-letter file {self.path}: {exc.strerror}") from None
        self._order = anyio.Lock()
        self._writing = threading.Lock()

    async def write_async(
        self,
        events: Iterable[bytes],
        *,
        destination: str,
        reason: str,
        attempts: int,
        exporter: str | None = None,
    ) -> DeadLetterResult:
        """:meth:`write` in a worker thread, after the writes asked for before it.

        Cancelled while waiting for its turn, it has written nothing; once in the thread it
        runs to its end (the thread is not abandoned), and its result is returned."""
        write = partial(
            self.write,
            list(events),
            destination=destination,
            reason=reason,
            attempts=attempts,
            exporter=exporter,
        )
        async with self._order:
            return await anyio.to_thread.run_sync(write)

    def write(
        self,
        events: Iterable[bytes],
        *,
        destination: str,
        reason: str,
        attempts: int,
        exporter: str | None = None,
    ) -> DeadLetterResult:
        """Append one record per event (each without its newline), those that fit under
        ``max_bytes``, with one ``write`` and an ``fsync``. A failure writes nothing (a
        partial write is cut off again): the result says how many were written, refused as
        full, or failed, and why."""
        stamp = _now_text(time.time_ns())
        about = {
            "time": stamp,
            "exporter": exporter or self.exporter,
            "destination": destination,
            "reason": printable(reason, REASON_LIMIT),
            "attempts": attempts,
        }
        out = bytearray()
        ends: list[int] = []
        for event in events:
            record: dict[str, object] = dict(about)
            try:
                record["event"] = event.decode("utf-8")
            except UnicodeDecodeError:
                record["event_base64"] = base64.b64encode(event).decode("ascii")
            out += orjson.dumps(record, option=orjson.OPT_APPEND_NEWLINE)
            ends.append(len(out))
        if not ends:
            return DeadLetterResult()
        with self._writing:
            result = self._append(out, ends)
            self.written += result.written
        return result

    def _append(self, out: bytearray, ends: list[int]) -> DeadLetterResult:
        """Write the records of ``out`` (ending at ``ends``) that fit."""
        count = len(ends)
        try:
            fd = open_regular(self.path, os.O_WRONLY | os.O_APPEND | os.O_CREAT)
        except OSError as exc:
            return DeadLetterResult(failed=count, error=exc)
        size = 0
        try:
            size = os.fstat(fd).st_size
            room = self.max_bytes - size
            fits = sum(1 for end in ends if end <= room)  # ends grow: a prefix fits
            if fits:
                data = memoryview(out)[: ends[fits - 1]]
                try:
                    write_all(fd, data)
                    os.fsync(fd)
                except OSError:
                    with contextlib.suppress(OSError):  # no record cut in the middle
                        os.ftruncate(fd, size)
                    raise
                finally:
                    data.release()
            return DeadLetterResult(
                written=fits, full=count - fits, size=size + (ends[fits - 1] if fits else 0)
            )
        except OSError as exc:
            return DeadLetterResult(failed=count, error=exc, size=size)
        finally:
            os.close(fd)


RECORD_KEYS = frozenset({"time", "exporter", "destination", "reason", "attempts"})
"""What every dead-letter record has, beside ``event`` or ``event_base64``."""


def read_dead_letters(path: str | os.PathLike[str]) -> Iterator[tuple[int, bytes]]:
    """(line number, encoded event) for every record; EventParseError names the first line
    that is not one. A Dovecot event line is not one, though it has an ``event`` member:
    replaying it would send its name alone."""
    with open(path, "rb") as f:
        for lineno, line in enumerate(f, 1):
            if not line.strip():
                continue
            event = _dead_letter_event(line)
            if event is None:
                raise EventParseError(
                    f"{path}:{lineno}: not a dead-letter record (a JSON object with "
                    f"{', '.join(sorted(RECORD_KEYS))} and 'event' or 'event_base64'): "
                    "replay takes only what a dead-letter file holds"
                )
            yield lineno, event


def _dead_letter_event(line: bytes) -> bytes | None:
    """The encoded event of one dead-letter record, or None if the line is not one."""
    try:
        record = orjson.loads(line)
    except orjson.JSONDecodeError:
        return None
    if not isinstance(record, dict) or not record.keys() >= RECORD_KEYS:
        return None
    text, encoded = record.get("event"), record.get("event_base64")
    if isinstance(text, str) and encoded is None:
        try:
            return text.encode("utf-8")
        except UnicodeEncodeError:  # a lone surrogate escaped in the JSON
            return None
    if isinstance(encoded, str) and text is None:
        try:
            return base64.b64decode(encoded, validate=True)
        except ValueError:
            return None
    return None
