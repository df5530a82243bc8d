"""Self-metrics in Prometheus' text format (version 0.0.4): the build, what came in per
source, what each metric matched, and each exporter's account and state.

Counters end in ``_total``; gauges (queue depth, the current Retry-After pause, whether
an exporter is failing) are read at scrape time; histograms (delivery latency, the age
of the oldest queued event of each batch) are the delivery engine's
(:class:`~exporter.observe.histogram.Histogram`). Every drop is a series of its own,
labelled with its reason. An exporter a reload removed keeps its series while it drains
(until a restart), unless one of the same name replaced it.
"""

from __future__ import annotations

import hashlib
import platform
from collections.abc import Callable, Iterable, Mapping

from drivers.failover import OUTCOMES
from exporter import __version__
from exporter.delivery.exporter import Exporter
from exporter.observe.histogram import Histogram
from exporter.observe.text import printable
from exporter.routing import Pipeline

CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"
_PREFIX = "event_exporter_"


Samples = Iterable[tuple[str, float]]
"""(labels as written, ``{key="value"}`` or empty; value) of one family."""
Family = tuple[str, str, str, Samples]
"""(name without the prefix, ``counter`` or ``gauge``, help text, samples)."""

ExporterValue = Callable[[Exporter], float]
_EXPORTER_SERIES: tuple[tuple[str, str, str, ExporterValue], ...] = (
    ("exporter_received_total", "counter", "Events an exporter's queue accepted.",
     lambda e: e.stats.received),
    ("exporter_exported_total", "counter", "Events delivered.", lambda e: e.stats.exported),
    ("exporter_retries_total", "counter", "Delivery attempts that failed and were retried.",
     lambda e: e.stats.retried),
    ("exporter_dead_lettered_total", "counter", "Events written to the dead-letter file.",
     lambda e: e.stats.dead_lettered),
    ("exporter_batches_total", "counter", "Batches delivered or dead-lettered.",
     lambda e: e.stats.batches),
    ("exporter_delivery_seconds_total", "counter",
     "Seconds from taking a batch to its delivery or dead-lettering, summed.",
     lambda e: e.stats.delivery_seconds),
    ("exporter_queue_events", "gauge", "Events waiting in the queue.", lambda e: len(e.queue)),
    ("exporter_queue_bytes", "gauge", "Encoded bytes waiting in the queue.",
     lambda e: e.queue.queued_bytes),
    ("exporter_retry_pause_seconds", "gauge",
     "What is left of a pause a destination asked for (Retry-After).",
     lambda e: e.gate.remaining()),
    ("exporter_failing", "gauge",
     "1 while an exporter's deliveries fail (since its last success), else 0.",
     lambda e: int(e.health.failing)),
    ("exporter_rejected_total", "counter",
     "Events a receiver refused item by item in a batch it otherwise took (dead-lettered, "
     "or dropped when it did not say which).",
     lambda e: e.stats.rejected),
)  # fmt: skip
"""One series per exporter each, in this order (drops, by reason, come after received)."""


_HISTOGRAMS: tuple[tuple[str, Callable[[Exporter], Histogram], str], ...] = (
    ("exporter_delivery_latency_seconds", lambda e: e.stats.latency,
     "Per delivered batch: seconds from its oldest event's acceptance to its delivery."),
    ("exporter_queue_age_seconds", lambda e: e.stats.queue_age,
     "Per batch: the age in seconds of its oldest event when it left the queue."),
)  # fmt: skip
"""(name, the histogram of an exporter, help) of each exporter's histograms."""


def render(pipeline: Pipeline[Exporter], sources: Mapping[str, object]) -> str:
    """Every series; a source contributes its ``counts`` (events, rejected_lines) and
    ``refused`` (by status) where it has them."""
    out: list[str] = []
    for name, kind, help_text, samples in (
        _build_family(),
        *_routing_families(pipeline),
        *_exporter_families(pipeline),
        *_histogram_families(pipeline),
        *_endpoint_families(pipeline),
        *_source_families(sources),
    ):
        out.append(f"# HELP {_PREFIX}{name} {help_text}")
        out.append(f"# TYPE {_PREFIX}{name} {kind}")
        out.extend(f"{_PREFIX}{name}{labels} {_number(value)}" for labels, value in samples)
    return "\n".join(out) + "\n"


def _build_family() -> Family:
    labels = _labels(version=__version__, python=platform.python_version())
    return ("build_info", "gauge", "The running event-exporter: always 1.", [(labels, 1)])


def _exporters(pipeline: Pipeline[Exporter]) -> list[tuple[str, Exporter]]:
    """(name, exporter) of the current ones, then of those a reload removed that no
    current one replaced (one series per name)."""
    found = list(pipeline.exporters.items())
    found += [(e.name, e) for e in pipeline.retired if e.name not in pipeline.exporters]
    return found


