"""Events and categories of the catalog as text to print and as JSON-able data."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from exporter.catalog.model import Catalog, CatalogEvent, DovecotEvent, StalwartEvent, load_catalog

_NAME_WIDTH = 44  # longer names push their line's description right, not every line's


def describe_events(
    events: Sequence[CatalogEvent], *, fields: bool, catalog: Catalog | None = None
) -> str:
    """Text for ``events``: a line each (name, then level or version notes, then the
    first line of the description), or every detail when ``fields`` is set or there is a
    single event; ``fields`` adds each event's fields with their descriptions."""
    if not events:
        return ""
    if not fields and len(events) > 1:
        width = min(_NAME_WIDTH, max(len(event.name) for event in events))
        dovecot = [e for e in events if isinstance(e, DovecotEvent)]
        stalwart = [e for e in events if isinstance(e, StalwartEvent)]
        parts = [
            (f"{title}:\n" if dovecot and stalwart else "")
            + "".join(f"{_summary(event, width)}\n" for event in group)
            for title, group in (("Dovecot", dovecot), ("Stalwart (name, level)", stalwart))
            if group
        ]
        return "\n".join(parts)
    blocks = [_details(event, fields=fields) for event in events]
    text = "\n".join(blocks)
    if fields and any(isinstance(event, StalwartEvent) for event in events):
        keys = (catalog or load_catalog()).stalwart_key_types
        text += (
            "\nStalwart does not document which keys each event carries; an event may carry:"
            f"\n  {', '.join(keys)}\n"
        )
    return text


def as_json(events: Sequence[CatalogEvent], *, fields: bool) -> list[dict[str, Any]]:
    """JSON-able data for ``events``; ``fields`` adds each Dovecot event's fields."""
    return [_json(event, fields=fields) for event in events]


def describe_categories(names: Sequence[str], catalog: Catalog | None = None) -> str:
    """A line per Dovecot category: name, its parents (``< mailbox < storage``), description."""
    catalog = catalog or load_catalog()
    if not names:
        return ""
    width = min(_NAME_WIDTH, max(len(name) for name in names))
    lines = []
    for name in names:
        parents = "".join(f" < {parent}" for parent in catalog.category_path(name)[1:])
        description = catalog.category_descriptions.get(name, "").split("\n", 1)[0]
        lines.append(f"{name:<{width}}  {description}{parents and f'  ({parents[3:]})'}".rstrip())
    return "".join(f"{line}\n" for line in lines)


def categories_as_json(
    names: Sequence[str], catalog: Catalog | None = None
) -> list[dict[str, Any]]:
    """JSON-able data for Dovecot categories: name, parent, description."""
    catalog = catalog or load_catalog()
    return [
        {
            "name": name,
            "parent": catalog.categories.get(name),
            "description": catalog.category_descriptions.get(name, ""),
        }
        for name in names
    ]


def _summary(event: CatalogEvent, width: int) -> str:
    first = event.description.split("\n", 1)[0]
    if isinstance(event, StalwartEvent):
        return f"{event.name:<{width}}  {event.level:<7}  {first}".rstrip()
    notes = f"(removed {event.removed}) " if event.removed else ""
    if not event.fields and event.fields_v23:
        notes += "(Dovecot 2.3) "
    return f"{event.name:<{width}}  {notes}{first}".rstrip()


def _details(event: CatalogEvent, *, fields: bool) -> str:
    lines: list[str] = []
    if isinstance(event, StalwartEvent):
        lines.append(f"{event.name}  (stalwart, category {event.category}, level {event.level})")
        lines.append(f"  {event.description}")
        return "\n".join(lines) + "\n"
    where = f", {event.section}" if event.section else ""
    lines.append(f"{event.name}  (dovecot{where})")
    lines.extend(f"  {line}" for line in event.description.split("\n") if line)
    versions = [
        f"{label} {value}"
        for label, value in (
            ("added", event.added),
            ("changed", event.changed),
            ("removed", event.removed),
        )
        if value
    ]
    if versions:
        lines.append(f"  {'; '.join(versions)}")
    if event.inherits:
        lines.append(f"  inherits: {', '.join(event.inherits)}")
    lines.append(f"  documented in: {', '.join(event.docs)}")
    if fields:
        if event.fields:
            lines.append("  fields:")
            lines.extend(_field_lines(event.fields, event.field_versions))
        only_v23 = {k: v for k, v in event.fields_v23.items() if k not in event.fields}
        if only_v23:
            lines.append("  fields in the Dovecot 2.3 wiki only:")
            lines.extend(_field_lines(only_v23, {}))
    return "\n".join(lines) + "\n"


def _field_lines(fields: dict[str, str], versions: dict[str, str]) -> list[str]:
    width = min(24, max(len(name) for name in fields))
    lines = []
    pad = " " * (4 + width + 2)
    for name, description in fields.items():
        text = description.split("\n") if description else [""]
        if name in versions:
            text[0] = f"{text[0]} [{versions[name]}]".lstrip()
        lines.append(f"    {name:<{width}}  {text[0]}".rstrip())
        lines.extend(f"{pad}{line}" for line in text[1:])
    return lines


def _json(event: CatalogEvent, *, fields: bool) -> dict[str, Any]:
    if isinstance(event, StalwartEvent):
        return {
            "source": event.source,
            "name": event.name,
            "category": event.category,
            "level": event.level,
            "description": event.description,
        }
    assert isinstance(event, DovecotEvent)
    data: dict[str, Any] = {
        "source": event.source,
        "name": event.name,
        "section": event.section,
        "description": event.description,
        "added": event.added,
        "changed": event.changed,
        "removed": event.removed,
        "inherits": list(event.inherits),
        "docs": list(event.docs),
    }
    if fields:
        data["fields"] = dict(event.fields)
        data["field_versions"] = dict(event.field_versions)
        data["fields_v23"] = dict(event.fields_v23)
    return data
