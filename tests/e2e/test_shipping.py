"""``export --to`` and ``replay`` end to end, as a user runs them: real files, real unix
listeners (one that reads everything, one that stalls, one that never reads), signals
sent to a child process by its PID, its memory read from /proc.

The child's stdin is a pipe whose both ends the test holds: the write end to feed it
numbered events (``event:e<TAB>field:n=0000042``, 24 bytes each), the read end to see,
with FIONREAD, exactly how much of its input the child has taken.
"""

from __future__ import annotations

import os
import re
import signal
import time
from collections import Counter
from collections.abc import Iterator
from pathlib import Path

import pytest

from exporter.cli import main
from tests.support.drivers import socket_dir
from tests.support.processes import (
    Child,
    Listener,
    accounting,
    bounded,
    dead_letter_events,
    event_number,
    exporter_child,
    numbered_tab_line,
    plain_export,
    rss_kib,
    settled,
    signal_pending,
    summary_line,
    unread_bytes,
    wait_until,
)
from tests.support.samples import EVENTS_FILE

CAPTURE_EVENTS = 36


@pytest.fixture
def sock_path() -> Iterator[str]:
    with socket_dir() as directory:
        yield os.path.join(directory, "events.sock")


# -- export --to a file or a unix listener -------------------------------------------------

FORMAT_OPTIONS = [
    pytest.param([], id="json"),
    pytest.param(
        ["--format", "tab-text", "--time-format", "unix", "--time-precision", "ns"],
        id="tabtext-unix-ns",
    ),
]


@pytest.mark.parametrize("options", FORMAT_OPTIONS)
@pytest.mark.parametrize("scheme", ["file", "unix"])
def test_export_to_delivers_every_event_as_export_prints_it(
    tmp_path: Path,
    sock_path: str,
    capsys: pytest.CaptureFixture[str],
    scheme: str,
    options: list[str],
) -> None:
    expected = plain_export(tmp_path, EVENTS_FILE, options)
    assert expected.count(b"\n") == CAPTURE_EVENTS
    capsys.readouterr()
    dead = tmp_path / "dead.ndjson"
    out = tmp_path / "shipped"
    dest = f"file:{out}" if scheme == "file" else f"unix:{sock_path}"
    argv = ["export", "--to", dest, "--dead-letter", str(dead), *options, str(EVENTS_FILE)]
    if scheme == "file":
        with bounded(30):
            code = main(argv)
        delivered = out.read_bytes()
        assert out.stat().st_mode & 0o777 == 0o600  # --file-mode's default
    else:
        listener = Listener(sock_path)
        try:
            with bounded(30):
                code = main(argv)
            listener.finish(timeout=10)  # the exporter closed its connection on exit
        finally:
            listener.close()
        assert len(listener.connections) == 1
        delivered = bytes(listener.connections[0])
    err = capsys.readouterr().err
    assert code == 0, err
    assert err == summary_line(dest, CAPTURE_EVENTS, CAPTURE_EVENTS, 0, 0) + "\n"
    assert delivered == expected
    assert not dead.exists()


# -- undeliverable: dead letters, then replay ----------------------------------------------

RAW_TAB_LINE = b"event:raw\tfield:k=a\xffb\n"  # not UTF-8: tab-text writes the byte back raw


