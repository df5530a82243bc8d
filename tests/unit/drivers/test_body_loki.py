"""The Loki push body: streams keyed by label set, entries in time order, exact ns."""

from __future__ import annotations

import orjson
import pytest
from hypothesis import given
from hypothesis import strategies as st

from drivers.base import Batch
from drivers.bodies import BodyContext
from drivers.bodies.loki import (
    RETRY_STATUSES,
    LokiBody,
    LokiSettings,
    compile_template,
    label_problem,
)
from drivers.bodies.parts import event_time_ns
from drivers.http import classify_status
from exporter.errors import PermanentDeliveryError, RetryableDeliveryError, UsageError
from exporter.formats.timefmt import make_time_formatter
from tests.support.samples import EVENTS_FILE


def _batch(*lines: bytes) -> Batch:
    batch = Batch()
    for line in lines:
        batch.append(line + b"\n")
    return batch


def _body(**options: object) -> LokiBody:
    return LokiBody(BodyContext("json", LokiSettings(**options)))  # type: ignore[arg-type]


def _event(name: str, end: str, host: str = "vm", cats: str = '["imap","service:imap"]') -> bytes:
    return (
        f'{{"event":"{name}","hostname":"{host}","start_time":{end},"end_time":{end},'
        f'"categories":{cats},"fields":{{"user":"u{name}"}}}}'
    ).encode()


def test_a_real_event_is_one_entry_its_line_as_formatted_its_time_exact() -> None:
    line = EVENTS_FILE.read_bytes().splitlines()[0]
    push = orjson.loads(_body().encode(_batch(line)))
    assert push == {
        "streams": [
            {
                "stream": {"job": "dovecot", "host": "vm"},
                "values": [["1795304647254352000", line.decode()]],
            }
        ]
    }


def test_streams_are_keyed_by_label_set_and_sorted_by_time_within_each() -> None:
    body = _body(labels={"job": "dovecot", "service": "{category:service}", "ev": "{event}"})
    lines = [
        _event("a", "1795304647.000003"),
        _event("a", "1795304647.000001"),
        _event("b", "1795304647.000002", cats='["auth","service:auth"]'),
        _event("a", "1795304647.000002"),
        _event("a", "1795304647.000001"),  # the same time: kept after its twin
    ]
    push = orjson.loads(body.encode(_batch(*lines)))
    streams = {tuple(s["stream"].items()): s["values"] for s in push["streams"]}
    assert set(streams) == {
        (("job", "dovecot"), ("service", "imap"), ("ev", "a")),
        (("job", "dovecot"), ("service", "auth"), ("ev", "b")),
    }
    a = streams[(("job", "dovecot"), ("service", "imap"), ("ev", "a"))]
    assert [ts for ts, _ in a] == [
        "1795304647000001000",
        "1795304647000001000",
        "1795304647000002000",
        "1795304647000003000",
    ]
    assert [line.encode() for _, line in a] == [lines[1], lines[4], lines[3], lines[0]]


@given(st.integers(0, 253_402_300_799 * 10**9), st.sampled_from(["rfc3339", "unix"]))
def test_the_entry_time_is_the_formatted_time_to_the_nanosecond(ns: int, fmt: str) -> None:
    text = make_time_formatter(fmt, "ns")(ns)
    value = f'"{text}"' if fmt == "rfc3339" else text
    line = f'{{"event":"x","hostname":"h","end_time":{value},"fields":{{}}}}'.encode()
    assert event_time_ns(line, orjson.loads(line)) == ns
    push = orjson.loads(_body().encode(_batch(line)))
    assert push["streams"][0]["values"][0][0] == str(ns)


def test_a_label_part_the_event_lacks_is_unknown_never_empty() -> None:
    body = _body(labels={"host": "{hostname}", "cat": "{category}", "svc": "x-{category:service}"})
    line = b'{"event":"e","end_time":1.5,"categories":[],"fields":{}}'
    assert body.labels(orjson.loads(line)) == (
        ("host", "unknown"),
        ("cat", "unknown"),
        ("svc", "x-unknown"),
    )


def test_braces_are_doubled_and_literal_text_is_kept() -> None:
    parts = compile_template("{{a}}-{hostname}")
    assert parts[0] == "{"
    assert parts[1] == "a"
    assert parts[2] == "}"
    assert parts[3] == "-"


@pytest.mark.parametrize("template", ["{user}", "{fields.user}", "{remote_ip}", "{session}", "{}"])
def test_a_template_over_a_field_is_refused_for_label_cardinality(template: str) -> None:
    problem = label_problem("user", template)
    assert problem is not None
    assert problem.startswith("label cardinality")
    with pytest.raises(UsageError, match="loki label user: label cardinality"):
        LokiSettings(labels={"user": template})


@pytest.mark.parametrize(
    ("name", "template", "why"),
    [
        ("9x", "a", "not a Loki label name"),
        ("a-b", "a", "not a Loki label name"),
        ("__name__", "a", "Loki's own"),
        ("job", "", "empty label"),
        ("job", "{hostname", "lone"),
    ],
)
def test_bad_labels_are_refused_with_why(name: str, template: str, why: str) -> None:
    problem = label_problem(name, template)
    assert problem is not None
    assert why in problem


def test_no_label_and_a_bad_tenant_are_refused() -> None:
    with pytest.raises(UsageError, match="at least one label"):
        LokiSettings(labels={})
    with pytest.raises(UsageError, match="not a Loki tenant"):
        LokiSettings(tenant="a b")


def test_the_tenant_is_x_scope_orgid() -> None:
    assert _body(tenant="team-a").headers() == {"X-Scope-OrgID": "team-a"}
    assert _body().headers() == {}


def test_a_line_that_is_not_json_is_a_permanent_failure() -> None:
    with pytest.raises(PermanentDeliveryError, match="not a json event"):
        _body().encode(_batch(b"event\tx"))


@pytest.mark.parametrize(
    ("status", "retried"),
    [
        (429, True),
        (500, True),
        (502, True),
        (503, True),
        (504, True),
        (400, False),
        (401, False),
        (404, False),
        (413, False),
        (501, False),
    ],
)
def test_lokis_status_table(status: int, retried: bool) -> None:
    error = classify_status(
        status,
        "",
        "entry too far behind, user fake, total ignored: 1 out of 5",
        name="loki",
        retry_statuses=RETRY_STATUSES,
        retry_after=None,
        location=None,
        now=0.0,
    )
    assert isinstance(error, RetryableDeliveryError if retried else PermanentDeliveryError)
    assert "entry too far behind" in str(error)
