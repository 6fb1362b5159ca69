"""F&O service protection API limits: per (user, application) sliding window, plus resource-based throttling.

User-based: 6,000 requests, 1,200 s combined execution time per 300 s sliding window, 52 concurrent requests
(all scalable). Calling again while throttled lengthens Retry-After. Resource pressure throttles everyone.
Time comes from an injected clock. No HTTP here: the OData app asks `admit` and reports `done`.
"""

from __future__ import annotations

import math
import time
from collections import deque
from dataclasses import dataclass, field
from typing import Callable, Hashable

PRESSURE_MESSAGE = ("This request could not be processed at this time due to system experiencing high resource "
                    "utilization.")


@dataclass
class Limits:
    requests: int = 6000
    execution_seconds: float = 1200.0
    concurrent: int = 52
    window_seconds: float = 300.0
    penalty_seconds: float = 1.0  # added to the wait each time a throttled caller calls again

    def requests_message(self) -> str:
        return (f"Number of requests exceeded the limit of {self.requests} over the time window of "
                f"{self.window_seconds:g} seconds.")

    def execution_message(self) -> str:
        return (f"Combined execution time of incoming requests exceeded the limit of {self.execution_seconds:g} "
                f"seconds over the time window of {self.window_seconds:g} seconds. Decrease concurrency or reduce "
                f"the duration of requests and try again.")

    def concurrency_message(self) -> str:
        return f"Number of concurrent requests exceeded the limit of {self.concurrent}."


@dataclass(frozen=True)
class Throttled:
    retry_after: int  # whole seconds, as in the Retry-After header
    message: str


@dataclass
class Ticket:
    key: Hashable
    started: float
    execution: float = 0.0


@dataclass
class _Caller:
    history: deque[Ticket] = field(default_factory=deque)
    in_flight: int = 0
    throttled_until: float = 0.0
    reason: str = ""


class ServiceProtection:
    """Admission control for OData requests. `admit(key)` returns a Ticket (go ahead) or Throttled (answer 429)."""

    def __init__(self, limits: Limits | None = None, *, clock: Callable[[], float] = time.monotonic,
                 user_limits: bool = True) -> None:
        self.limits = limits or Limits()
        self.user_limits = user_limits
        self._clock = clock
        self._callers: dict[Hashable, _Caller] = {}
        self._pressure_count = 0
        self._pressure_until = 0.0
        self._pressure_retry_after = 0

    def pressure(self, *, count: int | None = None, seconds: float | None = None, retry_after: int = 5) -> None:
        """Resource-based throttling: 429 for everyone for the next `count` requests and/or `seconds`."""
        self._pressure_count = count or 0
        self._pressure_until = self._clock() + seconds if seconds else 0.0
        self._pressure_retry_after = max(1, int(retry_after))

    def _under_pressure(self, now: float) -> bool:
        if self._pressure_count > 0:
            self._pressure_count -= 1
            return True
        return now < self._pressure_until

    def admit(self, key: Hashable) -> Ticket | Throttled:
        now = self._clock()
        if self._under_pressure(now):
            return Throttled(self._pressure_retry_after, PRESSURE_MESSAGE)
        caller = self._callers.setdefault(key, _Caller())
        if self.user_limits:
            verdict = self._check_user_limits(caller, now)
            if verdict:
                return verdict
        ticket = Ticket(key, now)
        caller.in_flight += 1
        caller.history.append(ticket)
        return ticket

    def _check_user_limits(self, caller: _Caller, now: float) -> Throttled | None:
        lim = self.limits
        while caller.history and caller.history[0].started <= now - lim.window_seconds:
            caller.history.popleft()
        if now < caller.throttled_until:
            caller.throttled_until += lim.penalty_seconds  # hammering while throttled lengthens the wait
            return Throttled(_seconds(caller.throttled_until - now), caller.reason)
        if caller.in_flight >= lim.concurrent:
            return Throttled(1, lim.concurrency_message())
        reason = ""
        if len(caller.history) >= lim.requests:
            reason = lim.requests_message()
        elif sum(t.execution for t in caller.history) >= lim.execution_seconds:
            reason = lim.execution_message()
        if not reason:
            return None
        oldest = caller.history[0].started
        caller.throttled_until = max(now + 1, oldest + lim.window_seconds)
        caller.reason = reason
        return Throttled(_seconds(caller.throttled_until - now), reason)

    def done(self, ticket: Ticket) -> None:
        """Report the end of an admitted request; its execution time counts against the window."""
        ticket.execution = max(0.0, self._clock() - ticket.started)
        caller = self._callers.get(ticket.key)
        if caller:
            caller.in_flight = max(0, caller.in_flight - 1)

    def in_flight(self, key: Hashable) -> int:
        caller = self._callers.get(key)
        return caller.in_flight if caller else 0


def _seconds(delay: float) -> int:
    return max(1, math.ceil(delay - 1e-9))
