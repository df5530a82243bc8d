"""The catalog's data from the source documents (run by ``scripts/build_catalog.py``).

The Dovecot 2.4 reStructuredText list of events is the reference: every event in it, with
its section, description, versions and fields, where an event's fields are the global
fields, then its own, then those of each field group or event its ``:inherit:`` option
names, in order and recursively; the first definition of a name wins, so an event's own
description of a field overrides an inherited one. The other documents add what it lacks:

* the documentation site's rendering (a newer revision of the same list) adds the events
  and categories the source does not have, with the site's text as it is;
* the Dovecot 2.3 wiki adds each event's 2.3 fields (``fields_v23``; 2.3 named several
  differently, e.g. ``bytes_in``), and the events 2.4 no longer lists;
* the events design page says ``mail`` is under ``mailbox`` (see ``design_parents``);
* each field's kind (number, string, timestamp, string list) is read from its name and
  descriptions where they say it (``exporter.catalog.kinds``);
* Stalwart's page gives its events, their levels and the key types.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

from exporter.catalog.build import dovecot_rst, dovecot_site, dovecot_wiki, stalwart_md
from exporter.catalog.kinds import Kind, field_kind
from exporter.catalog.model import Catalog

FORMAT = Catalog.FORMAT

DOVECOT_24 = "dovecot-2.4"
DOVECOT_24_SITE = "dovecot-2.4-site"
DOVECOT_23 = "dovecot-2.3"
DOCUMENTS = {
    DOVECOT_24: "Dovecot 2.4 list of events (reStructuredText source)",
    DOVECOT_24_SITE: "Dovecot 2.4 list of events as rendered by the documentation site",
    DOVECOT_23: "Dovecot 2.3 wiki list of events",
    "dovecot-design": "Dovecot events design",
    "stalwart": "Stalwart events",
}

# "mail category has parent mailbox, which has parent storage."
_DESIGN_PARENT = re.compile(
    r"(\w[\w-]*) category has parent (\w[\w-]*)(?:, which has parent (\w[\w-]*))?"
)


@dataclass
class Sources:
    """The text of each document."""

    dovecot_rst: str
    dovecot_site: str
    dovecot_wiki: str
    dovecot_design: str
    stalwart: str


@dataclass
class Report:
    """What a build found, for the script to print."""

    warnings: list[str] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    site_field_sets_equal: int = 0
    site_field_set_differences: dict[str, tuple[list[str], list[str]]] = field(
        default_factory=dict
    )  # event -> (only in the source, only on the site)


def design_parents(text: str) -> dict[str, str]:
    parents: dict[str, str] = {}
    for match in _DESIGN_PARENT.finditer(text):
        parents[match[1]] = match[2]
        if match[3]:
            parents[match[2]] = match[3]
    return parents


def build(sources: Sources) -> tuple[dict[str, Any], Report]:
    report = Report()
    rst = dovecot_rst.parse(sources.dovecot_rst)
    site = dovecot_site.parse(sources.dovecot_site)
    wiki = dovecot_wiki.parse(sources.dovecot_wiki)
    stalwart = stalwart_md.parse(sources.stalwart)
    for name, warnings in (
        (DOVECOT_24, rst.warnings),
        (DOVECOT_24_SITE, site.warnings),
        (DOVECOT_23, wiki.warnings),
        ("stalwart", stalwart.warnings),
    ):
        report.warnings.extend(f"{name}: {warning}" for warning in warnings)

    events = rst_events(rst, report)
    site_events = {event.name: event for event in site.events}
    for name, entry in events.items():
        on_site = site_events.get(name)
        if on_site is not None:
            _compare(name, list(entry["fields"]), list(on_site.fields), report)
    for event in site.events:
        if event.name in events:
            events[event.name]["docs"].append(DOVECOT_24_SITE)
            continue
        report.notes.append(f"{event.name}: only on the site, taken from it")
        events[event.name] = {
            "section": None,
            "description": _site_description(event.description),
            "added": event.added,
            "fields": event.fields,
            "field_versions": event.field_versions,
            "docs": [DOVECOT_24_SITE],
        }
    for wiki_event in wiki.events:
        if wiki_event.name not in events:
            report.notes.append(f"{wiki_event.name}: only in the 2.3 wiki, taken from it")
            events[wiki_event.name] = {
                "section": wiki_event.section,
                "description": "\n".join(wiki_event.notes),
                "added": wiki_event.added,
                "fields": {},
                "docs": [],
            }
        entry = events[wiki_event.name]
        entry["docs"].append(DOVECOT_23)
        entry["fields_v23"] = wiki_event.fields

    global_fields = {f.name: f.description for f in rst.global_fields}
    data: dict[str, Any] = {
        "format": FORMAT,
        "documents": DOCUMENTS,
        "dovecot": {
            "global_fields": global_fields,
            "categories": _categories(rst, site, sources.dovecot_design, report),
            "events": {name: _compact(events[name]) for name in sorted(events)},
            "field_kinds": _field_kinds(global_fields, events.values()),
        },
        "stalwart": stalwart_data(stalwart),
    }
    return data, report


def rst_events(rst: dovecot_rst.Document, report: Report) -> dict[str, dict[str, Any]]:
    """The events of the 2.4 list, as the data file holds them."""
    events: dict[str, dict[str, Any]] = {}
    resolved = _resolve(rst, report)
    for block in rst.events:
        fields = resolved[block.name]
        events[block.name] = {
            "section": block.section,
            "description": block.description,
            "added": block.added,
            "changed": block.changed,
            "removed": block.removed,
            "inherits": block.inherits,
            "fields": {f.name: f.description for f in fields},
            "field_versions": {f.name: f.versions for f in fields if f.versions},
            "docs": [DOVECOT_24],
        }
    return events


def _field_kinds(
    global_fields: dict[str, str], events: Iterable[dict[str, Any]]
) -> dict[str, Kind]:
    """Each Dovecot field whose kind its name or every description gives (see ``kinds``)."""
    descriptions: dict[str, list[str]] = {name: [text] for name, text in global_fields.items()}
    for entry in events:
        for fields in (entry.get("fields", {}), entry.get("fields_v23", {})):
            for name, text in fields.items():
                descriptions.setdefault(name, []).append(text)
    kinds = {name: field_kind(name, texts) for name, texts in sorted(descriptions.items())}
    return {name: kind for name, kind in kinds.items() if kind is not None}


def stalwart_data(doc: stalwart_md.StalwartDocument) -> dict[str, Any]:
    """Stalwart's part of the data file."""
    return {
        "levels": doc.levels,
        "key_types": doc.key_types,
        "events": {
            event_id: {"description": description, "level": level}
            for event_id, (description, level) in doc.events.items()
        },
    }


