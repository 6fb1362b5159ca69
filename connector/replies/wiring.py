"""Replies.build: the typed-reply parts wired together (what app.py, the CLI and the tests call).

Which channels get a Graph subscription: every channel a route that carries work items (`*_WorkItem` events)
resolves to, plus every channel where a pending approval's card was posted.
"""

from __future__ import annotations

import asyncio
import fnmatch
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any

from bot.subscriptions import GraphSubscriptions
from connector.approvals.service import ApprovalService
from connector.replies.config import ReplySettings
from connector.replies.decide import ReplyDecider
from connector.replies.endpoints import GraphEndpoints
from connector.replies.feed import BotFeed
from connector.replies.inbox import ReplyInbox
from connector.replies.manager import Channel, SecretStore, SubscriptionManager, graph_fetch
from connector.routes import Route, TargetNotFound, resolve_channel
from connector.store import Store

SAMPLE_WORK_ITEM_EVENT = "Workflow_VendInvoiceReview_000123_VendInvoiceApproval_WorkItem"


def carries_work_items(route: Route) -> bool:
    return any(fnmatch.fnmatchcase(SAMPLE_WORK_ITEM_EVENT.lower(), p.lower()) or p.lower().endswith("_workitem")
               for p in route.events)


def approval_channels(store: Store, routes: list[Route]) -> Callable[[], Awaitable[list[Channel]]]:
    async def channels() -> list[Channel]:
        installs = await store.list_installs(active_only=True)
        found: dict[tuple[str, str], Channel] = {}
        for route in routes:
            if not carries_work_items(route):
                continue
            try:
                install, channel_id = resolve_channel(route, installs)
            except TargetNotFound:
                continue
            if install.aad_group_id:
                found[(install.aad_group_id, channel_id)] = Channel(install.aad_group_id, channel_id)
        by_channel = {cid: i.aad_group_id for i in installs if i.scope == "team" and i.aad_group_id
                      for cid in list(i.channels) + ([i.team_id] if i.team_id else [])}
        for approval in await store.list_approvals(status="pending", limit=1000):
            for card in await store.cards_for_event(approval.event_id):
                group = by_channel.get(card.channel_id or "")
                if card.kind == "thread" and card.channel_id and group:
                    found[(group, card.channel_id)] = Channel(group, card.channel_id)
        return sorted(found.values(), key=lambda c: (c.team_id, c.channel_id))
    return channels


@dataclass
class Replies:
    settings: ReplySettings
    inbox: ReplyInbox
    decider: ReplyDecider
    feed: BotFeed
    endpoints: GraphEndpoints | None = None
    manager: SubscriptionManager | None = None
    tasks: set[asyncio.Task[Any]] = field(default_factory=set)

    @classmethod
    def build(cls, *, store: Store, settings: ReplySettings, service: ApprovalService, poster: Any,
              graph: Any, secrets_box: SecretStore | None, public_url: str | None, routes: list[Route],
              owner: str, clock: Callable[[], float], bot_names: tuple[str, ...] = (), bot_app_id: str = "",
              sleep: Callable[[float], Awaitable[None]] = asyncio.sleep) -> "Replies":
        """`graph`: a bot.GraphClient, or None (then only the bot feed works)."""
        decider = ReplyDecider(store, service, poster, settings.words, bot_names)
        subs = GraphSubscriptions(graph) if graph is not None else None
        inbox = ReplyInbox(store, decider, fetch=graph_fetch(store, subs, bot_app_id) if subs else None, owner=owner,
                           clock=clock, sleep=sleep, lease=settings.reply_lease, max_attempts=settings.max_attempts,
                           tick=settings.worker_tick)
        feed = BotFeed(store, inbox, channels=settings.source in ("bot", "both"))
        replies = cls(settings, inbox, decider, feed)
        if settings.source in ("graph", "both") and subs is not None and secrets_box is not None and public_url:
            replies.manager = SubscriptionManager(store, secrets_box, subs, settings, public_url=public_url,
                                                  owner=owner, channels=approval_channels(store, routes),
                                                  inbox=inbox, clock=clock, sleep=sleep, bot_app_id=bot_app_id)
            replies.endpoints = GraphEndpoints(store, inbox, client_state=replies.manager.client_state,
                                               on_lifecycle=replies.manager.on_lifecycle, spawn=replies.spawn,
                                               clock=clock)
        return replies

    def set_owner(self, owner: str) -> None:
        self.inbox.owner = owner
        if self.manager is not None:
            self.manager.owner = owner

    def spawn(self, work: Awaitable[None]) -> None:
        task = asyncio.ensure_future(work)
        self.tasks.add(task)
        task.add_done_callback(self.tasks.discard)

    async def drain(self) -> None:
        while self.tasks:
            await asyncio.gather(*list(self.tasks), return_exceptions=True)

    def start(self, stop: asyncio.Event) -> list[asyncio.Task[None]]:
        tasks = [asyncio.create_task(self.inbox.run(stop), name="replies-inbox")]
        if self.manager is not None:
            tasks.append(asyncio.create_task(self.manager.run(stop), name="graph-subscriptions"))
        return tasks
