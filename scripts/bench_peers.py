#!/usr/bin/env python3
"""Side by side with a C shipper: the same job done by us, by syslog-ng, and by the floor.

The job: a file of ``--events`` Dovecot json events (unix times, as Dovecot writes by
default), each read, parsed, written again as json, POSTed as NDJSON batches of 1,000 to
nginx answering 204 on 127.0.0.1. Candidates, interleaved, ``--repeat`` rounds:

* daemon: ``event-exporter run`` with a ``file`` source -> an http exporter;
* export --to: ``event-exporter export FILE --to http://...``;
* syslog-ng json: syslog-ng 3.x, ``file()`` source -> ``json-parser()`` ->
  ``http()`` with ``$(format-json ...)`` bodies, ``batch-lines(1000)``;
* syslog-ng raw: the same, relaying each line as read (``flags(no-parse)``, ``$MSG``);
  both with ``flags(flow-control)``: without it syslog-ng drops what its destination
  queue cannot hold (a third of the events here), where ours wait (``block``);
* floor: this process, ``orjson.loads`` + ``orjson.dumps`` of each line, 1,000 joined,
  one POST with ``httpx`` awaited before the next batch.

Each rate is measured from nginx's own access log (``$msec`` and ``$content_length`` of
every request): the events after the first request over the time from the first request
to the last, so start-up (Python's 0.4 s, syslog-ng's) is left out for all alike. A
candidate is done when nginx has received the bytes its check run sent.

Before timing, each candidate runs once against a receiver (a small Python server in a
child process) that keeps the bodies: every candidate must deliver ``--events`` lines,
and our two paths exactly the bytes ``export`` writes for the same input.

Missing pieces are installed with ``apt-get`` (bounded in time): syslog-ng-core,
syslog-ng-mod-http, syslog-ng-mod-json, nginx. Everything runs in a temporary directory;
every process is stopped by its PID. Prints the median of the rounds and the ratios.
"""

from __future__ import annotations

import argparse
import contextlib
import io
import os
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import anyio
import httpx
import orjson

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
sys.path.insert(0, str(Path(__file__).resolve().parent))

from bench_export import make_events, write_input
from bench_http import find_nginx, free_port, wait_listening

from exporter.cli.export import export_streams
from exporter.formats import FormatSpec, make_formatter

ROOT = Path(__file__).resolve().parent.parent
BATCH = 1000
PATH = "/ingest"
FILTER = "event=*"
"""Every event: a metric needs a filter, and export --to is given the same one."""
PACKAGES = ("syslog-ng-core", "syslog-ng-mod-http", "syslog-ng-mod-json", "nginx")

NGINX_CONF = """
daemon off;
master_process off;
worker_processes 1;
error_log {dir}/error.log warn;
pid {dir}/nginx.pid;
events {{ worker_connections 64; }}
http {{
    log_format bodies '$msec $content_length';
    access_log {log} bodies buffer=4k flush=100ms;
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

# The check run's receiver: every body appended to a file, 204 to each request.
KEEPER = r"""
import asyncio, re, sys
LENGTH = re.compile(rb"(?im)^content-length:[ \t]*(\d+)")
RESPONSE = b"HTTP/1.1 204 No Content\r\ncontent-length: 0\r\n\r\n"
out = open(sys.argv[2], "ab", buffering=0)

class Keeper(asyncio.Protocol):
    def connection_made(self, transport):
        self.transport, self.head, self.left = transport, b"", 0

    def data_received(self, data):
        while data:
            if self.left:
                body, data = data[: self.left], data[self.left :]
                out.write(body)
                self.left -= len(body)
                if not self.left:
                    self.transport.write(RESPONSE)
                continue
            self.head += data
            end = self.head.find(b"\r\n\r\n")
            if end < 0:
                return
            head, data, self.head = self.head[:end], self.head[end + 4 :], b""
            match = LENGTH.search(head)
            self.left = int(match.group(1)) if match else 0
            if not self.left:
                self.transport.write(RESPONSE)

async def main():
    server = await asyncio.get_running_loop().create_server(Keeper, "127.0.0.1", int(sys.argv[1]))
    await server.serve_forever()

