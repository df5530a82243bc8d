"""The ``http-post`` driver: batches POSTed to a collector or a webhook, on httpx.

Dovecot posts one request per event with a 250 ms deadline, never retries, and drops
what a slow or absent server cannot take. Here a batch is one request; the driver only
says how it went (delivered, retryable with the server's ``Retry-After``, permanent) and
the engine's one retry loop does the rest, so nothing accepted is lost silently.

Bodies (``HttpSettings.body``; each protocol's is a module of :mod:`drivers.bodies`,
listed in :mod:`drivers.bodies.registry`):

* ``ndjson`` (default): the batch as it is, one event per line, ``application/x-ndjson``
  (json events) or ``text/plain`` (tab-text lines are not JSON);
* ``json-array``: ``[e1,e2,...]``, ``application/json`` (json events only);
* a collector's protocol (OTLP, Elasticsearch ``_bulk``, ...): its body, its headers, its
  status table, and, where it answers item by item, a :class:`~drivers.base.Partial` read
  from a 2xx answer (the retry loop sends again only the items it asks for);
* ``single``: one event per request, Dovecot's http-post body byte for byte (the event,
  no newline) with its Content-Type: ``application/json`` for json, ``text/plain`` for
  tab-text. Give such an exporter batches of one event (``export --to`` does), so that
  retries and dead letters are per event; a longer batch is sent event by event and a
  retry resumes after the events already taken, so none is sent twice.

Several URLs of one service (``urls``): a retryable failure moves the next attempt to
the next one, the primary is tried again after ``failback_after``
(:mod:`drivers.failover`); each attempt goes to one URL, so the retry loop stays the one
that decides when a batch is sent again.

Every request carries an idempotency key (``Idempotency-Key``: the batch's key, the same
on every retry of that batch), so a receiver can drop the duplicates a lost response
causes. Optional signing, of the exact bytes sent (after compression): Stalwart's
``X-Signature: base64(HMAC-SHA256(key, body))``, or Standard Webhooks' ``webhook-id``,
``webhook-timestamp``, ``webhook-signature: v1,base64(HMAC-SHA256(key, id.timestamp.body))``
(signed again at each attempt, so a retry after an outage is not refused as stale).

Classification, in one place (:func:`classify_status`, :func:`classify_exception`):
2xx delivered; ``retry_statuses`` (default 408, 425, 429, 500, 502, 503, 504) and
transport failures (connect, read, write, timeouts, a server breaking the protocol)
retryable, with ``Retry-After`` (seconds or an HTTP date) when the server sent one; any
other status permanent, with the status and the first bytes of the response body in
the reason. Redirects are not followed unless ``follow_redirects``, and then only a 307
or 308 within the same origin (scheme, host, port), at most :data:`MAX_REDIRECTS` hops:
the body, headers and signature never go to another host. Any other redirect is a
permanent failure whose reason says where it pointed and why it was not followed.

Secrets (auth, signing key) never appear in a message: they are
:class:`~exporter.secret.Secret` and only headers see them. Credentials and signatures
go over plain ``http://`` only to a loopback host (or a unix socket) unless
``allow_plain_http``. What a receiver says (its error body, reason phrase, Location, the
text of a failure) is data, not markup: :class:`ReceiverText` replaces our secrets in it
with ``***``, escapes its control characters and caps its length before it reaches a
message, a log line or a dead-letter reason.
"""

from __future__ import annotations

import base64
import binascii
import datetime
import email.utils
import gzip
import hashlib
import hmac
import ipaddress
import logging
import os
import re
import ssl
import time
import weakref
import zlib
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from typing import Literal

import anyio
import anyio.to_thread
import httpx

from drivers.base import Batch, Partial
from drivers.bodies import Body, BodyContext
from drivers.bodies.registry import KINDS
from drivers.failover import Endpoints
from exporter import __version__
from exporter.errors import (
    DeliveryError,
    DriverClosedError,
    PermanentDeliveryError,
    RetryableDeliveryError,
    UsageError,
)
from exporter.observe.text import printable
from exporter.secret import Secret, stalwart_signature

Compression = Literal["none", "gzip"]
Signing = Literal["none", "stalwart", "standard-webhooks"]
BODIES: tuple[str, ...] = tuple(KINDS)
COMPRESSIONS: tuple[Compression, ...] = ("none", "gzip")
SIGNINGS: tuple[Signing, ...] = ("none", "stalwart", "standard-webhooks")
DEFAULT_RETRY_STATUSES = frozenset({408, 425, 429, 500, 502, 503, 504})
MAX_REDIRECTS = 5
"""Same-origin 307/308 hops followed for one request, at most."""
_SHOWN_CHARS = 200
"""Characters of receiver text kept in a reason (the error body's first ones)."""
_ANSWER_MAX_BYTES = 64 << 20
"""Bytes of a 2xx answer read for a body that reads answers (``_bulk``: ~100 per item)."""
_EXCERPT_READ_BYTES = 4096
"""Bytes of an error body read, at most: enough for the excerpt, bounded whatever it is."""
_SCANNED_CHARS = 1 << 16
"""Receiver text longer than this is cut before our secrets are looked for in it."""
_DEFAULT_PORTS = {"http": 80, "https": 443}
_TOKEN = re.compile(r"[!#$%&'*+.^_`|~0-9A-Za-z-]+")  # RFC 9110 field names
_HEADER_VALUE = re.compile(r"[\x20-\x7e\t]*")
_HOST = re.compile(r"[A-Za-z0-9._:-]+")  # a name, IPv4, or IPv6 (httpx drops the brackets)
# Smaller bodies are compressed inline: the hop to a worker thread (~65 us here) costs
# more than gzip level 1 of a few KiB.
_GZIP_IN_THREAD_BYTES = 64 << 10
_USER_AGENT = f"event-exporter/{__version__}"
_CONNECTED = frozenset(
    {"connection.connect_tcp.complete", "connection.connect_unix_socket.complete"}
)


