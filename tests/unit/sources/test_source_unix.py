"""The unix source over real sockets: the socket file's mode and owner, concurrent writers,
bad, oversized and truncated lines reported while good ones flow, stale and foreign files at
the path, and the path gone when the source stops."""

from __future__ import annotations

import io
import os
import socket
import stat
from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager
from pathlib import Path

import anyio
import anyio.abc
import pytest

from exporter.event import Event
from exporter.sources.lines import LineSplitter
from exporter.sources.unix import UnixSource, UnixSourceSettings
from tests.support.drivers import socket_dir
from tests.support.sources import Collector

pytestmark = pytest.mark.anyio


class ErrorLog(io.StringIO):
    """The error stream; wait_for(text) returns once a report holding ``text`` is written."""

    def __init__(self) -> None:
        super().__init__()
        self._waiting: list[tuple[str, anyio.Event]] = []

    def write(self, text: str) -> int:
        written = super().write(text)
        for needle, seen in self._waiting:
            if needle in self.getvalue():
                seen.set()
        return written

    async def wait_for(self, needle: str) -> None:
        if needle not in self.getvalue():
            seen = anyio.Event()
            self._waiting.append((needle, seen))
            await seen.wait()


def lexists(path: str) -> bool:
    try:
        os.lstat(path)
    except FileNotFoundError:
        return False
    return True


def line(writer: str, n: int) -> bytes:
    return b'{"event":"t","fields":{"writer":"%s","n":%d}}\n' % (writer.encode(), n)


def tab_line(writer: str, n: int) -> bytes:
    return b"event:t\tfield:writer=%s\tfield:n=%d\r\n" % (writer.encode(), n)


def seen(events: list[Event], writer: str) -> list[object]:
    return [e.fields["n"] for e in events if e.fields["writer"] == writer]


@pytest.fixture
def sock_path() -> Iterator[str]:
    with socket_dir() as directory:
        yield os.path.join(directory, "events.sock")


@asynccontextmanager
async def serving(
    path: str, **settings: int
) -> AsyncIterator[tuple[UnixSource, Collector, ErrorLog]]:
    """A source at ``path`` whose events land in a Collector; stopped (cancelled) at the end."""
    collector, errors = Collector(), ErrorLog()
    source = UnixSource(UnixSourceSettings(path, **settings), collector, errors)
    async with anyio.create_task_group() as tasks:
        await tasks.start(source.serve)
        yield source, collector, errors
        tasks.cancel_scope.cancel()


@pytest.mark.parametrize("mode", [0o600, 0o660])
async def test_the_socket_has_its_mode_whatever_the_umask(sock_path: str, mode: int) -> None:
    previous = os.umask(0o077)  # would strip 0660 to 0600 without the chmod
    try:
        with anyio.fail_after(10):
            kwargs = {} if mode == 0o600 else {"mode": mode}
            async with serving(sock_path, **kwargs) as (_, collector, _):
                found = os.lstat(sock_path)
                async with await anyio.connect_unix(sock_path) as client:
                    await client.send(line("a", 1))
                await collector.wait_for(1)
    finally:
        os.umask(previous)
    assert stat.S_ISSOCK(found.st_mode)
    assert stat.S_IMODE(found.st_mode) == mode
    assert not lexists(sock_path)


async def test_two_concurrent_writers_every_event_in_its_order(sock_path: str) -> None:
    per_writer = 200
    with anyio.fail_after(10):
        async with serving(sock_path) as (source, collector, errors):
            async with (
                await anyio.connect_unix(sock_path) as first,
                await anyio.connect_unix(sock_path) as second,
            ):
                a_bytes = b"".join(line("a", n) for n in range(per_writer))
                b_bytes = b"".join(tab_line("b", n) for n in range(per_writer))
                # interleaved, in pieces that cut lines anywhere
                for start in range(0, max(len(a_bytes), len(b_bytes)), 777):
                    await first.send(a_bytes[start : start + 777] or b"\n")
                    await second.send(b_bytes[start : start + 777] or b"\n")
                await collector.wait_for(2 * per_writer)
            assert source.counts.connections == 2
    assert seen(collector.events, "a") == list(range(per_writer))
    assert seen(collector.events, "b") == list(range(per_writer))
    assert source.counts.events == 2 * per_writer
    assert source.counts.rejected_lines == 0
    assert errors.getvalue() == ""


