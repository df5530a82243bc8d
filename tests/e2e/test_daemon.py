"""``event-exporter run`` as a user runs it: a child process with an http source, a
metric and a file exporter; events posted over HTTP; SIGTERM ends it with a summary."""

from __future__ import annotations

import os
import re
import signal
import socket
import subprocess
import sys
from collections.abc import Mapping
from pathlib import Path

import httpx
import pytest

from exporter.cli import main
from tests.support import REPO
from tests.support.config import Block, merged, write_config
from tests.support.drivers import socket_dir
from tests.support.processes import (
    Listener,
    exporter_child,
    plain_export,
    settled,
    wait_until,
)
from tests.support.samples import EVENTS_FILE

FILTER = "event=imap_command_finished"
CAPTURE = len(EVENTS_FILE.read_bytes().splitlines())


HTTP_SOURCE = {"type": "http", "listen": "127.0.0.1:0"}


def _config(
    tmp_path: Path,
    settings: Block | None = None,
    sources: Mapping[str, Block] | None = None,
    event_filter: str = FILTER,
) -> Path:
    """An http source into a file exporter (``events.ndjson``); ``settings`` over the
    usual [global], ``sources`` instead of the http one."""
    return write_config(
        tmp_path / "exporter.toml",
        settings=merged(
            {"dead_letter": tmp_path / "dead.ndjson", "shutdown_timeout": 5.0}, settings
        ),
        sources=sources or {"listener": HTTP_SOURCE},
        exporters={
            "archive": {"destination": f"file:{tmp_path / 'events.ndjson'}", "batch_max_age": 0.05}
        },
        metrics={"commands": {"filter": event_filter, "exporter": "archive"}},
    )


def test_run_receives_over_http_and_writes_what_export_would(tmp_path: Path) -> None:
    config = _config(tmp_path)
    out = tmp_path / "events.ndjson"
    with exporter_child("run", str(config)) as child:
        listening = re.compile(rb"listening on http://127\.0\.0\.1:(\d+)")
        assert wait_until(lambda: listening.search(bytes(child.stderr)) is not None, timeout=10)
        found = listening.search(bytes(child.stderr))
        assert found is not None
        url = f"http://127.0.0.1:{int(found.group(1))}/events"
        answer = httpx.post(url, content=EVENTS_FILE.read_bytes(), timeout=10)
        assert answer.status_code == 204
        expected = plain_export(tmp_path, EVENTS_FILE, ["--filter", FILTER])
        assert wait_until(lambda: out.exists() and out.read_bytes() == expected, timeout=10)
        child.proc.send_signal(signal.SIGTERM)
        assert child.wait(timeout=10) == 0
    stderr = bytes(child.stderr).decode()
    matched = expected.count(b"\n")
    assert f"metric commands: matched {matched}" in stderr
    assert f"received {matched}, exported {matched}, retried 0, dropped 0" in stderr
    assert not (tmp_path / "dead.ndjson").exists()


