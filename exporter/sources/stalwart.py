"""Stalwart webhooks as events: ``{"events": [{"id", "createdAt", "type", "data"}]}``.

Each webhook event becomes one event: ``type`` is its name (``auth.success``), the part
before the first dot its category (``auth``), its documented default level its log type
(``warn`` as ``warning``, so ``category=warning`` works), ``createdAt`` (RFC 3339) its
start time,
and each member of ``data`` a field: strings and whole numbers as they are, a list of
strings as a string list, anything else (true, 1.5, objects) as its JSON text. The
signature Stalwart sends (``X-Signature: base64(HMAC-SHA256(key, body))``) is checked
against the exact body when a key is configured.
"""

from __future__ import annotations

import datetime
import hmac

import orjson

from exporter.catalog.model import load_catalog
from exporter.errors import EventParseError
from exporter.event import INT_MAX, INT_MIN, Event, FieldValue, default_hostname
from exporter.formats.text import shown
from exporter.formats.timefmt import MAX_TIME_NS, MIN_TIME_NS, parse_rfc3339_ns
from exporter.observe.text import printable
from exporter.secret import Secret, stalwart_signature


def signature_ok(key: Secret, body: bytes, header: str | None) -> bool:
    """Whether ``header`` is Stalwart's signature of ``body`` under ``key``."""
    if header is None:
        return False
    return hmac.compare_digest(stalwart_signature(key, body).encode(), header.strip().encode())


def read_webhook(body: bytes) -> list[Event]:
    """The events of one webhook body; EventParseError says what is wrong and where."""
    try:
        document = orjson.loads(body)
    except orjson.JSONDecodeError as exc:
        raise EventParseError(f"not JSON: {exc}") from None
    if not isinstance(document, dict) or not isinstance(document.get("events"), list):
        raise EventParseError('expected {"events": [...]}')
    return [_checked_event(item, index) for index, item in enumerate(document["events"])]


def _checked_event(item: object, index: int) -> Event:
    try:
        return _event(item, index)
    except EventParseError:
        raise
    except Exception as exc:  # e.g. data nested too deep to write back: this body's fault
        raise EventParseError(f"events[{index}] cannot be read: {printable(str(exc))}") from None


def _event(item: object, index: int) -> Event:
    where = f"events[{index}]"
    if not isinstance(item, dict):
        raise EventParseError(f"{where} is not an object")
    name = item.get("type")
    if not isinstance(name, str) or not name:
        raise EventParseError(f"{where}.type must be a non-empty string")
    created = item.get("createdAt")
    start_ns = _time_ns(created) if isinstance(created, str) else None
    if start_ns is None or not MIN_TIME_NS <= start_ns <= MAX_TIME_NS:
        raise EventParseError(
            f"{where}.createdAt must be an RFC 3339 time in years 1 to 9999, not "
            + (shown(created) if isinstance(created, str) else _JSON_KINDS[type(created)])
        )
    data = item.get("data", {})
    if not isinstance(data, dict):
        raise EventParseError(f"{where}.data must be an object")
    fields = {str(key): _field(value) for key, value in data.items()}
    category = name.split(".", 1)[0]
    log_type = load_catalog().stalwart_log_type(name)  # None for an id it does not know
    return Event(
        name, default_hostname(), start_ns, start_ns, [category], fields, log_type=log_type
    )


def _time_ns(text: str) -> int | None:
    """``...Z`` exactly (to the ns); other offsets through datetime (to the us)."""
    ns = parse_rfc3339_ns(text)
    if ns is not None:
        return ns
    try:
        when = datetime.datetime.fromisoformat(text)
    except ValueError:
        return None
    if when.tzinfo is None:
        return None
    delta = when - _EPOCH
    return (delta.days * 86_400 + delta.seconds) * 1_000_000_000 + delta.microseconds * 1000


_EPOCH = datetime.datetime(1970, 1, 1, tzinfo=datetime.UTC)
_JSON_KINDS: dict[type, str] = {
    type(None): "null",
    bool: "a boolean",
    int: "a number",
    float: "a number",
    list: "an array",
    dict: "an object",
}


def _field(value: object) -> FieldValue:
    if isinstance(value, str):
        return value
    if isinstance(value, int) and not isinstance(value, bool) and INT_MIN <= value <= INT_MAX:
        return value
    if isinstance(value, list) and all(isinstance(v, str) for v in value):
        return list(dict.fromkeys(value))  # a strlist holds each string once
    return orjson.dumps(value).decode()
