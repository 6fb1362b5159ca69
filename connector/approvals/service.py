"""Approve/Reject presses and the start of an approval: what the deliver stage and the bot call.

A press only writes to the store and answers: the compare-and-set `pending -> submitting` decides which press wins
(exactly one, however many arrive, from any copy, Submit or Execute), then the F&O call is enqueued as a durable
job (jobs.py) and the pipeline woken. Order, for crash safety: CAS first, enqueue second. A crash between the two
leaves a "submitting" approval without a job; the reconciler re-enqueues it (the enqueue is idempotent). The
other order could run the job of a press that lost the CAS.

Who may decide: only the approval's current assignee (`from.aadObjectId` == assignee object id). A refusal is as
private as Teams allows: Action.Execute answers a card only the presser sees; an Action.Submit in a 1:1 chat is
answered there; an Action.Submit in a channel gets a 1:1 message when the app is installed for that user, else a
short thread reply that names only who may decide (bots cannot send ephemeral channel messages).
"""

from __future__ import annotations

import asyncio
import logging
from dataclasses import dataclass, field
from typing import Any, Awaitable, Callable, Mapping

from bot import (CardExecute, CardSubmit, GraphError, GraphForbidden, InvokeFailure, LoginRequest, TeamsError,
                 TeamsForbidden)
from cards import CardsError
from connector.approvals.actas import SERVICE, Gate, SignInGate
from connector.approvals.config import ApprovalSettings
from connector.approvals.copies import REFRESH_VERB, CardCopies, when
from connector.approvals.jobs import enqueue_card_update, enqueue_decision
from connector.approvals.mapping import Approver, ApproverResolver
from connector.ops import logctx
from connector.store import Approval, AuditEntry, EventRecord, PostedCard, Store

log = logging.getLogger(__name__)

PERSONAL_ROUTE = "approvals:personal"
MAX_COMMENT = 1000


@dataclass(frozen=True)
class Press:
    """One button press on an approval card, whichever way it arrived."""

    kind: str  # "submit" | "execute"
    action: str  # lower-case outcome, or "refresh"
    work_item_id: str
    event_id: str | None  # the F&O EventId the card was built from
    environment: str | None
    comment: str
    user_object_id: str | None
    user_name: str | None
    user_mri: str | None
    conversation_id: str
    activity_id: str | None
    service_url: str
    tenant_id: str | None
    conversation_type: str | None
    trigger: str | None = None
    auth_token: str | None = field(default=None, repr=False)  # the SSO token of a retried Action.Execute
    auth_state: str | None = field(default=None, repr=False)  # the code after a manual sign-in
    link: str | None = None  # typed replies: the message's link in Teams (for the audit)

    @property
    def card_ref(self) -> str:
        return f"{self.kind}:{self.conversation_id}/{self.activity_id or '?'}"

    @classmethod
    def from_values(cls, kind: str, values: Mapping[str, Any], source: CardSubmit | CardExecute,
                    verb: str | None = None) -> "Press":
        return cls(kind=kind, action=str(verb or values.get("action") or "").strip().lower(),
                   work_item_id=str(values.get("workItemId") or ""), event_id=_str(values.get("eventId")),
                   environment=_str(values.get("environment")),
                   comment=str(values.get("comment") or "").strip()[:MAX_COMMENT],
                   user_object_id=(source.user_aad_object_id or "").lower() or None, user_name=source.user_name,
                   user_mri=source.user_id, conversation_id=source.conversation_id, activity_id=source.reply_to_id,
                   service_url=source.service_url, tenant_id=source.tenant_id,
                   conversation_type=source.conversation_type,
                   trigger=getattr(source, "trigger", None), auth_token=getattr(source, "auth_token", None),
                   auth_state=getattr(source, "auth_state", None))


def _str(v: Any) -> str | None:
    return str(v) if v not in (None, "") else None


def is_approval_action(values: Mapping[str, Any]) -> bool:
    """Whether a Submit value / Execute data belongs to an approval card."""
    return bool(values.get("workItemId")) and "action" in values


