"""Retrying, in one place: the policy (exponential backoff with full jitter) and the one
retry loop every driver goes through.

Drivers only classify a failure by the error they raise (``exporter.errors``); here it
becomes a decision: delivered, wait and try again, or give up (the caller dead-letters
the batch with the reason). A destination's ``retry_after`` pauses the whole exporter
through its :class:`PauseGate`, so no other batch hits a server that asked for quiet.

Full jitter (a uniform draw between 0 and the exponential cap) keeps many exporters
that failed together from retrying together. By default a batch is retried until it is
delivered; ``max_attempts`` and ``max_elapsed`` bound that, after which it is
dead-lettered. A ``Retry-After`` from the destination is honoured, capped by
``max_retry_after``.

A receiver that answers item by item (:class:`~drivers.base.Partial`) settles part of a
batch: what it refused for good goes to ``settle`` (the dead-letter file), what it took
is delivered, and only the items it asked to have again are retried, as a batch of their
own, like any retryable failure. An item it took is never sent again.
"""

from __future__ import annotations

import random
from collections.abc import Awaitable, Callable
from dataclasses import dataclass

import anyio

from drivers.base import Batch, Driver, Partial
from exporter.delivery.health import counted
from exporter.errors import (
    DeliveryError,
    PermanentDeliveryError,
    RetryableDeliveryError,
    UsageError,
)


@dataclass(frozen=True, slots=True)
class RetryPolicy:
    initial_delay: float = 0.1
    """Seconds: the cap of the first backoff draw."""
    max_delay: float = 30.0
    """Seconds: the cap of every backoff draw."""
    max_attempts: int | None = None
    """Attempts in all (the first one included); None: until delivered."""
    max_elapsed: float | None = None
    """Seconds since the first attempt after which no retry starts; None: no limit."""
    max_retry_after: float = 300.0
    """Seconds: the longest pause a destination's Retry-After can ask for."""

    def __post_init__(self) -> None:
        if not 0 < self.initial_delay <= self.max_delay:
            raise UsageError(
                f"retry delays must satisfy 0 < initial ({self.initial_delay}) "
                f"<= maximum ({self.max_delay})"
            )
        if self.max_attempts is not None and self.max_attempts < 1:
            raise UsageError(f"retry max attempts must be at least 1, got {self.max_attempts}")
        if self.max_elapsed is not None and self.max_elapsed < 0:
            raise UsageError(f"retry max elapsed must not be negative, got {self.max_elapsed}")
        if self.max_retry_after < 0:
            raise UsageError(f"max retry-after must not be negative, got {self.max_retry_after}")

    def backoff(self, attempt: int, rng: random.Random) -> float:
        """The wait after failed attempt number ``attempt`` (1-based)."""
        cap = min(self.max_delay, self.initial_delay * 2 ** min(attempt - 1, 60))
        return rng.uniform(0.0, cap)

    def gives_up(self, attempts: int, elapsed: float) -> bool:
        """Whether no further attempt may start after ``attempts`` failed ones."""
        if self.max_attempts is not None and attempts >= self.max_attempts:
            return True
        return self.max_elapsed is not None and elapsed >= self.max_elapsed

    def retry_after(self, asked: float) -> float:
        return min(max(asked, 0.0), self.max_retry_after)


class PauseGate:
    """An exporter-wide 'not before this time', set by Retry-After."""

    def __init__(self, clock: Callable[[], float] = anyio.current_time) -> None:
        self._clock = clock
        self.until = 0.0

    def pause(self, seconds: float) -> None:
        self.until = max(self.until, self._clock() + seconds)

    def remaining(self) -> float:
        return max(0.0, self.until - self._clock())


@dataclass(slots=True)
class Outcome:
    """How delivering one batch ended; ``failure`` is None when what was left of it was
    delivered."""

    attempts: int
    failure: str | None = None
    last_error: str | None = None
    """The error of the last failed attempt (a batch abandoned at shutdown keeps it)."""
    left: Batch | None = None
    """What is still to deliver when a receiver took part of the batch (None: all of
    it): what a failure dead-letters, what a shutdown abandons."""
    settled: int = 0
    """Events of the batch a receiver refused for good, handed to ``settle``."""

    def remaining(self, batch: Batch) -> Batch:
        return batch if self.left is None else self.left


