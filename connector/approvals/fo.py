"""What the approvals need from F&O, per environment, and how a work item row moves an approval.

`apply_fo_row` is shared by the decide stage (the work item was no longer valid), the reconciler and the
workflow-event stage: it turns F&O's WorkflowWorkItems row into the approval's final state.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Protocol

from connector.stages import translate_dynamics_error
from connector.store import Approval, Store

WORK_ITEMS = "WorkflowWorkItems"


class WorkItemReader(Protocol):
    async def get(self, entity_set: str, *, company: str | None, key: dict[str, Any],
                  select: Any = None) -> dict[str, Any] | None: ...


class WorkItemActions(Protocol):
    async def validate(self, work_item_id: str) -> bool: ...

    async def complete(self, work_item_id: str, outcome: str, comment: str) -> dict[str, Any]: ...


@dataclass(frozen=True)
class FoEnvironment:
    """One F&O environment as the approvals see it: an ODataClient and a WorkflowActions built with the
    `[approvals]` action names."""

    name: str
    odata: WorkItemReader
    workflow: WorkItemActions


def translated(exc: Exception) -> Exception:
    """F&O errors -> RetryLater (429 with its Retry-After, outages) or Park, as for every other stage."""
    return translate_dynamics_error(exc)


async def read_work_item(fo: FoEnvironment, work_item_id: str) -> dict[str, Any] | None:
    try:
        return await fo.odata.get(WORK_ITEMS, company=None, key={"Id": work_item_id})
    except Exception as exc:
        out = translated(exc)
        if out is exc:
            raise
        raise out from exc


def changes_for_row(approval: Approval, row: dict[str, Any] | None, now: float) -> dict[str, Any] | None:
    """The changes that make `approval` agree with F&O's row, or None when F&O still has it pending."""
    status = str(row.get("Status") or "") if row else "NotFound"
    if status == "Pending":
        return None
    # a press that F&O did not take is history (the audit keeps it), not a decision
    changes: dict[str, Any] = {"fo_status": status, "updated_at": now, "outcome": None, "comment": None,
                               "decided_by_object_id": None, "decided_by_name": None, "decided_at": None}
    if status == "Delegated":
        reassigned = row.get("ReassignedWorkItemId") if row else None
        changes.update(status="superseded", superseded_by=str(reassigned or "") or None)
    elif status == "Completed" and row is not None:
        changes.update(status="closed", outcome=row.get("Outcome") or None, comment=row.get("Comment") or None,
                       decided_by_name=row.get("CompletedBy") or None, decided_by_object_id=None, decided_at=now)
    else:  # Recalled, Failed, gone
        changes.update(status="closed")
    return changes


async def apply_fo_row(store: Store, approval: Approval, row: dict[str, Any] | None, now: float,
                       from_status: tuple[str, ...] = ("pending",)) -> Approval | None:
    """Move the approval to F&O's state (compare-and-set from `from_status`). None: nothing changed."""
    changes = changes_for_row(approval, row, now)
    if changes is None:
        return None
    return await store.transition_approval(approval.environment, approval.work_item_id, from_status=from_status,
                                           changes=changes)
