"""The file driver: creation, symlinks, rotation, fsync policies, failed writes undone."""

from __future__ import annotations

import errno
import os
import queue
import re
import stat
from collections import Counter
from functools import partial
from pathlib import Path

import anyio
import anyio.from_thread
import anyio.to_thread
import pytest

import drivers.file
from drivers.base import Batch
from drivers.file import FileDriver, FsyncPolicy
from exporter.errors import PermanentDeliveryError, RetryableDeliveryError
from tests.support.drivers import numbered_batches, numbered_line


class FakeClock:
    """Stands in for drivers.file.monotonic: the tests decide when time passes."""

    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


@pytest.fixture
def clock(monkeypatch: pytest.MonkeyPatch) -> FakeClock:
    fake = FakeClock()
    monkeypatch.setattr(drivers.file, "monotonic", fake)
    return fake


@pytest.fixture
def fsyncs(monkeypatch: pytest.MonkeyPatch) -> list[int]:
    """Every fsync the driver does, recorded instead of done."""
    calls: list[int] = []
    monkeypatch.setattr(os, "fsync", calls.append)
    return calls


def batch_of(*numbers: int) -> Batch:
    batch = Batch()
    for n in numbers:
        batch.append(numbered_line(n))
    return batch


def lines_of(*numbers: int) -> bytes:
    return b"".join(numbered_line(n) for n in numbers)


@pytest.mark.anyio
async def test_created_lazily_with_mode_0600_and_an_existing_file_keeps_its_mode(
    tmp_path: Path,
) -> None:
    created, existing = tmp_path / "new.log", tmp_path / "old.log"
    existing.write_bytes(b"before\n")
    existing.chmod(0o644)
    with anyio.fail_after(5):
        for path in (created, existing):
            driver = FileDriver(path)
            assert driver.name == f"file:{path}"
            assert path == existing or not path.exists()
            await driver.send(batch_of(1))
            await driver.aclose()
    assert stat.S_IMODE(created.stat().st_mode) == 0o600
    assert stat.S_IMODE(existing.stat().st_mode) == 0o644
    assert existing.read_bytes() == b"before\n" + lines_of(1)


@pytest.mark.anyio
async def test_a_symlink_is_refused_permanently(tmp_path: Path) -> None:
    target, link = tmp_path / "target.log", tmp_path / "events.log"
    target.write_bytes(b"")
    link.symlink_to(target)
    driver = FileDriver(link)
    with anyio.fail_after(5), pytest.raises(PermanentDeliveryError, match="symlink.*ELOOP"):
        await driver.send(batch_of(1))
    assert target.read_bytes() == b""


@pytest.mark.anyio
async def test_reopen_after_a_rename_writes_to_a_new_file(tmp_path: Path) -> None:
    path, rotated = tmp_path / "events.log", tmp_path / "events.log.1"
    driver = FileDriver(path, reopen_check_interval=3600)
    with anyio.fail_after(5):
        await driver.send(batch_of(1))
        path.rename(rotated)
        await driver.send(batch_of(2))  # no check due yet: still the open (renamed) file
        await driver.reopen()
        await driver.send(batch_of(3))
        await driver.aclose()
    assert rotated.read_bytes() == lines_of(1, 2)
    assert path.read_bytes() == lines_of(3)


@pytest.mark.anyio
async def test_a_rename_is_noticed_at_most_every_check_interval(
    tmp_path: Path, clock: FakeClock
) -> None:
    path, rotated = tmp_path / "events.log", tmp_path / "events.log.1"
    driver = FileDriver(path, reopen_check_interval=0.25)
    with anyio.fail_after(5):
        await driver.send(batch_of(1))
        path.rename(rotated)
        clock.now += 0.125
        await driver.send(batch_of(2))  # not checked yet: goes where 1 went, kept
        clock.now += 0.125
        await driver.send(batch_of(3))
        await driver.aclose()
    assert rotated.read_bytes() == lines_of(1, 2)
    assert path.read_bytes() == lines_of(3)


