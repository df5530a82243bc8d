"""``import-dovecot``: dovecot.conf's syntax read with its lines, every exporter and metric
of both real capture configurations carried over or warned about, and what each becomes."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

from exporter.cli import main
from exporter.config.dovecot_conf import (
    DovecotConfError,
    Entry,
    Section,
    parse_dovecot_conf,
    read_dovecot_conf,
)
from exporter.config.dovecot_import import (
    Imported,
    import_dovecot,
    relay_snippet,
    render_config,
)
from exporter.config.sections import parse_config
from tests.support import REPO
from tests.support.samples import CONF_23, CONF_24

BLOCK = re.compile(r"^(event_exporter|metric) (\S+) \{", re.MULTILINE)


def _imported(text: str, tmp_path: Path | None = None) -> Imported:
    return import_dovecot(parse_dovecot_conf(text, "dovecot.conf", tmp_path or Path(".")), text)


def _warnings(imported: Imported) -> list[str]:
    return [str(warning) for warning in imported.warnings]


# -- the syntax ---------------------------------------------------------------------------


def test_sections_entries_comments_quotes_and_continued_lines(tmp_path: Path) -> None:
    text = (
        "# a comment\n"
        "protocols = imap # trailing comment\n"
        'greeting = "a # not a comment"\n'
        "service imap-login {\n"
        "  inet_listener imap {\n"
        "    port = 143\n"
        "  }\n"
        "}\n"
        "long = one \\\n"
        "  two\n"
    )
    root = parse_dovecot_conf(text, "d.conf", tmp_path)
    entries = {entry.key: entry for entry in root.entries()}
    assert entries["protocols"].value == "imap"
    assert entries["greeting"].value == "a # not a comment"
    assert entries["long"].value == "one two"
    assert str(entries["long"].where) == "d.conf:9"
    (service,) = root.sections("service")
    assert (service.name, str(service.where)) == ("imap-login", "d.conf:4")
    (listener,) = service.sections("inet_listener")
    assert [(e.key, e.value, e.where.line) for e in listener.entries()] == [("port", "143", 6)]


def test_includes_are_followed_relative_to_their_file_with_globs(tmp_path: Path) -> None:
    (tmp_path / "conf.d").mkdir()
    (tmp_path / "conf.d" / "10-a.conf").write_text("event_exporter a {\n  driver = drop\n}\n")
    (tmp_path / "conf.d" / "20-b.conf").write_text("!include ../more.conf\n")
    (tmp_path / "more.conf").write_text("metric m {\n  exporter = a\n}\n")
    (tmp_path / "dovecot.conf").write_text(
        "!include conf.d/*.conf\n!include_try /nonexistent/*.conf\n!include_try missing.conf\n"
    )
    root = read_dovecot_conf(str(tmp_path / "dovecot.conf"))
    (exporter,) = root.sections("event_exporter")
    (metric,) = root.sections("metric")
    assert exporter.where.file.endswith("conf.d/10-a.conf")
    assert metric.where.file.endswith("more.conf")
    assert [e.value for e in metric.entries()] == ["a"]


def test_a_value_read_from_a_file(tmp_path: Path) -> None:
    (tmp_path / "filter.txt").write_text("event=imap_command_finished\n")
    root = parse_dovecot_conf("metric m {\n  filter = <filter.txt\n}\n", "d.conf", tmp_path)
    (metric,) = root.sections("metric")
    assert [e.value for e in metric.entries()] == ["event=imap_command_finished"]


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("metric m {\n  filter = x\n", "d.conf:1: section 'metric m' is never closed"),
        ("a = 1\n}\n", "d.conf:2: '}' without a section to close"),
        ("a = 1\njust words\n", "d.conf:2: expecting 'KEY = VALUE'"),
        ("!include\n", "d.conf:1: !include needs a file"),
        ("!include nothere.conf\n", "d.conf:1: cannot read"),
        ("!includes x\n", "d.conf:1: unknown directive '!includes'"),
    ],
)
def test_what_is_not_dovecot_syntax_is_an_error_at_its_line(
    tmp_path: Path, text: str, message: str
) -> None:
    with pytest.raises(DovecotConfError) as error:
        parse_dovecot_conf(text, "d.conf", tmp_path)
    assert str(error.value).startswith(message)


def test_an_include_of_itself_stops_at_the_depth_limit(tmp_path: Path) -> None:
    (tmp_path / "d.conf").write_text("!include d.conf\n")
    with pytest.raises(DovecotConfError, match="nested deeper than 20"):
        read_dovecot_conf(str(tmp_path / "d.conf"))


_WORD = st.text(st.sampled_from("abcxyz_-0123"), min_size=1, max_size=8)
_VALUE = st.text(
    st.characters(codec="utf-8", exclude_categories=("Cc", "Cs"), exclude_characters="\\#\"'<"),
    max_size=20,
)


@given(st.lists(st.tuples(_WORD, _VALUE), max_size=8), _WORD, _WORD)
def test_entries_read_back_as_written(pairs: list[tuple[str, str]], kind: str, name: str) -> None:
    """Any ``key = value`` lines, in a section or not, come back with their lines."""
    body = "".join(f"  {key} = {value}\n" for key, value in pairs)
    root = parse_dovecot_conf(f"{kind} {name} {{\n{body}}}\n", "d.conf", Path("."))
    (section,) = root.sections()
    assert (section.type, section.name) == (kind, name)
    got = [(e.key, e.value, e.where.line) for e in section.entries()]
    assert got == [(k, v.strip(" \t"), n) for n, (k, v) in enumerate(pairs, 2)]


# -- the two real configurations ------------------------------------------------------------


@pytest.mark.parametrize(
    ("conf", "syntax", "version", "exporters", "metrics"),
    [(CONF_23, "2.3", "2.3.19.1", 65, 65), (CONF_24, "2.4", "2.4.4", 112, 112)],
    ids=["2.3", "2.4"],
)
def test_every_block_of_the_captures_is_carried_over_or_warned_about(
    conf: Path, syntax: str, version: str, exporters: int, metrics: int
) -> None:
    text = conf.read_text()
    blocks = BLOCK.findall(text)
    assert sum(kind == "event_exporter" for kind, _ in blocks) == exporters
    assert sum(kind == "metric" for kind, _ in blocks) == metrics
    imported = _imported(text)
    assert (imported.syntax, imported.version) == (syntax, version)
    carried = {plan.name for plan in imported.exporters} | {m.name for m in imported.metrics}
    warned = " ".join(_warnings(imported))
    for kind, name in blocks:
        assert name in carried or f"{kind} {name}:" in warned, (kind, name)
    # what is not carried is only what has no equivalent: the format 'none'
    assert {name for kind, name in blocks if name not in carried} == (
        {"none_http", "m_none_http"}
        if syntax == "2.3"
        else {"none_http", "m_none_http", "file_none_http", "mfile_none_http"}
    )


def test_the_2_3_capture_maps_format_args_transport_and_timeout() -> None:
    imported = _imported(CONF_23.read_text())
    plans = {plan.name: plan for plan in imported.exporters}
    http = plans["json_rfc3339_all"]
    assert (http.format, http.time_format, http.destination, http.request_timeout) == (
        "json",
        "rfc3339",
        "http://127.0.0.1:31180/json_rfc3339_all",
        2.0,
    )
    assert plans["tabtext_unix_all"].time_format == "unix"
    assert plans["log_json_rfc3339"].destination == "log:stderr"
    metrics = {metric.name: metric for metric in imported.metrics}
    assert metrics["m_json_unix_none"].include == []
    assert metrics["m_json_rfc3339_all"].include is None  # unset: all five
    assert metrics["m_json_rfc3339_unknown_incl"].include == ["name"]
    assert "exporter_include 'bogus_include' is unknown: ignored" in " ".join(_warnings(imported))


def test_the_2_4_capture_maps_every_driver() -> None:
    imported = _imported(CONF_24.read_text())
    plans = {plan.name: plan for plan in imported.exporters}
    assert plans["file_json_rfc3339_all"].destination == (
        "file:/tmp/dovecot24-capture/file/json_rfc3339_all.log"
    )
    assert plans["unix_json_unix_all"].destination == (
        "unix:/tmp/dovecot24-capture/unix/unix_json_unix_all.sock"
    )
    assert plans["log_tabtext_unix"].destination == "log:stderr"
    assert plans["drop_json"].destination == "drop"
    assert plans["slow"].request_timeout == 0.2
    assert plans["file_json_default_time"].time_format == "rfc3339"  # 2.4's default
    fields = {m.name: m.fields for m in imported.metrics}["m_json_unix_fieldsel24"]
    assert " ".join(fields) == (
        "user cmd_name tagged_reply_state last_run_time net_in_bytes duration "
        "nonexistent_field reason_code mailbox user"
    )


# -- what cannot be carried over ------------------------------------------------------------

_STATS = """\
dovecot_config_version = 2.4.4
event_exporter_time_format = unix
event_exporter web {
  driver = http-post
  format = json
  http_post_url = https://collector.example/events
  http_client_connect_timeout = 1s
  http_client_max_parallel_connections = 4
  unix_connect_timeout = 1s
}
event_exporter quiet {
  format = json
}
event_exporter broken {
  driver = kafka
  format = json
}
metric imap_commands {
  filter = event=imap_command_finished
  group_by cmd_name {
  }
}
metric exported {
  filter = event=imap_command_finished
  exporter = web
  fields = cmd_name user
  description = IMAP commands, exported
  bogus = 1
}
metric orphan {
  filter = event=auth_request_finished
  exporter = nosuch
}
metric unparsable {
  filter = event=x AND (
  exporter = web
}
metric empty {
  exporter = web
}
"""


def test_what_cannot_be_carried_over_is_a_warning_at_its_line() -> None:
    imported = _imported(_STATS)
    warnings = _warnings(imported)
    assert warnings == [
        "dovecot.conf:8: event_exporter web: http_client_max_parallel_connections = 4: "
        "no equivalent, not carried over",
        "dovecot.conf:9: event_exporter web: unix_connect_timeout: not carried over "
        "(ours reconnects with backoff and keeps the event meanwhile)",
        "dovecot.conf:11: event_exporter quiet: no metric feeds it",
        "dovecot.conf:15: event_exporter broken: driver 'kafka' is not log, file, unix, "
        "http-post or drop",
        "dovecot.conf:18: metric imap_commands: feeds no exporter: a Dovecot statistic "
        "(doveadm stats, OpenMetrics), not an export; not carried over",
        "dovecot.conf:28: metric exported: bogus = 1: no equivalent, not carried over",
        "dovecot.conf:32: metric orphan: refers to event_exporter 'nosuch', which does not exist",
        "dovecot.conf:35: metric unparsable: event filter: unexpected end of input at "
        "column 14, expecting a field name, NOT or '(': not carried over",
        "dovecot.conf:38: metric empty: its filter is empty: it matches nothing (as in "
        "Dovecot), not carried",
    ]
    (web, quiet) = imported.exporters
    assert (web.time_format, web.connect_timeout, web.request_timeout) == ("unix", 1.0, 0.25)
    assert quiet.destination == "log:stderr"  # 2.4's default driver
    assert [m.name for m in imported.metrics] == ["exported"]


def test_group_by_of_an_exported_metric_is_said_to_shape_statistics_only() -> None:
    imported = _imported(
        "event_exporter e {\n  driver = drop\n  format = json\n}\n"
        "metric m {\n  filter = event=x\n  exporter = e\n  group_by = cmd_name\n}\n"
    )
    assert _warnings(imported) == [
        "dovecot.conf:8: metric m: group_by shapes Dovecot's statistics only: not carried over"
    ]
    assert [m.name for m in imported.metrics] == ["m"]


@pytest.mark.parametrize(
    ("args", "warning"),
    [
        ("", "format_args needs exactly one of time-rfc3339, time-unix"),
        ("  format_args = time-unix time-rfc3339\n", "needs exactly one"),
        ("  format_args = time-unix pretty\n", "format_args 'pretty' is unknown: ignored"),
    ],
)
def test_2_3_format_args(args: str, warning: str) -> None:
    text = (
        f"event_exporter e {{\n  format = json\n{args}  transport = drop\n}}\n"
        "metric m {\n  filter = event=x\n  exporter = e\n}\n"
    )
    assert warning in " ".join(_warnings(_imported(text)))


@pytest.mark.parametrize(
    ("value", "seconds", "warning"),
    [
        ("2s", 2.0, None),
        ("500 msecs", 0.5, None),
        ("1 min", 60.0, None),
        ("300", 0.3, "has no unit: read as milliseconds"),
        ("0", None, "no deadline"),
        ("soon", None, "is not a time"),
    ],
)
def test_2_3_transport_timeout(value: str, seconds: float | None, warning: str | None) -> None:
    text = (
        "event_exporter e {\n  format = json\n  format_args = time-unix\n"
        f"  transport = http-post\n  transport_args = http://127.0.0.1:1/x\n"
        f"  transport_timeout = {value}\n}}\n"
        "metric m {\n  filter = event=x\n  exporter = e\n}\n"
    )
    imported = _imported(text)
    assert imported.exporters[0].request_timeout == seconds
    assert (warning is None) == (not imported.warnings)
    if warning is not None:
        assert warning in str(imported.warnings[0])


# -- the output -----------------------------------------------------------------------------


def test_the_rendered_configuration_checks_and_names_its_warnings(tmp_path: Path) -> None:
    imported = _imported(_STATS)
    text = render_config(imported, "dovecot.conf")
    config = parse_config(text)
    assert sorted(config.exporters) == ["quiet", "web"]
    assert config.exporters["web"].spec.time_format == "unix"
    assert config.exporters["web"].spec.dovecot_compat == "2.4"
    assert "#   dovecot.conf:32: metric orphan: refers to" in text
    assert 'dovecot_version = "2.4.4"' in text


def test_names_that_are_not_bare_toml_keys_are_quoted() -> None:
    imported = _imported(
        "event_exporter my.exp {\n  driver = drop\n  format = json\n}\n"
        'metric "m 1" {\n  filter = event=x\n  exporter = my.exp\n}\n'
    )
    config = parse_config(render_config(imported, "d.conf"))
    assert list(config.exporters) == ["my.exp"]
    assert list(config.metrics) == ["m 1"]


def test_the_relay_snippet_posts_the_union_of_the_filters_in_the_syntax_read() -> None:
    imported = _imported(CONF_23.read_text())
    snippet = relay_snippet(imported, "127.0.0.1:8080")
    assert "  transport = http-post\n" in snippet
    assert "  transport_args = http://127.0.0.1:8080/dovecot\n" in snippet
    assert "  format_args = time-unix\n" in snippet
    root = parse_dovecot_conf(snippet, "snippet", Path("."))
    (metric,) = root.sections("metric")
    (filter_entry,) = (e for e in metric.entries() if e.key == "filter")
    distinct = {m.filter for m in imported.metrics}
    assert filter_entry.value.count(") OR (") == len(distinct) - 1
    relay = _imported(snippet)  # the snippet itself imports: one exporter, one metric
    assert [plan.destination for plan in relay.exporters] == ["http://127.0.0.1:8080/dovecot"]
    snippet_24 = relay_snippet(_imported(CONF_24.read_text()))
    assert "  http_post_url = http://127.0.0.1:8080/dovecot\n" in snippet_24


def test_the_command_prints_the_configuration_and_the_snippet_as_comments(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    conf = tmp_path / "dovecot.conf"
    conf.write_text(_STATS)
    assert main(["import-dovecot", str(conf)]) == 0
    out, err = capsys.readouterr()
    assert "# metric event_exporter_relay {" in out
    parse_config(out)
    assert f"{conf}:32: metric orphan" in err
    assert "2 exporters and 1 metric carried over (Dovecot 2.4 syntax), 9 warnings" in err


def test_the_command_writes_the_snippet_apart_and_reads_stdin(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    import io

    monkeypatch.setattr("sys.stdin", io.StringIO(_STATS))
    snippet = tmp_path / "snippet.conf"
    out = tmp_path / "out.toml"
    assert main(["import-dovecot", "-", "-o", str(out), "--dovecot-snippet", str(snippet)]) == 0
    assert "event_exporter event_exporter_relay {" in snippet.read_text()
    assert "relay {" not in out.read_text().split("[global]")[1]
    assert "from standard input" in out.read_text()


def test_the_command_says_where_the_syntax_is_wrong(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    conf = tmp_path / "dovecot.conf"
    conf.write_text("metric m {\n")
    assert main(["import-dovecot", str(conf)]) == 2
    assert f"{conf}:1: section 'metric m' is never closed" in capsys.readouterr().err


def test_a_result_that_does_not_check_here_is_written_and_its_problems_said(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    conf = tmp_path / "dovecot.conf"
    conf.write_text(
        "event_exporter f {\n  driver = file\n  format = json\n"
        "  file_path = /nonexistent/dir/events.log\n}\n"
        "metric m {\n  filter = event=x\n  exporter = f\n}\n"
    )
    out = tmp_path / "out.toml"
    assert main(["import-dovecot", str(conf), "-o", str(out)]) == 1
    assert "its directory /nonexistent/dir does not exist" in capsys.readouterr().err
    assert 'destination = "file:/nonexistent/dir/events.log"' in out.read_text()


def test_section_and_entry_types_are_the_tree() -> None:
    root = parse_dovecot_conf("a = 1\nb {\n}\n", "d", Path("."))
    assert [type(child) for child in root.children] == [Entry, Section]


def test_the_readme_example_is_what_the_command_prints(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    readme = (REPO / "README.md").read_text()
    shown = readme.split("$ event-exporter import-dovecot examples/dovecot.conf", 1)[1]
    shown = shown.split("```", 1)[0]
    said, snippet = shown.split("$ cat relay.conf\n")
    monkeypatch.chdir(REPO)
    args = ["import-dovecot", "examples/dovecot.conf", "-o", str(tmp_path / "e.toml")]
    assert main([*args, "--dovecot-snippet", str(tmp_path / "relay.conf")]) == 0
    assert (tmp_path / "relay.conf").read_text() == snippet
    err = capsys.readouterr().err
    assert said.split("\n", 2)[2] == err
