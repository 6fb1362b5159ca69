"""Background care of approvals: re-validate pending ones in F&O, re-enqueue stuck decisions, send reminders.

`reconcile_once(now)` and `remind_once(now)` do one round each and are what tests call; `run_background(stop)`
repeats them every `background_tick` until `stop` is set (the app holds and awaits that task). F&O calls are
rate limited (`reconcile_per_minute`); what does not fit waits for the next round (oldest next_check_at first).
`on_workflow_event(record)` re-checks the work item a non-`_WorkItem` workflow event names (element completed,
workflow completed/canceled): F&O's row, not the event's fields, decides what the cards say.
"""

from __future__ import annotations

import asyncio
import logging
from typing import Any

from connector.approvals.decide import ApprovalDeps, work_item_id_of
from connector.approvals.fo import apply_fo_row, read_work_item, translated
from connector.approvals.jobs import SYNC_STAGE, enqueue_card_update, enqueue_decision
from connector.pipeline import Stage, StageOutcome
from connector.store import Approval, AuditEntry, EventRecord

log = logging.getLogger(__name__)

_SCAN_LIMIT = 1000


class _Budget:
    """A token bucket: `per_minute` F&O calls a minute, at most a minute's worth saved up."""

    def __init__(self, per_minute: int) -> None:
        self.per_minute = per_minute
        self.tokens = float(per_minute)
        self.at: float | None = None

    def take(self, now: float) -> bool:
        if self.at is not None:
            self.tokens = min(self.per_minute, self.tokens + (now - self.at) * self.per_minute / 60.0)
        self.at = now
        if self.tokens >= 1:
            self.tokens -= 1
            return True
        return False