@dataclass(frozen=True, repr=False)
class HttpSettings:
    """Where and how batches are posted. Checked when the driver is made."""

    url: str
    """The primary: where every request goes while it answers."""
    urls: tuple[str, ...] = ()
    """More URLs of the same service, tried in this order when the one in use fails with
    a retryable error (:mod:`drivers.failover`)."""
    failback_after: float = 30.0
    """Seconds after leaving the primary when the next request goes to it again."""
    body: str = "ndjson"
    event_format: Literal["json", "tab-text"] = "json"
    """What the events are: decides ``single``'s Content-Type; ``json-array`` needs json."""
    options: object | None = None
    """The body's own settings (its table's dataclass, ``[exporter.NAME.<table>]``); None
    for a body that has none, or to take that table's defaults."""
    compression: Compression = "none"
    gzip_level: int = 1
    headers: Mapping[str, str] = field(default_factory=dict)
    bearer_token: Secret | None = None
    basic_user: str | None = None
    basic_password: Secret | None = None
    signing: Signing = "none"
    signing_key: Secret | None = None
    idempotency_header: str = "Idempotency-Key"
    """Header carrying the batch key; empty: none."""
    connect_timeout: float = 5.0
    read_timeout: float = 30.0
    """Also the write timeout: the longest wait for the socket to take or give bytes."""
    request_timeout: float = 60.0
    """The whole request, connecting and the response included."""
    concurrency: int = 1
    """Batches in flight at once. 1 keeps the order of events; above 1 order holds only
    within a batch."""
    follow_redirects: bool = False
    """Follow a 307 or 308 within the same origin (never another host, never 301-303)."""
    allow_plain_http: bool = False
    """Send credentials or a signature over plain ``http://`` to a host that is not
    loopback, where whoever is on the path reads them; refused unless set."""
    verify_tls: bool = True
    ca_file: str | None = None
    unix_socket: str | None = None
    """Connect to this unix socket instead of the URL's host (the URL still names the
    Host header and the path)."""
    retry_statuses: frozenset[int] = DEFAULT_RETRY_STATUSES

    def __post_init__(self) -> None:
        check_url(self.url)
        object.__setattr__(self, "urls", tuple(self.urls))
        self._check_urls()
        kind = KINDS.get(self.body)
        if kind is None:
            raise UsageError(f"unknown http body {self.body!r} (allowed: {', '.join(BODIES)})")
        if kind.json_only and self.event_format != "json":
            raise UsageError(f"http body {self.body} needs json events (--format json)")
        if kind.options is None and self.options is not None:
            raise UsageError(f"http body {self.body} has no settings of its own")
        if kind.options is not None and self.options is None:
            object.__setattr__(self, "options", kind.options())
        if kind.options is not None and not isinstance(self.options, kind.options):
            raise UsageError(f"http body {self.body} takes {kind.options.__name__} settings")
        if self.compression not in COMPRESSIONS:
            raise UsageError(
                f"unknown compression {self.compression!r} (allowed: {', '.join(COMPRESSIONS)})"
            )
        if not 0 <= self.gzip_level <= 9:
            raise UsageError(f"gzip level must be 0 to 9, got {self.gzip_level}")
        if self.signing not in SIGNINGS:
            raise UsageError(f"unknown signing {self.signing!r} (allowed: {', '.join(SIGNINGS)})")
        if (self.signing != "none") != (self.signing_key is not None):
            raise UsageError("signing and a signing key go together: give both or neither")
        if self.bearer_token is not None and self.basic_user is not None:
            raise UsageError("give a bearer token or basic auth, not both")
        if self.body_secrets and (self.bearer_token is not None or self.basic_user is not None):
            raise UsageError(
                f"http body {self.body} sends its own {self.body_secrets[0][0]} as "
                "Authorization: give no bearer token or basic auth"
            )
        if (self.basic_user is None) != (self.basic_password is None):
            raise UsageError("basic auth needs both a user and a password")
        for name, value in (
            ("connect timeout", self.connect_timeout),
            ("read timeout", self.read_timeout),
            ("request timeout", self.request_timeout),
        ):
            if not value > 0:
                raise UsageError(f"http {name} must be positive, got {value}")
        if self.ca_file is not None and not os.path.isfile(self.ca_file):
            raise UsageError(f"CA file {self.ca_file} does not exist")
        if self.concurrency < 1:
            raise UsageError(f"http concurrency must be at least 1, got {self.concurrency}")
        for status in self.retry_statuses:
            if not 100 <= status <= 599 or 200 <= status <= 299:
                raise UsageError(f"retry status {status} is not a 1xx, 3xx, 4xx or 5xx status")
        for header, text in self.headers.items():
            if not _TOKEN.fullmatch(header) or not _HEADER_VALUE.fullmatch(text):
                raise UsageError(
                    f"header {header!r}: a name is letters, digits and !#$%&'*+-.^_`|~; "
                    "a value is printable ASCII"
                )
        if self.idempotency_header and not _TOKEN.fullmatch(self.idempotency_header):
            raise UsageError(f"idempotency header {self.idempotency_header!r} is not a header name")
        for what, secret in (
            ("bearer token", self.bearer_token),
            ("password", self.basic_password),
            *self.body_secrets,
        ):
            if secret is not None and not _HEADER_VALUE.fullmatch(secret.reveal()):
                raise UsageError(
                    f"the {what} from {secret.origin} holds characters a header cannot carry "
                    "(printable ASCII only; a second line?)"
                )
        if self.signing == "standard-webhooks" and self.signing_key is not None:
            signing_key_bytes(self.signing_key)
        in_clear = self.sent_in_clear
        if in_clear and not self.allow_plain_http:
            raise UsageError(
                f"http destination {printable_url(self.url)}: the {_and(in_clear)} would "
                f"travel in clear (plain http:// to {self._clear_hosts}, not a loopback "
                "address): use https://, or allow it explicitly (allow_plain_http = true, "
                "--http-allow-plain-http)"
            )

    def _check_urls(self) -> None:
        seen = {_safe_url(_parse_url(self.url))}
        for index, text in enumerate(self.urls):
            try:
                check_url(text)
            except UsageError as exc:
                raise UsageError(f"urls[{index}]: {exc}") from None
            shown = _safe_url(_parse_url(text))
            if shown in seen:
                raise UsageError(f"urls[{index}]: {printable_url(text)} is listed already")
            seen.add(shown)
        if self.urls and self.unix_socket is not None:
            raise UsageError(
                "urls and unix_socket do not go together: every request would go to the one socket"
            )
        if not self.failback_after > 0:
            raise UsageError(f"failback_after must be positive, got {self.failback_after}")

    @property
    def all_urls(self) -> tuple[str, ...]:
        """The primary, then the others."""
        return (self.url, *self.urls)

    def __repr__(self) -> str:
        """Without the URL's query (it may hold a token); Secrets print as ``***``."""
        return f"HttpSettings(url={_safe_url(httpx.URL(self.url))!r}, body={self.body!r}, ...)"

    @property
    def body_secrets(self) -> tuple[tuple[str, Secret], ...]:
        """(what, secret) of the body's own settings that requests carry (Splunk HEC's
        token): its options' ``secrets``, if they have any."""
        secrets: tuple[tuple[str, Secret], ...] = getattr(self.options, "secrets", ())
        return secrets

    @property
    def credentials(self) -> tuple[str, ...]:
        """What each request carries that proves who we are: auth, a signature, a header
        named like a credential (``X-Api-Key``), the body's token."""
        found = [
            what
            for what, secret in (
                ("bearer token", self.bearer_token),
                ("basic auth password", self.basic_password),
                (f"{self.signing} signature", self.signing_key),
                *self.body_secrets,
            )
            if secret is not None
        ]
        return (*found, *(f"header {name}" for name in self.headers if is_credential_header(name)))

    @property
    def sent_in_clear(self) -> tuple[str, ...]:
        """The credentials that whoever is on the path could read: those sent over plain
        ``http://`` to a host that is not loopback (a unix socket is local)."""
        return self.credentials if self._clear_hosts else ()

    @property
    def _clear_hosts(self) -> str:
        """The hosts (of every URL) reached over plain http:// that are not loopback."""
        if self.unix_socket is not None:
            return ""
        hosts = []
        for text in self.all_urls:
            url = _parse_url(text)
            if url.scheme == "http" and not is_loopback_host(url.host) and url.host not in hosts:
                hosts.append(url.host)
        return _and(hosts)

    def warnings(self) -> list[tuple[str, str]]:
        """(setting, why) for what these settings allow that is probably not meant:
        ``check`` and ``run`` show them, ``export --to`` writes them on stderr."""
        found = []
        if not self.verify_tls:
            found.append(
                (
                    "verify_tls",
                    "false: the server's certificate is not checked, so whoever is on the "
                    "path can read and change what is sent"
                    + (f" ({_and(self.credentials)} included)" if self.credentials else ""),
                )
            )
        if self.sent_in_clear:  # allowed, or __post_init__ had refused it
            found.append(
                (
                    "allow_plain_http",
                    f"true: what proves who we are ({_and(self.sent_in_clear)}) travels in "
                    f"clear to {self._clear_hosts} (plain http://, not a loopback "
                    "address)",
                )
            )
        return found

    def make_body(self) -> Body | None:
        """The body batches are encoded in; None for ``single`` (sent event by event)."""
        make = KINDS[self.body].make
        return None if make is None else make(BodyContext(self.event_format, self.options))

    @property
    def content_type(self) -> str:
        """The body's; ``single``: one json event is JSON, a tab-text line text/plain."""
        body = self.make_body()
        if body is not None:
            return body.content_type
        return "application/json" if self.event_format == "json" else "text/plain"


