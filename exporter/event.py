"""The event: Dovecot's model (name, hostname, times, categories, typed fields, parents).

Field values are plain Python objects so orjson can serialize a fields dict as it is:

    str            Dovecot ``str``; bytes that were not valid UTF-8 are kept as lone
                   surrogates (``surrogateescape``), so tab-text can write them back raw
                   and JSON can replace each one with U+FFFD, as Dovecot does
    int            Dovecot ``intmax``: -2**63 to 2**64-1 (what orjson reads; bool refused)
    Timestamp      Dovecot ``timeval``, integer nanoseconds since the epoch
    list[str]      Dovecot ``strlist``: ordered, no duplicates

Times are integers (nanoseconds), never floats. An event built in-process may have a
``parent``; :meth:`Event.flatten` applies Dovecot's rules (ancestors first, a key set
again keeps its first position, string lists merge) and is what formats and filters see.
"""

from __future__ import annotations

import os
import socket
import time
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from typing import Final, TypeAlias

from exporter.catalog.tree import lineage

# Dovecot's intmax is signed 64-bit; orjson also reads unsigned 64-bit values, and both
# are kept as they are.
INT_MIN: Final = -(2**63)
INT_MAX: Final = 2**64 - 1
NS_PER_US: Final = 1_000
NS_PER_S: Final = 1_000_000_000


class Timestamp:
    """A ``timeval`` field value: integer nanoseconds since the Unix epoch."""

    __slots__ = ("ns",)

    def __init__(self, ns: int) -> None:
        if type(ns) is not int:
            raise TypeError(f"Timestamp needs integer nanoseconds, got {type(ns).__name__}")
        self.ns = ns

    @classmethod
    def from_us(cls, us: int) -> Timestamp:
        return cls(us * NS_PER_US)

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Timestamp) and other.ns == self.ns

    def __hash__(self) -> int:
        return hash(("Timestamp", self.ns))

    def __repr__(self) -> str:
        return f"Timestamp({self.ns})"


FieldValue: TypeAlias = str | int | Timestamp | list[str]
Fields: TypeAlias = dict[str, FieldValue]


@dataclass(frozen=True, slots=True)
class Category:
    """A named category; ``parent`` makes it match ``category=<parent>`` filters too."""

    name: str
    parent: Category | None = None

    def lineage(self) -> Iterator[str]:
        """The root ancestor's name first, this category's name last."""
        chain: list[str] = []
        node: Category | None = self
        while node is not None:
            chain.append(node.name)
            node = node.parent
        return reversed(chain)


_hostname: str | None = None


def default_hostname() -> str:
    """``$DOVECOT_HOSTNAME`` if set, else the full ``gethostname()``, as Dovecot does."""
    global _hostname
    if _hostname is None:
        _hostname = os.environ.get("DOVECOT_HOSTNAME") or socket.gethostname()
    return _hostname


def check_field_value(key: str, value: object) -> FieldValue:
    """Return ``value`` if it is a valid field value, else raise TypeError/ValueError."""
    if type(key) is not str:
        raise TypeError(f"field key must be str, got {type(key).__name__}")
    kind = type(value)
    if kind is str or kind is Timestamp:
        return value  # type: ignore[return-value]
    if kind is int:
        if not INT_MIN <= value <= INT_MAX:  # type: ignore[operator]
            raise ValueError(f"field {key!r}: {value} does not fit in 64 bits")
        return value  # type: ignore[return-value]
    if kind is list and all(type(item) is str for item in value):  # type: ignore[attr-defined]
        return _dedupe(value)  # type: ignore[arg-type]
    raise TypeError(
        f"field {key!r}: {kind.__name__} is not a field type "
        "(allowed: str, int, Timestamp, list of str)"
    )


def _dedupe(items: Iterable[str]) -> list[str]:
    return list(dict.fromkeys(items))