def _compact(entry: dict[str, Any]) -> dict[str, Any]:
    """Without the keys whose value is None or empty, to keep the data file small."""
    return {key: value for key, value in entry.items() if value not in (None, "", [], {})}


def _resolve(doc: dovecot_rst.Document, report: Report) -> dict[str, list[dovecot_rst.FieldDef]]:
    """Each event's fields: global, own, then inherited (field groups or events)."""
    blocks = {block.name: block for block in doc.events}
    for name in doc.groups.keys() & blocks.keys():
        report.warnings.append(f"{DOVECOT_24}: {name} is both a field group and an event")

    def fields_of(block: dovecot_rst.Block, seen: tuple[str, ...]) -> list[dovecot_rst.FieldDef]:
        found = list(block.fields)
        for parent in block.inherits:
            source = doc.groups.get(parent) or blocks.get(parent)
            if source is None:
                report.warnings.append(f"{DOVECOT_24}: {block.name} inherits unknown {parent}")
            elif parent in seen:
                report.warnings.append(f"{DOVECOT_24}: inherit loop {' > '.join(seen)}")
            else:
                found.extend(fields_of(source, (*seen, parent)))
        return found

    result: dict[str, list[dovecot_rst.FieldDef]] = {}
    for block in doc.events:
        first: dict[str, dovecot_rst.FieldDef] = {}
        for fdef in [*doc.global_fields, *fields_of(block, (block.name,))]:
            first.setdefault(fdef.name, fdef)
        result[block.name] = list(first.values())
    return result


def _compare(name: str, source: list[str], site: list[str], report: Report) -> None:
    if set(source) == set(site):
        report.site_field_sets_equal += 1
    else:
        report.site_field_set_differences[name] = (
            [f for f in source if f not in site],
            [f for f in site if f not in source],
        )


def _site_description(lines: list[str]) -> str:
    """The site's description lines, with its note title (on a line of its own, or glued to
    the end of the line before: "...its metadata.Note") joined to the note."""
    out: list[str] = []
    note = False
    for line in lines:
        if line == "Note" or line.endswith(".Note"):
            if line != "Note":
                out.append(line.removesuffix("Note"))
            note = True
            continue
        out.append(f"Note: {line}" if note else line)
        note = False
    return "\n".join(out)


def _categories(
    rst: dovecot_rst.Document, site: dovecot_site.SiteDocument, design: str, report: Report
) -> dict[str, dict[str, Any]]:
    tree: dict[str, dict[str, Any]] = {
        c.name: {"parent": c.parent, "description": c.description} for c in rst.categories
    }
    for name, design_parent in design_parents(design).items():
        entry = tree.get(name)
        if entry is not None and entry["parent"] != design_parent:
            report.notes.append(
                f"category {name}: parent {design_parent} (events design),"
                f" not {entry['parent']} ({DOVECOT_24}'s table)"
            )
            entry["parent"] = design_parent
    for name, description, site_parent in site.categories:
        entry = tree.get(name)
        if entry is None:
            report.notes.append(f"category {name}: only on the site, taken from it")
            tree[name] = {"parent": site_parent, "description": description}
        elif entry["parent"] != site_parent:
            report.warnings.append(
                f"category {name}: parent {entry['parent']} here, {site_parent} on the site"
            )
    return {name: _compact(tree[name]) | {"parent": tree[name]["parent"]} for name in tree}


def dumps(data: dict[str, Any]) -> str:
    """The data as JSON for the data file: one line per event, category, field or key
    (nested objects open up to that depth, everything inside them on the line)."""

    def write(value: Any, depth: int, indent: str) -> str:
        if not isinstance(value, dict) or depth >= 3 or not value:
            return json.dumps(value, ensure_ascii=False, separators=(",", ":"))
        inner = indent + " "
        items = [f"{inner}{json.dumps(k)}: {write(v, depth + 1, inner)}" for k, v in value.items()]
        return "{\n" + ",\n".join(items) + "\n" + indent + "}"

    return write(data, 0, "") + "\n"
