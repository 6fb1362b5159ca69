"""The processing loop: lease an event, run its stages, record each step, retry or park on failure.

Stages are plain coroutines (connector/stages.py) that take the event and return what comes next; they make
adapter calls but never sleep or loop. This module owns the policy: leases (so several processes can share one
MongoDB store; the worker name is the process's instance id, so a restart releases its dead predecessor's leases
at once), a durable step record after every stage (a restart resumes at the next stage, never re-runs a
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

from connector.ops import logctx
from connector.ops.metrics import PipelineObserver
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
    """One claimer loop keeps up to `concurrency` events in flight, each in its own task.

    A high ceiling is cheap (tasks, not threads) and lets the delivery stage see a channel's real backlog, which
    is what turns a burst into digest cards; stages that call rate-limited services bound their own concurrency.
    """

    store: Store
    stages: dict[str, Stage]
    concurrency: int = 64
    claim_batch: int = 16  # most events one claim takes (one transaction) when that many slots are free
    lease_seconds: float = 120.0
    poll_interval: float = 1.0
    policy: RetryPolicy = field(default_factory=RetryPolicy)
    clock: Callable[[], float] = time.time
    rng: Callable[[], float] = random.random
    name: str = field(default_factory=lambda: f"worker-{uuid.uuid4().hex[:8]}")
    sleep: Callable[[float], Awaitable[None]] = asyncio.sleep  # the lease heartbeat's timer
    observer: PipelineObserver | None = None  # metrics (connector/ops/metrics.py); None: not measured

    def __post_init__(self) -> None:
        self._wake = asyncio.Event()
        self._stopping = False
        self._claimer: asyncio.Task[None] | None = None
        self._in_flight: set[asyncio.Task[None]] = set()
        self._latest: dict[str, Claim] = {}  # event id -> its claim as of the last recorded step
        self._leases: asyncio.Task[None] | None = None  # the lease heartbeat, while events are in flight
        self._lost: set[str] = set()  # events in flight whose lease the heartbeat found lost
        self._slots: asyncio.Semaphore | None = None  # the claim loop's in-flight slots, while it runs
        self._freed_early: set[asyncio.Task[None]] = set()  # tasks whose slot went back with their last write
        self.last_loop_at = self.clock()  # the claim loop's last turn, for /readyz

    # --- lifecycle ----------------------------------------------------------------------------------------
    def wake(self) -> None:
        """New work arrived: look now instead of at the next poll."""
        self._wake.set()

    async def start(self) -> None:
        self._stopping = False
        self._claimer = asyncio.create_task(self._claim_loop(), name=f"pipeline-claimer-{self.name}")

    async def stop(self, grace: float = 5.0) -> None:
        """Stop claiming; let in-flight events finish for `grace` seconds, then cancel them (the service then retires
        its instance, which releases their leases at once: connector/instances.py)."""
        self._stopping = True
        self._wake.set()
        if self._claimer is not None:
            await asyncio.gather(self._claimer, return_exceptions=True)
            self._claimer = None
        if self._in_flight:
            _, pending = await asyncio.wait(set(self._in_flight), timeout=grace)
            for task in pending:
                task.cancel()
            await asyncio.gather(*pending, return_exceptions=True)

    # --- the loop -----------------------------------------------------------------------------------------
    async def _claim_loop(self) -> None:
        slots = self._slots = asyncio.Semaphore(self.concurrency)

        def ended(task: asyncio.Task[None]) -> None:
            self._in_flight.discard(task)
            if task in self._freed_early:
                self._freed_early.discard(task)
            else:
                slots.release()

        while not self._stopping:
            self.last_loop_at = self.clock()
            await slots.acquire()
            if self._stopping:
                slots.release()
                break
            # Take every free slot (up to claim_batch) and claim that many events in one store call: one
            # transaction and one commit for the lot instead of one per event.
            want = 1
            while want < self.claim_batch and not slots.locked():
                await slots.acquire()
                want += 1
            # Cleared before the claim, not after: work that arrives while the claim runs sets it again, so the
            # wait below returns at once instead of at the next poll.
            self._wake.clear()
            try:
                claims = await self.store.claim_batch(
                    self.name, now=self.clock(), lease_seconds=self.lease_seconds, limit=want)
            except StoreUnavailable:
                log.warning("store unavailable; claiming again in %.1fs", self.poll_interval)
                claims = []
            except Exception:
                log.exception("unexpected error while claiming")
                claims = []
            for _ in range(want - len(claims)):
                slots.release()
            for claim in claims:
                task = asyncio.create_task(self._run_claim(claim), name=f"event-{claim.event.id}")
                self._in_flight.add(task)
                task.add_done_callback(ended)
            if len(claims) < want:
                # The store had nothing more due: wait for new work (or the poll, for retries falling due) rather
                # than asking again at once for what is not there.
                try:
                    await asyncio.wait_for(self._wake.wait(), timeout=self.poll_interval)
                except asyncio.TimeoutError:
                    pass

    async def _heartbeat(self) -> None:
        """Keep the leases of long-running stages (a post waiting for Teams' rate limit) from expiring.

        One timer for every event in flight (not a task per event): every lease_seconds/3 it extends each lease
        not taken or extended in the last tenth of lease_seconds, so no lease gets older than about 2/3 of its
        life before it is renewed. The extensions of one turn are group-committed together.
        """
        while self._latest:
            await self.sleep(self.lease_seconds / 3)
            fresh = self.clock() + self.lease_seconds * 0.9
            due = [claim for event_id, claim in self._latest.items()
                   if claim.lease_expires_at < fresh and event_id not in self._lost]
            if due:
                await asyncio.gather(*(self._extend(claim) for claim in due))

    async def _extend(self, claim: Claim) -> None:
        event_id = claim.event.id
        try:
            extended = await self.store.extend_lease(claim, lease_seconds=self.lease_seconds, now=self.clock())
        except LeaseLost:
            self._lost.add(event_id)  # its next write fails alone (fenced); no more extensions for it
            return
        except StoreUnavailable:
            log.warning("store unavailable; could not extend the lease of event %s", event_id)
            return
        except Exception:
            log.exception("unexpected error extending the lease of event %s", event_id)
            return
        if event_id in self._latest:  # not if it ended meanwhile: _latest holds events in flight only
            self._latest[event_id] = extended

    def alive(self) -> bool:
        """The claim loop is running (started and not ended by an error)."""
        return self._claimer is not None and not self._claimer.done()

    async def _run_claim(self, claim: Claim) -> None:
        ev = claim.event
        with logctx.bound(event_id=ev.id, environment=ev.environment, business_event_id=ev.business_event_id,
                          control_number=ev.control_number):
            await self._run_claim_bound(claim)

    async def _run_claim_bound(self, claim: Claim) -> None:
        self._latest[claim.event.id] = claim
        if self._leases is None or self._leases.done():
            self._leases = asyncio.create_task(self._heartbeat(), name=f"pipeline-leases-{self.name}")
        try:
            await self._process(claim)
        except LeaseLost:
            log.warning("lease on event %s lost; another worker has it", claim.event.id)
        except StoreUnavailable:
            log.warning("store unavailable while processing %s; its lease will expire and it resumes", claim.event.id)
        except asyncio.CancelledError:
            raise
        except Exception as exc:
            # A bug in a stage must not stop the pipeline, nor loop forever: it counts as a failed attempt,
            # so an event that always fails this way is parked after max_attempts.
            log.exception("unexpected error processing event %s", claim.event.id)
            try:
                latest = self._latest.get(claim.event.id, claim)
                await self._retry(latest, RetryLater(f"unexpected error: {type(exc).__name__}: {exc}"))
            except Exception:
                log.exception("could not reschedule event %s; its lease will expire", claim.event.id)
        finally:
            self._latest.pop(claim.event.id, None)
            self._lost.discard(claim.event.id)
            if not self._latest and self._leases is not None:  # nothing in flight: no timer left behind
                self._leases.cancel()
                self._leases = None

    async def run_once(self) -> bool:
        """Claim one due event and run it as far as it goes (tests). Returns False when nothing was due."""
        claim = await self.store.claim(self.name, now=self.clock(), lease_seconds=self.lease_seconds)
        if claim is None:
            return False
        await self._run_claim(claim)
        return True

    async def _process(self, claim: Claim) -> None:
        while True:
            self._latest[claim.event.id] = claim
            event = claim.event
            stage = self.stages.get(event.stage)
            if stage is None:
                if event.stage == "":
                    await self.store.complete(claim, now=self.clock())
                else:
                    await self.store.park(claim, reason=f"no stage named '{event.stage}'", now=self.clock())
                return
            started = time.perf_counter()
            try:
                outcome = await stage(event)
            except RetryLater as exc:
                await self._retry(claim, exc)
                return
            except Park as exc:
                log.warning("event %s parked at %s: %s", event.id, event.stage, exc.reason)
                await self.store.park(claim, reason=f"{event.stage}: {exc.reason}", now=self.clock())
                if self.observer is not None:
                    self.observer.parked(event.stage)
                return
            if self.observer is not None:
                self.observer.stage_done(event.stage, time.perf_counter() - started)
            if outcome.next_stage == "":
                # The last stage's record and the completion in one write (one commit instead of two).
                self._free_slot_with_last_write()
                await self.store.finish(claim, step=event.stage, detail=outcome.detail, data=outcome.data,
                                        now=self.clock())
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

    def _free_slot_with_last_write(self) -> None:
        """The event's last write is about to be submitted: its slot goes back now, so a claimer waiting for a slot
        claims in this same loop turn and its claim joins the completion's group commit (one transaction for both
        instead of one each). Nothing is acknowledged earlier: the claim's events start after that COMMIT, and the
        finishing event is done whatever its write answers (LeaseLost or StoreUnavailable end it too)."""
        task = asyncio.current_task()
        if self._slots is not None and task in self._in_flight and task not in self._freed_early:
            self._freed_early.add(task)
            self._slots.release()

    async def _retry(self, claim: Claim, exc: RetryLater) -> None:
        event = claim.event
        attempts = event.attempts + 1
        if attempts >= self.policy.max_attempts:
            reason = f"{event.stage}: gave up after {attempts} attempts: {exc.reason}"
            log.warning("event %s parked: %s", event.id, reason)
            await self.store.park(claim, reason=reason, now=self.clock())
            if self.observer is not None:
                self.observer.parked(event.stage)
            return
        delay = self.policy.delay(attempts - 1, exc.retry_after, self.rng())
        now = self.clock()
        log.warning("event %s: %s failed (attempt %d/%d): %s; retrying in %.1f s", event.id, event.stage,
                    attempts, self.policy.max_attempts, exc.reason, delay)
        await self.store.reschedule(
            claim, at=now + delay, reason=f"{event.stage}: {exc.reason} (retry in {delay:.1f}s)", now=now
        )
        if self.observer is not None:
            self.observer.retried(event.stage)
