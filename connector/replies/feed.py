"""The bot's own feed: channel messages Teams delivers without an @mention (RSC `ChannelMessage.Read.Group`) and
typed replies in the approver's 1:1 chat, turned into TypedReply and stored in the reply inbox.

Only replies under an approval card this service posted are taken; the rest of the channel's traffic is not ours
and gets no answer (the bot receives every message of the team and must stay silent about them).
"""

from __future__ import annotations

from bot import IncomingMessage
from connector.replies.inbox import ReplyInbox
from connector.replies.model import TypedReply, quoted_message_id
from connector.store import Store


class BotFeed:
    """Args: store; inbox; channels (take channel messages: `[replies] source` is "bot" or "both")."""

    def __init__(self, store: Store, inbox: ReplyInbox, *, channels: bool) -> None:
        self.store = store
        self.inbox = inbox
        self.channels = channels

    def candidate(self, message: IncomingMessage) -> TypedReply | None:
        """The message as a typed reply, or None when it cannot be one (a top-level post, a bot, no id)."""
        if message.from_bot or not message.activity_id:
            return None
        body = message.html or message.text
        common = dict(message_id=message.activity_id, body=body, content_type="html",
                      user_object_id=(message.user_aad_object_id or "").lower() or None, user_name=message.user_name,
                      mentions_bot=message.mentions_bot, service_url=message.service_url or None,
                      tenant_id=message.tenant_id, source="bot", channel_id=message.channel_id)
        if message.conversation_type == "channel":
            if not self.channels:
                return None
            _, _, root = message.conversation_id.partition(";messageid=")
            if not root or root == message.activity_id:
                return None  # a new post starts its own thread: not a reply under a card
            return TypedReply(root_id=root, conversation_id=message.conversation_id, conversation_type="channel",
                              **common)  # type: ignore[arg-type]
        if message.conversation_type in (None, "personal"):
            replied_to = message.reply_to_id or quoted_message_id(body)
            if not replied_to:
                return None
            return TypedReply(root_id=replied_to, conversation_id=message.conversation_id,
                              conversation_type="personal", **common)  # type: ignore[arg-type]
        return None

    async def offer(self, message: IncomingMessage) -> bool:
        """Store the message if it is a reply under one of our cards. True: it was ours (stored now or before)."""
        reply = self.candidate(message)
        if reply is None or not reply.root_id:
            return False
        cards = await self.store.find_cards_by_activity(reply.root_id)
        if not cards:
            return False
        await self.inbox.accept(reply)
        return True
