"""The approvals' durable jobs: internal events on the pipeline's queue, deduplicated by the store's unique key.

A decision job is keyed by (environment, "ml-connector.ApprovalDecision", control number of work item id + the
winning press's time): a second enqueue of the same decision is a DUPLICATE, so the job exists once however often
it is enqueued (the reconciler re-enqueues "submitting" approvals blindly for that reason). Keying on the press
time too lets a decision F&O refused be made again later. A card job re-renders every copy from the approval's
current state, so a stale or repeated one is harmless.
"""

from __future__ import annotations

import hashlib
import uuid
from typing import Any

from connector.store import Approval, EnqueueResult, NewEvent, Store

DECIDE_STAGE = "decide"
CARDS_STAGE = "approval-cards"
SYNC_STAGE = "approval-sync"
DECISION_EVENT = "ml-connector.ApprovalDecision"
CARDS_EVENT = "ml-connector.ApprovalCards"


def control_number(*parts: Any) -> int:
    """A stable positive int64 from the parts: the first 8 bytes of their sha256, masked to 63 bits."""
    digest = hashlib.sha256("\x1f".join(map(str, parts)).encode()).digest()
    return int.from_bytes(digest[:8], "big") & ((1 << 63) - 1)


async def enqueue_decision(store: Store, approval: Approval, *, now: float, event_id: str = DECISION_EVENT,
                           act_as: str = "service", fallback: str | None = None) -> tuple[EnqueueResult, str]:
    """Enqueue the F&O call for an approval in "submitting" (idempotent).

    `act_as` "approver": the job completes the item with the presser's on-behalf-of token (held in memory only:
    the payload names the mode, never a token); `fallback`: why an approver-or-service press went as the service."""
    payload = {"workItemId": approval.work_item_id, "outcome": approval.outcome, "comment": approval.comment or "",
               "byObjectId": approval.decided_by_object_id, "byName": approval.decided_by_name,
               "decidedAt": approval.decided_at, "actAs": act_as, "fallback": fallback}
    event = NewEvent(environment=approval.environment, business_event_id=event_id,
                     control_number=control_number(approval.work_item_id, repr(approval.decided_at)),
                     event_id=str(uuid.uuid4()), legal_entity=None, payload=payload)
    return await store.enqueue(event, first_stage=DECIDE_STAGE, now=now)


async def enqueue_card_update(store: Store, approval: Approval, *, now: float,
                              reason: str) -> tuple[EnqueueResult, str]:
    """Enqueue "update every copy of this approval's card" (one job per state the approval reaches)."""
    event = NewEvent(environment=approval.environment, business_event_id=CARDS_EVENT,
                     control_number=control_number(approval.work_item_id, approval.status, repr(approval.updated_at),
                                                   reason),
                     event_id=str(uuid.uuid4()), legal_entity=None,
                     payload={"workItemId": approval.work_item_id, "status": approval.status, "reason": reason})
    return await store.enqueue(event, first_stage=CARDS_STAGE, now=now)
