"""Keeps every copy of an approval card true: renders the card for an approval's state and updates it in place.

A work item's cards are the PostedCards of the event that announced it (channel thread, thread reply, the 1:1
copy). One render per view: "approver" (buttons), "status" (what someone who may not decide sees), "base" (what
a channel copy carries: the approver view, or the status view when the approver's MRI is known and the card's
`refresh.userIds` lets their client fetch the approver view). This module renders and posts; it never decides.
"""

from __future__ import annotations

import datetime as dt
import logging
import re
from dataclasses import dataclass, field
from typing import Any, Awaitable, Callable, Protocol

from bot import GraphError, TeamsError, TeamsForbidden, TeamsNotFound
from cards import Catalog, CardsError, render_card
from connector.carddata import UNAVAILABLE_TEMPLATE, build_card_data, default_template
from connector.store import Approval, EventRecord, PostedCard, Store

log = logging.getLogger(__name__)

_GUID = re.compile(r"^\{?([0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12})\}?$")
LIVE = ("pending", "submitting")
REFRESH_VERB = "refresh"


class CardPoster(Protocol):
    """The part of bot.TeamsPoster the approvals package uses (tests hand in a recording fake)."""

    async def update(self, service_url: str, conversation_id: str, activity_id: str, card: Any) -> None: ...

    async def reply(self, service_url: str, conversation_id: str, card: Any, *, text: str | None = None) -> Any: ...

    async def create_personal(self, service_url: str, tenant_id: str, user_aad_object_id: str, card: Any, *,
                              text: str | None = None) -> Any: ...


MriLookup = Callable[[str], Awaitable[str | None]]  # Entra object id -> Teams user MRI ("29:..."), or None


def when(ts: float | None) -> str:
    if not ts:
        return ""
    return dt.datetime.fromtimestamp(ts, dt.timezone.utc).strftime("%d %b %Y %H:%M UTC")


def past_tense(outcome: str | None) -> str:
    words = {"approve": "Approved", "reject": "Rejected", "requestchange": "Change requested",
             "delegate": "Delegated", "complete": "Completed"}
    return words.get((outcome or "").lower(), outcome or "")