@pytest.mark.anyio
async def test_a_file_created_in_place_of_the_renamed_one_is_noticed(tmp_path: Path) -> None:
    """logrotate's ``create``: rename, then a new empty file at the path."""
    path, rotated = tmp_path / "events.log", tmp_path / "events.log.1"
    driver = FileDriver(path, reopen_check_interval=0)
    with anyio.fail_after(5):
        await driver.send(batch_of(1))
        path.rename(rotated)
        path.touch(mode=0o640)
        await driver.send(batch_of(2))
        await driver.aclose()
    assert rotated.read_bytes() == lines_of(1)
    assert path.read_bytes() == lines_of(2)


@pytest.mark.anyio
async def test_a_deleted_file_is_created_again(tmp_path: Path) -> None:
    path = tmp_path / "events.log"
    driver = FileDriver(path, reopen_check_interval=0)
    with anyio.fail_after(5):
        await driver.send(batch_of(1))
        path.unlink()
        await driver.send(batch_of(2))
        await driver.aclose()
    assert path.read_bytes() == lines_of(2)


@pytest.mark.anyio
@pytest.mark.parametrize(
    ("policy", "fsyncs_after_each_send", "fsyncs_at_flush"),
    [("none", [0, 0, 0], 1), ("batch", [1, 2, 3], 0)],
)
async def test_fsync_none_and_batch(
    tmp_path: Path,
    fsyncs: list[int],
    policy: FsyncPolicy,
    fsyncs_after_each_send: list[int],
    fsyncs_at_flush: int,
) -> None:
    driver = FileDriver(tmp_path / "events.log", fsync=policy)
    with anyio.fail_after(5):
        await driver.flush()  # before any write: nothing to sync
        assert fsyncs == []
        for n, expected in enumerate(fsyncs_after_each_send):
            await driver.send(batch_of(n))
            assert len(fsyncs) == expected
        await driver.flush()
        await driver.flush()
        assert len(fsyncs) == fsyncs_after_each_send[-1] + fsyncs_at_flush
        await driver.aclose()
    assert len(fsyncs) == fsyncs_after_each_send[-1] + fsyncs_at_flush


@pytest.mark.anyio
async def test_fsync_interval(tmp_path: Path, fsyncs: list[int], clock: FakeClock) -> None:
    driver = FileDriver(tmp_path / "events.log", fsync="interval", fsync_interval=1.0)
    with anyio.fail_after(5):
        for step, expected in [(0, 0), (0.5, 0), (0.5, 1), (0.5, 1), (0.25, 1), (0.25, 2)]:
            clock.now += step
            await driver.send(batch_of(1))
            assert len(fsyncs) == expected
        await driver.flush()
        await driver.flush()
        assert len(fsyncs) == 2  # the last batch was synced by the send
        clock.now += 0.125
        await driver.send(batch_of(2))
        await driver.aclose()  # the interval's promise covers the tail too
    assert len(fsyncs) == 3


@pytest.mark.anyio
async def test_reopen_fsyncs_what_the_interval_has_not_yet(
    tmp_path: Path, fsyncs: list[int], clock: FakeClock
) -> None:
    driver = FileDriver(tmp_path / "events.log", fsync="interval")
    with anyio.fail_after(5):
        await driver.send(batch_of(1))
        await driver.reopen()
        assert len(fsyncs) == 1
        await driver.reopen()
        await driver.aclose()
    assert len(fsyncs) == 1


