""""My approvals": an approver's list of everything waiting for them, in their 1:1 chat with the bot.

    commands.py  what a typed message asks for (`[approvals.commands]` words)
    listing.py   the rows: the caller's pending approvals, re-checked in F&O when stale, described
    card.py      the list card (template `my-approvals`, paged, `refresh` for the caller) and the help card
    deeplink.py  Teams links to the channel card each row belongs to
    summary.py   the opt-in morning summary (durable schedule in the store, once per local working day)

`MyApprovals` is what connector/teams_bot.py calls: `on_message` (1:1 text) and `on_execute` (the list card's
buttons). A decision goes through ApprovalService.press, the same path as the channel card's buttons.
"""

from __future__ import annotations

import logging
from typing import Any, Callable

from bot import CardExecute, IncomingMessage, InvokeFailure, LoginRequest
from cards import Catalog
from connector.approvals.config import ApprovalSettings
from connector.approvals.my.card import LIST, LIST_VERB, ListCard, help_card, render_list
from connector.approvals.my.commands import Command, parse
from connector.approvals.my.listing import Lister
from connector.approvals.my.summary import DailySummary
from connector.approvals.service import ApprovalService, Press, is_approval_action, past
from connector.store import Store, SummarySubscription

log = logging.getLogger(__name__)

__all__ = ["LIST", "LIST_VERB", "DailySummary", "Lister", "MyApprovals"]


class MyApprovals:
    def __init__(self, *, store: Store, settings: ApprovalSettings, service: ApprovalService, lister: Lister,
                 catalog: Catalog, poster: Any, graph: Any, clock: Callable[[], float],
                 max_bytes: int = 28_000) -> None:
        self.store = store
        self.settings = settings
        self.service = service
        self.lister = lister
        self.catalog = catalog
        self.poster = poster
        self.clock = clock
        self.max_bytes = max_bytes
        self.summary = DailySummary(store, settings.summary, send=self._send_summary, graph=graph, clock=clock)

    # --- typed messages ----------------------------------------------------------------------------------------
    async def on_message(self, message: IncomingMessage) -> dict | str | None:
        """The answer to a 1:1 message; None for other conversations (the list is private to its approver)."""
        if message.conversation_type not in (None, "personal"):
            return None
        parsed = parse(message.text, self.settings.commands)
        oid = (message.user_aad_object_id or "").lower()
        if parsed.command is Command.MY_LIST:
            if not oid:
                return "Teams did not say who you are, so I cannot list your approvals."
            return (await self.list_card(oid, message.user_id, after="")).card
        if parsed.command is Command.DAILY_ON:
            return await self.summary.turn_on(message)
        if parsed.command is Command.DAILY_OFF:
            return await self.summary.turn_off(message)
        note = None if parsed.command is Command.HELP or not parsed.text else (
            f"I did not understand “{parsed.text[:80]}”.")
        return self.help(note)

    def help(self, note: str | None = None) -> dict:
        w = self.settings.commands
        return help_card(w.my_approvals, w.daily, w.on, w.off, summary_enabled=self.settings.summary.enabled,
                         note=note)

    async def list_card(self, oid: str, user_mri: str | None, *, after: str, note: str | None = None) -> ListCard:
        size = self.settings.my_list.page_size
        page = await self.lister.page(oid, after=after, size=size)
        if not page.rows and after:  # the page emptied (decisions): show the oldest again
            page = await self.lister.page(oid, after="", size=size)
            after = ""
        return render_list(self.catalog, page, after=after, note=note, page_size=size, user_mri=user_mri,
                           max_bytes=self.max_bytes)

    # --- the list card's buttons --------------------------------------------------------------------------------
    @staticmethod
    def owns(data: Any) -> bool:
        return isinstance(data, dict) and data.get("list") == LIST

    async def on_execute(self, execute: CardExecute) -> dict | str | LoginRequest | InvokeFailure | None:
        """An Action.Execute from the list card (refresh, paging, a decision); None when not the list's."""
        data = dict(execute.data or {})
        if not self.owns(data):
            return None
        oid = (execute.user_aad_object_id or "").lower()
        if not oid:
            return "Teams did not say who you are, so I cannot list your approvals."
        after = str(data.get("after") or "")
        note = None
        if (execute.verb or "").lower() != LIST_VERB.lower() and is_approval_action(data):
            decided = await self._decide(execute, data, oid)
            if not isinstance(decided, str):
                return decided  # act_as "approver": Teams signs the user in and presses again
            note = decided
        return (await self.list_card(oid, execute.user_id, after=after, note=note)).card

    async def _decide(self, execute: CardExecute, data: dict[str, Any],
                      oid: str) -> str | LoginRequest | InvokeFailure:
        """The same press as on the channel card (approver check, once-only, audit, every copy updated)."""
        box = data.get("commentInput")
        if isinstance(box, str) and box.startswith("comment_"):
            data["comment"] = data.get(box) or ""
        press = Press.from_values("execute", data, execute, execute.verb)
        env = press.environment or await self._environment_of(press.work_item_id)
        before = await self.store.get_approval(env, press.work_item_id) if env else None
        answer = await self.service.press(press)
        if answer.login is not None:
            return answer.login
        after = await self.store.get_approval(env, press.work_item_id) if env else None
        if (before is not None and after is not None and before.status == "pending"
                and after.status == "submitting" and after.decided_by_object_id == oid):
            return (f"{past(after.outcome).capitalize()} work item {after.work_item_id}"
                    f"{' (' + after.subject + ')' if after.subject else ''}: sending the decision to Dynamics.")
        if answer.text:
            return answer.text
        if after is not None and after.status in ("submitting", "decided"):
            return (f"Work item {after.work_item_id} was already {past(after.outcome)} by "
                    f"{after.decided_by_name or 'someone'}.")
        if after is not None:
            return f"Work item {after.work_item_id} is no longer waiting for you ({after.fo_status or after.status})."
        return f"Work item {press.work_item_id} is not tracked by the connector."

    async def _environment_of(self, work_item_id: str) -> str | None:
        for env in self.service.environments:
            if await self.store.get_approval(env, work_item_id) is not None:
                return env
        return None

    # --- the morning summary ------------------------------------------------------------------------------------
    async def _send_summary(self, sub: SummarySubscription) -> str | None:
        listed = await self.list_card(sub.user_object_id, None, after="",
                                      note="Good morning: this is what waits for your decision.")
        if listed.total == 0:
            return None
        await self.poster.reply(sub.service_url, sub.conversation_id, listed.card)
        return f"summary sent ({listed.total} waiting, {listed.shown} on the card)"