def printable_url(text: str) -> str:
    """``text`` as it may be printed (``check``, messages): without its query."""
    return _safe_url(_parse_url(text))


def check_url(text: str) -> httpx.URL:
    """The destination URL, or a UsageError that repeats neither its query nor any
    credentials in it."""
    url = _parse_url(text)
    if url.scheme not in ("http", "https"):
        raise UsageError("http destination: the scheme must be http or https")
    if url.userinfo:
        raise UsageError(
            "http destination: credentials in the URL are refused (they would show in "
            "messages); use basic auth with the password from a file or variable"
        )
    return url


def is_loopback_host(host: str) -> bool:
    """True for 127.0.0.0/8, ::1 (also as ::ffff:127.x.y.z) and ``localhost``: traffic
    to them never leaves the machine."""
    name = host.strip("[]").lower()
    if name == "localhost":
        return True
    try:
        address = ipaddress.ip_address(name)
    except ValueError:
        return False
    if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped is not None:
        address = address.ipv4_mapped
    return address.is_loopback


_CREDENTIAL_HEADERS = frozenset({"authorization", "proxy-authorization", "cookie"})
_CREDENTIAL_WORDS = frozenset(
    {
        "token",
        "secret",
        "password",
        "passwd",
        "apikey",
        "auth",
        "authorization",
        "authentication",
        "credential",
    }
)
_KEY_WORDS = frozenset({"api", "access", "private"})  # X-Api-Key, X-Access-Key


