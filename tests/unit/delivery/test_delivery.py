"""The one retry loop: backoff with full jitter, Retry-After, giving up, classification."""

from __future__ import annotations

import random

import anyio
import anyio.lowlevel
import pytest

from drivers.base import Batch
from exporter.delivery.retry import DeliveryCounters, PauseGate, RetryPolicy, deliver
from exporter.errors import (
    DeliveryError,
    PermanentDeliveryError,
    RetryableDeliveryError,
    UsageError,
)
from tests.support.fakes import RecordingSleep, ScriptedDriver

pytestmark = pytest.mark.anyio


def _batch() -> Batch:
    batch = Batch()
    batch.append(b"a\n")
    batch.append(b"b\n")
    return batch


async def _deliver(
    driver: ScriptedDriver,
    policy: RetryPolicy,
    sleep: RecordingSleep,
    clock: list[float] | None = None,
) -> tuple[int, str | None, DeliveryCounters, PauseGate]:
    now = clock or [0.0]
    gate = PauseGate(clock=lambda: now[0])
    counters = DeliveryCounters()
    outcome = await deliver(
        driver,
        _batch(),
        policy,
        gate,
        counters,
        rng=random.Random(7),
        sleep=sleep,
        clock=lambda: now[0],
    )
    return outcome.attempts, outcome.failure, counters, gate


async def test_retries_until_delivered_with_full_jitter() -> None:
    driver = ScriptedDriver([RetryableDeliveryError("down")] * 5)
    sleep = RecordingSleep()
    attempts, failure, counters, _ = await _deliver(driver, RetryPolicy(0.1, 0.4), sleep)
    assert (attempts, failure, counters.retries) == (6, None, 5)
    assert driver.lines == [b"a", b"b"]
    caps = [0.1, 0.2, 0.4, 0.4, 0.4]  # doubling, capped by max_delay
    assert all(0 <= slept <= cap for slept, cap in zip(sleep.calls, caps, strict=True))
    assert len(set(sleep.calls)) == 5  # jittered, not fixed


async def test_retry_after_pauses_the_gate_and_is_capped() -> None:
    driver = ScriptedDriver([RetryableDeliveryError("busy", retry_after=500)])
    sleep = RecordingSleep()
    policy = RetryPolicy(max_retry_after=30)
    attempts, failure, counters, gate = await _deliver(driver, policy, sleep)
    assert (attempts, failure, counters.retry_after_pauses) == (2, None, 1)
    assert sleep.calls == [30]  # waited exactly the capped Retry-After, no extra backoff
    assert gate.until == 30


async def test_permanent_failure_is_not_retried() -> None:
    driver = ScriptedDriver([PermanentDeliveryError("400 bad request")])
    attempts, failure, _, _ = await _deliver(driver, RetryPolicy(), RecordingSleep())
    assert (attempts, failure) == (1, "400 bad request")


async def test_gives_up_after_max_attempts() -> None:
    driver = ScriptedDriver([RetryableDeliveryError("down")] * 10)
    attempts, failure, counters, _ = await _deliver(
        driver, RetryPolicy(max_attempts=3), RecordingSleep()
    )
    assert attempts == 3
    assert counters.retries == 2
    assert failure == "gave up after 3 attempts: down"


async def test_gives_up_after_max_elapsed() -> None:
    now = [0.0]

    class Clocked(ScriptedDriver):
        async def send(self, batch: Batch) -> None:
            now[0] += 4.0
            await super().send(batch)

    driver = Clocked([RetryableDeliveryError("slow")] * 10)
    attempts, failure, _, _ = await _deliver(
        driver, RetryPolicy(max_elapsed=10), RecordingSleep(), clock=now
    )
    assert attempts == 3  # at 4 s and 8 s it may retry, at 12 s it stops
    assert failure is not None
    assert failure.startswith("gave up after 3 attempts")


async def test_unclassified_errors_and_driver_bugs_end_in_a_failure_not_a_crash() -> None:
    for error, expected in [
        (DeliveryError("odd"), "DeliveryError: odd"),
        (ValueError("bug"), "driver error ValueError: bug"),
    ]:
        attempts, failure, _, _ = await _deliver(
            ScriptedDriver([error]), RetryPolicy(), RecordingSleep()
        )
        assert (attempts, failure) == (1, expected)


def test_policy_checks_its_settings() -> None:
    with pytest.raises(UsageError, match="initial"):
        RetryPolicy(initial_delay=5, max_delay=1)
    with pytest.raises(UsageError, match="at least 1"):
        RetryPolicy(max_attempts=0)


async def test_retry_after_zero_never_retries_faster_than_the_backoff() -> None:
    driver = ScriptedDriver([RetryableDeliveryError("busy", retry_after=0)] * 3)
    now = [0.0]
    slept: list[float] = []

    async def sleep(seconds: float) -> None:  # time passes as it should
        slept.append(seconds)
        now[0] += seconds
        await anyio.lowlevel.checkpoint()

    policy = RetryPolicy(initial_delay=1.0, max_delay=1.0)
    outcome = await deliver(
        driver,
        _batch(),
        policy,
        PauseGate(clock=lambda: now[0]),
        DeliveryCounters(),
        rng=random.Random(7),
        sleep=sleep,
        clock=lambda: now[0],
    )
    assert (outcome.attempts, outcome.failure) == (4, None)
    expected = random.Random(7)
    assert slept == pytest.approx([policy.backoff(n, expected) for n in (1, 2, 3)])
    assert all(seconds > 0 for seconds in slept)
