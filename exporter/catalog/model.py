"""The catalog of known events: Dovecot's (fields, categories) and Stalwart's (levels).

The data is ``catalog.json`` beside this module, built from the documents by
``scripts/build_catalog.py`` (see :mod:`exporter.catalog.build` for what comes from where).
"""

from __future__ import annotations

import difflib
import functools
import re
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from typing import Any, ClassVar, Literal, TypeAlias, TypeVar

from exporter.catalog.kinds import Kind
from exporter.catalog.tree import category_path, shipped_data
from exporter.filter.compile import LOG_TYPES
from exporter.filter.wildcard import compile_wildcard, is_escaped_literal, unescape

Source: TypeAlias = Literal["dovecot", "stalwart"]
SOURCES: tuple[Source, ...] = ("dovecot", "stalwart")

#: Stalwart's levels as Dovecot's log types (``disable``d events, if sent, as debug).
STALWART_LOG_TYPES: Mapping[str, str] = {
    "trace": "debug",
    "debug": "debug",
    "info": "info",
    "warn": "warning",
    "error": "error",
}

_T = TypeVar("_T")

# "service:<name>", "id_param_<param>": a documented name with a part that varies.
_PLACEHOLDER = re.compile(r"<[^<>]+>")


@dataclass(frozen=True, slots=True)
class DovecotEvent:
    """A Dovecot event as documented.

    ``fields`` are all the fields the event carries (the global ones, its own, then those it
    inherits), each with its description; ``field_versions`` says for some when they came
    or changed (``"added v2.3.12"``). ``fields_v23`` are the fields the Dovecot 2.3 wiki
    lists, which 2.3 named differently in places (``bytes_in`` for ``net_in_bytes``).
    ``section`` is where the 2.4 list puts the event (``"Events / IMAP / IMAP Command"``);
    ``docs`` names the documents listing it (keys of :attr:`Catalog.documents`).
    """

    source: ClassVar[Source] = "dovecot"

    name: str
    section: str | None
    description: str
    fields: dict[str, str]
    field_versions: dict[str, str]
    fields_v23: dict[str, str]
    inherits: tuple[str, ...]
    added: str | None
    changed: str | None
    removed: str | None
    docs: tuple[str, ...]


@dataclass(frozen=True, slots=True)
class StalwartEvent:
    """A Stalwart event: its id (``auth.success``), description and default level.

    Stalwart's page does not say which keys an event carries; see
    :attr:`Catalog.stalwart_key_types` for all of them.
    """

    source: ClassVar[Source] = "stalwart"

    id: str
    description: str
    level: str

    @property
    def name(self) -> str:
        """The event's name as the exporter sees it: its id."""
        return self.id

    @property
    def category(self) -> str:
        """The category the Stalwart source gives the event: its id up to the first dot."""
        return self.id.split(".", 1)[0]


CatalogEvent: TypeAlias = DovecotEvent | StalwartEvent


