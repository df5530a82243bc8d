"""The stdin source on a real pipe: every line to its end, a line over ``max_line_bytes``
reported and skipped (never held whole) while the lines after it are read."""

from __future__ import annotations

import io
import os
import threading

import anyio
import pytest

from exporter.sources.stdin import StdinSource, StdinSourceSettings
from tests.support.sources import Collector

pytestmark = pytest.mark.anyio


def good(n: int) -> bytes:
    return b"event:e\tfield:n=%d\n" % n


async def _serve(data: bytes, max_line_bytes: int) -> tuple[StdinSource, Collector, str]:
    """The source on a pipe a thread writes ``data`` into (in pieces, then closes)."""
    read_end, write_end = os.pipe()

    def write() -> None:
        with open(write_end, "wb", buffering=0) as pipe:
            for start in range(0, len(data), 1000):  # a long line comes in many reads
                pipe.write(data[start : start + 1000])

    writer = threading.Thread(target=write)
    writer.start()
    collector, errors = Collector(), io.StringIO()
    try:
        source = StdinSource(
            "in", collector, errors, StdinSourceSettings(max_line_bytes), fd=read_end
        )
        with anyio.fail_after(10):
            await source.serve()  # until the end of its input
    finally:
        writer.join(timeout=10)
        os.close(read_end)
    return source, collector, errors.getvalue()


async def test_a_line_over_max_line_bytes_is_reported_and_skipped_and_the_next_are_read() -> None:
    """Before, stdin held a line of any length (issue 12)."""
    data = good(0) + b"x" * 50_000 + b"\r\n" + good(1) + good(2) + good(3)[:-1]
    source, collector, errors = await _serve(data, max_line_bytes=100)
    assert collector.numbers() == [0, 1, 2, 3]  # the last one, without newline, too
    assert errors == "event-exporter: source in: line 2: 50001 bytes, longer than 100\n"
    assert (source.counts.events, source.counts.rejected_lines) == (4, 1)
    assert collector.commits >= 1


async def test_a_last_line_over_the_limit_without_newline_is_reported() -> None:
    source, collector, errors = await _serve(good(0) + b"y" * 5000, max_line_bytes=100)
    assert collector.numbers() == [0]
    assert errors == "event-exporter: source in: line 2: 5000 bytes, longer than 100\n"
    assert source.counts.rejected_lines == 1


async def test_a_line_of_exactly_max_line_bytes_is_taken() -> None:
    line = good(7)
    source, collector, errors = await _serve(line + good(8), max_line_bytes=len(line) - 1)
    assert collector.numbers() == [7, 8]
    assert errors == ""
