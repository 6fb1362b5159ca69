"""The processing loop: lease an event, run its stages, record each step, retry or park on failure.

Stages are plain coroutines (connector/stages.py) that take the event and return what comes next; they make
adapter calls but never sleep or loop. This module owns the policy: leases (so several processes can share one
MongoDB store), a durable step record after every stage (a restart resumes at the next stage, never re-runs a
completed one), exponential backoff with jitter for transient failures (never earlier than a service's
Retry-After), and parking with the reason once a stage has failed `max_attempts` times or failed for good.
It knows no SQL, no HTTP and no adapter.
"""

from __future__ import annotations

import asyncio
import logging
import random
import time
import uuid
from dataclasses import dataclass, field
from typing import Any, Awaitable, Callable

from connector.store import Claim, EventRecord, LeaseLost, Store, StoreUnavailable

log = logging.getLogger(__name__)


class RetryLater(Exception):
    """A transient failure: try this stage again later, not before `retry_after` seconds when given."""

    def __init__(self, reason: str, retry_after: float | None = None) -> None:
        super().__init__(reason)
        self.reason = reason
        self.retry_after = retry_after


class Park(Exception):
    """A permanent failure: stop and show the event to an admin with this reason (`events replay` resumes)."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


@dataclass(frozen=True)
class StageOutcome:
    next_stage: str  # "" when the event is done
    data: dict[str, Any] | None = None  # merged into the event's data
    detail: str = ""  # one line for the history


Stage = Callable[[EventRecord], Awaitable[StageOutcome]]


@dataclass(frozen=True)
class RetryPolicy:
    max_attempts: int = 12
    backoff_base: float = 2.0
    backoff_max: float = 900.0

    def delay(self, attempts: int, retry_after: float | None, rnd: float) -> float:
        """Exponential backoff with equal jitter; a service's Retry-After is a floor, never shortened."""
        backoff = min(self.backoff_max, self.backoff_base * (2 ** min(attempts, 30)))
        jittered = backoff / 2 + backoff / 2 * rnd
        return max(jittered, retry_after or 0.0)


@dataclass
class Pipeline:
    store: Store
    stages: dict[str, Stage]
    workers: int = 4
    lease_seconds: float = 120.0
    poll_interval: float = 1.0
    policy: RetryPolicy = field(default_factory=RetryPolicy)
    clock: Callable[[], float] = time.time
    rng: Callable[[], float] = random.random
    name: str = field(default_factory=lambda: f"worker-{uuid.uuid4().hex[:8]}")

    def __post_init__(self) -> None:
        self._wake = asyncio.Event()
        self._stopping = False
        self._tasks: list[asyncio.Task[None]] = []

    # --- lifecycle ----------------------------------------------------------------------------------------
    def wake(self) -> None:
        """New work arrived: idle workers look now instead of at their next poll."""
        self._wake.set()

    async def start(self) -> None:
        self._stopping = False
        self._tasks = [
            asyncio.create_task(self._worker(f"{self.name}-{i}"), name=f"pipeline-{i}") for i in range(self.workers)
        ]

    async def stop(self, grace: float = 5.0) -> None:
        """Let in-flight stages finish for `grace` seconds, then cancel (their leases expire; work resumes)."""
        self._stopping = True
        self._wake.set()
        if not self._tasks:
            return
        done, pending = await asyncio.wait(self._tasks, timeout=grace)
        for task in pending:
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        self._tasks = []

    # --- the loop -----------------------------------------------------------------------------------------
    async def _worker(self, worker: str) -> None:
        while not self._stopping:
            try:
                worked = await self.run_once(worker)
            except StoreUnavailable:
                log.warning("store unavailable; %s retries in %.1fs", worker, self.poll_interval)
                worked = False
            except Exception:  # a bug in a stage must not kill the worker
                log.exception("unexpected error in %s", worker)
                worked = False
            if worked or self._stopping:
                continue
            self._wake.clear()
            try:
                await asyncio.wait_for(self._wake.wait(), timeout=self.poll_interval)
            except asyncio.TimeoutError:
                pass

    async def run_once(self, worker: str | None = None) -> bool:
        """Claim one due event and run it as far as it goes. Returns False when nothing was due."""
        claim = await self.store.claim(worker or self.name, now=self.clock(), lease_seconds=self.lease_seconds)
        if claim is None:
            return False
        try:
            await self._process(claim)
        except LeaseLost:
            log.warning("lease on event %s lost; another worker has it", claim.event.id)
        return True

    async def _process(self, claim: Claim) -> None:
        while True:
            event = claim.event
            stage = self.stages.get(event.stage)
            if stage is None:
                if event.stage == "":
                    await self.store.complete(claim, now=self.clock())
                else:
                    await self.store.park(claim, reason=f"no stage named '{event.stage}'", now=self.clock())
                return
            try:
                outcome = await stage(event)
            except RetryLater as exc:
                await self._retry(claim, exc)
                return
            except Park as exc:
                log.warning("event %s parked at %s: %s", event.id, event.stage, exc.reason)
                await self.store.park(claim, reason=f"{event.stage}: {exc.reason}", now=self.clock())
                return
            claim = await self.store.record_step(
                claim,
                step=event.stage,
                outcome="ok",
                detail=outcome.detail,
                data=outcome.data,
                next_stage=outcome.next_stage,
                now=self.clock(),
            )
            if outcome.next_stage == "":
                await self.store.complete(claim, now=self.clock())
                return

    async def _retry(self, claim: Claim, exc: RetryLater) -> None:
        event = claim.event
        attempts = event.attempts + 1
        if attempts >= self.policy.max_attempts:
            reason = f"{event.stage}: gave up after {attempts} attempts: {exc.reason}"
            log.warning("event %s parked: %s", event.id, reason)
            await self.store.park(claim, reason=reason, now=self.clock())
            return
        delay = self.policy.delay(attempts - 1, exc.retry_after, self.rng())
        now = self.clock()
        await self.store.reschedule(
            claim, at=now + delay, reason=f"{event.stage}: {exc.reason} (retry in {delay:.1f}s)", now=now
        )
