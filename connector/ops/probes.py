"""Liveness and readiness.

`/healthz` (liveness) answers from the event loop and reads nothing: if it answers, the process and its loop are
alive. The container's HEALTHCHECK uses it (connector/healthcheck.py); it shows no data, so it may be public.

`/readyz` (readiness) is what a load balancer or an operator asks before sending work: a real write to the store
(a full disk or a lost MongoDB primary fails it), the pipeline's claim loop running, and every upstream token that
was ever asked for currently valid (obtained within its lifetime). 503 names each failing check.
"""

from __future__ import annotations

import asyncio
import time
from dataclasses import dataclass, field
from typing import Any, Callable, Iterable, Protocol

from connector.store import Store, StoreError


class _Loop(Protocol):
    def alive(self) -> bool: ...


class _TokenSource(Protocol):
    scope: str
    expires_at: float
    acquisitions: int
    failures: int
    last_failure: tuple[float, str] | None


@dataclass
class ReadinessChecks:
    store: Store
    pipeline: Callable[[], _Loop | None]  # None: this process runs no pipeline (then it is not checked)
    tokens: Callable[[], Iterable[_TokenSource]]
    token_clock: Callable[[], float] = time.monotonic  # the token provider's clock (expiry is on it)
    clock: Callable[[], float] = time.time
    store_timeout: float = 5.0
    expect_pipeline: bool = True
    extra: dict[str, Callable[[], str | None]] = field(default_factory=dict)  # name -> failure text or None

    async def run(self) -> tuple[bool, dict[str, str]]:
        """(ready, {check: "ok" or why it fails})."""
        results: dict[str, str] = {}
        try:
            await asyncio.wait_for(self.store.probe_write(now=self.clock()), self.store_timeout)
            results["store"] = "ok"
        except asyncio.TimeoutError:
            results["store"] = f"the write probe took longer than {self.store_timeout:g}s"
        except StoreError as exc:
            results["store"] = f"the write probe failed: {exc}"
        if self.expect_pipeline:
            loop = self.pipeline()
            results["pipeline"] = "ok" if loop is not None and loop.alive() else "the pipeline loop is not running"
        now = self.token_clock()
        for src in self.tokens():
            if src.acquisitions == 0 and src.failures == 0:
                continue  # never needed yet
            name = f"token:{src.scope}"
            if src.expires_at > now:
                results[name] = "ok"
            else:
                why = src.last_failure[1] if src.last_failure else "expired and not renewed"
                results[name] = f"no valid token: {why}"
        for name, check in self.extra.items():
            failure = check()
            results[name] = failure or "ok"
        return all(v == "ok" for v in results.values()), results


def readiness_body(ready: bool, results: dict[str, str]) -> dict[str, Any]:
    body: dict[str, Any] = {"status": "ready" if ready else "not_ready", "checks": results}
    if not ready:
        body["failing"] = sorted(k for k, v in results.items() if v != "ok")
    return body
