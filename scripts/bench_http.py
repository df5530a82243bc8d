#!/usr/bin/env python3
"""Benchmark the delivery engine to a loopback HTTP receiver that answers 204, in one run.

Each figure is events per second from the first event handed over to the last response
received, best of ``--repeat``; read the ratios, not the absolute figures. This VM's
speed changes by up to 2x from one second to the next, so the runs are short,
interleaved and many: the best of each is its speed when the machine lets it run.

* engine batch N (1, 100, 1,000), gzip off / level 1: Event -> json -> exporter queue ->
  batches -> ``HttpDriver`` -> one POST per batch (ndjson body);
* floor (a): the same events as plain dicts (timestamps already text), ``orjson.dumps``
  each, 1,000 joined, one POST with one ``httpx.AsyncClient``, awaited before the next
  batch is encoded (so the next batch is encoded while nothing else runs); with gzip,
  the body is compressed at level 1 before its POST;
* ceiling (b): bodies of 1,000 events encoded before the clock starts, POSTed in a tight
  loop with one ``httpx.AsyncClient``: the cost of HTTP alone;
* OpenTelemetry: the Python SDK's ``LoggerProvider`` + ``BatchLogRecordProcessor`` +
  ``OTLPLogExporter`` (protobuf over HTTP) logging the same events (name as body, fields
  as attributes), from the first emit to the return of ``force_flush``.

What separates the engine from the ceiling, largest first: formatting each Event to json
(rfc3339 times included; the ceiling encodes nothing, the floor only ``orjson.dumps`` of
dicts whose times are already text), the queue and batcher, and per request the driver's
work: a copy of the batch, its headers (idempotency key), its deadline
(``anyio.fail_after``), reading the response as a stream; with gzip, compression in a
worker thread (which lets formatting of the next batch overlap it).

The receiver is nginx (``return 204``, which reads and discards each body on keep-alive
connections) when installed, else a small asyncio server in a separate process; it is
stopped by PID. Goals: engine batch 1,000 >= 0.5 of its floor, gzip on and off, and
>= 30x OpenTelemetry. The OpenTelemetry baseline comes with ``pip install -e '.[bench]'``;
without it that ratio is skipped.
"""

from __future__ import annotations

import argparse
import contextlib
import logging
import shutil
import socket
import subprocess
import sys
import tempfile
import time
import zlib
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import anyio
import httpx
import orjson

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
sys.path.insert(0, str(Path(__file__).resolve().parent))

from bench_delivery import _plain, as_dicts
from bench_delivery import engine as delivery_engine
from bench_export import make_events

from drivers.http import Compression, HttpDriver, HttpSettings
from exporter.cli.malloc import tune_malloc
from exporter.event import Event

BATCH = 1000
PATH = "/ingest"
OTLP_LOGS_PATH = "/v1/logs"
NDJSON = {"Content-Type": "application/x-ndjson"}
GZIP_NDJSON = {**NDJSON, "Content-Encoding": "gzip"}

NGINX_CONF = """
daemon off;
master_process off;
worker_processes 1;
error_log {dir}/error.log warn;
pid {dir}/nginx.pid;
events {{ worker_connections 64; }}
http {{
    access_log off;
    client_body_temp_path {dir}/client_body;
    proxy_temp_path {dir}/proxy;
    fastcgi_temp_path {dir}/fastcgi;
    uwsgi_temp_path {dir}/uwsgi;
    scgi_temp_path {dir}/scgi;
    client_max_body_size 64m;
    client_body_buffer_size 64m;
    keepalive_requests 1000000;
    keepalive_timeout 300s;
    server {{
        listen 127.0.0.1:{port};
        location / {{ return 204; }}
    }}
}}
"""

PY_RECEIVER = r"""
import asyncio, re, sys
LENGTH = re.compile(rb"(?im)^content-length:[ \t]*(\d+)")
RESPONSE = b"HTTP/1.1 204 No Content\r\n\r\n"

class Sink(asyncio.Protocol):
    def connection_made(self, transport):
        self.transport, self.head, self.left = transport, b"", 0

    def data_received(self, data):
        while data:
            if self.left:
                taken = min(self.left, len(data))
                self.left -= taken
                data = data[taken:]
                if not self.left:
                    self.transport.write(RESPONSE)
                continue
            self.head += data
            end = self.head.find(b"\r\n\r\n")
            if end < 0:
                return
            head, data, self.head = self.head[:end], self.head[end + 4:], b""
            match = LENGTH.search(head)
            self.left = int(match.group(1)) if match else 0
            if not self.left:
                self.transport.write(RESPONSE)

async def main():
    server = await asyncio.get_running_loop().create_server(Sink, "127.0.0.1", int(sys.argv[1]))
    await server.serve_forever()

asyncio.run(main())
"""