@pytest.mark.anyio
@pytest.mark.parametrize("failing", ["write", "fsync"])
async def test_a_failed_write_leaves_no_partial_batch_and_the_retry_writes_it_once(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, failing: str
) -> None:
    path = tmp_path / "events.log"
    driver = FileDriver(path, fsync="batch")
    batches = numbered_batches(3000, 1000)
    real_write, real_fsync = os.write, os.fsync
    faults = 0

    def write_half_then_enospc(fd: int, data: bytes) -> int:
        nonlocal faults
        if len(data) < 10_000:  # not the driver's batch
            return real_write(fd, data)
        if faults == 0:
            faults = 1
            return real_write(fd, memoryview(data)[: len(data) // 2])
        if faults == 1:
            faults = 2
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
        return real_write(fd, data)

    def fsync_eio(fd: int) -> None:
        nonlocal faults
        if faults == 0:
            faults = 2
            raise OSError(errno.EIO, os.strerror(errno.EIO))
        real_fsync(fd)

    with anyio.fail_after(5):
        await driver.send(batches[0])
        if failing == "write":
            monkeypatch.setattr(os, "write", write_half_then_enospc)
            match = r"write failed: No space left on device \(ENOSPC\)"
        else:
            monkeypatch.setattr(os, "fsync", fsync_eio)
            match = r"fsync failed: Input/output error \(EIO\)"
        with pytest.raises(RetryableDeliveryError, match=match) as info:
            await driver.send(batches[1])
        assert faults == 2
        assert info.value.retry_after is None
        # The error, still alive, must not pin the batch's buffer (a memoryview in its
        # traceback): the caller may reuse the bytearray.
        batches[1].data.append(0)
        batches[1].data.pop()
        assert path.read_bytes() == bytes(batches[0].data)
        await driver.send(batches[1])  # the retry loop's second attempt
        await driver.send(batches[2])
        await driver.aclose()
    assert path.read_bytes() == b"".join(bytes(b.data) for b in batches)


LINE = re.compile(rb'\{"n":(\d+),"pad":"x{40}"\}')


@pytest.mark.anyio
@pytest.mark.parametrize("style", ["reopen-after-rename", "automatic-check"])
async def test_rotation_under_load_keeps_every_line_once_and_whole(
    tmp_path: Path, style: str
) -> None:
    """100,000 numbered lines in batches of 1,000, while a thread renames the file 20
    times (and calls reopen() after each, SIGHUP style, or leaves it to the check).
    Every other time it creates the new file itself, as logrotate's ``create`` does."""
    path = tmp_path / "events.log"
    sighup = style == "reopen-after-rename"
    driver = FileDriver(path, reopen_check_interval=3600 if sighup else 0)
    batches = numbered_batches(100_000, 1000)
    renames = 20
    requests: queue.Queue[anyio.Event] = queue.Queue()

    def rotate() -> None:
        for k in range(renames):
            done = requests.get(timeout=10)
            os.rename(path, f"{path}.{k}")
            if k % 2:
                os.close(os.open(path, os.O_WRONLY | os.O_CREAT, 0o640))
            if sighup:
                anyio.from_thread.run(driver.reopen)
            anyio.from_thread.run_sync(done.set)

    with anyio.fail_after(10):
        async with anyio.create_task_group() as tg:
            tg.start_soon(partial(anyio.to_thread.run_sync, rotate, abandon_on_cancel=True))
            rotated = anyio.Event()
            rotated.set()
            # Per 5 batches: wait for the previous rename, write 3 batches (so the file
            # exists again), ask for a rename, which then races with the next 2 writes.
            for i, batch in enumerate(batches):
                if i % 5 == 0:
                    await rotated.wait()
                await driver.send(batch)
                if i % 5 == 2:
                    rotated = anyio.Event()
                    requests.put(rotated)
            await rotated.wait()
        await driver.aclose()

    # In rotation order; the last rename may come after the last write (no new file).
    files = [*(Path(f"{path}.{k}") for k in range(renames)), *([path] if path.exists() else [])]
    numbers: list[int] = []
    for file in files:
        data = file.read_bytes()
        assert data.endswith(b"\n") or file == path, f"{file.name} is empty or torn"
        for line in data.splitlines():
            match = LINE.fullmatch(line)
            assert match, f"not a whole line in {file.name}: {line[:80]!r}"
            numbers.append(int(match[1]))
    counts = Counter(numbers)
    assert len(counts) == 100_000, f"{100_000 - len(counts)} lines lost"
    assert len(numbers) == 100_000, f"{len(numbers) - 100_000} lines duplicated"
    # Each rotated file took up where the one before it stopped: nothing went to a stale one.
    assert numbers == sorted(numbers)
