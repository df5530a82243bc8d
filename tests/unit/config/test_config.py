"""The TOML configuration and ``event-exporter check``: every problem at once, each with
its line, key path and what is allowed; the routing printed with secrets masked."""

from __future__ import annotations

import grp
import pwd
from pathlib import Path

import orjson
import pytest

from drivers.file import FileSettings
from drivers.http import HttpSettings
from exporter.cli import main
from exporter.config import ConfigError, load_config, parse_config
from exporter.delivery.exporter import DeliverySettings
from exporter.delivery.queue import Overflow
from exporter.formats import FormatSpec
from tests.support import REPO

TOKEN = "tok-9c1e-SECRET-never-printed"

MINIMAL = """
[exporter.out]
destination = "file:events.ndjson"

[metric.all]
filter = "event=*"
exporter = "out"
"""


def _problems(text: str) -> list[str]:
    with pytest.raises(ConfigError) as caught:
        parse_config(text, "t.toml")
    return str(caught.value).splitlines()


def test_the_example_loads_with_the_defaults() -> None:
    config = load_config(REPO / "config.example.toml")
    assert set(config.exporters) == {"archive", "collector"}
    for exporter in config.exporters.values():
        assert exporter.delivery == DeliverySettings()
        assert exporter.spec == FormatSpec()
    metric = config.metrics["imap_commands"]
    assert metric.exporter == "archive"
    assert metric.filter.source == "event=imap_command_finished"
    assert config.spec_for(metric) == FormatSpec()
    assert isinstance(config.exporters["collector"].driver_settings, HttpSettings)


def test_a_minimal_config_and_its_defaults() -> None:
    config = parse_config(MINIMAL)
    out = config.exporters["out"]
    assert (out.destination.kind, out.destination.target) == ("file", "events.ndjson")
    assert out.driver_settings == FileSettings(mode=0o600, fsync="none")
    assert config.settings.dead_letter == "event-exporter.deadletter.ndjson"
    assert config.warnings() == []


def test_every_problem_is_reported_at_once_with_line_key_and_what_is_allowed() -> None:
    text = """\
[global]
dead_leter = "x"
shutdown_timeout = -1

[exporter.a]
format = "jsn"
destination = "fil:/x"
queue_max_events = "many"
overflow = "drop-newest"
batch_max_age = true

[metric.m]
filter = "event=x AND ("
exporter = "b"
include = ["name", "hostnme"]

[metrc.x]
"""
    assert _problems(text) == [
        "t.toml:3: global.shutdown_timeout: must be at least 0, not -1",
        "t.toml:2: global.dead_leter: unknown key; did you mean 'dead_letter'?",
        "t.toml:6: exporter.a.format: 'jsn' is not allowed (allowed: json, tab-text); "
        "did you mean 'json'?",
        "t.toml:7: exporter.a.destination: 'fil:/x' is not allowed (allowed: file:PATH, "
        "unix:PATH, unix-dgram:PATH, log:stderr, log:stdout, drop, http://HOST[:PORT]/PATH, "
        "https://..., nats://HOST:PORT[,HOST:PORT...])",
        "t.toml:8: exporter.a.queue_max_events: must be a whole number, not a string",
        "t.toml:9: exporter.a.overflow: 'drop-newest' is not allowed (allowed: block, "
        "drop_newest, drop_oldest); did you mean 'drop_newest'?",
        "t.toml:10: exporter.a.batch_max_age: must be a number, not a boolean",
        "t.toml:13: metric.m.filter: event filter: unexpected end of input at column 14, "
        "expecting a field name, NOT or '('",
        "  event=x AND (",
        "               ^",
        "t.toml:14: metric.m.exporter: no exporter named 'b'",
        "t.toml:15: metric.m.include: 'hostnme' is not allowed (allowed: name, hostname, "
        "timestamps, categories, fields); did you mean 'hostname'?",
        "t.toml:17: metrc: unknown key; did you mean 'metric'?",
    ]


