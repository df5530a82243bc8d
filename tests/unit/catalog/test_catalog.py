"""The event catalog (issue 7): its data against the documents, its parsers, its lookups.

``tests/data/seeds/`` holds copies of two of the documents the catalog is built from
(``scripts/build_catalog.py`` reads them all from the project's seeds): ``000_*``, Dovecot
2.4's list of events, and ``003_*``, Stalwart's events. The tests count their events with
a plain regular expression, independent of the parsers, and rebuild the parts of the
catalog that come from them to check that ``catalog.json`` is up to date. What the other
three documents add is checked by hard-coded counts (each comment says how it was
counted) and by the parsers' tests on excerpts copied from them.
"""

from __future__ import annotations

import json
import re
from importlib import resources
from typing import Any

import orjson
import pytest

from exporter.catalog import build
from exporter.catalog.build import dovecot_rst, dovecot_site, dovecot_wiki, rst, stalwart_md
from exporter.catalog.generate import generate
from exporter.catalog.model import Catalog, DovecotEvent, StalwartEvent, load_catalog
from exporter.catalog.show import as_json, categories_as_json, describe_categories, describe_events
from exporter.event import Event
from exporter.filter import compile_filter
from exporter.filter.compile import LOG_TYPES
from exporter.sources.stalwart import read_webhook
from tests.support import DATA

SEEDS = DATA / "seeds"
DOVECOT_RST = (SEEDS / "000_1d7fa07a027a6bb7.txt").read_text(encoding="utf-8")
STALWART_MD = (SEEDS / "003_d782507e8b31174f.txt").read_text(encoding="utf-8")
CAPTURE = DATA / "dovecot-events.ndjson"


@pytest.fixture(scope="module")
def catalog() -> Catalog:
    return load_catalog()


@pytest.fixture(scope="module")
def data() -> dict[str, Any]:
    raw = resources.files("exporter.catalog").joinpath("catalog.json").read_bytes()
    loaded: dict[str, Any] = orjson.loads(raw)
    return loaded


# -- counts against the documents ---------------------------------------------------------


def test_every_event_of_the_dovecot_24_list_is_in(catalog: Catalog) -> None:
    names = re.findall(r"^\.\. dovecot_core:event:: (\S+)$", DOVECOT_RST, re.MULTILINE)
    assert len(names) == len(set(names)) == 130
    in_list = {n for n, e in catalog.dovecot_events.items() if "dovecot-2.4" in e.docs}
    assert in_list == set(names)


def test_what_the_other_dovecot_documents_add(catalog: Catalog) -> None:
    events = catalog.dovecot_events.values()
    # 001: one "Field | Description |" table header per event: grep -c gives 130.
    assert sum("dovecot-2.4-site" in event.docs for event in events) == 130
    # 002: 39 "*name*" in the text (grep -o), less the 6 inside bullets ("fields from
    # *x*" twice, "The *http_request_finished* is ..." twice, "Same fields as *x*" twice).
    assert sum("dovecot-2.3" in event.docs for event in events) == 33
    site_only = {e.name for e in events if e.docs == ("dovecot-2.4-site",)}
    assert site_only == {
        "mail_metadata_accessed",
        "message_hashing_msg_full",
        "message_hashing_msg_part",
    }
    wiki_only = {e.name for e in events if e.docs == ("dovecot-2.3",)}
    assert wiki_only == {"auth_client_request_continue"}  # 2.4 calls it ..._continued
    assert len(catalog.dovecot_events) == 130 + 3 + 1


def test_every_stalwart_row_is_in(catalog: Catalog) -> None:
    rows = re.findall(r"^\|`([^`|]+)`\|([^|]*)\|`([A-Z]+)`\|$", STALWART_MD, re.MULTILINE)
    assert len(rows) == 541
    assert {
        event.id: (event.description, event.level) for event in catalog.stalwart_events.values()
    } == {event_id: (description, level.lower()) for event_id, description, level in rows}
    keys = re.findall(r"^- `(\w+)`: ", STALWART_MD.split("## Key Types")[1], re.MULTILINE)
    assert len(keys) == 74
    assert list(catalog.stalwart_key_types) == keys
    assert list(catalog.stalwart_levels) == ["info", "warn", "error", "debug", "trace", "disable"]


