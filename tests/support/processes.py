"""Real surroundings for ``export --to`` end to end: a unix listener thread that can stall,
an exporter child process fed through a pipe we hold, and the parsing of what came out.

Waits are on notifications (selectors, pipes, thread events); where nothing notifies (how
full a pipe is, whether a signal was delivered) ``wait_until`` polls, bounded in count and
time. Every wait has a timeout, so a test that goes wrong fails instead of hanging.
"""

from __future__ import annotations

import contextlib
import faulthandler
import fcntl
import os
import re
import selectors
import signal
import socket
import subprocess
import sys
import termios
import threading
import time
from collections import Counter
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

import anyio
import orjson

from exporter.delivery.deadletter import read_dead_letters
from tests.support import REPO
from tests.support.config import numbered_lines

LINE_BYTES = 24
SUMMARY = re.compile(
    rb"event-exporter: (?P<dest>\S+): received (?P<received>\d+), exported (?P<exported>\d+), "
    rb"retried (?P<retried>\d+), dropped (?P<dropped>\d+)(?: \((?P<reasons>.*?)\))?, "
    rb"dead-lettered (?P<dead>\d+)"
)


def numbered_tab_line(n: int) -> bytes:
    """Event ``n`` as a tab-text line of exactly LINE_BYTES bytes (newline included)."""
    line = numbered_lines([n], form="tab-text", digits=7)
    assert len(line) == LINE_BYTES
    return line


def event_number(encoded: bytes) -> int:
    """The ``n`` of an event as ``export`` encodes it in json (``"0000042"``)."""
    fields = orjson.loads(encoded)["fields"]
    return int(fields["n"])


@dataclass(frozen=True)
class Summary:
    """The one summary line ``export --to`` writes to stderr."""

    received: int
    exported: int
    retried: int
    dropped: int
    dead_lettered: int
    reasons: dict[str, int]
    line: str

    def __str__(self) -> str:
        return self.line

    @classmethod
    def find(cls, stderr: bytes) -> Summary | None:
        match = SUMMARY.search(stderr)
        if match is None:
            return None
        reasons: dict[str, int] = {}
        if match["reasons"]:
            for part in match["reasons"].decode().split(", "):
                reason, _, count = part.rpartition(": ")
                reasons[reason] = int(count)
        return cls(
            int(match["received"]),
            int(match["exported"]),
            int(match["retried"]),
            int(match["dropped"]),
            int(match["dead"]),
            reasons,
            match[0].decode(),
        )


@contextmanager
def bounded(seconds: float) -> Iterator[None]:
    """Bound a blocking in-process run (``main()`` cannot run inside a test's event loop:
    it installs signal handlers, which only the main thread may): a hang past ``seconds``
    ends the test run with every thread's traceback instead of hanging it."""
    stream = sys.__stderr__  # the real fd 2: pytest's capture of sys.stderr has no fileno
    assert stream is not None
    faulthandler.dump_traceback_later(seconds, exit=True, file=stream)
    try:
        yield
    finally:
        faulthandler.cancel_dump_traceback_later()


def wait_until(condition: Callable[[], bool], *, timeout: float, step: float = 0.02) -> bool:
    """Poll ``condition`` where nothing notifies: at most ``timeout`` s, ``step`` apart."""
    deadline = time.monotonic() + timeout
    for _ in range(int(timeout / step) + 2):
        if condition():
            return True
        if time.monotonic() >= deadline:
            break
        time.sleep(step)
    return condition()


async def until(condition: Callable[[], bool], *, polls: int = 500) -> None:
    """:func:`wait_until` inside an event loop, failing when ``condition`` is not met:
    at most ``polls`` polls 10 ms apart (5 s)."""
    for _ in range(polls):
        if condition():
            return
        await anyio.sleep(0.01)
    raise AssertionError(f"not reached in {polls} polls")


def into_closed_pipe(*args: str, stdin: bytes = b"") -> tuple[int, bytes]:
    """Run ``python -m exporter ARGS`` (``stdin`` fed by a thread) and close its stdout
    after 10 bytes, as ``| head`` does: its exit status and what it wrote on stderr."""
    proc = subprocess.Popen(
        [sys.executable, "-m", "exporter", *args],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        cwd=REPO,
    )
    assert proc.stdin is not None
    assert proc.stdout is not None
    assert proc.stderr is not None
    pipe = proc.stdin

    def feed() -> None:
        with contextlib.suppress(BrokenPipeError):
            pipe.write(stdin)
            pipe.close()

    writer = threading.Thread(target=feed, name="feed", daemon=True)
    writer.start()
    try:
        proc.stdout.read(10)
        proc.stdout.close()
        return proc.wait(timeout=60), proc.stderr.read()
    finally:
        if proc.poll() is None:
            os.kill(proc.pid, signal.SIGKILL)
        proc.wait(timeout=10)
        writer.join(timeout=10)
        for stream in (proc.stdin, proc.stderr):
            with contextlib.suppress(OSError):
                stream.close()


