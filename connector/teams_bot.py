"""What the bot does with each inbound Teams activity: installs are recorded, card presses go to approvals.

This is the connector's side of bot.BotHandlers; the bot (bot/sdk.py) has already checked the Bot Framework
token and translated the activity into our models.
"""

from __future__ import annotations

import logging
from typing import Protocol

from bot import CardExecute, CardSubmit, ChannelEvent, IncomingMessage, InstallEvent, InvokeFailure, LoginRequest
from connector.installs import InstallRecorder

log = logging.getLogger(__name__)

NOT_ENABLED = "Approvals from Teams are not enabled for this connector; please decide in Dynamics 365."


class ApprovalHandlers(Protocol):
    async def handle_submit(self, submit: CardSubmit) -> str | dict | None: ...

    async def handle_execute(self, execute: CardExecute) -> dict | str | LoginRequest | InvokeFailure: ...


class MyApprovalsHandlers(Protocol):
    async def on_message(self, message: IncomingMessage) -> str | dict | None: ...

    async def on_execute(self, execute: CardExecute) -> dict | str | LoginRequest | InvokeFailure | None: ...


class ReplyFeed(Protocol):
    async def offer(self, message: IncomingMessage) -> bool: ...


class ConnectorBotHandlers:
    def __init__(self, installs: InstallRecorder, approvals: ApprovalHandlers | None = None,
                 my_approvals: MyApprovalsHandlers | None = None, replies: ReplyFeed | None = None) -> None:
        self.installs = installs
        self.approvals = approvals
        self.my_approvals = my_approvals  # "my approvals" in the 1:1 chat (connector/approvals/my)
        self.replies = replies  # typed approval replies (connector/replies/feed.py)

    async def on_install(self, event: InstallEvent) -> None:
        await self.installs.on_install(event)

    async def on_uninstall(self, event: InstallEvent) -> None:
        await self.installs.on_uninstall(event)

    async def on_channel_event(self, event: ChannelEvent) -> None:
        await self.installs.on_channel_event(event)

    async def on_submit(self, submit: CardSubmit) -> str | dict | None:
        if self.approvals is None:
            return NOT_ENABLED
        return await self.approvals.handle_submit(submit)

    async def on_execute(self, execute: CardExecute) -> dict | str | LoginRequest | InvokeFailure:
        if self.approvals is None:
            return NOT_ENABLED
        if self.my_approvals is not None:  # the list card's buttons answer with the list, not the item's card
            listed = await self.my_approvals.on_execute(execute)
            if listed is not None:
                return listed
        return await self.approvals.handle_execute(execute)

    async def on_message(self, message: IncomingMessage) -> str | dict | None:
        if self.my_approvals is not None:  # 1:1 commands ("my approvals", help); None elsewhere
            answer = await self.my_approvals.on_message(message)
            if answer is not None:
                return answer
        if self.replies is not None and await self.replies.offer(message):
            return None  # a typed reply under an approval card: decided (and answered) by the reply inbox
        if message.conversation_type == "channel" and not message.mentions_bot:
            return None  # with RSC the bot sees every channel message: only an @mention is talking to it
        # Teams holds no financial records: the bot answers questions by pointing at Dynamics, nothing more.
        return ("I post Dynamics 365 events and approvals here. Open the card's 'Open in Dynamics' button for "
                "details; decisions are made with the card's buttons.")
