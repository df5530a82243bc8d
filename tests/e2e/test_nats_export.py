"""``export --to nats://...`` against a real three-node JetStream cluster: the stream's
leader killed (SIGKILL by PID) while 100,000 events go out, then started again; the
stream ends with every event exactly once (by message id) and ``export`` exits 0."""

from __future__ import annotations

import subprocess
import sys
import time
from pathlib import Path

import anyio

from drivers.nats import message_id
from tests.support import REPO
from tests.support.config import numbered_lines
from tests.support.nats_cluster import NatsCluster, read_stream
from tests.support.processes import plain_export, wait_until

EVENTS = 100_000


def test_every_event_once_in_the_stream_though_its_leader_was_killed_mid_stream(
    tmp_path: Path, nats_cluster: NatsCluster
) -> None:
    stream = "EXPORT_KILL"
    lines = numbered_lines(range(EVENTS), digits=7).splitlines()
    source = tmp_path / "in.ndjson"
    source.write_bytes(b"\n".join(lines) + b"\n")
    command = [
        sys.executable,
        "-m",
        "exporter",
        "export",
        "--to",
        nats_cluster.servers,
        "--nats-subject",
        "kill.{hostname}.{event}",
        "--nats-stream",
        stream,
        "--nats-create-stream",
        "--nats-replicas",
        "3",
        "--nats-ack-timeout",
        "2",
        "--retry-max-delay",
        "0.5",
        "--dead-letter",
        str(tmp_path / "dead.ndjson"),
        str(source),
    ]
    proc = subprocess.Popen(command, cwd=REPO, stderr=subprocess.PIPE)
    started = time.monotonic()
    try:
        assert wait_until(
            lambda: nats_cluster.stream_count(stream) >= 20_000, timeout=60, step=0.05
        )
        leader = nats_cluster.stream_leader(stream)
        assert leader is not None
        at_kill = nats_cluster.stream_count(stream)
        nats_cluster.kill(leader)
        killed = time.monotonic()
        # the stream goes on without it: a new leader, the client on another node
        assert wait_until(
            lambda: (
                nats_cluster.stream_count(stream) >= at_kill + 10_000 or proc.poll() is not None
            ),
            timeout=60,
        )
        went_on = time.monotonic()
        nats_cluster.restart(leader)
        restarted = time.monotonic()
        _, stderr = proc.communicate(timeout=120)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait(10)
    print(
        f"kill at {killed - started:.1f} s ({at_kill} stored), went on at "
        f"{went_on - started:.1f}, restarted {restarted - started:.1f}, "
        f"done {time.monotonic() - started:.1f}"
    )
    assert proc.returncode == 0, stderr.decode(errors="replace")
    assert at_kill < EVENTS  # killed mid-stream, not after
    stored = anyio.run(read_stream, nats_cluster.urls, stream)
    ids = [message.msg_id for message in stored]
    assert len(ids) == len(set(ids)) == EVENTS
    assert ids == [message_id("export", message.data) for message in stored]
    printed = plain_export(tmp_path, source, []).splitlines()
    assert sorted(message.data for message in stored) == sorted(printed)
    assert {message.subject for message in stored} == {"kill._.e"}
    assert b"dead-lettered 0" in stderr
