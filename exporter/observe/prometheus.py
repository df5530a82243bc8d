"""Self-metrics in Prometheus' text format (version 0.0.4): what came in per source, what
each metric matched, and each exporter's account and state.

Counters end in ``_total``; gauges (queue depth, the current Retry-After pause) are read
at scrape time. Every drop is a series of its own, labelled with its reason.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable, Mapping

from exporter.observe.text import printable
from exporter.routing import Pipeline

CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"
_PREFIX = "event_exporter_"


def render(pipeline: Pipeline, sources: Mapping[str, object]) -> str:
    """Every series; a source contributes its ``counts`` (events, rejected_lines) and
    ``refused`` (by status) where it has them."""
    out: list[str] = []

    def family(name: str, kind: str, help_text: str, samples: Iterable[tuple[str, float]]) -> None:
        out.append(f"# HELP {_PREFIX}{name} {help_text}")
        out.append(f"# TYPE {_PREFIX}{name} {kind}")
        out.extend(f"{_PREFIX}{name}{labels} {_number(value)}" for labels, value in samples)

    counts = pipeline.counts
    family(
        "events_submitted_total",
        "counter",
        "Events handed to the metrics.",
        [("", counts.submitted)],
    )
    family(
        "events_unmatched_total",
        "counter",
        "Events no metric's filter matched.",
        [("", counts.unmatched)],
    )
    routes = pipeline.routes
    family(
        "metric_matched_total",
        "counter",
        "Events a metric's filter matched.",
        [(_labels(metric=r.metric), r.matched) for r in routes],
    )
    family(
        "metric_rejected_total",
        "counter",
        "Events a metric could not write.",
        [(_labels(metric=r.metric), r.rejected) for r in routes],
    )

    exporters = pipeline.exporters.items()
    family(
        "exporter_received_total",
        "counter",
        "Events an exporter's queue accepted.",
        [(_labels(exporter=n), e.stats.received) for n, e in exporters],
    )
    family(
        "exporter_exported_total",
        "counter",
        "Events delivered.",
        [(_labels(exporter=n), e.stats.exported) for n, e in exporters],
    )
    family(
        "exporter_retries_total",
        "counter",
        "Delivery attempts that failed and were retried.",
        [(_labels(exporter=n), e.stats.retried) for n, e in exporters],
    )
    family(
        "exporter_dead_lettered_total",
        "counter",
        "Events written to the dead-letter file.",
        [(_labels(exporter=n), e.stats.dead_lettered) for n, e in exporters],
    )
    family(
        "exporter_dropped_total",
        "counter",
        "Events dropped, by reason.",
        [
            (_labels(exporter=n, reason=reason), count)
            for n, e in exporters
            for reason, count in sorted(e.stats.dropped.items())
        ],
    )
    family(
        "exporter_batches_total",
        "counter",
        "Batches delivered or dead-lettered.",
        [(_labels(exporter=n), e.stats.batches) for n, e in exporters],
    )
    family(
        "exporter_delivery_seconds_total",
        "counter",
        "Seconds from taking a batch to its delivery or dead-lettering, summed.",
        [(_labels(exporter=n), e.stats.delivery_seconds) for n, e in exporters],
    )
    family(
        "exporter_queue_events",
        "gauge",
        "Events waiting in the queue.",
        [(_labels(exporter=n), len(e.queue)) for n, e in exporters],
    )
    family(
        "exporter_queue_bytes",
        "gauge",
        "Encoded bytes waiting in the queue.",
        [(_labels(exporter=n), e.queue.queued_bytes) for n, e in exporters],
    )
    family(
        "exporter_retry_pause_seconds",
        "gauge",
        "What is left of a pause a destination asked for (Retry-After).",
        [(_labels(exporter=n), e.gate.remaining()) for n, e in exporters],
    )

    source_counts = {name: getattr(source, "counts", None) for name, source in sources.items()}
    family(
        "source_events_total",
        "counter",
        "Events a source read and handed on.",
        [(_labels(source=n), getattr(c, "events", 0)) for n, c in source_counts.items()],
    )
    family(
        "source_rejected_lines_total",
        "counter",
        "Input a source could not read.",
        [(_labels(source=n), getattr(c, "rejected_lines", 0)) for n, c in source_counts.items()],
    )
    family(
        "source_connections_refused_total",
        "counter",
        "Connections a source closed at once, over its connection caps.",
        [
            (_labels(source=n), refused)
            for n, source in sources.items()
            if (refused := _refused_connections(source)) is not None
        ],
    )
    family(
        "source_refused_total",
        "counter",
        "Requests a source answered 4xx/5xx, by status.",
        [
            (_labels(source=n, status=str(status)), count)
            for n, source in sources.items()
            for status, count in sorted(getattr(source, "refused", {}).items())
        ],
    )
    return "\n".join(out) + "\n"


LABEL_CHARS = 120
"""A longer label value is cut there, then ``...`` and 8 hex digits of its hash (so
values cut alike stay distinct series)."""


def _refused_connections(source: object) -> int | None:
    """What a listener closed over its caps (the http source has it, the unix source counts
    it), None for a source that has no connections."""
    found = getattr(source, "refused_connections", None)
    if found is None:
        found = getattr(getattr(source, "counts", None), "refused_connections", None)
    return found if isinstance(found, int) else None


def _labels(**labels: str) -> str:
    inner = ",".join(f'{key}="{_escape(value)}"' for key, value in labels.items())
    return "{" + inner + "}"


def _escape(value: str) -> str:
    """A label value as the text format writes it. A second line of defence: values are
    our names and fixed reasons, but should outside text reach one, its control
    characters are escaped and its length capped, so no value can break a scrape or a
    terminal, and no long one floods it."""
    if len(value) > LABEL_CHARS:
        digest = hashlib.sha256(value.encode("utf-8", "surrogatepass")).hexdigest()[:8]
        value = f"{value[:LABEL_CHARS]}...{digest}"
    value = "\n".join(printable(part, len(part)) for part in value.split("\n"))  # \n stays \n
    return value.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n")


def _number(value: float) -> str:
    return str(value) if isinstance(value, int) else repr(float(value))
