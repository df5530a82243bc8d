"""The ``tail`` source: follows a file of Dovecot json or tab-text events as ``tail -F`` does.

Every ``poll_interval`` the path is looked at (``os.stat``) and what was appended is read
in chunks. A line is taken only once its newline is there: a partial last line waits.

* Rotation by rename (the path now names another file): the old file is read to its end
  first, then the new one from its start. While the path names nothing (between the
  rename and the creation of the next file) the old file is still read.
* Truncation (copytruncate: the file is now shorter than what was read): reading starts
  again from the start.
* A missing file is waited for; one that appears is read from its start.

With a ``state_file`` the position is remembered: after every chunk whose events were
all emitted, and when the source stops, ``{"path", "dev", "inode", "offset", "line"}`` is
written atomically (a temporary file created exclusively beside it, renamed over it; a
symlink, FIFO or device at the state file's path is refused, not followed or waited on).
``offset`` is just past the last line taken, so a restart neither sends a line twice nor
skips one: if the state names the file the path names, reading resumes at ``offset``
(from the start when the file is now shorter); if it names another file (rotated
meanwhile), the path's file is read from its start.
Without a usable state, ``start_at`` says where in a file that is there at start to
begin: its ``beginning``, or its ``end`` (at the start of its partial last line, if any).

A bad line, or one longer than ``max_line_bytes`` (never held in memory whole), is
reported on the error stream with the file and its line number (and byte offset) and
skipped.

An emit cancelled at shutdown has still queued its event (the intake's promise): that
line counts as taken. The lines after it stay in the file, untaken, and the position
saved at the stop is just before them.
"""

from __future__ import annotations

import errno
import itertools
import os
import stat
from dataclasses import dataclass
from typing import Literal, TextIO

import anyio
import anyio.abc
import anyio.lowlevel
import orjson

from exporter.files import open_regular, replace_file
from exporter.sources.intake import Intake
from exporter.sources.lines import CHUNK_BYTES, LineCounts, LineFeed, Lines
from exporter.sources.reports import SourceReports


@dataclass(frozen=True)
class TailSourceSettings:
    path: str
    state_file: str | None = None
    poll_interval: float = 0.25
    start_at: Literal["beginning", "end"] = "beginning"
    """Where to begin in a file that is there at start when no state says where."""
    max_line_bytes: int = 1 << 20
    """A longer line (without its newline) is reported and skipped, never held whole."""


@dataclass
class TailSourceCounts(LineCounts):
    """``rejected_lines``: bad, oversized, or cut short by a rotation."""

    rotations: int = 0
    truncations: int = 0


@dataclass(frozen=True)
class _Position:
    dev: int
    inode: int
    offset: int
    line: int | None