def test_the_data_file_is_what_the_parsers_make_of_the_copied_documents(
    data: dict[str, Any],
) -> None:
    report = build.Report()
    rebuilt = build.rst_events(dovecot_rst.parse(DOVECOT_RST), report)
    shipped = data["dovecot"]["events"]
    for name, entry in rebuilt.items():
        expected = {k: v for k, v in build._compact(entry).items() if k != "docs"}
        assert {k: v for k, v in shipped[name].items() if k in expected} == expected, name
    assert data["stalwart"] == build.stalwart_data(stalwart_md.parse(STALWART_MD))
    # the file is the script's own writing of its data: an entry per line
    text = resources.files("exporter.catalog").joinpath("catalog.json").read_text("utf-8")
    assert build.dumps(data) == text
    assert json.loads(text) == data


# -- Dovecot events, fields and inheritance ---------------------------------------------


def test_fields_resolve_groups_and_inherit_chains_in_order(catalog: Catalog) -> None:
    event = catalog.dovecot_events["auth_client_passdb_lookup_started"]
    assert event.inherits == ("auth_client_lookup",)
    # global fields, the group's own, then what it inherits (auth_client_common)
    assert list(event.fields) == [
        "duration", "reason_code",
        "user", "error",
        "mechanism", "service", "transport", "session", "certificate_user", "client_id",
        "local_name", "local_ip", "remote_ip", "local_port", "remote_port", "real_local_ip",
        "real_remote_ip", "real_local_port", "real_remote_port", "tls_cipher",
        "tls_cipher_bits", "tls_pfs", "tls_protocol",
    ]  # fmt: skip
    assert event.fields["user"] == "Full username to lookup."
    assert event.fields["client_id"] == (
        "Expands to client ID request as IMAP arglist. Needs imap_id_retain=yes."
    )
    assert event.fields["transport"] == (
        "Transport security indicator. Values:\n- insecure\n- secured\n"
        "  Changed in v2.4.0, v3.0.0: Secure non-TLS connections (e.g. from localhost) are"
        " now secured rather than trusted.\n- TLS"
    )
    assert event.field_versions["transport"] == "changed v2.4.0, v3.0.0"
    assert event.section == "Events / Authentication Client"
    assert event.description == "Authentication client starts a passdb lookup."
    assert event.added == "v2.3.7"


def test_mailbox_events_inherit_three_levels(catalog: Catalog) -> None:
    # mail_expunged :inherit: mailbox; mailbox :inherit: mail_user;
    # mail_user :inherit: mail_storage_service_user
    event = catalog.dovecot_events["mail_expunged"]
    assert list(event.fields) == [
        "duration", "reason_code", "uid", "mailbox", "mailbox_guid", "user", "session",
    ]  # fmt: skip
    assert event.field_versions == {"mailbox": "added v2.3.9", "mailbox_guid": "added v2.3.10"}
    assert event.section == "Events / Mail User / Mailbox"


def test_the_nearest_definition_of_a_field_wins(catalog: Catalog) -> None:
    # smtp_recipient, smtp_transaction and smtp_connection each describe "session"
    event = catalog.dovecot_events["smtp_server_transaction_rcpt_finished"]
    assert event.fields["session"].startswith("Session ID for this transaction and recipient.")
    assert event.fields["status_code"].startswith("SMTP status code for the reply.")
    assert event.fields["connection_id"].startswith("The session ID for this connection.")
    assert event.field_versions["connection_id"] == "added v2.3.18"
    # an event's own field overrides the one it inherits
    bucket = catalog.dovecot_events["fs_dictmap_max_bucket_changed"]
    assert bucket.inherits == ("fs_file", "fs_iter")  # events, not field groups
    assert bucket.fields["reason"] == "Either file or iter depending on the source of the event."
    assert bucket.fields["file_type"].startswith("(This field only exists for files accessed")
    assert bucket.changed == "v2.3.14"


