"""``event-exporter check CONFIG``: every problem of a configuration, or what it does.

On success it prints the routing (each metric and the exporter it feeds) and each
exporter's settings (an http one's TLS settings among them), secrets shown as ``***``
with where they come from, then warnings (:mod:`exporter.catalog.lint`'s about filters, an
exporter no metric feeds, TLS not verified, credentials over plain http, a listener open
to anyone: :meth:`Config.warnings`).
"""

from __future__ import annotations

import argparse
import sys
from dataclasses import replace
from typing import Any

from drivers.http import MAX_REDIRECTS, HttpSettings
from drivers.nats import NatsSettings
from exporter.catalog.lint import filter_warnings
from exporter.catalog.versions import Version, parse_version
from exporter.cli.common import EXIT_OK, EXIT_USAGE, exit_statuses, say, usage_error
from exporter.config import Config, ConfigError, ExporterConfig, MetricConfig, load_config
from exporter.config.settings import (
    EXPORTER,
    GLOBAL,
    HTTP,
    NATS,
    SOURCES,
    body_table_of,
    exporter_owners,
    named,
    shown_settings,
)
from exporter.errors import FilterSyntaxError, UsageError
from exporter.filter import compile_filter

DOVECOT_VERSION = named(GLOBAL, "dovecot_version")
UNIX_OWNER = named(SOURCES["unix"], "owner")
UNIX_GROUP = named(SOURCES["unix"], "group")


def add_command(commands: argparse._SubParsersAction[Any]) -> None:
    check = commands.add_parser(
        "check",
        help="check a configuration file and show what it routes where",
        description="Reports every problem of CONFIG at once (file:line: key: what is "
        "allowed), or prints its routing with secrets masked. With --filter EXPR instead, "
        "checks one filter. Warnings: AND/OR mixed without parentheses; an event, category "
        "or field no documented event has; a comparison that can never be true for what "
        "the field holds; with a Dovecot version, an event it does not send; TLS not "
        "verified; credentials over plain http; an http source that takes events from "
        "anyone (no bearer token beyond loopback, or only a Stalwart signing key).",
        epilog=exit_statuses(
            (EXIT_OK, "valid (warnings may be printed)"),
            (EXIT_USAGE, "it is not, it cannot be read, or a usage error"),
        ),
    )
    check.add_argument("config", metavar="CONFIG", nargs="?", default=None)
    check.add_argument("--filter", metavar="EXPR", default=None, help="check this filter")
    check.add_argument(
        DOVECOT_VERSION.flag,
        metavar="VERSION",
        default=None,
        help=f"{DOVECOT_VERSION.doc} (e.g. 2.3.21; overrides the configuration's "
        f"global.{DOVECOT_VERSION.key})",
    )
    check.set_defaults(run=check_command)


def check_command(args: argparse.Namespace) -> int:
    if (args.config is None) == (args.filter is None):
        return usage_error("check needs a CONFIG file or --filter EXPR (one of them)")
    version: Version | None = None
    given = getattr(args, DOVECOT_VERSION.dest)
    if given is not None:
        version = parse_version(given)
        if version is None:
            return usage_error(
                f"{DOVECOT_VERSION.flag} {given!r} is not a version "
                "(allowed: numbers and dots, e.g. 2.3.21 or 2.4.1)"
            )
    if args.filter is not None:
        return _check_filter(args.filter, version)
    try:
        config = load_config(args.config)
        if version is not None:
            config = replace(config, settings=replace(config.settings, dovecot_version=version))
    except ConfigError as exc:
        count = len(exc.problems)
        say(f"{count} problem{'s' if count > 1 else ''} in {exc.source}:\n{exc}")
        return EXIT_USAGE
    except UsageError as exc:
        return usage_error(str(exc))
    sys.stdout.write(describe(config))
    return EXIT_OK


def _check_filter(source: str, version: Version | None) -> int:
    try:
        event_filter = compile_filter(source)
    except FilterSyntaxError as exc:
        return usage_error(f"{exc}\n{exc.caret()}")
    warnings = filter_warnings("filter", event_filter, version)
    sys.stdout.write(f"filter: valid: {event_filter.ast}\n")
    sys.stdout.write("".join(f"warning: {warning}\n" for warning in warnings))
    return EXIT_OK


