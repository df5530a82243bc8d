"""Files are ours or refused: every path the program writes, with a symlink at it (the
victim file unchanged), a FIFO at it (refused at once, never waited on), and the mode of
what it creates under umask 022 and 000.

The paths: the ``file:`` destination, the dead-letter file, the tail source's state file
and its temporary, a spool and its -wal and -shm, the ``--output`` of ``export`` and of
``spool export``. A FIFO is planted with a guard (tests/file_helpers.py) that releases
whoever waits on it, so a regression fails here instead of hanging the run.
"""

from __future__ import annotations

import errno
import fcntl
import io
import os
import socket
import sqlite3
import subprocess
import sys
import threading
from collections.abc import Callable
from functools import partial
from pathlib import Path
from typing import TypeVar

import anyio
import orjson
import pytest

from drivers.base import Batch
from drivers.file import FileDriver
from exporter.cli import main
from exporter.delivery.deadletter import DeadLetterFile, DeadLetterResult
from exporter.delivery.spool import SpoolQueue
from exporter.errors import PermanentDeliveryError, UsageError
from exporter.files import (
    RefusedFileError,
    create_beside,
    open_output,
    open_regular,
    replace_file,
)
from exporter.sources.tail import TailSource, TailSourceSettings
from tests.support.files import VICTIM_TEXT, mode_of, plant_symlink, planted_fifo, umask
from tests.support.samples import EVENTS_FILE
from tests.support.sources import Collector

T = TypeVar("T")
APPEND = os.O_WRONLY | os.O_APPEND | os.O_CREAT
MASKS = pytest.mark.parametrize("mask", [0o022, 0o000], ids=["umask022", "umask000"])


def within(seconds: float, call: Callable[[], T]) -> T:
    """``call()`` in a thread of its own; the test fails if it has not returned after
    ``seconds`` (it waits on something: a FIFO), instead of hanging."""
    outcome: list[T] = []
    failure: list[BaseException] = []

    def run() -> None:
        try:
            outcome.append(call())
        except BaseException as exc:  # handed to the test's thread
            failure.append(exc)

    thread = threading.Thread(target=run, name="within", daemon=True)
    thread.start()
    thread.join(seconds)
    assert not thread.is_alive(), f"still waiting after {seconds} s"
    if failure:
        raise failure[0]
    return outcome[0]


def _line(n: int) -> bytes:
    return b'{"event":"t","fields":{"n":%d}}\n' % n


# -- the helper ----------------------------------------------------------------------------


def test_a_symlink_is_refused_and_its_victim_left_as_it_was(tmp_path: Path) -> None:
    link, victim = tmp_path / "out", tmp_path / "victim"
    plant_symlink(link, victim)
    with pytest.raises(RefusedFileError, match="symlink, which is not followed") as caught:
        open_regular(link, APPEND)
    assert caught.value.errno == errno.ELOOP
    with pytest.raises(RefusedFileError, match="symlink"):
        open_output(link)
    assert victim.read_bytes() == VICTIM_TEXT


@pytest.mark.parametrize("reader", [False, True], ids=["no-reader", "a-reader"])
def test_a_fifo_is_refused_at_once_with_or_without_a_reader(tmp_path: Path, reader: bool) -> None:
    path = tmp_path / "fifo"
    with planted_fifo(path) as guard:
        held = os.open(path, os.O_RDONLY | os.O_NONBLOCK) if reader else None
        try:
            for flags in (APPEND, os.O_RDONLY):
                with pytest.raises(RefusedFileError, match="it is a FIFO, not a regular file"):
                    within(5, partial(open_regular, path, flags))
            if held is not None:
                assert os.read(held, 64) == b""  # nothing was written into it
        finally:
            if held is not None:
                os.close(held)
    assert not guard.waited_on


def test_sockets_devices_and_directories_are_refused(tmp_path: Path) -> None:
    sock_path = tmp_path / "sock"
    with socket.socket(socket.AF_UNIX) as listening:
        listening.bind(str(sock_path))
        with pytest.raises(RefusedFileError, match="it is a socket"):
            open_regular(sock_path, APPEND)
    with pytest.raises(RefusedFileError, match="it is a character device"):
        open_regular(os.devnull, APPEND)
    for flags in (APPEND, os.O_RDONLY):
        with pytest.raises(RefusedFileError, match="it is a directory") as caught:
            open_regular(tmp_path, flags)
        assert caught.value.errno == errno.EISDIR


@MASKS
def test_a_created_file_is_0600_and_left_blocking(tmp_path: Path, mask: int) -> None:
    path = tmp_path / "new"
    with umask(mask):
        fd = open_regular(path, APPEND)
    try:
        assert not fcntl.fcntl(fd, fcntl.F_GETFL) & os.O_NONBLOCK
    finally:
        os.close(fd)
    assert mode_of(path) == 0o600