def test_several_groups_and_field_annotations(catalog: Catalog) -> None:
    event = catalog.dovecot_events["auth_passdb_request_finished"]
    assert event.inherits == ("auth_server_common", "auth_server_passdb")
    assert {"passdb", "passdb_name", "passdb_id", "original_user", "cache"} <= set(event.fields)
    assert event.field_versions["passdb_id"] == "added v2.3.9"
    assert event.field_versions["cache"] == "added v2.3.19"
    assert event.field_versions["mechanism"] == "added v2.3.12"
    assert event.fields["cache"] == "- miss: Was not cached\n- hit: Found from cache"


def test_versions(catalog: Catalog) -> None:
    events = catalog.dovecot_events
    assert events["auth_client_cache_flush_started"].removed == "v2.4.0, v3.0.0"
    assert events["mail_cache_lookup_finished"].added == "v2.3.15"
    assert events["mail_cache_lookup_finished"].removed == (
        "v2.3.18 (Removed for performance reasons)"
    )
    assert events["pop3_command_finished"].added == "v2.4.0, v3.0.0"
    assert events["imap_command_finished"].added is None
    imap = events["imap_command_finished"]
    assert imap.field_versions["cmd_name"] == "added v2.3.9; changed v2.3.11"
    assert imap.fields["cmd_name"] == (
        "IMAP command name uppercased (e.g. FETCH).\n"
        "Changed in v2.3.11: Contains unknown for unknown command names."
    )
    assert imap.field_versions["net_in_bytes"] == "changed v2.4.0, v3.0.0"


def test_descriptions_keep_notes_and_tables(catalog: Catalog) -> None:
    imap = catalog.dovecot_events["imap_command_finished"]
    assert imap.description.endswith(
        "Note: This event is currently not sent for pre-login IMAP commands."
    )
    cache = catalog.dovecot_events["mail_cache_decision_changed"]
    assert "\n- temp: The field is cached for 1 week and dropped on the next purge.\n" in (
        cache.description
    )
    action = catalog.dovecot_events["sieve_action_finished"]
    assert action.fields["action_name"].startswith(
        "- discard: The discard action was executed successfully"
    )
    # the list-table after login_aborted, at column 0, is the one its reason field means
    reason = catalog.dovecot_events["login_aborted"].fields["reason"]
    assert reason.startswith("Short reason, see the short to long reason mapping in the table")
    assert reason.endswith(
        "\n- user_disabled: User is in deny passdb, or in some other way disabled passdb."
    )
    assert reason.count("\n- ") == 22  # rows "   * - ``...``" at column 3 in 000
    # the repeated ":field cmd_name:" of the managesieve group: the first one is kept
    managesieve = catalog.dovecot_events["managesieve_command_finished"]
    assert managesieve.fields["cmd_name"] == "Name of the ManageSieve command."


def test_2_3_fields_and_2_3_only_events(catalog: Catalog) -> None:
    imap = catalog.dovecot_events["imap_command_finished"]
    assert imap.fields_v23["bytes_in"] == "How many bytes of client input/output command has used."
    assert "bytes_in" not in imap.fields
    assert catalog.fields_of("imap_command_finished")["bytes_in"] == imap.fields_v23["bytes_in"]
    continue_ = catalog.dovecot_events["auth_client_request_continue"]
    assert continue_.fields == {}
    assert continue_.fields_v23 == {"id": "event id"}
    assert continue_.added == "v2.3.6"
    assert continue_.section == "Authentication Client (v2.3.6)"
    # "fields from *client_connection_connected*"
    disconnected = catalog.dovecot_events["client_connection_disconnected"].fields_v23
    assert list(disconnected) == [
        "client_ip", "client_port", "ip", "port", "bytes_in", "bytes_out", "reason",
    ]  # fmt: skip


def test_site_only_events(catalog: Catalog) -> None:
    event = catalog.dovecot_events["mail_metadata_accessed"]
    assert event.section is None
    assert event.added == "v3.0.0"
    assert event.description == (
        "A mail was opened for reading its metadata.\n"
        "Note: This event is not sent when mails' body is accessed."
    )
    assert list(event.fields)[:4] == ["duration", "reason_code", "seq", "uid"]


def test_stalwart_events(catalog: Catalog) -> None:
    success = catalog.stalwart_events["auth.success"]
    assert (success.description, success.level, success.category) == (
        "Authentication successful",
        "info",
        "auth",
    )
    assert catalog.stalwart_events["tls.not-configured"].level == "error"
    assert catalog.fields_of("auth.success") == {}
    with pytest.raises(KeyError):
        catalog.fields_of("no_such_event")


