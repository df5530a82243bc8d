#!/usr/bin/env python3
"""Benchmark the delivery engine to a file and to a unix socket, in one run.

Each figure is events per second from the first event handed over to the last one
written, best of ``--repeat``; read the ratios, not the absolute figures. This VM's
speed changes by up to 2x from one second to the next (the same loop, the same process),
so the runs are short, interleaved and many: the best of each is its speed when the
machine lets it run.

* engine file / unix: Event -> json -> exporter queue -> batches of 1,000 -> driver;
* floor: the same events as plain dicts (timestamps already text), ``orjson.dumps``
  each, 1,000 joined, one ``os.write`` / ``socket.sendall``;
* structlog (orjson renderer, ISO timestamper, BytesLogger to a file) and stdlib logging
  with python-json-logger to a FileHandler, writing the same events.

The unix reader is a separate process that reads and discards; it is stopped by PID.
Goals (issue 3): file and unix >= 0.35 of their floor; file >= 5x structlog and >= 15x
stdlib logging. The baselines come with ``pip install -e '.[test]'``.
"""

from __future__ import annotations

import argparse
import logging
import os
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import anyio
import orjson

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
sys.path.insert(0, str(Path(__file__).resolve().parent))

from bench_export import make_events

from drivers.base import Driver
from drivers.file import FileDriver
from drivers.unix import UnixDriver
from exporter.cli.malloc import tune_malloc
from exporter.delivery.exporter import DeliverySettings, Exporter
from exporter.event import Event, Timestamp
from exporter.formats import FormatSpec, make_formatter

READER = """
import os, socket, sys
path = sys.argv[1]
server = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
server.bind(path)
server.listen(8)
print("ready", flush=True)
while True:
    conn, _ = server.accept()
    while conn.recv(1 << 20):
        pass
    conn.close()
"""


def as_dicts(events: list[Event]) -> list[dict[str, object]]:
    """The same events as a plain dict each, timestamps already text (the floor's input)."""
    fmt_time = make_formatter(FormatSpec(include=frozenset({"timestamps"})))
    out = []
    for e in events:
        times = orjson.loads(fmt_time(e))
        fields = {
            k: (
                orjson.loads(fmt_time(Event(start_ns=v.ns)))["start_time"]
                if type(v) is Timestamp
                else v
            )
            for k, v in e.fields.items()
        }
        out.append(
            {
                "event": e.name,
                "hostname": e.hostname,
                **times,
                "categories": e.categories,
                "fields": fields,
            }
        )
    return out


def floor(dicts: list[dict[str, object]], write: Callable[[bytearray], None]) -> float:
    dumps, nl = orjson.dumps, orjson.OPT_APPEND_NEWLINE
    start = time.perf_counter()
    buf = bytearray()
    for i, d in enumerate(dicts, 1):
        buf += dumps(d, option=nl)
        if i % 1000 == 0:
            write(buf)
            buf = bytearray()
    if buf:
        write(buf)
    return time.perf_counter() - start


def engine(events: list[Event], driver: Driver, batch_max_events: int = 1000) -> float:
    """Seconds from the first event offered to the last one delivered (json, 1 exporter)."""
    fmt = make_formatter(FormatSpec(), newline=True)
    settings = DeliverySettings(batch_max_events=batch_max_events, batch_max_age=0.05)
    exporter = Exporter("bench", driver, settings, None)

    async def run() -> float:
        async with anyio.create_task_group() as tasks:
            tasks.start_soon(exporter.run)
            start = time.perf_counter()
            offer = exporter.offer
            for i, event in enumerate(events, 1):
                line = fmt(event)
                if not offer(line):
                    await exporter.put(line)
                if i % 1000 == 0:  # a real source yields per read (sources.lines.read_chunks)
                    await anyio.lowlevel.checkpoint()
            exporter.queue.close()
            await exporter.finished.wait()
        elapsed = time.perf_counter() - start
        await driver.aclose()
        return elapsed

    elapsed = anyio.run(run)
    assert exporter.stats.exported == len(events), exporter.stats.summary()
    return elapsed


