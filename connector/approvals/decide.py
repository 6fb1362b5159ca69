"""The durable stages of an approval: "decide" (the F&O call) and "approval-cards" (update every copy).

decide: validate the work item; not valid -> read it and close the approval with F&O's status; valid -> complete it
with the outcome and a comment that says it came from Teams and who pressed. A 429 or an outage is RetryLater (the
pipeline honours Retry-After). `complete` is never re-sent blindly: a retry validates first, and a work item that
F&O completed with our comment counts as our decision. Then the event moves on to "approval-cards", which
re-renders the approval's current state into every copy and retries (durably) the copies Teams did not take.
"""

from __future__ import annotations

import json
import logging
from dataclasses import dataclass
from typing import Awaitable, Callable

from connector.approvals.config import ApprovalSettings
from connector.approvals.copies import CardCopies, past_tense
from connector.approvals.fo import FoEnvironment, WorkItemActions, apply_fo_row, read_work_item, translated
from connector.approvals.jobs import CARDS_STAGE
from connector.ops import logctx
from connector.pipeline import Park, RetryLater, Stage, StageOutcome
from connector.store import Approval, AuditEntry, EventRecord, Store
from connector.tokens import SignInRequired
from dynamics import ODataAuthError, ODataBadRequest, ODataNotFound

log = logging.getLogger(__name__)


@dataclass
class ApprovalDeps:
    """What the approval stages and the reconciler share.

    Args:
        fo: environment name -> FoEnvironment.
        wake: `pipeline.wake` (after enqueueing a card job).
    """

    store: Store
    settings: ApprovalSettings
    fo: dict[str, FoEnvironment]
    copies: CardCopies
    clock: Callable[[], float]
    wake: Callable[[], None] = lambda: None
    # act_as "approver": (environment, approver object id) -> work item actions with the approver's on-behalf-of
    # token, or None when no sign-in of theirs is held in memory
    as_user: Callable[[str, str], WorkItemActions | None] | None = None
    # a 1:1 message to a user (object id, text) -> whether it could be sent: F&O's refusals reach the approver
    notify: Callable[[str | None, str], Awaitable[bool]] | None = None


def work_item_id_of(record: EventRecord) -> str:
    p = record.payload
    return str(p.get("workItemId") or p.get("WorkflowWorkItemInstanceId") or "")


async def comment_for(deps: ApprovalDeps, approval: Approval) -> str:
    """The comment F&O records: "Approved in Microsoft Teams by Adele Vance (adele@...): <comment>"."""
    upn = None
    if approval.assignee_fo_user:
        mapping = await deps.store.get_user_mapping(approval.environment, approval.assignee_fo_user)
        upn = mapping.upn if mapping else None
    name = approval.decided_by_name or approval.decided_by_object_id or "?"
    who = f"{name} ({upn})" if upn else name
    text = approval.comment or ""
    return deps.settings.comment_template.format(decision=past_tense(approval.outcome), who=who, name=name,
                                                 upn=upn or "", sep=": " if text else "", comment=text,
                                                 outcome=approval.outcome or "")


async def audit(store: Store, approval: Approval, action: str, *, at: float, detail: str = "",
                outcome: str | None = None, comment: str | None = None) -> None:
    await store.append_audit(AuditEntry(at=at, environment=approval.environment, work_item_id=approval.work_item_id,
                                        action=action, actor_object_id=approval.decided_by_object_id,
                                        actor_name=approval.decided_by_name, outcome=outcome, comment=comment,
                                        detail=detail))


