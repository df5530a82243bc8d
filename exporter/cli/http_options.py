"""The ``--http-*`` options of ``export --to http(s)://...`` and ``replay``.

Secrets come only from an environment variable or a file (``--http-bearer-token-env``,
``--http-basic-password-file``, ...), never from the command line, where ``ps`` shows
them to every user: a ``--http-header`` that carries a credential is refused.
"""

from __future__ import annotations

import argparse
import sys
from typing import Literal

from drivers.http import (
    BODIES,
    COMPRESSIONS,
    DEFAULT_RETRY_STATUSES,
    MAX_REDIRECTS,
    SIGNINGS,
    HttpSettings,
    is_credential_header,
)
from exporter.errors import UsageError
from exporter.observe.text import printable
from exporter.secret import Secret

_defaults = HttpSettings(url="http://localhost/")
_OPTIONS = {"verify_tls": "--http-insecure", "allow_plain_http": "--http-allow-plain-http"}
"""The option of each setting HttpSettings.warnings() names."""


def _header(text: str) -> tuple[str, str]:
    name, sep, value = text.partition(":")
    if not sep or not name.strip():
        raise argparse.ArgumentTypeError(  # not repeated: it may be a secret, colon missing
            "a header is 'NAME: VALUE', like 'X-Source: imap01'"
        )
    if is_credential_header(name.strip()):
        raise argparse.ArgumentTypeError(
            f"{printable(name.strip())!r} carries a credential, and a command line is "
            "visible to every user (ps): give it with --http-bearer-token-env/-file, or "
            "--http-basic-user with --http-basic-password-env/-file"
        )
    return name.strip(), value.strip()


def _statuses(text: str) -> frozenset[int]:
    try:
        return frozenset(int(part) for part in text.split(",") if part.strip())
    except ValueError:
        raise argparse.ArgumentTypeError(
            f"{text!r} is not a comma-separated list of statuses like 429,503"
        ) from None


def _seconds(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a number of seconds") from None
    if not value > 0:
        raise argparse.ArgumentTypeError(f"{text!r} must be more than 0")
    return value


def add_http_options(parser: argparse.ArgumentParser) -> None:
    group = parser.add_argument_group("http(s):// destinations")
    add = group.add_argument
    add("--http-body", choices=BODIES, default=_defaults.body, help="default: ndjson")
    add("--http-compression", choices=COMPRESSIONS, default=_defaults.compression)
    add("--http-gzip-level", type=int, default=_defaults.gzip_level, metavar="0-9")
    add(
        "--http-header",
        type=_header,
        action="append",
        default=[],
        metavar="'NAME: VALUE'",
        help="an extra request header (repeatable)",
    )
    for what, option in (("bearer token", "bearer-token"), ("basic password", "basic-password")):
        add(f"--http-{option}-env", metavar="VAR", help=f"the {what} from this variable")
        add(f"--http-{option}-file", metavar="PATH", help=f"the {what} from this file")
    add("--http-basic-user", metavar="USER")
    add("--http-signing", choices=SIGNINGS, default=_defaults.signing)
    add("--http-signing-key-env", metavar="VAR")
    add("--http-signing-key-file", metavar="PATH")
    add(
        "--http-idempotency-header",
        default=_defaults.idempotency_header,
        metavar="NAME",
        help="header carrying each batch's key, the same on its retries; '' for none",
    )
    for name, default, what in (
        ("connect", _defaults.connect_timeout, "to connect (TLS included)"),
        ("read", _defaults.read_timeout, "for the socket to take or give bytes"),
        ("request", _defaults.request_timeout, "for a whole request and its response"),
    ):
        add(
            f"--http-{name}-timeout",
            type=_seconds,
            default=default,
            metavar="SECONDS",
            help=f"the longest wait {what}; default {default:g}",
        )
    add(
        "--http-concurrency",
        type=int,
        default=_defaults.concurrency,
        metavar="N",
        help="batches in flight; above 1, order holds only within a batch",
    )
    add(
        "--http-follow-redirects",
        action="store_true",
        help=f"follow a 307 or 308 within the same origin (at most {MAX_REDIRECTS}), "
        "never to another host",
    )
    add(
        "--http-allow-plain-http",
        action="store_true",
        help="send credentials or a signature over plain http:// to a host that is not "
        "loopback (they travel in clear; refused without this)",
    )
    add("--http-insecure", action="store_true", help="do not verify the server's certificate")
    add("--http-ca-file", metavar="PATH", help="trust these CA certificates (PEM)")
    add("--http-unix-socket", metavar="PATH", help="connect to this socket, not to the host")
    add(
        "--http-retry-statuses",
        type=_statuses,
        default=DEFAULT_RETRY_STATUSES,
        metavar="LIST",
        help=f"statuses retried; default {','.join(map(str, sorted(DEFAULT_RETRY_STATUSES)))}",
    )


def http_settings(
    args: argparse.Namespace, url: str, event_format: Literal["json", "tab-text"]
) -> HttpSettings:
    """The driver settings the options ask for (UsageError when they do not fit)."""
    token = Secret.load(env=args.http_bearer_token_env, file=args.http_bearer_token_file)
    password = Secret.load(env=args.http_basic_password_env, file=args.http_basic_password_file)
    key = Secret.load(env=args.http_signing_key_env, file=args.http_signing_key_file)
    if args.http_signing != "none" and key is None:
        raise UsageError(
            f"--http-signing {args.http_signing} needs --http-signing-key-env or -file"
        )
    settings = HttpSettings(
        url=url,
        body=args.http_body,
        event_format=event_format,
        compression=args.http_compression,
        gzip_level=args.http_gzip_level,
        headers=dict(args.http_header),
        bearer_token=token,
        basic_user=args.http_basic_user,
        basic_password=password,
        signing=args.http_signing,
        signing_key=key,
        idempotency_header=args.http_idempotency_header,
        connect_timeout=args.http_connect_timeout,
        read_timeout=args.http_read_timeout,
        request_timeout=args.http_request_timeout,
        concurrency=args.http_concurrency,
        follow_redirects=args.http_follow_redirects,
        allow_plain_http=args.http_allow_plain_http,
        verify_tls=not args.http_insecure,
        ca_file=args.http_ca_file,
        unix_socket=args.http_unix_socket,
        retry_statuses=args.http_retry_statuses,
    )
    for setting, why in settings.warnings():  # as check and run say them for a configuration
        sys.stderr.write(f"event-exporter: warning: {_OPTIONS[setting]}: {why}\n")
    return settings