@dataclass
class CardCopies:
    """Renders approval cards and updates every copy.

    Args:
        store: where the event, its posted cards and the approval live.
        poster: TeamsPoster (or a fake).
        catalog: the card templates.
        environments: environment name -> F&O base URL (for the card's links).
        graph: optional GraphClient, to name the initiator again when a card is re-rendered.
        mri_of: optional Entra object id -> MRI lookup for `refresh.userIds` (see `base_view`).
        locales: environment name -> card locale; approval cards (every copy, every update) use the environment's.
        on_update: told the result of each copy's update in `update_all`: "ok", "gone" (403/404: not retried),
            "retry" (transient), "failed" (any other refusal: not retried); the service's metrics.
    """

    store: Store
    poster: CardPoster
    catalog: Catalog
    environments: dict[str, str]
    graph: Any = None
    mri_of: MriLookup | None = None
    max_bytes: int = 28_000
    max_lines: int = 20
    locales: dict[str, str] = field(default_factory=dict)  # environment name -> card locale (when configured)
    on_update: Callable[[str], None] = lambda result: None

    def __post_init__(self) -> None:
        self._names: dict[str, str] = {}  # initiator object id -> display name (process cache)
        self._mris: dict[str, str] = {}  # object id -> MRI learned from presses

    def learn_mri(self, object_id: str | None, mri: str | None) -> None:
        """A press tells us a user's MRI (`from.id`); remember it for `refresh.userIds`."""
        if object_id and mri and mri.startswith("29:"):
            self._mris[object_id.lower()] = mri

    async def approver_mri(self, approval: Approval, offline: bool = False) -> str | None:
        oid = (approval.assignee_object_id or "").lower()
        if not oid:
            return None
        if oid in self._mris:
            return self._mris[oid]
        if self.mri_of is not None and not offline:
            try:
                mri = await self.mri_of(oid)
            except Exception as exc:  # noqa: BLE001 - best effort: without an MRI the base card keeps its buttons
                log.info("no MRI for %s: %s", oid, exc)
                mri = None
            if mri:
                self._mris[oid] = mri
                return mri
        return None

    # --- card data ------------------------------------------------------------------------------------------
    async def _mentions(self, approval: Approval, record: EventRecord, offline: bool) -> dict[str, dict[str, str]]:
        mentions: dict[str, dict[str, str]] = {}
        if approval.assignee_object_id:
            mentions["approver"] = {"id": approval.assignee_object_id,
                                    "name": approval.assignee_name or approval.assignee_fo_user or "Approver"}
        m = _GUID.match(str(record.payload.get("InitiatingUserAADObjectId") or ""))
        if m and self.graph is not None:
            oid = m.group(1).lower()
            name = self._names.get(oid)
            if name is None and not offline:
                try:
                    user = await self.graph.get_user(oid)
                except GraphError:
                    user = None
                name = (user.display_name or user.upn or "") if user else ""
                self._names[oid] = name
            if name:
                mentions["initiator"] = {"id": oid, "name": name}
        return mentions

    async def approval_block(self, approval: Approval, *, view: str, note: str | None = None) -> dict[str, Any]:
        """The `approval` object the template binds to, for one view of this approval's state."""
        block: dict[str, Any] = {"workItemId": approval.work_item_id, "outcomes": list(approval.outcomes),
                                 "status": "Pending", "decision": None, "eventId": approval.event_id,
                                 "actionable": view == "approver" and approval.status == "pending"}
        who = approval.decided_by_name or approval.decided_by_object_id
        if approval.status == "submitting":
            block["headline"] = f"{past_tense(approval.outcome)}: sending the decision to Dynamics…"
            block["decidedBy"] = f"{who}, {when(approval.decided_at)}" if who else None
            block["comment"] = approval.comment
        elif approval.status == "decided":
            block.update(status=approval.fo_status or "Completed", decision=approval.outcome,
                         decidedBy=f"{who} in Microsoft Teams, {when(approval.decided_at)}", comment=approval.comment)
        elif approval.status == "closed":
            block["status"] = approval.fo_status or "Unknown"
            if approval.outcome:  # decided in F&O directly
                block.update(decision=approval.outcome, comment=approval.comment,
                             decidedBy=f"{who} in Dynamics" if who else "in Dynamics")
            elif approval.fo_status == "Pending":  # F&O's validation refused us although the item is pending
                block["headline"] = "Dynamics did not accept a decision from Teams: please decide in Dynamics"
            else:
                block["headline"] = f"No longer pending in Dynamics ({approval.fo_status or 'unknown'})"
        elif approval.status == "superseded":
            block["status"] = approval.fo_status or "Delegated"
            block["headline"] = "Reassigned in Dynamics"
            newer = approval.superseded_by
            successor = await self.store.get_approval(approval.environment, newer) if newer else None
            to = f" to {successor.assignee_name or successor.assignee_fo_user}" if successor else ""
            block["note"] = (f"This work item was delegated or escalated{to}: the new work item {newer} has its "
                             "own card, which replaces this one.") if newer else "This work item was reassigned."
        elif view == "status" and approval.status == "pending":
            name = approval.assignee_name or approval.assignee_fo_user or "the assignee"
            block["note"] = f"Waiting for a decision by {name}."
        if note:
            block["note"] = f"{block['note']} {note}" if block.get("note") else note
        return {k: v for k, v in block.items() if v is not None or k == "decision"}

    async def render(self, approval: Approval, *, view: str, note: str | None = None,
                     record: EventRecord | None = None, offline: bool = False) -> dict[str, Any]:
        """The card for `approval` as `view` ("approver" | "status" | "base") shows it.

        `offline`: make no network call (Graph, MRI lookup); what is not cached is left out. The press path uses it
        so that Teams gets its answer in time.

        Raises:
            LookupError: the approval's event is gone from the store. CardsError: the template failed.
        """
        record = record or await self.store.get_event(approval.event_id)
        if record is None:
            raise LookupError(f"event {approval.event_id} of work item {approval.work_item_id} is not stored")
        live = approval.status in LIVE
        mri = await self.approver_mri(approval, offline or view != "base") if live else None
        if view == "base":  # the approver's client refreshes to the approver view when the card names their MRI
            view = "status" if mri else "approver"
        base_url = self.environments.get(record.environment, "")
        data = build_card_data(record, environment_name=record.environment, base_url=base_url,
                               locale=self.locales.get(record.environment))
        data["mentions"] = await self._mentions(approval, record, offline)
        data["approval"] = await self.approval_block(approval, view=view, note=note)
        template = UNAVAILABLE_TEMPLATE if data.get("missing") else default_template(record.business_event_id)
        card = render_card(template, data, catalog=self.catalog, max_bytes=self.max_bytes,
                           max_lines=self.max_lines).card
        if live:
            card["refresh"] = refresh_block(approval, record, [mri] if mri else None)
        return card

    # --- updates ---------------------------------------------------------------------------------------------
    async def copies(self, approval: Approval) -> list[PostedCard]:
        return [c for c in await self.store.cards_for_event(approval.event_id) if c.kind != "digest"]

    async def update_all(self, approval: Approval) -> tuple[list[str], list[TeamsError]]:
        """Update every copy in place. Returns (one line per copy, the transient errors to retry).

        Gone copies (404) and copies the bot may no longer write (403) are reported, not retried.
        """
        lines: list[str] = []
        transient: list[TeamsError] = []
        record = await self.store.get_event(approval.event_id)
        if record is None:
            return [f"event {approval.event_id} is gone: no card to update"], []
        rendered: dict[str, dict[str, Any]] = {}
        for copy in await self.copies(approval):
            view = "approver" if copy.kind == "personal" else "base"
            if view not in rendered:
                try:
                    rendered[view] = await self.render(approval, view=view, record=record)
                except CardsError as exc:
                    return [f"the card could not be rendered: {exc}"], []
            where = f"{copy.kind} {copy.conversation_id}/{copy.activity_id}"
            try:
                await self.poster.update(copy.service_url, copy.conversation_id, copy.activity_id, rendered[view])
                lines.append(f"updated {where}")
                self.on_update("ok")
            except (TeamsNotFound, TeamsForbidden) as exc:
                lines.append(f"could not update {where}: {exc}")
                self.on_update("gone")
            except TeamsError as exc:
                if not exc.transient:
                    lines.append(f"could not update {where}: {exc}")
                    self.on_update("failed")
                else:
                    transient.append(exc)
                    lines.append(f"will retry {where}: {exc}")
                    self.on_update("retry")
        return lines, transient