def describe(config: Config) -> str:
    """The configuration as a reader should understand it (no secret in it)."""
    exporters, metrics = len(config.exporters), len(config.metrics)
    lines = [
        f"{config.source}: valid: {exporters} exporter{'s' * (exporters != 1)}, "
        f"{metrics} metric{'s' * (metrics != 1)}",
        f"dead letters: {config.settings.dead_letter} (at most "
        f"{config.settings.dead_letter_max_bytes} bytes); shutdown timeout "
        f"{config.settings.shutdown_timeout:g} s; hostname "
        f"{config.settings.hostname or 'as in each event'}",
    ]
    if config.settings.metrics_listen is not None:
        host, port = config.settings.metrics_listen
        guarded = config.settings.metrics_bearer_token is not None
        lines.append(
            f"metrics: http://{host}:{port}/metrics"
            + ("; bearer token required" if guarded else "; no bearer token")
        )
    for source in config.sources.values():
        where = "stdin"
        if source.http is not None:
            http = source.http
            token = "bearer token required" if http.bearer_token else "no bearer token"
            where = (
                f"http://{http.host}:{http.port} (POST /dovecot, /events, /stalwart); {token}; "
                f"head within {http.header_timeout:g} s, body within {http.request_timeout:g} s, "
                f"idle {http.idle_timeout:g} s; at most {http.max_connections} connections, "
                f"{http.max_connections_per_peer} per peer, {http.max_body_bytes} bytes a body"
            )
        elif source.unix is not None:
            unix = source.unix
            where = (
                f"unix socket {unix.path} (mode {unix.mode:04o}, owner "
                f"{UNIX_OWNER.kind.shown(unix.owner)}, group {UNIX_GROUP.kind.shown(unix.group)}); "
                f"at most {unix.max_connections} connections"
            )
        elif source.file is not None:
            state = source.file.state_file or "no state file"
            where = f"file {source.file.path}, followed ({state})"
        elif source.nats is not None:
            nats = source.nats
            auth = next(
                (
                    f"{what} *** ({secret.origin})"
                    for what, secret in (
                        ("token", nats.connection.token),
                        (f"user {nats.connection.user} password", nats.connection.password),
                        ("creds", nats.connection.creds),
                    )
                    if secret is not None
                ),
                "no credentials",
            )
            where = (
                f"{nats.connection.name}, stream {nats.stream}, durable consumer "
                f"{nats.consumer} (acked once delivered; ack_wait {nats.ack_wait:g} s, "
                f"max_ack_pending {nats.max_ack_pending}); {auth}"
            )
        lines.append(f"source {source.name}: {where}")
    for metric in config.metrics.values():
        lines += _metric(config, metric)
    for exporter in config.exporters.values():
        lines += _exporter(exporter)
    lines += [f"warning: {warning}" for warning in config.warnings()]
    return "\n".join(lines) + "\n"


def _metric(config: Config, metric: MetricConfig) -> list[str]:
    spec = config.spec_for(metric)
    include = " ".join(w for w in _INCLUDE_ORDER if w in spec.include) or "(nothing)"
    return [
        f"metric {metric.name} -> exporter {metric.exporter}",
        f"  filter: {metric.filter.source}",
        f"  writes: {include}; fields: {' '.join(spec.fields) or 'all'}",
    ]


_INCLUDE_ORDER = ("name", "hostname", "timestamps", "categories", "fields")


def _exporter(exporter: ExporterConfig) -> list[str]:
    """Its destination, every setting of the table as it is in effect (secrets masked),
    and what its http settings mean for credentials and TLS."""
    driver = exporter.driver_settings
    owners = exporter_owners(exporter)
    lines = [
        f"exporter {exporter.name} -> {exporter.where}",
        *_wrapped(shown_settings(EXPORTER, owners)),
    ]
    if isinstance(driver, HttpSettings):
        lines += _wrapped(shown_settings(HTTP, owners))
        table, settings = body_table_of(driver)
        lines += _wrapped([f"{table}.{part}" for part in shown_settings(settings, owners)])
        lines += _http_meaning(driver)
    if isinstance(driver, NatsSettings):
        lines += _wrapped(shown_settings(NATS, owners))
    return lines


def _wrapped(parts: list[str], width: int = 100) -> list[str]:
    """``parts`` joined by commas into indented lines of at most ``width`` characters
    (a part is never cut)."""
    lines: list[str] = []
    for part in parts:
        if lines and len(lines[-1]) + len(part) + 2 <= width:
            lines[-1] += f", {part}"
        else:
            lines[-1:] = [f"{lines[-1]},"] if lines else []
            lines.append(f"  {part}")
    return lines


def _http_meaning(http: HttpSettings) -> list[str]:
    auth = "none"
    if http.bearer_token is not None:
        auth = f"bearer token *** ({http.bearer_token.origin})"
    elif http.basic_password is not None:
        auth = f"basic {http.basic_user}:*** ({http.basic_password.origin})"
    elif http.body_secrets:
        auth = ", ".join(f"{what} *** ({secret.origin})" for what, secret in http.body_secrets)
    signing: str = http.signing
    if http.signing_key is not None:
        signing += f" with key *** ({http.signing_key.origin})"
    tls = "on" if http.verify_tls else "OFF (verify_tls = false)"
    redirects = (
        f"307/308 within the same origin, at most {MAX_REDIRECTS}"
        if http.follow_redirects
        else "not followed"
    )
    return [
        f"  auth {auth}; signing {signing}; headers {', '.join(sorted(http.headers)) or 'none'}",
        f"  tls verification {tls}, CA {http.ca_file or 'the system store'}; "
        f"credentials over plain http to a non-loopback host "
        f"{'allowed' if http.allow_plain_http else 'refused'}; redirects {redirects}",
    ]
