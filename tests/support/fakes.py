"""Test doubles for the delivery engine: a scripted driver and a recording sleep; an
exporter run over a list of events."""

from __future__ import annotations

from collections.abc import Iterable

import anyio

from drivers.base import Batch, Partial
from exporter.delivery.exporter import Exporter
from exporter.errors import DeliveryError, DriverClosedError


class ScriptedDriver:
    """Fails as scripted (one entry per send: None = succeed, an error to raise, or a
    Partial to answer: it keeps the items the answer does not name), then succeeds;
    keeps every delivered line in order."""

    def __init__(self, script: Iterable[BaseException | Partial | None] = ()) -> None:
        self.script = list(script)
        self.lines: list[bytes] = []
        self.sends = 0
        self.closed = False
        self.gate: anyio.Event | None = None
        """When set, send() waits for it before delivering (a slow destination)."""

    @property
    def name(self) -> str:
        return "scripted"

    @property
    def concurrency(self) -> int:
        return 1

    connections = 0

    async def send(self, batch: Batch) -> Partial | None:
        if self.closed:
            raise DriverClosedError("scripted: send after close")
        self.sends += 1
        if self.gate is not None:
            await self.gate.wait()
        if self.script:
            outcome = self.script.pop(0)
            if isinstance(outcome, Partial):
                named = set(outcome.retry).union(*outcome.rejected.values())
                self.lines.extend(
                    line for index, line in enumerate(batch.lines()) if index not in named
                )
                return outcome
            if outcome is not None:
                raise outcome
        self.lines.extend(batch.lines())
        return None

    async def flush(self) -> None:
        return None

    async def reopen(self) -> None:
        return None

    async def aclose(self) -> None:
        self.closed = True


class RecordingSleep:
    """Records what the retry loop asked to sleep, without sleeping."""

    def __init__(self) -> None:
        self.calls: list[float] = []

    async def __call__(self, seconds: float) -> None:
        self.calls.append(seconds)
        await anyio.lowlevel.checkpoint()


async def run_exporter(exporter: Exporter, items: list[bytes]) -> None:
    """Run ``exporter`` over ``items`` (waiting for room under ``block``), its queue closed
    after the last, until it delivered or dead-lettered every one (at most 20 s)."""
    with anyio.fail_after(20):
        async with anyio.create_task_group() as tasks:
            tasks.start_soon(exporter.run)
            for item in items:
                if not exporter.offer(item):
                    await exporter.put(item)
            exporter.queue.close()


def lines(count: int, prefix: bytes = b"e") -> list[bytes]:
    return [prefix + str(i).encode() + b"\n" for i in range(count)]


__all__ = ["DeliveryError", "RecordingSleep", "ScriptedDriver", "lines", "run_exporter"]
