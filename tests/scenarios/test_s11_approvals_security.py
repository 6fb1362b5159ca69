"""Scenario 11: who can decide an approval from Teams.

A card press whose Bot Framework token is missing, for another audience, expired, or signed with a key not endorsed
for msteams is refused with 401 by the bot, even when it claims to come from the assignee and is otherwise a
perfectly good Approve press: no audit entry, no store change, no job, no F&O call, no card update. The same press
correctly signed then decides the work item with exactly one F&O `complete` (so the refusal was the token's doing).
A correctly signed press by someone who is not the assignee is refused (audit "refused") and changes nothing either.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from connector.store import Approval, PostedCard
from scenariokit import Admin, Connector, LeakRegistry, Sandbox, inproc_connector, raise_events, until, \
    wait_finished

DEFECTS = ["no_token", "wrong_audience", "expired", "unendorsed_key"]


@dataclass
class Pending:
    """A real pending approval: F&O's work item, the connector's approval and its channel card."""

    approval: Approval
    card: PostedCard

    @property
    def wid(self) -> str:
        return self.approval.work_item_id

    def press(self, user: str, *, kind: str = "submit", action: str = "approve",
              defect: str | None = None) -> dict[str, Any]:
        value = {"action": action, "workItemId": self.wid}
        body: dict[str, Any] = {"kind": kind, "conversation": self.card.conversation_id,
                                "reply_to": self.card.activity_id, "user": user,
                                "inputs": {"comment": "pressed by test_s11"}}
        body.update({"value": value} if kind == "submit" else {"data": value, "verb": action})
        if defect:
            body["defect"] = defect
        return body


async def pending_approval(conn: Connector, admin: Admin, sandbox: Sandbox) -> Pending:
    store = conn.services.store
    [payload] = await raise_events(admin, sandbox, "submit_to_workflow", 1)
    await wait_finished(store, [payload], 60, what="the work item event to reach its card")
    wid = str(payload.get("WorkflowWorkItemInstanceId") or "")
    assert wid, payload

    async def tracked() -> Approval | None:
        for a in await store.list_approvals(status="pending", limit=100):
            if a.work_item_id.lower() == wid.lower():
                return a
        return None

    approval = await until(tracked, 30, what=f"approval of work item {wid} tracked as pending")
    assert approval.assignee_object_id, "the approver must be mapped to an Entra user for this scenario"
    cards = [c for c in await store.cards_for_event(approval.event_id) if c.kind in ("thread", "reply")]
    assert cards, "the work item has no channel card"
    return Pending(approval, cards[0])


async def snapshot(conn: Connector, admin: Admin, sandbox: Sandbox, p: Pending) -> dict[str, Any]:
    """Everything a press could change: the approval, its audit trail, the stored events (jobs), F&O's calls on the
    work item, and the channel card's versions."""
    store = conn.services.store
    stats = await admin.get(f"{sandbox.fno_admin}/stats")
    state = await admin.get(f"{sandbox.teams_admin}/state")
    versions = [m["versions"] for t in state["teams"] for ch in t["channels"] for th in ch["threads"]
                for m in th["messages"] if m["id"] == p.card.activity_id]
    return {
        "approval": await store.get_approval(p.approval.environment, p.wid),
        "audit": await store.list_audit(environment=p.approval.environment, work_item_id=p.wid, limit=1000),
        "events": sorted((r.id, r.status.value) for r in await store.list_events(limit=100_000)),
        "complete_calls": (stats.get("complete_calls") or {}).get(p.wid, 0),
        "validate_calls": (stats.get("validate_calls") or {}).get(p.wid, 0),
        "card_versions": versions,
    }


async def other_person(admin: Admin, sandbox: Sandbox, not_oid: str) -> str:
    """A member of Procurement who is not the assignee (object id)."""
    state = await admin.get(f"{sandbox.teams_admin}/state")
    ids = {p["upn"].split("@")[0].split(".")[0]: p["id"] for p in state["people"]}
    for key in ("alex", "patti", "megan"):
        if key in ids and ids[key].lower() != not_oid.lower():
            return ids[key]
    raise AssertionError(f"no other person in {sorted(ids)}")


