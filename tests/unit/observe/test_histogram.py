"""Histogram counts, cumulative as Prometheus reads them."""

from __future__ import annotations

from exporter.observe.histogram import Histogram


def test_observations_fall_in_the_first_bucket_that_holds_them() -> None:
    histogram = Histogram(buckets=(0.1, 1.0))
    for value in (0.05, 0.1, 0.5, 3.0):
        histogram.observe(value)
    assert histogram.cumulative() == [("0.1", 2), ("1.0", 3), ("+Inf", 4)]
    assert histogram.count == 4
    assert histogram.sum == 3.65