def test_open_output_empties_a_regular_file_only(tmp_path: Path) -> None:
    regular = tmp_path / "out"
    regular.write_bytes(b"old")
    os.close(open_output(regular))
    assert regular.read_bytes() == b""
    with planted_fifo(tmp_path / "fifo") as guard, pytest.raises(RefusedFileError, match="FIFO"):
        within(5, lambda: open_output(tmp_path / "fifo"))
    assert not guard.waited_on


def test_replace_file_writes_beside_and_refuses_a_target_that_is_not_a_file(
    tmp_path: Path,
) -> None:
    target, victim = tmp_path / "state", tmp_path / "victim"
    with umask(0):
        replace_file(str(target), b"one\n")
    assert target.read_bytes() == b"one\n"
    assert mode_of(target) == 0o600
    target.unlink()
    plant_symlink(target, victim)
    with pytest.raises(RefusedFileError, match="symlink"):
        replace_file(str(target), b"two\n")
    assert victim.read_bytes() == VICTIM_TEXT
    assert target.is_symlink()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["state", "victim"]  # no temporary


def test_temporaries_are_created_exclusively_under_names_of_their_own(tmp_path: Path) -> None:
    target = str(tmp_path / "state")
    first, first_name = create_beside(target)
    second, second_name = create_beside(target)
    os.close(first)
    os.close(second)
    assert first_name != second_name
    assert all(Path(name).parent == tmp_path for name in (first_name, second_name))


# -- the file destination --------------------------------------------------------------------


def _batch() -> Batch:
    batch = Batch()
    batch.append(_line(1))
    return batch


@pytest.mark.anyio
@pytest.mark.parametrize("reader", [False, True], ids=["no-reader", "a-reader"])
async def test_file_destination_refuses_a_fifo_at_once(tmp_path: Path, reader: bool) -> None:
    path = tmp_path / "events.log"
    with planted_fifo(path) as guard:
        held = os.open(path, os.O_RDONLY | os.O_NONBLOCK) if reader else None
        try:
            driver = FileDriver(path)
            with anyio.fail_after(10), pytest.raises(PermanentDeliveryError, match="FIFO"):
                await driver.send(_batch())
            await driver.aclose()
        finally:
            if held is not None:
                os.close(held)
    assert not guard.waited_on


@pytest.mark.anyio
@MASKS
async def test_file_destination_creates_its_file_with_its_mode(tmp_path: Path, mask: int) -> None:
    for mode in (0o600, 0o640):
        path = tmp_path / f"events-{mode:o}.log"
        with umask(mask), anyio.fail_after(10):
            driver = FileDriver(path, mode=mode)
            await driver.send(_batch())
            await driver.aclose()
        assert mode_of(path) == mode


# -- the dead-letter file --------------------------------------------------------------------


def _dead_letter(dead: DeadLetterFile, count: int = 3) -> DeadLetterResult:
    return dead.write(
        [_line(n)[:-1] for n in range(count)], destination="d", reason="r", attempts=1
    )


def test_dead_letter_file_refuses_a_symlink_or_fifo_at_start(tmp_path: Path) -> None:
    link, victim = tmp_path / "dead", tmp_path / "victim"
    plant_symlink(link, victim)
    with pytest.raises(UsageError, match=f"dead-letter file {link}: it is a symlink"):
        DeadLetterFile(link)
    with planted_fifo(tmp_path / "fifo") as guard, pytest.raises(UsageError, match="a FIFO"):
        DeadLetterFile(tmp_path / "fifo")
    assert not guard.waited_on
    assert victim.read_bytes() == VICTIM_TEXT


def test_dead_letter_write_refuses_a_symlink_planted_later(tmp_path: Path) -> None:
    path, victim = tmp_path / "dead", tmp_path / "victim"
    dead = DeadLetterFile(path)
    plant_symlink(path, victim)
    result = _dead_letter(dead)
    assert (result.failed, result.written) == (3, 0)
    assert isinstance(result.error, RefusedFileError)
    assert victim.read_bytes() == VICTIM_TEXT


@pytest.mark.parametrize("reader", [False, True], ids=["no-reader", "a-reader"])
def test_dead_letter_write_refuses_a_fifo_planted_later_at_once(
    tmp_path: Path, reader: bool
) -> None:
    path = tmp_path / "dead"
    dead = DeadLetterFile(path)
    with planted_fifo(path) as guard:
        held = os.open(path, os.O_RDONLY | os.O_NONBLOCK) if reader else None
        try:
            result = within(5, lambda: _dead_letter(dead))
        finally:
            if held is not None:
                os.close(held)
    assert not guard.waited_on
    assert result.failed == 3
    assert "FIFO" in str(result.error)


