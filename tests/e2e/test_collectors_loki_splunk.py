"""``export --to`` Grafana Loki and Splunk HEC, 100,000 events with faults mixed in: each
event stored once or dead-lettered with the collector's reason, none stored twice."""

from __future__ import annotations

from pathlib import Path

import orjson
import pytest

from exporter.cli import main
from tests.support.http_receiver import Respond
from tests.support.loki_receiver import LokiReceiver
from tests.support.processes import bounded
from tests.support.splunk_receiver import SplunkReceiver, busy

N = 100_000
BASE_NS = 1_795_304_647 * 10**9
OLD = {n for n in range(N) if n % 9_973 == 5}
"""Events two hours older than the others: Loki refuses them (too old)."""
BAD = {n for n in range(N) if n % 9_973 == 11}
"""Events HEC refuses (400 code 6 naming them)."""
RETRY = ["--retry-initial-delay", "0.01", "--retry-max-delay", "0.05"]
TOKEN = "hec-5c2d-SECRET-never-printed"


def _time_ns(n: int) -> int:
    """Out of order in the input: each pair swapped (sorted again within a batch)."""
    if n in OLD:
        return BASE_NS - 7200 * 10**9 + n * 10**6  # a second of its own each
    return BASE_NS + (n ^ 1) * 10_000 + 7_000


def _input(tmp_path: Path) -> Path:
    path = tmp_path / "events.ndjson"
    out = bytearray()
    for n in range(N):
        ns = _time_ns(n)
        end = f"{ns // 10**9}.{ns // 1000 % 10**6:06d}"
        service = "imap" if n // 2 % 2 else "pop3"
        out += (
            f'{{"event":"imap_command_finished","hostname":"mx{n // 2 % 3}","start_time":{end},'
            f'"end_time":{end},"categories":["imap","service:{service}"],'
            f'"fields":{{"n":{n},"user":"u{n}"}}}}\n'
        ).encode()
    path.write_bytes(bytes(out))
    return path


def _dead_letters(path: Path) -> dict[int, str]:
    """Each dead-lettered event's n, with its reason."""
    found: dict[int, str] = {}
    if not path.exists():
        return found
    for line in path.read_bytes().splitlines():
        record = orjson.loads(line)
        n = orjson.loads(record["event"])["fields"]["n"]
        assert n not in found, f"event {n} dead-lettered twice"
        found[n] = record["reason"]
    return found


def _plan(faults: list[str | Respond], requests: int) -> list[str | Respond]:
    """Every fifth request a fault, in turn, then ``ok``."""
    return [faults[i // 5 % len(faults)] if i % 5 == 2 else "ok" for i in range(requests)]


def test_loki_stores_every_event_once_or_dead_letters_it_with_lokis_reason(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    source, dead = _input(tmp_path), tmp_path / "dead.ndjson"
    plan = _plan(["429", "503", "500:retry-after=0", "reset"], 80)
    with LokiReceiver(plan, oldest_ns=BASE_NS - 3600 * 10**9) as loki:
        argv = ["export", "--to", loki.url, "--dead-letter", str(dead), "--http-body", "loki"]
        labels = ["job=dovecot", "host={hostname}", "svc={category:service}"]
        argv += [option for label in labels for option in ("--loki-label", label)]
        with bounded(120):
            code = main([*argv, *RETRY, str(source)])
    err = capsys.readouterr().err
    assert code == 3, err  # some dead letters
    stored: dict[int, int] = {}
    for labels_set, entries in loki.streams.items():
        labels_of = dict(labels_set)
        for ns, line in entries:
            event = orjson.loads(line)
            n = event["fields"]["n"]
            assert n not in stored, f"event {n} stored twice"
            stored[n] = ns
            assert labels_of == {
                "job": "dovecot",
                "host": event["hostname"],
                "svc": event["categories"][1].removeprefix("service:"),
            }
    assert loki.stored_twice() == 0
    assert all(ns == _time_ns(n) for n, ns in stored.items())  # exact, to the ns written
    dead_letters = _dead_letters(dead)
    assert set(stored) | set(dead_letters) == set(range(N))
    assert not OLD & set(stored)
    assert set(dead_letters) >= OLD
    for reason in dead_letters.values():
        assert "HTTP 400" in reason
        assert "has timestamp too old" in reason, reason
    # what Loki stored of a push it answered 400 for is dead-lettered too (Loki's answer
    # does not say which entries it kept): only the batch-mates of a refused event, one
    # batch (one reason: the answer names its entries' times) per refusal
    batches: dict[str, set[int]] = {}
    for n, reason in dead_letters.items():
        batches.setdefault(reason, set()).add(n)
    assert len(batches) == len(loki.refusals) == len(OLD)
    assert all(len(batch & OLD) == 1 and len(batch) <= 1000 for batch in batches.values())
    assert not any("out of order" in text for text in loki.refusals)  # sorted per stream
    statuses = {r.status for r in loki.requests}
    assert {429, 503, 500, None, 400, 204} <= statuses


def test_splunk_hec_indexes_every_event_once_or_dead_letters_the_one_it_refused(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("HEC_TOKEN", TOKEN)
    source, dead = _input(tmp_path), tmp_path / "dead.ndjson"
    plan = _plan([busy(), "429", "reset", Respond(500, body=b'{"text":"x","code":8}')], 80)

    def bad(event: object) -> bool:
        return isinstance(event, dict) and event["fields"]["n"] in BAD

    with SplunkReceiver(TOKEN, plan, bad=bad) as hec:
        argv = ["export", "--to", hec.url, "--dead-letter", str(dead), "--http-body"]
        argv += ["splunk-hec", "--splunk-token-env", "HEC_TOKEN", "--splunk-index", "mail"]
        with bounded(120):
            code = main([*argv, *RETRY, str(source)])
    err = capsys.readouterr().err
    assert code == 3, err
    assert TOKEN not in err
    indexed: dict[int, dict[str, object]] = {}
    for envelope in hec.indexed:
        event = envelope["event"]
        n = event["fields"]["n"]
        assert n not in indexed, f"event {n} indexed twice"
        indexed[n] = envelope
        ns = _time_ns(n)
        assert envelope["time"] == float(f"{ns // 10**9}.{ns // 1000 % 10**6:06d}")
        assert (envelope["host"], envelope["index"]) == (event["hostname"], "mail")
        assert (envelope["source"], envelope["sourcetype"]) == ("dovecot", "dovecot:event")
    dead_letters = _dead_letters(dead)
    assert set(dead_letters) == BAD
    assert not BAD & set(indexed)
    assert set(indexed) | BAD == set(range(N))
    for reason in dead_letters.values():
        assert "Invalid data format (code 6, this event)" in reason
    statuses = {r.status for r in hec.requests}
    assert {503, 429, 500, None, 400, 200} <= statuses
