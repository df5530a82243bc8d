"""``check`` says every problem of a file in one pass, each at its key's own line, and
refuses at start what could only fail later (a file with nowhere to live)."""

from __future__ import annotations

from pathlib import Path

import pytest

from drivers.http import BODIES
from exporter.cli import main

TEXT = """\
[exporter.web]
destination = "https://collector.example/in"
[exporter.web.http]
gzip_level = 11
connect_timeout = 0
concurrency = 0
body = "nope"

[exporter.f]
destination = "file:{dir}/out.ndjson"

[metric.all]
filter = "event=*"
exporter = "f"
fields = ["usr", "user"]

[source.t]
type = "file"
path = "{dir}/in.log"
state_file = "/nonexistent/dir/state"

[source.w]
type = "http"
listen = "256.1.1.1:8080"
"""


def test_every_problem_in_one_pass_at_its_key_line(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """Before: the http table said one problem per run, gzip_level = 11 pointed at the
    table's header, and the state file's directory and the listen address passed."""
    path = tmp_path / "c.toml"
    path.write_text(TEXT.format(dir=tmp_path))
    assert main(["check", str(path)]) == 2
    problems = [line.removeprefix(f"{path}:") for line in capsys.readouterr().err.splitlines()]
    assert sorted(problems[1:]) == [
        "20: source.t.state_file: its directory /nonexistent/dir does not exist",
        "24: source.w.listen: '256.1.1.1:8080' is not allowed (allowed: HOST:PORT)",
        "4: exporter.web.http.gzip_level: must be at most 9, not 11",
        "5: exporter.web.http.connect_timeout: must be more than 0, not 0",
        "6: exporter.web.http.concurrency: must be at least 1, not 0",
        f"7: exporter.web.http.body: 'nope' is not allowed (allowed: {', '.join(BODIES)})",
    ]


def test_a_field_no_event_has_is_a_warning_with_the_closest_name(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    text = TEXT.format(dir=tmp_path).split("[source.t]")[0].split("[exporter.f]")[1]
    path = tmp_path / "c.toml"
    path.write_text("[exporter.f]" + text)
    assert main(["check", str(path)]) == 0
    assert (
        "warning: metric.all.fields: no documented event has the field 'usr'; did you mean 'user'?"
    ) in capsys.readouterr().out


@pytest.mark.parametrize(
    ("target", "why"),
    [
        ("/nonexistent/dir/out.ndjson", "its directory /nonexistent/dir does not exist"),
        ("/dev/full", "/dev/full: it is a character device, not a regular file: refused"),
        ("/proc/self/status", "is a kernel interface, not a place for files"),
        ("{dir}", "it is a directory, not a regular file"),
    ],
)
def test_a_file_destination_with_nowhere_to_live_is_refused_at_its_key(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], target: str, why: str
) -> None:
    path = tmp_path / "c.toml"
    path.write_text(
        f'[exporter.f]\ndestination = "file:{target.format(dir=tmp_path)}"\n'
        '[metric.all]\nfilter = "event=*"\nexporter = "f"\n'
    )
    assert main(["check", str(path)]) == 2
    err = capsys.readouterr().err
    assert f"{path}:2: exporter.f.destination: " in err
    assert why in err
    assert main(["run", str(path)]) == 2  # the daemon refuses it at start the same way
    capsys.readouterr()
    # and so does export --to, before reading anything or making a dead-letter file
    dead, to = tmp_path / "dead", f"file:{target.format(dir=tmp_path)}"
    assert main(["export", "--dead-letter", str(dead), "--to", to, str(tmp_path)]) == 2
    err = capsys.readouterr().err
    assert err.startswith(f"event-exporter export: argument --to: '{to}': "), err
    assert why in err
    assert not dead.exists()


@pytest.mark.parametrize(
    ("source", "destination"),
    [
        ('type = "file"\npath = "{dir}/events.ndjson"', "file:{dir}/events.ndjson"),
        ('type = "file"\npath = "{dir}/link"', "file:{dir}/events.ndjson"),
        ('type = "unix"\npath = "{dir}/s.sock"', "unix:{dir}/s.sock"),
    ],
)
def test_a_source_reading_what_an_exporter_writes_is_refused(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], source: str, destination: str
) -> None:
    """Regression: a file source following its own exporter's file looped forever, and
    check passed it."""
    (tmp_path / "events.ndjson").touch()
    (tmp_path / "link").symlink_to(tmp_path / "events.ndjson")
    path = tmp_path / "c.toml"
    path.write_text(
        f'[exporter.out]\ndestination = "{destination.format(dir=tmp_path)}"\n'
        '[metric.all]\nfilter = "event=*"\nexporter = "out"\n'
        f"[source.in]\n{source.format(dir=tmp_path)}\n"
    )
    for command in ("check", "run"):
        assert main([command, str(path)]) == 2, command
        assert f"{path}:8: source.in.path: " in capsys.readouterr().err, (
            f"{command}: the loop is not refused at its key"
        )
    main(["check", str(path)])
    assert "is where exporter.out writes: every event would come back" in (capsys.readouterr().err)
