"""What every driver promises (drivers/base.py), checked on each against a real destination."""

from __future__ import annotations

import os
import socket
import sys
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from contextlib import AbstractAsyncContextManager, asynccontextmanager, contextmanager
from dataclasses import dataclass
from pathlib import Path

import anyio
import pytest

from drivers.base import Batch, Driver
from drivers.drop import DropDriver
from drivers.file import FileDriver
from drivers.http import HttpDriver, HttpSettings
from drivers.log import LogDriver
from drivers.unix import UnixDriver
from exporter.errors import (
    DeliveryError,
    DriverClosedError,
    PermanentDeliveryError,
    RetryableDeliveryError,
)
from tests.support.drivers import (
    complete_lines,
    numbered_batches,
    socket_dir,
    unix_datagram_receiver,
    unix_stream_receiver,
)
from tests.support.http_receiver import Receiver


@dataclass
class Places:
    tmp_path: Path
    sock_dir: str
    capfd: pytest.CaptureFixture[bytes]


@dataclass
class Harness:
    driver: Driver
    delivered: Callable[[], Awaitable[list[bytes] | None]]
    """The events the destination holds, in order, once the driver is closed; None for
    a destination that keeps nothing (drop)."""


@asynccontextmanager
async def file_harness(places: Places) -> AsyncIterator[Harness]:
    path = places.tmp_path / "events.log"

    async def delivered() -> list[bytes]:
        if not path.exists():  # opened lazily: nothing sent, no file
            return []
        lines, fragment = complete_lines(path.read_bytes())
        assert fragment == b""
        return lines

    yield Harness(FileDriver(path), delivered)


@asynccontextmanager
async def unix_stream_harness(places: Places) -> AsyncIterator[Harness]:
    path = os.path.join(places.sock_dir, "stream.sock")
    async with unix_stream_receiver(path) as receiver:

        async def delivered() -> list[bytes]:
            await receiver.stop()
            lines = []
            for received in receiver.connections:
                complete, fragment = complete_lines(received)
                assert fragment == b""
                lines += complete
            return lines

        yield Harness(UnixDriver(path), delivered)


@asynccontextmanager
async def unix_datagram_harness(places: Places) -> AsyncIterator[Harness]:
    path = os.path.join(places.sock_dir, "dgram.sock")
    async with unix_datagram_receiver(path) as receiver:

        async def delivered() -> list[bytes]:
            await receiver.stop()
            return receiver.datagrams

        yield Harness(UnixDriver(path, datagram=True), delivered)


@asynccontextmanager
async def log_harness(places: Places) -> AsyncIterator[Harness]:
    places.capfd.readouterr()

    async def delivered() -> list[bytes]:
        lines, fragment = complete_lines(places.capfd.readouterr().out)
        assert fragment == b""
        return lines

    yield Harness(LogDriver("stdout"), delivered)


@asynccontextmanager
async def drop_harness(places: Places) -> AsyncIterator[Harness]:
    async def delivered() -> None:
        return None

    yield Harness(DropDriver(), delivered)


@asynccontextmanager
async def http_harness(places: Places) -> AsyncIterator[Harness]:
    with Receiver() as receiver:

        async def delivered() -> list[bytes]:
            return receiver.events()

        yield Harness(HttpDriver(HttpSettings(url=receiver.url)), delivered)


HARNESSES: dict[str, Callable[[Places], AbstractAsyncContextManager[Harness]]] = {
    "file": file_harness,
    "unix-stream": unix_stream_harness,
    "unix-datagram": unix_datagram_harness,
    "log": log_harness,
    "drop": drop_harness,
    "http": http_harness,
}


@pytest.fixture(params=HARNESSES)
def harness(
    request: pytest.FixtureRequest, tmp_path: Path, capfdbinary: pytest.CaptureFixture[bytes]
) -> Iterator[AbstractAsyncContextManager[Harness]]:
    with socket_dir() as sock_dir:
        yield HARNESSES[request.param](Places(tmp_path, sock_dir, capfdbinary))


def expected(batches: list[Batch]) -> list[bytes]:
    return [line for batch in batches for line in batch.lines()]


async def assert_delivered(harness: Harness, batches: list[Batch]) -> None:
    got = await harness.delivered()
    if got is not None:
        assert got == expected(batches)


@pytest.mark.anyio
async def test_events_arrive_in_order(harness: AbstractAsyncContextManager[Harness]) -> None:
    batches = numbered_batches(250, 100)
    with anyio.fail_after(5):
        async with harness as h:
            for batch in batches:
                await h.driver.send(batch)
            await h.driver.flush()
            await h.driver.aclose()
            await assert_delivered(h, batches)