class TailSource:
    """``serve()`` follows the file until cancelled."""

    def __init__(
        self, settings: TailSourceSettings, intake: Intake, errors: TextIO | SourceReports
    ) -> None:
        self.settings = settings
        self._intake = intake
        self.counts = TailSourceCounts()
        self._feed = LineFeed(
            intake,
            errors,
            about=f"tail source {settings.path}: ",
            max_line_bytes=settings.max_line_bytes,
            counts=self.counts,
            force_rest=False,
        )
        self._lines = self._feed.splitter(sizes=True)
        self._fd: int | None = None
        self._dev = self._inode = 0
        self._read_pos = 0  # where the next read starts
        self._offset = 0  # just past the last line taken
        self._line: int | None = 0  # lines taken in this file (None: unknown)
        self._resume: _Position | None = None  # from the state file, for the first file
        self._saved: _Position | None = None
        self._save_failed = False

    def announce(self) -> str:
        """What the daemon's log says once this source runs."""
        return f"file {self.settings.path}"

    async def serve(
        self, task_status: anyio.abc.TaskStatus[None] = anyio.TASK_STATUS_IGNORED
    ) -> None:
        self._resume = self._load_state()
        try:
            self._open(at_start=True)
            task_status.started()
            while True:
                await self._poll()
                await anyio.sleep(self.settings.poll_interval)
        finally:
            if self._fd is not None:
                self._save_state()
                os.close(self._fd)
                self._fd = None

    # -- following -----------------------------------------------------------------------

    async def _poll(self) -> None:
        if self._fd is None and not self._open(at_start=False):
            return
        assert self._fd is not None
        try:
            named = os.stat(self.settings.path)  # before reading: what the old file got
        except FileNotFoundError:  # renamed, the next one not created yet: read on
            named = None
        if os.fstat(self._fd).st_size < self._read_pos:
            self.counts.truncations += 1
            self._note("truncated: reading it again from the start")
            self._lines.reset()
            self._start_at(0, 0)
            await self._save_state_durably()
        await self._drain()
        if named is not None and (named.st_dev, named.st_ino) != (self._dev, self._inode):
            self.counts.rotations += 1
            self._close_rotated()
            if self._open(at_start=False):
                await self._drain()

    async def _drain(self) -> None:
        """Take every complete line appended so far."""
        assert self._fd is not None
        while True:
            chunk = os.read(self._fd, CHUNK_BYTES)
            self._read_pos += len(chunk)
            if chunk:  # an empty one is the end of what is there so far, not of the file
                lines = self._lines.feed(chunk)
                if lines:
                    await self._take(lines)
            await self._save_state_durably()
            if len(chunk) < CHUNK_BYTES:
                return  # at the end (a regular file reads short only there)
            await anyio.lowlevel.checkpoint()

    async def _take(self, lines: Lines) -> None:
        """Emit the events of ``lines``; the position moves past every line taken, the
        one whose emit was cancelled at shutdown included."""
        starts = list(itertools.accumulate(self._lines.sizes, initial=self._offset))
        line = self._line

        def where(number: int) -> str:
            return _where(None if line is None else line + number, starts[number - 1])

        try:
            await self._feed.take(lines, self._lines, where)
        finally:
            self._offset = starts[self._feed.taken]
            if line is not None:
                self._line = line + self._feed.taken

    def _open(self, *, at_start: bool) -> bool:
        """Open the file the path names, positioned; False while there is none."""
        path = self.settings.path
        try:
            fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK | os.O_CLOEXEC)
        except FileNotFoundError:
            return False
        try:
            found = os.fstat(fd)
            if not stat.S_ISREG(found.st_mode):
                raise OSError(errno.EINVAL, f"{path} is not a regular file: cannot follow it")
            offset, line = self._where_to_start(fd, found, at_start=at_start)
        except BaseException:
            os.close(fd)
            raise
        self._fd, self._dev, self._inode = fd, found.st_dev, found.st_ino
        self._lines.reset()
        self._start_at(offset, line)
        self._save_state()
        return True

    def _where_to_start(
        self, fd: int, found: os.stat_result, *, at_start: bool
    ) -> tuple[int, int | None]:
        resume, self._resume = self._resume, None
        if resume is not None:
            if (resume.dev, resume.inode) != (found.st_dev, found.st_ino):
                return 0, 0  # the file was rotated while we were away: all of it is new
            if resume.offset > found.st_size:
                self._note(
                    f"shorter ({found.st_size} bytes) than the remembered offset "
                    f"{resume.offset}: reading it from the start"
                )
                return 0, 0
            return resume.offset, resume.line
        if at_start and self.settings.start_at == "end":
            return _last_line_start(fd, found.st_size, self.settings.max_line_bytes), None
        return 0, 0

    def _start_at(self, offset: int, line: int | None) -> None:
        assert self._fd is not None
        os.lseek(self._fd, offset, os.SEEK_SET)
        self._read_pos = self._offset = offset
        self._line = line

    def _close_rotated(self) -> None:
        """The old file was read to its end: a partial last line there never ends."""
        assert self._fd is not None
        if self._lines.pending_bytes:
            self._feed.reject(
                _where(None if self._line is None else self._line + 1, self._offset),
                f"truncated: the file was replaced {self._lines.pending_bytes} bytes "
                "into its last line, before its newline",
            )
        os.close(self._fd)
        self._fd = None

    # -- the state file ------------------------------------------------------------------

    def _load_state(self) -> _Position | None:
        name = self.settings.state_file
        if name is None:
            return None
        try:  # a FIFO there is refused at once: a plain open would wait for a writer
            fd = open_regular(name, os.O_RDONLY)
        except FileNotFoundError:
            return None
        except OSError as exc:
            raise OSError(exc.errno, f"cannot read {name}: {exc.strerror or exc}") from exc
        with open(fd, "rb") as file:
            data = file.read()
        try:
            obj = orjson.loads(data)
            path, dev, inode, offset = obj["path"], obj["dev"], obj["inode"], obj["offset"]
            line = obj.get("line")
            numbers = (dev, inode, offset, 0 if line is None else line)
            if not isinstance(path, str) or not all(type(n) is int and n >= 0 for n in numbers):
                raise ValueError("path, dev, inode, offset are not a string and numbers")
        except (orjson.JSONDecodeError, ValueError, KeyError, TypeError, AttributeError) as exc:
            self._note(f"state file {name} unusable ({exc}): starting at the {self._start()}")
            return None
        if path != self.settings.path:
            self._note(f"state file {name} is for {path}: starting at the {self._start()}")
            return None
        return _Position(dev, inode, offset, line)

    def _start(self) -> str:
        return "beginning" if self.settings.start_at == "beginning" else "end"

    async def _save_state_durably(self) -> None:
        """:meth:`_save_state` once what was emitted is durable (a spool on a failing disk
        is waited for, a ``full`` fsync runs off the event loop): reading goes on after."""
        await self._intake.committed()
        self._save_state()

    def _save_state(self) -> None:
        """Commit what was emitted (a spool), then save the position: the state file never
        points past events that could still be lost. Without waiting: at start and at
        shutdown (what a failed write holds in memory is then dead-lettered)."""
        self._intake.commit()
        name = self.settings.state_file
        if name is None or self._fd is None:
            return
        position = _Position(self._dev, self._inode, self._offset, self._line)
        if position == self._saved:
            return
        state = {
            "path": self.settings.path,
            "dev": position.dev,
            "inode": position.inode,
            "offset": position.offset,
            "line": position.line,
        }
        try:  # beside it, exclusively, then renamed: a symlink there is never followed
            replace_file(name, orjson.dumps(state) + b"\n")
        except OSError as exc:
            if not self._save_failed:
                self._save_failed = True
                self._note(
                    f"cannot save the position to {name}: {exc.strerror or exc} (a restart "
                    "may send lines again)"
                )
            return
        self._save_failed = False
        self._saved = position

    # -- reports -------------------------------------------------------------------------

    def _note(self, what: str) -> None:
        self._feed.reports.warning(what)


def _where(line: int | None, byte: int) -> str:
    """Where a line of the file is: its number, when known (not after ``start_at = end``),
    and its byte offset."""
    return f"byte {byte}" if line is None else f"line {line} (byte {byte})"


def _last_line_start(fd: int, size: int, max_line_bytes: int) -> int:
    """Where the last line begins: ``size`` after a newline, else after the one before
    (looking back at most ``max_line_bytes``: a longer line is skipped anyway)."""
    back = min(size, max_line_bytes + 1)
    tail = os.pread(fd, back, size - back)
    newline = tail.rfind(b"\n")
    if newline >= 0 or back == size:
        return size - back + newline + 1
    return size - back
