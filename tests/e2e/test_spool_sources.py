"""SIGKILL at random points while the ``file`` and ``unix`` sources feed an exporter's disk
spool, which posts to a flaky receiver. What a source has taken (the file: its saved
position; the unix socket: its events counter) is on disk at the kill and delivered after
a restart: nothing taken is lost."""

from __future__ import annotations

import contextlib
import random
import re
import signal
import socket
import threading
import time
from collections import Counter
from pathlib import Path

import httpx
import orjson

from exporter.cli import main
from tests.support.config import numbered_lines
from tests.support.drivers import socket_dir
from tests.support.http_receiver import Receiver
from tests.support.processes import Child, event_number, exporter_child, wait_until
from tests.support.spool import FLAKY, spooled_daemon_config

KILLS = 5
TOTAL = 60_000
SIZE = len(numbered_lines([0], digits=7, hostname="h"))
METRICS = re.compile(rb"metrics on (http://127\.0\.0\.1:\d+/metrics)")
TAKEN = re.compile(rb'^event_exporter_source_events_total\{source="in"\} (\d+)$', re.M)


def _lines(first: int, stop: int) -> bytes:
    return numbered_lines(range(first, stop), digits=7, hostname="h")


def _received(receiver: Receiver) -> Counter[int]:
    return Counter(event_number(line) for line in receiver.events())


def _spooled(tmp_path: Path) -> set[int]:
    """What the spool holds (``spool export``, read-only), what a restart sends again."""
    out, spool = tmp_path / "spooled.ndjson", tmp_path / "spool.db"
    if not spool.exists():
        return set()
    assert main(["spool", "export", str(spool), "--output", str(out)]) == 0
    return {event_number(line) for line in out.read_bytes().splitlines()}


def _started(child: Child, what: bytes) -> None:
    assert wait_until(lambda: what in bytes(child.stderr), timeout=10), bytes(child.stderr)


def _stop(child: Child, receiver: Receiver) -> None:
    """The last life: let it deliver everything, then SIGTERM: a clean exit."""
    assert wait_until(lambda: len(_received(receiver)) >= TOTAL, timeout=15)
    child.proc.send_signal(signal.SIGTERM)
    assert child.wait(timeout=10) == 0, bytes(child.stderr)


def _kill(child: Child) -> None:
    child.proc.send_signal(signal.SIGKILL)
    assert child.wait(timeout=10) == -signal.SIGKILL


def _everything_once_or_more(what: str, received: Counter[int], tmp_path: Path) -> int:
    """Every event arrived, at most once more per kill; the copies beyond the first."""
    assert set(received) == set(range(TOTAL)), f"lost: {len(set(range(TOTAL)) - set(received))}"
    assert max(received.values()) <= KILLS + 1
    assert not (tmp_path / "dead.ndjson").exists()
    duplicates = sum(received.values()) - len(received)
    print(f"{what}: {sum(received.values())} received, {duplicates} duplicates")
    return duplicates


# -- file --------------------------------------------------------------------------------


def _saved_offset(state: Path) -> int:
    """The position the file source saved (0 before its first save)."""
    if not state.exists():
        return 0
    offset = orjson.loads(state.read_bytes())["offset"]
    assert isinstance(offset, int)
    return offset


def _kill_file_life(
    child: Child, rng: random.Random, state: Path, receiver: Receiver, stop: int
) -> None:
    """SIGKILL once the saved position passed a random point (while reading) or the
    receiver has a random number of events (while delivering)."""
    if rng.random() < 0.5:
        point = rng.randint(_saved_offset(state), stop * SIZE)
        assert wait_until(lambda: _saved_offset(state) >= point, timeout=15)
    else:
        point = rng.randint(0, stop)
        assert wait_until(lambda: len(_received(receiver)) >= point, timeout=15)
    _kill(child)


