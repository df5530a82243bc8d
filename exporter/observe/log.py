"""The daemon's own log: every line with its time, its level and its context.

``text`` (the default)::

    2026-12-04T19:02:03.123Z warning exporter=collector: delivery failed: ...

``json``, one object a line (``time``, ``level``, ``message``, then the context keys)::

    {"time":"2026-12-04T19:02:03.123Z","level":"warning","message":"...","exporter":"collector"}

The context says which part of the daemon speaks (``source``, ``metric``, ``exporter``,
``destination``, ``listen``...): :meth:`Log.bind` gives a log that adds it to every line.
Lines below ``level`` are not written; ``error`` lines always are.

Logging never blocks the daemon and never feeds its pipeline: lines are handed to a writer
thread, so a stderr that does not keep up (a full pipe, a slow journal) slows only that
thread. Past ``buffered_max`` lines waiting, new ones are dropped and counted, and the
count is written as soon as the writer catches up. :meth:`Log.close` writes what is left
(waiting a bounded time). A message is one line: its control characters are escaped, and
a message of several lines (a traceback) is written as several lines with the same prefix.

:class:`RateLimit` is the one way to keep a repeated report from flooding the log: the
first at once, then at most one per interval per key, saying how many were held back.
"""

from __future__ import annotations

import sys
import threading
import time
from collections import deque
from collections.abc import Callable, Mapping
from typing import Final, TextIO

import orjson

from exporter.observe.text import printable

LEVELS: Final = ("debug", "info", "warning", "error")
FORMATS: Final = ("text", "json")
BUFFERED_MAX: Final = 10_000
"""Lines waiting for the writer; past it they are dropped and counted."""
CLOSE_WAIT: Final = 5.0
"""Seconds :meth:`Log.close` waits for the writer to write what is left."""
_MESSAGE_MAX = 20_000
"""Characters of one message kept (a message quoting outside text is capped already)."""

Context = Mapping[str, str | int | float]


class Log:
    """One process's log (see the module). ``stream`` is read when a line is written,
    so it follows a ``sys.stderr`` replaced after the log was made."""

    def __init__(
        self,
        *,
        level: str = "info",
        format: str = "text",
        stream: Callable[[], TextIO] = lambda: sys.stderr,
        clock: Callable[[], float] = time.time,
        buffered_max: int = BUFFERED_MAX,
    ) -> None:
        if level not in LEVELS:
            raise ValueError(f"log level {level!r} is not one of {', '.join(LEVELS)}")
        if format not in FORMATS:
            raise ValueError(f"log format {format!r} is not one of {', '.join(FORMATS)}")
        self._writer = _Writer(stream, buffered_max)
        self._threshold = _Threshold(LEVELS.index(level))
        self._json = format == "json"
        self._clock = clock
        self._context: dict[str, str | int | float] = {}

    @property
    def level(self) -> str:
        return LEVELS[self._threshold.index]

    def set_level(self, level: str) -> None:
        """Write from ``level`` up from now on, here and in every log bound from the same
        one (a reload's ``log_level``)."""
        if level not in LEVELS:
            raise ValueError(f"log level {level!r} is not one of {', '.join(LEVELS)}")
        self._threshold.index = LEVELS.index(level)

    def enabled(self, level: str) -> bool:
        """Whether a line at ``level`` would be written (to skip building a costly one)."""
        return level == "error" or LEVELS.index(level) >= self._threshold.index

    def bind(self, **context: str | int | float) -> Log:
        """A log whose lines also carry ``context`` (it writes through this one's writer)."""
        bound = object.__new__(Log)
        bound.__dict__.update(self.__dict__)
        bound._context = {**self._context, **context}
        return bound

    def debug(self, message: str, **context: str | int | float) -> None:
        self.write("debug", message, context)

    def info(self, message: str, **context: str | int | float) -> None:
        self.write("info", message, context)

    def warning(self, message: str, **context: str | int | float) -> None:
        self.write("warning", message, context)

    def error(self, message: str, **context: str | int | float) -> None:
        self.write("error", message, context)

    def write(
        self, level: str, message: str, context: Context | None = None, *, always: bool = False
    ) -> None:
        """One line at ``level``; ``always``: whatever the threshold (the final summary)."""
        if not always and not self.enabled(level):
            return
        merged = {**self._context, **context} if context else self._context
        stamp = _stamp(self._clock())
        if self._json:
            record: dict[str, object] = {"time": stamp, "level": level, "message": message}
            record.update((key, value) for key, value in merged.items() if key not in record)
            self._writer.put(orjson.dumps(record).decode() + "\n")
            return
        where = "".join(f" {key}={_word(value)}" for key, value in merged.items())
        prefix = f"{stamp} {level}{where}: "
        lines = message[:_MESSAGE_MAX].split("\n")
        self._writer.put(
            "".join(f"{prefix}{printable(line, _MESSAGE_MAX)}\n" for line in lines if line)
        )

    def close(self) -> None:
        """Write what is waiting (at most :data:`CLOSE_WAIT` s), then stop the writer. The
        log can still be written to after: lines then go out at once."""
        self._writer.close()


