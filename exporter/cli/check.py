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

from drivers.http import MAX_REDIRECTS, printable_url
from exporter.catalog.lint import filter_warnings
from exporter.catalog.versions import Version, parse_version
from exporter.cli.common import EXIT_OK, EXIT_USAGE, usage_error
from exporter.config import Config, ConfigError, ExporterConfig, MetricConfig, load_config
from exporter.errors import FilterSyntaxError, UsageError
from exporter.filter import compile_filter


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
        epilog="exit status: 0 valid (warnings may be printed); 2 it is not, or cannot be read",
    )
    check.add_argument("config", metavar="CONFIG", nargs="?", default=None)
    check.add_argument("--filter", metavar="EXPR", default=None, help="check this filter")
    check.add_argument(
        "--dovecot-version",
        metavar="VERSION",
        default=None,
        help="the Dovecot that sends the events (e.g. 2.3.21): warn about events it does "
        "not send (overrides the configuration's global.dovecot_version)",
    )
    check.set_defaults(run=check_command)


def check_command(args: argparse.Namespace) -> int:
    if (args.config is None) == (args.filter is None):
        return usage_error("check needs a CONFIG file or --filter EXPR (one of them)")
    version: Version | None = None
    if args.dovecot_version is not None:
        version = parse_version(args.dovecot_version)
        if version is None:
            return usage_error(
                f"--dovecot-version {args.dovecot_version!r} is not a version "
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
        sys.stderr.write(
            f"event-exporter: {count} problem{'s' if count > 1 else ''} in {exc.source}:\n{exc}\n"
        )
        return EXIT_USAGE
    except UsageError as exc:
        sys.stderr.write(f"event-exporter: {exc}\n")
        return EXIT_USAGE
    sys.stdout.write(describe(config))
    return EXIT_OK


def _check_filter(source: str, version: Version | None) -> int:
    try:
        event_filter = compile_filter(source)
    except FilterSyntaxError as exc:
        sys.stderr.write(f"event-exporter: {exc}\n{exc.caret()}\n")
        return EXIT_USAGE
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
            where = (
                f"unix socket {source.unix.path} (mode {source.unix.mode:04o}); at most "
                f"{source.unix.max_connections} connections"
            )
        elif source.file is not None:
            state = source.file.state_file or "no state file"
            where = f"file {source.file.path}, followed ({state})"
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
    spec, delivery = exporter.spec, exporter.delivery
    retry = delivery.retry
    until = (
        "until delivered"
        if retry.max_attempts is None and retry.max_elapsed is None
        else f"at most {retry.max_attempts or 'any'} attempts / {retry.max_elapsed or '-'} s"
    )
    destination = exporter.destination
    where = f"{destination.kind}:{destination.target}" if destination.target else "drop"
    if destination.is_http:
        where = printable_url(destination.target)
    lines = [
        f"exporter {exporter.name} -> {where}",
        f"  format {spec.format}, time {spec.time_format} {spec.time_precision}"
        + (f", truncate {spec.truncate}" if spec.truncate else ""),
        f"  queue {delivery.queue_max_events} events / {delivery.queue_max_bytes} bytes, "
        f"overflow {delivery.overflow.value}; batch {delivery.batch_max_events} events / "
        f"{delivery.batch_max_bytes} bytes / {delivery.batch_max_age:g} s",
        f"  retry {retry.initial_delay:g} to {retry.max_delay:g} s, {until}; "
        f"Retry-After up to {retry.max_retry_after:g} s",
    ]
    if exporter.destination.kind == "file":
        lines.append(f"  file mode {exporter.file_mode:04o}, fsync {exporter.fsync}")
    http = exporter.http
    if http is not None:
        auth = "none"
        if http.bearer_token is not None:
            auth = f"bearer token *** ({http.bearer_token.origin})"
        elif http.basic_password is not None:
            auth = f"basic {http.basic_user}:*** ({http.basic_password.origin})"
        signing: str = http.signing
        if http.signing_key is not None:
            signing += f" with key *** ({http.signing_key.origin})"
        tls = "on" if http.verify_tls else "OFF (verify_tls = false)"
        redirects = (
            f"307/308 within the same origin, at most {MAX_REDIRECTS}"
            if http.follow_redirects
            else "not followed"
        )
        lines += [
            f"  http body {http.body}, compression {http.compression}, "
            f"concurrency {http.concurrency}, timeouts {http.connect_timeout:g}/"
            f"{http.read_timeout:g}/{http.request_timeout:g} s",
            f"  auth {auth}; signing {signing}; headers "
            f"{', '.join(sorted(http.headers)) or 'none'}",
            f"  tls verification {tls}, CA {http.ca_file or 'the system store'}; "
            f"credentials over plain http to a non-loopback host "
            f"{'allowed' if http.allow_plain_http else 'refused'}; redirects {redirects}",
        ]
    return lines
