#!/usr/bin/env python3
"""Benchmark the daemon end to end beside the ``export`` command, in one run.

* daemon: ``event-exporter run`` in a child process; NDJSON batches of ``--batch`` Dovecot
  json events POSTed to its http source (``/events``, one client, each batch answered
  before the next is sent), filtered by a metric, written by a file exporter; from the
  first POST until the output file holds every matching event;
* export: ``export --filter`` of the same events from a file to a file (the command's own
  loop, in this process).

Both parse, filter and write the same events in the same format; the daemon adds HTTP,
the queue and the file driver. Best of ``--repeat``; read the ratio, not the figures.
"""

from __future__ import annotations

import argparse
import io
import os
import re
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import httpx

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
sys.path.insert(0, str(Path(__file__).resolve().parent))

from bench_export import FILTER, make_events

from exporter.cli.export import export_streams
from exporter.filter import compile_filter
from exporter.formats import FormatSpec, make_formatter

CONFIG = """
[global]
dead_letter = "{tmp}/dead.ndjson"
summary_interval = 0

[source.listener]
type = "http"
listen = "127.0.0.1:0"
max_body_bytes = 67108864

[exporter.out]
destination = "file:{tmp}/daemon.out"
batch_max_age = 0.05
{spool}
[metric.selected]
filter = "{filter}"
exporter = "out"
"""


def daemon_run(
    tmp: Path, batches: list[bytes], expected_bytes: int, spool: Path | None = None
) -> float:
    """Seconds from the first POST until every matching event is in the output file;
    with ``spool``, the exporter queues on that disk spool (normal sync)."""
    out = tmp / "daemon.out"
    out.unlink(missing_ok=True)
    config = tmp / "bench.toml"
    spool_line = "" if spool is None else f'spool = "{spool}"\n'
    config.write_text(CONFIG.format(tmp=tmp, filter=FILTER, spool=spool_line))
    child = subprocess.Popen(
        [sys.executable, "-m", "exporter", "run", str(config)],
        stderr=subprocess.PIPE,
        stdout=subprocess.DEVNULL,
    )
    try:
        assert child.stderr is not None
        said = []
        for _ in range(50):  # the start lines: the source's says where it listens
            said.append(child.stderr.readline().decode())
            found = re.search(r"listening on (http://127\.0\.0\.1:\d+)", said[-1])
            if found is not None or not said[-1]:
                break
        assert found, "".join(said)
        url = found.group(1) + "/events"
        with httpx.Client(timeout=60) as client:
            start = time.perf_counter()
            for body in batches:
                answer = client.post(url, content=body)
                assert answer.status_code == 204, answer.text
            deadline = time.monotonic() + 120
            while not out.exists() or out.stat().st_size < expected_bytes:
                assert time.monotonic() < deadline, "the daemon did not write everything"
                time.sleep(0.001)
            elapsed = time.perf_counter() - start
        assert out.stat().st_size == expected_bytes
        return elapsed
    finally:
        child.terminate()
        child.wait(timeout=30)


def export_run(tmp: Path, lines: bytes) -> tuple[float, int]:
    source = tmp / "in.ndjson"
    source.write_bytes(lines)
    fmt = make_formatter(FormatSpec(), newline=True)
    matches = compile_filter(FILTER).matches
    out = tmp / "export.out"
    with source.open("rb") as stream, out.open("wb") as output:
        start = time.perf_counter()
        export_streams([(str(source), stream)], output, fmt, matches, io.StringIO())
        elapsed = time.perf_counter() - start
    return elapsed, out.stat().st_size


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--events", type=int, default=100_000)
    parser.add_argument("--batch", type=int, default=1000)
    parser.add_argument("--repeat", type=int, default=5)
    args = parser.parse_args()
    fmt = make_formatter(FormatSpec(), newline=True)
    encoded = [fmt(e) for e in make_events(args.events, 1)]
    lines = b"".join(encoded)
    batches = [b"".join(encoded[i : i + args.batch]) for i in range(0, len(encoded), args.batch)]
    tmp = Path(tempfile.mkdtemp(prefix="bench-daemon-"))
    best = {"export": 0.0, "daemon": 0.0}
    for _ in range(args.repeat):
        seconds, size = export_run(tmp, lines)
        best["export"] = max(best["export"], args.events / seconds)
        best["daemon"] = max(best["daemon"], args.events / daemon_run(tmp, batches, size))
    for path in tmp.iterdir():
        os.unlink(path)
    os.rmdir(tmp)
    print(f"{args.events} events ({FILTER}), batches of {args.batch}, best of {args.repeat}")
    print(f"  export (file -> file)            {best['export']:>12,.0f} events/s")
    print(f"  daemon (HTTP -> file exporter)   {best['daemon']:>12,.0f} events/s")
    print(f"  daemon / export                  {best['daemon'] / best['export']:12.2f}")


if __name__ == "__main__":
    main()
