"""Several URLs of one service: which one a request goes to, failover and failback.

``[exporter.NAME.http] urls`` (``--http-url``, repeatable) lists more URLs of the same
service after the destination's own, the primary. Every request goes to the *active*
endpoint (the primary at start). A request that fails there with a retryable error (a
transport failure: refused, reset, timed out; a status of the retry table) makes the next
one active, so the retry loop's next attempt goes there: the move happens *at the next
attempt*, as Vector's and Fluent Bit's retries move to another endpoint, so the one retry
loop (``exporter.delivery.retry``) still decides when a batch is sent again (its first
backoff is short: 0.1 s at most by default). A ``Retry-After`` is the endpoint's own:
it pauses the exporter only when every endpoint failed since the last success (the whole
service asks for quiet); otherwise the next one is tried without waiting it out.

A permanent failure (a 4xx outside the retry table, a request that cannot be written)
moves nothing: another endpoint of the same service would answer the same. A batch that
was answered (2xx, a partial answer included) stays where it was answered.

Failback: ``failback_after`` seconds after it left the primary (or longer, if the
primary asked for a longer ``Retry-After``), the next request goes to the primary again;
if that fails too, the move is made again and the time starts again. When every other
endpoint fails, the rotation reaches the primary anyway.

Every move is counted per URL (:class:`EndpointStats`, read by ``/metrics`` and
``/ready``) and logged, rate-limited, on the exporter's log (``exporter=NAME
destination=...``): URLs are shown without their query (it may hold a token).
"""

from __future__ import annotations

import time
from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

from exporter.errors import RetryableDeliveryError
from exporter.observe.log import Log, RateLimit

OUTCOMES = ("ok", "retryable", "permanent")
"""A request's outcome at one endpoint: answered 2xx, failed and retryable, failed for good."""
MOVE_LOG_INTERVAL = 30.0
"""Seconds between two log lines of one kind of move (failover, failback)."""


@dataclass(slots=True)
class EndpointStats:
    """One URL of the service: what its requests did, and the moves away from it."""

    url: str
    """As it may be printed: without its query."""
    requests: Counter[str] = field(default_factory=Counter)
    """By outcome (:data:`OUTCOMES`)."""
    failovers: int = 0
    """Times a failure here moved the requests to the next endpoint."""
    failbacks: int = 0
    """Times the requests came back here after ``failback_after`` (the primary only)."""
    last_error: str | None = None


class Endpoints:
    """The active endpoint of a list of URLs (index 0 the primary), moved as the module
    says. One per driver; concurrent requests share it (a failure moves it only if it was
    at the endpoint that failed, so two requests failing together move it once)."""

    def __init__(
        self,
        names: Sequence[str],
        failback_after: float,
        *,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.stats = [EndpointStats(name) for name in names]
        self.failback_after = failback_after
        self._clock = clock
        self.active = 0
        self.left_primary_at: float | None = None
        """When the requests left the primary (monotonic); None while on it."""
        self._failback_at = 0.0
        self._failed_in_row: set[int] = set()
        """Endpoints that failed since the last success anywhere."""
        self.log: Log | None = None
        """Where moves are said (the exporter sets its own); None: nowhere."""
        self._limit = RateLimit(MOVE_LOG_INTERVAL, clock=clock)

    def __len__(self) -> int:
        return len(self.stats)

    @property
    def several(self) -> bool:
        return len(self.stats) > 1

    def failback_in(self) -> float | None:
        """Seconds until the primary is tried again; None while on it."""
        if self.active == 0:
            return None
        return max(0.0, self._failback_at - self._clock())

    def away_for(self) -> float | None:
        """Seconds since the requests left the primary; None while on it."""
        since = self.left_primary_at
        return None if since is None else self._clock() - since

    def pick(self) -> int:
        """The endpoint the next request goes to (the primary again once its time came)."""
        if self.active != 0 and self._clock() >= self._failback_at:
            away = self.active
            self.active = 0
            self.stats[0].failbacks += 1
            gone = self.away_for() or 0.0
            self._say(
                "failback",
                "info",
                f"failback: requests go to the primary {self.stats[0].url} again, after "
                f"{gone:.3g} s on {self.stats[away].url}",
            )
        return self.active

    def succeeded(self, index: int) -> None:
        self.stats[index].requests["ok"] += 1
        self._failed_in_row.clear()
        if index == 0:
            self.left_primary_at = None

    def refused(self, index: int, error: str) -> None:
        """A permanent failure at ``index``: counted, nothing moves."""
        stats = self.stats[index]
        stats.requests["permanent"] += 1
        stats.last_error = error

    def failed(self, index: int, error: RetryableDeliveryError) -> RetryableDeliveryError:
        """A retryable failure at ``index``: counted, the next endpoint made active (if
        ``index`` still was); the error the retry loop should see: without its
        Retry-After while another endpoint may take the batch at once."""
        stats = self.stats[index]
        stats.requests["retryable"] += 1
        stats.last_error = str(error)
        if not self.several:
            return error
        self._failed_in_row.add(index)
        if index == self.active:
            self._move_from(index, error)
        if len(self._failed_in_row) == len(self.stats):
            return error  # every endpoint failed: the whole service waits, as one would
        moved = RetryableDeliveryError(
            f"{error}; the next attempt goes to {self.stats[self.active].url}"
        )
        return moved

    def _move_from(self, index: int, error: RetryableDeliveryError) -> None:
        now = self._clock()
        self.active = (index + 1) % len(self.stats)
        self.stats[index].failovers += 1
        if index == 0:
            self.left_primary_at = now
            self._failback_at = now + max(self.failback_after, error.retry_after or 0.0)
        back = (
            f"; the primary is tried again in {self._failback_at - now:.3g} s"
            if self.active != 0
            else ""
        )
        self._say(
            "failover",
            "warning",
            f"failover: {self.stats[index].url} failed ({error}): requests go to "
            f"{self.stats[self.active].url}{back}",
        )

    def _say(self, kind: str, level: str, message: str) -> None:
        if self.log is None:
            return
        held = self._limit.allow(kind)
        if held is None:
            return
        line = message + self._limit.note(held)
        if level == "warning":
            self.log.warning(line)
        else:
            self.log.info(line)