async def decide_and_check(conn: Connector, admin: Admin, sandbox: Sandbox, p: Pending) -> None:
    """The assignee's correctly signed press: decided, F&O completed exactly once, the channel card updated."""
    store = conn.services.store
    out = await admin.post(f"{sandbox.teams_admin}/emit", p.press(p.approval.assignee_object_id))
    assert out["status"] in (200, 201), out

    async def decided() -> Approval | None:
        a = await store.get_approval(p.approval.environment, p.wid)
        return a if a is not None and a.status == "decided" else None

    final = await until(decided, 60, what=f"work item {p.wid} decided")
    assert final.outcome == "Approve" and final.decided_by_object_id == p.approval.assignee_object_id.lower()
    stats = await admin.get(f"{sandbox.fno_admin}/stats")
    assert (stats.get("complete_calls") or {}).get(p.wid, 0) == 1, stats.get("complete_calls")
    item = await admin.get(f"{sandbox.fno_admin}/work-items?id={p.wid}")
    assert [w["Status"] for w in item] == ["Completed"], item
    actions = [e.action for e in await store.list_audit(environment=p.approval.environment, work_item_id=p.wid,
                                                        limit=1000)]
    assert actions.count("press") == 1 and actions.count("completed") == 1, actions


@pytest.mark.parametrize("defect", DEFECTS)
async def test_forged_press_is_refused_and_changes_nothing(sandbox: Sandbox, workdir: Path,
                                                           leak_registry: LeakRegistry, defect: str) -> None:
    async with inproc_connector(sandbox, workdir, leak_registry) as (conn, admin):
        p = await pending_approval(conn, admin, sandbox)
        before = await snapshot(conn, admin, sandbox, p)
        assert before["approval"].status == "pending" and before["complete_calls"] == 0, before

        # The assignee's own Approve, as Submit and as Execute, but with a bad token: the bot answers 401 itself.
        for kind in ("submit", "execute"):
            out = await admin.post(f"{sandbox.teams_admin}/emit",
                                   p.press(p.approval.assignee_object_id, kind=kind, defect=defect))
            statuses = [d["status"] for d in out["deliveries"]]
            assert out["status"] == 401 and statuses == [401], (kind, out)
        # The press path writes the store before it answers, so a press that got through would show by now.
        after = await snapshot(conn, admin, sandbox, p)
        assert after == before, (before, after)

        # Control: the very same press, correctly signed, decides it (so the 401s were about the token alone).
        await decide_and_check(conn, admin, sandbox, p)


async def test_signed_press_by_someone_else_is_refused_then_the_assignee_decides(
        sandbox: Sandbox, workdir: Path, leak_registry: LeakRegistry) -> None:
    async with inproc_connector(sandbox, workdir, leak_registry) as (conn, admin):
        store = conn.services.store
        p = await pending_approval(conn, admin, sandbox)
        before = await snapshot(conn, admin, sandbox, p)
        intruder = await other_person(admin, sandbox, p.approval.assignee_object_id)

        for kind in ("submit", "execute"):
            out = await admin.post(f"{sandbox.teams_admin}/emit", p.press(intruder, kind=kind))
            assert out["status"] in (200, 201), (kind, out)  # a good token: the bot takes the turn, then refuses
        audit = await store.list_audit(environment=p.approval.environment, work_item_id=p.wid, limit=1000)
        refused = [e for e in audit if e.action == "refused"]
        assert len(refused) == 2 and {e.actor_object_id for e in refused} == {intruder.lower()}, audit
        assert len(audit) == len(before["audit"]) + 2, audit  # the refusals and nothing else
        after = await snapshot(conn, admin, sandbox, p)
        assert after["approval"] == before["approval"], (before["approval"], after["approval"])
        assert after["events"] == before["events"] and after["complete_calls"] == 0, after
        assert after["validate_calls"] == before["validate_calls"], after

        await decide_and_check(conn, admin, sandbox, p)