def test_file_source_sigkill_at_random_points_loses_no_event_read(tmp_path: Path) -> None:
    """60,000 events appended to a followed file over 6 lives of the daemon, 5 ending in
    SIGKILL at a random point. The source saves its position only after the spool
    commit, so at each kill every event before the saved position is in the spool or
    delivered; after the last life every event written to the file has arrived."""
    rng = random.Random(11)
    log, state = tmp_path / "events.ndjson", tmp_path / "position.state"
    stops = [*sorted(rng.sample(range(1000, TOTAL), KILLS)), TOTAL]
    source = {"type": "file", "path": log, "state_file": state, "poll_interval": 0.01}
    with Receiver(FLAKY) as receiver:
        config = spooled_daemon_config(tmp_path, receiver.url, source)
        written = 0
        for life, stop in enumerate(stops):  # bounded: 6 lives
            with exporter_child("run", str(config)) as child:
                _started(child, b"source=in: file")
                for cut in [*sorted(rng.randint(written, stop) for _ in range(3)), stop]:
                    with log.open("ab") as appending:  # appended while it runs
                        appending.write(_lines(written, cut))
                    written = cut
                if life == KILLS:
                    _stop(child, receiver)
                    break
                _kill_file_life(child, rng, state, receiver, stop)
            taken = _saved_offset(state) // SIZE
            lost = set(range(taken)) - _spooled(tmp_path) - set(_received(receiver))
            assert not lost, f"life {life}: {len(lost)} events before the saved position lost"
        received = _received(receiver)
    assert _saved_offset(state) == TOTAL * SIZE
    _everything_once_or_more("file source", received, tmp_path)


def test_file_source_sigkill_in_a_catch_up_resends_only_the_last_50_ms(tmp_path: Path) -> None:
    """README: after a kill, only a batch in flight at the crash, or delivered in the 50 ms
    before it, may arrive twice. Life 1: the file (5,000
    events) is read into the spool while the destination refuses connections; SIGKILL.
    Life 2: a backlog of 50 batches and no new input; the receiver takes 3, then asks for
    a 10 s pause (Retry-After); 0.25 s after the third was delivered, SIGKILL. None of
    those 300 events may still be in the spool (a deferred delete once kept them all)."""
    log, state = tmp_path / "events.ndjson", tmp_path / "position.state"
    log.write_bytes(_lines(0, 5000))
    source = {"type": "file", "path": log, "state_file": state, "poll_interval": 0.01}
    with socket.socket() as refusing:  # bound, not listening: connections are refused
        refusing.bind(("127.0.0.1", 0))
        down = f"http://127.0.0.1:{refusing.getsockname()[1]}/ingest"
        config = spooled_daemon_config(tmp_path, down, source, {"batch_max_events": 100})
        with exporter_child("run", str(config)) as child:
            assert wait_until(lambda: _saved_offset(state) == 5000 * SIZE, timeout=10)
            _kill(child)
    assert len(_spooled(tmp_path)) == 5000
    with Receiver(["ok"] * 3 + ["503:retry-after=10"]) as receiver:
        config = spooled_daemon_config(tmp_path, receiver.url, source, {"batch_max_events": 100})
        with exporter_child("run", str(config)) as child:
            assert receiver.wait_recorded(4, timeout=10)
            last = max(request.ended for request in receiver.received)
            # the claim is about time: let more than 50 ms pass since the last delivery
            assert wait_until(lambda: time.monotonic() > last + 0.25, timeout=5)
            _kill(child)
        delivered = set(_received(receiver))
    assert len(delivered) == 300
    again = delivered & _spooled(tmp_path)
    assert not again, f"{len(again)} events delivered 0.25 s before the kill will be sent again"


# -- unix --------------------------------------------------------------------------------


def _send(client: socket.socket, data: bytes, sent: list[int]) -> None:
    """Write ``data`` until done or the daemon dies (EPIPE, ECONNRESET); ``sent[0]``: the
    bytes the kernel took (which is not what the daemon read)."""
    view = memoryview(data)
    with contextlib.suppress(OSError):
        for _ in range(len(data)):  # each send takes at least one byte, or raises
            if not view:
                return
            n = client.send(view[: 1 << 16])
            sent[0] += n
            view = view[n:]