# -- the receiver --------------------------------------------------------------------


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


def find_nginx() -> str | None:
    found = shutil.which("nginx")
    if found:
        return found
    return "/usr/sbin/nginx" if Path("/usr/sbin/nginx").is_file() else None


def receiver_command(kind: str, tmp: Path, port: int) -> tuple[list[str], str]:
    """The command line of the receiver and its description."""
    nginx = find_nginx() if kind in ("auto", "nginx") else None
    if nginx is not None:
        conf = tmp / "nginx.conf"
        conf.write_text(NGINX_CONF.format(dir=tmp, port=port))
        version = subprocess.run([nginx, "-v"], capture_output=True, text=True).stderr.strip()
        return [nginx, "-p", str(tmp), "-c", str(conf)], f"{nginx} ({version})"
    if kind == "nginx":
        sys.exit("nginx not found (apt-get install nginx-light)")
    return [sys.executable, "-c", PY_RECEIVER, str(port)], "python asyncio server (no nginx)"


def wait_listening(process: subprocess.Popen[bytes], port: int, tmp: Path) -> None:
    """Return once ``port`` accepts connections; fail if the receiver exits or 10 s pass."""
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        if process.poll() is not None:
            log = tmp / "error.log"
            sys.exit(f"receiver exited: {log.read_text() if log.exists() else process.returncode}")
        with contextlib.suppress(OSError), socket.create_connection(("127.0.0.1", port), 0.1):
            return
        time.sleep(0.01)
    sys.exit(f"receiver did not listen on 127.0.0.1:{port} within 10 s")


@contextlib.contextmanager
def receiver(kind: str) -> Iterator[tuple[str, str]]:
    """Run the receiver; yield its base URL and its description."""
    tmp = Path(tempfile.mkdtemp(prefix="bench-http-"))
    port = free_port()
    command, description = receiver_command(kind, tmp, port)
    process = subprocess.Popen(command, stdin=subprocess.DEVNULL)
    try:
        wait_listening(process, port, tmp)
        yield f"http://127.0.0.1:{port}", description
    finally:
        process.kill()
        process.wait(timeout=10)
        shutil.rmtree(tmp, ignore_errors=True)


# -- what is measured ----------------------------------------------------------------


def engine(events: list[Event], url: str, batch: int, gzip: bool) -> float:
    """bench_delivery's ``engine()`` to an ``HttpDriver``."""
    compression: Compression = "gzip" if gzip else "none"
    driver = HttpDriver(HttpSettings(url=url + PATH, compression=compression, gzip_level=1))
    return delivery_engine(events, driver, batch)


async def post(client: httpx.AsyncClient, url: str, body: bytes, gzip: bool) -> None:
    response = await client.post(url, content=body, headers=GZIP_NDJSON if gzip else NDJSON)
    assert response.status_code == 204, response


def floor(dicts: list[dict[str, object]], url: str, gzip: bool) -> float:
    """Encode 1,000 dicts, (gzip,) POST, await the response, then the next 1,000."""
    dumps, nl = orjson.dumps, orjson.OPT_APPEND_NEWLINE

    def body(buf: bytearray) -> bytes:
        return zlib.compress(buf, 1, wbits=31) if gzip else bytes(buf)

    async def run() -> float:
        async with httpx.AsyncClient() as client:
            start = time.perf_counter()
            buf = bytearray()
            for i, d in enumerate(dicts, 1):
                buf += dumps(d, option=nl)
                if i % BATCH == 0:
                    await post(client, url + PATH, body(buf), gzip)
                    buf = bytearray()
            if buf:
                await post(client, url + PATH, body(buf), gzip)
            return time.perf_counter() - start

    return anyio.run(run)


def encode_bodies(dicts: list[dict[str, object]]) -> list[bytes]:
    """The ceiling's input: the same events as ndjson bodies of 1,000, made in advance."""
    dumps, nl = orjson.dumps, orjson.OPT_APPEND_NEWLINE
    return [
        b"".join(dumps(d, option=nl) for d in dicts[i : i + BATCH])
        for i in range(0, len(dicts), BATCH)
    ]


def ceiling(bodies: list[bytes], url: str) -> float:
    async def run() -> float:
        async with httpx.AsyncClient() as client:
            start = time.perf_counter()
            for body in bodies:
                await post(client, url + PATH, body, False)
            return time.perf_counter() - start

    return anyio.run(run)


class _Problems(logging.Handler):
    """Collects the SDK's warnings and errors: a dropped record, a failed export."""

    def __init__(self) -> None:
        super().__init__(logging.WARNING)
        self.messages: list[str] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.messages.append(record.getMessage())


