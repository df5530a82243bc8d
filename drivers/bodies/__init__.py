"""What an HTTP request's body is made of, per protocol, and what its answer means.

The http driver posts, classifies transport failures and statuses, signs, compresses and
follows redirects; a :class:`Body` only says how a batch of formatted events becomes one
request (its bytes, Content-Type and the headers the protocol asks for), which statuses
the protocol says to retry, and, for a protocol that answers item by item (Elasticsearch
``_bulk``, OTLP's ``partialSuccess``), what a 2xx answer says of each item, as a
:class:`~drivers.base.Partial`. Each protocol is one module here; :mod:`.registry` lists
them, with the table of settings each one has (``[exporter.NAME.<table>]``).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Literal, Protocol

from drivers.base import Batch, Partial

EventFormat = Literal["json", "tab-text"]


@dataclass(frozen=True, slots=True)
class BodyContext:
    """What a body is made from: the exporter's event format and the body's own settings
    (its table's dataclass; None for a body that has none)."""

    event_format: EventFormat
    options: object | None = None


class Body(Protocol):
    """One protocol's request body and how its answers read."""

    @property
    def content_type(self) -> str: ...

    @property
    def retry_statuses(self) -> frozenset[int] | None:
        """The statuses the protocol says to retry (any other non-2xx is permanent);
        None: those of ``[exporter.NAME.http] retry_statuses``."""
        ...

    @property
    def reads_answer(self) -> bool:
        """Whether a 2xx answer's body says something of the items (then :meth:`answer`
        reads it); False: a 2xx means every item was taken."""
        ...

    def headers(self) -> Mapping[str, str]:
        """Headers every request of this body carries (a tenant, a channel, a token)."""
        ...

    def encode(self, batch: Batch) -> bytes:
        """The request body for the batch's events (before any compression)."""
        ...

    def answer(self, batch: Batch, status: int, content: bytes) -> Partial | None:
        """What a 2xx answer ``content`` says of ``batch``'s items: None when every one
        was taken; raise a DeliveryError when the answer cannot be read.

        A body may also have ``answered_statuses``, non-2xx statuses whose answer can name
        items (Splunk HEC's 400 with ``invalid-event-number``): the driver then reads that
        answer whole and asks here; None means it named none, and the status decides."""
        ...
