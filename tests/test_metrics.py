"""Self-metrics text: Prometheus 0.0.4, every drop reason a labelled series, escaped."""

from __future__ import annotations

import pytest

from exporter.config import parse_config
from exporter.metrics import render
from exporter.pipeline import Pipeline

pytestmark = pytest.mark.anyio

CONFIG = """
[exporter.out]
destination = "drop"
[metric.all]
filter = "event=*"
exporter = "out"
"""


async def test_every_drop_reason_is_a_series_with_its_label_escaped() -> None:
    pipeline = Pipeline.from_config(parse_config(CONFIG))
    pipeline.exporters["out"].stats.dropped['queue "full"\\\nx'] = 3
    text = render(pipeline, {})
    assert (
        'event_exporter_exporter_dropped_total{exporter="out",reason="queue \\"full\\"\\\\\\nx"} 3'
        in text
    )
    assert "# TYPE event_exporter_exporter_dropped_total counter" in text
    for line in text.splitlines():
        assert line.startswith(("#", "event_exporter_")), line