def is_credential_header(name: str) -> bool:
    """A header that carries a secret: Authorization, Proxy-Authorization, Cookie, and
    names with a word such as Token, Secret, Password, Auth or Api-Key (X-Auth-Token)."""
    lowered = name.lower()
    if lowered in _CREDENTIAL_HEADERS:
        return True
    words = re.split(r"[-_.]", lowered)
    if _CREDENTIAL_WORDS.intersection(word.removesuffix("s") for word in words):
        return True
    return any(a in _KEY_WORDS and b == "key" for a, b in zip(words, words[1:], strict=False))


def _and(items: Iterable[str]) -> str:
    """``a``, ``a and b``, ``a, b and c``."""
    words = list(items)
    return ", ".join(words[:-1]) + " and " + words[-1] if len(words) > 1 else "".join(words)


def _safe_url(url: httpx.URL) -> str:
    """The URL as it may be printed: no query (tokens travel there), no fragment."""
    safe = str(url.copy_with(query=None, fragment=None))
    return safe + "?***" if url.query else safe


class ReceiverText:
    """Text a receiver controls (an error body, a reason phrase, a Location, the text of
    a failure), made fit for a message, a log line or a dead-letter reason: our secrets
    in it (a token it echoes) replaced with ``***``, whitespace runs made one space,
    control characters escaped and its length capped (:func:`~exporter.observe.text.printable`).
    """

    def __init__(self, secrets: Iterable[str] = ()) -> None:
        self._secrets = sorted({secret for secret in secrets if secret}, key=len, reverse=True)
        self._pattern = (
            re.compile("|".join(map(re.escape, self._secrets))) if self._secrets else None
        )

    @classmethod
    def of(cls, settings: HttpSettings) -> ReceiverText:
        """For a driver with ``settings``: its token, password (also as the Basic header's
        base64), signing key, its body's token (HEC's), credential headers' values and the
        URL's query, which may hold a token (its values of 8 characters or more: shorter
        ones are ordinary words)."""
        secrets = [
            secret.reveal()
            for secret in (settings.bearer_token, settings.basic_password, settings.signing_key)
            if secret is not None
        ]
        secrets += [secret.reveal() for _, secret in settings.body_secrets]
        if settings.basic_password is not None:
            pair = f"{settings.basic_user}:{settings.basic_password.reveal()}".encode()
            secrets.append(base64.b64encode(pair).decode("ascii"))
        if settings.signing_key is not None and settings.signing_key.reveal().startswith("whsec_"):
            secrets.append(settings.signing_key.reveal().removeprefix("whsec_"))
        secrets += [value for name, value in settings.headers.items() if is_credential_header(name)]
        for text in settings.all_urls:
            url = _parse_url(text)
            if url.query:
                secrets.append(url.query.decode("ascii", "replace"))
                secrets += [value for _, value in url.params.multi_items() if len(value) >= 8]
        return cls(secrets)

    def redact(self, text: str) -> str:
        """``text`` with each of our secrets in it replaced with ``***``."""
        return self._pattern.sub("***", text) if self._pattern is not None else text

    def shown(self, text: str, *, cut: bool = False, limit: int = _SHOWN_CHARS) -> str:
        """``text`` as a message may hold it. ``cut``: it is the head of a longer text, so
        a secret it ends in the middle of is hidden too."""
        if len(text) > _SCANNED_CHARS:
            text, cut = text[:_SCANNED_CHARS], True
        if cut:
            text = self._hide_cut_secret(text)
        text = self.redact(" ".join(self.redact(text).split()))  # again: runs made one space
        return printable(text, limit) + ("..." if cut and len(text) <= limit else "")

    def _hide_cut_secret(self, text: str) -> str:
        """``text`` without a tail of 4 characters or more that begins one of our
        secrets (the rest of it was cut off, so :meth:`redact` cannot see it)."""
        longest = len(self._secrets[0]) if self._secrets else 0
        for start in range(max(0, len(text) - longest + 1), len(text)):
            tail = text[start:]
            if any(len(tail) >= min(4, len(s)) and s.startswith(tail) for s in self._secrets):
                return text[:start] + "***"
        return text


_PLAIN_TEXT = ReceiverText()
"""For receiver text where we have no secret to hide (still escaped and capped)."""


class _RedactLog(logging.Filter):
    """httpx logs each request at INFO, with its full URL and the receiver's reason
    phrase: the URL is printed without its query, text as :class:`ReceiverText` shows it
    (every live driver's secrets hidden)."""

    def __init__(self) -> None:
        super().__init__()
        self.texts: weakref.WeakSet[ReceiverText] = weakref.WeakSet()

    def filter(self, record: logging.LogRecord) -> bool:
        if isinstance(record.args, tuple):
            record.args = tuple(self._safe(arg) for arg in record.args)
        return True

    def _safe(self, arg: object) -> object:
        if isinstance(arg, httpx.URL):
            return _safe_url(arg)
        if isinstance(arg, str):
            for text in list(self.texts):
                arg = text.redact(arg)
            return printable(arg)
        return arg


