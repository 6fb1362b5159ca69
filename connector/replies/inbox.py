"""The reply inbox: typed replies are stored first (durably, once per Teams message id) and decided off the
request by a worker, so a notification is acknowledged within Graph's 3 s whatever F&O or Teams are doing, a
restart loses nothing, and the same message seen through Graph, the bot feed and a resync is decided once.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable
from typing import Any

from bot import GraphError, GraphNotFound, TeamsError
from connector.replies.decide import ReplyDecider, ReplyOutcome
from connector.replies.model import TypedReply
from connector.store import InboundReply, Store, StoreError

log = logging.getLogger(__name__)

Fetch = Callable[[dict[str, Any]], Awaitable[TypedReply | None]]


class ReplyInbox:
    """Args:
        store; decider (ReplyDecider); fetch (reads the message a Graph notification names; None when gone);
        owner (this instance's id: the lease owner); clock/sleep (injectable); lease, max_attempts, tick.
    """

    def __init__(self, store: Store, decider: ReplyDecider, *, fetch: Fetch | None, owner: str,
                 clock: Callable[[], float], sleep: Callable[[float], Awaitable[None]] = asyncio.sleep,
                 lease: float = 60.0, max_attempts: int = 5, tick: float = 5.0) -> None:
        self.store = store
        self.decider = decider
        self.fetch = fetch
        self.owner = owner
        self.clock = clock
        self.sleep = sleep
        self.lease = lease
        self.max_attempts = max_attempts
        self.tick = tick
        self._wake = asyncio.Event()
        self.outcomes: list[tuple[str, ReplyOutcome]] = []  # recent (message id, outcome), for tests and the CLI

    # --- in ---------------------------------------------------------------------------------------------------
    async def accept(self, reply: TypedReply) -> bool:
        """Store a known message (bot feed, resync). False: this message id was already stored."""
        return await self._put(reply.message_id, reply.source, reply.to_payload())

    async def accept_notification(self, key: str, ids: dict[str, Any]) -> bool:
        """Store what a Graph notification names (team, channel, root, reply ids); read later by the worker."""
        return await self._put(key, "graph", {"graph": ids})

    async def _put(self, key: str, source: str, payload: dict[str, Any]) -> bool:
        now = self.clock()
        new = await self.store.enqueue_reply(InboundReply(key=key, source=source, payload=payload, received_at=now,
                                                          next_attempt_at=now))
        if new:
            self._wake.set()
        return new

    def wake(self) -> None:
        self._wake.set()

    # --- work -------------------------------------------------------------------------------------------------
    async def run_once(self) -> int:
        """Decide every due reply once; returns how many were handled."""
        claimed = await self.store.claim_replies(self.owner, now=self.clock(), lease_seconds=self.lease)
        for item in claimed:
            await self._handle(item)
        return len(claimed)

    async def _handle(self, item: InboundReply) -> None:
        try:
            reply = await self._message(item)
            outcome = (ReplyOutcome("ignored", "the message no longer exists") if reply is None
                       else await self.decider.decide(reply))
        except (GraphError, TeamsError, StoreError) as exc:
            if isinstance(exc, GraphNotFound):
                outcome = ReplyOutcome("ignored", f"the message is gone: {exc}")
            elif item.attempts >= self.max_attempts:
                log.warning("typed reply %s failed after %d attempts: %s", item.key, item.attempts, exc)
                await self.store.finish_reply(item.key, self.owner, status="failed", outcome=str(exc)[:500],
                                              now=self.clock())
                return
            else:
                delay = float(getattr(exc, "retry_after", 0) or 0) or min(300.0, 5.0 * 2 ** (item.attempts - 1))
                await self.store.finish_reply(item.key, self.owner, status="queued", outcome=f"retry: {exc}"[:500],
                                              now=self.clock(), retry_at=self.clock() + delay)
                return
        log.info("typed reply %s (%s): %s — %s", item.key, item.source, outcome.result, outcome.detail)
        self.outcomes = (self.outcomes + [(item.key, outcome)])[-200:]
        await self.store.finish_reply(item.key, self.owner, status="done",
                                      outcome=f"{outcome.result}: {outcome.detail}"[:500], now=self.clock())

    async def _message(self, item: InboundReply) -> TypedReply | None:
        known = TypedReply.from_payload(item.payload)
        if known is not None:
            return known
        ids = item.payload.get("graph")
        if not isinstance(ids, dict) or self.fetch is None:
            return None
        return await self.fetch(ids)

    async def run(self, stop: asyncio.Event) -> None:
        """Until `stop`: handle due replies, then wait for a wake-up (a new reply) or the tick."""
        while not stop.is_set():
            self._wake.clear()  # before looking: a reply stored while we work wakes the next round
            try:
                while await self.run_once():
                    pass
            except StoreError as exc:
                log.warning("reply inbox: %s", exc)
            waiters = [asyncio.ensure_future(self._wake.wait()), asyncio.ensure_future(stop.wait()),
                       asyncio.ensure_future(self.sleep(self.tick))]
            try:
                await asyncio.wait(waiters, return_when=asyncio.FIRST_COMPLETED)
            finally:
                for w in waiters:
                    w.cancel()
                await asyncio.gather(*waiters, return_exceptions=True)