class _Threshold:
    """The lowest level written, shared by a log and the logs bound from it."""

    __slots__ = ("index",)

    def __init__(self, index: int) -> None:
        self.index = index


def _stamp(now: float) -> str:
    seconds = int(now)
    return time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(seconds)) + (
        f".{int((now - seconds) * 1000):03d}Z"
    )


def _word(value: str | int | float) -> str:
    """A context value as one word of a text line (names never hold spaces; should one,
    it is quoted)."""
    text = printable(str(value), 300)
    return text if text and " " not in text and "=" not in text else orjson.dumps(text).decode()


class _Writer:
    """Lines handed over without waiting, written in order by a thread of their own."""

    def __init__(self, stream: Callable[[], TextIO], buffered_max: int) -> None:
        self._stream = stream
        self._max = buffered_max
        self._lines: deque[str] = deque()
        self._dropped = 0
        self._lock = threading.Condition()
        self._closed = False
        self._thread: threading.Thread | None = None

    def put(self, text: str) -> None:
        with self._lock:
            if self._closed:  # after close (the final summary): at once
                self._emit(text)
                return
            if len(self._lines) >= self._max:
                self._dropped += text.count("\n")
                return
            self._lines.append(text)
            if self._thread is None:
                self._thread = threading.Thread(target=self._run, name="log", daemon=True)
                self._thread.start()
            self._lock.notify()

    def close(self) -> None:
        with self._lock:
            self._closed = True
            self._lock.notify()
            thread = self._thread
        if thread is not None:
            thread.join(CLOSE_WAIT)

    def _run(self) -> None:
        while True:
            with self._lock:
                while not self._lines and not self._closed:
                    self._lock.wait()
                if not self._lines:
                    return
                batch = "".join(self._lines)
                self._lines.clear()
                dropped, self._dropped = self._dropped, 0
            if dropped:
                batch += (
                    f"{_stamp(time.time())} warning: {dropped} log lines dropped: stderr did "
                    "not keep up\n"
                )
            self._emit(batch)

    def _emit(self, text: str) -> None:
        stream = self._stream()
        try:
            stream.write(text)
            stream.flush()
        except (OSError, ValueError):  # stderr closed or gone: nowhere left to say it
            pass


class RateLimit:
    """Whether to report something now: the first ``burst`` reports of a key at once,
    then at most one per ``interval`` seconds, each saying how many were held back since
    the last one shown (everything is counted elsewhere, in ``/metrics``)."""

    def __init__(
        self,
        interval: float = 30.0,
        *,
        burst: int = 1,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.interval = interval
        self.burst = burst
        self._clock = clock
        self._shown: dict[str, int] = {}
        self._next: dict[str, float] = {}
        self._held: dict[str, int] = {}

    def allow(self, key: str = "") -> int | None:
        """None: hold this one back; else how many were held back before it (0 at first)."""
        shown = self._shown.get(key, 0)
        now = self._clock()
        if shown >= self.burst and now < self._next.get(key, now):
            self._held[key] = self._held.get(key, 0) + 1
            return None
        self._shown[key] = shown + 1
        if shown + 1 >= self.burst:
            self._next[key] = now + self.interval
        return self._held.pop(key, 0)

    def note(self, held: int) -> str:
        """The words to add to a report shown after ``held`` were held back."""
        if not held:
            return ""
        return f" ({held} more since the last one shown; at most one per {self.interval:g} s)"
