"""The outbox: every card bound for a Teams channel goes through one ordered queue per channel.

Each channel's queue is drained by one task that waits for a pacing slot (connector/pacing.py) before every post.
When the channel's backlog would take longer than `digest_after` seconds to drain at the fastest pace Teams allows,
the digestible items at its head go out as one digest card instead (approval cards never do: they carry
buttons). A caller awaits its item's delivery; the event stays leased in the store until then, so a crash
loses nothing (the event is claimed again once its lease expires).

The backlog is not only what is queued here (the events in flight): `backlog()` reports how many events the store
holds that are not finished (queued or processing), and each channel is credited its share of them, in proportion
to what it has queued here. So the first cards of a burst already see the whole burst and fold into digests; and
once a channel folds, its drainer waits (at most `hold` seconds, once its pacing slot is free) for a full
digest of `digest_max` while more events are still coming, rather than spending a Teams post on a small one; and it
keeps folding until `digest_after` seconds have passed since its last digest, so the tail of a burst folds too.

An item's card may be given as a function that renders it: the outbox calls it only when the item goes out on its
own, so an event folded into a digest costs its summary row, never a card render (most of the per-event CPU of a
burst otherwise). A render that fails fails that item alone, like a refused post.

The slot is reserved after the batch is chosen and rendered, right before the post: the pacer counts a post from
its slot and Teams from its arrival, so a hold for a full digest, a render or a store call between the two would
let the windows shared by several channels (the tenant's 50 per second) be overbooked in Teams' eyes.
"""

from __future__ import annotations

import asyncio
import logging
import time
import uuid
from dataclasses import dataclass, field
from typing import Any, Awaitable, Callable, Protocol

from bot import PostedRef, TeamsThrottled
from connector.pacing import Pacer

log = logging.getLogger(__name__)


class Poster(Protocol):
    async def create_channel_thread(
        self, service_url: str, tenant_id: str, channel_id: str, card: dict[str, Any], *, text: str | None = None
    ) -> PostedRef: ...

    async def reply(
        self, service_url: str, conversation_id: str, card: dict[str, Any], *, text: str | None = None
    ) -> PostedRef: ...


@dataclass(frozen=True)
class Delivered:
    ref: PostedRef
    kind: str  # "thread" | "reply" | "digest"
    digest_id: str | None = None
    digest_size: int = 1


CardSource = dict[str, Any] | Callable[[], dict[str, Any]]


@dataclass(eq=False)
class OutboxItem:
    tenant_id: str
    service_url: str
    channel_id: str
    card: CardSource  # the card, or a function rendering it (called only if the item is posted on its own)
    summary: dict[str, Any]  # the item's row in a digest
    reply_to: str | None = None  # conversation id of the document's thread, for a reply
    digestible: bool = True
    # Records the post durably; awaited before the channel's next post, so at most one accepted-but-unrecorded
    # post per channel exists at any time (the duplicate window after a crash).
    on_posted: Callable[[Delivered], Awaitable[None]] | None = None
    future: asyncio.Future[Delivered] = field(default_factory=lambda: asyncio.get_running_loop().create_future())

    @property
    def channel_key(self) -> str:
        return f"{self.service_url}|{self.channel_id}"

    def render_card(self) -> dict[str, Any]:
        """The card to post for this item alone (rendered now if it was given as a function)."""
        return self.card() if callable(self.card) else self.card


DigestRenderer = Callable[[list[dict[str, Any]]], dict[str, Any]]


