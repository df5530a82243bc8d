"""Interop with a real Dovecot: every event Dovecot's ``http-post`` exporter posts to our
``POST /dovecot`` reaches our file exporter byte-identical to the body Dovecot sent.

A throwaway Dovecot (Debian's 2.3.19.1 in CI; tests/support/dovecot/) runs on 127.0.0.1
with its own configuration and directories. Its stats process has four http-post
exporters fed by metrics with the same filter (``event=*``): json (rfc3339 times) and
tab-text (unix times), each posted both to an ``event-exporter run`` daemon (one per
format, writing what it receives to a file with the same format and time settings) and
to a capture receiver that keeps the raw bodies. IMAP logins and commands (imaplib) make
Dovecot emit events. Once ``doveadm stats dump`` says how many events each metric
exported and every side has them, the lines of each file must be, as a multiset, the
bodies the capture received for that format: HTTP arrival order is Dovecot's queue order
(earliest deadline first, not stable), so order is not compared.

The test needs Dovecot installed (``.ci/run`` installs it); without it, it is skipped,
loudly.
"""

from __future__ import annotations

import contextlib
import re
import signal
import time
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from tests.support.config import write_config
from tests.support.dovecot import (
    USERS,
    Binaries,
    Dovecot,
    DovecotSetup,
    drive_imap,
    find_dovecot,
)
from tests.support.http_receiver import Receiver
from tests.support.processes import Child, exporter_child, wait_until

SKIP_REASON = (
    "!!!!! DOVECOT INTEROP TEST NOT RUN: Dovecot is not installed (no `dovecot`/`doveadm` "
    "in PATH or /usr/sbin, /usr/bin). Install Debian's dovecot-core and dovecot-imapd "
    "(`apt-get install -y dovecot-core dovecot-imapd`; .ci/run does it when it can). !!!!!"
)
FILTER = "event=*"
"""Dovecot's metrics and ours: every (named) event."""


@dataclass(frozen=True)
class Format:
    name: str
    """The capture receiver's path and the metric names' suffix."""
    format: str
    time_format: str
    content_type: str
    barrier: tuple[bytes, bytes]
    """Bytes of the last session's mail_user_session_finished event: traffic is over."""


FORMATS = (
    Format(
        "json",
        "json",
        "rfc3339",
        "application/json",
        (b'{"event":"mail_user_session_finished",', b'"user":"%s"' % USERS[1].encode()),
    ),
    Format(
        "tabtext",
        "tab-text",
        "unix",
        "text/plain",
        (b"event:mail_user_session_finished\t", b"\tfield:user=%s\t" % USERS[1].encode()),
    ),
)


@dataclass
class Side:
    """What one format gave."""

    captured: list[bytes]
    """The bodies Dovecot posted to the capture receiver, in order of arrival."""
    content_types: set[str | None]
    ours: bytes
    """Our daemon's file."""
    exported_capture: int | None
    """Dovecot's count of the events its capture metric exported."""
    exported_ours: int | None
    exit_code: int | None
    stderr: str

    def lines(self) -> list[bytes]:
        assert not self.ours or self.ours.endswith(b"\n"), f"file ends {self.ours[-60:]!r}"
        return self.ours.split(b"\n")[:-1]


@dataclass
class Interop:
    version: str
    settled: bool
    dovecot_log: str
    notes: list[str]
    seconds: float
    sides: dict[str, Side] = field(default_factory=dict)


def _daemon_config(tmp: Path, fmt: Format, dovecot_version: str) -> Path:
    """The Dovecot that runs is named in [global]: its series' bytes are written."""
    exporter = {
        "format": fmt.format,
        "time_format": fmt.time_format,
        "time_precision": "us",
        "destination": f"file:{tmp / f'ours-{fmt.name}.txt'}",
        "batch_max_age": 0.05,
    }
    return write_config(
        tmp / f"exporter-{fmt.name}.toml",
        settings={
            "dead_letter": tmp / f"dead-{fmt.name}.ndjson",
            "shutdown_timeout": 5.0,
            "dovecot_version": dovecot_version.split()[0],
        },
        sources={"dovecot": {"type": "http", "listen": "127.0.0.1:0"}},
        exporters={"file": exporter},
        metrics={"everything": {"filter": FILTER, "exporter": "file"}},
    )


def _listening_port(child: Child) -> int:
    listening = re.compile(rb"listening on http://127\.0\.0\.1:(\d+)")
    wait_until(lambda: listening.search(bytes(child.stderr)) is not None, timeout=10)
    found = listening.search(bytes(child.stderr))
    assert found is not None, bytes(child.stderr).decode(errors="replace")
    return int(found.group(1))


def _captured(receiver: Receiver, fmt: Format) -> list[bytes]:
    return [r.body for r in receiver.requests if r.path == f"/{fmt.name}"]


def _file(tmp: Path, fmt: Format) -> bytes:
    path = tmp / f"ours-{fmt.name}.txt"
    return path.read_bytes() if path.exists() else b""


def _barrier_seen(bodies: list[bytes], fmt: Format) -> bool:
    start, user = fmt.barrier
    return any(body.startswith(start) and user in body for body in bodies)


