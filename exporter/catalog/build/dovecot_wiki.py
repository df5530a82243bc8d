"""The Dovecot 2.3 wiki's list of events, saved as a single line of text.

What the text is made of (its line breaks are gone):

* section titles: a title followed by a run of ``-`` (``=`` for the page title) exactly as
  long as it, e.g. ``HTTP ----`` or ``Authentication Server (v2.3.6) ------...``; a
  version in parentheses says when the section's events came;
* per event: its name in emphasis (``*auth_request_finished*``), two names sharing one
  list joined by ``and``, then bullets `` * `` of ``field: description`` (or ``a, b:
  description`` for two fields), of ``fields from *other_event*`` / ``Same fields as
  *other_event*``, or of prose; text between a name and its first bullet is a note;
* a footer ``(This file was created from the wiki on ...)``.

An emphasised name inside a bullet is a reference when the bullet has no ``field:`` part
yet and no reference yet (``fields from *client_connection_connected*``, ``The
*http_request_finished* is still being sent``); otherwise it is the next event's name
(``policy_result: ok, delayed, refused *auth_passdb_request_started*``).
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field

_TITLE_RULE = re.compile(r"(?<= )(-{3,}|={3,})(?= |$)")
_TOKEN = re.compile(r"\*([a-z][a-z0-9_]*)\*|(?<!\S)\*(?!\S)")
_FIELDS = re.compile(r"([a-z][a-z0-9_]*(?:, [a-z][a-z0-9_]*)*): (.*)", re.DOTALL)
_INHERIT = re.compile(r"(?:fields from|same fields as)\s*$", re.IGNORECASE)
_FOOTER = re.compile(r"\(This file was created from the wiki on [^)]*\)\s*$")
_SECTION_VERSION = re.compile(r"\((v\d+(?:\.\d+)+)\)")


@dataclass
class WikiEvent:
    name: str
    section: str
    added: str | None
    notes: list[str] = field(default_factory=list)
    fields: dict[str, str] = field(default_factory=dict)


@dataclass
class _Bullet:
    text: str = ""
    ref: str | None = None  # the event named in "fields from *x*" and the like
    before_ref: str = ""


@dataclass
class WikiDocument:
    events: list[WikiEvent] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)


def parse(text: str) -> WikiDocument:
    doc = WikiDocument()
    text = _FOOTER.sub("", " ".join(text.split()))
    # (title, where the title starts, where its rule ends)
    titles = []
    for rule in _TITLE_RULE.finditer(text):
        start = rule.start() - 1 - len(rule[1])
        titles.append((text[start : rule.start() - 1], start, rule.end(), rule[1][0]))
    for number, (title, _, body_start, char) in enumerate(titles):
        body_end = titles[number + 1][1] if number + 1 < len(titles) else len(text)
        if char == "=":  # the page title; its body is the introduction and contents
            continue
        version = _SECTION_VERSION.search(title)
        _section(doc, title, version[1] if version else None, text[body_start:body_end])
    return doc


def _section(doc: WikiDocument, title: str, added: str | None, body: str) -> None:
    groups: list[tuple[list[WikiEvent], list[_Bullet]]] = []
    bullet: _Bullet | None = None
    position = 0
    joining = False  # the text since the last name is "and"
    for token in _TOKEN.finditer(body):
        between = body[position : token.start()]
        name = token[1]
        if bullet is not None:
            bullet.text += between
        elif groups:
            stripped = between.strip()
            joining = stripped == "and"
            if stripped and not joining:
                groups[-1][0][0].notes.append(stripped)
        position = token.end()
        if name is None:  # a bullet
            bullet = _Bullet()
            if groups:
                groups[-1][1].append(bullet)
            else:
                doc.warnings.append(f"{title}: a bullet before any event")
            continue
        in_bullet = bullet is not None
        if bullet is not None and ":" not in bullet.text and bullet.ref is None:
            bullet.before_ref, bullet.ref = bullet.text, name
            bullet.text += name
            continue
        event = WikiEvent(name, title, added)
        doc.events.append(event)
        if joining and not in_bullet and groups:
            groups[-1][0].append(event)
        else:
            groups.append(([event], []))
        bullet = None
        joining = False
    if bullet is not None:
        bullet.text += body[position:]
    known = {event.name: event for event in doc.events}
    for events, bullets in groups:
        for item in bullets:
            _apply(doc, events, item, known)


def _apply(
    doc: WikiDocument, events: list[WikiEvent], item: _Bullet, known: dict[str, WikiEvent]
) -> None:
    text = item.text.strip()
    match = _FIELDS.fullmatch(text)
    if match and item.ref is None:
        for event in events:
            for name in match[1].split(", "):
                event.fields.setdefault(name, match[2].strip())
        return
    if item.ref is not None and _INHERIT.search(item.before_ref):
        source = known.get(item.ref)
        if source is None:
            doc.warnings.append(f"{events[0].name}: fields from unknown {item.ref}")
            return
        for event in events:
            for name, description in source.fields.items():
                event.fields.setdefault(name, description)
        return
    for event in events:
        event.notes.append(text)