_REDACT_LOG = _RedactLog()


def _parse_url(text: str) -> httpx.URL:
    """The URL, or a UsageError that does not repeat it (its query may hold a token)."""
    try:
        url = httpx.URL(text)
        port = url.port
    except (httpx.InvalidURL, ValueError) as exc:
        raise UsageError(f"http destination is not a valid URL: {exc}") from None
    if not url.host:
        raise UsageError("http destination has no host (http://HOST[:PORT]/PATH)")
    if not _HOST.fullmatch(url.host):
        raise UsageError("http destination is not a valid URL: its host is not a name or address")
    if port is not None and not 1 <= port <= 65535:
        raise UsageError(f"http destination port {port} is not 1 to 65535")
    return url


class HttpDriver:
    """POSTs each batch with one ``httpx.AsyncClient`` (keep-alive, no automatic retries)."""

    def __init__(
        self,
        settings: HttpSettings,
        *,
        transport: httpx.AsyncBaseTransport | None = None,
        clock: Callable[[], float] = time.time,
        monotonic: Callable[[], float] = time.monotonic,
    ) -> None:
        """``clock``: wall time (signatures, Retry-After dates); ``monotonic``: paces
        failback (:mod:`drivers.failover`)."""
        self.settings = settings
        self._urls = [_parse_url(text) for text in settings.all_urls]
        url = self._urls[0]
        self._url = url
        self._name = str(url.copy_with(query=None, fragment=None))
        self.endpoints = Endpoints(
            [str(u.copy_with(query=None, fragment=None)) for u in self._urls],
            settings.failback_after,
            clock=monotonic,
        )
        """Which URL requests go to; per URL, what they did (``/metrics``, ``/ready``)."""
        self._text = ReceiverText.of(settings)
        _REDACT_LOG.texts.add(self._text)
        logging.getLogger("httpx").addFilter(_REDACT_LOG)  # once: the same object
        self._clock = clock
        self._body = settings.make_body()
        self._retry_statuses = settings.retry_statuses
        if self._body is not None and self._body.retry_statuses is not None:
            self._retry_statuses = self._body.retry_statuses
        self._answered: frozenset[int] = getattr(self._body, "answered_statuses", frozenset())
        """Non-2xx statuses whose answer the body reads (HEC's 400 naming the bad event)."""
        self._fixed_headers = self._build_headers()
        if transport is None:
            transport = httpx.AsyncHTTPTransport(
                verify=self._tls_context(),
                uds=settings.unix_socket,
                limits=httpx.Limits(
                    max_connections=settings.concurrency,
                    max_keepalive_connections=settings.concurrency,
                ),
            )
        read = settings.read_timeout
        timeout = httpx.Timeout(connect=settings.connect_timeout, read=read, write=read, pool=read)
        self._client = httpx.AsyncClient(
            transport=transport,
            timeout=timeout,
            follow_redirects=False,  # followed here, only within the origin (_redirect)
            trust_env=False,
            event_hooks={"response": [_take_location]},
        )
        self._resume: tuple[Batch, int] | None = None  # single body: batch, events sent
        self._closed = False
        self.connections = 0
        """Connections opened so far (told by httpcore's ``trace`` extension)."""

    @property
    def name(self) -> str:
        """The URL without query or fragment (they may carry tokens)."""
        return self._name

    @property
    def concurrency(self) -> int:
        return self.settings.concurrency

    async def send(self, batch: Batch) -> Partial | None:
        if self._closed:
            raise DriverClosedError(f"{self.name}: send after close")
        body = self._body
        if body is None:
            await self._send_single(batch)
            return None
        answer = await self._post(body.encode(batch), batch.key)
        if answer is None:
            return None
        status, content = answer
        partial = body.answer(batch, status, content)
        if partial is None and not 200 <= status <= 299:  # it named no item: the status decides
            text = content.decode("utf-8", "surrogateescape")
            raise classify_status(
                status,
                "",
                self._text.shown(text),
                name=self.name,
                retry_statuses=self._retry_statuses,
                retry_after=None,
                location=None,
                now=self._clock(),
            )
        return partial

    async def flush(self) -> None:
        return None

    async def reopen(self) -> None:
        """Nothing to reopen: connections come and go with keep-alive."""
        return None

    async def aclose(self) -> None:
        self._closed = True
        _REDACT_LOG.texts.discard(self._text)
        await self._client.aclose()

    async def _send_single(self, batch: Batch) -> None:
        start = 0
        if self._resume is not None and self._resume[0] is batch:
            start = self._resume[1]
        self._resume = None
        events = list(batch.lines())
        for index in range(start, len(events)):
            try:
                key = batch.key if len(events) == 1 else f"{batch.key}-{index}"
                await self._post(events[index], key)
            except RetryableDeliveryError:
                self._resume = (batch, index)
                raise

    async def _post(self, data: bytes, key: str) -> tuple[int, bytes] | None:
        """POST ``data`` to the active endpoint: None once delivered, or (status, body)
        of a 2xx answer the body reads; else raise the classified error (a retryable one
        moves the next request to the next endpoint, :mod:`drivers.failover`)."""
        settings = self.settings
        if settings.compression == "gzip":
            if len(data) < _GZIP_IN_THREAD_BYTES:
                data = _gzip(data, settings.gzip_level)
            else:  # zlib lets go of the GIL: the next batch is formatted meanwhile
                data = await anyio.to_thread.run_sync(_gzip, data, settings.gzip_level)
        headers = dict(self._fixed_headers)
        if settings.idempotency_header:
            headers[settings.idempotency_header] = key
        headers.update(self._signature(data, key))
        endpoints = self.endpoints
        index = endpoints.pick()
        try:
            answer = await self._post_to(self._urls[index], data, headers)
        except RetryableDeliveryError as exc:
            raise endpoints.failed(index, exc) from None
        except DeliveryError as exc:
            endpoints.refused(index, str(exc))
            raise
        endpoints.succeeded(index)
        return answer

    async def _post_to(
        self, base: httpx.URL, data: bytes, headers: Mapping[str, str]
    ) -> tuple[int, bytes] | None:
        """:meth:`_post` at one endpoint, following the redirects that may be."""
        settings = self.settings
        url: httpx.URL | None = base
        deadline = anyio.current_time() + settings.request_timeout  # hops included
        for hops in range(MAX_REDIRECTS + 1):
            assert url is not None
            request = self._client.build_request(
                "POST", url, content=data, headers=headers, extensions={"trace": self._trace}
            )
            try:
                with anyio.fail_after(max(0.0, deadline - anyio.current_time())):
                    response = await self._client.send(request, stream=True)  # to its status
            except Exception as exc:
                where = self._where(url, base)
                raise classify_exception(exc, where, settings.request_timeout, self._text) from None
            try:
                body, status = self._body, response.status_code
                if body is not None and (
                    (200 <= status <= 299 and body.reads_answer) or status in self._answered
                ):
                    return status, await self._answer(response, url, base)
                url = await self._outcome(response, url, base, hops)
            finally:
                with anyio.CancelScope(shield=True):
                    await response.aclose()
            if url is None:
                return None
        raise AssertionError("unreachable: _redirect refuses the hop after MAX_REDIRECTS")

    async def _answer(self, response: httpx.Response, url: httpx.URL, base: httpx.URL) -> bytes:
        """A 2xx answer's body, whole (decoded): what it says of each item decides what
        is sent again, so one that cannot be read is retried (nothing was counted yet)."""
        chunks: list[bytes] = []
        size = 0
        try:
            with anyio.fail_after(self.settings.read_timeout):
                async for chunk in response.aiter_bytes():
                    size += len(chunk)
                    if size > _ANSWER_MAX_BYTES:
                        where = self._where(url, base)
                        raise PermanentDeliveryError(
                            f"{where}: an answer of more than {_ANSWER_MAX_BYTES} bytes"
                        )
                    chunks.append(chunk)
        except (httpx.HTTPError, TimeoutError) as exc:
            raise classify_exception(
                exc, self._where(url, base), self.settings.read_timeout, self._text
            ) from None
        return b"".join(chunks)

    async def _trace(self, event: str, info: Mapping[str, object]) -> None:
        """httpcore's steps of a request: counts the connections it opens."""
        if event in _CONNECTED:
            self.connections += 1

    def _where(self, url: httpx.URL, base: httpx.URL) -> str:
        """The endpoint ``base``, for a message: its name, and where a redirect took it."""
        name = str(base.copy_with(query=None, fragment=None))
        if url is base:
            return name
        return f"{name} (redirected to {printable(self._text.redact(_safe_url(url)))})"

    async def _outcome(
        self, response: httpx.Response, url: httpx.URL, base: httpx.URL, hops: int
    ) -> httpx.URL | None:
        """None if delivered; the URL to post to again for a redirect that is followed;
        else raise the classified error. The status decides: a body that cannot be read
        to its end changes nothing (the connection is then dropped rather than reused)."""
        status = response.status_code
        if 200 <= status <= 299:
            with anyio.move_on_after(self.settings.read_timeout):
                try:
                    async for _ in response.aiter_raw():  # to the end: keeps the connection
                        pass
                except httpx.HTTPError:
                    pass
            return None
        location, redirect = None, None
        if 300 <= status <= 399:
            target, location, redirect = self._redirect(
                url, response.extensions.get(_LOCATION), status, hops
            )
            if redirect is None:
                return target
        excerpt = ""
        with anyio.move_on_after(self.settings.read_timeout):
            excerpt = await self._excerpt(response)
        raise classify_status(
            status,
            self._text.shown(response.reason_phrase),
            excerpt,
            name=self._where(url, base),
            retry_statuses=self._retry_statuses,
            retry_after=response.headers.get("retry-after"),
            location=location,
            now=self._clock(),
            redirect=redirect,
        )

    def _redirect(
        self, url: httpx.URL, location: str | None, status: int, hops: int
    ) -> tuple[httpx.URL | None, str | None, str | None]:
        """(where to, the Location as a message may name it, what happened); what
        happened is None when the redirect is followed."""
        if location is None:
            return None, None, "without a Location: not followed"
        try:
            target = _checked(url.join(location.strip()))
        except (httpx.InvalidURL, ValueError):
            return None, self._text.redact(location), "not a valid URL: not followed"
        why = self._not_followed(url, target, status, hops)
        return target.copy_with(userinfo=b""), self._text.redact(str(target)), why

    def _not_followed(
        self, url: httpx.URL, target: httpx.URL, status: int, hops: int
    ) -> str | None:
        """Why a redirect from ``url`` to ``target`` is not followed, or None: only a 307
        or 308 within the origin is, at most MAX_REDIRECTS times, so the body, headers
        and signature never go to another host."""
        if not self.settings.follow_redirects:
            return "not followed (follow_redirects is off)"
        if status in (301, 302, 303):
            return (
                f"not followed: a {status} would turn the POST into a bodyless GET "
                "(only 307 and 308 keep the body)"
            )
        if status not in (307, 308):
            return "not followed (only a 307 or 308 is)"
        other = _other_origin(url, target)
        if other:
            return (
                f"{other}: not followed (the body, headers and signature go only to {_origin(url)})"
            )
        if hops >= MAX_REDIRECTS:
            return f"more than {MAX_REDIRECTS} redirects: not followed"
        return None

    async def _excerpt(self, response: httpx.Response) -> str:
        """The first characters of an error response's body, as a reason may hold them
        (read: at most 4 KiB, decompressed to at most as much)."""
        head, cut = await _body_head(response)
        text = _decoded(head, response.headers.get("content-encoding", "")).decode(
            "utf-8", "surrogateescape"
        )
        return self._text.shown(text, cut=cut)

    def _build_headers(self) -> dict[str, str]:
        settings = self.settings
        headers = {"User-Agent": _USER_AGENT, "Content-Type": settings.content_type}
        if self._body is not None:
            headers.update(self._body.headers())
        if settings.compression == "gzip":
            headers["Content-Encoding"] = "gzip"
        headers.update(settings.headers)
        if settings.bearer_token is not None:
            headers["Authorization"] = "Bearer " + settings.bearer_token.reveal()
        elif settings.basic_user is not None and settings.basic_password is not None:
            pair = f"{settings.basic_user}:{settings.basic_password.reveal()}".encode()
            headers["Authorization"] = "Basic " + base64.b64encode(pair).decode("ascii")
        return headers

    def _signature(self, body: bytes, key: str) -> dict[str, str]:
        settings = self.settings
        if settings.signing_key is None:
            return {}
        if settings.signing == "stalwart":
            return {"X-Signature": stalwart_signature(settings.signing_key, body)}
        timestamp = str(int(self._clock()))
        return {
            "webhook-id": key,
            "webhook-timestamp": timestamp,
            "webhook-signature": standard_webhooks_signature(
                settings.signing_key, key, timestamp, body
            ),
        }

    def _tls_context(self) -> ssl.SSLContext | bool:
        settings = self.settings
        if not settings.verify_tls:
            return False
        try:
            return ssl.create_default_context(cafile=settings.ca_file)
        except (OSError, ssl.SSLError) as exc:
            raise UsageError(f"cannot load CA file {settings.ca_file}: {exc}") from None