def refresh_block(approval: Approval, record: EventRecord, user_ids: list[str] | None) -> dict[str, Any]:
    """`refresh` (teams.md §2.2): an Action.Execute our on_execute answers with the viewer's own view.

    userIds are Teams user MRIs (`29:...`, what `from.id` carries), at most 60. Without them Teams refreshes for
    every member of a conversation of up to 60 people, and nobody automatically above that.
    """
    return _refresh(approval.work_item_id, approval.environment, record.payload.get("EventId"), user_ids)


def _refresh(work_item_id: str, environment: str, event_id: Any, user_ids: list[str] | None) -> dict[str, Any]:
    block: dict[str, Any] = {"action": {"type": "Action.Execute", "title": "Refresh", "verb": REFRESH_VERB,
                                        "data": {"action": REFRESH_VERB, "workItemId": work_item_id,
                                                 "eventId": event_id, "environment": environment}}}
    if user_ids:
        block["userIds"] = user_ids[:60]
    return block


def add_refresh(card: dict[str, Any], data: dict[str, Any]) -> dict[str, Any]:
    """For the deliver stage: give a freshly rendered approval card (card data with `approval`) the `refresh`
    that later updates carry, so each viewer's client can fetch their own view. Mutates and returns `card`."""
    approval = data.get("approval") or {}
    if approval.get("workItemId"):
        card["refresh"] = _refresh(str(approval["workItemId"]), str((data.get("environment") or {}).get("name") or ""),
                                   (data.get("event") or {}).get("EventId"), None)
    return card