def unread_bytes(fd: int) -> int:
    """Bytes sitting in a pipe (FIONREAD works on either end of a Linux pipe)."""
    buf = bytearray(4)
    fcntl.ioctl(fd, termios.FIONREAD, buf)
    return int.from_bytes(buf, sys.byteorder)


def rss_kib(pid: int) -> int:
    """VmRSS of a live process, in KiB."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    raise AssertionError(f"no VmRSS for {pid}")


def signal_pending(pid: int, signum: int) -> bool:
    """Whether ``signum`` was sent to ``pid`` and not yet delivered (then a second one sent
    now would merge with it: the kernel keeps one pending instance of a signal)."""
    mask = 1 << (signum - 1)
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith(("SigPnd:", "ShdPnd:")) and int(line.split()[1], 16) & mask:
            return True
    return False


# -- a unix stream listener in a thread ----------------------------------------------------


class Listener:
    """A unix stream listener thread keeping what each connection sent.

    ``read_limit``: after that many bytes (over all connections) it stops reading, so a
    sender's writes fill the socket buffer and block; None reads everything, 0 never
    reads. ``finish()``, once the sender is gone, reads everything: every connection
    still waiting to be accepted, every connection to its EOF.
    """

    def __init__(self, path: str, *, read_limit: int | None = None) -> None:
        self.path = path
        self.read_limit = read_limit
        self.connections: list[bytearray] = []
        self.connected = threading.Event()
        self.saw_data = threading.Event()
        self.stalled = threading.Event()
        self._finished = threading.Event()
        self._total = 0
        self._finishing = False
        self._stopping = False
        self._closed = False
        self._error: BaseException | None = None
        self._wake_r, self._wake_w = os.pipe()
        self._sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        self._sock.bind(path)
        self._sock.listen()
        self._sock.setblocking(False)
        self._thread = threading.Thread(target=self._run, name="listener", daemon=True)
        self._thread.start()

    def finish(self, timeout: float) -> None:
        """Read everything the sender sent, up to every connection's EOF, then close."""
        self._finishing = True
        os.write(self._wake_w, b"f")
        finished = self._finished.wait(timeout)
        self.close()
        assert finished, f"connections still open after {timeout} s"

    def close(self) -> None:
        if not self._closed:
            self._closed = True
            self._stopping = True
            os.write(self._wake_w, b"s")
            self._thread.join(timeout=10)
            assert not self._thread.is_alive()
            for fd in (self._wake_r, self._wake_w):
                os.close(fd)
            self._sock.close()
            os.unlink(self.path)
        if self._error is not None:
            raise AssertionError("listener thread failed") from self._error

    def lines(self) -> tuple[list[bytes], int]:
        """Every complete line of every connection, and how many torn fragments were cut."""
        lines: list[bytes] = []
        fragments = 0
        for received in self.connections:
            *complete, fragment = bytes(received).split(b"\n")
            lines += complete
            fragments += fragment != b""
        return lines, fragments

    def _may_read(self) -> bool:
        return self._finishing or self.read_limit is None or self._total < self.read_limit

    def _run(self) -> None:
        conns: dict[socket.socket, bytearray] = {}
        sel = selectors.DefaultSelector()
        try:
            sel.register(self._sock, selectors.EVENT_READ)
            sel.register(self._wake_r, selectors.EVENT_READ)
            reading = True
            while not self._stopping:
                may_read = self._may_read()
                if may_read != reading:
                    for conn in conns:
                        if may_read:
                            sel.register(conn, selectors.EVENT_READ)
                        else:
                            sel.unregister(conn)
                    reading = may_read
                    if not may_read:
                        self.stalled.set()
                if self._finishing:
                    self._accept(sel, conns, reading)  # what the backlog still holds
                    if not conns:
                        self._finished.set()
                        return
                for key, _ in sel.select():
                    if key.fileobj is self._wake_r:
                        os.read(self._wake_r, 64)
                    elif key.fileobj is self._sock:
                        self._accept(sel, conns, reading)
                    else:
                        ready = key.fileobj
                        assert isinstance(ready, socket.socket)
                        self._read(sel, conns, ready)
                        if not self._may_read():
                            break  # unregister the others before reading any more
        except BaseException as exc:
            self._error = exc
        finally:
            for conn in conns:
                conn.close()
            sel.close()

    def _accept(
        self, sel: selectors.BaseSelector, conns: dict[socket.socket, bytearray], reading: bool
    ) -> None:
        while True:
            try:
                conn, _ = self._sock.accept()
            except BlockingIOError:
                return
            conn.setblocking(False)
            received = bytearray()
            conns[conn] = received
            self.connections.append(received)
            if reading:
                sel.register(conn, selectors.EVENT_READ)
            self.connected.set()

    def _read(
        self,
        sel: selectors.BaseSelector,
        conns: dict[socket.socket, bytearray],
        conn: socket.socket,
    ) -> None:
        room = 1 << 20
        if not self._finishing and self.read_limit is not None:
            room = max(1, self.read_limit - self._total)
        try:
            data = conn.recv(room)
        except BlockingIOError:
            return
        except ConnectionResetError:
            data = b""
        if data:
            conns[conn] += data
            self._total += len(data)
            self.saw_data.set()
            return
        sel.unregister(conn)
        del conns[conn]
        conn.close()


