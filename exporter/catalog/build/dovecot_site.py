"""Dovecot 2.4's list of events as the documentation site renders it, saved as text.

The rendering flattens the page to lines and drops every inline literal (``Examples:
``imap``, ``pop3``...`` became ``Examples:``), so its text is kept only where the
reStructuredText source says nothing. What the text is made of:

* a few lines of page furniture (``Search``, ``Appearance``) before the first event;
* per event, in alphabetical order: its name alone on a line; ``Added: <version>`` lines;
  description lines; a table header ``Field | Description |`` (sometimes glued to the end
  of the last description line, once followed by empty cells ``| ||||``), the separator
  ``---|---|``, then rows ``<field> | <description> |``. A row's description may run
  over several lines up to a line that ends with ``|``, or be empty (``passdb_name |``
  then a line ``|``);
* after the last event, the categories table ``Category | Description | Category Type |``
  (the type is ``root`` or the parent category) and then the event reasons table.

Every event has a table (it at least lists the global fields), so a name line is where a
table ends. Inside a description, a name alone on a line is a rendered link (``defined
by\\nfts_dovecot_max_triplets\\n.``), not an event.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field

from exporter.catalog.build.rst import versions

_NAME = re.compile(r"[a-z][a-z0-9_]*")
_TABLE = re.compile(r"(.*?)Field \| Description \|[ |]*")
_ROW = re.compile(r"([a-z][a-z0-9_<>]*) \|(.*)")
_SEPARATOR = re.compile(r"-{3}(?:\|-{3})*\|")
_CATEGORIES = "Category | Description | Category Type |"
_REASONS = "Reason | Description |"
# Version notes the rendering leaves inside a cell, e.g. "Name of the service. Examples:
# Added: 3.0.0" or "Amount of data read, in bytes. Changed: 3.0.0 This was previously".
_CELL_VERSION = re.compile(r"\s*\b(Added|Changed|Removed): (\d+(?:\.\d+)+)\b.*")


@dataclass
class SiteEvent:
    name: str
    line: int
    added: str | None = None
    description: list[str] = field(default_factory=list)
    fields: dict[str, str] = field(default_factory=dict)
    field_versions: dict[str, str] = field(default_factory=dict)


@dataclass
class SiteDocument:
    events: list[SiteEvent] = field(default_factory=list)
    categories: list[tuple[str, str, str | None]] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)


def parse(text: str) -> SiteDocument:
    doc = SiteDocument()
    state = "preamble"
    event: SiteEvent | None = None
    row: list[str] = []  # the lines of the row being read

    def end_row() -> None:
        if event is not None and row:
            _add_row(doc, event, " ".join(row))
        row.clear()

    for number, raw in enumerate(text.splitlines(), 1):
        line = raw.strip()
        if state == "preamble":
            if _NAME.fullmatch(line):
                state, event = "description", SiteEvent(line, number)
                doc.events.append(event)
            continue
        if state == "categories":
            if line == _REASONS:
                break
            cells = [cell.strip() for cell in line.split("|")]
            if len(cells) == 4 and not _SEPARATOR.fullmatch(line):
                name, description, kind = cells[:3]
                parent = None if kind in ("root", name) else kind  # "sql" is of type "sql"
                doc.categories.append((name, description, parent))
            continue
        assert event is not None
        if state == "description":
            table = _TABLE.fullmatch(line)
            if table:
                if table[1].strip():
                    event.description.append(table[1].strip())
                state = "table"
            elif line.startswith("Added: "):
                event.added = versions(line.removeprefix("Added: "))[0]
            elif line:
                event.description.append(line)
            continue
        # state == "table"
        if _SEPARATOR.fullmatch(line):
            continue
        if line == _CATEGORIES:
            end_row()
            state = "categories"
        elif _NAME.fullmatch(line) and not row:
            state, event = "description", SiteEvent(line, number)
            doc.events.append(event)
        elif _ROW.match(line) and not row:
            row.append(line)
            if line.endswith("|"):
                end_row()
        elif row or line.startswith("|"):
            if not row:  # "passdb_name |" then "|": the end of the row just read
                continue
            row.append(line)
            if line.endswith("|"):
                end_row()
        else:
            doc.warnings.append(f"line {number}: {event.name}: cannot read {line!r}")
    names = [e.name for e in doc.events]
    if names != sorted(names):
        doc.warnings.append("events are not in alphabetical order: a name line was misread")
    return doc


def _add_row(doc: SiteDocument, event: SiteEvent, text: str) -> None:
    match = _ROW.fullmatch(text)
    if match is None:
        doc.warnings.append(f"{event.name}: cannot read row {text!r}")
        return
    name = match[1]
    description = re.sub(r"[\s|]+$", "", match[2]).strip()
    version = _CELL_VERSION.search(description)
    if version:
        description = description[: version.start()].strip()
        event.field_versions[name] = f"{version[1].lower()} v{version[2]}"
    if name in event.fields:
        doc.warnings.append(f"{event.name}: field {name} listed again")
        return
    event.fields[name] = description