async def test_bad_oversized_and_truncated_lines_are_reported_and_skipped(
    sock_path: str,
) -> None:
    limit = 1000
    oversized = b'{"event":"t","fields":{"pad":"' + b"x" * (3 * limit) + b'"}}\n'
    with anyio.fail_after(10):
        async with serving(sock_path, max_line_bytes=limit) as (source, collector, errors):
            async with await anyio.connect_unix(sock_path) as bad:
                await bad.send(line("a", 0) + b"not an event\n" + line("a", 1))
                for start in range(0, len(oversized), 700):  # over several reads
                    await bad.send(oversized[start : start + 700])
                await bad.send(line("a", 2) + line("a", 3)[:20])  # then the writer dies
            await errors.wait_for("truncated")
            async with await anyio.connect_unix(sock_path) as good:  # others go on
                await good.send(line("b", 0))
                await collector.wait_for(4)
    assert seen(collector.events, "a") == [0, 1, 2]
    assert seen(collector.events, "b") == [0]
    report = errors.getvalue().splitlines()
    assert len(report) == 3
    assert report[0].startswith(f"event-exporter: unix source {sock_path}: connection 1, line 2:")
    assert "unknown item 'not an event'" in report[0]
    assert f"connection 1, line 4: {len(oversized) - 1} bytes, longer than {limit}" in report[1]
    assert "connection 1, line 6: truncated: the connection ended 20 bytes into" in report[2]
    assert (source.counts.events, source.counts.rejected_lines) == (4, 3)


def test_an_oversized_line_is_counted_not_held() -> None:
    lines = LineSplitter(max_line_bytes=100, sizes=True)
    fed: list[tuple[bytes | None, int]] = []
    for _ in range(50):  # 5000 bytes of one line, never more than 100 held
        assert lines.feed(b"y" * 100) == []
        assert lines.held_bytes <= 100
    got = lines.feed(b"z\r\nshort\r\n" + b"x" * 100 + b"\n" + b"x" * 101 + b"\nlast")
    fed += zip(got, lines.sizes, strict=True)
    assert fed == [(None, 5003), (b"short", 7), (b"x" * 100, 101), (None, 102)]
    assert lines.oversized == {0: 5002, 3: 101}  # their lengths before the newline
    assert (lines.pending_bytes, lines.pending_oversized) == (4, False)
    lines.feed(b"w" * 97)  # 101 bytes: over the limit while still unfinished
    assert (lines.held_bytes, lines.pending_bytes, lines.pending_oversized) == (0, 101, True)


async def test_a_stale_socket_file_is_replaced(sock_path: str) -> None:
    stale = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    stale.bind(sock_path)  # a previous run that died without cleaning up
    stale.close()
    with pytest.raises(ConnectionRefusedError), socket.socket(socket.AF_UNIX) as probe:
        probe.connect(sock_path)
    with anyio.fail_after(10):
        async with serving(sock_path) as (_, collector, _):
            async with await anyio.connect_unix(sock_path) as client:
                await client.send(line("a", 0))
            await collector.wait_for(1)
    assert not lexists(sock_path)


async def test_a_socket_someone_listens_on_is_left_alone(sock_path: str) -> None:
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as other:
        other.bind(sock_path)
        other.listen()
        source = UnixSource(UnixSourceSettings(sock_path), Collector(), ErrorLog())
        with anyio.fail_after(10), pytest.raises(OSError, match="another process listens"):
            await source.serve()
        with socket.socket(socket.AF_UNIX) as probe:  # the path still leads to the other
            probe.connect(sock_path)
            other.settimeout(5)
            accepted, _ = other.accept()
            accepted.close()


def occupy(path: str, kind: str) -> None:
    if kind == "file":
        Path(path).write_bytes(b"precious\n")
    elif kind == "directory":
        os.mkdir(path)
    else:
        os.symlink("/nonexistent-target", path)


def content(path: str) -> bytes:
    return Path(path).read_bytes()


@pytest.mark.parametrize("kind", ["file", "directory", "symlink"])
async def test_something_else_at_the_path_is_refused(sock_path: str, kind: str) -> None:
    occupy(sock_path, kind)
    source = UnixSource(UnixSourceSettings(sock_path), Collector(), ErrorLog())
    with anyio.fail_after(10), pytest.raises(FileExistsError) as raised:
        await source.serve()
    assert raised.value.strerror == f"{sock_path} exists and is not a socket: refusing to remove it"
    assert lexists(sock_path)
    if kind == "file":
        assert content(sock_path) == b"precious\n"