# -- the exporter as a child process --------------------------------------------------------


class Feeder:
    """A thread writing numbered lines into a pipe, non-blocking, stoppable at any time.

    ``written`` counts bytes the pipe took; with fixed-size lines, ``written -
    unread_bytes(pipe)`` is exactly what the reader consumed.
    """

    def __init__(self, fd: int, total: int, *, close: Callable[[], None] | None = None) -> None:
        self.fd = fd
        self.total = total
        self.close = close
        """Called once everything is written (closing the pipe: end of input)."""
        self.written = 0
        self.done = threading.Event()
        self.blocked = threading.Event()
        """Set while the pipe is full and a write waits for room."""
        self.broken = False
        self._wake_r, self._wake_w = os.pipe()
        self._stopping = False
        os.set_blocking(fd, False)
        self._thread = threading.Thread(target=self._run, name="feeder", daemon=True)
        self._thread.start()

    @property
    def written_lines(self) -> int:
        return self.written // LINE_BYTES

    def stop(self) -> None:
        self._stopping = True
        os.write(self._wake_w, b"s")
        self._thread.join(timeout=10)
        assert not self._thread.is_alive()
        os.close(self._wake_r)
        os.close(self._wake_w)

    def _run(self) -> None:
        block = 4096
        sel = selectors.DefaultSelector()
        sel.register(self._wake_r, selectors.EVENT_READ)
        sel.register(self.fd, selectors.EVENT_WRITE)
        try:
            for first in range(0, self.total, block):
                data = memoryview(
                    b"".join(
                        numbered_tab_line(n) for n in range(first, min(first + block, self.total))
                    )
                )
                while data:
                    if self._stopping:
                        return
                    try:
                        n = os.write(self.fd, data)
                    except BlockingIOError:
                        self.blocked.set()
                        sel.select()
                        self.blocked.clear()
                        continue
                    except BrokenPipeError:
                        self.broken = True
                        return
                    self.written += n
                    data = data[n:]
            if self.close is not None:
                self.close()
            self.done.set()
        finally:
            sel.close()