@pytest.mark.anyio
async def test_flush_is_safe_before_any_write_and_twice(
    harness: AbstractAsyncContextManager[Harness],
) -> None:
    batches = numbered_batches(20, 10)
    with anyio.fail_after(5):
        async with harness as h:
            await h.driver.flush()
            await h.driver.flush()
            for batch in batches:
                await h.driver.send(batch)
                await h.driver.flush()
                await h.driver.flush()
            await h.driver.aclose()
            await h.driver.flush()
            await assert_delivered(h, batches)


@pytest.mark.anyio
async def test_reopen_between_batches_keeps_every_event_in_order(
    harness: AbstractAsyncContextManager[Harness],
) -> None:
    batches = numbered_batches(30, 10)
    with anyio.fail_after(5):
        async with harness as h:
            await h.driver.reopen()
            for batch in batches:
                await h.driver.send(batch)
                await h.driver.reopen()
            await h.driver.aclose()
            await assert_delivered(h, batches)


@pytest.mark.anyio
async def test_aclose_twice_is_safe_and_send_after_it_raises_closed(
    harness: AbstractAsyncContextManager[Harness],
) -> None:
    batches = numbered_batches(10, 10)
    with anyio.fail_after(5):
        async with harness as h:
            await h.driver.send(batches[0])
            await h.driver.aclose()
            await h.driver.aclose()
            with pytest.raises(DriverClosedError, match="after close"):
                await h.driver.send(batches[0])
            await assert_delivered(h, batches)


@pytest.mark.anyio
async def test_unused_driver_closes_and_refuses_sends(
    harness: AbstractAsyncContextManager[Harness],
) -> None:
    with anyio.fail_after(5):
        async with harness as h:
            await h.driver.aclose()
            await h.driver.aclose()
            with pytest.raises(DriverClosedError):
                await h.driver.send(numbered_batches(1, 1)[0])
            await assert_delivered(h, [])


FAILURES = {
    # a destination that cannot take events: the error expected
    "file-path-is-a-directory": PermanentDeliveryError,
    "file-directory-missing": RetryableDeliveryError,
    "unix-stream-no-listener": RetryableDeliveryError,
    "unix-stream-stale-socket-file": RetryableDeliveryError,
    "unix-datagram-no-receiver": RetryableDeliveryError,
    "log-reader-gone": PermanentDeliveryError,
    "http-no-listener": RetryableDeliveryError,
    "http-refuses-the-batch": PermanentDeliveryError,
}


@contextmanager
def broken_driver(name: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Driver]:
    with socket_dir() as sock_dir:
        absent = os.path.join(sock_dir, "absent.sock")
        if name == "file-path-is-a-directory":
            yield FileDriver(tmp_path)
        elif name == "file-directory-missing":
            yield FileDriver(tmp_path / "missing" / "events.log")
        elif name == "unix-stream-no-listener":
            yield UnixDriver(absent)
        elif name == "unix-stream-stale-socket-file":
            with socket.socket(socket.AF_UNIX) as sock:
                sock.bind(absent)  # bound, never listening, closed: the file stays
            yield UnixDriver(absent)
        elif name == "unix-datagram-no-receiver":
            yield UnixDriver(absent, datagram=True)
        elif name == "http-no-listener":
            with socket.socket() as sock:
                sock.bind(("127.0.0.1", 0))  # a port no one listens on while it is held
                port = sock.getsockname()[1]
                yield HttpDriver(HttpSettings(url=f"http://127.0.0.1:{port}/ingest"))
        elif name == "http-refuses-the-batch":
            with Receiver(["400", "400"]) as receiver:
                yield HttpDriver(HttpSettings(url=receiver.url))
        else:  # stdout is a pipe whose reading end is closed: writes fail with EPIPE
            read_end, write_end = os.pipe()
            os.close(read_end)
            with open(write_end, "w") as stdout:
                monkeypatch.setattr(sys, "stdout", stdout)
                yield LogDriver("stdout")


@pytest.mark.anyio
@pytest.mark.parametrize("name", FAILURES)
async def test_failures_raise_only_delivery_errors(
    name: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    with broken_driver(name, tmp_path, monkeypatch) as driver, anyio.fail_after(5):
        for _ in range(2):  # the second attempt fails the same way, nothing else
            with pytest.raises(DeliveryError) as info:
                await driver.send(numbered_batches(3, 3)[0])
            assert type(info.value) is FAILURES[name]
            assert driver.name in str(info.value)
        await driver.flush()
        await driver.aclose()
