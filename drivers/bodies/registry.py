"""Every value of ``[exporter.NAME.http] body``: how its Body is made, and the table of
its own settings, if it has one (the settings of that table are declared in
:mod:`exporter.config.settings`, landing in ``options``)."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from drivers.bodies import Body, BodyContext, loki, plain, splunk_hec


@dataclass(frozen=True, slots=True)
class BodyKind:
    name: str
    make: Callable[[BodyContext], Body] | None
    """None: ``single``, which the driver sends itself, one request per event."""
    doc: str
    table: str | None = None
    """Its settings' table, ``[exporter.NAME.<table>]``; None: it has none."""
    options: type | None = None
    """The dataclass that table's settings land in (made with its defaults when the
    table is absent)."""
    json_only: bool = False
    """Needs json events (``--format json``)."""


KINDS: dict[str, BodyKind] = {
    kind.name: kind
    for kind in (
        BodyKind("ndjson", plain.ndjson, "one event per line"),
        BodyKind("json-array", plain.json_array, "[e1,e2,...]", json_only=True),
        BodyKind("single", None, "Dovecot's: one event per request"),
        BodyKind(
            "loki",
            loki.loki,
            "Grafana Loki's push API, JSON",
            table="loki",
            options=loki.LokiSettings,
            json_only=True,
        ),
        BodyKind(
            "splunk-hec",
            splunk_hec.splunk_hec,
            "Splunk's HTTP Event Collector",
            table="splunk",
            options=splunk_hec.SplunkSettings,
            json_only=True,
        ),
    )
}
"""The bodies, in the order ``check`` and the docs list them."""


def body_tables() -> dict[str, tuple[BodyKind, ...]]:
    """Each settings table, with the bodies that read it."""
    tables: dict[str, tuple[BodyKind, ...]] = {}
    for kind in KINDS.values():
        if kind.table is not None:
            tables[kind.table] = (*tables.get(kind.table, ()), kind)
    return tables