# -- categories ----------------------------------------------------------------------------


def test_category_tree(catalog: Catalog) -> None:
    parents = catalog.categories
    assert parents["mailbox"] == "storage"
    # 000's "Mailbox Categories" table heads "mail" with "storage"; 004 (the events
    # design) says "mail category has parent mailbox, which has parent storage".
    assert parents["mail"] == "mailbox"
    assert catalog.category_path("mail") == ["mail", "mailbox", "storage"]
    sieve = [name for name in parents if name.startswith("sieve-")]
    assert sieve == ["sieve-action", "sieve-execute", "sieve-runtime", "sieve-storage"]
    assert all(parents[name] == "sieve" for name in sieve)
    for driver in ("cassandra", "mysql", "pgsql", "sqlite", "sqlpool"):
        assert parents[driver] == "sql"
    for root in ("storage", "sieve", "sql", "auth", "imap", "service:<name>", "fts-flatcurve"):
        assert parents[root] is None
    for storage in ("imapc", "maildir", "mbox", "mdbox", "obox", "sdbox", "pop3c"):
        assert parents[storage] == "storage"
    assert len(parents) == 56  # 55 in 000's five tables ("storage" twice), fts-flatcurve (001)
    assert catalog.category_descriptions["http-client"] == "HTTP client library\nAdded in v2.3.16"


def test_known_categories(catalog: Catalog) -> None:
    assert catalog.known_category("storage")
    assert catalog.known_category("service:imap")  # service:<name>
    assert catalog.known_category("service:imap-login")
    assert not catalog.known_category("service:")
    assert catalog.known_category("error")  # a log type
    assert catalog.known_category("acme")  # a Stalwart event's category
    assert not catalog.known_category("storge")
    assert catalog.closest_category("storge") == "storage"
    assert catalog.closest_category("sieve_action") == "sieve-action"
    assert catalog.closest_category("zzzzzz") is None


# -- find and suggestions -------------------------------------------------------------------


def names(events: list[DovecotEvent | StalwartEvent]) -> list[str]:
    return [event.name for event in events]


def test_find_with_wildcards(catalog: Catalog) -> None:
    assert names(catalog.find("imap_command_*")) == ["imap_command_finished"]
    assert names(catalog.find("IMAP_CLIENT_*")) == [
        "imap_client_hibernated",
        "imap_client_unhibernate_retried",
        "imap_client_unhibernated",
    ]
    assert names(catalog.find("?ns_request_finished")) == ["dns_request_finished"]
    assert names(catalog.find("auth.*", "stalwart")) == [
        "auth.banned", "auth.error", "auth.failed", "auth.missing-totp", "auth.success",
        "auth.too-many-attempts",
    ]  # fmt: skip
    assert catalog.find("auth.*", "dovecot") == []
    both = catalog.find("*session*")
    assert {event.source for event in both} == {"dovecot", "stalwart"}
    assert [e.source for e in both] == sorted(e.source for e in both)  # Dovecot's first


def test_find_without_wildcards_is_exact_or_a_search(catalog: Catalog) -> None:
    assert names(catalog.find("fs")) == ["fs"]  # exact, not fs_file, fs_iter, ...
    assert names(catalog.find("Auth.Success")) == ["auth.success"]
    assert names(catalog.find("hibernat", "dovecot")) == [
        "imap_client_hibernated",
        "imap_client_unhibernate_retried",
        "imap_client_unhibernated",
    ]
    assert len(catalog.find(None)) == len(catalog.find("")) == 134 + 541
    assert len(catalog.find(source="stalwart")) == 541
    assert catalog.find("no such event") == []
    with pytest.raises(ValueError, match="source must be one of dovecot, stalwart"):
        catalog.find("x", "postfix")  # type: ignore[arg-type]


def test_find_categories(catalog: Catalog) -> None:
    assert catalog.find_categories("sieve*") == [
        "sieve", "sieve-action", "sieve-execute", "sieve-runtime", "sieve-storage",
    ]  # fmt: skip
    assert catalog.find_categories("mail") == ["mail"]
    assert "mail-cache" in catalog.find_categories("cache")