class Catalog:
    """Every documented event, category and field, with lookups and suggestions."""

    FORMAT: ClassVar[int] = 1  # of the data exporter.catalog.build writes

    def __init__(self, data: Mapping[str, Any]) -> None:
        if data.get("format") != self.FORMAT:
            raise ValueError(f"catalog data format {data.get('format')!r}, not {self.FORMAT}")
        dovecot, stalwart = data["dovecot"], data["stalwart"]
        self.documents: dict[str, str] = dict(data["documents"])
        self.global_fields: dict[str, str] = dict(dovecot["global_fields"])
        self.dovecot_events: dict[str, DovecotEvent] = {
            name: _dovecot_event(name, entry) for name, entry in dovecot["events"].items()
        }
        #: Dovecot's categories, each with its parent (None for a root).
        self.categories: dict[str, str | None] = {
            name: entry["parent"] for name, entry in dovecot["categories"].items()
        }
        self.category_descriptions: dict[str, str] = {
            name: entry.get("description", "") for name, entry in dovecot["categories"].items()
        }
        self.stalwart_events: dict[str, StalwartEvent] = {
            event_id: StalwartEvent(event_id, entry["description"], entry["level"])
            for event_id, entry in stalwart["events"].items()
        }
        #: Stalwart's levels (``info``, ``debug``, ...) with what each means.
        self.stalwart_levels: dict[str, str] = dict(stalwart["levels"])
        #: The keys a Stalwart event may carry, with what each holds.
        self.stalwart_key_types: dict[str, str] = dict(stalwart["key_types"])
        self.stalwart_categories: frozenset[str] = frozenset(
            event.category for event in self.stalwart_events.values()
        )
        #: What Dovecot fields hold, where the documents say (``exporter.catalog.kinds``).
        self.field_kinds: dict[str, Kind] = dict(dovecot["field_kinds"])
        self._kind_patterns = [
            (pattern, self.field_kinds[name])
            for name, pattern in zip(
                (n for n in self.field_kinds if _PLACEHOLDER.search(n)),
                _placeholders(self.field_kinds),
                strict=True,
            )
        ]
        self._fields = self._all_fields()
        self._field_patterns = _placeholders(self._fields)
        self._category_patterns = _placeholders(self.categories)

    # -- lookups -------------------------------------------------------------------------

    def event(self, name: str) -> CatalogEvent | None:
        """The event named exactly ``name`` (a Dovecot name or a Stalwart id), or None."""
        return self.dovecot_events.get(name) or self.stalwart_events.get(name)

    def events(self, source: Source | None = None) -> list[CatalogEvent]:
        """All events of ``source`` (both when None): Dovecot's, then Stalwart's, by name."""
        _check_source(source)
        found: list[CatalogEvent] = []
        if source in (None, "dovecot"):
            found.extend(self.dovecot_events[name] for name in sorted(self.dovecot_events))
        if source in (None, "stalwart"):
            found.extend(self.stalwart_events[name] for name in sorted(self.stalwart_events))
        return found

    def find(self, pattern: str | None = None, source: Source | None = None) -> list[CatalogEvent]:
        """Events whose name matches ``pattern``, ignoring case.

        With ``*`` or ``?`` the pattern is a mask for the whole name, as in the filter
        language (``imap_*``, ``auth.*``; ``\\*`` is a literal star). Without, it is a
        search: the event of exactly that name if there is one, else every event whose
        name contains it. No pattern (or an empty one) gives every event.
        """
        events = self.events(source)
        return _matching(events, pattern, key=lambda event: event.name)

    def find_categories(self, pattern: str | None = None) -> list[str]:
        """Dovecot categories matching ``pattern`` as in :meth:`find`, in catalog order."""
        return _matching(list(self.categories), pattern, key=lambda name: name)

    def fields_of(self, event_name: str) -> dict[str, str]:
        """The fields of an event, each with its description: for a Dovecot event those
        of the 2.4 documents, then those only the 2.3 wiki lists; for a Stalwart event
        none (its page does not say). KeyError if there is no such event."""
        event = self.event(event_name)
        if event is None:
            raise KeyError(event_name)
        if isinstance(event, StalwartEvent):
            return {}
        fields = dict(event.fields)
        for name, description in event.fields_v23.items():
            fields.setdefault(name, description)
        return fields

    def field_kind(self, name: str) -> Kind | None:
        """What field ``name`` holds (``id_param_x`` as ``id_param_<param>``), or None when
        the documents do not say."""
        kind = self.field_kinds.get(name)
        if kind is None:
            kind = next((k for pattern, k in self._kind_patterns if pattern.fullmatch(name)), None)
        return kind

    def stalwart_log_type(self, event_id: str) -> str | None:
        """The Dovecot log type (what ``category=error`` tests) of a Stalwart event: its
        default level, ``warn`` as ``warning`` and ``trace`` as ``debug``; None for an
        unknown event."""
        event = self.stalwart_events.get(event_id)
        return None if event is None else STALWART_LOG_TYPES.get(event.level, "debug")

    def category_path(self, name: str) -> list[str]:
        """``name`` and its ancestors: ``["mail", "mailbox", "storage"]``."""
        return category_path(name, self.categories)

    # -- checks, for names a filter uses ---------------------------------------------------

    def known_event(self, name: str) -> bool:
        """Whether an event is named exactly ``name`` (names are case-sensitive)."""
        return name in self.dovecot_events or name in self.stalwart_events

    def known_category(self, name: str) -> bool:
        """Whether a filter's ``category=name`` can match: a Dovecot category (``service:``
        followed by any service name included), a Stalwart event's category, or a log type
        (``debug``, ``error``, ...)."""
        return (
            name in self.categories
            or name in self.stalwart_categories
            or name in LOG_TYPES
            or any(pattern.fullmatch(name) for pattern in self._category_patterns)
        )

    def known_field(self, name: str) -> bool:
        """Whether some event documents a field ``name``: a Dovecot field (2.4 or 2.3,
        ``id_param_<param>`` standing for any ``id_param_...``) or a Stalwart key."""
        return name in self._fields or any(p.fullmatch(name) for p in self._field_patterns)

    def closest_event(self, name: str, source: Source | None = None) -> str | None:
        """The event name most like ``name`` (for "did you mean"), or None."""
        _check_source(source)
        names: list[str] = []
        if source in (None, "dovecot"):
            names.extend(self.dovecot_events)
        if source in (None, "stalwart"):
            names.extend(self.stalwart_events)
        return _closest(name, names)

    def closest_category(self, name: str) -> str | None:
        """The category most like ``name``, or None."""
        return _closest(name, [*self.categories, *sorted(self.stalwart_categories)])

    def closest_field(self, name: str) -> str | None:
        """The field name most like ``name``, or None."""
        return _closest(name, self._fields)

    def _all_fields(self) -> dict[str, None]:
        names: dict[str, None] = dict.fromkeys(self.global_fields)
        for event in self.dovecot_events.values():
            names.update(dict.fromkeys(event.fields))
            names.update(dict.fromkeys(event.fields_v23))
        names.update(dict.fromkeys(self.stalwart_key_types))
        return names