def _gzip(data: bytes, level: int) -> bytes:
    return gzip.compress(data, compresslevel=level, mtime=0)


_LOCATION = "event_exporter.location"


async def _take_location(response: httpx.Response) -> None:
    """A response hook: the Location is ours to judge (:meth:`HttpDriver._redirect`),
    so it moves to the response's extensions before httpx sees it (httpx would build a
    redirect from it, and refuse one it cannot parse as a protocol error, retried
    forever)."""
    location = response.headers.get("location")
    if location is not None:
        del response.headers["location"]
        response.extensions[_LOCATION] = location


def _checked(url: httpx.URL) -> httpx.URL:
    """``url`` if it names a host and a port we would connect to; else ValueError."""
    if not url.host or not _HOST.fullmatch(url.host) or url.scheme not in _DEFAULT_PORTS:
        raise ValueError("not an http(s) URL with a host")
    if url.port is not None and not 1 <= url.port <= 65535:
        raise ValueError("port out of range")
    return url


def _origin(url: httpx.URL) -> str:
    return f"{url.scheme}://{url.netloc.decode('ascii', 'replace').rpartition('@')[2]}"


def _other_origin(url: httpx.URL, target: httpx.URL) -> str:
    """What makes ``target`` another origin than ``url`` ("another host"), or ""."""
    if target.host != url.host:
        return "another host"
    if target.scheme != url.scheme:
        return f"another scheme ({target.scheme})"
    if (target.port or _DEFAULT_PORTS[target.scheme]) != (url.port or _DEFAULT_PORTS[url.scheme]):
        return "another port"
    return ""


