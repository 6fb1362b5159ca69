"""Scenario 13: "my approvals" through the front door.

A real work item reaches its channel card. In the Teams page's 1:1 chat the assignee types "my approvals" (the
Teams stand-in delivers it as a signed `message` activity) and gets the list card with that item; another user's
list does not show it. The assignee approves from the list with a comment: the Execute answer is the list again
without the item, F&O gets exactly one `complete`, the channel card is updated. "my approvals daily on" answers with
the schedule in the user's mailbox time zone (the Graph stand-in's mailboxSettings).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from connector.store import Approval
from scenariokit import Admin, LeakRegistry, Sandbox, inproc_connector, raise_events, until, wait_finished


def chat_of(state: dict[str, Any], oid: str) -> dict[str, Any] | None:
    return next((c for c in state["chats"] if c["user"].lower() == oid.lower()), None)


def execute_buttons(card: dict[str, Any]) -> list[dict[str, Any]]:
    found: list[dict[str, Any]] = []

    def visit(node: Any) -> None:
        if isinstance(node, dict):
            if node.get("type") == "Action.Execute":
                found.append(node)
            for v in node.values():
                visit(v)
        elif isinstance(node, list):
            for v in node:
                visit(v)

    visit({k: v for k, v in card.items() if k != "refresh"})
    return found


def listed(card: dict[str, Any]) -> list[str]:
    return [a["data"]["workItemId"] for a in execute_buttons(card)
            if a["data"].get("list") == "my-approvals" and a["data"].get("action") == "approve"]


async def say(admin: Admin, sandbox: Sandbox, oid: str, text: str) -> dict[str, Any]:
    """Type into the 1:1 chat as the page does; return the bot's newest message in that chat."""
    before = chat_of(await admin.get(f"{sandbox.teams_admin}/state"), oid)
    seen = {m["id"] for m in (before or {}).get("messages", [])}
    out = await admin.post(f"{sandbox.teams_admin}/ui/say", {"viewer": oid, "text": text})
    assert out["status"] in (200, 201), out

    async def answered() -> dict[str, Any] | None:
        chat = chat_of(await admin.get(f"{sandbox.teams_admin}/state"), oid) or {}
        new = [m for m in chat.get("messages", []) if m["id"] not in seen and m["sender"] == "bot"]
        return new[-1] if new else None

    return await until(answered, 30, what=f"the bot's answer to {text!r}")


async def test_my_approvals_list_decision_and_summary_opt_in(sandbox: Sandbox, workdir: Path,
                                                             leak_registry: LeakRegistry) -> None:
    async with inproc_connector(sandbox, workdir, leak_registry) as (conn, admin):
        store = conn.services.store
        [payload] = await raise_events(admin, sandbox, "submit_to_workflow", 1)
        await wait_finished(store, [payload], 60, what="the work item event to reach its card")
        wid = str(payload.get("WorkflowWorkItemInstanceId") or "")

        async def tracked() -> Approval | None:
            return next((a for a in await store.list_approvals(status="pending", limit=100)
                         if a.work_item_id.lower() == wid.lower()), None)

        approval = await until(tracked, 30, what=f"approval of work item {wid} tracked")
        oid = approval.assignee_object_id
        assert oid, "the approver must be mapped to an Entra user"
        state = await admin.get(f"{sandbox.teams_admin}/state")
        if chat_of(state, oid) is None:
            await admin.post(f"{sandbox.teams_admin}/emit", {"kind": "install_personal", "user": oid})
        [channel_card] = [c for c in await store.cards_for_event(approval.event_id) if c.kind == "thread"]

        message = await say(admin, sandbox, oid, "my approvals")
        [card] = message["cards"]
        assert wid in listed(card), card
        assert card["refresh"]["userIds"] and card["refresh"]["action"]["verb"] == "myApprovals"
        links = [a["url"] for a in _all(card, "Action.OpenUrl")]
        assert any(channel_card.activity_id in u and "teams.microsoft.com/l/message/" in u for u in links), links

        other = next(p["id"] for p in state["people"] if p["id"].lower() != oid.lower())
        if chat_of(state, other) is None:
            await admin.post(f"{sandbox.teams_admin}/emit", {"kind": "install_personal", "user": other})
        theirs = await say(admin, sandbox, other, "my approvals")
        assert all(wid not in listed(c) for c in theirs["cards"])
        helped = await say(admin, sandbox, oid, "what can you do")
        assert "my approvals" in str(helped["cards"])

        # approve from the list, with a comment, as the page's click does
        [approve] = [a for a in execute_buttons(card) if a["data"].get("workItemId") == wid
                     and a["data"]["action"] == "approve"]
        chat = chat_of(await admin.get(f"{sandbox.teams_admin}/state"), oid)
        out = await admin.post(f"{sandbox.teams_admin}/ui/submit", {
            "viewer": oid, "conversation": chat["id"], "messageId": message["id"],
            "action": {"type": "Action.Execute", "verb": approve["verb"], "data": approve["data"]},
            "inputs": {approve["data"]["commentInput"]: "approved from my list"}})
        assert out["status"] == 200 and out["replaced"], out
        assert wid not in listed(out["body"]["value"]), out

        async def decided() -> Approval | None:
            a = await store.get_approval(approval.environment, approval.work_item_id)
            return a if a is not None and a.status == "decided" else None

        final = await until(decided, 60, what=f"work item {wid} decided")
        assert final.comment == "approved from my list" and final.decided_by_object_id == oid.lower()
        stats = await admin.get(f"{sandbox.fno_admin}/stats")
        assert (stats.get("complete_calls") or {}).get(wid, 0) == 1, stats.get("complete_calls")

        async def channel_card_updated() -> bool:
            st = await admin.get(f"{sandbox.teams_admin}/state")
            return any(m["id"] == channel_card.activity_id and m["versions"] > 1 for t in st["teams"]
                       for ch in t["channels"] for th in ch["threads"] for m in th["messages"])

        await until(channel_card_updated, 30, what="the channel card updated")

        # the morning summary: the schedule in the user's mailbox time zone (Graph mailboxSettings)
        on = await say(admin, sandbox, oid, "my approvals daily on")
        assert "Daily summary on" in (on["text"] or "") and "Outlook" in on["text"], on
        sub = await store.get_summary_subscription(oid.lower())
        assert sub is not None and sub.enabled and sub.time_zone != "UTC" and sub.conversation_id == chat["id"]
        off = await say(admin, sandbox, oid, "my approvals daily off")
        assert off["text"] == "Daily summary off."


def _all(card: Any, kind: str) -> list[dict[str, Any]]:
    found: list[dict[str, Any]] = []

    def visit(node: Any) -> None:
        if isinstance(node, dict):
            if node.get("type") == kind:
                found.append(node)
            for v in node.values():
                visit(v)
        elif isinstance(node, list):
            for v in node:
                visit(v)

    visit(card)
    return found