@MASKS
def test_dead_letter_file_is_created_0600(tmp_path: Path, mask: int) -> None:
    path = tmp_path / "dead"
    with umask(mask):
        _dead_letter(DeadLetterFile(path))
    assert mode_of(path) == 0o600


# -- the tail source's state file ------------------------------------------------------------


def _tail(log: Path, state: Path, collector: Collector, errors: io.StringIO) -> TailSource:
    settings = TailSourceSettings(str(log), state_file=str(state), poll_interval=0.01)
    return TailSource(settings, collector, errors)


@pytest.mark.anyio
async def test_a_state_file_that_is_a_symlink_or_fifo_stops_the_source_at_once(
    tmp_path: Path,
) -> None:
    log, state, victim = tmp_path / "events.log", tmp_path / "state", tmp_path / "victim"
    log.write_bytes(_line(1))
    plant_symlink(state, victim, b'{"path":"elsewhere"}\n')
    with anyio.fail_after(10), pytest.raises(OSError, match="cannot read .*symlink"):
        await _tail(log, state, Collector(), io.StringIO()).serve()
    assert victim.read_bytes() == b'{"path":"elsewhere"}\n'
    state.unlink()
    with (
        planted_fifo(state) as guard,
        anyio.fail_after(10),
        pytest.raises(OSError, match="cannot read .*FIFO"),
    ):
        await _tail(log, state, Collector(), io.StringIO()).serve()
    assert not guard.waited_on


@pytest.mark.anyio
@MASKS
async def test_the_state_is_written_beside_and_a_symlink_at_the_old_temporary_is_left_alone(
    tmp_path: Path, mask: int
) -> None:
    """The temporary was ``state.tmp``, opened with O_TRUNC through whatever was there."""
    log, state, victim = tmp_path / "events.log", tmp_path / "state", tmp_path / "victim"
    log.write_bytes(_line(1) + _line(2))
    plant_symlink(tmp_path / "state.tmp", victim)
    collector = Collector()
    with umask(mask), anyio.fail_after(10):
        async with anyio.create_task_group() as tasks:
            await tasks.start(_tail(log, state, collector, io.StringIO()).serve)
            await collector.wait_for(2)
            tasks.cancel_scope.cancel()
    assert victim.read_bytes() == VICTIM_TEXT
    assert (tmp_path / "state.tmp").is_symlink()
    assert not state.is_symlink()
    assert mode_of(state) == 0o600
    assert orjson.loads(state.read_bytes())["offset"] == log.stat().st_size
    assert sorted(os.listdir(tmp_path)) == ["events.log", "state", "state.tmp", "victim"]


@pytest.mark.anyio
@pytest.mark.parametrize("kind", ["symlink", "fifo"])
async def test_a_symlink_or_fifo_put_at_the_state_file_later_is_refused_not_replaced(
    tmp_path: Path, kind: str
) -> None:
    log, state, victim = tmp_path / "events.log", tmp_path / "state", tmp_path / "victim"
    log.write_bytes(_line(1))
    collector, errors = Collector(), io.StringIO()
    with anyio.fail_after(10):
        async with anyio.create_task_group() as tasks:
            await tasks.start(_tail(log, state, collector, errors).serve)
            await collector.wait_for(1)
            state.unlink()
            if kind == "symlink":
                plant_symlink(state, victim)
            else:
                os.mkfifo(state)
            with log.open("ab") as appending:
                appending.write(_line(2))
            await collector.wait_for(2)
            tasks.cancel_scope.cancel()
    assert f"cannot save the position to {state}: it is a" in errors.getvalue()
    assert state.is_symlink() if kind == "symlink" else not state.is_file()
    if kind == "symlink":
        assert victim.read_bytes() == VICTIM_TEXT


# -- the spool and its -wal and -shm ---------------------------------------------------------


def _spool(path: Path) -> SpoolQueue:
    return SpoolQueue(str(path), 1000, 1 << 20, "block", lambda reason, count: None)


@pytest.mark.parametrize("suffix", ["", "-wal", "-shm"])
def test_a_symlink_at_the_spool_or_its_side_files_is_refused(tmp_path: Path, suffix: str) -> None:
    """An empty victim is what SQLite would have turned into a database."""
    path, victim = tmp_path / "spool.db", tmp_path / "victim"
    if suffix:
        _spool(path).shut()  # a spool that is there, its side files gone at its close
    plant_symlink(Path(f"{path}{suffix}"), victim, b"")
    with pytest.raises(UsageError, match=f"spool {path}{suffix}: it is a symlink"):
        _spool(path)
    assert victim.read_bytes() == b""
    assert not list(tmp_path.glob("*.corrupt-*"))  # refused, not taken for a broken spool