@dataclass
class Child:
    """``python -m exporter ARGS`` with stdin from a pipe whose both ends we hold."""

    proc: subprocess.Popen[bytes]
    stdin_r: int
    stdin_w: int
    stderr: bytearray = field(default_factory=bytearray)
    summary_seen: threading.Event = field(default_factory=threading.Event)
    stdin_closed: bool = False
    feeders: list[Feeder] = field(default_factory=list)
    _lock: threading.Lock = field(default_factory=threading.Lock)

    @property
    def pid(self) -> int:
        return self.proc.pid

    @property
    def summary(self) -> Summary:
        found = Summary.find(bytes(self.stderr))
        assert found is not None, bytes(self.stderr).decode(errors="replace")
        return found

    def close_stdin(self) -> None:
        """End of input for the child (once; safe from any thread)."""
        with self._lock:
            if not self.stdin_closed:
                self.stdin_closed = True
                os.close(self.stdin_w)

    def feed(self, total: int, *, close: bool = False) -> Feeder:
        """Start writing events 0 .. total-1 into the child's stdin; ``close``: then EOF."""
        feeder = Feeder(self.stdin_w, total, close=self.close_stdin if close else None)
        self.feeders.append(feeder)
        return feeder

    def consumed_lines(self, feeder: Feeder) -> int:
        """How many whole lines the child has taken out of its stdin pipe."""
        return (feeder.written - unread_bytes(self.stdin_r)) // LINE_BYTES

    def wait_summary(self, timeout: float) -> float:
        """Seconds until the summary line appeared on stderr (fails after ``timeout``)."""
        started = time.monotonic()
        assert self.summary_seen.wait(timeout), (
            f"no summary after {timeout} s: {bytes(self.stderr).decode(errors='replace')}"
        )
        return time.monotonic() - started

    def wait(self, timeout: float) -> int:
        return self.proc.wait(timeout=timeout)

    def terminate(self) -> None:
        os.kill(self.pid, signal.SIGTERM)

    def _collect_stderr(self) -> None:
        stream = self.proc.stderr
        assert stream is not None
        for line in iter(stream.readline, b""):
            self.stderr += line
            if SUMMARY.search(line):
                self.summary_seen.set()


def announced_port(child: Child, pattern: bytes, timeout: float = 15) -> int:
    """The port the first group of ``pattern`` finds on the child's stderr (a listener's
    start line), once it is there; fails with the stderr after ``timeout``."""
    found = re.compile(pattern)
    assert wait_until(lambda: found.search(bytes(child.stderr)) is not None, timeout=timeout), (
        bytes(child.stderr).decode(errors="replace")
    )
    match = found.search(bytes(child.stderr))
    assert match is not None
    return int(match.group(1))


@contextmanager
def exporter_child(
    *args: str, cwd: Path = REPO, env: dict[str, str] | None = None
) -> Iterator[Child]:
    """Start ``python -m exporter ARGS`` in ``cwd`` (with ``env`` added to the
    environment); it is killed by its PID when the block ends."""
    stdin_r, stdin_w = os.pipe()
    proc = subprocess.Popen(
        [sys.executable, "-m", "exporter", *args],
        stdin=stdin_r,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        cwd=cwd,
        env=None if env is None else {**os.environ, **env},
    )
    child = Child(proc, stdin_r, stdin_w)
    reader = threading.Thread(target=child._collect_stderr, name="stderr", daemon=True)
    reader.start()
    try:
        yield child
    finally:
        for feeder in child.feeders:
            feeder.stop()
        if proc.poll() is None:
            os.kill(proc.pid, signal.SIGKILL)
        proc.wait(timeout=10)
        reader.join(timeout=10)
        assert proc.stderr is not None
        proc.stderr.close()
        child.close_stdin()
        os.close(stdin_r)


def dead_letter_events(path: Path) -> tuple[list[bytes], list[dict[str, object]]]:
    """The encoded events of a dead-letter file and its records."""
    if not path.exists():
        return [], []
    records = [orjson.loads(line) for line in path.read_bytes().splitlines()]
    return [event for _, event in read_dead_letters(path)], records


def accounting(delivered: list[bytes], dead: list[bytes]) -> tuple[set[int], set[int], int]:
    """Numbers delivered, numbers dead-lettered, and how many copies beyond the first."""
    counts = Counter(event_number(line) for line in [*delivered, *dead])
    return (
        {event_number(line) for line in delivered},
        {event_number(line) for line in dead},
        sum(counts.values()) - len(counts),
    )


def plain_export(tmp_path: Path, source: Path, options: list[str]) -> bytes:
    """What ``export`` prints for ``source``, the reference for what ``--to`` delivers."""
    from exporter.cli import main

    out = tmp_path / "printed"
    assert main(["export", "--output", str(out), *options, str(source)]) == 0
    return out.read_bytes()


def summary_line(dest: str, received: int, exported: int, retried: int, dead: int) -> str:
    """The summary ``export --to`` prints when nothing was dropped."""
    return (
        f"event-exporter: {dest}: received {received}, exported {exported}, "
        f"retried {retried}, dropped 0, dead-lettered {dead}"
    )


def settled(child: Child, feeder: Feeder, polls: int = 4) -> bool:
    """The feeder waits for room and the child took nothing from stdin for ``polls`` polls."""
    history: list[int] = []

    def check() -> bool:
        history.append(child.consumed_lines(feeder))
        stuck = len(history) >= polls and len(set(history[-polls:])) == 1
        return feeder.blocked.is_set() and stuck

    return wait_until(check, timeout=15, step=0.1)