def test_closest(catalog: Catalog) -> None:
    assert catalog.closest_event("imap_comand_finished") == "imap_command_finished"
    assert catalog.closest_event("IMAP_COMMAND_FINISH") == "imap_command_finished"
    assert catalog.closest_event("auth.sucess") == "auth.success"
    assert catalog.closest_event("auth.sucess", "dovecot") != "auth.success"
    assert catalog.closest_event("qqqqqqq") is None
    assert catalog.closest_field("cmd_nme") == "cmd_name"
    assert catalog.closest_field("acountId") == "accountId"
    assert catalog.closest_field("qqqqqqq") is None


def test_known_fields(catalog: Catalog) -> None:
    assert catalog.known_field("duration")
    assert catalog.known_field("cmd_name")
    assert catalog.known_field("bytes_in")  # Dovecot 2.3
    assert catalog.known_field("accountId")  # a Stalwart key
    assert catalog.known_field("id_param_name")  # id_param_<param>
    assert catalog.known_field("id_invalid1")  # id_invalid<num>
    assert not catalog.known_field("id_param_")
    assert not catalog.known_field("cmd_nme")
    assert catalog.known_event("imap_command_finished")
    assert not catalog.known_event("IMAP_COMMAND_FINISHED")


def test_a_real_dovecot_capture_is_all_known(catalog: Catalog) -> None:
    """Every name in the events a real Dovecot 2.3.19.1 sent is in the catalog."""
    for line in CAPTURE.read_bytes().splitlines():
        event = orjson.loads(line)
        assert catalog.known_event(event["event"]), event["event"]
        for category in event["categories"]:
            assert catalog.known_category(category), category
        for name in event["fields"]:
            assert catalog.known_field(name), name


def test_a_filter_s_names(catalog: Catalog) -> None:
    info = compile_filter("event=imap_comand_finished AND category=storag AND cmd_nme=select").info
    assert [catalog.closest_event(name) for name in info.event_names] == ["imap_command_finished"]
    assert [catalog.closest_category(name) for name in info.categories] == ["storage"]
    assert [catalog.closest_field(name) for name in info.fields] == ["cmd_name"]


# -- text and JSON for the CLI -------------------------------------------------------------


def test_describe_one_line_per_event(catalog: Catalog) -> None:
    text = describe_events(catalog.find("dns_*request_finished"), fields=False)
    assert text == (
        "dns_request_finished         DNS request sent by DNS client library to DNS worker"
        " process has been finished.\n"
        "dns_worker_request_finished  DNS request finished being processed by DNS worker"
        " process.\n"
    )
    mixed = describe_events(
        catalog.find("*cache_flush*") + catalog.find("auth.banned"), fields=False
    )
    assert mixed.splitlines() == [
        "Dovecot:",
        "auth_client_cache_flush_finished  (removed v2.4.0, v3.0.0) Deprecated; do not use.",
        "auth_client_cache_flush_started   (removed v2.4.0, v3.0.0) Deprecated; do not use.",
        "",
        "Stalwart (name, level):",
        "auth.banned                       warn     IP address banned after multiple"
        " authentication failures",
    ]
    assert describe_events([], fields=True) == ""


def test_describe_an_event_with_fields(catalog: Catalog) -> None:
    text = describe_events(catalog.find("imap_command_finished"), fields=True)
    lines = text.splitlines()
    assert lines[0] == "imap_command_finished  (dovecot, Events / IMAP / IMAP Command)"
    assert "  inherits: imap_command" in lines
    assert "  documented in: dovecot-2.4, dovecot-2.4-site, dovecot-2.3" in lines
    assert (
        "    cmd_name            IMAP command name uppercased (e.g. FETCH)."
        " [added v2.3.9; changed v2.3.11]"
    ) in lines
    assert (
        "                        Changed in v2.3.11: Contains unknown for unknown command names."
    ) in lines
    assert "  fields in the Dovecot 2.3 wiki only:" in lines
    assert not describe_events(catalog.find("imap_command_finished"), fields=False).count(
        "cmd_name"
    )
    stalwart = describe_events(catalog.find("auth.success"), fields=True)
    assert stalwart.startswith("auth.success  (stalwart, category auth, level info)\n")
    assert "accountId, attempt, blobId" in stalwart


