"""The Graph subscription manager: one subscription per channel that receives approval cards, kept alive.

Created with a random clientState (a secret in the SecretBox), an expiry near Graph's cap, and both notification
URLs under `server.public_url`; renewed by PATCH once `renew_when_left` of its lifetime is left; re-created when
Graph answers 404 or sends `subscriptionRemoved`; reauthorized on `reauthorizationRequired`. Graph's 429 waits
out Retry-After. Every change to one subscription happens under its store lease, so several instances on one store
create and renew each subscription exactly once.

Teams sends no `missed` lifecycle events, so a resync reads each open approval card's thread replies (after a
start, after a removal, and every `resync_every`) into the reply inbox, whose dedup on the message id makes a
reply seen twice count once.
"""

from __future__ import annotations

import asyncio
import hashlib
import logging
import secrets
from collections import Counter
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, replace
from typing import Any, Protocol

from bot import GraphError, GraphThrottled
from bot.subscriptions import ChannelMessage, GraphSubscriptions, channel_resource
from connector.replies.config import ReplySettings
from connector.replies.inbox import ReplyInbox
from connector.replies.model import TypedReply
from connector.store import GraphSubscription, Store, StoreError

log = logging.getLogger(__name__)

CLIENT_STATE_BYTES = 48  # 64 URL-safe characters: Graph allows up to 128


class SecretStore(Protocol):
    async def put(self, name: str, value: Any) -> None: ...

    async def get(self, name: str) -> Any: ...

    async def delete(self, name: str) -> None: ...


def secret_name(resource: str) -> str:
    return "graph-subscription/" + hashlib.sha256(resource.encode()).hexdigest()[:32]


@dataclass(frozen=True)
class Channel:
    team_id: str  # the team's Entra group id
    channel_id: str

    @property
    def resource(self) -> str:
        return channel_resource(self.team_id, self.channel_id)


