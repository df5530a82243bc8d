#!/usr/bin/env python3
"""Benchmark every http body end to end, beside ``ndjson`` in the same run.

For each body of :data:`drivers.bodies.registry.KINDS` (but ``single``, one request per
event, which batches do not measure), as a user runs it::

    event-exporter export --to http://127.0.0.1:PORT/BODY --http-body BODY \\
        --batch-max-events 1000 < events.ndjson

on one file of realistic events (``event-exporter generate --count N --seed 1``), against
a local receiver (a separate process) that reads each request whole and answers what the
body's protocol calls success (:data:`ANSWERS`, by body name; any other body: an empty
200): ``_bulk`` ``{"errors":false,"items":[...]}`` with one item per action line, OTLP an
empty 200 (``{}`` for JSON), Loki 204, HEC ``{"text":"Success","code":0}``. A body added
to the registry is measured without touching this script; give it an answer here if an
empty 200 is not its success. A body's secret settings (a token read from a variable)
get a dummy value from the environment.

The candidates run interleaved (ndjson, then each body, ``--repeat`` times); each figure
is the median of its runs: events / wall time of the whole ``export`` process (its start
included, the same for every body), checked against the summary line (every event
exported). Read the ratio to ndjson, not the absolute figures (the machine is shared).
Goal (issue 16): ``otlp-protobuf`` at least 0.5 of ``ndjson``.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from drivers.bodies.registry import KINDS
from exporter.config.kinds import SecretFrom
from exporter.config.settings import BODY_TABLES

BATCH = 1000
BASELINE = "ndjson"
SECRET_ENV = "EVENT_EXPORTER_BENCH_SECRET"
EXPORTED = re.compile(rb"received (\d+), exported (\d+)")

Answer = dict[str, object]
ANSWERS: dict[str, Answer] = {
    "elasticsearch": {"status": 200, "bulk": True},
    "otlp-protobuf": {"status": 200, "body": "", "type": "application/x-protobuf"},
    "otlp-json": {"status": 200, "body": "{}", "type": "application/json"},
    "loki": {"status": 204, "body": ""},
    "splunk-hec": {"status": 200, "body": '{"text":"Success","code":0}'},
}
"""What each protocol's receiver answers to a request it took whole, by body name."""
DEFAULT_ANSWER: Answer = {"status": 200, "body": ""}

RECEIVER = r"""
import asyncio, json, re, sys
LENGTH = re.compile(rb"(?im)^content-length:[ \t]*(\d+)")
ANSWERS = json.loads(sys.argv[2])
DEFAULT = json.loads(sys.argv[3])
REASONS = {200: b"OK", 204: b"No Content"}

def answer(path, body):
    spec = ANSWERS.get(path.strip("/").split("/")[0], DEFAULT)
    status = spec["status"]
    if spec.get("bulk"):
        items = body.count(b"\n") // 2
        payload = b'{"took":1,"errors":false,"items":[' + b",".join(
            [b'{"create":{"status":201,"result":"created"}}'] * items) + b"]}"
        kind = b"application/json"
    else:
        payload = spec.get("body", "").encode()
        kind = spec.get("type", "application/json").encode()
    head = b"HTTP/1.1 %d %s\r\n" % (status, REASONS.get(status, b"OK"))
    if status == 204:
        return head + b"\r\n"
    if payload:
        head += b"Content-Type: " + kind + b"\r\n"
    return head + b"Content-Length: %d\r\n\r\n" % len(payload) + payload

class Receiver(asyncio.Protocol):
    def connection_made(self, transport):
        self.transport, self.buffer = transport, b""

    def data_received(self, data):
        self.buffer += data
        while True:
            end = self.buffer.find(b"\r\n\r\n")
            if end < 0:
                return
            head = self.buffer[:end]
            match = LENGTH.search(head)
            length = int(match.group(1)) if match else 0
            if len(self.buffer) < end + 4 + length:
                return
            body = self.buffer[end + 4:end + 4 + length]
            self.buffer = self.buffer[end + 4 + length:]
            path = head.split(b"\r\n", 1)[0].split(b" ")[1].decode()
            self.transport.write(answer(path, body))

async def main():
    loop = asyncio.get_running_loop()
    server = await loop.create_server(Receiver, "127.0.0.1", int(sys.argv[1]))
    await server.serve_forever()

asyncio.run(main())
"""


