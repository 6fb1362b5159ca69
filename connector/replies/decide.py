"""From a typed reply to a decision, through the approval service's press path (the same approver check,
once-only compare-and-set, audit and card updates as the buttons).

Ignored, with the reason as the outcome: the bot's (any app's) own messages, top-level posts, replies under
anything but an approval card this service posted, and ambiguous replies that do not name the bot. A refusal, an
"already decided" and an ambiguity that names the bot are answered where the reply was typed.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import Any

from bot import TeamsError
from connector.approvals.service import ApprovalService, Press
from connector.replies.config import ReplyWords
from connector.replies.model import TypedReply, strip_quote
from connector.replies.parser import how_to_reply, parse_reply
from connector.store import Approval, PostedCard, Store

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class ReplyOutcome:
    result: str  # "decided" | "refused" | "already" | "ambiguous" | "ignored" | "unknown" | "untracked"
    detail: str
    work_item_id: str | None = None


class ReplyDecider:
    """Args: store; service (the approval service); poster (TeamsPoster: answers in the thread/chat);
    words (`[replies.words]`); bot_names (the bot's display names, to notice "@Bot maybe")."""

    def __init__(self, store: Store, service: ApprovalService, poster: Any, words: ReplyWords,
                 bot_names: tuple[str, ...] = ()) -> None:
        self.store = store
        self.service = service
        self.poster = poster
        self.words = words
        self.bot_names = bot_names

    async def decide(self, reply: TypedReply) -> ReplyOutcome:
        if reply.from_app:
            return ReplyOutcome("ignored", "sent by an app (the bot's own messages included)")
        if not reply.root_id or reply.root_id == reply.message_id:
            return ReplyOutcome("ignored", "not a reply under a card")
        found = await self._approval_under(reply)
        if found is None:
            return ReplyOutcome("ignored", f"not under an approval card of this service (message {reply.root_id})")
        approval, card = found
        parsed = parse_reply(strip_quote(reply.body), self.words, bot_names=self.bot_names,
                             content_type=reply.content_type, mentions_bot=reply.mentions_bot)
        if parsed.verb is None:
            if parsed.names_bot:
                await self._answer(reply, card, how_to_reply(self.words))
                return ReplyOutcome("ambiguous", "answered with how to reply", approval.work_item_id)
            return ReplyOutcome("ignored", "no decision word at the start", approval.work_item_id)
        record = await self.store.get_event(approval.event_id)
        press = Press(kind="reply", action=parsed.verb, work_item_id=approval.work_item_id,
                      event_id=str(record.payload.get("EventId")) if record and record.payload.get("EventId") else None,
                      environment=approval.environment, comment=parsed.comment,
                      user_object_id=(reply.user_object_id or "").lower() or None, user_name=reply.user_name,
                      user_mri=None, conversation_id=reply.conversation_id, activity_id=reply.message_id,
                      service_url=reply.service_url or card.service_url, tenant_id=reply.tenant_id,
                      conversation_type=reply.conversation_type, link=reply.web_url)
        answer = await self.service.press(press)
        if answer.text and answer.result != "decided":
            await self._answer(reply, card, answer.text)
        return ReplyOutcome(answer.result or "decided", answer.text or f"{parsed.verb} by typed reply",
                            approval.work_item_id)

    async def _approval_under(self, reply: TypedReply) -> tuple[Approval, PostedCard] | None:
        assert reply.root_id is not None
        for card in await self.store.find_cards_by_activity(reply.root_id):
            if reply.conversation_type == "personal":
                if card.kind != "personal" or card.conversation_id != reply.conversation_id:
                    continue
            elif card.kind == "personal" or (reply.channel_id and card.channel_id
                                              and card.channel_id != reply.channel_id):
                continue
            record = await self.store.get_event(card.event_id)
            if record is None:
                continue
            wid = record.payload.get("WorkflowWorkItemInstanceId")
            approval = await self.store.get_approval(record.environment, str(wid)) if wid else None
            if approval is not None:
                return approval, card
        return None

    async def _answer(self, reply: TypedReply, card: PostedCard, text: str) -> None:
        """In the thread (channel) or the chat (1:1); a failure is logged, the outcome stands."""
        conversation = reply.conversation_id or card.conversation_id
        try:
            await self.poster.reply(reply.service_url or card.service_url, conversation, None, text=text)
        except TeamsError as exc:
            log.warning("could not answer typed reply %s: %s", reply.message_id, exc)
