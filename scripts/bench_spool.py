#!/usr/bin/env python3
"""Benchmark the disk spool beside the memory queue, in one run.

Events per second accepted into an exporter and delivered, batches of 1,000, ``normal``
sync (WAL), three ways:

* the daemon: ``event-exporter run`` with an http source (NDJSON bodies of 1,000 events,
  each answered before the next is sent; with a spool, answered once committed) and a
  file exporter, with and without ``spool =`` (as in ``bench_daemon.py``);
* in process, encoding: each Event encoded to json by the producer, as a source does, to
  the drop driver;
* in process, the queue alone: events encoded beforehand, to the drop driver. This
  compares SQLite's write of each event's bytes with appending them to a buffer in
  memory; it is the spool's cost with nothing around it;
* the daemon fed posts that do not divide ``batch_max_events`` (300, 480 lines; 1,000
  for comparison): the spool commits a row per post, and a batch of whole rows that the
  next row would overflow must go at once (issue 14, item 5: it waited its
  ``batch_max_age``, here 0.05 s: 18,000 events/s; with the README's 1 s, 900). The
  spool's last batch (up to 900 events) still waits its age, once per run.

In process, the producer commits every 1,000 events (as the http source does per
request); the consumer reads batches and, for the spool, deletes each once delivered.
Best of ``--repeat``. Goal (issue 6): spool >= 0.5 of the memory queue.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

import anyio

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
sys.path.insert(0, str(Path(__file__).resolve().parent))

from bench_daemon import daemon_run
from bench_export import FILTER, make_events

from drivers.drop import DropDriver
from exporter.cli.malloc import tune_malloc
from exporter.delivery.exporter import DeliverySettings, Exporter
from exporter.event import Event
from exporter.filter import compile_filter
from exporter.formats import FormatSpec, make_formatter


def run(lines: list[bytes], spool: str | None, encode: list[Event] | None = None) -> float:
    settings = DeliverySettings(batch_max_age=0.05, spool=spool, queue_max_events=len(lines))
    driver = DropDriver()
    exporter = Exporter("bench", driver, settings, None)

    async def main() -> float:
        async with anyio.create_task_group() as tasks:
            tasks.start_soon(exporter.run)
            start = time.perf_counter()
            produced: Iterator[bytes] = iter(lines)
            if encode is not None:
                fmt = make_formatter(FormatSpec(), newline=True)
                produced = (fmt(event) for event in encode)
            for i, line in enumerate(produced, 1):
                if not exporter.offer(line):
                    await exporter.put(line)
                if i % 1000 == 0:
                    exporter.queue.commit()
                    await anyio.lowlevel.checkpoint()
            exporter.queue.close()
            await exporter.finished.wait()
        elapsed = time.perf_counter() - start
        await exporter.close_driver()
        return elapsed

    elapsed = anyio.run(main)
    assert driver.events == len(lines), (driver.events, exporter.stats.summary())
    return elapsed


POSTS = (300, 480, 1000)
"""Lines per post of the daemon case where posts do not divide the batch."""


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--events", type=int, default=100_000)
    parser.add_argument("--post-events", type=int, default=30_000, help="per post size")
    parser.add_argument("--repeat", type=int, default=5)
    args = parser.parse_args()
    tune_malloc()
    fmt = make_formatter(FormatSpec(), newline=True)
    events = make_events(args.events, 1)
    lines = [fmt(e) for e in events]
    best: dict[str, float] = {}

    def record(name: str, seconds: float) -> None:
        best[name] = max(best.get(name, 0.0), len(lines) / seconds)

    matches = compile_filter(FILTER).matches
    selected = sum(len(line) for line, event in zip(lines, events, strict=True) if matches(event))
    bodies = [b"".join(lines[i : i + 1000]) for i in range(0, len(lines), 1000)]
    with tempfile.TemporaryDirectory(prefix="bench-spool-") as tmp:
        for attempt in range(args.repeat):
            record("memory, daemon", daemon_run(Path(tmp), bodies, selected))
            spool = Path(tmp, f"d-{attempt}.db")
            record("spool, daemon", daemon_run(Path(tmp), bodies, selected, spool))
            record("memory, encoding events", run(lines, None, events))
            record("spool, encoding events", run(lines, f"{tmp}/b-{attempt}.db", events))
            record("memory, queue alone", run(lines, None))
            record("spool, queue alone", run(lines, f"{tmp}/a-{attempt}.db"))
        posted = lines[: args.post_events]
        posted_bytes = sum(
            len(line) for line, event in zip(posted, events, strict=False) if matches(event)
        )
        for attempt in range(args.repeat):
            for per_post in POSTS:
                posts = [
                    b"".join(posted[i : i + per_post]) for i in range(0, len(posted), per_post)
                ]
                spool = Path(tmp, f"p-{per_post}-{attempt}.db")
                for how, at in (("memory", None), ("spool", spool)):
                    seconds = daemon_run(Path(tmp), posts, posted_bytes, at)
                    name = f"{how}, posts of {per_post}"
                    best[name] = max(best.get(name, 0.0), len(posted) / seconds)
    size = sum(len(line) for line in lines) // len(lines)
    print(f"{len(lines)} events of {size} B, batches of 1000, best of {args.repeat}")
    print(f"(the daemon's rates count the {len(lines)} events POSTed; its metric keeps")
    print(f" {FILTER} and writes those to a file)")
    for name, rate in best.items():
        print(f"  {name:28s} {rate:>12,.0f} events/s")
    print(f"  (posts: {len(posted)} events in all, batch_max_age 0.05 s)")
    for how in ("daemon", "encoding events", "queue alone", *(f"posts of {n}" for n in POSTS)):
        ratio = best[f"spool, {how}"] / best[f"memory, {how}"]
        print(f"  spool / memory, {how:16s} {ratio:6.2f}   goal >= 0.5")


if __name__ == "__main__":
    main()
