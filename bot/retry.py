"""The inline retry policy shared by the Connector poster and the Graph client: how long one call may wait.

One call retries a throttled or briefly unavailable service a bounded number of times, honouring Retry-After
(seconds or HTTP-date) and otherwise backing off exponentially with jitter. Anything longer is the pipeline's
business: the caller raises a transient error carrying `retry_after` and the work item is rescheduled.
Time comes from the caller (`sleep`, `clock`, `wall_clock`, `rng`) so tests run on fake time.
Knows nothing about HTTP libraries or botbuilder.
"""

from __future__ import annotations

import email.utils
import random
from collections.abc import Awaitable, Callable
from dataclasses import dataclass

__all__ = ["RetryBudget", "RetryPolicy", "parse_retry_after"]

Sleep = Callable[[float], Awaitable[None]]


@dataclass(frozen=True)
class RetryPolicy:
    """Bounds for one call.

    Args:
        max_attempts: tries in total (the first one included).
        max_inline_wait: seconds one call may spend sleeping between tries, in total; a Retry-After beyond it
            is not sat out but handed to the caller.
        base_delay: first backoff step when the service gave no Retry-After.
        max_delay: cap of one backoff step.
    """

    max_attempts: int = 4
    max_inline_wait: float = 15.0
    base_delay: float = 1.0
    max_delay: float = 60.0

    def backoff(self, retry: int, rng: Callable[[], float] = random.random) -> float:
        """Exponential backoff with jitter for the `retry`-th retry (0-based): in [½·step, step]."""
        step = min(self.max_delay, self.base_delay * (2 ** retry))
        return step * (0.5 + 0.5 * rng())


def parse_retry_after(value: str | None, now: float) -> float | None:
    """Seconds to wait from a Retry-After header value.

    Args:
        value: delta-seconds ("3", "1.5") or an HTTP-date ("Wed, 21 Oct 2026 07:28:00 GMT").
        now: the current wall-clock time (epoch seconds), to turn a date into a delay.

    Returns:
        Seconds (never negative), or None when the header is missing or unreadable.
    """
    if value is None:
        return None
    text = value.strip()
    if not text:
        return None
    try:
        seconds = float(text)
    except ValueError:
        try:
            when = email.utils.parsedate_to_datetime(text)
        except (TypeError, ValueError, IndexError):
            return None
        if when is None or when.tzinfo is None:
            return None
        return max(0.0, when.timestamp() - now)
    if seconds != seconds or seconds in (float("inf"), float("-inf")):  # NaN / inf
        return None
    return max(0.0, seconds)


class RetryBudget:
    """The retries left to one call: `await budget.wait(delay)` sleeps and says True, or says False when the
    attempts or the inline wait are used up (the caller then raises its transient error with `delay`).
    """

    def __init__(self, policy: RetryPolicy, *, sleep: Sleep, clock: Callable[[], float],
                 rng: Callable[[], float] = random.random) -> None:
        self.policy = policy
        self._sleep = sleep
        self._clock = clock
        self._rng = rng
        self._deadline = clock() + policy.max_inline_wait
        self.retries = 0

    def delay_for(self, retry_after: float | None) -> float:
        """The wait before the next try: the service's Retry-After, else our backoff."""
        if retry_after is not None:
            return retry_after
        return self.policy.backoff(self.retries, self._rng)

    async def wait(self, delay: float) -> bool:
        if self.retries + 1 >= self.policy.max_attempts:
            return False
        if self._clock() + delay > self._deadline:
            return False
        self.retries += 1
        await self._sleep(delay)
        return True