asyncio.run(main())
"""

DAEMON_CONFIG = """
[global]
dead_letter = "{tmp}/dead.ndjson"
summary_interval = 0

[source.in]
type = "file"
path = "{input}"
poll_interval = 0.05

[exporter.out]
destination = "{url}"
batch_max_events = {batch}
batch_max_bytes = 67108864
batch_max_age = 0.1

[metric.all]
filter = "{filter}"
exporter = "out"
"""

SYSLOG_NG_CONFIG = """
@version: {version}
options {{ keep-hostname(yes); log-msg-size(1048576); }};
source s_in {{
    file("{input}" flags(no-parse) follow-freq(1) log-fetch-limit(1000) log-iw-size(100000));
}};
{parser}
destination d_http {{
    http(
        url("{url}")
        method("POST")
        headers("Content-Type: application/x-ndjson")
        body("{body}")
        body-suffix("\\n")
        batch-lines({batch})
        batch-bytes(67108864)
        batch-timeout(100)
        workers(1)
    );
}};
log {{ source(s_in); {use_parser} destination(d_http); flags(flow-control); }};
"""
JSON_PARSER = 'parser p_json { json-parser(prefix(".j.")); };'
JSON_BODY = "$(format-json --scope none --key .j.* --shift 3)"


# -- setting up -------------------------------------------------------------------


def ensure_packages() -> None:
    """apt-get the packages that are missing (bounded: 15 minutes at most)."""
    modules = list(Path("/usr/lib/syslog-ng").glob("*/libhttp.so")) and list(
        Path("/usr/lib/syslog-ng").glob("*/libjson-plugin.so")
    )
    if shutil.which("syslog-ng") and modules and find_nginx():
        return
    missing = [
        p
        for p in PACKAGES
        if subprocess.run(["dpkg", "-s", p], capture_output=True).returncode != 0
    ]
    if shutil.which("apt-get") is None:
        sys.exit(f"missing {' '.join(missing)} and no apt-get to install them")
    print(f"installing {' '.join(missing)} (apt-get)", flush=True)
    env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
    subprocess.run(["apt-get", "update", "-qq"], env=env, timeout=600, check=True)
    subprocess.run(
        ["apt-get", "install", "-y", "-qq", "--no-install-recommends", *missing],
        env=env,
        timeout=900,
        check=True,
    )


def syslog_ng_version() -> str:
    """``3.38`` of syslog-ng 3.38.1: its config version line must name it."""
    said = subprocess.run(["syslog-ng", "--version"], capture_output=True, text=True).stdout
    first = said.splitlines()[0]  # "syslog-ng 3 (3.38.1)"
    full = first.split("(")[1].rstrip(")")
    return ".".join(full.split(".")[:2])


@contextlib.contextmanager
def process(command: list[str], **kwargs: object) -> Iterator[subprocess.Popen[bytes]]:
    """Run ``command``; stop it by its PID (TERM, then KILL after 10 s)."""
    child = subprocess.Popen(command, stdin=subprocess.DEVNULL, **kwargs)  # type: ignore[call-overload]
    try:
        yield child
    finally:
        if child.poll() is None:
            child.send_signal(signal.SIGTERM)
            try:
                child.wait(timeout=10)
            except subprocess.TimeoutExpired:
                child.kill()
                child.wait(timeout=10)


@contextlib.contextmanager
def nginx(tmp: Path) -> Iterator[tuple[str, Path]]:
    """nginx answering 204 and logging ``msec content_length`` per request."""
    binary = find_nginx()
    if binary is None:
        sys.exit("nginx not found")
    port = free_port()
    log = tmp / "access.log"
    conf = tmp / "nginx.conf"
    conf.write_text(NGINX_CONF.format(dir=tmp, port=port, log=log))
    with process([binary, "-p", str(tmp), "-c", str(conf)]) as child:
        wait_listening(child, port, tmp)
        yield f"http://127.0.0.1:{port}", log


@contextlib.contextmanager
def keeper(tmp: Path) -> Iterator[tuple[str, Path]]:
    """The check run's receiver, keeping every body in a file."""
    port = free_port()
    bodies = tmp / "bodies"
    bodies.unlink(missing_ok=True)
    bodies.touch()
    with process([sys.executable, "-c", KEEPER, str(port), str(bodies)]) as child:
        wait_listening(child, port, tmp)
        yield f"http://127.0.0.1:{port}", bodies


