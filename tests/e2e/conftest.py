"""Fixtures of the end-to-end tests: the NATS JetStream cluster, started once."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from tests.support.nats_cluster import NatsCluster, running_cluster


@pytest.fixture(scope="session")
def nats_cluster() -> Iterator[NatsCluster]:
    """Three nats-server nodes (JetStream, streams of 3 replicas) on 127.0.0.1, for the
    whole session; a test that kills a node starts it again before it ends."""
    with running_cluster() as cluster:
        yield cluster
    # every server stopped by its PID (running_cluster)
