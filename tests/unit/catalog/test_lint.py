"""``check``'s warnings about filters: each kind, in ``check --filter``, in ``check CONFIG``
and at ``run``'s start; the field kinds and versions of the catalog they rely on."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from exporter.catalog.kinds import field_kind
from exporter.catalog.lint import filter_warnings
from exporter.catalog.model import load_catalog
from exporter.catalog.versions import parse_version, reached
from exporter.cli import main
from exporter.config import ConfigError, parse_config
from exporter.filter import compile_filter


def _warnings(expr: str, version: str | None = None) -> list[str]:
    stated = None if version is None else parse_version(version)
    return filter_warnings("filter", compile_filter(expr), stated)


# -- what a field holds ------------------------------------------------------------------


def test_field_kinds_come_from_names_and_every_description() -> None:
    assert field_kind("lock_wait_usecs", ["How many usecs this command waited."]) == "number"
    assert field_kind("rows", []) == "number"
    assert field_kind("hits", ["Number of hits.", "Amount of hits, in bytes."]) == "number"
    assert field_kind("cmd_name", ["IMAP command name uppercased (e.g. FETCH)."]) == "string"
    assert field_kind("last_run_time", ["Timestamp when the command last ran."]) == "timestamp"
    assert field_kind("reason_code", ["List of reason code strings why."]) == "list"
    # the documents disagree, or do not say: no kind, so no warning either way
    assert field_kind("policy_result", ["Value (number).", "ok, delayed, or refused."]) is None
    assert field_kind("size", ["Name of the size class."]) is None
    assert field_kind("mystery", ["Something."]) is None


def test_the_catalog_knows_the_kind_of_most_fields() -> None:
    catalog = load_catalog()
    kinds = catalog.field_kinds
    assert sum(kind == "number" for kind in kinds.values()) > 80
    assert sum(kind == "string" for kind in kinds.values()) > 90
    expected = {
        "duration": "number",
        "bytes_in": "number",
        "net_out_bytes": "number",
        "remote_port": "number",
        "status_code": "number",
        "user": "string",
        "cmd_name": "string",
        "mailbox": "string",
        "remote_ip": "string",
        "reason_code": "list",
        "last_run_time": "timestamp",
        "id_param_name": "string",  # as id_param_<param>
        "error_code": None,
    }
    assert {name: catalog.field_kind(name) for name in expected} == expected


# -- each warning --------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("expr", "says"),
    [
        ("cmd_name>5", "cmd_name is a string, which Dovecot compares only with '=': '>'"),
        ("reason_code<=3", "reason_code is a list of strings, which Dovecot compares only"),
        ("last_run_time=*", "last_run_time is a timestamp, and Dovecot never matches"),
        ("last_run_time>0", "last_run_time is a timestamp"),
        ("duration>abc", "duration is a number and 'abc' is not, so '>' is always false"),
        ("bytes_in>=10.0.0.1", "bytes_in is a number and '10.0.0.1' is not"),
        ("bytes_in=abc", "bytes_in is a number and 'abc' is not one, so this never matches"),
        ("bytes_in=a*", "bytes_in is a number and 'a*' is not one"),
        ("duration>5m", "'5m' could be MiB or minutes"),
        ("event=imap_comand_finished", "no documented event has the event"),
        ("category=imapp", "no documented event has the category 'imapp'; did you mean 'imap'"),
        ("cmd_nme=SELECT", "no documented event has the field 'cmd_nme'; did you mean"),
        ("event=a OR event=b AND user=x", "AND and OR mixed without parentheses at column"),
    ],
)
def test_each_warning(expr: str, says: str) -> None:
    assert any(says in warning for warning in _warnings(expr)), _warnings(expr)


@pytest.mark.parametrize(
    "expr",
    [
        "bytes_in=1*",  # a numeric mask matches the number's digits
        "duration>5",
        "duration>=5secs",
        "message_size<1MB",
        "cmd_name=SEL*",
        "remote_ip=10.0.0.0/8",
        "user=5",  # a string field compared with a number's text: fine
        "error_code>3",  # the documents do not say what it holds
        "event=imap_command_finished AND (cmd_name=FETCH OR cmd_name=SELECT)",
        # "" matches an event without the field, whatever the field holds
        'NOT bytes_in=""',
        'bytes_in>=""',
        'cmd_tag<""',
        'last_run_time=""',
    ],
)
def test_what_can_match_gets_no_warning(expr: str) -> None:
    assert _warnings(expr) == []


def test_events_a_stated_dovecot_does_not_send() -> None:
    flush = "event=auth_client_cache_flush_started"  # added v2.3.7, removed v2.4.0, v3.0.0
    assert _warnings(flush, "2.3.19.1") == []
    assert _warnings(flush, "2.4.1") == [
        "filter: event 'auth_client_cache_flush_started' was removed in Dovecot v2.4.0, "
        "so 2.4.1 never sends it"
    ]
    assert "removed in Dovecot v3.0.0, so 3.0 never" in _warnings(flush, "3.0")[0]
    assert _warnings(flush, "2.3.5") == [
        "filter: event 'auth_client_cache_flush_started' came in Dovecot v2.3.7; 2.3.5 never "
        "sends it"
    ]
    lookup = "event=mail_cache_lookup_finished"  # removed in v2.3.18 only: Pro 3.x too
    assert "removed in Dovecot v2.3.18" in _warnings(lookup, "3.0.1")[0]
    assert _warnings(lookup, "2.3.17") == []
    assert _warnings(lookup) == []  # no version stated


def test_a_series_is_compared_only_as_far_as_it_goes() -> None:
    expunged = "event=mail_expunged"  # added in v2.3.15
    assert _warnings(expunged, "2.3") == []  # 2.3.15 and later have it
    assert "came in Dovecot v2.3.15; 2.2 never sends it" in _warnings(expunged, "2.2")[0]
    lookup = "event=mail_cache_lookup_finished"  # removed in v2.3.18
    assert _warnings(lookup, "2.3") == []
    assert "removed in Dovecot v2.3.18, so 2.4 never" in _warnings(lookup, "2.4")[0]
    flush = "event=auth_client_cache_flush_started"  # removed in v2.4.0
    assert "removed in Dovecot v2.4.0, so 2.4 never" in _warnings(flush, "2.4")[0]


def test_duration_in_a_dovecot_2_3_filter() -> None:
    expr = "event=imap_command_finished AND duration>1000"
    assert "before 2.4 checks 'duration' where the event is sent" in _warnings(expr, "2.3.21")[0]
    assert _warnings(expr, "2.4.0") == []


def test_versions() -> None:
    assert parse_version("2.3.19.1") == (2, 3, 19, 1)
    assert parse_version("v2.4") == (2, 4)
    assert parse_version("2.4.x") is None
    assert parse_version("2.3.21 (47349e2482)") == (2, 3, 21)  # as `dovecot --version` says
    assert reached("v2.4.0, v3.0.0", (2, 4)) == "v2.4.0"
    assert reached("v2.4.0, v3.0.0", (2, 3, 21)) is None
    assert reached("v2.3.18 (Removed for performance reasons)", (2, 3, 18)) == "v2.3.18"
    assert reached(None, (2, 4)) is None


# -- where users see them -------------------------------------------------------------------


def test_check_filter_with_a_dovecot_version(capsys: pytest.CaptureFixture[str]) -> None:
    expr = "event=mail_cache_lookup_finished"
    assert main(["check", "--filter", expr, "--dovecot-version", "2.3.19"]) == 0
    assert "warning: filter: event 'mail_cache_lookup_finished' was removed" in (
        capsys.readouterr().out
    )
    assert main(["check", "--filter", expr, "--dovecot-version", "latest"]) == 2
    assert "--dovecot-version 'latest' is not a version (allowed:" in capsys.readouterr().err


CONFIG = """
[global]
dovecot_version = "{version}"

