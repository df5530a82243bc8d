"""Synthetic events drawn from the event catalog, for load tests and demos.

    for event in generate(source="dovecot", events="imap_*", count=1000, seed=7):
        ...

The same arguments give the same events. Each event is one of the catalog's events
matching ``events`` (a name pattern as in :meth:`Catalog.find`), with plausible values
chosen by field *name*: users ``userNNNN@example.org``, IPs from the documentation ranges
(192.0.2.0/24, 2001:db8::/32), ports, integer durations, sizes and counts, 16-character
session ids, IMAP command names, mailbox names, ``reason_code`` string lists, and
``error`` / ``error_code`` on a few events only. Anything else is a short word.

Start times advance from a fixed base by small random gaps, at whole microseconds (what
Dovecot's formats write). A Dovecot event ends ``duration`` microseconds after it starts;
a Stalwart event ends when it starts, as the Stalwart source reads them. Categories come
from the event's name or section (``imap_command_finished`` -> ``imap``) for Dovecot, the
id up to the first dot for Stalwart.

Everything that depends only on the event (its fields, their value makers, its
categories) is worked out once per call; the loop only draws values.
"""

from __future__ import annotations

import random
import re
import string
from collections.abc import Callable, Iterator, Sequence
from typing import Final

from exporter.catalog.kinds import Kind
from exporter.catalog.model import Catalog, DovecotEvent, Source, StalwartEvent, load_catalog
from exporter.event import NS_PER_US, Event, FieldValue, Timestamp

HOSTNAME: Final = "mail01.example.org"
BASE_NS: Final = 1_735_689_600 * 1_000_000_000  # 2025-01-01T00:00:00Z
MAX_GAP_US: Final = 2_000  # between one event's start and the next's
ERROR_RATE: Final = 0.05  # share of events that carry error / error_code when documented
REASON_CODE_RATE: Final = 0.3  # share of events that carry reason_code when documented

ValueMaker = Callable[[], FieldValue]

# -- value pools (fixed; the generator's seed only chooses among them) -------------------

_USERS: Final = tuple(f"user{n:04d}@example.org" for n in range(1, 1001))
_IPS: Final = tuple(f"192.0.2.{n}" for n in range(1, 255)) + tuple(
    f"2001:db8::{n:x}" for n in range(1, 65)
)
_SERVICES: Final = ("imap", "pop3", "lmtp", "submission")
_IMAP_COMMANDS: Final = (
    "SELECT", "EXAMINE", "FETCH", "UID FETCH", "STORE", "UID STORE", "SEARCH", "UID SEARCH",
    "LIST", "LSUB", "STATUS", "APPEND", "EXPUNGE", "IDLE", "NOOP", "LOGOUT", "CAPABILITY",
    "ID", "NAMESPACE", "GETMETADATA", "COPY", "MOVE", "UID MOVE", "CLOSE", "ENABLE",
)  # fmt: skip
_MAILBOXES: Final = (
    "INBOX", "Sent", "Drafts", "Trash", "Junk", "Archive", "Archive/2024", "Lists/dovecot",
    "Projects", "Receipts",
)  # fmt: skip
_REASON_CODES: Final = (
    "imap:cmd_select", "imap:cmd_fetch", "imap:cmd_store", "imap:cmd_idle",
    "imap:cmd_append", "imap:cmd_expunge", "mailbox:sync", "mailbox:create",
    "mail:search", "mail:expunge", "storage:refresh", "lmtp:deliver",
)  # fmt: skip
_ERRORS: Final = (
    ("Connection timed out", "temp_fail"),
    ("Mailbox doesn't exist", "not_found"),
    ("Permission denied", "no_permission"),
    ("Quota exceeded", "no_quota"),
    ("Internal error occurred", "temp_fail"),
    ("Disconnected by client", "disconnected"),
)
_WORDS: Final = (
    "alpha", "bravo", "charlie", "delta", "echo", "foxtrot", "golf", "hotel", "india",
    "juliet", "kilo", "lima", "mike", "november", "oscar", "papa",
)  # fmt: skip
# Fields with a short list of plausible values of their own.
_CHOICES: Final[dict[str, tuple[FieldValue, ...]]] = {
    "mechanism": ("PLAIN", "LOGIN", "SCRAM-SHA-256", "OAUTHBEARER", "XOAUTH2"),
    "transport": ("insecure", "TLS", "trusted"),
    "tls_protocol": ("TLSv1.2", "TLSv1.3"),
    "tls_cipher": ("TLS_AES_256_GCM_SHA384", "TLS_CHACHA20_POLY1305_SHA256"),
    "tls_cipher_bits": (128, 256),
    "tls_pfs": ("KxANY", "ECDH"),
    "tagged_reply_state": ("OK", "OK", "OK", "OK", "NO", "BAD"),
    "disconnect_side": ("client", "server"),
    "driver": ("maildir", "mdbox", "sdbox", "obox"),
    "method": ("GET", "PUT", "POST", "DELETE", "HEAD"),
    "domain": ("example.org", "example.net", "example.com"),
    "hostname": ("mail01.example.org", "mail02.example.org", "mx.example.net"),
}
_SESSION_HEAD: Final = string.ascii_letters
_SESSION_TAIL: Final = string.ascii_letters + string.digits + "+/"
_PLACEHOLDERS: Final = {"num": "1", "param": "name", "name": "imap"}
_PLACEHOLDER = re.compile(r"<([^<>]+)>")
_CAMEL = re.compile(r"(?<=[a-z0-9])([A-Z])")