async def _body_head(response: httpx.Response) -> tuple[bytes, bool]:
    """The first bytes of an error response's body as they came (at most 4 KiB), and
    whether there was more. Its length is what matters: a body we cannot read adds
    nothing to the status."""
    head = bytearray()
    try:
        async for chunk in response.aiter_raw():
            head += chunk
            if len(head) > _EXCERPT_READ_BYTES:
                return bytes(head[:_EXCERPT_READ_BYTES]), True
    except httpx.HTTPError:
        pass
    return bytes(head), False


def _decoded(head: bytes, encoding: str) -> bytes:
    """``head`` decompressed (gzip, deflate), to at most 4 KiB: a compressed error body
    cannot make us hold more than that (httpx would inflate a whole chunk)."""
    coding = encoding.strip().lower()
    if coding in ("", "identity"):
        return head
    if coding not in ("gzip", "x-gzip", "deflate"):
        return f"(a {coding} body)".encode()
    for wbits in (47, -15):  # gzip or zlib (header detected); raw deflate
        try:
            return zlib.decompressobj(wbits).decompress(head, _EXCERPT_READ_BYTES)
        except zlib.error:
            continue
    return f"(an undecodable {coding} body)".encode()


# -- signatures ----------------------------------------------------------------------


def standard_webhooks_signature(key: Secret, msg_id: str, timestamp: str, body: bytes) -> str:
    """Standard Webhooks ``webhook-signature``: ``v1,`` + base64 HMAC-SHA256 of
    ``id.timestamp.body``."""
    signed = f"{msg_id}.{timestamp}.".encode() + body
    digest = hmac.new(signing_key_bytes(key), signed, hashlib.sha256).digest()
    return "v1," + base64.b64encode(digest).decode("ascii")