[exporter.out]
destination = "file:{out}"

[metric.slow]
filter = "event=mail_cache_lookup_finished AND cmd_name>5"
exporter = "out"
"""


def test_check_config_warns_with_its_dovecot_version(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path = tmp_path / "c.toml"
    path.write_text(CONFIG.format(version="2.3.19.1", out=tmp_path / "o"))
    assert main(["check", str(path)]) == 0
    out = capsys.readouterr().out
    assert "warning: metric.slow.filter: event 'mail_cache_lookup_finished' was removed" in out
    assert "warning: metric.slow.filter: cmd_name>5: cmd_name is a string" in out
    assert main(["check", str(path), "--dovecot-version", "2.3.17"]) == 0
    assert "was removed" not in capsys.readouterr().out  # the option overrides the file


def test_a_dovecot_version_that_is_not_one_is_a_config_problem(tmp_path: Path) -> None:
    with pytest.raises(ConfigError) as caught:
        parse_config(CONFIG.format(version="two", out=tmp_path / "o"), "c.toml")
    assert "c.toml:3: global.dovecot_version: 'two' is not allowed (allowed: a Dovecot " in str(
        caught.value
    )


def test_run_says_the_warnings_as_it_starts(tmp_path: Path) -> None:
    path = tmp_path / "c.toml"
    config = CONFIG.format(version="2.3.19.1", out=tmp_path / "o")
    path.write_text(config + '\n[source.in]\ntype = "stdin"\n')
    with open(os.devnull, "rb") as null:
        done = subprocess.run(
            [sys.executable, "-m", "exporter", "run", str(path)],
            stdin=null,
            capture_output=True,
            timeout=30,
            check=False,
            cwd=tmp_path,
        )
    assert done.returncode == 0, done.stderr
    assert b"metric.slow.filter: event 'mail_cache_lookup_finished' was removed" in done.stderr
