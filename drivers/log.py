"""The ``log`` driver: one line per event on stderr or stdout, as Dovecot's log driver.

Dovecot cuts string values longer than 1000 bytes for this driver; that is a format
setting (``FormatSpec.truncate``), which the exporter sets for ``log`` by default.

On a terminal, control characters a sender put in a value (tab-text writes them raw) are
escaped (:func:`~exporter.observe.text.terminal_safe`): there they would act, among the
daemon's own messages. A pipe or a file gets the events byte for byte.
"""

from __future__ import annotations

import os
import sys
from typing import Literal

import anyio

from drivers.base import Batch
from exporter.errors import DriverClosedError, PermanentDeliveryError, RetryableDeliveryError
from exporter.observe.text import terminal_safe


class LogDriver:
    """Writes each batch with blocking writes in a worker thread (a slow reader of our
    stderr then slows us down instead of losing lines)."""

    def __init__(self, stream: Literal["stderr", "stdout"] = "stderr") -> None:
        if stream not in ("stderr", "stdout"):
            raise ValueError(f"log stream must be stderr or stdout, not {stream!r}")
        self._stream = stream
        self._closed = False

    @property
    def name(self) -> str:
        return f"log:{self._stream}"

    @property
    def concurrency(self) -> int:
        return 1

    connections = 0

    async def send(self, batch: Batch) -> None:
        if self._closed:
            raise DriverClosedError(f"{self.name}: send after close")
        fd = (sys.stderr if self._stream == "stderr" else sys.stdout).fileno()
        data = bytes(batch.data)
        if os.isatty(fd):
            data = terminal_safe(data)
        try:
            await anyio.to_thread.run_sync(_write_all, fd, data)
        except BrokenPipeError as exc:
            raise PermanentDeliveryError(f"{self.name}: {exc.strerror}") from None
        except OSError as exc:
            raise RetryableDeliveryError(f"{self.name}: {exc.strerror or exc}") from None

    async def flush(self) -> None:
        return None

    async def reopen(self) -> None:
        return None

    async def aclose(self) -> None:
        self._closed = True


def _write_all(fd: int, data: bytes) -> None:
    view = memoryview(data)
    while view:
        written = os.write(fd, view)
        view = view[written:]