def test_run_refuses_a_config_without_sources(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    config = tmp_path / "c.toml"
    config.write_text('[exporter.a]\ndestination = "drop"\n')
    assert main(["run", str(config)]) == 2
    assert "no [source.NAME] block" in capsys.readouterr().err


def test_run_with_stdin_ends_when_its_input_ends_and_exits_1_for_rejected_lines(
    tmp_path: Path,
) -> None:
    """As ``export`` does: the events delivered, the bad line reported, exit 1 (0 without
    it: test_run_with_stdin_from_dev_null_ends_cleanly)."""
    config = _config(tmp_path, sources={"listener": {"type": "stdin"}})
    out = tmp_path / "events.ndjson"
    with exporter_child("run", str(config)) as child:
        os.write(child.stdin_w, EVENTS_FILE.read_bytes() + b"not an event\n")
        child.close_stdin()
        assert child.wait(timeout=10) == 1
    assert out.read_bytes() == plain_export(tmp_path, EVENTS_FILE, ["--filter", FILTER])
    stderr = bytes(child.stderr).decode()
    assert " warning source=listener: rejected line 37: " in stderr
    assert " warning source=listener: 1 of 37 lines rejected (each reported above): exit " in (
        stderr
    )


def test_run_with_stdin_skips_a_line_over_its_max_line_bytes(tmp_path: Path) -> None:
    config = _config(tmp_path, sources={"listener": {"type": "stdin", "max_line_bytes": 1000}})
    out = tmp_path / "events.ndjson"
    events = EVENTS_FILE.read_bytes().splitlines(keepends=True)
    with exporter_child("run", str(config)) as child:
        os.write(child.stdin_w, b"".join(events[:3]) + b"x" * 70_000 + b"\n")
        os.write(child.stdin_w, b"".join(events[3:]))
        child.close_stdin()
        assert child.wait(timeout=10) == 1  # a line rejected
    assert out.read_bytes() == plain_export(tmp_path, EVENTS_FILE, ["--filter", FILTER])
    stderr = bytes(child.stderr).decode()
    assert "source=listener: rejected line 4: 70000 bytes, longer than 1000" in stderr


def test_metrics_endpoint_and_periodic_summaries(tmp_path: Path) -> None:
    config = _config(tmp_path, {"metrics_listen": "127.0.0.1:0", "summary_interval": 0.05})
    out = tmp_path / "events.ndjson"
    with exporter_child("run", str(config)) as child:
        ports = re.compile(
            rb"listening on http://127\.0\.0\.1:(\d+)|metrics on http://127\.0\.0\.1:(\d+)"
        )

        def both_ports() -> tuple[int, int] | None:
            found = ports.findall(bytes(child.stderr))
            source = next((int(a) for a, _ in found if a), None)
            scrape = next((int(b) for _, b in found if b), None)
            return None if source is None or scrape is None else (source, scrape)

        assert wait_until(lambda: both_ports() is not None, timeout=10)
        listen, scrape = both_ports() or (0, 0)
        body = EVENTS_FILE.read_bytes() + b"garbage\n"
        assert httpx.post(f"http://127.0.0.1:{listen}/events", content=body).status_code == 200
        assert httpx.post(f"http://127.0.0.1:{listen}/nowhere").status_code == 404
        matched = plain_export(tmp_path, EVENTS_FILE, ["--filter", FILTER]).count(b"\n")
        assert wait_until(
            lambda: out.exists() and out.read_bytes().count(b"\n") == matched, timeout=10
        )
        answer = httpx.get(f"http://127.0.0.1:{scrape}/metrics", timeout=10)
        summaries = re.compile(rb"\.\d{3}Z info: submitted \d+")  # a log line, with its time
        assert wait_until(lambda: len(summaries.findall(bytes(child.stderr))) >= 2, timeout=10)
        child.proc.send_signal(signal.SIGTERM)
        assert child.wait(timeout=10) == 0
    assert answer.status_code == 200
    assert answer.headers["content-type"].startswith("text/plain; version=0.0.4")
    text = answer.text
    expected_lines = [
        f"event_exporter_events_submitted_total {CAPTURE}",
        f'event_exporter_metric_matched_total{{metric="commands"}} {matched}',
        f'event_exporter_exporter_exported_total{{exporter="archive"}} {matched}',
        'event_exporter_exporter_queue_events{exporter="archive"} 0',
        'event_exporter_exporter_retry_pause_seconds{exporter="archive"} 0.0',
        f'event_exporter_source_events_total{{source="listener"}} {CAPTURE}',
        'event_exporter_source_rejected_lines_total{source="listener"} 1',
        'event_exporter_source_refused_total{source="listener",status="404"} 1',
        "# TYPE event_exporter_exporter_queue_bytes gauge",
    ]
    for line in expected_lines:
        assert line in text.splitlines(), line


def test_the_readme_main_job_receives_the_example_events(tmp_path: Path) -> None:
    """config.example.toml as the README runs it (on a free port instead of 8080), and the
    README's curl: the capture's imap_command_finished events land in ./events.ndjson."""
    example = (REPO / "config.example.toml").read_text()
    assert 'listen = "127.0.0.1:8080"' in example
    (tmp_path / "config.toml").write_text(example.replace("127.0.0.1:8080", "127.0.0.1:0"))
    with exporter_child("run", "config.toml", cwd=tmp_path) as child:
        listening = re.compile(rb"listening on http://127\.0\.0\.1:(\d+)")
        assert wait_until(lambda: listening.search(bytes(child.stderr)) is not None, timeout=10)
        found = listening.search(bytes(child.stderr))
        assert found is not None
        events = (REPO / "examples" / "dovecot-events.ndjson").read_bytes()
        url = f"http://127.0.0.1:{int(found.group(1))}/events"
        assert httpx.post(url, content=events, timeout=10).status_code == 204
        expected = plain_export(tmp_path, EVENTS_FILE, ["--filter", FILTER])
        out = tmp_path / "events.ndjson"
        assert wait_until(lambda: out.exists() and out.read_bytes() == expected, timeout=10)
        child.proc.send_signal(signal.SIGTERM)
        assert child.wait(timeout=15) == 0


def test_run_sigterm_with_a_stalled_destination_loses_no_line_taken_from_stdin(
    tmp_path: Path,
) -> None:
    """stdin into a metric whose exporter's unix listener never reads: the queue fills,
    the source waits (block), stdin backs up. SIGTERM: every line the daemon took from
    stdin is delivered, dead-lettered or counted as dropped."""
    with socket_dir() as directory:
        sock = os.path.join(directory, "stalled.sock")
        config = write_config(
            tmp_path / "c.toml",
            settings={
                "dead_letter": tmp_path / "dead.ndjson",
                "shutdown_timeout": 0.1,
                "summary_interval": 0,
            },
            sources={"in": {"type": "stdin"}},
            exporters={
                "out": {
                    "destination": f"unix:{sock}",
                    "queue_max_events": 1000,
                    "batch_max_events": 100,
                }
            },
            metrics={"all": {"filter": "event=e", "exporter": "out"}},
        )
        listener = Listener(sock, read_limit=0)
        try:
            with exporter_child("run", str(config)) as child:
                feeder = child.feed(200_000)
                assert listener.connected.wait(10)
                assert settled(child, feeder)
                taken = child.consumed_lines(feeder)
                child.terminate()
                assert child.wait(timeout=10) == 3
            listener.finish(timeout=10)
        finally:
            listener.close()
    stderr = bytes(child.stderr).decode()
    found = re.search(
        r"submitted (\d+), .*received (\d+), exported (\d+), retried \d+, dropped (\d+)"
        r".*dead-lettered (\d+)",
        stderr,
    )
    assert found, stderr
    submitted, received, exported, dropped, dead = map(int, found.groups())
    assert submitted == received == taken > 1000
    assert exported + dropped + dead == taken


def test_run_with_unix_and_file_sources(tmp_path: Path) -> None:
    """Dovecot 2.4's unix driver writes lines to our socket; a file is followed."""
    lines = EVENTS_FILE.read_bytes().splitlines(keepends=True)
    followed = tmp_path / "dovecot.ndjson"
    followed.write_bytes(b"".join(lines[:10]))
    with socket_dir() as directory:
        sock = os.path.join(directory, "in.sock")
        followed_source = {
            "type": "file",
            "path": followed,
            "state_file": tmp_path / "state",
            "poll_interval": 0.01,
        }
        config = _config(
            tmp_path,
            sources={"listener": {"type": "unix", "path": sock}, "followed": followed_source},
            event_filter="event=*",
        )
        out = tmp_path / "events.ndjson"
        with exporter_child("run", str(config)) as child:
            assert wait_until(lambda: os.path.exists(sock), timeout=10)
            with socket.socket(socket.AF_UNIX) as client:
                client.connect(sock)
                client.sendall(b"".join(lines[10:20]))
            with followed.open("ab") as appending:
                appending.write(b"".join(lines[20:]))
            expected = len(lines)
            assert wait_until(
                lambda: out.exists() and out.read_bytes().count(b"\n") == expected, timeout=10
            )
            child.proc.send_signal(signal.SIGTERM)
            assert child.wait(timeout=10) == 0
    everything = plain_export(tmp_path, EVENTS_FILE, [])
    assert sorted(out.read_bytes().splitlines()) == sorted(everything.splitlines())


@pytest.mark.parametrize("taken_by", ["source", "metrics"])
def test_run_says_which_listener_cannot_start_and_why(tmp_path: Path, taken_by: str) -> None:
    """The source or listener named, with its address: not a bare 'cannot start'."""
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        if taken_by == "source":
            listener = {"type": "http", "listen": f"127.0.0.1:{port}"}
            config = _config(tmp_path, sources={"listener": listener})
        else:
            config = _config(tmp_path, settings={"metrics_listen": f"127.0.0.1:{port}"})
        with exporter_child("run", str(config)) as child:
            assert child.wait(timeout=10) == 2
    stderr = bytes(child.stderr).decode()
    context = "source=listener" if taken_by == "source" else "listener=metrics"
    said = f"Z error {context}: cannot listen on 127.0.0.1:{port}: address already in use\n"
    assert said in stderr, stderr
    assert "Traceback" not in stderr


def test_run_refuses_a_dead_letter_path_it_could_not_write(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    config = _config(tmp_path, {"dead_letter": "/nonexistent/d"})
    assert main(["run", str(config)]) == 2
    # said as check says it: at the key's line (the second: [global] is the first), with the path
    assert ":2: global.dead_letter: its directory /nonexistent does not exist" in (
        capsys.readouterr().err
    )


def test_run_with_stdin_from_dev_null_ends_cleanly(tmp_path: Path) -> None:
    config = _config(tmp_path, sources={"listener": {"type": "stdin"}})
    with open(os.devnull, "rb") as null:
        done = subprocess.run(
            [sys.executable, "-m", "exporter", "run", str(config)],
            stdin=null,
            capture_output=True,
            timeout=30,
            check=False,
        )
    assert done.returncode == 0, done.stderr
    assert b"submitted 0" in done.stderr