@pytest.mark.parametrize(
    "options", [pytest.param([], id="json"), pytest.param(["--format", "tab-text"], id="tabtext")]
)
@pytest.mark.parametrize(
    ("target", "reason", "attempts", "retried"),
    [
        pytest.param(
            "unix:/nonexistent/dir/sock",
            r"gave up after 2 attempts: unix:/nonexistent/dir/sock: connect failed: "
            r".*\(ENOENT\)",
            2,
            1,
            id="unreachable-with-retry-limit",
        ),
        pytest.param(  # a name over NAME_MAX (a directory there is refused at start)
            "file:/tmp/" + "x" * 256,
            r"file:/tmp/x{{256}}: open failed: .*\(ENAMETOOLONG\)",
            1,
            0,
            id="refuses-permanently",
        ),
    ],
)
def test_undeliverable_events_are_dead_lettered_and_replayed_byte_for_byte(
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    target: str,
    reason: str,
    attempts: int,
    retried: int,
    options: list[str],
) -> None:
    """Every event goes to the dead-letter file with its reason and attempts (one batch:
    the capture is read in one chunk); replaying that file to a file writes exactly what
    ``export --to file:`` writes, also for an event whose bytes are not UTF-8."""
    source = tmp_path / "events"
    source.write_bytes(EVENTS_FILE.read_bytes() + RAW_TAB_LINE)
    total = CAPTURE_EVENTS + 1
    shipped = tmp_path / "reference"
    dead = tmp_path / "dead.ndjson"
    retry = ["--retry-max-attempts", "2", "--retry-initial-delay", "0.01"]
    dest = target.format(tmp=tmp_path)  # ENAMETOOLONG is permanent
    with bounded(30):
        code = main(
            ["export", "--to", dest, "--dead-letter", str(dead), *retry, *options, str(source)]
        )
    err = capsys.readouterr().err
    assert code == 3, err
    failed, dead_lettered, summary = err.splitlines()  # what went wrong comes at once
    assert summary == summary_line(dest, total, 0, retried, total) + f"; dead letters in {dead}"
    context = f" warning exporter=export destination={dest}: "
    assert context + "delivery failed (attempt 1): " in failed
    assert re.search(r"; next try in [0-9.e-]+ s$" if retried else "; given up$", failed), failed
    assert context + f"{total} events dead-lettered to {dead}: " in dead_lettered

    events, records = dead_letter_events(dead)
    assert len(records) == total
    for record in records:
        assert record["exporter"] == "export"
        assert record["destination"] == dest
        assert re.fullmatch(reason.format(tmp=re.escape(str(tmp_path))), str(record["reason"]))
        assert record["attempts"] == attempts
    assert sum("event_base64" in record for record in records) == (1 if options else 0)

    with bounded(30):
        argv = ["export", "--to", f"file:{shipped}", "--dead-letter", str(dead) + ".ref"]
        assert main([*argv, *options, str(source)]) == 0
    reference = shipped.read_bytes()
    assert reference.count(b"\n") == total
    assert b"".join(event + b"\n" for event in events) == reference
    capsys.readouterr()

    replayed = tmp_path / "replayed"
    dead_again = tmp_path / "dead-again.ndjson"
    with bounded(30):
        code = main(
            ["replay", str(dead), "--to", f"file:{replayed}", "--dead-letter", str(dead_again)]
        )
    err = capsys.readouterr().err
    assert code == 0, err
    assert err == summary_line(f"file:{replayed}", total, total, 0, 0) + "\n"
    assert replayed.read_bytes() == reference
    assert not dead_again.exists()


# -- signals, backpressure and overflow, in a child process --------------------------------


SMALL_QUEUE = ("--queue-max-events", "1000", "--batch-max-events", "100")


def _to_listener(sock_path: str, dead: Path | str, *options: str) -> list[str]:
    """``export --to unix:SOCK OPTIONS --dead-letter DEAD``, reading stdin."""
    return ["export", "--to", f"unix:{sock_path}", *options, "--dead-letter", str(dead)]


def _input_taken(child: Child) -> bool:
    """The child has taken everything from its stdin pipe, and not just now: its last
    chunk had time to be queued (a chunk read when SIGTERM comes is not)."""
    empty: list[bool] = []

    def check() -> bool:
        empty.append(unread_bytes(child.stdin_r) == 0)
        return empty[-2:] == [True, True]

    return wait_until(check, timeout=10)


def _sigterm_after_delivery(child: Child) -> None:
    """A second SIGTERM, once the first was delivered: sent while the first is still
    pending, the kernel would merge the two into one."""
    assert wait_until(lambda: not signal_pending(child.pid, signal.SIGTERM), timeout=5)
    child.terminate()


def _exit_status(child: Child) -> int:
    """The status of a child that printed its summary; its stdin stays open."""
    return child.wait(timeout=10)


