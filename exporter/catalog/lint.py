"""What a filter says that Dovecot accepts but that probably is not meant: the warnings of
``check`` (and of ``run`` as it starts).

A filter that names no real event, compares a string field with ``>`` or asks for an
event the running Dovecot no longer sends is valid, and then matches nothing, silently.
Each warning says where (``metric.NAME.filter``), what, and the closest documented name.
"""

from __future__ import annotations

from exporter.catalog.model import Catalog, DovecotEvent, load_catalog
from exporter.catalog.versions import Version, before, format_version, reached
from exporter.filter import EventFilter
from exporter.filter.nodes import Field, Op
from exporter.filter.values import Number, Text, Wildcard


def filter_warnings(
    where: str, event_filter: EventFilter, dovecot_version: Version | None = None
) -> list[str]:
    """Every warning about ``event_filter``, each starting with ``where``; events are also
    checked against ``dovecot_version`` when one is stated."""
    catalog = load_catalog()
    info = event_filter.info
    warnings = []
    if info.mixed_and_or_at is not None:
        warnings.append(
            f"{where}: AND and OR mixed without parentheses at column "
            f"{info.mixed_and_or_at + 1}; they have the same precedence and group left to "
            "right, so 'a OR b AND c' means '(a OR b) AND c': add parentheses"
        )
    for name in info.event_names:
        if "*" in name or "?" in name:
            continue
        if not catalog.known_event(name):
            warnings.append(_unknown(where, "event", name, catalog.closest_event(name)))
        elif dovecot_version is not None:
            warnings += _version_warnings(where, catalog, name, dovecot_version)
    for category in info.categories:
        if not catalog.known_category(category):
            warnings.append(
                _unknown(where, "category", category, catalog.closest_category(category))
            )
    for field in info.fields:
        if not catalog.known_field(field):
            warnings.append(_unknown(where, "field", field, catalog.closest_field(field)))
    if dovecot_version is not None and dovecot_version < (2, 4) and "duration" in info.fields:
        warnings.append(
            f"{where}: Dovecot before 2.4 checks 'duration' where the event is sent, before "
            "it has one: this filter gets its events only when another metric sends them"
        )
    for comparison in info.comparisons:
        problem = _kind_problem(catalog, comparison)
        if problem is not None:
            warnings.append(f"{where}: {comparison}: {problem}")
    return warnings


def field_list_warnings(where: str, fields: tuple[str, ...]) -> list[str]:
    """A metric's ``fields`` naming a field no documented event has: it writes nothing."""
    catalog = load_catalog()
    return [
        _unknown(where, "field", name, catalog.closest_field(name))
        for name in fields
        if not catalog.known_field(name)
    ]


def _unknown(where: str, kind: str, name: str, closest: str | None) -> str:
    hint = f"; did you mean {closest!r}?" if closest else ""
    return f"{where}: no documented event has the {kind} {name!r}{hint}"


def _version_warnings(where: str, catalog: Catalog, name: str, version: Version) -> list[str]:
    event = catalog.event(name)
    if not isinstance(event, DovecotEvent):
        return []
    stated = format_version(version)
    removed = reached(event.removed, version)
    if removed is not None:
        return [
            f"{where}: event {name!r} was removed in Dovecot {removed}, so {stated} never sends it"
        ]
    if before(event.added, version):
        return [f"{where}: event {name!r} came in Dovecot {event.added}; {stated} never sends it"]
    return []


def _kind_problem(catalog: Catalog, comparison: Field) -> str | None:
    """Why ``comparison`` can never be true given what its field holds, or None."""
    kind = catalog.field_kind(comparison.key)
    op, value, typed = comparison.op, comparison.value, comparison.typed
    if isinstance(typed, Text) and typed.value == "":
        return None  # matches an event without the field: NOT bytes_in="" is "has bytes_in"
    if kind == "timestamp":
        return f"{comparison.key} is a timestamp, and Dovecot never matches a timestamp field"
    if kind in ("string", "list") and op is not Op.EQ:
        what = "a string" if kind == "string" else "a list of strings"
        return (
            f"{comparison.key} is {what}, which Dovecot compares only with '=': "
            f"'{op}' is always false"
        )
    if kind != "number" or isinstance(typed, Number):
        return None
    if isinstance(typed, Text) and typed.ambiguous_unit:
        return (
            f"{value!r} could be MiB or minutes, so Dovecot keeps it as text, which never "
            f"matches the number {comparison.key}: write MB/MiB or min/mins"
        )
    if op is not Op.EQ:
        return f"{comparison.key} is a number and {value!r} is not, so '{op}' is always false"
    if isinstance(typed, Wildcard) and typed.numeric:
        return None  # matched against the number's decimal digits
    return f"{comparison.key} is a number and {value!r} is not one, so this never matches"