class Event:
    """One event. Built by readers (already flat) or in-process with the builder methods.

    The constructor trusts its arguments (the readers have checked them); the builder
    methods (:meth:`add_str`, :meth:`set`, ...) check every value.
    """

    __slots__ = (
        "categories",
        "end_ns",
        "fields",
        "hostname",
        "log_type",
        "name",
        "parent",
        "source_file",
        "source_line",
        "start_ns",
    )

    def __init__(
        self,
        name: str | None = None,
        hostname: str | None = None,
        start_ns: int | None = None,
        end_ns: int | None = None,
        categories: list[str] | None = None,
        fields: Fields | None = None,
        *,
        parent: Event | None = None,
        log_type: str | None = None,
        source_file: str | None = None,
        source_line: int = 0,
    ) -> None:
        self.name = name
        self.hostname = hostname
        self.start_ns = start_ns
        self.end_ns = end_ns
        self.categories: list[str] = [] if categories is None else categories
        self.fields: Fields = {} if fields is None else fields
        self.parent = parent
        self.log_type = log_type
        self.source_file = source_file
        self.source_line = source_line

    # -- building in-process ---------------------------------------------------------

    @classmethod
    def create(
        cls,
        name: str | None = None,
        *,
        parent: Event | None = None,
        categories: Iterable[Category | str] = (),
        hostname: str | None = None,
        start_ns: int | None = None,
        log_type: str = "debug",
    ) -> Event:
        """A new event created now (``start_ns`` defaults to the current time).

        The hostname defaults to the parent's, else :func:`default_hostname`. Most Dovecot
        named events are sent at debug level, so ``log_type`` defaults to ``"debug"``.
        """
        if hostname is None:
            hostname = parent.hostname if parent is not None else default_hostname()
        event = cls(
            name,
            hostname=hostname,
            start_ns=time.time_ns() if start_ns is None else start_ns,
            parent=parent,
            log_type=log_type,
        )
        for category in categories:
            event.add_category(category)
        return event

    def set_name(self, name: str) -> Event:
        self.name = name
        return self

    def add_category(self, category: Category | str) -> Event:
        """Add a category and, before it, every ancestor it has (each name once): a
        :class:`Category`'s parents, or for a name those Dovecot documents (``mail`` comes
        with ``storage`` and ``mailbox``), as Dovecot exports them, so that
        ``category=storage`` matches."""
        names = category.lineage() if isinstance(category, Category) else lineage(category)
        for name in names:
            if name not in self.categories:
                self.categories.append(name)
        return self

    def add_str(self, key: str, value: str) -> Event:
        if type(value) is not str:
            raise TypeError(f"field {key!r}: add_str needs str, got {type(value).__name__}")
        self.fields[key] = value
        return self

    def add_int(self, key: str, value: int) -> Event:
        if type(value) is not int:
            raise TypeError(f"field {key!r}: add_int needs int, got {type(value).__name__}")
        self.fields[key] = check_field_value(key, value)
        return self

    def add_timestamp(self, key: str, ns: int) -> Event:
        self.fields[key] = Timestamp(ns)
        return self

    def add_strlist(self, key: str, *values: str) -> Event:
        """Append to a string list, skipping elements it already has (Dovecot's strlist)."""
        current = self.fields.get(key)
        merged = list(current) if type(current) is list else []
        merged.extend(check_field_value(key, list(values)))  # type: ignore[arg-type]
        self.fields[key] = _dedupe(merged)
        return self

    def set(self, key: str, value: FieldValue) -> Event:
        """Set a field of any allowed type; a list replaces (not merges) the old value."""
        self.fields[key] = check_field_value(key, value)
        return self

    # -- flattening -----------------------------------------------------------------

    def lineage(self) -> list[Event]:
        """This event's ancestors, root first, then the event itself."""
        chain: list[Event] = []
        node: Event | None = self
        while node is not None:
            chain.append(node)
            node = node.parent
        chain.reverse()
        return chain

    def flatten(self, *, sent_ns: int | None = None) -> Event:
        """The event as Dovecot exports it: one flat list of categories and of fields.

        Ancestors' categories and fields come first. A key set again by a descendant keeps
        its first position; string lists are merged (existing elements first). With
        ``sent_ns``, the event is being sent now: ``end_ns`` becomes ``sent_ns`` and the
        int field ``duration`` (microseconds since ``start_ns``) is set, at the position of
        the first ancestor that had one, as in Dovecot's stats process.
        """
        if self.parent is None and sent_ns is None:
            return self
        categories: list[str] = []
        fields: Fields = {}
        for node in self.lineage():
            for name in node.categories:
                if name not in categories:
                    categories.append(name)
            for key, value in node.fields.items():
                old = fields.get(key)
                if type(value) is list and type(old) is list:
                    fields[key] = old + [v for v in value if v not in old]
                else:
                    fields[key] = value
        end_ns = self.end_ns
        if sent_ns is not None:
            end_ns = sent_ns
            if self.start_ns is not None:
                fields["duration"] = (sent_ns - self.start_ns) // NS_PER_US
        return Event(
            self.name,
            hostname=self.hostname,
            start_ns=self.start_ns,
            end_ns=end_ns,
            categories=categories,
            fields=fields,
            log_type=self.log_type,
            source_file=self.source_file,
            source_line=self.source_line,
        )

    def duration_us(self) -> int | None:
        """The ``duration`` field, else end minus start in microseconds (2.4's rule)."""
        value = self.fields.get("duration")
        if type(value) is int:
            return value
        if self.start_ns is not None and self.end_ns is not None:
            return (self.end_ns - self.start_ns) // NS_PER_US
        return None

    # -- comparison, for tests and debugging ------------------------------------------

    def _key(self) -> tuple[object, ...]:
        return (
            self.name,
            self.hostname,
            self.start_ns,
            self.end_ns,
            self.categories,
            list(self.fields.items()),
            self.parent,
        )

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Event) and self._key() == other._key()

    __hash__ = None  # type: ignore[assignment]

    def __repr__(self) -> str:
        return (
            f"Event({self.name!r}, hostname={self.hostname!r}, start_ns={self.start_ns}, "
            f"end_ns={self.end_ns}, categories={self.categories!r}, fields={self.fields!r})"
        )