class Outbox:
    def __init__(
        self,
        poster: Poster,
        pacer: Pacer,
        render_digest: DigestRenderer,
        *,
        digest_after: float = 30.0,
        digest_max: int = 50,
        backlog: Callable[[], Awaitable[int]] | None = None,
        hold: float = 1.0,
        clock: Callable[[], float] = time.monotonic,
        backlog_ttl: float = 0.25,
        recheck: float = 0.1,
    ) -> None:
        self._poster = poster
        self._pacer = pacer
        self._render_digest = render_digest
        self.digest_after = digest_after
        self.digest_max = digest_max
        self.hold = hold
        self.recheck = recheck  # while holding for a full digest and nothing arrives: ask the store this often
        self._backlog = backlog
        self._backlog_ttl = backlog_ttl  # one store count serves every channel's decisions this long
        self._backlog_cache: tuple[float, int] | None = None
        self._clock = clock
        self._arrived: dict[str, asyncio.Event] = {}
        self._folding_until: dict[str, float] = {}  # channel -> end of its burst mode (see _next_batch)
        self._queues: dict[str, list[OutboxItem]] = {}
        self._drainers: dict[str, asyncio.Task[None]] = {}
        self.posts = 0
        self.digests = 0

    def backlog(self) -> dict[str, int]:
        """Cards waiting per channel (metrics and the status page)."""
        return {key: len(queue) for key, queue in self._queues.items() if queue}

    async def send(self, item: OutboxItem) -> Delivered:
        """Queue the item behind its channel's earlier items and wait until it is posted (or fails)."""
        key = item.channel_key
        self._queues.setdefault(key, []).append(item)
        arrived = self._arrived.get(key)
        if arrived is not None:
            arrived.set()
        if key not in self._drainers or self._drainers[key].done():
            self._drainers[key] = asyncio.create_task(self._drain(key), name=f"outbox-{key}")
        return await asyncio.shield(item.future)

    async def close(self) -> None:
        for task in self._drainers.values():
            task.cancel()
        await asyncio.gather(*self._drainers.values(), return_exceptions=True)
        for queue in self._queues.values():
            for item in queue:
                if not item.future.done():
                    item.future.set_exception(asyncio.CancelledError())
        self._queues.clear()

    async def _store_backlog(self, fresh: bool = False) -> int:
        """Events the store holds unfinished (cached for backlog_ttl unless `fresh`); 0 without a store count or if
        it fails."""
        if self._backlog is None:
            return 0
        now = self._clock()
        if not fresh and self._backlog_cache is not None and now - self._backlog_cache[0] < self._backlog_ttl:
            return self._backlog_cache[1]
        try:
            waiting = await self._backlog()
        except Exception:  # a store hiccup only costs the estimate: fall back to what is queued here
            log.warning("could not count the store's backlog; deciding from the events in flight", exc_info=True)
            waiting = 0
        self._backlog_cache = (now, waiting)
        return waiting

    async def channel_backlog(self, key: str, *, fresh: bool = False) -> int:
        """This channel's backlog: its queue here, or its share of the store's unfinished events if larger."""
        queue = self._queues.get(key, [])
        waiting = await self._store_backlog(fresh)
        queued_everywhere = sum(len(q) for q in self._queues.values())
        if not queue or not queued_everywhere:
            return len(queue)
        return max(len(queue), waiting * len(queue) // queued_everywhere)

    async def _next_batch(self, key: str, queue: list[OutboxItem]) -> tuple[list[OutboxItem], str]:
        head = queue[0]
        thread_key = f"thread:{key}"
        digestible = [i for i in queue if i.digestible]
        backlog = await self.channel_backlog(key)
        # Burst mode lasts digest_after past the last digest: the tail of a burst folds too, instead of going out
        # as single cards that would each cost a post in a channel whose rate windows the burst has just filled.
        in_burst = self._clock() < self._folding_until.get(key, 0.0)
        folding = head.digestible and (
            in_burst or self._pacer.backlog_seconds(thread_key, backlog) > self.digest_after)
        if head.digestible and not folding and self._backlog is not None:
            # A single card takes one of the channel's few posts (8 per 2 s): before spending it, look at the store
            # again rather than trust a count up to backlog_ttl old, which at the start of a burst predates most
            # of it (the first cards of a burst went out as 6 singles that delayed its digests by a second).
            backlog = await self.channel_backlog(key, fresh=True)
            folding = self._pacer.backlog_seconds(thread_key, backlog) > self.digest_after
        if folding and len(digestible) < self.digest_max and backlog > len(queue) and self.hold > 0:
            # More are on their way (enriching now): wait for a full digest rather than post a small one. The
            # store's count also holds the events of this channel's last post until the pipeline finishes them, and
            # it is cached: so while nothing arrives, ask the store again every `recheck` seconds and stop waiting
            # once nothing is left but what is queued here (the tail of a burst goes out then, not after `hold`).
            deadline = self._clock() + self.hold
            arrived = self._arrived.setdefault(key, asyncio.Event())
            while len([i for i in queue if i.digestible]) < self.digest_max:
                remaining = deadline - self._clock()
                if remaining <= 0:
                    break
                arrived.clear()
                try:
                    await asyncio.wait_for(arrived.wait(), timeout=min(remaining, self.recheck))
                except asyncio.TimeoutError:
                    if await self.channel_backlog(key, fresh=True) <= len(queue):
                        break
            digestible = [i for i in queue if i.digestible]
        if folding and len(digestible) >= 2:
            self._folding_until[key] = self._clock() + self.digest_after
            return digestible[: self.digest_max], "digest"
        if len(digestible) >= 2 and self._pacer.backlog_seconds(thread_key, len(queue)) > self.digest_after:
            return digestible[: self.digest_max], "digest"  # the queue alone is long (an approval at its head)
        return [head], ("reply" if head.reply_to else "thread")

    async def _drain(self, key: str) -> None:
        queue = self._queues[key]
        while queue:
            # The slot first, then the batch: what arrived while we waited for Teams' pace rides along.
            tenant = queue[0].tenant_id
            thread_key = f"thread:{key}"
            keys = [thread_key, f"tenant:{tenant}"]
            # Wait for Teams' pace, then choose the batch (what arrived meanwhile rides along; a folding channel may
            # hold for a full digest) and render it, and only then reserve the slot and post at once: Teams counts
            # a post when it arrives, the pacer from the slot, so no hold, render or store call may come between.
            await self._pacer.wait_free(keys)
            batch, kind = await self._next_batch(key, queue)
            head = batch[0]
            digest_id = None
            try:
                if kind == "digest":
                    digest_id = uuid.uuid4().hex[:12]
                    card = self._render_digest([i.summary for i in batch])
                else:
                    card = head.render_card()
            except Exception as exc:  # nothing was sent, nor reserved
                self._fail(queue, batch, exc)
                continue
            slot = await self._pacer.acquire(keys)
            try:
                if kind == "reply":
                    ref = await self._poster.reply(head.service_url, head.reply_to or "", card)
                else:
                    ref = await self._poster.create_channel_thread(
                        head.service_url, head.tenant_id, head.channel_id, card
                    )
            except TeamsThrottled as exc:
                # Pacing should prevent this; if Teams disagrees, honour its Retry-After and try again.
                self._pacer.settle(keys, slot)
                log.warning("Teams throttled channel %s; waiting %.1fs", key, exc.retry_after)
                self._pacer.penalize(thread_key, exc.retry_after)
                continue
            except Exception as exc:  # delivered to the waiting stage, which decides retry or park
                self._pacer.settle(keys, slot)
                self._fail(queue, batch, exc)
                continue
            self._pacer.settle(keys, slot)
            self.posts += 1
            if kind == "digest":
                self.digests += 1
            delivered = Delivered(ref, kind, digest_id, len(batch))
            for item in batch:
                queue.remove(item)
            # Every card of the post is recorded before the channel's next post; concurrently, so that a digest's
            # records share the store's group commits instead of taking one transaction (and fsync) each in turn.
            recorded = await asyncio.gather(*(self._record(item, delivered) for item in batch),
                                            return_exceptions=True)
            for item, outcome in zip(batch, recorded):
                if item.future.done():
                    continue
                if isinstance(outcome, BaseException):  # the post is in Teams but not recorded: the stage decides
                    item.future.set_exception(outcome)
                else:
                    item.future.set_result(delivered)
        self._queues.pop(key, None)

    @staticmethod
    async def _record(item: OutboxItem, delivered: Delivered) -> None:
        if item.on_posted is not None:
            await item.on_posted(delivered)

    @staticmethod
    def _fail(queue: list[OutboxItem], batch: list[OutboxItem], exc: Exception) -> None:
        for item in batch:
            queue.remove(item)
            if not item.future.done():
                item.future.set_exception(exc)