def signing_key_bytes(key: Secret) -> bytes:
    """A Standard Webhooks HMAC key: a ``whsec_`` key is base64 after its prefix, as the
    spec says; any other key is its UTF-8 bytes. UsageError (checked when the settings
    are made) for a ``whsec_`` key that is not base64, so that no batch is signed with it."""
    secret = key.reveal()
    if not secret.startswith("whsec_"):
        return secret.encode()
    try:
        raw = base64.b64decode(secret.removeprefix("whsec_"), validate=True)
    except (binascii.Error, ValueError):
        raw = b""
    if not raw:
        raise UsageError(
            f"the signing key from {key.origin} starts with whsec_ but what follows is not "
            "base64 (a Standard Webhooks key is whsec_ and the base64 of its bytes)"
        )
    return raw


# -- classification: the one place where statuses and foreign exceptions become ours ------


def classify_status(
    status: int,
    reason: str,
    excerpt: str,
    *,
    name: str,
    retry_statuses: frozenset[int],
    retry_after: str | None,
    location: str | None,
    now: float,
    redirect: str | None = None,
) -> DeliveryError:
    """The error for a response that is not 2xx. ``reason`` and ``excerpt`` are shown as
    given (the driver makes them safe first); a 3xx names its ``location`` (without its
    query or credentials) and ``redirect``, what became of it."""
    message = f"{name}: HTTP {status} {reason}".rstrip()
    if 300 <= status <= 399:
        if location:
            message += f": redirected to {_shown_location(location)}, "
            message += redirect or "not followed (follow_redirects is off)"
        elif redirect:
            message += f" {redirect}"
    if excerpt:
        message += f": {excerpt}"
    if status in retry_statuses:
        return RetryableDeliveryError(message, parse_retry_after(retry_after, now))
    return PermanentDeliveryError(message)


def _shown_location(location: str) -> str:
    """A Location as a message may name it: no query (a token), no credentials, escaped."""
    where, question, _ = location.partition("?")
    scheme, slashes, rest = where.partition("//")
    if slashes:
        authority, slash, path = rest.partition("/")
        where = f"{scheme}//{authority.rpartition('@')[2]}{slash}{path}"
    return printable(where) + ("?***" if question else "")


def parse_retry_after(value: str | None, now: float) -> float | None:
    """Seconds to wait from ``Retry-After``: delta-seconds (a fraction accepted) or an HTTP
    date; None if absent or unreadable (the backoff then decides)."""
    if value is None:
        return None
    value = value.strip()
    whole, dot, fraction = value.partition(".")  # RFC 9110 says whole seconds; take 1.5 too
    if whole.isdigit() and whole.isascii() and (not dot or fraction.isdigit()):
        return float(value)
    try:
        when = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError, IndexError):
        return None
    if when.tzinfo is None:  # asctime form: an HTTP date is GMT even when it does not say so
        when = when.replace(tzinfo=datetime.UTC)
    return max(0.0, when.timestamp() - now)


_RETRYABLE_TRANSPORT = (
    httpx.TimeoutException,
    httpx.NetworkError,
    httpx.RemoteProtocolError,
    httpx.ProxyError,
)


def classify_exception(
    exc: BaseException, name: str, request_timeout: float, text: ReceiverText = _PLAIN_TEXT
) -> DeliveryError:
    """Every exception a request can raise, as a DeliveryError.

    Retryable: timeouts, connect/read/write/close failures (TLS handshakes included), a
    server that breaks HTTP or closes mid-response, a proxy failure, and our own
    whole-request deadline. Permanent: what no retry can change (an unsupported scheme,
    a request httpx refuses to write, a bug in how a stream is used). The exception's
    text may quote the receiver (a bad status line, a certificate's names): it is shown
    as ``text`` shows receiver text.
    """
    detail = text.shown(_detail(exc))
    if isinstance(exc, TimeoutError):
        return RetryableDeliveryError(f"{name}: no response within {request_timeout} s")
    if isinstance(exc, httpx.TimeoutException):  # its text is anyio's cancel-scope noise
        return RetryableDeliveryError(f"{name}: {_kind(exc)}")
    if isinstance(exc, httpx.LocalProtocolError):  # its text may quote a header (a token)
        return PermanentDeliveryError(f"{name}: the request could not be written (a header?)")
    if isinstance(exc, _RETRYABLE_TRANSPORT):
        return RetryableDeliveryError(f"{name}: {_kind(exc)}: {detail}")
    if isinstance(exc, OSError):
        return RetryableDeliveryError(f"{name}: {detail}")
    return PermanentDeliveryError(f"{name}: {_kind(exc)}: {detail}")


def _detail(exc: BaseException) -> str:
    """The first non-empty message down the chain: httpx's ReadError('') wraps
    httpcore's, which wraps ``[Errno 104] Connection reset by peer``."""
    node: BaseException | None = exc
    for _ in range(8):  # chains are short; never loop on a cycle
        if node is None:
            break
        if str(node):
            return str(node)
        node = node.__cause__ or node.__context__
    return type(exc).__name__


def _kind(exc: BaseException) -> str:
    """``ConnectError`` -> ``connect error``: the httpx class, readable."""
    words: list[str] = []
    for char in type(exc).__name__:
        if char.isupper() and words:
            words.append(" ")
        words.append(char.lower())
    return "".join(words)