@functools.cache
def load_catalog() -> Catalog:
    """The catalog shipped with the package (read once)."""
    return Catalog(shipped_data())


def _dovecot_event(name: str, entry: Mapping[str, Any]) -> DovecotEvent:
    return DovecotEvent(
        name=name,
        section=entry.get("section"),
        description=entry.get("description", ""),
        fields=dict(entry.get("fields", {})),
        field_versions=dict(entry.get("field_versions", {})),
        fields_v23=dict(entry.get("fields_v23", {})),
        inherits=tuple(entry.get("inherits", ())),
        added=entry.get("added"),
        changed=entry.get("changed"),
        removed=entry.get("removed"),
        docs=tuple(entry.get("docs", ())),
    )


def _check_source(source: str | None) -> None:
    if source is not None and source not in SOURCES:
        raise ValueError(f"source must be one of {', '.join(SOURCES)}, not {source!r}")


def _matching(items: list[_T], pattern: str | None, *, key: Callable[[_T], str]) -> list[_T]:
    if not pattern:
        return items
    if not is_escaped_literal(pattern):
        match = compile_wildcard(pattern, ignore_case=True)
        return [item for item in items if match(key(item))]
    wanted = unescape(pattern).lower()
    exact = [item for item in items if key(item).lower() == wanted]
    return exact or [item for item in items if wanted in key(item).lower()]


def _placeholders(names: Iterable[str]) -> list[re.Pattern[str]]:
    return [
        re.compile(".+".join(re.escape(part) for part in _PLACEHOLDER.split(name)))
        for name in names
        if _PLACEHOLDER.search(name)
    ]


def _closest(name: str, candidates: Iterable[str]) -> str | None:
    """The candidate most like ``name`` ignoring case (difflib's ratio >= 0.6), or None."""
    folded: dict[str, str] = {}
    for candidate in candidates:
        folded.setdefault(candidate.lower(), candidate)
    matches = difflib.get_close_matches(name.lower(), list(folded), n=1, cutoff=0.6)
    return folded[matches[0]] if matches else None
