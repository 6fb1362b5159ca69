"""`ml-connector subscriptions list | sync | delete`: the Graph subscriptions as the store knows them, and the
manager run once from the command line (with the bot's credential, like the service)."""

from __future__ import annotations

import datetime as dt
import time
from collections import Counter
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

import aiohttp

from bot import GraphClient
from bot.subscriptions import GraphSubscriptions
from connector.config import ConfigError, Settings
from connector.replies.inbox import ReplyInbox
from connector.replies.manager import SubscriptionManager
from connector.replies.wiring import approval_channels
from connector.secrets import SecretBox
from connector.store import GraphSubscription, Store


def _when(ts: float | None) -> str:
    if not ts:
        return "-"
    return dt.datetime.fromtimestamp(ts, dt.timezone.utc).strftime("%Y-%m-%d %H:%M")


def list_text(subs: list[GraphSubscription]) -> str:
    if not subs:
        return ("no Graph subscriptions (they are made by `serve` or `subscriptions sync` when [replies] source is "
                "\"graph\" or \"both\" and a channel receives approval cards)")
    lines = []
    for s in subs:
        lines.append(f"{s.status:<7} {s.resource}\n        id {s.subscription_id or '-'}  expires {_when(s.expires_at)}"
                     f"  created {_when(s.created_at)}  renewed {_when(s.renewed_at)} ({s.renewals}x)"
                     f"  last notification {_when(s.last_notification_at)}  last resync {_when(s.last_resync_at)}"
                     + (f"\n        {s.detail}" if s.detail else ""))
    return "\n".join(lines)


@asynccontextmanager
async def manager_for(settings: Settings, store: Store, box: SecretBox) -> AsyncIterator[SubscriptionManager]:
    """A SubscriptionManager over the configured Graph (the bot's app), for one command."""
    from connector.instances import lease_owner
    from connector.tls import client_ssl_context
    from connector.token_wiring import bot_credential, graph_token_source, load_ref, token_provider
    from connector.validation import validate_settings

    if settings.replies.source not in ("graph", "both") or not settings.server.public_url:
        raise ConfigError("Graph subscriptions need [replies] source = \"graph\" or \"both\" and server.public_url")
    validated = validate_settings(settings)
    teams = validated.teams
    if teams is None or not teams.enabled:
        raise ConfigError("Graph subscriptions use the bot's app: configure [bot] app_id and its credential")
    ref = bot_credential(settings, teams)
    credential = await load_ref(box, ref)
    tokens = token_provider(settings)
    ssl_ctx = client_ssl_context(settings.cloud.ca_bundle)
    try:
        async with aiohttp.ClientSession(connector=aiohttp.TCPConnector(ssl=ssl_ctx)) as session:
            graph = GraphClient(session, settings.cloud.endpoint("graph_url"),
                                graph_token_source(tokens, settings, ref, credential), ssl=ssl_ctx)
            owner = lease_owner("cli")
            # the inbox only stores resynced replies here; the running service decides them
            inbox = ReplyInbox(store, None, fetch=None, owner=owner, clock=time.time)  # type: ignore[arg-type]
            yield SubscriptionManager(store, box, GraphSubscriptions(graph), settings.replies,
                                      public_url=settings.server.public_url, owner=owner,
                                      channels=approval_channels(store, validated.routes), inbox=inbox,
                                      clock=time.time, bot_app_id=teams.app_id)
    finally:
        tokens.close()


async def sync(manager: SubscriptionManager) -> Counter[str]:
    return await manager.sync()


async def delete(manager: SubscriptionManager, store: Store, resource: str | None) -> list[str]:
    """Delete one subscription (by resource or Graph id) or, with None, all; returns what happened per resource."""
    done = []
    for sub in await store.list_graph_subscriptions():
        if resource in (None, sub.resource, sub.subscription_id):
            done.append(f"{await manager.delete(sub)}: {sub.resource}")
    return done
