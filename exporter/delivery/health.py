"""Runs of failures, for what /ready and /metrics read and for what the log says.

A run starts with a failure and ends with the next success. :class:`Failing` keeps since
when it has lasted (``failing_since``, monotonic), how many failures it holds and the last
error, and decides which failures to report: the first at once, then at most one per
``interval`` seconds (:class:`~exporter.observe.log.RateLimit`), each saying how many came
since the last one shown, across runs too, so that a destination failing every other
time (a flapping link) is not a line per failure. The end of a run is worth a line only
if one of its failures was. An exporter's deliveries and a spool's writes each have one.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass

from exporter.observe.log import RateLimit

REPORT_INTERVAL = 30.0
"""Seconds between two reports of one run of failures (the first comes at once)."""


def counted(count: int, noun: str) -> str:
    """``1 attempt``, ``2 attempts``: a count with its noun, singular for one."""
    return f"{count} {noun}" if count == 1 else f"{count} {noun}s"


def seconds(value: float) -> str:
    """A duration as a message shows it: ``0.05 s``, ``12.3 s``, ``95 s``."""
    return f"{value:.3g} s" if value < 100 else f"{value:.0f} s"


@dataclass(frozen=True, slots=True)
class Report:
    """A failure to report now: how many since the last report (this one included), and
    whether it is the first of its run."""

    failures: int
    first: bool


@dataclass(frozen=True, slots=True)
class Run:
    """A run of failures that ended: how long it lasted, how many failures it held, the
    last one, and whether any of them was reported (else its end is not worth a line)."""

    seconds: float
    failures: int
    last_error: str
    reported: bool


class Failing:
    """The current run of failures of one thing (see the module)."""

    def __init__(
        self, *, interval: float = REPORT_INTERVAL, clock: Callable[[], float] = time.monotonic
    ) -> None:
        self.interval = interval
        self._clock = clock
        self.failing_since: float | None = None
        """Monotonic time of the first failure of the current run; None: not failing."""
        self.last_error: str | None = None
        """The last failure's error (kept after the run ended: the last one seen)."""
        self.failures = 0
        """Failures in the current run."""
        self._limit = RateLimit(interval, clock=clock)
        self._reported = False  # a failure of the current run was reported

    @property
    def failing(self) -> bool:
        return self.failing_since is not None

    def elapsed(self) -> float:
        """Seconds the current run has lasted (0 when not failing)."""
        return 0.0 if self.failing_since is None else self._clock() - self.failing_since

    def fail(self, error: str) -> Report | None:
        """Count one failure; what to report now, or None to hold it back."""
        self.last_error = error
        if self.failing_since is None:
            self.failing_since = self._clock()
            self.failures = 0
            self._reported = False
        self.failures += 1
        held = self._limit.allow()
        if held is None:
            return None
        self._reported = True
        return Report(held + 1, self.failures == 1)

    def succeed(self) -> Run | None:
        """A success: the run that it ends, or None if there was none."""
        if self.failing_since is None:
            return None
        run = Run(
            self._clock() - self.failing_since, self.failures, self.last_error or "", self._reported
        )
        self.failing_since = None
        self.failures = 0
        return run