def otel_available() -> bool:
    try:
        import opentelemetry.exporter.otlp.proto.http
        import opentelemetry.sdk  # noqa: F401
    except ImportError:
        return False
    return True


def otel_run(events: list[Event], url: str) -> float:
    """Same batching as the engine: 1,000 records or 50 ms; a queue that drops nothing."""
    from opentelemetry.exporter.otlp.proto.http._log_exporter import OTLPLogExporter
    from opentelemetry.sdk._logs import LoggerProvider
    from opentelemetry.sdk._logs.export import BatchLogRecordProcessor

    problems = _Problems()
    sdk_log = logging.getLogger("opentelemetry")
    sdk_log.addHandler(problems)
    provider = LoggerProvider(shutdown_on_exit=False)
    processor = BatchLogRecordProcessor(
        OTLPLogExporter(endpoint=url + OTLP_LOGS_PATH),
        schedule_delay_millis=50,
        max_export_batch_size=BATCH,
        max_queue_size=max(len(events), 2048),
    )
    provider.add_log_record_processor(processor)
    emit = provider.get_logger("bench").emit
    try:
        start = time.perf_counter()
        for e in events:
            emit(timestamp=e.start_ns, body=e.name, attributes=_attributes(e))
        flushed = processor.force_flush()
        elapsed = time.perf_counter() - start
    finally:
        provider.shutdown()
        sdk_log.removeHandler(problems)
    assert flushed, "OpenTelemetry force_flush timed out"
    assert not problems.messages, problems.messages
    return elapsed


def _attributes(e: Event) -> dict[str, Any]:  # Any: OpenTelemetry's AnyValue
    return {"hostname": e.hostname, "end_time": e.end_ns, "categories": e.categories, **_plain(e)}


# -- the run -------------------------------------------------------------------------


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--events", type=int, default=30_000)
    parser.add_argument("--batch-1-events", type=int, default=1_000)
    parser.add_argument("--otel-events", type=int, default=5_000)
    parser.add_argument("--repeat", type=int, default=9)
    parser.add_argument("--receiver", choices=("auto", "nginx", "python"), default="auto")
    args = parser.parse_args()
    args.batch_1_events = min(args.batch_1_events, args.events)
    args.otel_events = min(args.otel_events, args.events)
    return args


def measure(args: argparse.Namespace, url: str, otel: bool) -> dict[str, float]:
    """Best events per second of each figure, interleaved ``--repeat`` times."""
    n = args.events
    events = make_events(n, 1)
    dicts = as_dicts(events)
    bodies = encode_bodies(dicts)
    few = events[: args.batch_1_events]
    otel_events = events[: args.otel_events]
    best: dict[str, float] = {}

    def record(name: str, seconds: float, count: int) -> None:
        best[name] = max(best.get(name, 0.0), count / seconds)

    for _ in range(args.repeat):
        for gzip in (False, True):
            suffix = " gzip" if gzip else ""
            record(f"floor (a){suffix}", floor(dicts, url, gzip), n)
            record(f"engine batch 1000{suffix}", engine(events, url, 1000, gzip), n)
            record(f"engine batch 100{suffix}", engine(events, url, 100, gzip), n)
            record(f"engine batch 1{suffix}", engine(few, url, 1, gzip), len(few))
        record("ceiling (b)", ceiling(bodies, url), n)
        if otel:
            record("OpenTelemetry OTLP/http", otel_run(otel_events, url), len(otel_events))
    return best


def report(best: dict[str, float]) -> None:
    for name, rate in best.items():
        print(f"  {name:28s} {rate:>12,.0f} events/s")
    print("ratios (same run):")
    rows = [
        ("engine 1000 / floor (a)", "engine batch 1000", "floor (a)", ">= 0.5"),
        ("engine 1000 gzip / floor gzip", "engine batch 1000 gzip", "floor (a) gzip", ">= 0.5"),
        ("engine 1000 / OpenTelemetry", "engine batch 1000", "OpenTelemetry OTLP/http", ">= 30"),
        ("engine 1000 / ceiling (b)", "engine batch 1000", "ceiling (b)", "none"),
    ]
    for label, top, bottom, goal in rows:
        if bottom in best:
            print(f"  {label:32s} {best[top] / best[bottom]:6.2f}   goal {goal}")


def main() -> None:
    args = parse_args()
    tune_malloc()
    otel = otel_available()
    with receiver(args.receiver) as (url, description):
        print(f"receiver: {description}", flush=True)
        best = measure(args, url, otel)
    print(
        f"{args.events} events ({args.batch_1_events} at batch 1, {args.otel_events} for "
        f"OpenTelemetry), best of {args.repeat}"
    )
    report(best)
    if not otel:
        print("OpenTelemetry not installed, its ratio skipped: pip install -e '.[bench]'")


if __name__ == "__main__":
    main()
