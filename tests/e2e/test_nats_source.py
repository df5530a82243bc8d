"""``run`` daemons consuming a real three-node JetStream cluster (``type = "nats"``): two on
one durable consumer share the work and, when one is killed with SIGKILL, the other
delivers what it had taken and not delivered (after ``ack_wait``): nothing is lost, and
the events written twice are only redeliveries of what the killed one had written but not
acked. Messages that are not events are dead-lettered and terminated."""

from __future__ import annotations

import os
import signal
from collections import Counter
from pathlib import Path

import anyio
import orjson

from tests.support.config import numbered_lines, write_config
from tests.support.nats_cluster import NatsCluster, add_stream, consumer_state, publish_lines
from tests.support.processes import dead_letter_events, exporter_child, wait_until

READY = b"ready: 1 source running"


def _config(tmp: Path, name: str, cluster: NatsCluster, stream: str, consumer: str) -> Path:
    return write_config(
        tmp / f"{name}.toml",
        settings={
            "dead_letter": tmp / f"dead-{name}.ndjson",
            "metrics_listen": "",
            "shutdown_timeout": 5.0,
        },
        sources={
            "fleet": {
                "type": "nats",
                "servers": cluster.servers,
                "stream": stream,
                "consumer": consumer,
                "ack_wait": 2.0,
                "max_ack_pending": 2000,
                "fetch": 200,
            }
        },
        exporters={"out": {"destination": f"file:{tmp / f'{name}.ndjson'}", "batch_max_age": 0.2}},
        metrics={"all": {"filter": "event=*", "exporter": "out"}},
    )


def _numbers(path: Path) -> list[int]:
    if not path.exists():
        return []
    return [int(orjson.loads(line)["fields"]["n"]) for line in path.read_bytes().splitlines()]


def _state(cluster: NatsCluster, stream: str, consumer: str) -> dict[str, int]:
    return anyio.run(consumer_state, cluster.urls, stream, consumer)


def test_bad_messages_are_dead_lettered_terminated_and_the_consumer_goes_on(
    tmp_path: Path, nats_cluster: NatsCluster
) -> None:
    stream, consumer = "BAD", "one"
    anyio.run(add_stream, nats_cluster.urls, stream, ["bad.>"])
    good = numbered_lines(range(100)).splitlines()
    bad = [b"not json at all", b'{"event":"e","fields":{"n":true}}', b'{"user":"x"}', b"[1,2]"]
    lines = good[:50] + bad + good[50:]
    anyio.run(publish_lines, nats_cluster.servers, stream, "bad.x", lines)
    with exporter_child("run", str(_config(tmp_path, "a", nats_cluster, stream, consumer))) as a:
        assert wait_until(lambda: READY in a.stderr, timeout=15), a.stderr.decode()
        assert wait_until(lambda: len(_numbers(tmp_path / "a.ndjson")) >= 100, timeout=15)
        assert wait_until(
            lambda: _state(nats_cluster, stream, consumer)["num_ack_pending"] == 0, timeout=15
        )
        a.terminate()
        assert a.wait(timeout=15) == 0, a.stderr.decode()
    assert sorted(_numbers(tmp_path / "a.ndjson")) == list(range(100))
    events, records = dead_letter_events(tmp_path / "dead-a.ndjson")
    assert events == bad
    assert all(str(record["reason"]).startswith("not an event: ") for record in records)
    assert all("stream BAD message" in str(record["destination"]) for record in records)
    assert b"rejected stream BAD message 51 (bad.x): not an event" not in a.stderr  # reasons:
    assert b"rejected stream BAD message 51 (bad.x): column 1: unknown item" in a.stderr
    state = _state(nats_cluster, stream, consumer)
    assert state == {"num_ack_pending": 0, "num_pending": 0, "num_redelivered": 0}


def test_two_daemons_share_a_consumer_and_a_killed_one_loses_nothing(
    tmp_path: Path, nats_cluster: NatsCluster
) -> None:
    stream, consumer = "POOL", "pool"
    total = 6000
    anyio.run(add_stream, nats_cluster.urls, stream, ["pool.>"])
    lines = numbered_lines(range(total)).splitlines()
    a_config = _config(tmp_path, "a", nats_cluster, stream, consumer)
    b_config = _config(tmp_path, "b", nats_cluster, stream, consumer)
    with exporter_child("run", str(a_config)) as a:
        assert wait_until(lambda: READY in a.stderr, timeout=15), a.stderr.decode()
        anyio.run(publish_lines, nats_cluster.servers, stream, "pool.x", lines[: total // 2])
        assert wait_until(lambda: len(_numbers(tmp_path / "a.ndjson")) >= 200, timeout=15)
        os.kill(a.pid, signal.SIGKILL)
        a.wait(timeout=10)
    written_by_a = set(_numbers(tmp_path / "a.ndjson"))
    # what a had taken and not acked: delivered or not, it is the others' after ack_wait
    taken_by_a = _state(nats_cluster, stream, consumer)["num_ack_pending"]
    assert taken_by_a > 0
    with exporter_child("run", str(a_config)) as a, exporter_child("run", str(b_config)) as b:
        assert wait_until(lambda: READY in a.stderr and READY in b.stderr, timeout=15)
        anyio.run(publish_lines, nats_cluster.servers, stream, "pool.x", lines[total // 2 :])

        def written() -> int:
            return len(set(_numbers(tmp_path / "a.ndjson")) | set(_numbers(tmp_path / "b.ndjson")))

        assert wait_until(lambda: written() >= total, timeout=30)
        assert wait_until(
            lambda: _state(nats_cluster, stream, consumer)["num_ack_pending"] == 0, timeout=15
        )
        for child in (a, b):
            child.terminate()
            assert child.wait(timeout=15) == 0, child.stderr.decode()
    a_numbers, b_numbers = _numbers(tmp_path / "a.ndjson"), _numbers(tmp_path / "b.ndjson")
    copies = Counter(a_numbers + b_numbers)
    assert set(copies) == set(range(total))  # nothing lost
    twice = {n for n, count in copies.items() if count > 1}
    print(
        f"a wrote {len(written_by_a)} before SIGKILL, had {taken_by_a} taken and not acked; "
        f"written twice: {len(twice)}"
    )
    assert twice <= written_by_a  # only redeliveries of what a wrote and had not acked
    assert len(twice) <= taken_by_a
    assert max(copies.values()) <= 2
    assert b_numbers
    assert len(a_numbers) > len(written_by_a)  # both took part, a after its restart
    assert _state(nats_cluster, stream, consumer)["num_pending"] == 0