def make_decide_stage(deps: ApprovalDeps) -> Stage:
    """The "decide" stage of a decision job (jobs.enqueue_decision)."""

    async def decide(record: EventRecord) -> StageOutcome:
        wid = work_item_id_of(record)
        logctx.bind(work_item_id=wid, approval_id=f"{record.environment}/{wid}")
        approval = await deps.store.get_approval(record.environment, wid)
        if approval is None:
            return StageOutcome("", None, f"no approval for work item {wid}: nothing to do")
        if approval.status != "submitting":
            nxt = CARDS_STAGE if approval.status in ("decided", "closed", "superseded") else ""
            return StageOutcome(nxt, None, f"work item {wid} is {approval.status} already")
        if record.payload.get("decidedAt") not in (None, approval.decided_at):
            return StageOutcome("", None, "a later press owns this work item's decision")
        fo = deps.fo.get(record.environment)
        if fo is None:
            raise Park(f"environment '{record.environment}' is not configured")
        workflow, fallback = fo.workflow, record.payload.get("fallback")
        delegated = record.payload.get("actAs") == "approver"
        if delegated:
            user_workflow = (deps.as_user(record.environment, approval.decided_by_object_id)
                             if deps.as_user and approval.decided_by_object_id else None)
            if user_workflow is not None:
                workflow = user_workflow
            elif deps.settings.act_as == "approver-or-service":
                delegated, fallback = False, "the approver's sign-in was no longer held (the service restarted)"
                await audit(deps.store, approval, "fallback", at=deps.clock(), outcome=approval.outcome,
                            detail=f"decided as the service user: {fallback}")
            else:
                return await _as_user_refused(deps, fo, approval, "sign-in lost", SIGN_IN_AGAIN)
        comment = await comment_for(deps, approval)
        if fallback:
            comment += deps.settings.fallback_comment.format(reason=fallback)
        try:
            valid = await workflow.validate(wid)
        except SignInRequired:
            return await _as_user_refused(deps, fo, approval, "sign-in expired", SIGN_IN_AGAIN)
        except ODataAuthError as exc:
            if delegated:  # F&O's front door refused the user's token: no enabled F&O user for them
                return await _as_user_refused(
                    deps, fo, approval, f"F&O refused the approver's token (no enabled F&O user?): {exc}",
                    "Dynamics 365 did not accept you: it has no enabled user for your account (F&O matches your "
                    "sign-in name / e-mail to a user). Ask your Dynamics 365 administrator to add or enable your "
                    f"user, or decide on work item {wid} in Dynamics 365.")
            raise _translate(exc) from exc
        except Exception as exc:
            raise _translate(exc) from exc
        if not valid and delegated:
            row = await read_work_item(fo, wid)
            if row is not None and row.get("Status") == "Pending":
                # still pending for the service, not valid for this user: F&O's own rules say no
                return await _as_user_refused(
                    deps, fo, approval, "F&O validation failed for the approver (work item still pending)",
                    f"Dynamics 365 does not let you complete work item {wid} (it is pending, but not actionable "
                    "for your Dynamics user). Open it in Dynamics 365 to see why.")
        if not valid:
            return await _not_valid(deps, fo, approval, comment)
        try:
            answer = await workflow.complete(wid, approval.outcome or "", comment)
        except SignInRequired:
            return await _as_user_refused(deps, fo, approval, "sign-in expired", SIGN_IN_AGAIN)
        except (ODataBadRequest, ODataNotFound, ODataAuthError) as exc:
            if delegated:
                return await _as_user_refused(deps, fo, approval, f"F&O refused the approver's decision: {exc}",
                                              _fo_refusal_text(approval, exc))
            if isinstance(exc, ODataAuthError):
                raise _translate(exc) from exc
            return await _refused(deps, fo, approval, exc)
        except Exception as exc:
            raise _translate(exc) from exc
        now = deps.clock()
        done = await deps.store.transition_approval(record.environment, wid, from_status=("submitting",),
                                                    changes={"status": "decided", "fo_status": "Completed",
                                                             "updated_at": now})
        text = json.dumps(answer, default=str)[:500] if answer else "(no content)"
        who = f"as the approver ({approval.decided_by_name or approval.decided_by_object_id})" if delegated \
            else "as the service user"
        await audit(deps.store, done or approval, "completed", at=now, outcome=approval.outcome,
                    comment=comment, detail=f"completed {who}; F&O answered {text}")
        return StageOutcome(CARDS_STAGE, {"approval": {"workItemId": wid, "status": "decided"}},
                            f"work item {wid} completed in F&O: {approval.outcome}")

    return decide


SIGN_IN_AGAIN = ("Your decision was not sent to Dynamics 365: your sign-in is no longer held by the connector. "
                 "Press the button again (Teams signs you in again).")


def _fo_refusal_text(approval: Approval, exc: Exception) -> str:
    message = getattr(exc, "message", "") or str(exc)
    return (f"Dynamics 365 refused your decision on work item {approval.work_item_id}: {message} "
            "Nothing was changed; the card's buttons work again.")


