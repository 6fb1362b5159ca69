"""Helpers for the typed-reply tests: the Replies bundle over the approvals world, and messages as Teams sends
them to the bot (RSC channel feed, 1:1 chat)."""

from __future__ import annotations

import itertools

from approvals_fakes import CHANNEL, SU, TENANT, WI, chat_of

from bot import GraphUser, IncomingMessage
from connector.replies.config import ReplySettings
from connector.replies.wiring import Replies

_ids = itertools.count(7001)


def replies_for(world, settings: ReplySettings | None = None, owner: str = "i-1") -> Replies:
    return Replies.build(store=world.store, settings=settings or ReplySettings(), service=world.service,
                         poster=world.poster, graph=None, secrets_box=None, public_url=None, routes=[], owner=owner,
                         clock=world.clock, sleep=world.fake_sleep)


def channel_reply(user: GraphUser, text: str, *, wid: str = WI, message_id: str | None = None,
                  mention: bool = False) -> IncomingMessage:
    return IncomingMessage(text=text, conversation_id=f"{CHANNEL};messageid={wid}", service_url=SU, tenant_id=TENANT,
                           activity_id=message_id or str(next(_ids)), conversation_type="channel",
                           channel_id=CHANNEL, user_id=f"29:{user.id}", user_aad_object_id=user.id,
                           user_name=user.display_name, mentions_bot=mention)


def personal_reply(user: GraphUser, text: str, *, replied_to: str | None,
                   message_id: str | None = None) -> IncomingMessage:
    return IncomingMessage(text=text, conversation_id=chat_of(user.id), service_url=SU, tenant_id=TENANT,
                           activity_id=message_id or str(next(_ids)), conversation_type="personal",
                           user_id=f"29:{user.id}", user_aad_object_id=user.id, user_name=user.display_name,
                           reply_to_id=replied_to)


async def settle(world, replies: Replies) -> None:
    """Decide every stored reply, then run the decision jobs (F&O complete, card updates)."""
    for _ in range(20):
        if not await replies.inbox.run_once():
            break
    await world.run_pipeline()
    await world.service.drain()
