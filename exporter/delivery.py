"""The one retry loop every driver goes through.

Drivers only classify a failure by the error they raise (``exporter.errors``); here it
becomes a decision: delivered, wait and try again, or give up (the caller dead-letters
the batch with the reason). A destination's ``retry_after`` pauses the whole exporter
through its :class:`PauseGate`, so no other batch hits a server that asked for quiet.
"""

from __future__ import annotations

import random
from collections.abc import Awaitable, Callable
from dataclasses import dataclass

import anyio

from drivers.base import Batch, Driver
from exporter.errors import DeliveryError, PermanentDeliveryError, RetryableDeliveryError
from exporter.retry import RetryPolicy


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
    """How delivering one batch ended; ``failure`` is None when it was delivered."""

    attempts: int
    failure: str | None = None


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
) -> Outcome:
    """Send ``batch`` until delivered or the policy gives up. ``outcome``, when given, is
    the one returned, its ``attempts`` counted as they start (so whoever abandons the
    batch mid-way knows how many were made)."""
    started = clock()
    outcome = Outcome(0) if outcome is None else outcome
    while True:
        while (wait := gate.remaining()) > 0:
            until = gate.until
            await sleep(wait)
            if gate.until == until:  # not lengthened by another batch meanwhile
                break
        outcome.attempts += 1
        attempts = outcome.attempts
        try:
            await driver.send(batch)
            return outcome
        except RetryableDeliveryError as exc:
            if policy.gives_up(attempts, clock() - started):
                outcome.failure = f"gave up after {attempts} attempts: {exc}"
                return outcome
            counters.retries += 1
            if exc.retry_after is not None:
                counters.retry_after_pauses += 1
                # Never faster than the backoff: "Retry-After: 0" must not spin.
                gate.pause(max(policy.retry_after(exc.retry_after), policy.backoff(attempts, rng)))
            else:
                await sleep(policy.backoff(attempts, rng))
        except PermanentDeliveryError as exc:
            outcome.failure = str(exc)
            return outcome
        except DeliveryError as exc:  # an unclassified DeliveryError: never retry blindly
            outcome.failure = f"{type(exc).__name__}: {exc}"
            return outcome
        except Exception as exc:  # a driver bug must not lose the batch silently
            outcome.failure = f"driver error {type(exc).__name__}: {exc}"
            return outcome