def bodies() -> list[str]:
    """ndjson first, then every other batched body the registry lists."""
    return [BASELINE, *(name for name in KINDS if name not in (BASELINE, "single"))]


def secret_options(body: str) -> list[str]:
    """``--FLAG-env VAR`` for each secret of the body's own table (a token)."""
    table = KINDS[body].table
    if table is None:
        return []
    return [
        arg
        for setting in BODY_TABLES[table]
        if isinstance(setting.kind, SecretFrom) and setting.flag
        for arg in (f"{setting.flag}-env", SECRET_ENV)
    ]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


def wait_listening(port: int, timeout: float = 10.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        with socket.socket() as s:
            if s.connect_ex(("127.0.0.1", port)) == 0:
                return
        time.sleep(0.02)
    raise SystemExit(f"the receiver did not listen on {port} within {timeout} s")


def generate(path: Path, count: int) -> None:
    with path.open("wb") as out:
        subprocess.run(
            [sys.executable, "-m", "exporter", "generate", "--count", str(count), "--seed", "1"],
            stdout=out,
            check=True,
            timeout=600,
        )


def run_once(body: str, events: Path, port: int, tmp: Path, count: int) -> float | str:
    """Events per second of one ``export`` run, or why it failed."""
    command = [
        sys.executable,
        "-m",
        "exporter",
        "export",
        "--to",
        f"http://127.0.0.1:{port}/{body}",
        "--http-body",
        body,
        "--batch-max-events",
        str(BATCH),
        "--dead-letter",
        str(tmp / f"dead-{body}.ndjson"),
        *secret_options(body),
    ]
    env = {**os.environ, SECRET_ENV: "bench-secret-0123456789"}
    with events.open("rb") as stdin:
        started = time.perf_counter()
        done = subprocess.run(
            command, stdin=stdin, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, env=env,
            timeout=600, check=False,
        )  # fmt: skip
        took = time.perf_counter() - started
    found = EXPORTED.search(done.stderr)
    if done.returncode != 0 or found is None or int(found[2]) != count:
        lines = done.stderr.decode(errors="replace").strip().splitlines()
        return f"failed (exit {done.returncode}): {lines[-1] if lines else 'no output'}"
    return count / took


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--count", type=int, default=100_000, help="events per run")
    parser.add_argument("--repeat", type=int, default=3, help="runs of each body (median)")
    args = parser.parse_args()
    names = bodies()
    with tempfile.TemporaryDirectory(prefix="bench-bodies-") as directory:
        tmp = Path(directory)
        events = tmp / "events.ndjson"
        generate(events, args.count)
        port = free_port()
        receiver = subprocess.Popen(
            [sys.executable, "-c", RECEIVER, str(port), json.dumps(ANSWERS),
             json.dumps(DEFAULT_ANSWER)],
        )  # fmt: skip
        try:
            wait_listening(port)
            runs: dict[str, list[float]] = {name: [] for name in names}
            failed: dict[str, str] = {}
            for _ in range(args.repeat):  # interleaved: each body once per round
                for name in names:
                    if name in failed:
                        continue
                    result = run_once(name, events, port, tmp, args.count)
                    if isinstance(result, str):
                        failed[name] = result
                    else:
                        runs[name].append(result)
        finally:
            receiver.terminate()
            receiver.wait(timeout=10)
    print(
        f"export --to http://127.0.0.1/... --http-body BODY --batch-max-events {BATCH}: "
        f"{args.count} events, median of {args.repeat}"
    )
    base = statistics.median(runs[BASELINE]) if runs[BASELINE] else None
    print(f"{'body':<16}{'events/s':>12}{'vs ' + BASELINE:>12}")
    for name in names:
        if name in failed:
            print(f"{name:<16}{failed[name]}")
            continue
        speed = statistics.median(runs[name])
        ratio = f"{speed / base:.2f}" if base else "-"
        print(f"{name:<16}{speed:>12,.0f}{ratio:>12}")
    return 1 if BASELINE in failed else 0


if __name__ == "__main__":
    raise SystemExit(main())