def structlog_run(events: list[Event], path: Path) -> float:
    import structlog

    with path.open("wb") as f:
        structlog.configure(
            processors=[
                structlog.processors.add_log_level,
                structlog.processors.TimeStamper(fmt="iso", utc=True),
                structlog.processors.JSONRenderer(serializer=orjson.dumps),
            ],
            logger_factory=structlog.BytesLoggerFactory(f),
            cache_logger_on_first_use=True,
        )
        log = structlog.get_logger()
        start = time.perf_counter()
        for e in events:
            log.info(e.name, hostname=e.hostname, categories=e.categories, **_plain(e))
        elapsed = time.perf_counter() - start
    structlog.reset_defaults()
    return elapsed


def stdlib_run(events: list[Event], path: Path) -> float:
    from pythonjsonlogger.json import JsonFormatter

    handler = logging.FileHandler(path)
    handler.setFormatter(JsonFormatter("%(asctime)s %(levelname)s %(message)s"))
    log = logging.getLogger("bench")
    log.handlers = [handler]
    log.propagate = False
    log.setLevel(logging.INFO)
    start = time.perf_counter()
    for e in events:
        log.info(e.name, extra={"hostname_": e.hostname, "categories": e.categories, **_plain(e)})
    handler.flush()
    elapsed = time.perf_counter() - start
    handler.close()
    return elapsed


def _plain(e: Event) -> dict[str, object]:
    return {k: (v.ns if type(v) is Timestamp else v) for k, v in e.fields.items()}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--events", type=int, default=100_000)
    parser.add_argument("--baseline-events", type=int, default=30_000)
    parser.add_argument("--repeat", type=int, default=9)
    args = parser.parse_args()
    tune_malloc()
    n = args.events
    events = make_events(n, 1)
    dicts = as_dicts(events)
    tmp = Path(tempfile.mkdtemp(prefix="bench-delivery-"))
    sock_path = str(tmp / "reader.sock")
    reader = subprocess.Popen(
        [sys.executable, "-c", READER, sock_path], stdout=subprocess.PIPE, text=True
    )
    try:
        assert reader.stdout is not None
        assert reader.stdout.readline().strip() == "ready"
        best: dict[str, float] = {}

        def record(name: str, seconds: float, count: int) -> None:
            best[name] = max(best.get(name, 0.0), count / seconds)

        for _ in range(args.repeat):
            path = tmp / "floor.out"
            fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_APPEND, 0o600)

            def write_file(data: bytearray, fd: int = fd) -> None:
                os.write(fd, data)

            record("floor file", floor(dicts, write_file), n)
            os.close(fd)
            (tmp / "engine.out").unlink(missing_ok=True)
            record("engine file", engine(events, FileDriver(str(tmp / "engine.out"))), n)
            client = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
            client.connect(sock_path)
            record("floor unix", floor(dicts, client.sendall), n)
            client.close()
            record("engine unix", engine(events, UnixDriver(sock_path)), n)
            few = events[: args.baseline_events]
            record("structlog file", structlog_run(few, tmp / "structlog.out"), len(few))
            record("stdlib logging+json file", stdlib_run(few, tmp / "stdlib.out"), len(few))
    finally:
        reader.terminate()
        reader.wait(timeout=10)
    print(f"{n} events ({args.baseline_events} for the logging baselines), best of {args.repeat}")
    for name, rate in best.items():
        print(f"  {name:28s} {rate:>12,.0f} events/s")
    print("ratios (same run):")
    for name, value, goal in [
        ("engine file / floor file", best["engine file"] / best["floor file"], ">= 0.35"),
        ("engine unix / floor unix", best["engine unix"] / best["floor unix"], ">= 0.35"),
        ("engine file / structlog", best["engine file"] / best["structlog file"], ">= 5"),
        (
            "engine file / stdlib logging",
            best["engine file"] / best["stdlib logging+json file"],
            ">= 15",
        ),
    ]:
        print(f"  {name:32s} {value:6.2f}   goal {goal}")


if __name__ == "__main__":
    main()
