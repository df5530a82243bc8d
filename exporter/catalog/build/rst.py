"""The reStructuredText that Dovecot's list of events is written in, turned into plain text.

Only what that document uses: sections (over- and underlined titles), explicit markup
blocks (``.. name:: argument`` directives and ``..`` comments), paragraphs, ``*`` bullet
lists, ``list-table`` and simple (``===``) tables, ``note`` / ``todo`` /
``versionadded`` / ``versionchanged`` directives, and inline ````literal````,
``:role:`text <target>``` and ``:role:`target``` markup.

Plain text keeps the document's structure in lines: one line per paragraph, ``- `` per
list item or table row (nested content indented by two spaces), ``Note: ...`` and
``Changed in v2.4.0, v3.0.0: ...`` for those directives; ``todo`` (notes to the document's
authors) is dropped.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field

# ``:role:`text <target>``` or ``:role:`target```, for :ref:, :dovecot_core:ref: and the like.
_ROLE = re.compile(r":(?:[\w-]+:)+`([^`<]*?)\s*(?:<([^>`]*)>)?`")
_LITERAL = re.compile(r"``(.+?)``")
# A version directive's argument starts with versions, e.g. ``v2.4.0;v3.0.0`` or ``2.3.14``.
_VERSIONS = re.compile(r"v?\d+(?:\.\d+)+(?:\s*[,;]\s*v?\d+(?:\.\d+)+)*")
_SIMPLE_TABLE_BORDER = re.compile(r"=+(?: +=+)+")
_DIRECTIVE = re.compile(r"\.\. ([\w:-]+)::(?: +(.*))?")
_VERSION_DIRECTIVES = {"versionadded": "added", "versionchanged": "changed"}


def indent_of(line: str) -> int:
    return len(line) - len(line.lstrip(" "))


def inline(text: str) -> str:
    """Inline markup to plain text: ````x```` is x, ``:ref:`text <target>``` is text."""
    text = _ROLE.sub(lambda m: m[1] or m[2] or "", text)
    return _LITERAL.sub(r"\1", text)


def versions(text: str) -> tuple[str, str]:
    """``"v2.4.0;v3.0.0 Some note"`` -> ``("v2.4.0, v3.0.0", "Some note")``.

    The documents separate the versions of one change (Dovecot CE and Pro) with ``,`` or
    ``;`` interchangeably (``:removed: v2.4.0,v3.0.0``, ``:added: v2.4.0;v3.0.0``); both
    become ``", "``, and every version gets the ``v`` most of them are written with.
    """
    text = text.strip()
    match = _VERSIONS.match(text)
    if match is None:
        return "", text
    found = [v.strip() for v in re.split(r"[,;]", match[0])]
    normal = ", ".join(v if v.startswith("v") else f"v{v}" for v in found)
    return normal, text[match.end() :].strip()


def dedent_block(lines: list[str]) -> list[str]:
    """Remove the common indentation of the non-blank lines; drop blank lines at the ends."""
    while lines and not lines[-1].strip():
        lines = lines[:-1]
    while lines and not lines[0].strip():
        lines = lines[1:]
    if not lines:
        return []
    cut = min(indent_of(line) for line in lines if line.strip())
    return [line[cut:] if line.strip() else "" for line in lines]


def first_known_indented(first: str, rest: list[str]) -> list[str]:
    """A body whose first line follows a marker (``:field x: text``, ``.. note:: text``):
    as docutils reads it, that text is the body's first line at column 0 and the following
    lines are dedented by their own common indentation."""
    body = dedent_block(rest)
    return [first.strip(), *body] if first.strip() else body


def known_indented(first: str, rest: list[str], column: int) -> list[str]:
    """A list item's body: its first line's text, then the following lines less the item's
    text column (docutils reads bullet items this way, unlike field bodies)."""
    body = [first.strip()]
    body.extend(line[min(column, indent_of(line)) :] if line.strip() else "" for line in rest)
    return dedent_block(body)


def block_end(lines: list[str], start: int, indent: int) -> int:
    """The index after the block whose lines from ``start`` are blank or indented deeper
    than ``indent`` (the body of a directive, list item or field)."""
    end = start
    while end < len(lines) and (not lines[end].strip() or indent_of(lines[end]) > indent):
        end += 1
    return end


@dataclass
class Rendered:
    """Plain text lines, the versions of any ``version*`` directive met, and warnings."""

    lines: list[str] = field(default_factory=list)
    versions: list[tuple[str, str]] = field(default_factory=list)  # ("changed", "v2.3.11")
    warnings: list[str] = field(default_factory=list)

    @property
    def text(self) -> str:
        return "\n".join(self.lines)


def render(lines: list[str], out: Rendered | None = None) -> Rendered:
    """Plain text of a body of reStructuredText (see the module's docstring)."""
    out = Rendered() if out is None else out
    out.lines.extend(_render(dedent_block(lines), out))
    return out


def _is_bullet(stripped: str) -> bool:
    # The document's bullet lists all use "*". It also starts them right after a paragraph
    # line without the blank line reStructuredText wants ("Values:" then "* ``OK``"), so a
    # "*" line always starts an item. A "- " line, which it uses only inside list-table
    # rows and once as a continuation line of an item, is not a bullet here.
    return stripped == "*" or stripped.startswith("* ")


def _render(lines: list[str], out: Rendered) -> list[str]:
    text: list[str] = []
    i, n = 0, len(lines)
    while i < n:
        line = lines[i]
        stripped = line.strip()
        if not stripped:
            i += 1
            continue
        indent = indent_of(line)
        if _is_bullet(stripped):
            end = block_end(lines, i + 1, indent)
            body = _render(known_indented(stripped[2:], lines[i + 1 : end], indent + 2), out)
            text.extend(_item(body))
            i = end
        elif stripped.startswith(".. "):
            end = block_end(lines, i + 1, indent)
            text.extend(_directive(stripped, lines[i + 1 : end], out))
            i = end
        elif _SIMPLE_TABLE_BORDER.fullmatch(stripped):
            end = _simple_table_end(lines, i, indent)
            text.extend(_simple_table(lines[i:end]))
            i = end
        else:
            # A paragraph runs to a blank line, or to a line that starts a list item or a
            # directive: the document puts ".. versionchanged::" right under a paragraph.
            end = i + 1
            while end < n:
                after = lines[end].strip()
                if not after or _is_bullet(after) or after.startswith(".. "):
                    break
                end += 1
            text.append(inline(" ".join(" ".join(lines[i:end]).split())))
            i = end
    return text


def _item(body: list[str]) -> list[str]:
    if not body:
        return ["-"]
    return [f"- {body[0]}", *(f"  {line}" for line in body[1:])]


def _directive(first: str, rest: list[str], out: Rendered) -> list[str]:
    match = _DIRECTIVE.fullmatch(first)
    if match is None:  # ".. text" without "::" is a comment
        return []
    name, argument = match[1].lower(), match[2] or ""
    if name == "todo":  # notes to the document's authors, not about the event
        return []
    if name in _VERSION_DIRECTIVES:
        kind = _VERSION_DIRECTIVES[name]
        version, note = versions(argument)
        out.versions.append((kind, version))
        body = _render(first_known_indented(note, rest), out)
        label = f"{kind.capitalize()} in {version}"
        return [f"{label}: {body[0]}" if body else label, *body[1:]]
    if name == "note":
        body = _render(first_known_indented(argument, rest), out)
        return [f"Note: {body[0]}", *body[1:]] if body else []
    if name == "list-table":
        return [row_text(cells) for cells in list_table(rest, out)]
    out.warnings.append(f"directive {name!r} rendered as its text")
    return _render(first_known_indented(argument, rest), out)


def row_text(cells: list[str]) -> str:
    """A table row as a list item: ``- first cell: second cell``."""
    return "- " + ": ".join(cell.replace("\n", " ") for cell in cells)


def list_table(lines: list[str], out: Rendered) -> list[list[str]]:
    """The rows of a ``list-table`` body (options, then ``* - cell`` / ``  - cell``), each a
    list of rendered cells, without the ``:header-rows:`` rows."""
    body = dedent_block(lines)
    header_rows = 0
    while body and body[0].startswith(":"):
        option = re.fullmatch(r":header-rows:\s*(\d+)", body[0].strip())
        if option:
            header_rows = int(option[1])
        body = body[1:]
    body = dedent_block(body)
    rows: list[list[str]] = []
    i = 0
    while i < len(body):
        if not body[i].strip():
            i += 1
            continue
        if not body[i].startswith("* "):
            out.warnings.append(f"list-table: unexpected line {body[i]!r}")
            i += 1
            continue
        end = block_end(body, i + 1, 0)
        row = known_indented(body[i][2:], body[i + 1 : end], 2)
        cells: list[str] = []
        j = 0
        while j < len(row):
            if not row[j].startswith("- ") and row[j] != "-":
                j += 1
                continue
            cell_end = block_end(row, j + 1, 0)
            rendered = _render(known_indented(row[j][2:], row[j + 1 : cell_end], 2), out)
            cells.append("\n".join(rendered))
            j = cell_end
        rows.append(cells)
        i = end
    return rows[header_rows:]


def _simple_table_end(lines: list[str], start: int, indent: int) -> int:
    """A simple table is a top border, header rows, a border, rows and a bottom border."""
    borders = 0
    i = start
    while i < len(lines):
        if _SIMPLE_TABLE_BORDER.fullmatch(lines[i].strip()) and indent_of(lines[i]) == indent:
            borders += 1
            if borders == 3:
                return i + 1
        i += 1
    return i


def _simple_table(lines: list[str]) -> list[str]:
    """Rows after the header as ``- first column: other columns``; a row whose first column
    is empty continues the row above it."""
    border = lines[0]
    spans = [(m.start(), m.end()) for m in re.finditer(r"=+", border)]
    rows: list[list[str]] = []
    borders = 0
    for line in lines:
        if _SIMPLE_TABLE_BORDER.fullmatch(line.strip()):
            borders += 1
            continue
        if borders < 2 or not line.strip():  # the header, or spacing
            continue
        cells = [
            line[start:end].strip() if i < len(spans) - 1 else line[start:].strip()
            for i, (start, end) in enumerate(spans)
        ]
        if cells[0] or not rows:
            rows.append(cells)
        else:
            rows[-1] = [f"{old} {new}".strip() for old, new in zip(rows[-1], cells, strict=True)]
    return [row_text([inline(cell) for cell in row]) for row in rows]