def _unix_life(
    config: Path, path: str, receiver: Receiver, first: int, point: int | None
) -> tuple[int, int]:
    """One life of the daemon: a client sends events ``first`` onwards on one connection;
    SIGKILL once the source counted ``point`` events, or (``point`` None, the last life)
    everything delivered and SIGTERM. Returns the count the last scrape showed, and how
    many events the kernel took from the client."""
    with (
        exporter_child("run", str(config)) as child,
        socket.socket(socket.AF_UNIX) as client,
        httpx.Client(timeout=10) as http,
    ):
        _started(child, b"source=in: unix")
        found = METRICS.search(bytes(child.stderr))
        assert found is not None
        metrics = found[1].decode()
        client.settimeout(10)
        client.connect(path)
        sent, data = [0], _lines(first, TOTAL)
        sender = threading.Thread(target=_send, args=(client, data, sent), daemon=True)
        sender.start()
        if point is None:
            sender.join(timeout=15)
            assert sent[0] == len(data)
            client.close()
            _stop(child, receiver)
            return TOTAL - first, len(data) // SIZE
        counted = 0

        def scrape() -> int:
            nonlocal counted
            match = TAKEN.search(http.get(metrics).content)
            assert match is not None
            counted = int(match[1])
            return counted

        assert wait_until(lambda: scrape() >= point, timeout=15)
        _kill(child)
        sender.join(timeout=10)
        assert not sender.is_alive()
        return counted, sent[0] // SIZE


def test_unix_source_sigkill_at_random_points_loses_no_event_taken(tmp_path: Path) -> None:
    """A client writes events 0..59,999 over the unix socket, on one connection per life
    of the daemon; 5 lives end in SIGKILL once the source's counter
    (``event_exporter_source_events_total``) passes a random point.

    The protocol (Dovecot's unix exporter) has no reply, so the client cannot know what
    the daemon took: bytes the kernel accepted from it that sit unread in the socket's
    buffer die with the daemon (counted below as "lost with the socket"). What the
    source does guarantee: the lines of each read are committed to the spool before the
    next read, with nothing else running in between (emit does not wait unless the queue
    is full, and then the spool commits before waiting), so every event its counter
    showed is on disk. Hence the claim checked: at each kill, the ``C`` events the last
    scrape counted (the first ``C`` of that connection) are in the spool or delivered.
    The client then resumes after those ``C``, sending the ones in doubt again
    (duplicates if the daemon had taken them); after the last life every event has
    arrived."""
    rng = random.Random(5)
    with socket_dir() as directory, Receiver(FLAKY) as receiver:
        path = f"{directory}/in.sock"
        config = spooled_daemon_config(tmp_path, receiver.url, {"type": "unix", "path": path})
        first = 0  # the first event not counted as taken
        in_doubt = unread = 0
        for life in range(KILLS):  # bounded: 5 lives ending in SIGKILL
            point = rng.randint(1, (TOTAL - first) // 3)
            counted, written = _unix_life(config, path, receiver, first, point)
            kept = _spooled(tmp_path) | set(_received(receiver))
            taken = set(range(first, first + counted))
            assert not taken - kept, f"life {life}: {len(taken - kept)} events counted, lost"
            doubtful = set(range(first + counted, first + written))
            in_doubt += len(doubtful)
            unread += len(doubtful - kept)
            first += counted
        _unix_life(config, path, receiver, first, None)
        received = _received(receiver)
    duplicates = _everything_once_or_more("unix source", received, tmp_path)
    print(f"written, not yet counted at a kill: {in_doubt}; lost with the socket: {unread}")
    assert duplicates <= in_doubt + KILLS * 2000  # resent, or in flight at a kill
