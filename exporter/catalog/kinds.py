"""What kind of value a documented field holds, read from its name and descriptions.

Dovecot's events design says fields are strings, numbers or timestamps (and the list of
events adds string lists such as ``reason_code``), but the list of events does not say
which field is which. Its names and words do, mostly: ``_usecs`` and ``_bytes`` are
numbers, "Number of ..." is a number, "Timestamp ..." on a ``_time`` field is a
timestamp, "Name of ..." is a string. A field is given a kind only when its name or
every description says so and nothing says otherwise; the rest stay unknown, and
``check`` says nothing about them.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from typing import Final, Literal, TypeAlias

Kind: TypeAlias = Literal["number", "string", "timestamp", "list"]
KINDS: Final[tuple[Kind, ...]] = ("number", "string", "timestamp", "list")

_NUMBER_NAME: Final = re.compile(
    r"(?:^|_)(?:usecs|bytes|count|port|size|attempts|uid|seq|faults|pid|cs|bits|successes"
    r"|errors|warnings|lookups|skipped|recipients|redirects|rows)$"
    r"|^(?:duration|utime|stime|rss|vsz|rchar|wchar|syscr|syscw|status_code|exit_code"
    r"|mails_\w+|attachments|attempt)$"
)
_NUMBER_WORDS: Final = re.compile(
    r"^(?:the )?(?:total )?(?:number|amount|count) of\b|^how many\b|^size of\b"
    r"|^sequence of\b|^index of\b|\bin bytes\b|\bin microseconds\b|\(integer\)"
    r"|\bid number\b|\bprocess id\b|\buser id\b|^uid of\b|\buid number\b|^imap uid\b"
    r"|^mail sequence number\b|\bcontext switches\b|\bpage (?:faults|reclaims)\b"
    r"|\bsyscalls\b|\bcpu time\b|\bchars \(bytes\)|^(?:the )?size \(in bytes\)",
    re.IGNORECASE,
)
_STRING_WORDS: Final = re.compile(
    r"\bname\b|\busername\b|\buser ?name\b"
    r"|\bmessage\b|\bstring\b|\baddress\b|\bip\b|\bpath\b|\bhostname\b|\bhost\b"
    r"|\bguid\b|\bsession id\b|\bconnection id\b|\btag\b|\bverb\b|\bheader\b"
    r"|\bparameters?\b|^mailbox\b|\breason\b|\bprotocol\b|\bmechanism\b|\bdriver\b"
    r"|\bcipher name\b|\bsni\b|\blocation\b|\bhash\b|\bkey name\b|\bvalues:"
    r"|^- |\byes\b|\beither\b|\bor\b.*\bor\b|, or \w+\.?$|\be\.g\. [a-z\"<]"
    r"|\bmask\b|\buppercased\b|\bsubject\b|\btype\b|\bfilename\b|\brequest path\b",
    re.IGNORECASE,
)
_TIMESTAMP_WORDS: Final = re.compile(r"^timestamp\b", re.IGNORECASE)
_LIST_WORDS: Final = re.compile(r"^list of .*\bstrings\b", re.IGNORECASE)


def field_kind(name: str, descriptions: Iterable[str]) -> Kind | None:
    """The kind of field ``name`` given every description the documents give it, or None
    when they do not say, or disagree."""
    texts = [text.strip() for text in descriptions if text.strip()]
    if name.endswith("_time") and texts and all(_TIMESTAMP_WORDS.search(t) for t in texts):
        return "timestamp"
    if texts and all(_LIST_WORDS.search(text) for text in texts):
        return "list"
    numeric = [bool(_NUMBER_WORDS.search(text)) for text in texts]
    stringy = [
        bool(_STRING_WORDS.search(text)) and not n for text, n in zip(texts, numeric, strict=True)
    ]
    if _NUMBER_NAME.search(name):
        return None if any(stringy) else "number"
    if texts and all(numeric):
        return "number"
    if texts and all(stringy):
        return "string"
    return None
