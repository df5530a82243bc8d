"""The configuration reader on hostile text: linear in its input, whatever a line holds,
and a line inside a multi-line string is not a key."""

from __future__ import annotations

import argparse
import subprocess
import sys
import time
from pathlib import Path

import pytest

from exporter.cli import main
from exporter.cli.ship import http_options
from exporter.config import ConfigError, parse_config
from exporter.config.settings import HTTP, add_options
from exporter.delivery.destinations import Destination, parse_destination
from exporter.errors import UsageError
from tests.support import REPO
from tests.support.processes import exporter_child, wait_until

MINIMAL = """
[exporter.out]
destination = "file:events.ndjson"

[metric.all]
filter = "event=*"
exporter = "out"
"""
MEGABYTE = 1 << 20


def _problems(text: str) -> list[str]:
    with pytest.raises(ConfigError) as caught:
        parse_config(text, "t.toml")
    return str(caught.value).splitlines()


@pytest.mark.parametrize(
    "line",
    [
        pytest.param(" " * MEGABYTE, id="spaces"),
        pytest.param("[" + " " * MEGABYTE, id="bracket-then-spaces"),
        pytest.param('\\"' * (MEGABYTE // 2), id="escaped-quotes"),
    ],
)
def test_check_reads_a_megabyte_line_in_a_multi_line_string_in_seconds(
    tmp_path: Path, line: str
) -> None:
    """Regression: the key finder's regex backtracked on a long line of spaces (5,000 of
    them took a minute; a megabyte never finished). A real ``check`` child, killed at
    the deadline."""
    path = tmp_path / "c.toml"
    path.write_text(
        MINIMAL.replace("[metric.all]", f'[global]\nhostname = """\n{line}\n"""\n\n[metric.all]')
    )
    started = time.monotonic()
    done = subprocess.run(
        [sys.executable, "-m", "exporter", "check", str(path)],
        cwd=REPO,
        capture_output=True,
        timeout=30,
        check=False,
    )
    took = time.monotonic() - started
    print(f"check of a {len(line)}-character line: {took:.2f} s")
    assert done.returncode == 0, done.stderr[-500:]
    assert took < 20


def test_a_line_inside_a_multi_line_string_is_not_a_key() -> None:
    """The problem's line is where the key is written, not a line of a string before it
    that looks like the key."""
    text = (
        '[global]\nhostname = """\nshutdown_timeout = 5\n[exporter.out]\n"""\n'
        "shutdown_timeout = -1\n"
        "dead_letter = '''\nlog_level = x\n'''\nlog_level = \"loud\"\n" + MINIMAL
    )
    with pytest.raises(ConfigError) as caught:
        parse_config(text, "t.toml")
    problems = str(caught.value).splitlines()
    assert problems[0] == "t.toml:6: global.shutdown_timeout: must be at least 0, not -1"
    assert problems[1].startswith("t.toml:10: global.log_level: 'loud' is not allowed")


# -- destinations: schemes are case-insensitive, no message shows credentials -------------

PASSWORD = "pw-7d1c-SECRET-never-printed"


@pytest.mark.parametrize(
    "destination",
    [
        f"HTTP://user:{PASSWORD}@collector.example/in",
        f"Https://user:{PASSWORD}@collector.example/in",
        f"htp://user:{PASSWORD}@collector.example/in",
        f"http://user:p@ss{PASSWORD}@collector.example/in",
        f"htp://collector.example/in?token={PASSWORD}",
    ],
)
def test_no_destination_problem_repeats_its_credentials(
    destination: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """Regression: ``HTTP://`` was not http (a case-sensitive match) and the problem
    quoted the whole text, password and all."""
    text = MINIMAL.replace("file:events.ndjson", destination)
    with pytest.raises(ConfigError) as caught:
        parse_config(text, "t.toml")
    problems = str(caught.value)
    assert PASSWORD not in problems
    assert problems.startswith("t.toml:3: exporter.out")
    if destination.lower().startswith("http"):
        assert "credentials in the URL are refused" in problems
    else:
        assert "'htp://***@collector.example/in'" in problems or "?***" in problems

    dead = str(tmp_path / "dead")
    assert main(["export", "--to", destination, "--dead-letter", dead, "/dev/null"]) == 2
    err = capsys.readouterr().err
    assert PASSWORD not in err
    # refused by the driver (credentials), or as --to's value (an unknown kind)
    assert err.startswith(("event-exporter: ", "event-exporter export: argument --to: "))


def test_destination_kinds_are_case_insensitive() -> None:
    assert parse_destination("HTTPS://collector.example/in") == Destination(
        "http", "HTTPS://collector.example/in"
    )
    assert parse_destination("File:/x") == Destination("file", "/x")
    assert parse_destination("DROP") == Destination("drop", "")
    with pytest.raises(UsageError, match=r"unknown destination 'x\\x1b\[2J'"):
        parse_destination("x\x1b[2J")


# -- http exporters: credentials, headers, keys, TLS -------------------------------------------

TOKEN = "tok-9c1e-SECRET-never-printed"
WEB = """
[exporter.web]
destination = "{url}"
[exporter.web.http]
{http}
[metric.all]
filter = "event=*"
exporter = "web"
"""


def _web(url: str, http: str) -> str:
    return WEB.format(url=url, http=http)


@pytest.fixture
def token(monkeypatch: pytest.MonkeyPatch) -> str:
    monkeypatch.setenv("EE_TOKEN", TOKEN)
    monkeypatch.setenv("EE_BAD_KEY", "whsec_not base64!")
    return TOKEN


def test_credentials_over_plain_http_need_allow_plain_http(
    token: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    text = _web("http://collector.example/in", 'bearer_token_env = "EE_TOKEN"')
    with pytest.raises(ConfigError) as caught:
        parse_config(text, "t.toml")
    assert str(caught.value) == (
        "t.toml:4: exporter.web.http: http destination http://collector.example/in: the bearer "
        "token would travel in clear (plain http:// to collector.example, not a loopback "
        "address): use https://, or allow it explicitly (allow_plain_http = true, "
        "--http-allow-plain-http)"
    )
    path = tmp_path / "c.toml"
    path.write_text(
        text.replace("[exporter.web.http]\n", "[exporter.web.http]\nallow_plain_http = true\n")
    )
    assert main(["check", str(path)]) == 0
    out = capsys.readouterr().out
    assert (
        "warning: exporter.web.http.allow_plain_http: true: what proves who we are (bearer "
        "token) travels in clear to collector.example (plain http://, not a loopback address)"
    ) in out
    assert "credentials over plain http to a non-loopback host allowed" in out
    assert token not in out


def test_authorization_in_the_headers_table_is_refused(token: str) -> None:
    text = _web("https://collector.example/in", 'headers = { "authorization" = "Bearer x" }')
    text += '\n[exporter.other]\ndestination = "https://c/"\n[exporter.other.http]\n'
    text += 'headers = { "Proxy-Authorization" = "Basic x", "X-Api-Key" = "fine" }\n'
    problems = _problems(text)
    assert problems == [
        "t.toml:5: exporter.web.http.headers: 'authorization' is refused here (a secret in the "
        "config file is read by whoever reads the file): use bearer_token_env / "
        "bearer_token_file, or basic_user with basic_password_env / basic_password_file",
        "t.toml:13: exporter.other.http.headers: 'Proxy-Authorization' is refused here (a "
        "secret in the config file is read by whoever reads the file): use bearer_token_env / "
        "bearer_token_file, or basic_user with basic_password_env / basic_password_file",
    ]


def test_a_whsec_key_that_is_not_base64_is_a_problem_at_its_key(
    token: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """Regression: check passed it, and every batch became a dead letter."""
    text = _web(
        "https://collector.example/in",
        'signing = "standard-webhooks"\nsigning_key_env = "EE_BAD_KEY"',
    )
    assert _problems(text) == [
        "t.toml:6: exporter.web.http.signing_key_env: the signing key from environment "
        "variable EE_BAD_KEY starts with whsec_ but what follows is not base64 (a Standard "
        "Webhooks key is whsec_ and the base64 of its bytes)"
    ]
    path = tmp_path / "c.toml"
    path.write_text(text)
    assert main(["check", str(path)]) == 2
    assert "signing_key_env: the signing key from environment variable EE_BAD_KEY" in (
        capsys.readouterr().err
    )


def test_check_shows_tls_settings_and_warns_when_verification_is_off(
    token: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    ca = tmp_path / "ca.pem"
    ca.write_text("")
    path = tmp_path / "c.toml"
    path.write_text(
        _web("https://collector.example/in", 'verify_tls = false\nbearer_token_env = "EE_TOKEN"')
        + f'\n[exporter.pinned]\ndestination = "https://c.example/"\n[exporter.pinned.http]\n'
        f'ca_file = "{ca}"\nfollow_redirects = true\n'
    )
    assert main(["check", str(path)]) == 0
    out = capsys.readouterr().out
    assert (
        "  tls verification OFF (verify_tls = false), CA the system store; credentials over "
        "plain http to a non-loopback host refused; redirects not followed"
    ) in out
    assert (
        f"  tls verification on, CA {ca}; credentials over plain http to a non-loopback host "
        "refused; redirects 307/308 within the same origin, at most 5"
    ) in out
    assert (
        "warning: exporter.web.http.verify_tls: false: the server's certificate is not "
        "checked, so whoever is on the path can read and change what is sent (bearer token "
        "included)"
    ) in out
    assert token not in out


# -- http sources open to anyone ---------------------------------------------------------------

SOURCE = MINIMAL + '\n[source.web]\ntype = "http"\nlisten = "{listen}"\n{keys}\n'


@pytest.mark.parametrize(
    ("listen", "keys", "expected"),
    [
        ("0.0.0.0:8080", "", ["0.0.0.0:8080 is not a loopback address"]),
        ("[::]:8080", "", [":::8080 is not a loopback address"]),
        ("imap01.example:8080", "", ["imap01.example:8080 is not a loopback address"]),
        ("0.0.0.0:8080", 'bearer_token_env = "EE_TOKEN"', []),
        ("127.0.0.1:8080", "", []),
        ("localhost:8080", "", []),
        ("[::1]:8080", "", []),
        ("127.0.0.1:8080", 'stalwart_signing_key_env = "EE_TOKEN"', ["Stalwart signing key"]),
        (
            "0.0.0.0:8080",
            'stalwart_signing_key_env = "EE_TOKEN"',
            ["0.0.0.0:8080 is not a loopback address", "Stalwart signing key"],
        ),
        (
            "0.0.0.0:8080",
            'stalwart_signing_key_env = "EE_TOKEN"\nbearer_token_env = "EE_TOKEN"',
            [],
        ),
    ],
)
def test_an_http_source_open_to_anyone_is_a_warning(
    token: str, listen: str, keys: str, expected: list[str]
) -> None:
    config = parse_config(SOURCE.format(listen=listen, keys=keys))
    warnings = config.warnings()
    assert len(warnings) == len(expected), warnings
    for warning, part in zip(warnings, expected, strict=True):
        assert part in warning
        assert warning.startswith(("source.web.listen: ", "source.web: "))
    if "Stalwart" in "".join(expected):
        assert warnings[-1] == (
            "source.web: the Stalwart signing key guards POST /stalwart only: without a bearer "
            "token, /events and /dovecot take events from anyone who can connect (set "
            "bearer_token_env or bearer_token_file)"
        )


def test_run_logs_the_warnings_as_it_starts(token: str, tmp_path: Path) -> None:
    """A real ``run``: TLS not verified and a Stalwart key without a token, said at start
    (the listener is on 127.0.0.1; no event is sent, so nothing connects anywhere)."""
    path = tmp_path / "c.toml"
    path.write_text(
        _web("https://127.0.0.1:9/in", "verify_tls = false")
        + '\n[source.web]\ntype = "http"\nlisten = "127.0.0.1:0"\n'
        'stalwart_signing_key_env = "EE_TOKEN"\n'
        f'[global]\ndead_letter = "{tmp_path / "dead"}"\n'
    )
    with exporter_child("run", str(path)) as child:
        said = (
            b"verify_tls: false",
            b"the Stalwart signing key guards POST /stalwart only",
            b"listening on http://127.0.0.1:",  # and its signals handled
        )
        assert wait_until(lambda: all(s in bytes(child.stderr) for s in said), timeout=20), bytes(
            child.stderr
        )
        child.terminate()
        assert child.wait(timeout=20) == 0
    assert TOKEN.encode() not in bytes(child.stderr)


# -- the command line ----------------------------------------------------------------------


@pytest.mark.parametrize(
    "header", ["Authorization: Bearer x", "proxy-authorization: x", "Cookie: s=1", "X-Api-Key: x"]
)
def test_a_credential_on_the_command_line_is_refused(
    header: str, capsys: pytest.CaptureFixture[str]
) -> None:
    """Regression: ``--http-header 'Authorization: ...'`` put a secret where ``ps`` shows
    it to every user."""
    value = header.partition(":")[2].strip()
    argv = ["export", "--to", "http://127.0.0.1:9/", "--http-header", f"{header}{TOKEN}", "x"]
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert "carries a credential, and a command line is visible to every user (ps)" in err
    assert "--http-bearer-token-env/-file" in err
    assert TOKEN not in err
    assert value + TOKEN not in err


def test_a_header_without_its_colon_is_not_repeated(capsys: pytest.CaptureFixture[str]) -> None:
    argv = ["export", "--to", "http://127.0.0.1:9/", "--http-header", f"Authorization {TOKEN}"]
    assert main([*argv, "x"]) == 2
    err = capsys.readouterr().err
    assert "a header is 'NAME: VALUE', like 'X-Source: imap01'" in err
    assert TOKEN not in err


def test_a_bad_whsec_key_on_the_command_line_is_a_usage_error(
    token: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    argv = ["export", "--to", "http://127.0.0.1:9/", "--dead-letter", str(tmp_path / "d")]
    keys = ["--http-signing", "standard-webhooks", "--http-signing-key-env", "EE_BAD_KEY"]
    assert main([*argv, *keys, "/dev/null"]) == 2
    assert "starts with whsec_ but what follows is not base64" in capsys.readouterr().err


def test_plain_http_on_the_command_line(token: str, capsys: pytest.CaptureFixture[str]) -> None:
    parser = argparse.ArgumentParser()
    add_options(parser, HTTP)
    url = "http://collector.example/in"
    args = parser.parse_args(["--http-bearer-token-env", "EE_TOKEN"])
    with pytest.raises(UsageError, match="--http-allow-plain-http"):
        http_options(args, url, "json")
    args = parser.parse_args(["--http-bearer-token-env", "EE_TOKEN", "--http-allow-plain-http"])
    assert http_options(args, url, "json").allow_plain_http
    args = parser.parse_args(["--http-insecure"])
    http_options(args, "https://c.example/", "json")
    assert capsys.readouterr().err.splitlines() == [
        "event-exporter: warning: --http-allow-plain-http: true: what proves who we are (bearer "
        "token) travels in clear to collector.example (plain http://, not a loopback address)",
        "event-exporter: warning: --http-insecure: false: the server's certificate is not "
        "checked, so whoever is on the path can read and change what is sent",
    ]


def test_check_shows_what_guards_each_listener(
    token: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """The deadlines, caps and tokens an operator relies on are shown, not only applied."""
    path = tmp_path / "c.toml"
    path.write_text(
        MINIMAL.replace(
            "[exporter.out]",
            "[global]\n"
            'metrics_listen = "127.0.0.1:9100"\nmetrics_bearer_token_env = "EE_TOKEN"\n'
            "dead_letter_max_bytes = 5000\n\n[exporter.out]",
        )
        + '\n[source.web]\ntype = "http"\nheader_timeout = 3\nmax_connections_per_peer = 7\n'
        '[source.sock]\ntype = "unix"\npath = "/run/x.sock"\nmax_connections = 9\n'
    )
    assert main(["check", str(path)]) == 0
    out = capsys.readouterr().out
    assert "(at most 5000 bytes)" in out
    assert "metrics: http://127.0.0.1:9100/metrics; bearer token required" in out
    assert (
        "source web: http://127.0.0.1:8080 (POST /dovecot, /events, /stalwart); no bearer "
        "token; head within 3 s, body within 60 s, idle 60 s; at most 1024 connections, "
        "7 per peer, 10485760 bytes a body"
    ) in out
    assert (
        "source sock: unix socket /run/x.sock (mode 0600, owner this process's, group this "
        "process's); at most 9 connections"
    ) in out
    assert token not in out


def test_toml_nested_too_deep_or_a_number_too_long_is_a_syntax_problem(tmp_path: Path) -> None:
    """Regression: a RecursionError and a ValueError (Python's digit limit) came out of the
    TOML reader as tracebacks."""
    deep = tmp_path / "deep.toml"
    deep.write_text(MINIMAL + "fields = " + "[" * 600 + '"x"' + "]" * 600 + "\n")
    with pytest.raises(ConfigError) as caught:
        parse_config(deep.read_text(), "deep.toml")
    assert str(caught.value).startswith("deep.toml:")
    assert "(syntax): arrays or inline tables nested too deep" in str(caught.value)
    long = "[global]\nshutdown_timeout = " + "9" * 5000 + "\n" + MINIMAL
    with pytest.raises(ConfigError, match=r"c.toml:2: \(syntax\): a number with thousands"):
        parse_config(long, "c.toml")


def test_a_metrics_listener_or_a_socket_open_to_anyone_is_a_warning(token: str) -> None:
    open_metrics = parse_config('[global]\nmetrics_listen = "0.0.0.0:9100"\n' + MINIMAL)
    assert any(
        w.startswith("global.metrics_listen: 0.0.0.0:9100 is not a loopback address and no ")
        for w in open_metrics.warnings()
    )
    guarded = parse_config(
        '[global]\nmetrics_listen = "0.0.0.0:9100"\nmetrics_bearer_token_env = "EE_TOKEN"\n'
        + MINIMAL
    )
    assert not [w for w in guarded.warnings() if "metrics_listen" in w]
    socket = MINIMAL + '\n[source.s]\ntype = "unix"\npath = "/run/s.sock"\nmode = "{mode}"\n'
    assert [w for w in parse_config(socket.format(mode="0666")).warnings() if "mode" in w] == [
        "source.s.mode: 0666 lets every local user connect to /run/s.sock and send events "
        "(0600 or 0660 with a group keeps it to the mail server)"
    ]
    assert not [w for w in parse_config(socket.format(mode="0660")).warnings() if "mode" in w]
