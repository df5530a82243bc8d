"""The unix driver against real listeners: absent, restarted, slow, datagram receivers."""

from __future__ import annotations

import json
import os
import socket
import time
from collections import Counter
from collections.abc import Iterator

import anyio
import pytest

from drivers.base import Batch
from drivers.unix import UnixDriver
from exporter.errors import PermanentDeliveryError, RetryableDeliveryError
from tests.support.drivers import (
    complete_lines,
    numbered_batches,
    numbered_line,
    socket_dir,
    unix_datagram_receiver,
    unix_stream_receiver,
)


@pytest.fixture
def sock_path() -> Iterator[str]:
    with socket_dir() as directory:
        yield os.path.join(directory, "events.sock")


@pytest.mark.anyio
@pytest.mark.parametrize("datagram", [False, True], ids=["stream", "datagram"])
async def test_an_absent_listener_is_retryable(sock_path: str, datagram: bool) -> None:
    driver = UnixDriver(sock_path, datagram=datagram)
    assert driver.name == f"unix:{sock_path}"
    batch = numbered_batches(3, 3)[0]
    with anyio.fail_after(5):
        with pytest.raises(RetryableDeliveryError, match=r"connect failed: .*\(ENOENT\)"):
            await driver.send(batch)
        with socket.socket(socket.AF_UNIX) as stale:
            stale.bind(sock_path)  # the file of a listener that died without removing it
        with pytest.raises(RetryableDeliveryError, match=r"\(ECONNREFUSED\)"):
            await driver.send(batch)
        await driver.aclose()


@pytest.mark.anyio
async def test_a_connect_that_cannot_complete_times_out_retryably(sock_path: str) -> None:
    """A listener that stopped accepting, its backlog full: connect would wait forever.
    The driver waits asleep in the kernel, not polling (anyio.connect_unix spins)."""
    with socket.socket(socket.AF_UNIX) as listener, socket.socket(socket.AF_UNIX) as first:
        listener.bind(sock_path)
        listener.listen(0)
        first.connect(sock_path)  # takes the only backlog slot
        driver = UnixDriver(sock_path, connect_timeout=0.1)
        full = r"\(EAGAIN\): the listen backlog stayed full for 0.1 s"
        cpu = time.process_time()
        with anyio.fail_after(5), pytest.raises(RetryableDeliveryError, match=full):
            await driver.send(numbered_batches(1, 1)[0])
        assert time.process_time() - cpu < 0.05


@pytest.mark.anyio
async def test_reopen_starts_a_new_connection(sock_path: str) -> None:
    batches = numbered_batches(20, 10)
    with anyio.fail_after(5):
        async with unix_stream_receiver(sock_path) as receiver:
            driver = UnixDriver(sock_path)
            await driver.send(batches[0])
            await driver.reopen()
            await driver.send(batches[1])
            await driver.aclose()
            await receiver.stop()
    assert [bytes(c) for c in receiver.connections] == [bytes(b.data) for b in batches]


def read_to_eof(conn: socket.socket) -> bytes:
    received = bytearray()
    with conn:
        while data := conn.recv(1 << 16):
            received += data
    return bytes(received)


@pytest.mark.anyio
async def test_a_send_cancelled_part_way_never_continues_on_that_connection(
    sock_path: str,
) -> None:
    """The batch is larger than the socket buffer and nobody reads: the send blocks with
    part of it written. Cancelled there, the driver must drop the connection, or the next
    batch would glue onto the torn line."""
    big = numbered_batches(2000, 2000, pad=400)[0]
    small = numbered_batches(5, 5)[0]
    with socket.socket(socket.AF_UNIX) as listener, anyio.fail_after(5):
        listener.bind(sock_path)
        listener.listen()
        driver = UnixDriver(sock_path)
        async with anyio.create_task_group() as tg:
            tg.start_soon(driver.send, big)
            await anyio.wait_all_tasks_blocked()
            tg.cancel_scope.cancel()
        await driver.send(small)
        await driver.aclose()
        torn, whole = (read_to_eof(listener.accept()[0]) for _ in range(2))
    assert 0 < len(torn) < len(big.data)
    assert bytes(big.data).startswith(torn)
    assert whole == bytes(small.data)