async def test_stopping_removes_the_path_even_with_a_writer_connected(sock_path: str) -> None:
    with anyio.fail_after(10):
        async with serving(sock_path) as (source, collector, _):
            client = await anyio.connect_unix(sock_path)
            await client.send(line("a", 0) + b'{"event":"t","fie')  # mid-line
            await collector.wait_for(1)
    try:
        assert not lexists(sock_path)
        assert source.counts.connections == 1
        with pytest.raises(anyio.EndOfStream):
            await client.receive()  # the source closed its end
    finally:
        await client.aclose()


async def test_a_later_run_s_socket_is_not_removed(sock_path: str) -> None:
    with (
        anyio.fail_after(10),
        socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as later,
    ):
        async with serving(sock_path):
            os.unlink(sock_path)  # an operator (or another run) took the path over
            later.bind(sock_path)
            theirs = os.lstat(sock_path).st_ino
        assert os.lstat(sock_path).st_ino == theirs


async def test_at_shutdown_the_rest_of_what_was_read_is_forced_in(sock_path: str) -> None:
    full, errors = Collector(block_at=3), ErrorLog()
    source = UnixSource(UnixSourceSettings(sock_path), full, errors)
    sent = b"".join(line("a", n) for n in range(6)) + b"bad\n" + line("a", 6) + line("a", 7)[:9]
    with anyio.fail_after(10):
        async with anyio.create_task_group() as tasks:
            await tasks.start(source.serve)
            async with await anyio.connect_unix(sock_path) as client:
                await client.send(sent)  # one read takes it all: the source runs after
                await full.blocked.wait()  # the 3rd event waits for room; then SIGTERM
                tasks.cancel_scope.cancel()
    assert seen(full.events, "a") == [0, 1, 2]  # the 3rd queued as emit was cancelled
    assert seen(full.forced, "a") == [3, 4, 5, 6]
    assert source.counts.events == 7
    assert "connection 1, line 7: " in errors.getvalue()
    assert "truncated" not in errors.getvalue()  # the writer did not die: we stopped


# -- a cap on connections, and a socket file nobody can swap -----------------------------


async def test_over_max_connections_a_new_connection_is_closed_at_once_and_reported(
    sock_path: str,
) -> None:
    """Before, every connection was served, with its own task and up to a line's buffer."""
    with anyio.fail_after(10):
        async with serving(sock_path, max_connections=2) as (source, collector, errors):
            first = await anyio.connect_unix(sock_path)
            second = await anyio.connect_unix(sock_path)
            await first.send(line("a", 0))
            await second.send(line("b", 0))
            await collector.wait_for(2)  # both are being served
            refused = []
            for _ in range(3):
                extra = await anyio.connect_unix(sock_path)
                refused.append(await _closed_by_the_source(extra))
            await first.aclose()
            for _ in range(500):  # nothing notifies the end of a connection: poll, bounded
                if source.open_connections == 1:
                    break
                await anyio.sleep(0.01)
            async with await anyio.connect_unix(sock_path) as later:
                await later.send(line("c", 0))
                await collector.wait_for(3)
            await second.aclose()
    assert refused == [True, True, True]
    assert source.counts.refused_connections == 3
    assert (source.counts.connections, source.counts.events) == (3, 3)
    report = errors.getvalue().splitlines()
    assert report == [
        f"event-exporter: unix source {sock_path}: 2 connections open (max_connections): "
        "new connections are closed at once"
    ]  # rate-limited: one line for the three


async def _closed_by_the_source(client: anyio.abc.SocketStream) -> bool:
    """Whether the source closed ``client`` without reading it (the end comes first)."""
    async with client:
        try:
            await client.receive()
        except (anyio.EndOfStream, anyio.BrokenResourceError):
            return True
    return False


@pytest.mark.parametrize(("umask", "mode"), [(0o022, 0o666), (0o077, 0o660), (0o000, 0o600)])
async def test_the_socket_has_exactly_its_mode_and_nothing_is_left_beside_it(
    sock_path: str, umask: int, mode: int
) -> None:
    previous = os.umask(umask)
    try:
        with anyio.fail_after(10):
            async with serving(sock_path, mode=mode) as (_, collector, _):
                found = os.lstat(sock_path)
                beside = os.listdir(os.path.dirname(sock_path))
                async with await anyio.connect_unix(sock_path) as client:
                    await client.send(line("a", 1))
                await collector.wait_for(1)
    finally:
        os.umask(previous)
    assert stat.S_ISSOCK(found.st_mode)
    assert stat.S_IMODE(found.st_mode) == mode
    assert beside == [os.path.basename(sock_path)]  # the private directory is gone