def test_as_json(catalog: Catalog) -> None:
    found = catalog.find("mail_expunged") + catalog.find("auth.success")
    data = as_json(found, fields=True)
    assert orjson.loads(orjson.dumps(data)) == data
    assert data[0]["source"] == "dovecot"
    assert data[0]["fields"]["uid"] == "UID of the expunged mail."
    assert data[1] == {
        "source": "stalwart",
        "name": "auth.success",
        "category": "auth",
        "level": "info",
        "description": "Authentication successful",
    }
    assert "fields" not in as_json(found, fields=False)[0]


def test_categories_text_and_json(catalog: Catalog) -> None:
    text = describe_categories(["storage", "mail"], catalog)
    assert text == "storage  Mail storage parent category\nmail     Mail  (mailbox < storage)\n"
    assert categories_as_json(["mail"], catalog) == [
        {"name": "mail", "parent": "mailbox", "description": "Mail"}
    ]


# -- the parsers, on excerpts ---------------------------------------------------------------

RST_EXCERPT = """\
######
Events
######

.. dovecot_event:field_global::

   :field duration: Duration of the event (in microseconds)

Part
====

..
   Commented out.

   Hidden
   ======

.. dovecot_event:field_group:: base

   :field user: Username.
   :field result: * ``ok``
                  * ``next``

.. dovecot_event:field_group:: child
   :inherit: base

   :field user @added;v2.3.9: Full username, e.g.
     :dovecot_core:ref:`auth_username_format <auth_username_format>`.

.. dovecot_core:event:: thing_finished
   :added: v2.4.0;v3.0.0
   :removed: v2.4.1 Gone again
   :inherit: child

   :field reply: POP3 reply: Values:
                                * ``OK``
                                * ``FAIL``

   Thing finished.
   Second line of the paragraph.

   .. todo:: not shown

   .. Note:: A note
             on two lines.

Sub
---

.. dovecot_core:event:: other
   :inherit: thing_finished
"""


def test_rst_excerpt() -> None:
    doc = dovecot_rst.parse(RST_EXCERPT)
    assert doc.warnings == []
    thing, other = doc.events
    assert (thing.name, thing.section) == ("thing_finished", "Part")  # "Hidden" is a comment
    assert (thing.added, thing.removed) == ("v2.4.0, v3.0.0", "v2.4.1 (Gone again)")
    assert thing.description == (
        "Thing finished. Second line of the paragraph.\nNote: A note on two lines."
    )
    assert [(f.name, f.description) for f in thing.fields] == [
        ("reply", "POP3 reply: Values:\n- OK\n- FAIL")
    ]
    assert other.section == "Part / Sub"
    events = build.rst_events(doc, build.Report())
    assert events["other"]["fields"] == {
        "duration": "Duration of the event (in microseconds)",
        "reply": "POP3 reply: Values:\n- OK\n- FAIL",
        "user": "Full username, e.g. auth_username_format.",
        "result": "- ok\n- next",
    }
    assert events["other"]["field_versions"] == {"user": "added v2.3.9"}


def test_rst_inherit_problems_are_reported() -> None:
    text = """\
.. dovecot_event:field_group:: a
   :inherit: b

.. dovecot_event:field_group:: b
   :inherit: a, missing

.. dovecot_core:event:: e
   :inherit: a
"""
    report = build.Report()
    assert build.rst_events(dovecot_rst.parse(text), report)["e"]["fields"] == {}
    assert report.warnings == [
        "dovecot-2.4: inherit loop e > a > b",
        "dovecot-2.4: b inherits unknown missing",
    ]


def test_rst_rendering() -> None:
    assert (
        rst.inline("See :ref:`event_reasons` and ``x``, :ref:`y <z>`.")
        == "See event_reasons and x, y."
    )
    assert rst.versions("2.3.14 In addition") == ("v2.3.14", "In addition")
    assert rst.versions("v2.4.0,v3.0.0") == ("v2.4.0, v3.0.0", "")
    table = rst.render(
        [
            "========= =====",
            "Decision  Description",
            "========= =====",
            "``no``    The field is",
            "          not cached.",
            "``yes``   Cached.",
            "========= =====",
        ]
    )
    assert table.text == "- no: The field is not cached.\n- yes: Cached."
    bullet = rst.render(
        [
            "* .. versionchanged:: 2.3.14 In addition it can be",
            "                      shrunk.",
        ]
    )
    assert bullet.text == "- Changed in v2.3.14: In addition it can be shrunk."
    assert bullet.versions == [("changed", "v2.3.14")]


