#!/usr/bin/env python3
"""The daemon's memory against a receiver that stops reading: bounded by the queue.

A daemon (``event-exporter run``) follows a file of ``--events`` Dovecot json events (a
``file`` source) and posts them to an http exporter whose receiver accepts connections
and never reads a byte (a child process on 127.0.0.1, stopped by its PID). The exporter's
queue is bounded (``--queue-max-events``, ``--queue-max-bytes``, overflow ``block``), so
once it is full the source must stop reading: the daemon's RSS is sampled from
/proc/PID/status every second for ``--seconds`` and must stay flat. Prints the samples,
the input size and the queue bound beside them; exits 1 if the RSS of the second half
grew by more than ``--tolerance`` MiB over its first sample, or came near the input size.
No timing is asserted: only memory.
"""

from __future__ import annotations

import argparse
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
sys.path.insert(0, str(Path(__file__).resolve().parent))

from bench_export import make_events, write_input
from bench_http import free_port, wait_listening
from bench_peers import ROOT, process

# Accepts every connection and never reads from it; ends by itself after argv[2] seconds.
DEAF = r"""
import socket, sys, time
server = socket.create_server(("127.0.0.1", int(sys.argv[1])))
server.settimeout(0.5)
held = []
deadline = time.monotonic() + float(sys.argv[2])
while time.monotonic() < deadline and len(held) < 100:
    try:
        conn, _ = server.accept()
    except TimeoutError:
        continue
    conn.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
    held.append(conn)
"""

CONFIG = """
[global]
dead_letter = "{tmp}/dead.ndjson"
summary_interval = 0

[source.in]
type = "file"
path = "{input}"

[exporter.out]
destination = "http://127.0.0.1:{port}/ingest"
queue_max_events = {max_events}
queue_max_bytes = {max_bytes}
overflow = "block"
batch_max_events = 1000

[metric.all]
filter = "event=*"
exporter = "out"
"""


def rss_mib(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    raise RuntimeError("no VmRSS")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--events", type=int, default=300_000)
    parser.add_argument("--seconds", type=int, default=30)
    parser.add_argument("--queue-max-events", type=int, default=20_000)
    parser.add_argument("--queue-max-bytes", type=int, default=16 << 20)
    parser.add_argument("--tolerance", type=float, default=8.0, help="MiB")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="bench-memory-") as name:
        tmp = Path(name)
        source = tmp / "events.ndjson"
        write_input(make_events(args.events, 1), source)
        size_mib = source.stat().st_size / (1 << 20)
        port = free_port()
        config = tmp / "daemon.toml"
        config.write_text(
            CONFIG.format(
                tmp=tmp,
                input=source,
                port=port,
                max_events=args.queue_max_events,
                max_bytes=args.queue_max_bytes,
            )
        )
        deaf = [sys.executable, "-c", DEAF, str(port), str(args.seconds + 30)]
        with process(deaf) as receiver:
            wait_listening(receiver, port, tmp)
            command = [sys.executable, "-m", "exporter", "run", str(config)]
            with process(command, stderr=subprocess.DEVNULL, cwd=ROOT) as daemon:
                samples = []
                for _ in range(args.seconds):
                    time.sleep(1.0)
                    if daemon.poll() is not None:
                        print(f"the daemon exited with {daemon.returncode}")
                        return 1
                    samples.append(rss_mib(daemon.pid))
    print(
        f"input {args.events} events ({size_mib:.0f} MiB); queue bound "
        f"{args.queue_max_events} events / {args.queue_max_bytes / (1 << 20):.0f} MiB, block; "
        "receiver never reads"
    )
    print("RSS MiB, one sample a second: " + " ".join(f"{s:.0f}" for s in samples))
    second_half = samples[len(samples) // 2 :]
    growth = max(second_half) - second_half[0]
    print(
        f"first {samples[0]:.0f}, max {max(samples):.0f}; second half grew {growth:.1f} MiB "
        f"(tolerance {args.tolerance:.0f})"
    )
    bounded = growth <= args.tolerance and max(samples) < size_mib
    print("bounded: yes" if bounded else "bounded: NO")
    return 0 if bounded else 1


if __name__ == "__main__":
    sys.exit(main())