async def test_a_symlink_swapped_in_after_bind_is_never_followed(
    sock_path: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Someone who can write the directory replaces the path with a symlink to a victim
    the moment bind returns: before, the chmod after bind followed it to the victim."""
    victim = tmp_path / "victim"
    victim.write_bytes(b"precious\n")
    victim.chmod(0o644)
    real_bind = socket.socket.bind

    def bind_then_swap(sock: socket.socket, address: object) -> None:
        real_bind(sock, address)  # type: ignore[arg-type]
        if lexists(sock_path):
            os.unlink(sock_path)
        os.symlink(victim, sock_path)

    monkeypatch.setattr(socket.socket, "bind", bind_then_swap)
    with anyio.fail_after(10):
        async with serving(sock_path, mode=0o660) as (_, collector, _):
            monkeypatch.undo()
            assert stat.S_IMODE(victim.stat().st_mode) == 0o644  # not chmod'ed through the link
            found = os.lstat(sock_path)
            async with await anyio.connect_unix(sock_path) as client:
                await client.send(line("a", 1))
            await collector.wait_for(1)
    assert victim.read_bytes() == b"precious\n"
    assert stat.S_ISSOCK(found.st_mode)
    assert stat.S_IMODE(found.st_mode) == 0o660


async def test_a_path_near_the_length_limit_still_listens() -> None:
    """The private directory's path is longer than the socket's own; bind then goes
    through the directory's descriptor."""
    with socket_dir() as directory:
        deep = os.path.join(directory, "d" * (100 - len(directory) - 1))
        os.mkdir(deep)
        path = os.path.join(deep, "e.sock")
        assert len(path) == 107
        with anyio.fail_after(10):
            async with serving(path) as (_, collector, _):
                async with await anyio.connect_unix(path) as client:
                    await client.send(line("a", 1))
                await collector.wait_for(1)
        assert os.listdir(deep) == []


@pytest.mark.skipif(
    os.geteuid() != 0, reason="only root may give a socket to another user (chown to 65534)"
)
async def test_the_socket_has_its_owner_and_group_before_it_is_at_its_path(
    sock_path: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Given to nobody (65534) while still in the private directory: what is renamed
    into place already has them, and so has the socket at the path."""
    real_rename = os.rename
    renamed: list[os.stat_result] = []

    def rename(src: str, dst: str, *, src_dir_fd: int | None = None, **more: object) -> None:
        renamed.append(os.stat(src, dir_fd=src_dir_fd, follow_symlinks=False))
        real_rename(src, dst, src_dir_fd=src_dir_fd, **more)  # type: ignore[arg-type]

    monkeypatch.setattr(os, "rename", rename)
    with anyio.fail_after(10):
        async with serving(sock_path, mode=0o660, owner=65534, group=65534) as (_, collector, _):
            monkeypatch.undo()
            found = os.lstat(sock_path)
            async with await anyio.connect_unix(sock_path) as client:
                await client.send(line("a", 1))
            await collector.wait_for(1)
    assert [(s.st_uid, s.st_gid) for s in renamed] == [(65534, 65534)]
    assert stat.S_ISSOCK(found.st_mode)
    assert (found.st_uid, found.st_gid, stat.S_IMODE(found.st_mode)) == (65534, 65534, 0o660)
    assert not lexists(sock_path)


@pytest.mark.skipif(os.geteuid() != 0, reason="only root may give a socket to another user")
@pytest.mark.parametrize("given", ["owner", "group"])
async def test_one_of_owner_and_group_given_leaves_the_other_the_process_s(
    sock_path: str, given: str
) -> None:
    with anyio.fail_after(10):
        async with serving(sock_path, **{given: 65534}) as _:
            found = os.lstat(sock_path)
    expected = {"owner": (65534, os.getegid()), "group": (os.geteuid(), 65534)}[given]
    assert (found.st_uid, found.st_gid) == expected


async def test_a_chown_refused_says_so_and_leaves_nothing_at_the_path(
    sock_path: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    def chown(*args: object, **kwargs: object) -> None:
        raise PermissionError(1, "Operation not permitted")

    monkeypatch.setattr(os, "chown", chown)
    source = UnixSource(UnixSourceSettings(sock_path, owner=65534), Collector(), ErrorLog())
    with anyio.fail_after(10), pytest.raises(PermissionError) as refused:
        await source.serve()
    assert refused.value.strerror == (
        f"cannot listen on {sock_path}: cannot give the socket to owner 65534: "
        "Operation not permitted"
    )
    assert os.listdir(os.path.dirname(sock_path)) == []
