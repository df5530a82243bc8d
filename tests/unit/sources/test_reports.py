"""Where a source's rejections go: the daemon's log, rate-limited per kind with the count
held back; a stream (``export``, the API), the first hundred then a count."""

from __future__ import annotations

import io

from exporter.observe.log import RateLimit
from exporter.sources.reports import REPORTED_MAX, LogReports, StreamReports
from tests.support.logs import CapturedLog


class Clock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


def test_log_reports_show_a_burst_then_one_per_interval_with_the_count_held_back() -> None:
    captured, clock = CapturedLog(), Clock()
    reports = LogReports(captured.log.bind(source="web"), RateLimit(10.0, burst=3, clock=clock))
    for line in range(1, 8):
        reports.rejected(f"line {line}", "not an event")
    reports.rejected("peer POST /events", "answered 401: no token", kind="401")
    clock.now += 10.0
    reports.rejected("line 8", "not an event")
    records = captured.records()
    assert [r["message"] for r in records] == [
        "rejected line 1: not an event",
        "rejected line 2: not an event",
        "rejected line 3: not an event",
        "rejected peer POST /events: answered 401: no token",  # its own kind: not held back
        "rejected line 8: not an event (4 more since the last one shown; at most one per 10 s)",
    ]
    assert {(r["level"], r["source"]) for r in records} == {("warning", "web")}


def test_stream_reports_show_the_first_hundred_then_say_the_rest_are_counted() -> None:
    errors = io.StringIO()
    reports = StreamReports(errors, "source in: ")
    for line in range(1, REPORTED_MAX + 50):
        reports.rejected(f"line {line}", "bad")
    reports.warning("cannot read it")
    shown = errors.getvalue().splitlines()
    assert shown[0] == "event-exporter: source in: line 1: bad"
    assert shown[REPORTED_MAX - 1] == f"event-exporter: source in: line {REPORTED_MAX}: bad"
    assert shown[REPORTED_MAX:] == [
        "event-exporter: source in: further rejected lines are counted but not shown",
        "event-exporter: source in: cannot read it",
    ]