@dataclass(frozen=True)
class PressAnswer:
    card: dict[str, Any] | None = None  # Submit: replaces the card in place; Execute: this user's view
    text: str | None = None  # a reply where the press happened (Submit) / instead of a card (Execute)
    login: LoginRequest | InvokeFailure | None = None  # Execute only: sign in (or fail) instead of a card
    result: str = ""  # "decided" | "refused" | "already" | "unknown" | "untracked" | "refresh" (typed replies)


class ApprovalService:
    """The approvals' entry points for the deliver stage and the bot.

    Args:
        store, settings: the durable state and `[approvals]`.
        copies: renders and updates the cards.
        resolver: maps F&O users to Entra users.
        poster: TeamsPoster (1:1 copies, private refusals).
        graph: GraphClient or None (installing the app for an approver).
        wake: called after a decision job was enqueued (`pipeline.wake`).
        environments: the configured F&O environment names (a Submit press does not carry one).
        clock, sleep: injectable time.
        on_press: told what each press came to: "accepted" (now submitting), "refused" (not the approver),
            "already" (already decided), "stopped" (no longer pending, or the sign-in gate stopped it); the
            service's metrics (connector/app.py). Refresh, untracked and unknown-outcome presses are not told.
    """

    def __init__(self, store: Store, settings: ApprovalSettings, *, copies: CardCopies, resolver: ApproverResolver,
                 poster: Any, graph: Any, wake: Callable[[], None], environments: list[str],
                 clock: Callable[[], float], sleep: Callable[[float], Awaitable[None]] = asyncio.sleep,
                 gate: SignInGate | None = None, on_press: Callable[[str], None] | None = None) -> None:
        self.store = store
        self.settings = settings
        self.copies = copies
        self.resolver = resolver
        self.poster = poster
        self.graph = graph
        self.wake = wake
        self.environments = list(environments)
        self.clock = clock
        self.sleep = sleep
        self.gate = gate  # as whom the decision is made (act_as); None: as the service
        self.on_press = on_press or (lambda outcome: None)
        self._tasks: set[asyncio.Task[None]] = set()
        self._installed: dict[str, asyncio.Event] = {}  # object id -> set when its personal install is recorded

    # --- a work item card was posted -------------------------------------------------------------------------
    async def on_work_item_posted(self, record: EventRecord, data: dict[str, Any], posted: list[PostedCard],
                                  route_personal: bool) -> list[str]:
        """Track the approval of a work item whose card the deliver stage just posted; send the 1:1 copy.

        Never raises for Teams or Graph trouble (the channel card is out; the reason goes into the returned notes,
        which the caller appends to the event history).
        """
        block = data.get("approval") or {}
        wid = str(block.get("workItemId") or "")
        if not wid:
            return ["approvals: the event names no work item: not tracked"]
        rec = data.get("record") or {}
        work_item, user = rec.get("workItem") or {}, rec.get("user") or {}
        fo_user = work_item.get("UserId") or record.payload.get("WorkItemOwner")
        upn = user.get("Alias") or user.get("Email") or record.payload.get("WorkflowUserEmail")
        approver = await self.resolver.resolve(record.environment, fo_user, upn=upn, name=user.get("UserName"),
                                               known=(data.get("mentions") or {}).get("approver"))
        notes = [f"approvals: approver {fo_user} not mapped ({approver.note}): card without mention, "
                 "nobody can decide from Teams"] if approver.object_id is None else []
        now = self.clock()
        approval = await self._track(record, wid, block, work_item, approver, now)
        notes += await self._supersede(record.environment, work_item.get("PreviousWorkItemId"), wid, now)
        if route_personal and self.settings.personal_copy and approval.status == "pending":
            notes.append(await self.send_personal_copy(record, approval, posted))
        return notes

    async def _track(self, record: EventRecord, wid: str, block: dict[str, Any], work_item: dict[str, Any],
                     approver: Approver, now: float) -> Approval:
        existing = await self.store.get_approval(record.environment, wid)
        if existing is not None and existing.status != "pending":
            return existing
        approval = Approval(
            environment=record.environment, work_item_id=wid, event_id=record.id, status="pending",
            assignee_fo_user=approver.fo_user, assignee_object_id=approver.object_id, assignee_name=approver.name,
            subject=work_item.get("Subject") or record.payload.get("WorkflowWorkItemSubject"),
            outcomes=list(block.get("outcomes") or ["Approve", "Reject"]), fo_status=work_item.get("Status"),
            next_check_at=now + self.settings.reconcile_every,
            created_at=existing.created_at if existing else now, updated_at=now,
            reminders_sent=existing.reminders_sent if existing else 0,
            last_reminder_at=existing.last_reminder_at if existing else None,
        )
        await self.store.upsert_approval(approval)
        if existing is None:
            await self._audit(approval, "tracked", detail=f"assigned to {approver.fo_user} "
                              f"({approver.object_id or 'not mapped: ' + str(approver.note)})")
        return approval

    async def _supersede(self, environment: str, previous: Any, new_id: str, now: float) -> list[str]:
        if not previous or str(previous) == new_id:
            return []
        old = await self.store.transition_approval(environment, str(previous), from_status=("pending",),
                                                   changes={"status": "superseded", "superseded_by": new_id,
                                                            "fo_status": "Delegated", "updated_at": now})
        if old is None:
            return []
        await self._audit(old, "superseded", detail=f"replaced by work item {new_id}")
        await enqueue_card_update(self.store, old, now=now, reason="superseded")
        self.wake()
        return [f"approvals: work item {previous} superseded by {new_id}: its cards will say so"]

    # --- the 1:1 copy ----------------------------------------------------------------------------------------
    async def send_personal_copy(self, record: EventRecord, approval: Approval, posted: list[PostedCard]) -> str:
        oid = approval.assignee_object_id
        if not oid:
            return "approvals: no 1:1 copy (approver not mapped)"
        if any(c.kind == "personal" for c in await self.store.cards_for_event(record.id)):
            return "approvals: 1:1 copy already sent"
        personal = await self.store.get_install(f"personal:{oid}")
        service_url, tenant_id = await self._where(personal, posted)
        if not service_url or not tenant_id:
            return "approvals: no 1:1 copy (no install tells the service URL and tenant)"
        try:
            card = await self.copies.render(approval, view="approver", record=record)
        except (CardsError, LookupError) as exc:
            return f"approvals: no 1:1 copy (the card could not be rendered: {exc})"
        try:
            ref = await self.poster.create_personal(service_url, tenant_id, oid, card)
        except TeamsForbidden as exc:
            why = await self._install_for(oid, exc)
            if why:
                await self._audit(approval, "personal-copy", detail=f"not sent: {why}; the channel mention stays")
                return f"approvals: no 1:1 copy ({why}); the approver is @mentioned in the channel card"
            try:
                ref = await self.poster.create_personal(service_url, tenant_id, oid, card)
            except TeamsError as exc2:
                return f"approvals: no 1:1 copy after installing the app: {exc2}"
        except TeamsError as exc:
            return f"approvals: no 1:1 copy: {exc}"
        await self.store.record_card(PostedCard(
            event_id=record.id, route=PERSONAL_ROUTE, conversation_id=ref.conversation_id,
            activity_id=ref.activity_id, service_url=ref.service_url, kind="personal", posted_at=self.clock()))
        await self._audit(approval, "personal-copy", card=f"{ref.conversation_id}/{ref.activity_id}",
                          detail="sent in the approver's 1:1 chat")
        return f"approvals: 1:1 copy sent to {approval.assignee_name or oid} (message {ref.activity_id})"

    async def _where(self, personal: Any, posted: list[PostedCard]) -> tuple[str | None, str | None]:
        if personal is not None and personal.active:
            return personal.service_url, personal.tenant_id
        installs = await self.store.list_installs(active_only=True)
        service_url = posted[0].service_url if posted else None
        for install in installs:
            if service_url is None or install.service_url == service_url:
                return service_url or install.service_url, install.tenant_id
        return service_url, None

    async def _install_for(self, oid: str, refused: TeamsForbidden) -> str | None:
        """Install the app for the user via Graph and wait until the install is recorded. None = installed."""
        if self.graph is None or not self.settings.teams_app_external_id:
            return (f"the app is not installed for the approver ({refused.reason}) and installing it needs Graph "
                    "and approvals.teams_app_external_id")
        try:
            app_id = await self.graph.find_teams_app(self.settings.teams_app_external_id)
            if app_id is None:
                return f"the Teams app {self.settings.teams_app_external_id} is not in the org catalog"
            await self.graph.install_app_for_user(oid, app_id)
        except GraphForbidden as exc:
            return f"not permitted to install the app for the approver ({exc.permission or exc})"
        except GraphError as exc:
            return f"installing the app for the approver failed: {exc}"
        return await self._wait_for_install(oid)

    async def _wait_for_install(self, oid: str) -> str | None:
        """Until the personal install is recorded: woken by `on_install_recorded` (InstallRecorder's on_change),
        and checking the store every `install_poll` anyway (another instance may have recorded it)."""
        event = self._installed.setdefault(oid, asyncio.Event())
        deadline = self.clock() + self.settings.install_wait
        try:
            while True:
                install = await self.store.get_install(f"personal:{oid}")
                if install is not None and install.active:
                    return None
                if self.clock() >= deadline:
                    return f"the app was installed but Teams did not confirm within {self.settings.install_wait:g}s"
                waiter = asyncio.ensure_future(event.wait())
                nap = asyncio.ensure_future(self.sleep(self.settings.install_poll))
                try:
                    await asyncio.wait({waiter, nap}, return_when=asyncio.FIRST_COMPLETED)
                finally:
                    for task in (waiter, nap):
                        task.cancel()
                    await asyncio.gather(waiter, nap, return_exceptions=True)
                event.clear()
        finally:
            self._installed.pop(oid, None)

    async def on_install_recorded(self, install: Any) -> None:
        """InstallRecorder's `on_change`: a personal install we may be waiting for was recorded."""
        oid = (getattr(install, "user_aad_object_id", None) or "").lower()
        if getattr(install, "scope", None) == "personal" and oid in self._installed:
            self._installed[oid].set()

    # --- presses ---------------------------------------------------------------------------------------------
    async def handle_submit(self, submit: CardSubmit) -> dict | str | None:
        """connector.teams_bot.ApprovalHandlers: an Action.Submit on any card (ignored unless an approval's)."""
        if not is_approval_action(submit.value):
            return None
        return await self.on_submit(submit)

    async def handle_execute(self, execute: CardExecute) -> dict | str | LoginRequest | InvokeFailure:
        """connector.teams_bot.ApprovalHandlers: an Action.Execute on any card."""
        if not is_approval_action(execute.data):
            return "This button is not handled by the connector."
        return await self.on_execute(execute)

    async def on_submit(self, submit: CardSubmit) -> dict | str | None:
        """BotHandlers.on_submit for approval cards (check `is_approval_action(submit.value)` first)."""
        answer = await self.press(Press.from_values("submit", submit.value, submit))
        return answer.card if answer.card is not None else answer.text

    async def on_execute(self, execute: CardExecute) -> dict | str | LoginRequest | InvokeFailure:
        """BotHandlers.on_execute for approval cards (check `is_approval_action(execute.data)` first)."""
        answer = await self.press(Press.from_values("execute", execute.data, execute, execute.verb))
        if answer.login is not None:
            return answer.login
        return answer.card if answer.card is not None else (answer.text or "")

    async def press(self, p: Press) -> PressAnswer:
        """Handle one press with store writes only (no F&O, no outbound Teams call on the way)."""
        self.copies.learn_mri(p.user_object_id, p.user_mri)
        approval = await self._find(p)
        if approval is not None:  # the press's log lines name the approval and the event its cards came from
            logctx.bind(environment=approval.environment, work_item_id=approval.work_item_id,
                        approval_id=f"{approval.environment}/{approval.work_item_id}", event_id=approval.event_id)
        if approval is None:
            return PressAnswer(text=f"Work item {p.work_item_id or '?'} is not tracked by the connector.",
                               result="untracked")
        own_view = "approver" if p.kind == "execute" or p.conversation_type == "personal" else "base"
        may = bool(approval.assignee_object_id and p.user_object_id == approval.assignee_object_id.lower())
        if p.action == REFRESH_VERB:
            return PressAnswer(card=await self._card(approval, "approver" if may else "status"), result="refresh")
        now = self.clock()
        if not may:
            return await self._refuse(approval, p, now)
        if approval.status != "pending":
            return await self._already(approval, p, own_view, now)
        outcome = next((o for o in approval.outcomes if o.lower() == p.action), None)
        if outcome is None:
            await self._audit(approval, "refused", p, detail=f"unknown outcome {p.action!r}", at=now)
            return PressAnswer(text=f"'{p.action}' is not an outcome of work item {approval.work_item_id}.",
                               result="unknown")
        gate = await self.gate.check(p, approval.environment, outcome) if self.gate else Gate(True, SERVICE)
        if not gate.proceed:
            return await self._stopped(approval, p, outcome, gate, own_view)
        now = self.clock()  # the sign-in may have taken a moment
        won = await self.store.transition_approval(
            approval.environment, approval.work_item_id, from_status=("pending",),
            changes={"status": "submitting", "outcome": outcome, "comment": p.comment or None,
                     "decided_by_object_id": p.user_object_id, "decided_by_name": p.user_name or approval.assignee_name,
                     "decided_at": now, "updated_at": now,
                     "next_check_at": now + self.settings.submitting_stale_after})
        if won is None:
            current = await self.store.get_approval(approval.environment, approval.work_item_id) or approval
            return await self._already(current, p, own_view, now)
        await self._audit(won, "press", p, outcome=outcome, comment=p.comment or None, at=now)
        if gate.fallback:
            await self._audit(won, "fallback", p, outcome=outcome, at=now,
                              detail=f"decided as the service user: {gate.fallback}")
        result, job = await enqueue_decision(self.store, won, now=now, event_id=self.settings.decision_event_id,
                                             act_as=gate.act_as, fallback=gate.fallback)
        await self._audit(won, "submitted", p, outcome=outcome, at=now,
                          detail=f"decision job {job} ({result.value}) as the {gate.act_as}")
        self.wake()
        self.on_press("accepted")
        return PressAnswer(card=await self._card(won, own_view), result="decided")

    async def _stopped(self, approval: Approval, p: Press, outcome: str, gate: Gate, view: str) -> PressAnswer:
        """The sign-in gate stopped the press: sign in (Execute), or tell only the presser why (audited)."""
        await self._audit(approval, "sign-in", p, outcome=outcome, detail=gate.audit or "", at=self.clock())
        self.on_press("stopped")
        if isinstance(gate.answer, (LoginRequest, InvokeFailure)):
            return PressAnswer(login=gate.answer, result="stopped")
        text = str(gate.answer or "")
        if p.kind == "execute":
            return PressAnswer(card=await self._card(approval, view, note=text), text=text, result="stopped")
        if p.kind == "reply":  # answered where it was typed (the thread names only why, not the work item's data)
            return PressAnswer(text=text, result="stopped")
        return await self._private(p, text)

    async def _private(self, p: Press, text: str) -> PressAnswer:
        """A text for the presser of an Action.Submit only: in the 1:1 chat, else as a 1:1 message."""
        if p.conversation_type == "personal":
            return PressAnswer(text=text)
        install = await self.store.get_install(f"personal:{p.user_object_id}") if p.user_object_id else None
        if install is None or not install.active or not install.conversation_id:
            return PressAnswer(text=text)
        self._spawn(self._tell_privately(install, text))
        return PressAnswer()

    async def tell(self, user_object_id: str | None, text: str) -> bool:
        """A 1:1 message to a user (the decision job's F&O refusals). False when there is no 1:1 chat."""
        install = await self.store.get_install(f"personal:{user_object_id}") if user_object_id else None
        if install is None or not install.active or not install.conversation_id:
            return False
        await self._tell_privately(install, text)
        return True

    async def _find(self, p: Press) -> Approval | None:
        envs = [p.environment] if p.environment else self.environments
        found = [a for env in envs if (a := await self.store.get_approval(env, p.work_item_id)) is not None]
        if len(found) > 1 and p.event_id:
            for a in found:
                rec = await self.store.get_event(a.event_id)
                if rec is not None and str(rec.payload.get("EventId", "")).lower() == p.event_id.lower():
                    return a
        return found[0] if found else None

    async def _card(self, approval: Approval, view: str, note: str | None = None) -> dict[str, Any] | None:
        try:
            return await self.copies.render(approval, view=view, note=note, offline=True)
        except (CardsError, LookupError) as exc:
            log.warning("approval card for %s could not be rendered: %s", approval.work_item_id, exc)
            return None

    async def _already(self, approval: Approval, p: Press, view: str, now: float) -> PressAnswer:
        if approval.status in ("submitting", "decided"):
            text = (f"Already {past(approval.outcome)} by {approval.decided_by_name or 'someone'} at "
                    f"{when(approval.decided_at)}.")
        elif approval.status == "superseded":
            text = f"This work item was reassigned (now work item {approval.superseded_by})."
        else:
            text = f"This work item is no longer pending in Dynamics ({approval.fo_status or approval.status})."
        await self._audit(approval, "press", p, outcome=p.action, detail=f"ignored: {text}", at=now)
        self.on_press("already" if approval.status in ("submitting", "decided") else "stopped")
        card = await self._card(approval, view, note=text)
        if p.kind == "reply":  # a typed reply has no card to show the note on: answer in words
            return PressAnswer(text=text, result="already")
        return PressAnswer(card=card, text=None if card else text, result="already")

    async def _refuse(self, approval: Approval, p: Press, now: float) -> PressAnswer:
        who = approval.assignee_name or approval.assignee_fo_user or "the assignee"
        text = (f"Only {who} can decide on work item {approval.work_item_id}." if approval.assignee_object_id else
                f"Work item {approval.work_item_id} cannot be decided in Teams: its approver has no Teams account "
                "the connector knows. Open it in Dynamics.")
        private = "execute card" if p.kind == "execute" else ("1:1 reply" if p.conversation_type == "personal"
                                                                 else "1:1 message")
        if p.kind == "reply" and p.conversation_type != "personal":
            private = "thread reply (a typed reply is answered where it was typed)"
        if p.kind == "submit" and p.conversation_type != "personal":
            install = await self.store.get_install(f"personal:{p.user_object_id}") if p.user_object_id else None
            if install is None or not install.active or not install.conversation_id:
                private = "thread reply (no 1:1 chat with this user)"
        await self._audit(approval, "refused", p, outcome=p.action, detail=f"not the assignee; told by {private}",
                          at=now)
        self.on_press("refused")
        if p.kind == "execute":
            return PressAnswer(card=await self._card(approval, "status", note=text) or None, text=text,
                               result="refused")
        if p.conversation_type == "personal" or private.startswith("thread"):
            return PressAnswer(text=text, result="refused")
        self._spawn(self._tell_privately(install, text))
        return PressAnswer(result="refused")

    async def _tell_privately(self, install: Any, text: str) -> None:
        try:
            await self.poster.reply(install.service_url, install.conversation_id, None, text=text)
        except TeamsError as exc:
            log.warning("could not tell %s privately: %s", install.user_aad_object_id, exc)

    def _spawn(self, coro: Awaitable[None]) -> None:
        task = asyncio.ensure_future(coro)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def drain(self) -> None:
        """Wait for the private messages still being sent (tests; shutdown)."""
        while self._tasks:
            await asyncio.gather(*list(self._tasks), return_exceptions=True)

    async def aclose(self) -> None:
        await self.drain()

    async def _audit(self, approval: Approval, action: str, p: Press | None = None, *, outcome: str | None = None,
                     comment: str | None = None, detail: str = "", card: str | None = None,
                     at: float | None = None) -> None:
        if p is not None and p.kind == "reply":  # marked as a typed reply, with the message's link
            detail = f"typed reply {p.link or p.card_ref}" + (f"; {detail}" if detail else "")
        await self.store.append_audit(AuditEntry(
            at=self.clock() if at is None else at, environment=approval.environment,
            work_item_id=approval.work_item_id, action=action,
            actor_object_id=p.user_object_id if p else None, actor_name=p.user_name if p else None,
            outcome=outcome, comment=comment, card=card or (p.card_ref if p else None), detail=detail))


def past(outcome: str | None) -> str:
    return {"approve": "approved", "reject": "rejected"}.get((outcome or "").lower(), f"decided ({outcome})")
