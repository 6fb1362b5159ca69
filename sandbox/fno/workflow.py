"""The work item state machine of F&O's workflow, on `WorkflowWorkItems` rows. No HTTP, no events, no clock.

    Pending --complete(outcome)--> Completed   (Outcome, Comment, CompletedBy, CompletedDateTime)
    Pending --delegate(to_user)--> Delegated   + a NEW Pending item (new Id) for to_user
    Pending --escalate(to_user)--> Delegated   + a NEW Pending item for the escalation user; IsEscalated=Yes on both
    Pending --recall------------> Recalled    (the submitter withdrew the document; every pending item of it)
    Failed                                     (F&O's "the workflow stopped with an error"; only set by tests/admin)

Why a new item on delegation: F&O's WorkflowWorkItemStatus has a `Delegated` value. It only makes sense if the
delegator's row stays (with that status, for the history) while the delegate gets a row of their own; a row whose
UserId simply changed would stay Pending. So the old row keeps its Id and assignee, becomes Delegated, and points at
the new one (`ReassignedTo`, `ReassignedWorkItemId`); the new row points back (`PreviousWorkItemId`). [INF: the
real table's behaviour is unconfirmed; these four link fields are ours.]
Why no `Escalated` status: no source names one; to the connector an escalated item behaves exactly like a
delegated one (the old card is dead, a new item with its own `_WorkItem` event arrives), so escalation is a
delegation by the workflow engine, told apart by `IsEscalated` (NoYes, ours).

Every transition out of Pending stamps `CompletedBy` (the F&O user who acted: the approver, the delegator, the
workflow execution account for escalations, the submitter for recalls) and `CompletedDateTime` (when). `Outcome`
is set only by complete. Only Pending items are actionable: `validate` answers false for everything else.
"""

from __future__ import annotations

import datetime as dt
from typing import Any

SET = "WorkflowWorkItems"
PENDING, DELEGATED, COMPLETED, FAILED, RECALLED = "Pending", "Delegated", "Completed", "Failed", "Recalled"
STATUSES = (PENDING, DELEGATED, COMPLETED, FAILED, RECALLED)  # = ENUMS["WorkflowWorkItemStatus"]
WORKFLOW_EXECUTION_USER = "Admin"  # F&O runs escalations as the workflow execution account (Admin by default)


class WorkItemError(Exception):
    """A transition F&O refuses. `status` is the HTTP status the OData action answers with."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status, self.message = status, message


def outcomes(item: dict[str, Any]) -> list[str]:
    """The allowed outcomes (the `Outcomes` comma list)."""
    return [o.strip() for o in (item.get("Outcomes") or "").split(",") if o.strip()]


def is_pending(item: dict[str, Any]) -> bool:
    return item.get("Status") == PENDING


def is_assignee(item: dict[str, Any], user_id: str) -> bool:
    return (item.get("UserId") or "").lower() == (user_id or "").lower()


def require_pending(item: dict[str, Any]) -> None:
    if not is_pending(item):
        raise WorkItemError(400, f"Work item {item['Id']} is not pending: its status is {item['Status']}.")


def get(state: Any, work_item_id: str) -> dict[str, Any]:
    item = state.get(SET, {"Id": work_item_id})
    if item is None:
        raise WorkItemError(404, f"Work item {work_item_id} does not exist.")
    return item


def complete(state: Any, item: dict[str, Any], *, by_user: str, outcome: Any, comment: Any,
             now: dt.datetime) -> dict[str, Any]:
    """Pending -> Completed with one of the item's outcomes. Raises WorkItemError(400)."""
    require_pending(item)
    allowed = outcomes(item)
    if not isinstance(outcome, str) or not outcome or (allowed and outcome not in allowed):
        raise WorkItemError(400, f"Outcome '{outcome}' is not one of the work item's outcomes {allowed}.")
    return state.update(SET, item, Status=COMPLETED, CompletedBy=by_user, Outcome=outcome,
                        Comment=str(comment or ""), CompletedDateTime=now)


def reassign(state: Any, item: dict[str, Any], *, to_user: str, by_user: str, new_id: str, now: dt.datetime,
             due: dt.datetime | None = None, comment: str = "", escalated: bool = False) -> dict[str, Any]:
    """Pending -> Delegated, plus a new Pending item (id `new_id`) for `to_user`. Returns the new item.

    `due` is the new item's DueDateTime (default: the old one's). Raises WorkItemError(400) if not pending or
    `to_user` is already the assignee.
    """
    require_pending(item)
    if is_assignee(item, to_user):
        raise WorkItemError(400, f"Work item {item['Id']} is already assigned to {to_user}.")
    flag = "Yes" if escalated else "No"
    new = state.insert(SET, {
        **item, "Id": new_id, "Status": PENDING, "UserId": to_user, "CreatedDateTime": now,
        "DueDateTime": due or item["DueDateTime"], "CompletedBy": "", "Outcome": "", "Comment": "",
        "CompletedDateTime": None, "ReassignedTo": "", "ReassignedWorkItemId": "", "PreviousWorkItemId": item["Id"],
        "IsEscalated": flag})
    state.update(SET, item, Status=DELEGATED, CompletedBy=by_user, CompletedDateTime=now, Comment=comment,
                 ReassignedTo=to_user, ReassignedWorkItemId=new_id, IsEscalated=flag)
    return new


def recall(state: Any, item: dict[str, Any], *, by_user: str, now: dt.datetime) -> list[dict[str, Any]]:
    """The submitter recalls the document: `item` and every other pending item of the same document -> Recalled.
    Returns the recalled items (`item` first). Raises WorkItemError(400) if `item` is not pending."""
    require_pending(item)
    doc = _document(item)
    recalled = [item] + [r for r in state.rows(SET) if r is not item and is_pending(r) and _document(r) == doc]
    for row in recalled:
        state.update(SET, row, Status=RECALLED, CompletedBy=by_user, CompletedDateTime=now)
    return recalled


def _document(item: dict[str, Any]) -> tuple:
    return ((item.get("CompanyId") or "").lower(), item.get("DocumentType"), (item.get("DocumentId") or "").lower())