@pytest.mark.parametrize(
    ("signals", "shutdown_timeout"), [(1, 1.0), (2, 30.0)], ids=["sigterm", "sigterm-twice"]
)
def test_sigterm_mid_stream_accounts_for_every_event(
    tmp_path: Path, sock_path: str, signals: int, shutdown_timeout: float
) -> None:
    """The listener reads 4 KiB and stops reading, so delivery stalls with most of 50,000
    events queued and a batch of 1,500 in flight, maybe half-written. SIGTERM: the queue
    drains until --shutdown-timeout, then the rest is dead-lettered. A second SIGTERM
    stops at once, well before a 30 s timeout. Every event written is delivered or
    dead-lettered; the batch in flight may be both (its lines that got through).

    SIGTERM comes once the child has taken its whole input (what a pipe still holds at
    SIGTERM is left unread, on purpose); stdin stays open, as a live source's would.
    """
    total = 50_000
    batch = 1500
    dead = tmp_path / "dead.ndjson"
    listener = Listener(sock_path, read_limit=4096)
    try:
        with exporter_child(
            *_to_listener(
                sock_path,
                str(dead),
                "--batch-max-events",
                str(batch),
                "--shutdown-timeout",
                str(shutdown_timeout),
            )
        ) as child:
            feeder = child.feed(total)
            assert listener.stalled.wait(10)
            assert feeder.done.wait(20)
            assert _input_taken(child)
            signalled = time.monotonic()
            child.terminate()
            if signals == 2:
                _sigterm_after_delivery(child)
            child.wait_summary(timeout=shutdown_timeout + 10)
            took = time.monotonic() - signalled
            assert _exit_status(child) == 3
        listener.finish(timeout=10)
    finally:
        listener.close()

    if signals == 1:
        assert shutdown_timeout - 0.1 <= took < shutdown_timeout + 5
    else:
        assert took < 5
    summary = child.summary
    lines, fragments = listener.lines()
    dead_events, records = dead_letter_events(dead)
    delivered, dead_lettered, duplicates = accounting(lines, dead_events)
    print(
        f"{signals} SIGTERM: summary after {took:.2f} s; {len(delivered)} arrived, "
        f"{len(dead_lettered)} dead-lettered, {duplicates} duplicates, "
        f"{fragments} torn fragment; exporter: {summary}"
    )
    assert delivered | dead_lettered == set(range(total))
    assert (summary.received, summary.dropped) == (total, 0)
    assert summary.exported + summary.dead_lettered == total
    assert summary.dead_lettered == len(dead_events) > 0
    assert len(lines) >= summary.exported  # the kernel took them: delivered
    # Duplicates: only the batch in flight, whose lines arrived and were dead-lettered.
    assert len(lines) == len(delivered)  # one connection: nothing arrived twice
    assert duplicates == len(delivered & dead_lettered) == len(lines) - summary.exported
    assert duplicates <= batch
    assert fragments <= 1
    reason = "shutdown: second signal" if signals == 2 else "shutdown: deadline passed"
    attempts = Counter((r["reason"], r["attempts"]) for r in records)
    assert set(attempts) <= {(reason, 0), (reason, 1)}  # queued; in flight, first try
    assert attempts[(reason, 1)] <= batch
    assert attempts.total() == summary.dead_lettered


def test_a_destination_that_fails_is_said_at_once_and_its_error_kept_in_the_dead_letters(
    tmp_path: Path,
) -> None:
    """Issue 14, item 1: `export --to file:/nonexistent/dir/x` retried forever without a
    word (it is refused at start now: the directory goes once the child runs). The first
    failure is said at once (one line, however many retries follow); the events
    dead-lettered at the shutdown deadline keep the error beside its reason."""
    folder = tmp_path / "gone"
    folder.mkdir()
    dest = f"file:{folder}/x"
    error = f"{dest}: open failed: No such file or directory (ENOENT)"
    dead = tmp_path / "dead.ndjson"
    argv = ["export", "--to", dest, "--dead-letter", str(dead), "--shutdown-timeout", "0.5"]
    with exporter_child(
        *argv, "--retry-initial-delay", "0.01", "--retry-max-delay", "0.02", "--batch-max-age", "2"
    ) as child:
        feeder = child.feed(10)
        assert wait_until(lambda: child.consumed_lines(feeder) == 10, timeout=10)
        folder.rmdir()  # before the batch's age is out: its first write fails
        said = f"warning exporter=export destination={dest}: delivery failed (attempt 1): {error}"
        assert wait_until(lambda: said.encode() in bytes(child.stderr), timeout=10), bytes(
            child.stderr
        )
        assert wait_until(
            lambda: bool(re.search(rb"next try in [0-9.e-]+ s\n", child.stderr)), timeout=5
        )
        child.terminate()
        child.wait_summary(timeout=10)
        assert child.wait(timeout=10) == 3
    stderr = bytes(child.stderr).decode()
    assert stderr.count("delivery failed") == 1  # the retries every 20 ms: not a line each
    _, records = dead_letter_events(dead)
    assert len(records) == 10
    assert {r["reason"] for r in records} == {f"shutdown: deadline passed; last error: {error}"}


