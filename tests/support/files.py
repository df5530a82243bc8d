"""Hostile neighbours on the file system: a symlink to a victim file, a FIFO that would
make a plain open wait forever, a umask.

A FIFO is planted by :func:`planted_fifo`: if the code under test waits on it (an open
without O_NONBLOCK, a read, a write), the guard releases it after ``patience`` seconds by
opening the other end, and says so, so that such a test fails with a clear message
instead of hanging the whole run.
"""

from __future__ import annotations

import os
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

VICTIM_TEXT = b"the victim's own bytes\n"


def plant_symlink(path: Path, victim: Path, text: bytes = VICTIM_TEXT) -> None:
    """A victim file with ``text`` and a symlink to it at ``path``."""
    victim.write_bytes(text)
    path.symlink_to(victim)


@dataclass
class FifoGuard:
    path: Path
    patience: float
    released: threading.Event = field(default_factory=threading.Event)
    waited_on: bool = False
    """The code under test blocked on the FIFO: the guard had to open its other end."""

    def _run(self) -> None:
        deadline = time.monotonic() + 60  # whatever happens, the guard ends
        while not self.released.wait(self.patience) and time.monotonic() < deadline:
            self.waited_on = True
            try:  # O_RDWR never waits; opening and closing releases a blocked open,
                # and the closed end makes a blocked write fail and a blocked read end
                fd = os.open(self.path, os.O_RDWR | os.O_NONBLOCK)
            except OSError:
                return  # gone: nothing left to release
            try:
                while os.read(fd, 1 << 16):  # what a writer managed to put in
                    pass
            except BlockingIOError:
                pass
            finally:
                os.close(fd)


@contextmanager
def planted_fifo(path: Path, *, patience: float = 3.0) -> Iterator[FifoGuard]:
    """A FIFO at ``path`` for the block; see the module's docstring."""
    os.mkfifo(path, 0o600)
    guard = FifoGuard(path, patience)
    thread = threading.Thread(target=guard._run, name="fifo-guard", daemon=True)
    thread.start()
    try:
        yield guard
    finally:
        guard.released.set()
        thread.join(timeout=10)
        assert not thread.is_alive()


@contextmanager
def umask(mask: int) -> Iterator[None]:
    old = os.umask(mask)
    try:
        yield
    finally:
        os.umask(old)


def mode_of(path: Path) -> int:
    return os.lstat(path).st_mode & 0o777
