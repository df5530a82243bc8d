"""The ``export`` command as a user runs it: files, stdin, options, errors, exit codes."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from exporter.cli import main
from exporter.event import Event
from tests.support import REPO
from tests.support.processes import into_closed_pipe
from tests.support.samples import EVENTS_FILE, expected_bodies


def _export(tmp_path: Path, *args: str) -> tuple[int, bytes]:
    out = tmp_path / "out"
    code = main(["export", "--output", str(out), *args])
    return code, out.read_bytes() if out.exists() else b""


def _run(*args: str, stdin: bytes = b"") -> subprocess.CompletedProcess[bytes]:
    return subprocess.run(
        [sys.executable, "-m", "exporter", *args],
        input=stdin,
        capture_output=True,
        cwd=REPO,
        timeout=60,
        check=False,
    )


def test_default_is_dovecot_json_rfc3339(tmp_path: Path) -> None:
    code, out = _export(tmp_path, str(EVENTS_FILE))
    assert code == 0
    lines = out.split(b"\n")
    assert lines[-1] == b""
    assert set(lines[:-1]) >= set(expected_bodies("json_rfc3339_all")) - {
        b for b in expected_bodies("json_rfc3339_all") if b'"cmd_tag":"b9"' in b
    }
    assert len(lines) == 37


def test_tabtext_unix_with_include_and_filter(tmp_path: Path) -> None:
    code, out = _export(
        tmp_path,
        "--format",
        "tab-text",
        "--time-format",
        "unix",
        "--include",
        "name fields",
        "--filter",
        "event=imap_command_finished AND cmd_name=select",
        str(EVENTS_FILE),
    )
    assert code == 0
    lines = out.splitlines()
    assert len(lines) == 3  # the capture has three SELECT commands
    for line in lines:
        assert line.startswith(b"event:imap_command_finished\tfield:")
        assert line in expected_bodies("tabtext_unix_name_fields")


def test_fields_precision_and_comma_separated_include(tmp_path: Path) -> None:
    code, out = _export(
        tmp_path,
        "--include",
        "name,timestamps,fields",
        "--fields",
        "user, duration",
        "--time-precision",
        "ns",
        "--filter",
        "event=auth_request_finished AND success=yes",
        str(EVENTS_FILE),
    )
    assert code == 0
    first = out.splitlines()[0]
    assert first == (
        b'{"event":"auth_request_finished","start_time":"2026-11-21T23:44:21.081854000Z",'
        b'"end_time":"2026-11-21T23:44:36.096185000Z",'
        b'"fields":{"user":"testuser","duration":15014257}}'
    )


def test_truncate_option(tmp_path: Path) -> None:
    src = tmp_path / "in"
    src.write_bytes(b'{"event":"e","fields":{"k":"' + b"x" * 20 + b'"}}\n')
    code, out = _export(tmp_path, "--truncate", "5", "--include", "fields", str(src))
    assert (code, out) == (0, b'{"fields":{"k":"xxxxx..."}}\n')


def test_truncate_0_means_never_as_the_key_says(tmp_path: Path) -> None:
    """``--truncate 0`` is ``truncate = 0``: never, with ``--to log:`` too, where no
    ``--truncate`` at all cuts at Dovecot's 1000 bytes (real child processes: the log
    driver writes to the process's stdout)."""
    src = tmp_path / "in"
    src.write_bytes(b'{"event":"e","fields":{"k":"' + b"x" * 1500 + b'"}}\n')
    whole = b'{"fields":{"k":"' + b"x" * 1500 + b'"}}\n'
    assert _export(tmp_path, "--truncate", "0", "--include", "fields", str(src)) == (0, whole)
    ship = ["export", "--to", "log:stdout", "--dead-letter", str(tmp_path / "dead")]
    ship += ["--include", "fields", str(src)]
    given = _run(*ship[:3], "--truncate", "0", *ship[3:])
    assert (given.returncode, given.stdout) == (0, whole), given.stderr
    default = _run(*ship)
    assert default.returncode == 0, default.stderr
    assert default.stdout == b'{"fields":{"k":"' + b"x" * 1000 + b'..."}}\n'