Settle = Callable[[Batch, Partial, int], Awaitable[None]]
"""Told of the items of a batch a receiver refused for good (the batch, the receiver's
answer, the attempt): dead-letters them with their reasons, counts the unnamed ones."""


FailedAttempt = Callable[[int, str, float | None], None]
"""Told of each failed attempt: its number, its error, and the seconds until the next
try (None: none, the batch is given up)."""


@dataclass(slots=True)
class DeliveryCounters:
    retries: int = 0
    """Attempts that failed and were tried again."""
    retry_after_pauses: int = 0


async def deliver(
    driver: Driver,
    batch: Batch,
    policy: RetryPolicy,
    gate: PauseGate,
    counters: DeliveryCounters,
    *,
    rng: random.Random,
    sleep: Callable[[float], Awaitable[None]] = anyio.sleep,
    clock: Callable[[], float] = anyio.current_time,
    outcome: Outcome | None = None,
    failed: FailedAttempt | None = None,
    settle: Settle | None = None,
) -> Outcome:
    """Send ``batch`` until delivered or the policy gives up. ``outcome``, when given, is
    the one returned, its ``attempts`` counted as they start (so whoever abandons the
    batch mid-way knows how many were made); ``failed`` is told of every failed attempt
    (the exporter's log and health), ``settle`` of the items a receiver refused."""
    started = clock()
    outcome = Outcome(0) if outcome is None else outcome

    def give_up(failure: str, error: str) -> Outcome:
        outcome.failure = failure
        outcome.last_error = error
        if failed is not None:
            failed(outcome.attempts, error, None)
        return outcome

    while True:
        while (wait := gate.remaining()) > 0:
            until = gate.until
            await sleep(wait)
            if gate.until == until:  # not lengthened by another batch meanwhile
                break
        outcome.attempts += 1
        attempts = outcome.attempts
        sent = outcome.remaining(batch)
        try:
            partial = await driver.send(sent)
            if partial is None:
                return outcome
            retry = await _settle(sent, partial, attempts, outcome, settle)
            if retry is None:
                return outcome
            error, retry_after = retry
        except RetryableDeliveryError as exc:
            error, retry_after = str(exc), exc.retry_after
        except PermanentDeliveryError as exc:
            return give_up(str(exc), str(exc))
        except DeliveryError as exc:  # an unclassified DeliveryError: never retry blindly
            return give_up(f"{type(exc).__name__}: {exc}", f"{type(exc).__name__}: {exc}")
        except Exception as exc:  # a driver bug must not lose the batch silently
            failure = f"driver error {type(exc).__name__}: {exc}"
            return give_up(failure, failure)
        if policy.gives_up(attempts, clock() - started):
            return give_up(f"gave up after {counted(attempts, 'attempt')}: {error}", error)
        counters.retries += 1
        outcome.last_error = error
        if retry_after is not None:
            counters.retry_after_pauses += 1
            # Never faster than the backoff: "Retry-After: 0" must not spin.
            gate.pause(max(policy.retry_after(retry_after), policy.backoff(attempts, rng)))
            wait = gate.remaining()
        else:
            wait = policy.backoff(attempts, rng)
        if failed is not None:
            failed(attempts, error, max(wait, gate.remaining()))
        if retry_after is None:
            await sleep(wait)


async def _settle(
    sent: Batch, partial: Partial, attempt: int, outcome: Outcome, settle: Settle | None
) -> tuple[str, float | None] | None:
    """Hand what a receiver refused to ``settle`` and keep what it wants again as the
    batch's remainder: (the error, Retry-After) to retry it, None when nothing is left."""
    if partial.settled:
        if settle is None:  # a driver answering item by item needs an engine that listens
            raise AssertionError(f"{type(partial).__name__} without anyone to settle it")
        outcome.settled += partial.settled
        await settle(sent, partial, attempt)
    if not partial.retry:
        return None
    outcome.left = sent.subset(partial.retry)
    what = f"{counted(len(partial.retry), 'item')} of {len(sent)} to send again"
    return (f"{what}: {partial.retry_reason}" if partial.retry_reason else what), (
        partial.retry_after
    )