class SubscriptionManager:
    """Args:
        store, secrets (SecretBox), graph (bot.subscriptions.GraphSubscriptions), settings (`[replies]`);
        public_url: `server.public_url` (https); owner: this instance's id (lease owner);
        channels: returns the channels that receive approval cards now; inbox: where resynced replies go;
        bot_app_id: to tell the bot's own messages apart; clock/sleep: injectable.
    """

    def __init__(self, store: Store, secrets_box: SecretStore, graph: GraphSubscriptions, settings: ReplySettings,
                 *, public_url: str, owner: str, channels: Callable[[], Awaitable[list[Channel]]],
                 inbox: ReplyInbox, clock: Callable[[], float],
                 sleep: Callable[[float], Awaitable[None]] = asyncio.sleep, bot_app_id: str = "") -> None:
        self.bot_app_id = bot_app_id
        self.store = store
        self.secrets = secrets_box
        self.graph = graph
        self.settings = settings
        self.base = public_url.rstrip("/")
        self.owner = owner
        self.channels = channels
        self.inbox = inbox
        self.clock = clock
        self.sleep = sleep
        self.counts: Counter[str] = Counter()  # created, renewed, recreated, reauthorized, deleted, throttled...
        self._not_before = 0.0  # after a 429: no Graph call before this
        self._states: dict[str, str] = {}  # resource -> decrypted clientState (process cache)
        self._wake = asyncio.Event()
        # the store lease admits its owner again; within this process one coroutine works on a subscription at a time
        self._locks: dict[str, asyncio.Lock] = {}

    def wake(self) -> None:
        """Sync now (an install was recorded: a channel may have started receiving approval cards)."""
        self._wake.set()

    @property
    def lifetime(self) -> float:
        return self.settings.expiry_minutes * 60.0

    # --- clientState ----------------------------------------------------------------------------------------
    async def client_state(self, sub: GraphSubscription) -> str | None:
        cached = self._states.get(sub.resource)
        if cached is not None:
            return cached
        try:
            value = (await self.secrets.get(secret_name(sub.resource))).reveal()
        except Exception:  # noqa: BLE001 - no secret (deleted, never created) means no valid clientState
            return None
        self._states[sub.resource] = value
        return value

    async def _new_client_state(self, resource: str) -> str:
        value = secrets.token_urlsafe(CLIENT_STATE_BYTES)
        await self.secrets.put(secret_name(resource), value)
        self._states[resource] = value
        return value

    # --- the schedule ---------------------------------------------------------------------------------------
    async def sync(self) -> Counter[str]:
        """Want a subscription for every approval channel, drop the others, create/renew what is due."""
        done: Counter[str] = Counter()
        wanted = {c.resource: c for c in await self.channels()}
        for channel in wanted.values():
            if await self.store.add_graph_subscription(GraphSubscription(
                    resource=channel.resource, team_id=channel.team_id, channel_id=channel.channel_id)):
                done["wanted"] += 1
        for sub in await self.store.list_graph_subscriptions():
            if self.clock() < self._not_before:
                done["throttled"] += 1
                break
            if sub.resource not in wanted:
                done[await self.delete(sub)] += 1
            elif self._due(sub):
                done[await self.ensure(sub.resource)] += 1
        return done

    def _due(self, sub: GraphSubscription) -> bool:
        if sub.status != "active" or not sub.subscription_id:
            return True
        return sub.expires_at - self.clock() <= self.lifetime * self.settings.renew_when_left

    async def ensure(self, resource: str, *, force: str | None = None) -> str:
        """Create, renew or re-create one subscription under its lease. `force`: "create" | "reauthorize"."""
        async with self._locks.setdefault(resource, asyncio.Lock()):
            return await self._ensure(resource, force)

    async def _ensure(self, resource: str, force: str | None) -> str:
        now = self.clock()
        sub = await self.store.lease_graph_subscription(resource, self.owner, now=now,
                                                        lease_seconds=self.settings.lease_seconds)
        if sub is None:
            return "leased-elsewhere"
        result = "kept"
        try:
            if force is None and not self._due(sub):
                return result
            if force == "reauthorize" and sub.subscription_id:
                result, sub = await self._reauthorize(sub)
            elif force == "create" or sub.status != "active" or not sub.subscription_id:
                result, sub = await self._create(sub, recreate=force == "create" or sub.subscription_id is not None)
            else:
                result, sub = await self._renew(sub)
        except GraphThrottled as exc:
            self._not_before = self.clock() + max(exc.retry_after, 1.0)
            sub = replace(sub, detail=f"throttled by Graph: retry after {exc.retry_after:g}s")
            result = "throttled"
        except GraphError as exc:
            sub = replace(sub, detail=f"Graph refused: {exc}"[:500],
                          status="failed" if sub.status != "active" else sub.status)
            result = "failed"
            log.warning("graph subscription %s: %s", resource, exc)
        finally:
            self.counts[result] += 1
            await self.store.put_graph_subscription(replace(sub, lease_owner=None, lease_expires_at=0.0))
        return result

    async def _create(self, sub: GraphSubscription, *, recreate: bool) -> tuple[str, GraphSubscription]:
        now = self.clock()
        if sub.subscription_id:
            try:
                await self.graph.delete(sub.subscription_id)  # Graph may still have it; never two for one channel
            except GraphError as exc:
                log.info("old subscription %s not deleted: %s", sub.subscription_id, exc)
        state = await self._new_client_state(sub.resource)
        info = await self.graph.create(sub.resource, notification_url=self.base + self.settings.notification_path,
                                       lifecycle_url=self.base + self.settings.lifecycle_path,
                                       expires_at=now + self.lifetime, client_state=state)
        sub = replace(sub, status="active", subscription_id=info.id, expires_at=info.expires_at or now + self.lifetime,
                      created_at=now, renewed_at=None, detail="")
        log.info("graph subscription %s %s for %s", info.id, "re-created" if recreate else "created", sub.resource)
        return ("recreated" if recreate else "created"), sub

    async def _renew(self, sub: GraphSubscription) -> tuple[str, GraphSubscription]:
        now = self.clock()
        assert sub.subscription_id is not None
        info = await self.graph.renew(sub.subscription_id, expires_at=now + self.lifetime)
        if info is None:  # Graph no longer has it: re-create, then catch up on what it did not deliver
            result, sub = await self._create(replace(sub, status="removed"), recreate=True)
            return result, await self._resync_soon(sub)
        return "renewed", replace(sub, expires_at=info.expires_at or now + self.lifetime, renewed_at=now,
                                  renewals=sub.renewals + 1, detail="")

    async def _reauthorize(self, sub: GraphSubscription) -> tuple[str, GraphSubscription]:
        assert sub.subscription_id is not None
        if await self.graph.reauthorize(sub.subscription_id):
            return "reauthorized", replace(sub, detail="")
        result, sub = await self._create(replace(sub, status="removed"), recreate=True)
        return result, await self._resync_soon(sub)

    async def delete(self, sub: GraphSubscription) -> str:
        """Delete at Graph (if it has it), then the record and its clientState."""
        async with self._locks.setdefault(sub.resource, asyncio.Lock()):
            return await self._delete(sub)

    async def _delete(self, sub: GraphSubscription) -> str:
        if await self.store.lease_graph_subscription(sub.resource, self.owner, now=self.clock(),
                                                     lease_seconds=self.settings.lease_seconds) is None:
            return "leased-elsewhere"
        if sub.subscription_id:
            try:
                await self.graph.delete(sub.subscription_id)
            except GraphError as exc:
                await self.store.put_graph_subscription(replace(sub, lease_owner=None, lease_expires_at=0.0,
                                                                detail=f"not deleted: {exc}"[:500]))
                return "failed"
        await self.store.delete_graph_subscription(sub.resource)
        try:
            await self.secrets.delete(secret_name(sub.resource))
        except Exception:  # noqa: BLE001 - already gone
            pass
        self._states.pop(sub.resource, None)
        self.counts["deleted"] += 1
        return "deleted"

    # --- lifecycle events -----------------------------------------------------------------------------------
    async def on_lifecycle(self, sub: GraphSubscription, event: str) -> None:
        """`reauthorizationRequired` -> reauthorize (re-create if Graph lost it); `subscriptionRemoved` ->
        re-create and resync. Runs off the request (GraphEndpoints spawns it)."""
        try:
            if event == "reauthorizationRequired":
                await self.ensure(sub.resource, force="reauthorize")
            elif event == "subscriptionRemoved":
                if await self.ensure(sub.resource, force="create") in ("created", "recreated"):
                    fresh = await self.store.get_graph_subscription(sub.resource)
                    await self.resync(fresh or sub)
            else:
                log.info("graph lifecycle event %r for %s ignored", event, sub.subscription_id)
        except StoreError as exc:
            log.warning("graph lifecycle %s for %s not handled: %s", event, sub.resource, exc)

    async def _resync_soon(self, sub: GraphSubscription) -> GraphSubscription:
        """Resync under the caller's lease; the caller writes the returned record."""
        now = self.clock()
        try:
            await self.resync(sub, record=False)
        except GraphError as exc:
            log.warning("resync of %s after re-creating its subscription failed: %s", sub.resource, exc)
            return sub
        return replace(sub, last_resync_at=now)

    # --- resync ---------------------------------------------------------------------------------------------
    async def resync(self, sub: GraphSubscription, *, record: bool = True) -> int:
        """Read the replies of every open approval card's thread in this channel into the inbox; returns how many
        were new there. Replies already stored (by Graph or the bot feed) are skipped by the inbox's dedup."""
        now = self.clock()
        since = (sub.last_resync_at or 0.0) - 600.0  # overlap: a reply's createdDateTime may trail its delivery
        new = 0
        for root_id, service_url in await self._open_roots(sub.channel_id):
            for message in await self.graph.list_replies(sub.team_id, sub.channel_id, root_id):
                if message.created_at and message.created_at < since:
                    continue
                if await self.inbox.accept(typed_reply(message, sub, root_id, service_url, source="resync",
                                                            bot_app_id=self.bot_app_id)):
                    new += 1
        current = await self.store.get_graph_subscription(sub.resource) if record else None
        if current is not None:
            await self.store.put_graph_subscription(replace(current, last_resync_at=now))
        self.counts["resynced"] += new
        return new

    async def resync_all(self) -> int:
        total = 0
        for sub in await self.store.list_graph_subscriptions():
            if sub.status == "active":
                try:
                    total += await self.resync(sub)
                except GraphError as exc:
                    log.warning("resync of %s failed: %s", sub.resource, exc)
        return total

    async def _open_roots(self, channel_id: str) -> list[tuple[str, str]]:
        roots: dict[str, str] = {}
        for approval in await self.store.list_approvals(status="pending", limit=1000):
            for card in await self.store.cards_for_event(approval.event_id):
                if card.kind == "thread" and card.channel_id == channel_id:
                    roots.setdefault(card.activity_id, card.service_url)
        return sorted(roots.items())

    async def run(self, stop: asyncio.Event) -> None:
        """Until `stop`: sync every `tick`; resync at start and every `resync_every`."""
        next_resync = self.clock()
        while not stop.is_set():
            try:
                await self.sync()
                if self.clock() >= next_resync:
                    await self.resync_all()
                    next_resync = self.clock() + self.settings.resync_every
            except (StoreError, GraphError) as exc:
                log.warning("graph subscriptions: %s", exc)
            nap = asyncio.ensure_future(self.sleep(self.settings.tick))
            halt = asyncio.ensure_future(stop.wait())
            woken = asyncio.ensure_future(self._wake.wait())
            try:
                await asyncio.wait({nap, halt, woken}, return_when=asyncio.FIRST_COMPLETED)
            finally:
                for task in (nap, halt, woken):
                    task.cancel()
                await asyncio.gather(nap, halt, woken, return_exceptions=True)
            self._wake.clear()


