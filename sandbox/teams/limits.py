"""Throttling and injected faults for the Connector stand-in (teams.md §3.1). No HTTP, clock injected.

Per bot per thread, sliding windows (seconds → max requests): send and create 7/1, 8/2, 60/30, 1800/3600; get
members / get conversations 14/1, 16/2, 120/30, 3600/3600. Per app per tenant 50 requests per second. A refused
request does not count; the answer says how long until the tightest window has room again.
"""

from __future__ import annotations

import math
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field

WINDOWS: dict[str, tuple[tuple[float, int], ...]] = {
    "send": ((1, 7), (2, 8), (30, 60), (3600, 1800)),
    "create": ((1, 7), (2, 8), (30, 60), (3600, 1800)),
    "members": ((1, 14), (2, 16), (30, 120), (3600, 3600)),
    "conversations": ((1, 14), (2, 16), (30, 120), (3600, 3600)),
}
TENANT_WINDOW = (1.0, 50)


@dataclass
class Throttle:
    retry_after: float  # seconds until a request would be admitted
    scope: str  # e.g. "send 7/1s on 19:...@thread.tacv2" or "tenant 50/1s"

    @property
    def retry_after_header(self) -> str:
        return str(max(1, math.ceil(self.retry_after)))


@dataclass
class RateLimiter:
    clock: Callable[[], float]
    enabled: bool = True
    _hits: dict[tuple[str, str], deque] = field(default_factory=dict)
    _tenant: dict[str, deque] = field(default_factory=dict)

    def check(self, operation: str, thread: str | None, tenant: str) -> Throttle | None:
        """Admit (and count) one request, or say why not. `thread` None = not thread-scoped (tenant limit only)."""
        if not self.enabled:
            return None
        now = self.clock()
        refusal = self._refuse(self._tenant.setdefault(tenant, deque()), (TENANT_WINDOW,), now, "tenant")
        hits = None
        if refusal is None and thread is not None and operation in WINDOWS:
            hits = self._hits.setdefault((operation, thread), deque())
            refusal = self._refuse(hits, WINDOWS[operation], now, f"{operation} on {thread}")
        if refusal:
            return refusal
        self._tenant[tenant].append(now)
        if hits is not None:
            hits.append(now)
        return None

    @staticmethod
    def _refuse(hits: deque, windows, now: float, scope: str) -> Throttle | None:
        longest = max(w for w, _ in windows)
        while hits and hits[0] <= now - longest:
            hits.popleft()
        worst: Throttle | None = None
        for seconds, limit in windows:
            inside = [t for t in hits if t > now - seconds]
            if len(inside) >= limit:
                # room again when the oldest request that keeps the window full leaves it
                wait = inside[len(inside) - limit] + seconds - now
                if worst is None or wait > worst.retry_after:
                    worst = Throttle(wait, f"{scope} {limit}/{seconds:g}s")
        return worst

    def reset(self) -> None:
        self._hits.clear()
        self._tenant.clear()


@dataclass
class Fault:
    prefix: str
    status: int
    count: int
    retry_after: float | None = None
    method: str | None = None


@dataclass
class Faults:
    """`POST /_sandbox/.../fail`: the next `count` requests whose path starts with `prefix` get `status`."""

    pending: list[Fault] = field(default_factory=list)

    def add(self, fault: Fault) -> None:
        self.pending.append(fault)

    def take(self, method: str, path: str) -> Fault | None:
        for f in self.pending:
            if path.startswith(f.prefix) and (f.method is None or f.method.upper() == method.upper()):
                f.count -= 1
                if f.count <= 0:
                    self.pending.remove(f)
                return f
        return None

    def clear(self) -> None:
        self.pending.clear()
