"""Pacing within Teams' published bot rate limits, so that a burst drains near the allowed rate without 429s.

Microsoft publishes the limits as sliding windows (teams.md §3.1): per bot per thread, send/create 7 per 1 s,
8 per 2 s, 60 per 30 s, 1800 per hour; per app per tenant 50 per second. A SlidingWindowLimiter holds one key's
send times; the Pacer reserves a slot that satisfies every limiter involved (the thread's and the tenant's) and
says when it is, so the caller waits until then. Reservations are made in order, so concurrent senders never
overbook a window. A small safety margin absorbs the clock difference between our send and Teams' receipt.
"""

from __future__ import annotations

import asyncio
import time
from collections import deque
from dataclasses import dataclass, field
from typing import Awaitable, Callable

Window = tuple[int, float]  # (at most N sends, per this many seconds)

THREAD_WINDOWS: tuple[Window, ...] = ((7, 1.0), (8, 2.0), (60, 30.0), (1800, 3600.0))
TENANT_WINDOWS: tuple[Window, ...] = ((50, 1.0),)


@dataclass
class SlidingWindowLimiter:
    windows: tuple[Window, ...]
    margin: float = 0.05  # seconds added to every window span
    _sent: deque[float] = field(default_factory=deque)
    blocked_until: float = 0.0  # set after a 429: no send before this

    @property
    def _span(self) -> float:
        return max(span for _, span in self.windows) + self.margin

    def next_slot(self, now: float) -> float:
        """The earliest time ≥ now (and ≥ the last reservation) at which one more send fits every window."""
        t = max(now, self.blocked_until, self._sent[-1] if self._sent else now)
        while True:
            moved = False
            for limit, span in self.windows:
                span += self.margin
                # sends inside (t - span, t]; the oldest of the last `limit` ones must fall out of the window.
                # Compare the candidate with t, never `oldest > t - span`: (a + b) - b < a in floating point,
                # which would move t to the same value forever.
                if len(self._sent) >= limit:
                    candidate = self._sent[-limit] + span
                    if candidate > t:
                        t = candidate
                        moved = True
            if not moved:
                return t

    def record(self, t: float) -> None:
        self._sent.append(t)
        horizon = t - self._span
        while self._sent and self._sent[0] <= horizon:
            self._sent.popleft()

    def settle(self, reserved: float, actual: float) -> None:
        """Move a reservation to when the send really finished: Teams counts a request when it arrives, which
        may be later than its slot (a slow first request), never later than its completion."""
        if actual <= reserved:
            return
        try:
            self._sent.remove(reserved)
        except ValueError:
            return  # already pruned
        items = sorted([*self._sent, actual])
        self._sent = deque(items)

    def backlog_seconds(self, n: int, now: float) -> float:
        """How long n more sends would take from now at the fastest allowed pace (without reserving them)."""
        if n <= 0:
            return 0.0
        probe = SlidingWindowLimiter(self.windows, self.margin, deque(self._sent), self.blocked_until)
        t = now
        for _ in range(n):
            t = probe.next_slot(t)
            probe.record(t)
        return t - now


@dataclass
class Pacer:
    """Reserves send slots across several keyed limiters (e.g. the thread and the tenant)."""

    clock: Callable[[], float] = time.monotonic
    sleep: Callable[[float], Awaitable[None]] = asyncio.sleep
    thread_windows: tuple[Window, ...] = THREAD_WINDOWS
    tenant_windows: tuple[Window, ...] = TENANT_WINDOWS
    margin: float = 0.05
    _limiters: dict[str, SlidingWindowLimiter] = field(default_factory=dict)

    def limiter(self, key: str) -> SlidingWindowLimiter:
        lim = self._limiters.get(key)
        if lim is None:
            windows = self.tenant_windows if key.startswith("tenant:") else self.thread_windows
            lim = self._limiters[key] = SlidingWindowLimiter(windows, self.margin)
        return lim

    def next_free(self, keys: list[str]) -> float:
        """The earliest slot that fits every key's windows (clock units), without reserving it."""
        limiters = [self.limiter(k) for k in keys]
        t = self.clock()
        while True:
            later = max(lim.next_slot(t) for lim in limiters)
            if later == t:
                return t
            t = later

    def reserve(self, keys: list[str]) -> float:
        """Reserve the earliest slot that fits every key's windows; returns its time (clock units)."""
        t = self.next_free(keys)
        for key in keys:
            self.limiter(key).record(t)
        return t

    async def wait_free(self, keys: list[str]) -> None:
        """Wait until a slot is free for every key, without reserving it: the caller prepares its send, then
        acquires (at once, unless another sender took the slot meanwhile) and sends straight away, so that what
        Teams counts (the arrival) is never later than the slot the windows were computed from."""
        delay = self.next_free(keys) - self.clock()
        if delay > 0:
            await self.sleep(delay)

    async def acquire(self, keys: list[str]) -> float:
        """Wait for a reserved slot; returns it (give it to settle() once the send has finished)."""
        t = self.reserve(keys)
        delay = t - self.clock()
        if delay > 0:
            await self.sleep(delay)
        return t

    def settle(self, keys: list[str], slot: float) -> None:
        """The send reserved at `slot` has finished now: count it at its completion time."""
        now = self.clock()
        for key in keys:
            self.limiter(key).settle(slot, now)

    def penalize(self, key: str, retry_after: float) -> None:
        """Teams answered 429 anyway: no send on this key before Retry-After has passed."""
        lim = self.limiter(key)
        lim.blocked_until = max(lim.blocked_until, self.clock() + retry_after)

    def backlog_seconds(self, key: str, n: int) -> float:
        return self.limiter(key).backlog_seconds(n, self.clock())