# -- the candidates ---------------------------------------------------------------

Candidate = Callable[[str, Callable[[], bool], float], None]
"""Runs against the URL until ``done()`` says everything arrived (or the deadline)."""


def wait(done: Callable[[], bool], deadline: float, child: subprocess.Popen[bytes] | None) -> None:
    while not done():
        if child is not None and child.poll() not in (None, 0):  # export --to exits 0
            raise RuntimeError(f"pid {child.pid} exited with {child.returncode}")
        if time.monotonic() > deadline:
            raise RuntimeError("not everything arrived in time")
        time.sleep(0.02)


def daemon(tmp: Path, source: Path) -> Candidate:
    def run(url: str, done: Callable[[], bool], deadline: float) -> None:
        config = tmp / "daemon.toml"
        text = DAEMON_CONFIG.format(
            tmp=tmp, input=source, url=url + PATH, batch=BATCH, filter=FILTER
        )
        config.write_text(text)
        command = [sys.executable, "-m", "exporter", "run", str(config)]
        with process(command, stderr=subprocess.DEVNULL, cwd=ROOT) as child:
            wait(done, deadline, child)

    return run


def export_to(tmp: Path, source: Path) -> Candidate:
    def run(url: str, done: Callable[[], bool], deadline: float) -> None:
        command = [
            *(sys.executable, "-m", "exporter", "export", str(source)),
            *("--filter", FILTER, "--to", url + PATH, "--batch-max-events", str(BATCH)),
            *("--batch-max-bytes", str(64 << 20), "--batch-max-age", "0.1"),
        ]
        with process(command, stderr=subprocess.DEVNULL, cwd=ROOT) as child:
            wait(done, deadline, child)

    return run


def syslog_ng(tmp: Path, source: Path, *, parse: bool, body: str = JSON_BODY) -> Candidate:
    def run(url: str, done: Callable[[], bool], deadline: float) -> None:
        work = tmp / ("sng-json" if parse else "sng-raw")
        shutil.rmtree(work, ignore_errors=True)  # no persist file: read from the start
        work.mkdir()
        conf = work / "syslog-ng.conf"
        conf.write_text(
            SYSLOG_NG_CONFIG.format(
                version=syslog_ng_version(),
                input=source,
                url=url + PATH,
                batch=BATCH,
                parser=JSON_PARSER if parse else "",
                use_parser="parser(p_json);" if parse else "",
                body=body if parse else "$MSG",
            )
        )
        command = [
            *("syslog-ng", "-F", "--no-caps", "-f", str(conf)),
            *(f"--persist-file={work}/persist", f"--pidfile={work}/pid"),
            f"--control={work}/ctl",
        ]
        with process(command, stderr=subprocess.DEVNULL, stdout=subprocess.DEVNULL) as child:
            wait(done, deadline, child)

    return run


def floor(source: Path) -> Candidate:
    """orjson loads + dumps of each line, 1,000 joined, POSTed, awaited."""

    def run(url: str, done: Callable[[], bool], deadline: float) -> None:
        lines = source.read_bytes().splitlines()
        loads, dumps, nl = orjson.loads, orjson.dumps, orjson.OPT_APPEND_NEWLINE
        headers = {"Content-Type": "application/x-ndjson"}

        async def main() -> None:
            async with httpx.AsyncClient() as client:
                buf = bytearray()
                for i, line in enumerate(lines, 1):
                    buf += dumps(loads(line), option=nl)
                    if i % BATCH == 0:
                        await client.post(url + PATH, content=bytes(buf), headers=headers)
                        buf = bytearray()
                if buf:
                    await client.post(url + PATH, content=bytes(buf), headers=headers)

        anyio.run(main)
        wait(done, deadline, None)

    return run


# -- measuring --------------------------------------------------------------------


def read_log(log: Path) -> list[tuple[float, int]]:
    rows = []
    for line in log.read_text().splitlines():
        msec, _, length = line.partition(" ")
        rows.append((float(msec), int(length) if length.isdigit() else 0))
    return rows