async def _as_user_refused(deps: ApprovalDeps, fo: FoEnvironment, approval: Approval, detail: str,
                           text: str) -> StageOutcome:
    """The decision as the approver did not happen (F&O said no, or their sign-in is gone): the approval is pending
    again unless F&O moved it meanwhile, the audit says why, and the approver is told in their 1:1 chat."""
    row = await read_work_item(fo, approval.work_item_id)
    now = deps.clock()
    moved = await apply_fo_row(deps.store, approval, row, now, from_status=("submitting",))
    if moved is None:
        await deps.store.transition_approval(
            approval.environment, approval.work_item_id, from_status=("submitting",),
            changes={"status": "pending", "outcome": None, "comment": None, "decided_by_object_id": None,
                     "decided_by_name": None, "decided_at": None, "updated_at": now,
                     "next_check_at": now + deps.settings.reconcile_every})
    told = await deps.notify(approval.decided_by_object_id, text) if deps.notify else False
    await audit(deps.store, approval, "failed", at=now, outcome=approval.outcome,
                detail=f"{detail}; approver {'told in the 1:1 chat' if told else 'not told (no 1:1 chat)'}")
    return StageOutcome(CARDS_STAGE, None, f"decision on {approval.work_item_id} not made as the approver: {detail}")


def _translate(exc: Exception) -> Exception:
    out = translated(exc)
    if out is exc:
        return RetryLater(f"unexpected F&O error: {exc}")
    return out


async def _not_valid(deps: ApprovalDeps, fo: FoEnvironment, approval: Approval, comment: str) -> StageOutcome:
    row = await read_work_item(fo, approval.work_item_id)
    now = deps.clock()
    if row and row.get("Status") == "Completed" and (row.get("Comment") or "") == comment:
        # our own complete went through before a crash or a timeout: it is our decision
        await deps.store.transition_approval(approval.environment, approval.work_item_id,
                                             from_status=("submitting",),
                                             changes={"status": "decided", "fo_status": "Completed", "updated_at": now})
        await audit(deps.store, approval, "completed", at=now, outcome=approval.outcome,
                    detail="F&O already had our decision (found on validation)")
        return StageOutcome(CARDS_STAGE, None, f"work item {approval.work_item_id} was already completed by us")
    moved = await apply_fo_row(deps.store, approval, row, now, from_status=("submitting",))
    status = (row or {}).get("Status") or "NotFound"
    if moved is None:  # F&O says pending but not valid: nothing we can do from Teams
        moved = await deps.store.transition_approval(
            approval.environment, approval.work_item_id, from_status=("submitting",),
            changes={"status": "closed", "fo_status": status, "updated_at": now, "outcome": None, "comment": None,
                     "decided_by_object_id": None, "decided_by_name": None, "decided_at": None})
    await audit(deps.store, approval, "not-pending", at=now, outcome=approval.outcome,
                detail=f"F&O validation failed; work item status {status}; no decision sent")
    return StageOutcome(CARDS_STAGE, {"approval": {"workItemId": approval.work_item_id, "status": "closed"}},
                        f"work item {approval.work_item_id} no longer pending in F&O ({status}): not completed")


async def _refused(deps: ApprovalDeps, fo: FoEnvironment, approval: Approval, exc: Exception) -> StageOutcome:
    """F&O refused complete (4xx). A work item still pending goes back to "pending" so the approver can retry."""
    row = await read_work_item(fo, approval.work_item_id)
    now = deps.clock()
    moved = await apply_fo_row(deps.store, approval, row, now, from_status=("submitting",))
    if moved is None:
        await deps.store.transition_approval(
            approval.environment, approval.work_item_id, from_status=("submitting",),
            changes={"status": "pending", "outcome": None, "comment": None, "decided_by_object_id": None,
                     "decided_by_name": None, "decided_at": None, "updated_at": now,
                     "next_check_at": now + deps.settings.reconcile_every})
    await audit(deps.store, approval, "failed", at=now, outcome=approval.outcome, detail=f"F&O refused: {exc}")
    return StageOutcome(CARDS_STAGE, None, f"F&O refused the decision on {approval.work_item_id}: {exc}")


def make_cards_stage(deps: ApprovalDeps) -> Stage:
    """The "approval-cards" stage: every copy shows the approval's current state; transient failures retry."""

    async def update_cards(record: EventRecord) -> StageOutcome:
        wid = work_item_id_of(record)
        logctx.bind(work_item_id=wid, approval_id=f"{record.environment}/{wid}")
        approval = await deps.store.get_approval(record.environment, wid)
        if approval is None:
            return StageOutcome("", None, f"no approval for work item {wid}: no card to update")
        lines, transient = await deps.copies.update_all(approval)
        if transient:
            wait = max((getattr(e, "retry_after", 0.0) or 0.0) for e in transient)
            raise RetryLater(f"{len(transient)} card cop(ies) not updated: {transient[0]}", wait or None)
        return StageOutcome("", None, "; ".join(lines) or "no card copies to update")

    return update_cards
