"""Self-metrics text: Prometheus 0.0.4, every drop reason a labelled series, escaped."""

from __future__ import annotations

import pytest

from exporter.config import parse_config
from exporter.observe.prometheus import render
from exporter.routing import Pipeline

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


async def test_connections_refused_over_a_cap_are_a_series_per_listener() -> None:
    """A unix source counts them, the http source's server too; stdin has none."""
    from exporter.sources.unix import UnixSourceCounts

    class Unix:
        counts = UnixSourceCounts(refused_connections=4)

    class Http:
        refused_connections = 2
        refused = {503: 2}

    class Stdin:
        counts = object()

    text = render(
        Pipeline.from_config(parse_config(CONFIG)), {"u": Unix(), "h": Http(), "s": Stdin()}
    )
    assert 'event_exporter_source_connections_refused_total{source="u"} 4' in text
    assert 'event_exporter_source_connections_refused_total{source="h"} 2' in text
    assert 'source_connections_refused_total{source="s"}' not in text


async def test_items_a_receiver_refused_are_a_series() -> None:
    pipeline = Pipeline.from_config(parse_config(CONFIG))
    pipeline.exporters["out"].stats.rejected = 4
    text = render(pipeline, {})
    assert 'event_exporter_exporter_rejected_total{exporter="out"} 4' in text.splitlines()