SITE_EXCERPT = """\
Search K
Appearance
fts_dovecot_too_many_triplets
Emitted when number of triplets exceeds the limit defined by
fts_dovecot_max_triplets
.
Field | Description |
---|---|
duration | Duration of the event (in microseconds) |
triplet_count | Number of triplets found |
service | Name of the service. Examples: Added: 3.0.0 |
imap_id_received
Added: 3.0.0
This event is emitted when the IMAP ID command was received.Field | Description |
---|---|
passdb_name |
|
transport | Transport security indicator. Values:
|
cmd_human_args | IMAP command's full parameters, as human-readable output. Often it's the
same as Multi-line parameters are written only as |
sieve_action_finished
Emitted when sieve action is completed successfully.
Field | Description | ||||||||||||||||||||
---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|
duration | Duration of the event (in microseconds) | ||||||||||||||||||||
Category | Description | Category Type |
---|---|---|
cassandra | Cassandra CQL events | sql |
fts-flatcurve | fts-flatcurve plugin | root |
sql | SQL parent category | sql |
Reason | Description |
---|---|
fts:index | Message is being added to the full text search index. |
"""


def test_site_excerpt() -> None:
    doc = dovecot_site.parse(SITE_EXCERPT)
    assert doc.warnings == []
    triplets, imap_id, sieve = doc.events
    assert triplets.description == [
        "Emitted when number of triplets exceeds the limit defined by",
        "fts_dovecot_max_triplets",  # a link, not an event: a table has not ended yet
        ".",
    ]
    assert triplets.fields == {
        "duration": "Duration of the event (in microseconds)",
        "triplet_count": "Number of triplets found",
        "service": "Name of the service. Examples:",
    }
    assert triplets.field_versions == {"service": "added v3.0.0"}
    assert imap_id.added == "v3.0.0"
    assert imap_id.description == ["This event is emitted when the IMAP ID command was received."]
    assert imap_id.fields == {
        "passdb_name": "",
        "transport": "Transport security indicator. Values:",
        "cmd_human_args": "IMAP command's full parameters, as human-readable output. Often"
        " it's the same as Multi-line parameters are written only as",
    }
    assert sieve.fields == {"duration": "Duration of the event (in microseconds)"}
    assert doc.categories == [
        ("cassandra", "Cassandra CQL events", "sql"),
        ("fts-flatcurve", "fts-flatcurve plugin", None),
        ("sql", "SQL parent category", None),
    ]


WIKI_EXCERPT = (
    "Events ====== List of all events. Contents 1. Events 1. Connection 2. HTTP "
    "Connection ---------- These events apply only for connections using the "
    '"connection API". *client_connection_connected* * client_ip: source IP * port: target '
    "port *client_connection_disconnected* * fields from *client_connection_connected* * "
    "bytes_in: amount of data read * reason: disconnection reason HTTP (v2.3.6) ------------- "
    "*http_request_finished* * status_code: HTTP result status code * bytes_in, bytes_out: "
    "Number of bytes received/sent for this request. *http_request_redirected* * "
    "Intermediate event sent while HTTP request is being redirected. The "
    "*http_request_finished* is still being sent as well. * Same fields as "
    "*http_request_finished* *dns_worker_request_started* and *dns_request_started* "
    "(This file was created from the wiki on 2019-06-19 12:42)"
)


