"""A Prometheus histogram's counts, kept where the values happen (delivery, the queue) and
rendered by :mod:`exporter.observe.prometheus`: cumulative buckets, a sum and a count."""

from __future__ import annotations

import bisect
from dataclasses import dataclass, field

SECONDS_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0)
"""From a local write (milliseconds) to an outage retried for a minute."""


@dataclass
class Histogram:
    """Observations counted into ``buckets`` (upper bounds, ascending; +Inf is implied)."""

    buckets: tuple[float, ...] = SECONDS_BUCKETS
    counts: list[int] = field(default_factory=list)
    """Per bucket, not cumulative (the last one is +Inf)."""
    sum: float = 0.0
    count: int = 0

    def __post_init__(self) -> None:
        if not self.counts:
            self.counts = [0] * (len(self.buckets) + 1)

    def observe(self, value: float) -> None:
        self.counts[bisect.bisect_left(self.buckets, value)] += 1
        self.sum += value
        self.count += 1

    def cumulative(self) -> list[tuple[str, int]]:
        """(``le`` as Prometheus writes it, observations at or below it), +Inf last."""
        total = 0
        out = []
        for bound, count in zip((*self.buckets, float("inf")), self.counts, strict=True):
            total += count
            out.append(("+Inf" if bound == float("inf") else repr(float(bound)), total))
        return out