@pytest.mark.parametrize("suffix", ["", "-wal", "-shm"])
def test_a_fifo_at_the_spool_or_its_side_files_is_refused_at_once(
    tmp_path: Path, suffix: str
) -> None:
    path = tmp_path / "spool.db"
    if suffix:
        _spool(path).shut()
    with (
        planted_fifo(Path(f"{path}{suffix}")) as guard,
        pytest.raises(UsageError, match=f"spool {path}{suffix}: it is a FIFO"),
    ):
        within(5, lambda: _spool(path))
    assert not guard.waited_on


@MASKS
def test_the_spool_and_its_side_files_are_created_0600(tmp_path: Path, mask: int) -> None:
    path = tmp_path / "spool.db"
    with umask(mask):
        spool = _spool(path)
        try:
            spool.offer(_line(1))
            spool.commit()
            modes = {name: mode_of(Path(f"{path}{name}")) for name in ("", "-wal", "-shm")}
        finally:
            spool.shut()
    assert modes == {"": 0o600, "-wal": 0o600, "-shm": 0o600}


def test_spool_stats_and_export_refuse_a_symlinked_shm(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """A read-only connection still writes the -shm: SQLite would write the victim."""
    path, victim = tmp_path / "spool.db", tmp_path / "victim"
    _spool(path).shut()
    plant_symlink(Path(f"{path}-shm"), victim)
    for action in ("stats", "export"):
        assert main(["spool", action, str(path)]) == 2
        assert f"cannot read spool {path}-shm: it is a symlink" in capsys.readouterr().err
    assert victim.read_bytes() == VICTIM_TEXT


# -- --output of export and of spool export --------------------------------------------------


def _spool_with_events(path: Path) -> None:
    spool = _spool(path)
    spool.offer(_line(1))
    spool.commit()
    spool.shut()


def _commands(tmp_path: Path) -> dict[str, list[str]]:
    """Each command writing ``--output``, without its output path."""
    spool = tmp_path / "spool.db"
    if not spool.exists():
        _spool_with_events(spool)
    return {"export": ["export", str(EVENTS_FILE)], "spool export": ["spool", "export", str(spool)]}


@pytest.mark.parametrize("command", ["export", "spool export"])
def test_output_refuses_a_symlink_and_truncates_no_victim(
    tmp_path: Path, command: str, capsys: pytest.CaptureFixture[str]
) -> None:
    out, victim = tmp_path / "out", tmp_path / "victim"
    plant_symlink(out, victim)
    assert main([*_commands(tmp_path)[command], "--output", str(out)]) == 2
    assert f"cannot write {out}: it is a symlink" in capsys.readouterr().err
    assert victim.read_bytes() == VICTIM_TEXT


@pytest.mark.parametrize("command", ["export", "spool export"])
def test_output_refuses_a_fifo_at_once(
    tmp_path: Path, command: str, capsys: pytest.CaptureFixture[str]
) -> None:
    args = _commands(tmp_path)[command]
    with planted_fifo(tmp_path / "out") as guard:
        assert within(10, lambda: main([*args, "--output", str(tmp_path / "out")])) == 2
    assert not guard.waited_on
    assert "it is a FIFO, not a regular file" in capsys.readouterr().err


@MASKS
@pytest.mark.parametrize("command", ["export", "spool export"])
def test_output_is_created_0600(tmp_path: Path, command: str, mask: int) -> None:
    args = _commands(tmp_path)[command]
    with umask(mask):
        assert main([*args, "--output", str(tmp_path / "out")]) == 0
    assert mode_of(tmp_path / "out") == 0o600
    assert (tmp_path / "out").read_bytes().count(b"\n") >= 1


@pytest.mark.parametrize("command", ["export", "spool export"])
@pytest.mark.parametrize("name", ["-", "/dev/stdout"])
def test_output_dash_and_dev_stdout_are_standard_output(
    tmp_path: Path, command: str, name: str
) -> None:
    args = _commands(tmp_path)[command]
    done = subprocess.run(
        [sys.executable, "-m", "exporter", *args, "--output", name],
        capture_output=True,
        cwd=tmp_path,
        timeout=60,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout.count(b"\n") >= 1
    assert not (tmp_path / "-").exists()


def test_spool_export_reads_a_spool_whose_name_has_uri_characters(tmp_path: Path) -> None:
    path = tmp_path / "spool?mode=rwc#1.db"
    _spool_with_events(path)
    assert main(["spool", "export", str(path), "--output", str(tmp_path / "out")]) == 0
    assert (tmp_path / "out").read_bytes() == _line(1)
    with sqlite3.connect(path) as db:  # untouched: still the spool it was
        assert db.execute("SELECT count(*) FROM chunks").fetchone() == (1,)