@pytest.mark.anyio
async def test_a_restarting_listener_gets_every_event(sock_path: str) -> None:
    """100,000 events in batches of 1,000; the listener stops and starts 10 times, while a
    batch is being written when it can be. The test is the retry loop: on a retryable
    error it waits until the listener is back and sends the same batch again."""
    batches = numbered_batches(100_000, 1000, pad=250)  # a batch is larger than the buffer
    driver = UnixDriver(sock_path)
    retries = bounces = 0
    with anyio.fail_after(10):
        async with unix_stream_receiver(sock_path) as receiver, anyio.create_task_group() as tg:

            async def bounce(noticed: anyio.Event) -> None:
                nonlocal bounces
                await receiver.stop()
                await noticed.wait()  # the sender saw the listener gone
                receiver.start()
                bounces += 1

            noticed = anyio.Event()
            for i, batch in enumerate(batches):
                if i % 10 == 5:
                    noticed = anyio.Event()
                    tg.start_soon(bounce, noticed)
                while True:
                    try:
                        await driver.send(batch)
                        break
                    except RetryableDeliveryError:
                        retries += 1
                        noticed.set()
                        await receiver.started.wait()
            noticed.set()  # in case the last stop came after the last batch
            await receiver.started.wait()
            await driver.aclose()
            await receiver.stop()

    lines: list[bytes] = []
    fragments = 0
    for received in receiver.connections:
        complete, fragment = complete_lines(received)
        lines += complete
        fragments += fragment != b""  # cut off by a broken connection: a reader drops it
    numbers = Counter(json.loads(line)["n"] for line in lines)
    print(
        f"{bounces} restarts, {retries} retried sends, {len(receiver.connections)} connections, "
        f"{len(lines) - len(numbers)} duplicate events, {fragments} torn fragments dropped"
    )
    assert bounces == 10
    assert retries >= 10
    assert len(numbers) == 100_000
    assert sorted(numbers) == list(range(100_000))


def batch_of(*lines: bytes) -> Batch:
    batch = Batch()
    for line in lines:
        batch.append(line + b"\n")
    return batch


@pytest.mark.anyio
async def test_datagrams_one_event_each_with_a_full_queue_waited_for(sock_path: str) -> None:
    batches = numbered_batches(2000, 500)  # the receiver's queue holds ~10 datagrams
    with anyio.fail_after(5):
        async with unix_datagram_receiver(sock_path) as receiver:
            driver = UnixDriver(sock_path, datagram=True)
            for batch in batches:
                await driver.send(batch)
            await driver.send(batch_of(b""))  # an empty event is an empty datagram
            await driver.aclose()
            await receiver.stop()
    expected = [line for batch in batches for line in batch.lines()]
    assert receiver.datagrams == [*expected, b""]


@pytest.mark.anyio
async def test_an_oversize_datagram_is_permanent_and_named(sock_path: str) -> None:
    with anyio.fail_after(5):
        async with unix_datagram_receiver(sock_path) as receiver:
            driver = UnixDriver(sock_path, datagram=True)
            with pytest.raises(
                PermanentDeliveryError,
                match=r"send of event 1 \(300000 bytes\) failed: .*\(EMSGSIZE\)",
            ):
                await driver.send(batch_of(b"before", b"x" * 300_000, b"after"))
            await driver.send(batch_of(b"next"))  # the connection is still good
            await driver.aclose()
            await receiver.stop()
    assert receiver.datagrams == [b"before", b"next"]


@pytest.mark.anyio
async def test_a_retried_datagram_batch_resumes_where_it_failed(sock_path: str) -> None:
    """The receiver dies after 25 of 100 datagrams; the retry of that same batch sends
    the other 75 only, and a different batch afterwards is sent whole."""
    batch, other = numbered_batches(200, 100)
    with anyio.fail_after(5):
        async with unix_datagram_receiver(sock_path) as receiver:
            receiver.stop_after = 25
            driver = UnixDriver(sock_path, datagram=True)
            with pytest.raises(RetryableDeliveryError, match=r"send of event \d+ .*failed"):
                await driver.send(batch)
            assert 25 <= len(receiver.datagrams) < 100
            receiver.stop_after = None
            receiver.start()
            await driver.send(batch)
            await driver.send(other)
            await driver.aclose()
            await receiver.stop()
    assert receiver.datagrams == [*batch.lines(), *other.lines()]


@pytest.mark.anyio
async def test_a_failed_datagram_batch_does_not_skip_events_of_the_next_one(
    sock_path: str,
) -> None:
    """After a failure the retry loop may give up on the batch; the next batch, even one
    reusing the same object with new contents, starts from its first event."""
    batch = numbered_batches(100, 100)[0]
    with anyio.fail_after(5):
        async with unix_datagram_receiver(sock_path) as receiver:
            receiver.stop_after = 25
            driver = UnixDriver(sock_path, datagram=True)
            with pytest.raises(RetryableDeliveryError) as info:
                await driver.send(batch)
            assert info.value.retry_after is None  # alive: must not pin the buffer reused below
            first = len(receiver.datagrams)
            receiver.stop_after = None
            receiver.start()
            batch.data.clear()
            batch.ends.clear()
            for n in range(100, 200):
                batch.append(numbered_line(n))
            await driver.send(batch)
            await driver.aclose()
            await receiver.stop()
    assert receiver.datagrams[first:] == list(batch.lines())