class Reconciler:
    def __init__(self, deps: ApprovalDeps, poster: Any) -> None:
        self.deps = deps
        self.poster = poster
        self.budget = _Budget(deps.settings.reconcile_per_minute)

    # --- F&O ---------------------------------------------------------------------------------------------
    async def check(self, approval: Approval, now: float) -> str | None:
        """Validate one pending approval in F&O and correct it when F&O moved on. Returns what changed, None
        when the budget is spent. Raises RetryLater/Park for F&O trouble."""
        fo = self.deps.fo.get(approval.environment)
        if fo is None:
            return f"{approval.work_item_id}: environment {approval.environment} not configured"
        if not self.budget.take(now):
            return None
        try:
            valid = await fo.workflow.validate(approval.work_item_id)
        except Exception as exc:
            raise translated(exc) from exc
        if valid:
            await self.deps.store.transition_approval(
                approval.environment, approval.work_item_id, from_status=("pending",),
                changes={"next_check_at": now + self.deps.settings.reconcile_every, "updated_at": now})
            return f"{approval.work_item_id}: still pending"
        if not self.budget.take(now):
            return None
        row = await read_work_item(fo, approval.work_item_id)
        moved = await apply_fo_row(self.deps.store, approval, row, now)
        if moved is None:
            await self.deps.store.transition_approval(
                approval.environment, approval.work_item_id, from_status=("pending",),
                changes={"next_check_at": now + self.deps.settings.reconcile_every, "updated_at": now})
            return f"{approval.work_item_id}: not valid but still pending in F&O"
        await self._audit(moved, "reconciled", now, f"F&O status {moved.fo_status}: now {moved.status}")
        await enqueue_card_update(self.deps.store, moved, now=now, reason="reconciled")
        self.deps.wake()
        return f"{approval.work_item_id}: {moved.status} ({moved.fo_status})"

    async def reconcile_once(self, now: float) -> list[str]:
        """One round: due pending approvals re-validated; stale "submitting" ones re-enqueued."""
        lines: list[str] = []
        for approval in await self.deps.store.list_approvals(status="submitting", due_before=now, limit=_SCAN_LIMIT):
            # a re-enqueued decision keeps the configured mode: the job finds the approver's sign-in in memory or
            # handles its absence per act_as (never silently as the service under "approver")
            act_as = "service" if self.deps.settings.act_as == "service" else "approver"
            result, job = await enqueue_decision(self.deps.store, approval, now=now,
                                                 event_id=self.deps.settings.decision_event_id, act_as=act_as)
            if result.value == "new":
                await self._audit(approval, "reconciled", now, f"decision job was missing: re-enqueued as {job}")
                self.deps.wake()
                lines.append(f"{approval.work_item_id}: decision re-enqueued")
            await self.deps.store.transition_approval(
                approval.environment, approval.work_item_id, from_status=("submitting",),
                changes={"next_check_at": now + self.deps.settings.submitting_stale_after})
        for approval in await self.deps.store.list_approvals(status="pending", due_before=now, limit=_SCAN_LIMIT):
            try:
                line = await self.check(approval, now)
            except Exception as exc:  # noqa: BLE001 - F&O down or throttled: try the rest next round
                lines.append(f"{approval.work_item_id}: check failed: {exc}")
                break
            if line is None:
                lines.append("F&O call budget spent: the rest waits for the next round")
                break
            lines.append(line)
        return lines

    async def on_workflow_event(self, record: EventRecord) -> list[str]:
        """A workflow event that is not a `_WorkItem` one: re-check the work item it names."""
        wid = work_item_id_of(record)
        if not wid:
            return ["approvals: the event names no work item"]
        approval = await self.deps.store.get_approval(record.environment, wid)
        if approval is None:
            return [f"approvals: work item {wid} is not tracked"]
        if approval.status != "pending":
            return [f"approvals: work item {wid} is {approval.status}: nothing to correct"]
        self.budget.tokens = max(self.budget.tokens, 2)  # an event is worth checking now, budget or not
        return [f"approvals: {await self.check(approval, self.deps.clock())}"]

    # --- reminders ---------------------------------------------------------------------------------------
    def _due(self, approval: Approval) -> float | None:
        r = self.deps.settings.reminders
        if not r.enabled or approval.reminders_sent >= r.max_count or not approval.assignee_object_id:
            return None
        if approval.reminders_sent == 0 or approval.last_reminder_at is None:
            return approval.created_at + r.first_after
        return approval.last_reminder_at + r.every

    async def remind_once(self, now: float) -> list[str]:
        lines: list[str] = []
        for approval in await self.deps.store.list_approvals(status="pending", limit=_SCAN_LIMIT):
            due = self._due(approval)
            if due is None or due > now:
                continue
            claimed = await self.deps.store.transition_approval(
                approval.environment, approval.work_item_id, from_status=("pending",),
                changes={"reminders_sent": approval.reminders_sent + 1, "last_reminder_at": now})
            if claimed is None:
                continue
            sent = await self._send_reminder(claimed)
            await self._audit(claimed, "reminder", now, f"reminder {claimed.reminders_sent}: {'; '.join(sent)}")
            lines.append(f"{approval.work_item_id}: reminder {claimed.reminders_sent} ({len(sent)} copies)")
        return lines

    async def _send_reminder(self, approval: Approval) -> list[str]:
        name = approval.assignee_name or approval.assignee_fo_user or "Approver"
        card = reminder_card(approval, name)
        out: list[str] = []
        for copy in await self.deps.copies.copies(approval):
            try:
                await self.poster.reply(copy.service_url, copy.conversation_id, card)
                out.append(f"{copy.kind} ok")
            except Exception as exc:  # noqa: BLE001 - a reminder is best effort; the audit says what failed
                out.append(f"{copy.kind} failed: {exc}")
        return out

    async def _audit(self, approval: Approval, action: str, now: float, detail: str) -> None:
        await self.deps.store.append_audit(AuditEntry(at=now, environment=approval.environment,
                                                      work_item_id=approval.work_item_id, action=action,
                                                      detail=detail))

    # --- the loop ----------------------------------------------------------------------------------------
    async def run_background(self, stop: asyncio.Event) -> None:
        """Reconcile and remind every `background_tick` seconds until `stop` is set."""
        while not stop.is_set():
            now = self.deps.clock()
            for job in (self.reconcile_once, self.remind_once):
                try:
                    for line in await job(now):
                        log.info("approvals: %s", line)
                except Exception:  # noqa: BLE001 - one bad round must not end the loop
                    log.exception("approvals background round failed")
            try:
                await asyncio.wait_for(stop.wait(), timeout=self.deps.settings.background_tick)
            except asyncio.TimeoutError:
                pass


def reminder_card(approval: Approval, name: str) -> dict[str, Any]:
    text = f"<at>{name}</at>"
    body = [{"type": "TextBlock", "wrap": True,
             "text": f"Reminder: {text}, work item {approval.work_item_id} "
                     f"({approval.subject or 'approval'}) is waiting for your decision."}]
    card: dict[str, Any] = {"type": "AdaptiveCard", "version": "1.5", "body": body}
    if approval.assignee_object_id:
        card["msteams"] = {"entities": [{"type": "mention", "text": text,
                                         "mentioned": {"id": approval.assignee_object_id, "name": name}}]}
    return card


def is_workflow_progress_event(business_event_id: str) -> bool:
    """A workflow event that may end a work item without being one: element completed (`Workflow_<type>_<n>_<el>`)
    or workflow completed/canceled (`Workflow_<type>_<n>`). Work item events (`..._WorkItem`) are not."""
    return business_event_id.startswith("Workflow_") and not business_event_id.endswith("_WorkItem")


def make_workflow_sync_stage(reconciler: Reconciler, *, next_stage: str = "") -> Stage:
    """A stage for workflow events that are not `_WorkItem` ones (register as "approval-sync")."""

    async def sync(record: EventRecord) -> StageOutcome:
        lines = await reconciler.on_workflow_event(record)
        return StageOutcome(next_stage, None, "; ".join(lines))

    return sync


__all__ = ["Reconciler", "is_workflow_progress_event", "make_workflow_sync_stage", "reminder_card", "SYNC_STAGE"]