def test_sigterm_ends_the_process_while_its_stdin_stays_open(
    tmp_path: Path, sock_path: str
) -> None:
    listener = Listener(sock_path)
    try:
        with exporter_child(
            "export", "--to", f"unix:{sock_path}", "--dead-letter", str(tmp_path / "dead")
        ) as child:
            child.feed(10)
            assert listener.saw_data.wait(10)  # delivering, and waiting for more input
            child.terminate()
            child.wait_summary(timeout=10)
            assert child.summary.exported == 10
            assert child.wait(timeout=3) == 0  # stdin is still open: no read holds us
        listener.finish(timeout=10)
    finally:
        listener.close()


def test_block_overflow_is_backpressure_with_bounded_memory(tmp_path: Path, sock_path: str) -> None:
    """A listener that accepts and never reads: with --overflow block (the default) the
    child stops taking stdin once its small queue, the batch in flight and the socket
    buffer are full; its memory stops growing. SIGTERM then ends it: exit 3, summary."""
    limit = 200_000
    dead = tmp_path / "dead.ndjson"
    listener = Listener(sock_path, read_limit=0)
    try:
        with exporter_child(
            *_to_listener(
                sock_path,
                str(dead),
                *SMALL_QUEUE,
                "--shutdown-timeout",
                "0.5",
            )
        ) as child:
            feeder = child.feed(limit)
            assert listener.connected.wait(10)
            assert settled(child, feeder)
            samples: list[tuple[int, int, int]] = []
            for _ in range(6):  # sampling intervals, not synchronisation
                samples.append((rss_kib(child.pid), child.consumed_lines(feeder), feeder.written))
                time.sleep(0.2)
            taken = child.consumed_lines(feeder)
            child.terminate()
            child.wait_summary(timeout=10)
            assert child.wait(timeout=10) == 3  # no read was pending: exits by itself
        listener.finish(timeout=10)
    finally:
        listener.close()

    rss = [kib for kib, _, _ in samples]
    summary = child.summary
    lines, fragments = listener.lines()
    dead_events, _ = dead_letter_events(dead)
    delivered, dead_lettered, duplicates = accounting(lines, dead_events)
    print(
        f"RSS samples (KiB) after the stall: {rss}; stdin taken: {taken} of {limit} lines, "
        f"{feeder.written_lines} written; exporter: {summary}; "
        f"{len(delivered)} arrived, {len(dead_lettered)} dead-lettered, "
        f"{duplicates} duplicates; {taken - summary.received} lines taken from stdin "
        "but neither delivered, dead-lettered nor counted"
    )
    assert {consumed for _, consumed, _ in samples} == {taken}  # the producer is blocked
    assert {written for _, _, written in samples} == {feeder.written}  # so is the writer
    assert feeder.written_lines < limit
    assert max(rss) - min(rss) < 4096
    assert max(rss) < 200 * 1024
    assert summary.dropped == 0
    assert summary.received == summary.exported + summary.dead_lettered
    assert summary.received <= taken < limit
    assert delivered | dead_lettered == set(range(summary.received))
    assert summary.dead_lettered == len(dead_events)


def test_lines_taken_from_stdin_are_not_lost_at_sigterm(tmp_path: Path, sock_path: str) -> None:
    listener = Listener(sock_path, read_limit=0)
    try:
        with exporter_child(
            *_to_listener(
                sock_path,
                str(tmp_path / "dead"),
                *SMALL_QUEUE,
                "--shutdown-timeout",
                "0.1",
            )
        ) as child:
            feeder = child.feed(200_000)
            assert listener.connected.wait(10)
            assert settled(child, feeder)
            taken = child.consumed_lines(feeder)
            child.terminate()
            child.wait_summary(timeout=10)
            assert child.wait(timeout=10) == 3
        listener.finish(timeout=10)
    finally:
        listener.close()
    summary = child.summary
    assert summary.exported + summary.dead_lettered + summary.dropped == taken