def _run(binaries: Binaries, tmp: Path) -> Interop:
    started = time.monotonic()
    with contextlib.ExitStack() as stack:
        receiver = stack.enter_context(Receiver(path="/json"))
        children: dict[str, Child] = {}
        urls: dict[str, str] = {}
        for fmt in FORMATS:
            children[fmt.name] = stack.enter_context(
                exporter_child("run", str(_daemon_config(tmp, fmt, binaries.version())))
            )
        for fmt in FORMATS:
            urls[fmt.name] = f"http://127.0.0.1:{_listening_port(children[fmt.name])}/dovecot"
        setup = DovecotSetup.create(
            ours_json_url=urls["json"],
            ours_tabtext_url=urls["tabtext"],
            capture_url=f"http://127.0.0.1:{receiver.port}",
            event_filter=FILTER,
        )
        stack.callback(setup.remove)
        dovecot = stack.enter_context(Dovecot.running(binaries, setup))
        assert dovecot.wait_ready(), f"Dovecot did not start:\n{dovecot.output()}"
        dovecot.note_family()
        notes = drive_imap(setup.imap_port)
        dovecot.note_family()

        # The last session's end has been exported, then every side has what Dovecot counts.
        def barrier() -> bool:
            return all(_barrier_seen(_captured(receiver, fmt), fmt) for fmt in FORMATS)

        def all_there() -> bool:
            counts = dovecot.stats_counts()
            return all(
                counts.get(f"capture_{fmt.name}") == len(_captured(receiver, fmt))
                and counts.get(f"ours_{fmt.name}") == _file(tmp, fmt).count(b"\n")
                for fmt in FORMATS
            )

        settled = wait_until(barrier, timeout=15) and wait_until(all_there, timeout=10, step=0.05)
        counts = dovecot.stats_counts()
        dovecot.note_family()
        dovecot.stop()
        dovecot_log = setup.log_text()
        codes: dict[str, int | None] = {}
        for name, child in children.items():
            child.proc.send_signal(signal.SIGTERM)
            codes[name] = child.wait(timeout=10)
        receiver.stop()
        interop = Interop(binaries.version(), settled, dovecot_log, notes, 0.0)
        for fmt in FORMATS:
            requests = [r for r in receiver.requests if r.path == f"/{fmt.name}"]
            interop.sides[fmt.name] = Side(
                captured=[r.body for r in requests],
                content_types={r.header("Content-Type") for r in requests},
                ours=_file(tmp, fmt),
                exported_capture=counts.get(f"capture_{fmt.name}"),
                exported_ours=counts.get(f"ours_{fmt.name}"),
                exit_code=codes[fmt.name],
                stderr=bytes(children[fmt.name].stderr).decode(errors="replace"),
            )
    interop.seconds = time.monotonic() - started
    return interop


@pytest.fixture(scope="module")
def interop(tmp_path_factory: pytest.TempPathFactory) -> Interop:
    binaries = find_dovecot()
    if binaries is None:
        pytest.skip(SKIP_REASON)
    return _run(binaries, tmp_path_factory.mktemp("dovecot-interop"))


def _differences(captured: list[bytes], ours: list[bytes]) -> str:
    """The bodies only Dovecot sent and the lines only we wrote; each of the first is shown
    with the nearest of the second (longest common prefix) and where they part."""
    missing = list((Counter(captured) - Counter(ours)).elements())
    extra = list((Counter(ours) - Counter(captured)).elements())
    out = [f"{len(missing)} bodies Dovecot sent are not in our file, {len(extra)} lines are"]
    for body in missing[:5]:
        out.append(f"  Dovecot: {body!r}")
        if extra:
            near = max(extra, key=lambda line: _common(body, line))
            at = _common(body, near)
            out.append(f"  ours:    {near!r}")
            out.append(f"  byte {at}: Dovecot {body[at : at + 40]!r}, ours {near[at : at + 40]!r}")
    if not missing:
        out.extend(f"  ours only: {line!r}" for line in extra[:5])
    return "\n".join(out)


def _event_name(body: bytes) -> bytes:
    """The event's name: json ``{"event":"NAME",...``, tab-text ``event:NAME\t...``."""
    found = re.match(rb'\{"event":"([a-z_]+)"|event:([a-z_]+)\t', body)
    assert found is not None, body[:80]
    return found.group(1) or found.group(2)


def _common(a: bytes, b: bytes) -> int:
    n = min(len(a), len(b))
    return next((i for i in range(n) if a[i] != b[i]), n)


@pytest.mark.parametrize("fmt", FORMATS, ids=[f.name for f in FORMATS])
def test_every_event_dovecot_posted_reaches_our_file_byte_identical(
    interop: Interop, fmt: Format
) -> None:
    side = interop.sides[fmt.name]
    assert interop.settled, (
        f"Dovecot exported {side.exported_capture} (capture) / {side.exported_ours} (ours) "
        f"{fmt.name} events; the capture got {len(side.captured)}, our file has "
        f"{len(side.lines())} lines\nDovecot log:\n{interop.dovecot_log}\n"
        f"daemon:\n{side.stderr}"
    )
    # What Dovecot sent: every event its metric exported, as its http-post driver does.
    assert side.content_types == {fmt.content_type}
    assert side.exported_capture == side.exported_ours == len(side.captured)
    names = Counter(_event_name(body) for body in side.captured)
    for name in (b"auth_request_finished", b"imap_command_finished", b"mail_user_session_finished"):
        assert names[name] > 0, names
    # What reached our file: the same bytes.
    ours = side.lines()
    assert Counter(ours) == Counter(side.captured), _differences(side.captured, ours)
    assert side.exit_code == 0, side.stderr


def test_dovecot_reported_no_failed_export_and_our_daemons_lost_nothing(
    interop: Interop,
) -> None:
    log = interop.dovecot_log
    troubles = [
        line
        for line in log.splitlines()
        if "Failed to export event" in line
        or re.search(r"\bstats: (Error|Warning):|: (Fatal|Panic):", line)
    ]
    assert not troubles, log
    for name, side in interop.sides.items():
        events = len(side.captured)
        assert side.exit_code == 0, f"{name}: {side.stderr}"
        assert f"received {events}, exported {events}, retried 0, dropped 0" in side.stderr, (
            f"{name}: {side.stderr}"
        )