def check(tmp: Path, run: Candidate, events: int) -> bytes:
    """One run against the keeper: every event arrives (once nothing more comes for 2 s)."""
    with keeper(tmp) as (url, bodies):
        size = [-1, time.monotonic()]

        def settled() -> bool:
            now, current = time.monotonic(), bodies.stat().st_size
            if current != size[0]:
                size[0], size[1] = current, now
            return current > 0 and now - size[1] > 2.0

        run(url, settled, time.monotonic() + 300)
        data = bodies.read_bytes()
    lines = data.count(b"\n")
    if lines != events:
        raise RuntimeError(f"{lines} lines arrived, not {events}")
    return data


def timed(tmp: Path, run: Candidate, events: int, expected: int) -> float:
    """Events per second as nginx saw them: after the first request, to the last."""
    log_dir = tmp / "nginx"
    shutil.rmtree(log_dir, ignore_errors=True)
    log_dir.mkdir()
    with nginx(log_dir) as (url, log):

        def done() -> bool:
            return log.exists() and sum(n for _, n in read_log(log)) >= expected

        run(url, done, time.monotonic() + 300)
        rows = read_log(log)
    first, last = rows[0][0], rows[-1][0]
    after_first = events * (expected - rows[0][1]) / expected
    return after_first / max(last - first, 1e-3)


def export_bytes(source: Path) -> bytes:
    out = io.BytesIO()
    with source.open("rb") as stream:
        fmt = make_formatter(FormatSpec(), newline=True)
        export_streams([(str(source), stream)], out, fmt, None, sys.stderr)
    return out.getvalue()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--events", type=int, default=200_000)
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument(
        "--syslog-ng-body", default=JSON_BODY, help="the template of syslog-ng's json path"
    )
    parser.add_argument("--only", default="", help="comma-separated candidate names")
    args = parser.parse_args()
    ensure_packages()
    tmp = Path(tempfile.mkdtemp(prefix="bench-peers-"))
    try:
        source = tmp / "events.ndjson"
        write_input(make_events(args.events, 1), source)
        ours = export_bytes(source)
        candidates: dict[str, Candidate] = {
            "daemon (file -> http)": daemon(tmp, source),
            "export --to http": export_to(tmp, source),
            "syslog-ng json": syslog_ng(tmp, source, parse=True, body=args.syslog_ng_body),
            "syslog-ng raw": syslog_ng(tmp, source, parse=False),
            "floor (orjson + httpx)": floor(source),
        }
        if args.only:
            wanted = args.only.split(",")
            candidates = {k: v for k, v in candidates.items() if k.split(" ")[0] in wanted}
        expected: dict[str, int] = {}
        for name, run in candidates.items():
            data = check(tmp, run, args.events)
            if name.startswith(("daemon", "export")) and data != ours:
                raise RuntimeError(f"{name}: what arrived differs from export's output")
            expected[name] = len(data)
            print(f"checked {name}: {args.events} events, {len(data)} bytes", flush=True)
        rates: dict[str, list[float]] = {name: [] for name in candidates}
        for _ in range(args.repeat):
            for name, run in candidates.items():
                rates[name].append(timed(tmp, run, args.events, expected[name]))
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    print(f"{args.events} events, NDJSON batches of {BATCH} to nginx; median of {args.repeat}")
    median = {name: statistics.median(values) for name, values in rates.items()}
    for name, rate in median.items():
        print(f"  {name:26s} {rate:>12,.0f} events/s")
    print("ratios (same run):")
    pairs = [
        ("daemon / export --to", "daemon (file -> http)", "export --to http", ">= 0.9"),
        ("daemon / syslog-ng json", "daemon (file -> http)", "syslog-ng json", ">= 2"),
        ("export --to / syslog-ng json", "export --to http", "syslog-ng json", ""),
        ("daemon / syslog-ng raw", "daemon (file -> http)", "syslog-ng raw", ""),
        ("export --to / floor", "export --to http", "floor (orjson + httpx)", ""),
    ]
    for label, top, bottom, goal in pairs:
        if top in median and bottom in median:
            note = f"   goal {goal}" if goal else ""
            print(f"  {label:30s} {median[top] / median[bottom]:6.2f}{note}")


if __name__ == "__main__":
    main()