def test_wiki_excerpt() -> None:
    doc = dovecot_wiki.parse(WIKI_EXCERPT)
    assert doc.warnings == []
    events = {event.name: event for event in doc.events}
    assert list(events) == [
        "client_connection_connected",
        "client_connection_disconnected",
        "http_request_finished",
        "http_request_redirected",
        "dns_worker_request_started",
        "dns_request_started",
    ]
    assert events["client_connection_disconnected"].fields == {
        "client_ip": "source IP",
        "port": "target port",
        "bytes_in": "amount of data read",
        "reason": "disconnection reason",
    }
    assert events["http_request_finished"].fields == {
        "status_code": "HTTP result status code",
        "bytes_in": "Number of bytes received/sent for this request.",
        "bytes_out": "Number of bytes received/sent for this request.",
    }
    redirected = events["http_request_redirected"]
    assert redirected.fields == events["http_request_finished"].fields
    assert redirected.notes == [
        "Intermediate event sent while HTTP request is being redirected. The"
        " http_request_finished is still being sent as well."
    ]
    assert (redirected.section, redirected.added) == ("HTTP (v2.3.6)", "v2.3.6")
    assert events["client_connection_connected"].added is None
    assert events["dns_request_started"].fields == {}
    assert events["dns_request_started"].notes == []  # the footer is not a note


def test_stalwart_excerpt() -> None:
    doc = stalwart_md.parse(
        "## Event Levels\n\n- `info`: General.\n- `debug`: Detail.\n\n"
        "```toml\n[tracing.level]\n# not a heading\n```\n\n"
        "## Event Types\n\n| Event | Description | Level |\n| --- | --- | --- |\n"
        "|`auth.success`|Authentication successful|`INFO`|\n"
        "|`auth.success`|Again|`INFO`|\n"
        "|`auth.failed`|Authentication failed|`TRACE`|\n\n"
        "## Key Types\n\n- `accountId`: Unique identifier for an account\n"
    )
    assert doc.levels == {"info": "General.", "debug": "Detail."}
    assert doc.events == {
        "auth.success": ("Authentication successful", "info"),
        "auth.failed": ("Authentication failed", "trace"),
    }
    assert doc.key_types == {"accountId": "Unique identifier for an account"}
    assert doc.warnings == [
        "line 16: auth.success listed again",
        "levels not in the level list: ['trace']",
    ]


def test_design_parents() -> None:
    text = "mail category has parent mailbox, which has parent storage. If an event filter"
    assert build.design_parents(text) == {"mail": "mailbox", "mailbox": "storage"}


# -- the category tree and Stalwart's levels in matching ------------------------------------


def test_a_category_named_in_process_comes_with_its_documented_ancestors() -> None:
    event = Event.create("mail_opened", categories=["mail", "service:imap", "mine"])
    assert event.categories == ["storage", "mailbox", "mail", "service:imap", "mine"]
    for category in ("storage", "mailbox", "mail", "service:imap", "mine"):
        assert compile_filter(f"category={category}").matches(event.flatten())
    assert not compile_filter("category=sieve").matches(event.flatten())
    sql = Event.create("sql_query_finished", categories=["mysql"])
    assert compile_filter("category=sql").matches(sql.flatten())


def _stalwart(event_id: str) -> Event:
    body = {"events": [{"id": "1", "createdAt": "2025-01-01T00:00:00Z", "type": event_id}]}
    (event,) = read_webhook(orjson.dumps(body))
    return event


@pytest.mark.parametrize(
    ("event_id", "log_type"),
    [
        ("auth.error", "error"),  # level error
        ("acme.auth-error", "warning"),  # warn
        ("acme.auth-start", "info"),
        ("acme.client-missing-sni", "debug"),
        ("auth.missing-totp", "debug"),  # trace
    ],
)
def test_stalwart_levels_are_log_types(event_id: str, log_type: str) -> None:
    event = _stalwart(event_id)
    for other in LOG_TYPES:
        assert compile_filter(f"category={other}").matches(event) == (other == log_type)
    assert compile_filter(f"category={event_id.split('.')[0]}").matches(event)


def test_an_unknown_stalwart_event_has_no_log_type() -> None:
    event = _stalwart("future.event")
    assert not any(compile_filter(f"category={t}").matches(event) for t in LOG_TYPES)
    assert compile_filter("category=future").matches(event)


def test_generated_events_carry_ancestors_and_levels() -> None:
    for event in generate(events="mail_metadata_accessed", count=5):
        assert event.categories == ["storage", "mailbox", "mail"]
        assert event.log_type == "debug"
    catalog = load_catalog()
    for event in generate(source="stalwart", count=300, seed=2):
        assert event.name is not None
        assert event.log_type == catalog.stalwart_log_type(event.name)