def test_unknown_keys_at_every_level_suggest_the_nearest() -> None:
    text = MINIMAL.replace('filter = "event=*"', 'filter = "event=*"\nexportr = "out"') + (
        '\n[exporter.web]\ndestination = "http://127.0.0.1:9/in"\nbatch_max_event = 5\n'
        '[exporter.web.http]\ncompresion = "gzip"\n'
    )
    problems = _problems(text)
    assert any("metric.all.exportr: unknown key; did you mean 'exporter'?" in p for p in problems)
    assert any(
        "exporter.web.batch_max_event: unknown key; did you mean 'batch_max_events'" in p
        for p in problems
    )
    assert any(
        "exporter.web.http.compresion: unknown key; did you mean 'compression'" in p
        for p in problems
    )


def test_settings_that_do_not_fit_together_name_their_block() -> None:
    text = MINIMAL.replace(
        'destination = "file:events.ndjson"',
        'destination = "file:events.ndjson"\nretry_initial_delay = 5.0\nretry_max_delay = 1.0',
    )
    assert _problems(text) == [
        "t.toml:2: exporter.out: retry delays must satisfy 0 < initial (5.0) <= maximum (1.0)"
    ]


def test_an_http_block_needs_an_http_destination() -> None:
    text = MINIMAL + '\n[exporter.out.http]\nbody = "single"\n'
    assert _problems(text) == [
        "t.toml:9: exporter.out.http: only for http(s):// destinations, not file"
    ]