def _histogram_families(pipeline: Pipeline[Exporter]) -> list[Family]:
    """A histogram's samples are named ``_bucket`` (with ``le``), ``_sum`` and ``_count``:
    written here as the labels part of the family's samples, after the family's name."""
    families: list[Family] = []
    for name, histogram, help_text in _HISTOGRAMS:
        samples: list[tuple[str, float]] = []
        for exporter_name, exporter in _exporters(pipeline):
            samples += _histogram_samples(histogram(exporter), _labels(exporter=exporter_name))
        families.append((name, "histogram", help_text, samples))
    return families


def _histogram_samples(histogram: Histogram, labels: str) -> list[tuple[str, float]]:
    inner = labels[1:-1]
    samples: list[tuple[str, float]] = [
        (f'_bucket{{{inner},le="{bound}"}}', count) for bound, count in histogram.cumulative()
    ]
    samples += [(f"_sum{labels}", histogram.sum), (f"_count{labels}", histogram.count)]
    return samples


def _routing_families(pipeline: Pipeline[Exporter]) -> list[Family]:
    counts, routes = pipeline.counts, pipeline.routes
    return [
        ("events_submitted_total", "counter", "Events handed to the metrics.",
         [("", counts.submitted)]),
        ("events_unmatched_total", "counter", "Events no metric's filter matched.",
         [("", counts.unmatched)]),
        ("metric_matched_total", "counter", "Events a metric's filter matched.",
         [(_labels(metric=r.metric), r.matched) for r in routes]),
        ("metric_rejected_total", "counter", "Events a metric could not write.",
         [(_labels(metric=r.metric), r.rejected) for r in routes]),
    ]  # fmt: skip


def _exporter_families(pipeline: Pipeline[Exporter]) -> list[Family]:
    exporters = _exporters(pipeline)
    families: list[Family] = [
        (name, kind, help_text, [(_labels(exporter=n), value(e)) for n, e in exporters])
        for name, kind, help_text, value in _EXPORTER_SERIES
    ]
    dropped: Family = (
        "exporter_dropped_total",
        "counter",
        "Events dropped, by reason.",
        [
            (_labels(exporter=n, reason=reason), count)
            for n, e in exporters
            for reason, count in sorted(e.stats.dropped.items())
        ],
    )
    families.insert(4, dropped)  # after dead_lettered, where it has always been
    return families


def _endpoint_families(pipeline: Pipeline[Exporter]) -> list[Family]:
    """Per URL of an http exporter that has several (failover): its requests by outcome,
    the moves away from it, the returns to the primary, and which one is in use."""
    found = [
        (name, endpoints)
        for name, exporter in _exporters(pipeline)
        if (endpoints := exporter.endpoints) is not None and endpoints.several
    ]
    return [
        ("http_endpoint_requests_total", "counter",
         "Requests to each URL of an http exporter with several, by outcome (ok: 2xx; "
         "retryable: the next attempt went to the next URL; permanent).",
         [(_labels(exporter=n, url=s.url, outcome=outcome), s.requests[outcome])
          for n, e in found for s in e.stats for outcome in OUTCOMES]),
        ("http_endpoint_failovers_total", "counter",
         "Times a retryable failure at a URL moved the requests to the next one.",
         [(_labels(exporter=n, url=s.url), s.failovers) for n, e in found for s in e.stats]),
        ("http_endpoint_failbacks_total", "counter",
         "Times the requests went back to the primary URL after failback_after.",
         [(_labels(exporter=n, url=e.stats[0].url), e.stats[0].failbacks) for n, e in found]),
        ("http_endpoint_active", "gauge",
         "1 for the URL requests go to now, 0 for the others.",
         [(_labels(exporter=n, url=s.url), int(i == e.active))
          for n, e in found for i, s in enumerate(e.stats)]),
    ]  # fmt: skip


def _source_families(sources: Mapping[str, object]) -> list[Family]:
    counts = {name: getattr(source, "counts", None) for name, source in sources.items()}
    return [
        ("source_events_total", "counter", "Events a source read and handed on.",
         [(_labels(source=n), getattr(c, "events", 0)) for n, c in counts.items()]),
        ("source_rejected_lines_total", "counter", "Input a source could not read.",
         [(_labels(source=n), getattr(c, "rejected_lines", 0)) for n, c in counts.items()]),
        ("source_connections_refused_total", "counter",
         "Connections a source closed at once, over its connection caps.",
         [(_labels(source=n), refused) for n, source in sources.items()
          if (refused := _refused_connections(source)) is not None]),
        ("source_refused_total", "counter", "Requests a source answered 4xx/5xx, by status.",
         [(_labels(source=n, status=str(status)), count) for n, source in sources.items()
          for status, count in sorted(getattr(source, "refused", {}).items())]),
        ("source_messages_acked_total", "counter",
         "Messages a source acknowledged once their events were delivered (nats).",
         [(_labels(source=n), getattr(c, "acked", 0)) for n, c in counts.items()
          if hasattr(c, "acked")]),
        ("source_messages_unacked", "gauge",
         "Messages a source holds, their events not delivered yet (nats).",
         [(_labels(source=n), unacked) for n, source in sources.items()
          if isinstance(unacked := getattr(source, "unacked", None), int)]),
    ]  # fmt: skip


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
