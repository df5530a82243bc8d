"""What the command line says: every command's exit statuses in its --help, a usage error
in one line with a hint, messages that escape what they quote, and the misuses of
``export --to`` refused before anything is read or written."""

from __future__ import annotations

import os
import re
from pathlib import Path

import pytest

from exporter.cli import main
from exporter.delivery.spool import SpoolQueue
from tests.support.processes import into_closed_pipe
from tests.support.samples import EVENTS_FILE

EXIT_STATUSES = {
    (): {0, 2},
    ("export",): {0, 1, 2, 3, 141},
    ("replay",): {0, 2, 3},
    ("check",): {0, 2},
    ("run",): {0, 1, 2, 3},
    ("catalog",): {0, 1, 2, 141},
    ("generate",): {0, 2},
    ("spool",): {0, 2, 3, 141},
    ("version",): {0, 2},
}
"""What each command can exit with (2, a usage error, is every command's)."""


@pytest.mark.parametrize("command", list(EXIT_STATUSES), ids=lambda c: " ".join(c) or "main")
def test_every_command_lists_all_its_exit_statuses_in_its_help(
    command: tuple[str, ...], capsys: pytest.CaptureFixture[str]
) -> None:
    assert main([*command, "--help"]) == 0
    text = " ".join(capsys.readouterr().out.split())  # argparse wraps the epilog
    found = re.search(r"exit status: (.*)", text)
    assert found is not None, text
    listed = {int(status) for status in re.findall(r"(?:^|; )(\d+) ", found[1])}
    assert listed == EXIT_STATUSES[command]


@pytest.mark.parametrize(
    ("args", "said"),
    [
        (["export", "--format", "xml"], "event-exporter export: argument --format: invalid choice"),
        (["spool", "peek", "x"], "event-exporter spool: argument action: invalid choice"),
        (["frobnicate"], "event-exporter: argument COMMAND: invalid choice"),
    ],
)
def test_a_usage_error_is_one_line_and_a_hint(
    args: list[str], said: str, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(args) == 2
    err = capsys.readouterr().err
    prog = said.split(":")[0]
    assert err.startswith(said), err
    assert err.endswith(f"; see {prog} --help\n"), err
    assert err.count("\n") == 1, err  # not the whole usage


def test_a_file_name_with_bad_bytes_is_escaped_not_printed_as_surrogates(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    name = os.fsdecode(b"/nonexistent/bad\xff\x1b[2Jname")
    assert main(["export", "--output", str(tmp_path / "o"), name]) == 2
    err = capsys.readouterr().err
    assert "cannot read /nonexistent/bad\\xff\\x1b[2Jname" in err
    assert not re.search("[\udc80-\udcff\x1b]", err)


@pytest.mark.parametrize("command", ["check", "run"])
def test_a_config_path_with_control_characters_is_escaped(
    command: str, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main([command, "/nonexistent/\x1b[2J\x9bc.toml"]) == 2
    err = capsys.readouterr().err
    assert "/nonexistent/\\x1b[2J\\x9bc.toml" in err
    assert not re.search("[\x1b\x9b]", err)


def test_a_catalog_pattern_that_matches_nothing_says_so(
    capsys: pytest.CaptureFixture[str],
) -> None:
    assert main(["catalog", "no_such_event_anywhere"]) == 1
    captured = capsys.readouterr()
    assert captured.out == ""
    assert captured.err == (
        "event-exporter: no documented event matches 'no_such_event_anywhere'\n"
    )
    assert main(["catalog", "imap_command_finished", "--source", "stalwart"]) == 1
    assert "among the stalwart events" in capsys.readouterr().err


def test_spool_export_into_a_closed_pipe_ends_quietly_like_export(tmp_path: Path) -> None:
    path = tmp_path / "spool.db"
    spool = SpoolQueue(
        str(path), 200_000, 64 << 20, "block", lambda reason, count: None, batch_max_events=1000
    )
    for n in range(100_000):  # a few MiB: more than a pipe holds
        spool.offer(b'{"event":"e","fields":{"n":%d}}\n' % n)
    spool.commit()
    spool.shut()
    status, err = into_closed_pipe("spool", "export", str(path))
    assert (status, err) == (141, b"")
    status, err = into_closed_pipe("catalog", "--fields")  # 200 kB: more than a pipe holds
    assert (status, err) == (141, b"")


def test_export_to_its_own_input_file_is_refused_and_the_input_unchanged(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    events = tmp_path / "events.ndjson"
    events.write_bytes(EVENTS_FILE.read_bytes())
    link = tmp_path / "link.ndjson"
    link.symlink_to(events)
    dead = ["--dead-letter", str(tmp_path / "dead")]
    for to in (events, tmp_path / "." / "events.ndjson"):
        assert main(["export", *dead, "--to", f"file:{to}", str(events)]) == 2
        assert "is also an input file" in capsys.readouterr().err
    # the input through a link (the destination is the file, never a link: that is refused)
    assert main(["export", *dead, "--to", f"file:{events}", str(link)]) == 2
    assert f"--to file:{events} is also an input file ({link})" in capsys.readouterr().err
    assert events.read_bytes() == EVENTS_FILE.read_bytes()
    assert not (tmp_path / "dead").exists()