@pytest.mark.parametrize("policy", ["drop_newest", "drop_oldest"])
def test_drop_policies_never_block_and_count_every_drop(
    tmp_path: Path, sock_path: str, policy: str
) -> None:
    """The same listener that never reads: under a drop policy the child takes its whole
    input, never blocking the writer; a full queue drops and counts. After end of input
    and SIGTERM (delivery itself never finishes), every event was delivered,
    dead-lettered or counted as dropped."""
    total = 100_000
    queue = 1000
    dead = tmp_path / "dead.ndjson"
    listener = Listener(sock_path, read_limit=0)
    try:
        with exporter_child(
            *_to_listener(
                sock_path,
                str(dead),
                "--overflow",
                policy,
                "--queue-max-events",
                str(queue),
                "--batch-max-events",
                "100",
                "--shutdown-timeout",
                "0.5",
            )
        ) as child:
            started = time.monotonic()
            feeder = child.feed(total, close=True)
            assert listener.connected.wait(10)
            assert feeder.done.wait(20)  # the whole input went in, then end of input
            fed = time.monotonic() - started
            assert _input_taken(child)
            child.terminate()
            child.wait_summary(timeout=10)
            assert child.wait(timeout=10) == 3
        listener.finish(timeout=10)
    finally:
        listener.close()

    summary = child.summary
    lines, _ = listener.lines()
    dead_events, _ = dead_letter_events(dead)
    delivered, dead_lettered, duplicates = accounting(lines, dead_events)
    print(
        f"{policy}: {total} events fed in {fed:.2f} s; exporter: {summary}; "
        f"{len(delivered)} arrived, {len(dead_lettered)} dead-lettered, {duplicates} duplicates"
    )
    assert summary.received == total
    assert summary.reasons == {f"queue full ({policy})": summary.dropped}
    assert summary.dropped > 0
    assert summary.received == summary.exported + summary.dropped + summary.dead_lettered
    assert summary.dead_lettered == len(dead_events)
    kept = delivered | dead_lettered
    assert len(kept) == total - summary.dropped
    # Which ones survive: the first ones under drop_newest, the last ones under drop_oldest.
    survivors = range(queue) if policy == "drop_newest" else range(total - queue, total)
    assert set(survivors) <= kept


# -- SIGHUP ----------------------------------------------------------------------------------


def _lines_in(path: Path) -> list[bytes]:
    return path.read_bytes().splitlines() if path.exists() else []


def _holds_open(pid: int, path: Path) -> bool:
    fds = Path(f"/proc/{pid}/fd")
    targets = []
    for fd in fds.iterdir():
        try:
            targets.append(os.readlink(fd))
        except OSError:  # closed meanwhile
            continue
    return str(path) in targets


def test_sighup_lets_go_of_a_rotated_file_and_the_next_events_go_to_a_new_one(
    tmp_path: Path,
) -> None:
    """logrotate with a postrotate ``kill -HUP``: the file is renamed, SIGHUP closes it at
    once (seen in /proc, with no event arriving to trigger the automatic check), and the
    next events go to a new file at the configured path. No line lost, none split."""
    out = tmp_path / "events.json"
    rotated = tmp_path / "events.json.1"
    with exporter_child(
        "export",
        "--to",
        f"file:{out}",
        "--batch-max-age",
        "0.01",
        "--dead-letter",
        str(tmp_path / "dead"),
    ) as child:
        os.write(child.stdin_w, b"".join(numbered_tab_line(n) for n in range(1000)))
        assert wait_until(lambda: len(_lines_in(out)) == 1000, timeout=10)
        assert _holds_open(child.pid, out)
        out.rename(rotated)
        os.kill(child.pid, signal.SIGHUP)
        assert wait_until(lambda: not _holds_open(child.pid, rotated), timeout=10)
        assert not out.exists()  # reopened lazily, by the next batch
        os.write(child.stdin_w, b"".join(numbered_tab_line(n) for n in range(1000, 1500)))
        child.close_stdin()
        child.wait_summary(timeout=10)
        assert child.wait(timeout=10) == 0
    assert [event_number(line) for line in _lines_in(rotated)] == list(range(1000))
    assert [event_number(line) for line in _lines_in(out)] == list(range(1000, 1500))
    assert child.summary.exported == 1500


def test_a_file_read_under_a_drop_policy_drops_nothing_for_a_fast_destination(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """A file is always readable: the reader yields per chunk, so the consumer keeps up."""
    big = tmp_path / "big.ndjson"
    big.write_bytes(EVENTS_FILE.read_bytes() * 300)
    options = [
        "--overflow",
        "drop_newest",
        "--queue-max-events",
        "2000",
        "--batch-max-events",
        "500",
    ]
    assert main(["export", "--to", "drop", *options, str(big)]) == 0
    assert ", dropped 0, " in capsys.readouterr().err