_USER_NAMES: Final = frozenset(
    (
        "user", "original_user", "translated_user", "username", "original_username",
        "translated_username", "auth_user", "login_user", "master_user", "certificate_user",
        "account_name", "account_id",
    )
)  # fmt: skip
_ADDRESS_NAMES: Final = frozenset(("mail_from", "rcpt_to", "message_from", "from", "to"))
_INT_PARTS: Final = ("duration", "bytes", "size", "count", "_msecs", "_usecs")
_INT_NAMES: Final = frozenset(
    (
        "uid", "first_uid", "last_uid", "max_uid", "uid_next", "uid_validity", "attempts",
        "attempt", "exit_code", "status_code", "remote_pid", "remote_uid", "recipients",
        "rows", "utime", "stime", "rss", "vsz", "rchar", "wchar", "syscr", "syscw",
        "minor_faults", "major_faults", "vol_cs", "invol_cs", "file_seq", "prev_file_seq",
        "redirects", "elapsed", "total", "total_failures", "total_successes", "limit",
        "used", "ham_learns", "renumber_count", "mails_kept", "mails_lost", "mails_new",
        "mails_total", "mails_temp_lost", "min_priority", "policy_penalty", "message_vsize",
    )
)  # fmt: skip
_INT_PREFIXES: Final = ("mails_", "recipients_", "auth_", "guid_lookups", "reconnect_")
_TIME_NAMES: Final = frozenset(("last_run_time", "last_used"))
_DATE_NAMES: Final = frozenset(
    ("date", "due", "expires", "next_renewal", "next_retry", "renewal", "valid_from", "valid_to")
)


def generate(
    *,
    source: Source = "dovecot",
    events: str | None = None,
    count: int,
    seed: int = 0,
) -> Iterator[Event]:
    """``count`` synthetic events of ``source`` whose names match ``events`` (all when None).

    ValueError if ``source`` is unknown, ``count`` is negative or no event matches.
    """
    if count < 0:
        raise ValueError(f"count must be zero or more, not {count}")
    catalog = load_catalog()
    found = catalog.find(events, source)
    if not found:
        raise ValueError(f"no {source} event matches {events!r}")
    rng = random.Random(seed)
    if source == "dovecot":
        plans = [_dovecot_plan(catalog, e, rng) for e in found if isinstance(e, DovecotEvent)]
    else:
        plans = [_stalwart_plan(catalog, e, rng) for e in found if isinstance(e, StalwartEvent)]
    return _events(plans, source == "dovecot", count, rng)


