"""The daemon's own log: time, level and context on every line, text or json; never
blocking the daemon; reports rate-limited."""

from __future__ import annotations

import io
import os
import threading

import orjson

from exporter.observe.log import Log, RateLimit

NOON = 1_796_000_000.25  # 2026-11-30T...Z, a quarter past the second


def test_a_text_line_has_time_level_context_and_message() -> None:
    out = io.StringIO()
    log = Log(stream=lambda: out, clock=lambda: NOON).bind(exporter="collector")
    log.warning("delivery failed", destination="http://127.0.0.1:9/in")
    log.close()
    assert out.getvalue() == (
        "2026-11-30T00:53:20.250Z warning exporter=collector "
        "destination=http://127.0.0.1:9/in: delivery failed\n"
    )


def test_a_json_line_is_one_object_with_the_context_keys() -> None:
    out = io.StringIO()
    log = Log(format="json", stream=lambda: out, clock=lambda: NOON)
    log.bind(source="web").error("stopped\nby a bug", line=3)
    log.close()
    assert orjson.loads(out.getvalue()) == {
        "time": "2026-11-30T00:53:20.250Z",
        "level": "error",
        "message": "stopped\nby a bug",
        "source": "web",
        "line": 3,
    }


def test_levels_below_the_threshold_are_not_written_errors_always_are() -> None:
    out = io.StringIO()
    log = Log(level="warning", stream=lambda: out)
    log.debug("d")
    log.info("i")
    log.warning("w")
    log.error("e")
    log.close()
    assert [line.split(" ", 2)[1] for line in out.getvalue().splitlines()] == [
        "warning:",
        "error:",
    ]


def test_control_characters_cannot_forge_a_line_or_drive_a_terminal() -> None:
    out = io.StringIO()
    log = Log(stream=lambda: out)
    log.warning("peer said \x1b[2Jhi\rX", peer="a\x1bb")
    log.warning("two\nlines")
    log.close()
    lines = out.getvalue().splitlines()
    assert "\x1b" not in out.getvalue()
    assert lines[0].endswith(r"peer=a\x1bb: peer said \x1b[2Jhi\x0dX")
    assert lines[1].endswith("warning: two")  # each line of a message has the prefix
    assert lines[2].endswith("warning: lines")


def test_a_stderr_that_does_not_keep_up_never_blocks_and_drops_are_counted() -> None:
    read, write = os.pipe()
    os.set_blocking(write, True)
    stuck = os.fdopen(write, "w")  # nobody reads: its writer thread blocks once it is full
    log = Log(stream=lambda: stuck, buffered_max=100)
    done = threading.Event()

    def flood() -> None:
        for n in range(20_000):
            log.warning(f"line {n} " + "x" * 200)
        done.set()

    thread = threading.Thread(target=flood, daemon=True)
    thread.start()
    assert done.wait(timeout=30), "writing to the log waited for a stuck stderr"
    received = b""
    os.set_blocking(read, False)
    while chunk := _read_some(read):
        received += chunk
    log.close()
    stuck.close()
    os.set_blocking(read, True)
    with os.fdopen(read, "rb") as rest:
        received += rest.read()
    assert b"log lines dropped: stderr did not keep up" in received


def test_a_rate_limit_shows_the_first_then_one_per_interval_with_what_was_held() -> None:
    now = [0.0]
    limit = RateLimit(30, burst=2, clock=lambda: now[0])
    assert [limit.allow("k") for _ in range(5)] == [0, 0, None, None, None]
    assert limit.allow("other") == 0  # per key
    now[0] = 31
    held = limit.allow("k")
    assert held == 3
    assert limit.note(held) == " (3 more since the last one shown; at most one per 30 s)"
    assert limit.allow("k") is None


def _read_some(fd: int) -> bytes:
    """What a non-blocking pipe holds now, b"" once it is empty."""
    try:
        return os.read(fd, 1 << 16)
    except BlockingIOError:
        return b""


def test_a_new_level_applies_to_every_log_bound_from_the_same_one() -> None:
    """A reload's log_level: the exporters' bound logs follow it."""
    out = io.StringIO()
    log = Log(level="warning", stream=lambda: out)
    bound = log.bind(exporter="a")
    bound.info("hidden")
    log.set_level("debug")
    bound.debug("shown")
    log.write("info", "the summary", always=True)
    log.set_level("error")
    log.write("info", "the final summary", always=True)
    log.info("hidden too")
    log.close()
    assert [line.split(": ", 1)[1] for line in out.getvalue().splitlines()] == [
        "shown",
        "the summary",
        "the final summary",
    ]