def typed_reply(message: ChannelMessage, sub: GraphSubscription, root_id: str, service_url: str | None, *,
                source: str, bot_app_id: str = "") -> TypedReply:
    """A Graph chatMessage as a TypedReply (an @mention of the bot is one whose `mentioned.application.id` is the
    bot's app id)."""
    mentions_bot = bool(bot_app_id) and any(
        str(((m.get("mentioned") or {}).get("application") or {}).get("id") or "").lower() == bot_app_id.lower()
        for m in message.mentions)
    return TypedReply(message_id=message.id, root_id=message.reply_to_id or root_id,
                      conversation_id=f"{sub.channel_id};messageid={message.reply_to_id or root_id}",
                      conversation_type="channel", body=message.body, content_type=message.content_type,
                      user_object_id=message.from_user_id, user_name=message.from_user_name,
                      from_app=message.from_app_id is not None or message.deleted
                      or message.message_type != "message", mentions_bot=mentions_bot,
                      service_url=service_url, web_url=message.web_url, source=source,
                      created_at=message.created_at, channel_id=sub.channel_id, team_id=sub.team_id)


def graph_fetch(store: Store, graph: GraphSubscriptions,
                bot_app_id: str = "") -> Callable[[dict[str, Any]], Awaitable[TypedReply | None]]:
    """The inbox's `fetch` for Graph notifications: read the named reply; the service URL comes from the card."""
    async def fetch(ids: dict[str, Any]) -> TypedReply | None:
        team, channel, root, reply = (str(ids.get(k) or "") for k in ("team", "channel", "root", "reply"))
        message = await graph.get_message(team, channel, root, reply or None)
        if message is None:
            return None
        cards = await store.find_cards_by_activity(root)
        service_url = cards[0].service_url if cards else None
        sub = GraphSubscription(resource=channel_resource(team, channel), team_id=team, channel_id=channel)
        return typed_reply(message, sub, root, service_url, source="graph", bot_app_id=bot_app_id)
    return fetch
