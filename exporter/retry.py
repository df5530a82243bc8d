"""How long to wait before the next attempt: exponential backoff with full jitter.

Full jitter (a uniform draw between 0 and the exponential cap) keeps many exporters
that failed together from retrying together. By default a batch is retried until it is
delivered; ``max_attempts`` and ``max_elapsed`` bound that, after which it is
dead-lettered. A ``Retry-After`` from the destination is honoured, capped by
``max_retry_after``.
"""

from __future__ import annotations

import random
from dataclasses import dataclass

from exporter.errors import UsageError


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