class _Plan:
    """What one catalog event needs to be generated: its name, categories, value makers."""

    __slots__ = ("categories", "log_type", "name", "optional", "values")

    def __init__(
        self,
        name: str,
        categories: list[str],
        values: list[tuple[str, ValueMaker]],
        optional: list[tuple[float, list[tuple[str, ValueMaker]]]],
        log_type: str | None = "debug",  # Dovecot sends most named events with e_debug()
    ) -> None:
        self.name = name
        self.categories = categories
        self.log_type = log_type
        self.values = values
        #: groups of fields an event carries only sometimes (error with error_code)
        self.optional = optional


def _events(
    plans: Sequence[_Plan], dovecot: bool, count: int, rng: random.Random
) -> Iterator[Event]:
    rand = rng.random
    gaps = rng.randrange
    pick = rng.choice
    start_us = BASE_NS // NS_PER_US
    for _ in range(count):
        plan = pick(plans)
        start_us += gaps(MAX_GAP_US)
        fields: dict[str, FieldValue] = {key: make() for key, make in plan.values}
        for rate, group in plan.optional:
            if rand() < rate:
                for key, make in group:
                    fields[key] = make()
        start_ns = start_us * NS_PER_US
        end_ns = start_ns
        if dovecot:
            duration = fields.get("duration")
            if type(duration) is int:
                end_ns += duration * NS_PER_US
        yield Event(
            plan.name,
            HOSTNAME,
            start_ns,
            end_ns,
            list(plan.categories),
            fields,
            log_type=plan.log_type,
        )


# -- plans ---------------------------------------------------------------------------


def _dovecot_plan(catalog: Catalog, event: DovecotEvent, rng: random.Random) -> _Plan:
    names = list(event.fields)
    if set(names) <= set(catalog.global_fields):  # documented only by the 2.3 wiki
        names += [name for name in event.fields_v23 if name not in names]
    draw = _Draw(rng)
    values: list[tuple[str, ValueMaker]] = []
    errors: list[tuple[str, ValueMaker]] = []
    reasons: list[tuple[str, ValueMaker]] = []
    for raw in names:
        key = _concrete(raw)
        target = errors if key in ("error", "error_code") else values
        if key == "reason_code":
            target = reasons
        target.append((key, draw.maker(key, catalog.field_kind(raw))))
    optional = [(ERROR_RATE, errors)] if errors else []
    if reasons:
        optional.append((REASON_CODE_RATE, reasons))
    lineage = catalog.category_path(_dovecot_category(catalog, event))[::-1]
    return _Plan(event.name, lineage, values, optional)


def _stalwart_plan(catalog: Catalog, event: StalwartEvent, rng: random.Random) -> _Plan:
    """Stalwart does not document an event's keys: connection keys for the categories that
    serve clients, then a few keys of its list chosen for the event once."""
    draw = _Draw(rng)
    keys: list[str] = []
    if event.category in _STALWART_NETWORK:
        keys += ["remoteIp", "remotePort", "localPort"]
    others = sorted(k for k in catalog.stalwart_key_types if k not in keys)
    keys += rng.sample(others, rng.randint(1, 3))
    values = [(key, draw.maker(key)) for key in keys]
    return _Plan(event.id, [event.category], values, [], catalog.stalwart_log_type(event.id))


_STALWART_NETWORK: Final = frozenset(
    ("smtp", "imap", "pop3", "jmap", "manage-sieve", "network", "http", "auth", "tls", "milter")
)


def _concrete(name: str) -> str:
    """A documented name with a varying part made concrete: ``id_param_<param>`` ->
    ``id_param_name``."""
    return _PLACEHOLDER.sub(lambda m: _PLACEHOLDERS.get(m.group(1), m.group(1)), name)


def _dovecot_category(catalog: Catalog, event: DovecotEvent) -> str:
    """The event's category: the longest start of its name that is a category
    (``auth_client_request_finished`` -> ``auth-client``), else a part of its section
    (``Events / HTTP Client`` -> ``http-client``), else the name's first word."""
    words = event.name.split("_")
    candidates = ["-".join(words[:n]) for n in range(len(words), 0, -1)]
    if event.section:
        parts = [part.strip().lower().replace(" ", "-") for part in event.section.split("/")]
        candidates += reversed(parts)
    for candidate in candidates:
        if candidate in catalog.categories:
            return candidate
    return words[0]


