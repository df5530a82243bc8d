"""Dovecot 2.4's list of events as written (reStructuredText with Dovecot's own directives).

What the document is made of, and how each part is read:

* Section titles: a title line under- (``====``, ``----``) or over- and underlined
  (``####``, ``****``) at column 0; levels go by the order the styles first appear, as in
  reStructuredText. An event's section is the path of titles below the page title
  (``Events / IMAP / IMAP Command``).
* ``.. dropdown:: <Group> Categories`` blocks holding a ``list-table`` of category and
  description. Rows of ``Root Categories`` have no parent; in the other tables the row
  described as a "parent category" is the parent of the other rows.
* ``.. dovecot_event:field_global::``: the fields every event has.
* ``.. dovecot_event:field_group:: <name>``: fields shared by events, with ``:inherit:``.
* ``.. dovecot_core:event:: <name>``: an event, with options ``:added:``, ``:removed:``
  and ``:inherit:`` (comma-separated field groups or events), then ``:field`` items
  (``:field <name>: text`` or ``:field <name> @added;<versions>: text``), then its
  description.
* A ``list-table`` at column 0 right after an event holds the values of the event's
  field that refers to "the table below" (``login_aborted``'s ``reason``).
* Everything else at column 0 (introductions, notes, comments such as the commented-out
  ``POP3`` title, so its event stays under ``HTTP Server``) belongs to no event.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field

from exporter.catalog.build.rst import (
    Rendered,
    block_end,
    dedent_block,
    first_known_indented,
    list_table,
    render,
    row_text,
    versions,
)

_ADORNMENT = re.compile(r"([=\-*#~^])\1+")
_EXPLICIT = re.compile(r"\.\.(?: |$)")
_DIRECTIVE = re.compile(r"\.\. ([\w:-]+)::(?: +(.*))?")
_OPTION = re.compile(r":([\w-]+):(?: +(.*))?")
_FIELD = re.compile(r":field +([^\s:@]+)(?: +@(\w+);(\S+?))?:(?: +(.*))?")

EVENT = "dovecot_core:event"
GROUP = "dovecot_event:field_group"
GLOBAL = "dovecot_event:field_global"


@dataclass
class FieldDef:
    name: str
    description: str
    versions: str | None  # "added v2.3.12; changed v2.4.0, v3.0.0"


@dataclass
class Block:
    """An event, a field group or the global fields, as the document writes it."""

    kind: str
    name: str
    line: int  # 1-based, for messages
    section: str | None = None
    added: str | None = None
    removed: str | None = None
    changed: str | None = None
    inherits: list[str] = field(default_factory=list)
    fields: list[FieldDef] = field(default_factory=list)
    description: str = ""


@dataclass
class DocumentedCategory:
    name: str
    description: str
    parent: str | None


@dataclass
class Document:
    events: list[Block] = field(default_factory=list)
    groups: dict[str, Block] = field(default_factory=dict)
    global_fields: list[FieldDef] = field(default_factory=list)
    categories: list[DocumentedCategory] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)


def parse(text: str) -> Document:
    doc = Document()
    lines = text.splitlines()
    styles: list[tuple[str, bool]] = []  # title styles in order of first appearance
    titles: list[str] = []
    after_event: Block | None = None  # the event just read, if nothing came after it yet
    i = 0
    while i < len(lines):
        line = lines[i]
        if not line.strip() or line[0] == " ":
            i += 1
            continue
        title = _title(lines, i)
        if title is not None:
            style, text_, consumed = title
            if style not in styles:
                styles.append(style)
            level = styles.index(style)
            titles[level:] = [text_]
            i += consumed
            after_event = None
            continue
        if _EXPLICIT.match(line):
            end = block_end(lines, i + 1, 0)
            if after_event is not None and line.strip() == ".. list-table::":
                _table_below(doc, after_event, lines[i + 1 : end])
            else:
                events = len(doc.events)
                _explicit(doc, line, lines[i + 1 : end], i + 1, " / ".join(titles[1:]) or None)
                after_event = doc.events[-1] if len(doc.events) > events else None
            i = end
            continue
        after_event = None  # a paragraph between sections
        i += 1
    return doc


def _table_below(doc: Document, event: Block, lines: list[str]) -> None:
    """A ``list-table`` right after an event, outside it (``login_aborted``'s reasons):
    the rows go to the event's field that refers to "the table below"."""
    referring = [f for f in event.fields if "table below" in f.description]
    out = Rendered()
    rows = [row_text(cells) for cells in list_table(lines, out)]
    if len(referring) != 1 or not rows:
        doc.warnings.append(f"{event.name}: a table after it that no field refers to")
        return
    referring[0].description += "\n" + "\n".join(rows)


def _title(lines: list[str], i: int) -> tuple[tuple[str, bool], str, int] | None:
    """``((char, overlined), title, lines used)`` if a section title starts at line i."""
    line = lines[i]
    nxt = lines[i + 1] if i + 1 < len(lines) else ""
    over = _ADORNMENT.fullmatch(line)
    if over and i + 2 < len(lines) and lines[i + 2] == line and nxt.strip():
        return (line[0], True), nxt.strip(), 3
    under = _ADORNMENT.fullmatch(nxt)
    if not over and under and len(nxt) >= len(line.rstrip()) and not _EXPLICIT.match(line):
        return (nxt[0], False), line.strip(), 2
    return None


def _explicit(doc: Document, first: str, body: list[str], line: int, section: str | None) -> None:
    match = _DIRECTIVE.fullmatch(first)
    if match is None:  # a comment (".." or ".. text") or a target (".. _name:")
        return
    name, argument = match[1], (match[2] or "").strip()
    if name == "dropdown" and argument.endswith("Categories"):
        _categories(doc, argument, body)
    elif name in (EVENT, GROUP, GLOBAL):
        block = _block(doc, name, argument, body, line, section)
        if name == EVENT:
            doc.events.append(block)
        elif name == GROUP:
            if argument in doc.groups:
                doc.warnings.append(f"line {line}: field group {argument} defined again")
            doc.groups[argument] = block
        else:
            doc.global_fields.extend(block.fields)


def _block(
    doc: Document, kind: str, name: str, lines: list[str], line: int, section: str | None
) -> Block:
    block = Block(kind, name, line, section=section if kind == EVENT else None)
    body = dedent_block(lines)
    # Options: the lines right under the directive, up to the first blank line.
    while body and body[0].strip():
        option = _OPTION.fullmatch(body[0].strip())
        if option is None or option[1] == "field":
            break
        _option(doc, block, option[1], option[2] or "")
        body = body[1:]
    description: list[str] = []
    rendered = Rendered()
    seen: set[str] = set()
    i = 0
    while i < len(body):
        text = body[i]
        end = block_end(body, i + 1, 0) if text.strip() else i + 1
        item = _FIELD.fullmatch(text) if text.startswith(":field ") else None
        if item is not None:
            fdef = _field(item, body[i + 1 : end], doc)
            if fdef.name in seen:
                doc.warnings.append(
                    f"line {line}: {name}: field {fdef.name} is listed again"
                    f" ({fdef.description!r}); the first one is kept"
                )
            else:
                seen.add(fdef.name)
                block.fields.append(fdef)
            description.append("")
        elif text.startswith(":field"):
            doc.warnings.append(f"line {line}: {name}: cannot read {text!r}")
        else:
            description.extend(body[i:end])
        i = end
    render(description, rendered)
    block.description = rendered.text
    changes = [version for kind_, version in rendered.versions if kind_ == "changed"]
    block.changed = ", ".join(changes) or None
    doc.warnings.extend(f"line {line}: {name}: {w}" for w in rendered.warnings)
    return block


def _option(doc: Document, block: Block, name: str, value: str) -> None:
    if name == "inherit":
        block.inherits = [part.strip() for part in value.split(",") if part.strip()]
    elif name in ("added", "removed"):
        version, note = versions(value)
        setattr(block, name, f"{version} ({note})" if note else version)
    else:
        doc.warnings.append(f"line {block.line}: {block.name}: option :{name}: ignored")


def _field(match: re.Match[str], rest: list[str], doc: Document) -> FieldDef:
    name, kind, annotated, first = match[1], match[2], match[3], match[4] or ""
    rendered = render(first_known_indented(first, rest))
    doc.warnings.extend(f"field {name}: {w}" for w in rendered.warnings)
    notes = [f"{kind} {versions(annotated)[0]}"] if kind else []
    notes.extend(f"{k} {v}" for k, v in rendered.versions)
    return FieldDef(name, rendered.text, "; ".join(notes) or None)


def _categories(doc: Document, title: str, lines: list[str]) -> None:
    body = dedent_block(lines)
    rows: list[tuple[str, str]] = []
    for i, text in enumerate(body):
        match = _DIRECTIVE.fullmatch(text.strip())
        if match and match[1] == "list-table":
            out = Rendered()
            end = block_end(body, i + 1, 0)
            for cells in list_table(body[i + 1 : end], out):
                if len(cells) == 2:
                    rows.append((cells[0], cells[1]))
                else:
                    doc.warnings.append(f"{title}: row {cells!r} is not category, description")
    if title == "Root Categories":
        parent = None
    else:
        parents = [name for name, text in rows if "parent category" in text]
        if len(parents) != 1:
            doc.warnings.append(f"{title}: no single parent category row in {rows!r}")
            return
        parent = parents[0]
    known = {category.name for category in doc.categories}
    for name, text in rows:
        if name == parent and name in known:  # e.g. "storage" heads two tables
            continue
        doc.categories.append(DocumentedCategory(name, text, None if name == parent else parent))