def test_bad_lines_are_reported_and_the_rest_exported(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    src = tmp_path / "in"
    src.write_bytes(b'{"event":"a"}\n{"event":\n\nevent:b\nnonsense\r\n{"event":"c"}')
    code, out = _export(tmp_path, "--include", "name", str(src))
    assert code == 1
    assert out == b'{"event":"a"}\n{"event":"b"}\n{"event":"c"}\n'
    err = capsys.readouterr().err
    assert f"{src}:2: column " in err
    assert "not valid JSON" in err
    assert f"{src}:5: column 1: unknown item 'nonsense'" in err
    assert "2 of 5 lines rejected, 3 exported" in err


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--filter", "event=a AND"], "--filter: event filter: unexpected end of input at column"),
        (["--include", "name,bogus"], "unknown include word 'bogus'"),
        (["--format", "xml"], "invalid choice: 'xml'"),
        (["--truncate", "-1"], "must be at least 0"),
        (["--truncate", "x"], "'x' is not a whole number"),
        (["/nonexistent/events"], "cannot read /nonexistent/events"),
    ],
)
def test_usage_errors_exit_2(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], args: list[str], message: str
) -> None:
    assert main(["export", "--output", str(tmp_path / "o"), *args]) == 2
    assert message in capsys.readouterr().err


def test_stdin_to_stdout_as_a_user_pipes_it() -> None:
    result = _run("export", "--include", "name", stdin=EVENTS_FILE.read_bytes())
    assert result.returncode == 0, result.stderr
    assert result.stdout.count(b"\n") == 36
    assert result.stdout.startswith(b'{"event":"auth_passdb_request_finished"}\n')


def test_filter_error_points_at_the_position() -> None:
    result = _run("export", "--filter", "event=imap_* AND (cmd_name=x")
    assert result.returncode == 2
    err = result.stderr.decode()
    assert "at column 29" in err
    assert err.rstrip().endswith("^")


def test_tabtext_converted_to_json_and_back_is_unchanged(tmp_path: Path) -> None:
    """tab-text has no types, so json shows guesses (``"1"`` becomes 1); converting that
    json back to tab-text still gives Dovecot's bytes."""
    tab = b"\n".join(expected_bodies("tabtext_unix_all")) + b"\n"
    (tmp_path / "tab").write_bytes(tab)
    assert (
        main(
            [
                "export",
                "--time-format",
                "unix",
                "--output",
                str(tmp_path / "json"),
                str(tmp_path / "tab"),
            ]
        )
        == 0
    )
    json_lines = (tmp_path / "json").read_bytes().splitlines()
    assert len(json_lines) == 36
    assert all(line.startswith(b'{"event":') for line in json_lines)
    assert (
        main(
            [
                "export",
                "--format",
                "tab-text",
                "--time-format",
                "unix",
                "--output",
                str(tmp_path / "back"),
                str(tmp_path / "json"),
            ]
        )
        == 0
    )
    assert (tmp_path / "back").read_bytes() == tab


def test_cr_split_from_its_lf_across_reads_is_still_dropped() -> None:
    from exporter.sources.lines import LineSplitter

    splitter = LineSplitter()
    assert splitter.feed(b"event:a\tfield:x=1\r") == []
    assert splitter.feed(b"\nevent:b\r\n") == [b"event:a\tfield:x=1", b"event:b"]
    assert splitter.feed(b"") == []


def test_a_line_that_breaks_something_inside_is_rejected_alone(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    from exporter.formats.reader import read_event

    def flaky(line: bytes) -> Event:
        if b"boom" in line:
            raise RuntimeError("unexpected")
        return read_event(line)

    monkeypatch.setattr("exporter.sources.lines.read_event", flaky)
    src = tmp_path / "in"
    src.write_bytes(b"event:a\nevent:boom\nevent:c\n")
    code, out = _export(tmp_path, "--include", "name", str(src))
    assert code == 1
    assert out == b'{"event":"a"}\n{"event":"c"}\n'
    assert ":2: internal error: RuntimeError('unexpected')" in capsys.readouterr().err


def test_output_that_is_an_input_is_refused(tmp_path: Path) -> None:
    src = tmp_path / "in"
    src.write_bytes(b"event:a\n")
    assert main(["export", "--output", str(src), str(src)]) == 2
    assert src.read_bytes() == b"event:a\n"


def test_closed_stdout_ends_like_a_filter_killed_by_sigpipe() -> None:
    status, err = into_closed_pipe("export", stdin=EVENTS_FILE.read_bytes() * 3000)
    assert status == 141
    assert b"Traceback" not in err


def test_delivery_settings_a_driver_refuses_are_usage_errors(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    long_socket = "/tmp/" + "s" * 120
    assert main(["export", "--to", f"unix:{long_socket}", str(EVENTS_FILE)]) == 2
    assert "unix" in capsys.readouterr().err


def test_replay_refuses_to_dead_letter_into_the_file_it_replays(tmp_path: Path) -> None:
    dead = tmp_path / "dl"
    dead.write_bytes(b'{"event":"x"}\n')
    code = main(["replay", str(dead), "--to", "drop", "--dead-letter", str(tmp_path / "." / "dl")])
    assert code == 2
    assert dead.read_bytes() == b'{"event":"x"}\n'
