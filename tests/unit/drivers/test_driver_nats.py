"""The nats driver's settings, subjects and message ids, without a server (the cluster
tests are tests/e2e/test_nats_*.py), and its block in a configuration."""

from __future__ import annotations

from pathlib import Path

import pytest

from drivers.nats import (
    NatsConnection,
    NatsSettings,
    SubjectMaker,
    check_subject,
    message_id,
    parse_servers,
    stream_subject,
)
from exporter.cli import main
from exporter.config import ConfigError, parse_config
from exporter.delivery.destinations import parse_destination
from exporter.errors import UsageError
from exporter.secret import Secret

TOKEN = "nats-tok-SECRET-never-printed"


def _problems(text: str) -> list[str]:
    with pytest.raises(ConfigError) as caught:
        parse_config(text, "t.toml")
    return str(caught.value).splitlines()


def _config(nats: str, destination: str = "nats://127.0.0.1:4222,127.0.0.1:4223") -> str:
    return (
        f'[exporter.fleet]\ndestination = "{destination}"\n'
        f"[exporter.fleet.nats]\n{nats}\n"
        '[metric.all]\nfilter = "event=*"\nexporter = "fleet"\n'
    )


def test_servers_of_a_destination() -> None:
    assert parse_servers("nats://a:4222, 10.0.0.2:4223,[::1]:4224") == (
        "nats://a:4222",
        "nats://10.0.0.2:4223",
        "nats://[::1]:4224",
    )
    assert parse_servers("tls://a:4222") == ("tls://a:4222",)
    assert parse_destination("NATS://a:1,b:2").kind == "nats"
    for wrong in ("nats://", "nats://a", "nats://a:0", "nats://u:p@a:4222", "nats://a:4222,"):
        with pytest.raises(UsageError):
            parse_servers(wrong)


@pytest.mark.parametrize(
    ("template", "why"),
    [
        ("", "must not be empty"),
        ("dovecot..{event}", "an empty token"),
        ("dovecot.{event}.", "an empty token"),
        ("dovecot.ev_{event}", "a placeholder is a whole token"),
        ("dovecot.{user}", "unknown placeholder {user}"),
        ("dovecot.*", "no space, '*', '>'"),
        ("dovecot.>", "no space, '*', '>'"),
        ("dove cot.{event}", "no space"),
    ],
)
def test_a_bad_subject_template_is_refused_with_why(template: str, why: str) -> None:
    with pytest.raises(UsageError, match=why.replace("*", r"\*").replace("{", r"\{")):
        check_subject(template)


def test_check_names_the_subject_key_of_a_bad_template() -> None:
    assert _problems(_config('subject = "dovecot.{user}.{event}"')) == [
        "t.toml:4: exporter.fleet.nats.subject: 'dovecot.{user}.{event}': unknown placeholder "
        "{user} (allowed: {event}, {hostname}, {category})"
    ]
    assert _problems(_config('subject = "a..b"'))[0].startswith(
        "t.toml:4: exporter.fleet.nats.subject: 'a..b': an empty token"
    )


def test_settings_that_do_not_fit_are_problems_of_the_block(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("EE_NATS_TOKEN", TOKEN)
    assert _problems(_config("create_stream = true\nreplicas = 3")) == [
        "t.toml:3: exporter.fleet.nats: create_stream needs the stream's name (stream)"
    ]
    assert _problems(_config('replicas = 7\nstream = "EV"')) == [
        "t.toml:4: exporter.fleet.nats.replicas: must be at most 5, not 7"
    ]
    assert _problems(_config('token_env = "EE_NATS_TOKEN"\nuser = "agent"')) == [
        "t.toml:3: exporter.fleet.nats: give a token, a user and password, or a creds file: "
        "one of them"
    ]
    assert _problems(_config('user = "agent"')) == [
        "t.toml:3: exporter.fleet.nats: a NATS user needs its password, and a password its user"
    ]
    assert _problems(_config('stream = "a.b"')) == [
        "t.toml:3: exporter.fleet.nats: stream 'a.b': a stream name is letters, digits, - and _"
    ]
    text = '[exporter.f]\ndestination = "file:x"\n[exporter.f.nats]\nsubject = "a"\n'
    assert _problems(text) == ["t.toml:3: exporter.f.nats: only for nats:// destinations, not file"]
    assert _problems(_config("", destination="nats://a:99999"))[0].startswith(
        "t.toml:2: exporter.fleet.destination: 'nats://a:99999' is not allowed"
    )


def test_a_nats_block_read_and_shown_with_its_secret_masked(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv("EE_NATS_TOKEN", TOKEN)
    text = _config(
        'subject = "mail.{category}.{event}"\nstream = "EVENTS"\ncreate_stream = true\n'
        'replicas = 3\nduplicate_window = 300\nmax_bytes = 1073741824\ntoken_env = "EE_NATS_TOKEN"'
    )
    config = parse_config(text, "t.toml")
    nats = config.exporters["fleet"].driver_settings
    assert isinstance(nats, NatsSettings)
    assert nats.connection.servers == ("nats://127.0.0.1:4222", "nats://127.0.0.1:4223")
    assert nats.connection.token == Secret(TOKEN)
    assert (nats.exporter, nats.replicas, nats.duplicate_window) == ("fleet", 3, 300.0)
    assert nats.max_bytes == 1 << 30
    assert nats.max_age is None
    path = tmp_path / "c.toml"
    path.write_text(text)
    assert main(["check", str(path)]) == 0
    out = capsys.readouterr().out
    assert "exporter fleet -> nats://127.0.0.1:4222,127.0.0.1:4223" in out
    assert "subject mail.{category}.{event}" in out
    assert "token *** (environment variable EE_NATS_TOKEN)" in out
    assert TOKEN not in out


def test_subjects_from_json_and_tab_text_events() -> None:
    json_subject = SubjectMaker("dovecot.{hostname}.{category}.{event}", "json")
    line = (
        b'{"event":"imap_command_finished","hostname":"mail.example.com","categories":["imap","x"]}'
    )
    assert json_subject(line) == "dovecot.mail_example_com.imap.imap_command_finished"
    assert json_subject(b'{"event":"e"}') == "dovecot._._.e"
    assert json_subject(b'{"event":"a b*>"}') == "dovecot._._.a_b__"
    text_subject = SubjectMaker("d.{hostname}.{event}", "tab-text")
    assert text_subject(b"event:e1\thostname:h.x\tfield:n=1") == "d.h_x.e1"
    assert text_subject(b"field:n=1") == "d._._"
    assert SubjectMaker("fixed.subject", "json")(b"anything") == "fixed.subject"
    assert stream_subject("dovecot.{hostname}.{event}") == "dovecot.*.*"


def test_message_ids_are_the_same_for_the_same_exporter_and_bytes() -> None:
    assert message_id("a", b"x") == message_id("a", b"x")
    assert message_id("a", b"x") != message_id("b", b"x")
    assert message_id("a", b"x") != message_id("a", b"y")
    assert len(message_id("a", b"x")) == 32


def test_export_refuses_bad_nats_options(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["export", "--to", "nats://127.0.0.1:4222", "--nats-subject", "a.{x}"]) == 2
    assert "unknown placeholder {x}" in capsys.readouterr().err


def test_a_connection_says_where_without_credentials() -> None:
    connection = NatsConnection(("nats://a:1", "nats://b:2"), token=Secret(TOKEN))
    assert connection.name == "nats://a:1,b:2"
    assert TOKEN not in repr(connection)
    assert connection.ssl_context() is None
    assert NatsConnection(("tls://a:1",)).ssl_context() is not None
