"""Stalwart's page of events (Markdown).

What the page is made of, and how each part is read:

* ``## Event Levels``: bullets ``- `level`: description``;
* ``## Event Types``: a table ``| Event | Description | Level |`` whose rows are
  ``|`event.id`|Description|`LEVEL`|``. Levels are written in capitals there and in lower
  case everywhere else on the page (the level list, ``auth.success = "debug"`` in the
  configuration example), so they are kept in lower case;
* ``## Key Types``: bullets ``- `keyName`: description``, the keys any event may carry
  (the page does not say which event carries which), then an empty copy of the table.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field

_HEADING = re.compile(r"(#{1,6}) +(.*?) *#*")
_BULLET = re.compile(r"- `([^`]+)`: *(.*)")
_SEPARATOR = re.compile(r"\|?(?: *:?-{3,}:? *\|)+ *:?-*:? *")


@dataclass
class StalwartDocument:
    levels: dict[str, str] = field(default_factory=dict)
    events: dict[str, tuple[str, str]] = field(default_factory=dict)  # id -> description, level
    key_types: dict[str, str] = field(default_factory=dict)
    warnings: list[str] = field(default_factory=list)


def cells(line: str) -> list[str]:
    """The cells of a table row ``| a | b |``, without the outer pipes."""
    inner = line.strip()
    inner = inner[1:] if inner.startswith("|") else inner
    inner = inner[:-1] if inner.endswith("|") else inner
    return [cell.strip() for cell in inner.split("|")]


def _code(cell: str) -> str:
    return cell[1:-1] if len(cell) > 1 and cell[0] == cell[-1] == "`" else cell


def parse(text: str) -> StalwartDocument:
    doc = StalwartDocument()
    section = ""
    fenced = False
    for number, raw in enumerate(text.splitlines(), 1):
        line = raw.strip()
        if line.startswith("```"):
            fenced = not fenced
            continue
        heading = None if fenced else _HEADING.fullmatch(line)
        if heading:
            section = heading[2]
            continue
        if fenced or not line:
            continue
        bullet = _BULLET.fullmatch(line)
        if section == "Event Levels" and bullet:
            doc.levels[bullet[1]] = bullet[2]
        elif section == "Key Types" and bullet:
            doc.key_types[bullet[1]] = bullet[2]
        elif line.startswith("|") and not _SEPARATOR.fullmatch(line):
            row = cells(line)
            if row == ["Event", "Description", "Level"]:
                continue
            if section != "Event Types" or len(row) != 3:
                doc.warnings.append(f"line {number}: row {line!r} outside the event table")
                continue
            event_id, description, level = _code(row[0]), row[1], _code(row[2]).lower()
            if event_id in doc.events:
                doc.warnings.append(f"line {number}: {event_id} listed again")
                continue
            doc.events[event_id] = (description, level)
    unknown = {level for _, level in doc.events.values()} - set(doc.levels)
    if unknown:
        doc.warnings.append(f"levels not in the level list: {sorted(unknown)}")
    return doc