def test_http_settings_secrets_and_single_bodies(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("EE_TOKEN", TOKEN)
    (tmp_path / "key").write_text(TOKEN + "-key\n")
    text = f"""
[exporter.web]
destination = "https://collector.example:8443/in?api_key={TOKEN}"
format = "tab-text"
[exporter.web.http]
body = "single"
compression = "gzip"
headers = {{ "X-Source" = "imap01" }}
bearer_token_env = "EE_TOKEN"
signing = "stalwart"
signing_key_file = "{tmp_path / "key"}"
retry_statuses = [429, 503]

[metric.m]
filter = "event=auth_* AND category=auth OR event=x"
exporter = "web"
"""
    path = tmp_path / "c.toml"
    path.write_text(text)
    config = load_config(path)
    web = config.exporters["web"]
    http = web.driver_settings
    assert isinstance(http, HttpSettings)
    assert http.bearer_token is not None
    assert http.bearer_token.reveal() == TOKEN
    assert http.signing_key is not None
    assert http.signing_key.reveal() == TOKEN + "-key"
    assert http.content_type == "text/plain"
    assert http.retry_statuses == {429, 503}
    assert web.delivery.batch_max_events == 1  # single: one event per request and batch
    assert "AND and OR mixed without parentheses at column 32" in config.warnings()[0]


def test_a_missing_secret_names_its_key(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("EE_ABSENT", raising=False)
    text = (
        '[exporter.web]\ndestination = "http://127.0.0.1:9/"\n'
        '[exporter.web.http]\nbearer_token_env = "EE_ABSENT"\n'
    )
    assert _problems(text) == [
        "t.toml:4: exporter.web.http.bearer_token_env: environment variable EE_ABSENT is not "
        "set (it should hold a secret)"
    ]


def test_toml_syntax_errors_have_their_line() -> None:
    assert _problems("[global]\nshutdown_timeout = = 3\n")[0].startswith("t.toml:2: (syntax): ")


def test_no_exporter_at_all() -> None:
    assert _problems("[global]\n") == [
        "t.toml: exporter: no [exporter.NAME] block: events would go nowhere"
    ]


# -- event-exporter check ------------------------------------------------------------------


def test_check_prints_the_routing_with_secrets_masked(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv("EE_TOKEN", TOKEN)
    path = tmp_path / "c.toml"
    path.write_text(
        MINIMAL + f'\n[exporter.web]\ndestination = "http://127.0.0.1:9/in?token={TOKEN}"\n'
        '[exporter.web.http]\nbearer_token_env = "EE_TOKEN"\n'
        'headers = { "X-Api-Key" = "' + TOKEN + '" }\n'
    )
    assert main(["check", str(path)]) == 0
    out = capsys.readouterr().out
    assert TOKEN not in out
    assert f"{path}: valid: 2 exporters, 1 metric" in out
    assert "metric all -> exporter out" in out
    assert "exporter web -> http://127.0.0.1:9/in?***" in out
    assert "auth bearer token *** (environment variable EE_TOKEN)" in out
    assert "headers X-Api-Key" in out
    assert "warning: exporter.web: no metric feeds it, so it gets no events" in out


def test_check_reports_every_problem_and_exits_2(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path = tmp_path / "c.toml"
    path.write_text(MINIMAL.replace('"out"\n', '"ot"\n').replace("event=*", "event=*)"))
    assert main(["check", str(path)]) == 2
    err = capsys.readouterr().err
    assert err.startswith(f"event-exporter: 2 problems in {path}:\n")
    assert f"{path}:6: metric.all.filter: event filter:" in err
    assert f"{path}:7: metric.all.exporter: no exporter named 'ot'; did you mean 'out'?" in err


def test_check_of_an_unreadable_file(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["check", str(tmp_path / "absent.toml")]) == 2
    assert "cannot read config" in capsys.readouterr().err


def test_overflow_values_are_the_queue_policies() -> None:
    text = MINIMAL.replace(
        'destination = "file:events.ndjson"',
        'destination = "file:events.ndjson"\noverflow = "drop_oldest"',
    )
    assert parse_config(text).exporters["out"].delivery.overflow is Overflow.DROP_OLDEST


def test_sources_http_and_stdin() -> None:
    text = MINIMAL + (
        '\n[source.web]\ntype = "http"\nlisten = "0.0.0.0:9000"\nmax_body_bytes = 4096\n'
        '\n[source.pipe]\ntype = "stdin"\n'
    )
    config = parse_config(text)
    web = config.sources["web"].http
    assert web is not None
    assert (web.host, web.port, web.max_body_bytes) == ("0.0.0.0", 9000, 4096)
    assert config.sources["pipe"].type == "stdin"
    assert config.sources["pipe"].http is None


def test_source_problems() -> None:
    text = MINIMAL + (
        '\n[source.web]\ntype = "htp"\n\n[source.other]\ntype = "http"\nlisten = "nowhere"\n'
        "\n[source.none]\n"
    )
    assert _problems(text) == [
        "t.toml:10: source.web.type: 'htp' is not allowed (allowed: http, unix, file, stdin, "
        "nats); "
        "did you mean 'http'?",
        "t.toml:14: source.other.listen: 'nowhere' is not allowed (allowed: HOST:PORT)",
        "t.toml:16: source.none.type: is required (allowed: http, unix, file, stdin, nats)",
    ]


def test_unix_and_file_sources() -> None:
    text = MINIMAL + (
        '\n[source.sock]\ntype = "unix"\npath = "/run/x.sock"\nmode = "0660"\n'
        '\n[source.log]\ntype = "file"\npath = "/var/log/e.ndjson"\nstate_file = "/tmp/s"\n'
        'start_at = "end"\npoll_interval = 0.5\n'
    )
    config = parse_config(text)
    sock, log = config.sources["sock"].unix, config.sources["log"].file
    assert sock is not None
    assert (sock.path, sock.mode) == ("/run/x.sock", 0o660)
    assert log is not None
    assert (log.path, log.state_file, log.start_at, log.poll_interval) == (
        "/var/log/e.ndjson",
        "/tmp/s",
        "end",
        0.5,
    )


def test_unix_source_problems() -> None:
    text = MINIMAL + f'\n[source.sock]\ntype = "unix"\npath = "/{"x" * 120}"\nmode = "999"\n'
    assert _problems(text) == [
        "t.toml:11: source.sock.path: longer than 107 bytes",
        "t.toml:12: source.sock.mode: '999' is not allowed (allowed: 0000 to 0777)",
    ]


def test_a_unix_socket_s_owner_and_group_are_resolved_when_the_config_is_read() -> None:
    """Names to ids (an unknown one a problem at its key's line); a numeric id, as a
    string or a number, taken as it is, with or without a name."""
    root_user, root_group = pwd.getpwuid(0).pw_name, grp.getgrgid(0).gr_name
    head = MINIMAL + '\n[source.sock]\ntype = "unix"\npath = "/run/e.sock"\n'
    given = {
        f'owner = "{root_user}"\ngroup = "{root_group}"\n': (0, 0),
        'owner = 65534\ngroup = "4294967294"\n': (65534, 4294967294),
        'owner = ""\ngroup = ""\n': (None, None),
        "": (None, None),
    }
    for keys, ids in given.items():
        unix = parse_config(head + keys, "t.toml").sources["sock"].unix
        assert unix is not None
        assert (unix.owner, unix.group) == ids, keys
    wrong = 'owner = "no-such-user-x"\ngroup = "no-such-group-x"\n'
    assert _problems(head + wrong) == [
        "t.toml:12: source.sock.owner: no user 'no-such-user-x' on this system (a name in "
        "/etc/passwd or its NSS, or a numeric id)",
        "t.toml:13: source.sock.group: no group 'no-such-group-x' on this system (a name in "
        "/etc/group or its NSS, or a numeric id)",
    ]
    assert _problems(head + "owner = -1\ngroup = 4294967295\n") == [
        "t.toml:12: source.sock.owner: -1 is not a user id (0 to 4294967294)",
        "t.toml:13: source.sock.group: 4294967295 is not a group id (0 to 4294967294)",
    ]
    assert _problems(head + "owner = true\n") == [
        "t.toml:12: source.sock.owner: must be a user name or a numeric id, not a boolean"
    ]


def test_every_key_the_loader_reads_is_documented_in_the_example() -> None:
    """The commented-out blocks count: each source type's keys are written there."""
    example = (REPO / "config.example.toml").read_text()
    keys = ("path", "mode", "owner", "group", "max_line_bytes", "state_file", "poll_interval")
    for key in (*keys, "start_at"):
        assert f"# {key} = " in example, key


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        (
            MINIMAL.replace("[global]", "") + "\n[global]\nshutdown_timeout = nan\n",
            "global.shutdown_timeout: must be a finite number, not nan",
        ),
        ('[[exporter]]\ndestination = "drop"\n', "exporter: must be a table"),
        (MINIMAL.replace('filter = "event=*"', 'filter = ["x"]'), "must be a string, not a list"),
    ],
)
def test_each_problem_is_said_once(text: str, expected: str) -> None:
    problems = _problems(text)
    assert sum(expected in p for p in problems) == 1, problems
    assert not any("is required" in p for p in problems if "filter" in p), problems


def test_a_nul_in_a_secret_path_is_a_problem_not_a_crash() -> None:
    text = (
        '[exporter.web]\ndestination = "http://127.0.0.1:9/"\n'
        '[exporter.web.http]\nbearer_token_file = "a\\u0000b"\n'
    )
    assert "is not a valid path" in _problems(text)[0]


def test_check_describes_every_kind_of_source(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path = tmp_path / "c.toml"
    path.write_text(
        MINIMAL + '\n[source.s]\ntype = "unix"\npath = "/run/e.sock"\n'
        '\n[source.given]\ntype = "unix"\npath = "/run/g.sock"\nmode = "0660"\n'
        f'owner = "{pwd.getpwuid(0).pw_name}"\ngroup = 4294967294\n'
        '\n[source.f]\ntype = "file"\npath = "/var/log/e.ndjson"\n'
    )
    assert main(["check", str(path)]) == 0
    out = capsys.readouterr().out
    assert (
        "source s: unix socket /run/e.sock (mode 0600, owner this process's, "
        "group this process's)" in out
    )
    assert (
        f"source given: unix socket /run/g.sock (mode 0660, owner {pwd.getpwuid(0).pw_name} "
        "(0), group 4294967294)" in out  # an id without a name is shown bare
    )
    assert "source f: file /var/log/e.ndjson, followed (no state file)" in out


def test_check_warns_about_names_no_documented_event_has(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path = tmp_path / "c.toml"
    path.write_text(
        MINIMAL.replace(
            'filter = "event=*"',
            'filter = "event=imap_comand_finished AND category=imapp AND cmd_nme=select"',
        )
    )
    assert main(["check", str(path)]) == 0
    out = capsys.readouterr().out
    for kind, name, closest in [
        ("event", "imap_comand_finished", "imap_command_finished"),
        ("category", "imapp", "imap"),
        ("field", "cmd_nme", "cmd_name"),
    ]:
        assert (
            f"warning: metric.all.filter: no documented event has the {kind} {name!r}; "
            f"did you mean {closest!r}?"
        ) in out


def test_check_has_no_warning_for_real_names(
    capsys: pytest.CaptureFixture[str],
) -> None:
    assert main(["check", str(REPO / "config.example.toml")]) == 0
    out = capsys.readouterr().out
    assert "no documented event" not in out


def test_catalog_command(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["catalog", "imap_command_finished"]) == 0
    assert "imap_command_finished  (dovecot, Events / IMAP / IMAP Command)" in (
        capsys.readouterr().out
    )
    assert main(["catalog", "auth.*", "--source", "stalwart", "--json"]) == 0
    found = orjson.loads(capsys.readouterr().out)
    assert found
    assert all(item["name"].startswith("auth.") for item in found)
    assert main(["catalog", "no_such_event_anywhere"]) == 1


def test_check_a_filter_alone(capsys: pytest.CaptureFixture[str]) -> None:
    expr = "event=imap_comand_finished OR event=auth_* AND cmd_nme=x"
    assert main(["check", "--filter", expr]) == 0
    out = capsys.readouterr().out.splitlines()
    assert out[0] == "filter: valid: (event=imap_comand_finished OR event=auth_*) AND cmd_nme=x"
    assert out[1].startswith("warning: filter: AND and OR mixed without parentheses at column 44")
    assert "did you mean 'imap_command_finished'?" in out[2]
    assert "did you mean 'cmd_name'?" in out[3]
    assert main(["check", "--filter", "event=imap_command_finished AND cmd_name=select"]) == 0
    assert "warning" not in capsys.readouterr().out
    assert main(["check", "--filter", "event=("]) == 2
    assert "expecting a value" in capsys.readouterr().err
    assert main(["check"]) == 2
    assert "CONFIG file or --filter EXPR" in capsys.readouterr().err


# Filters of the spec's section 8.5 (observed with Dovecot 2.3.19.1) that name real events,
# categories and fields, without AND and OR mixed.
SPEC_85_FILTERS = [
    "event=imap_command_finished OR (event=auth_request_finished AND cmd_name=SELECT)",
    "event=imap_command_finished AND cmd_name=select",
    "event=imap_command_finished AND cmd_name=s?LE*",
    "event=imap_command_finished AND bytes_in=1*",
    "event=imap_command_finished AND reason_code=imap:cmd_fetch",
    "event=imap_command_finished AND NOT tagged_reply_state=OK",
    'event=imap_command_finished AND tagged_reply="NO *"',
    "event=imap_* AND category=imap",
    "event=imap_* AND category=service:imap",
    "event=imap_* AND category=info",
    "event=imap_* AND last_run_time=*",
    "event=auth_request_finished AND success=yes",
]


@pytest.mark.parametrize("expr", SPEC_85_FILTERS)
def test_real_names_get_no_warning(expr: str, capsys: pytest.CaptureFixture[str]) -> None:
    """The one warning is true: the spec saw ``last_run_time=*`` match nothing."""
    assert main(["check", "--filter", expr]) == 0
    warnings = [line for line in capsys.readouterr().out.splitlines() if "warning" in line]
    timestamp = (
        "warning: filter: last_run_time=*: last_run_time is a timestamp, and Dovecot never "
        "matches a timestamp field"
    )
    assert warnings == ([timestamp] if "last_run_time" in expr else [])