class _Draw:
    """Value makers by field name, all drawing from one random generator."""

    def __init__(self, rng: random.Random) -> None:
        self.rng = rng

    def maker(self, name: str, kind: Kind | None = None) -> ValueMaker:
        """The value maker for a field called ``name`` (``remoteIp`` as ``remote_ip``),
        holding ``kind`` of value when the catalog knows."""
        key = _CAMEL.sub(r"_\1", name).lower()
        rand = self.rng.random
        if key in _USER_NAMES or key.endswith("_user") or key.startswith("account"):
            return _one_of(rand, _USERS)
        if key in _ADDRESS_NAMES:
            return _one_of(rand, _USERS)
        if key == "ip" or key.endswith("_ip"):
            return _one_of(rand, _IPS)
        if key == "port" or key.endswith("_port"):
            return _one_of(rand, (143, 993, 110, 995, 24, 587, 25) if "local" in key else None)
        if key in _CHOICES:
            return _one_of(rand, _CHOICES[key])
        if key == "session":
            return self._session
        if key == "reason_code":
            return self._reason_code
        if key == "error":
            return _one_of(rand, tuple(message for message, _ in _ERRORS))
        if key == "error_code":
            return _one_of(rand, tuple(code for _, code in _ERRORS))
        if key == "cmd_name":
            return _one_of(rand, _IMAP_COMMANDS)
        if key in ("service", "protocol"):
            return _one_of(rand, _SERVICES)
        if "mailbox" in key and not key.endswith(("_guid", "_id")):
            return _one_of(rand, _MAILBOXES)
        if key in _TIME_NAMES or kind == "timestamp":
            return self._timestamp
        if key in _DATE_NAMES:
            return self._date
        if key.endswith("_host"):
            return _one_of(rand, _CHOICES["hostname"])
        if key == "cmd_tag":
            return _one_of(rand, tuple(f"a{n:04d}" for n in range(1, 100)))
        if key == "duration":
            return self._duration
        if _is_int(key) or kind == "number":
            return self._size if ("bytes" in key or "size" in key) else self._small_int
        return _one_of(rand, _WORDS)

    def _session(self) -> str:
        choice = self.rng.choice
        return choice(_SESSION_HEAD) + "".join([choice(_SESSION_TAIL) for _ in range(15)])

    def _reason_code(self) -> list[str]:
        rand = self.rng.random
        first = _REASON_CODES[int(rand() * len(_REASON_CODES))]
        if rand() < 0.7:
            return [first]
        second = _REASON_CODES[int(rand() * len(_REASON_CODES))]
        return [first] if second == first else [first, second]

    def _duration(self) -> int:
        """Microseconds: mostly quick, a long tail."""
        return int(self.rng.expovariate(1 / 2_000))

    def _size(self) -> int:
        return int(self.rng.expovariate(1 / 20_000))

    def _small_int(self) -> int:
        return int(self.rng.random() * 100)

    def _timestamp(self) -> Timestamp:
        return Timestamp(BASE_NS - int(self.rng.random() * 86_400_000_000) * NS_PER_US)

    def _date(self) -> str:
        day = 1 + int(self.rng.random() * 28)
        return f"2025-02-{day:02d}T12:00:00Z"


def _one_of(rand: Callable[[], float], choices: Sequence[FieldValue] | None) -> ValueMaker:
    """A maker drawing from ``choices`` (None: a client port, 1024 to 65535)."""
    if choices is None:

        def port() -> int:
            return 1024 + int(rand() * 64512)

        return port
    n = len(choices)

    def one() -> FieldValue:
        return choices[int(rand() * n)]

    return one


def _is_int(key: str) -> bool:
    return (
        key in _INT_NAMES
        or any(part in key for part in _INT_PARTS)
        or key.startswith(_INT_PREFIXES)
    )
