"""Scenario 14: `[approvals] act_as = "approver"` through the front door.

The approver presses Approve (Action.Execute) on the channel card. The connector answers the invoke with the
Universal Actions loginRequest; the Teams stand-in signs the approver in silently (a Teams SSO token from the Entra
stand-in) and presses again; the connector checks the token, exchanges it on-behalf-of for an F&O token and the
decision job completes the work item with it: F&O records the approver's own F&O user, `complete` once. A client
that cannot sign in silently shows the Sign-In button instead, and nothing reaches F&O. `ml-connector check`
reads the bot's registration through Graph and names what SSO lacks.
"""

from __future__ import annotations

import asyncio
from pathlib import Path

from connector.store import Approval
from scenariokit import LeakRegistry, Sandbox, inproc_connector, run_cli, tweak, until
from test_s11_approvals_security import pending_approval, snapshot


def _approver(settings):
    return tweak(settings, approvals={"act_as": "approver"})


async def test_sso_press_is_completed_in_f_and_o_as_the_approver(sandbox: Sandbox, workdir: Path,
                                                                  leak_registry: LeakRegistry) -> None:
    async with inproc_connector(sandbox, workdir, leak_registry, _approver) as (conn, admin):
        p = await pending_approval(conn, admin, sandbox)
        store = conn.services.store
        out = await admin.post(f"{sandbox.teams_admin}/emit", p.press(p.approval.assignee_object_id, kind="execute"))
        assert out["status"] == 200 and out["body"]["type"] == "application/vnd.microsoft.card.adaptive", out

        async def decided() -> Approval | None:
            a = await store.get_approval(p.approval.environment, p.wid)
            return a if a is not None and a.status == "decided" else None

        await until(decided, 60, what=f"work item {p.wid} decided")
        stats = await admin.get(f"{sandbox.fno_admin}/stats")
        assert stats["complete_calls"].get(p.wid) == 1, stats["complete_calls"]
        mine = [c for c in stats["completions"] if c["work_item_id"] == p.wid]
        assert [(c["completed_by"].lower(), c["via"]) for c in mine] == [
            (p.approval.assignee_fo_user.lower(), "delegated")], mine
        [item] = await admin.get(f"{sandbox.fno_admin}/work-items?id={p.wid}")
        assert item["CompletedBy"].lower() == p.approval.assignee_fo_user.lower()
        state = await admin.get(f"{sandbox.teams_admin}/state")
        signins = [s for s in state["signins"] if s["message_id"] == p.card.activity_id]
        assert [(s["user"].lower(), s["how"], s.get("problem")) for s in signins] == [
            (p.approval.assignee_object_id.lower(), "silent", None)], signins
        audit = await store.list_audit(environment=p.approval.environment, work_item_id=p.wid, limit=100)
        assert any(e.action == "completed" and "as the approver" in e.detail for e in audit), audit


async def test_a_client_without_silent_sso_shows_sign_in_and_f_and_o_is_untouched(
        sandbox: Sandbox, workdir: Path, leak_registry: LeakRegistry) -> None:
    async with inproc_connector(sandbox, workdir, leak_registry, _approver) as (conn, admin):
        p = await pending_approval(conn, admin, sandbox)
        await admin.post(f"{sandbox.teams_admin}/knobs", {"sso": "button"})
        before = await snapshot(conn, admin, sandbox, p)
        out = await admin.post(f"{sandbox.teams_admin}/emit", p.press(p.approval.assignee_object_id, kind="execute"))
        body = out["body"]
        assert body["statusCode"] == 401 and body["type"] == "application/vnd.microsoft.activity.loginRequest"
        assert body["value"]["connectionName"] and body["value"]["buttons"][0]["value"].startswith("https://")
        state = await admin.get(f"{sandbox.teams_admin}/state")
        assert [s["how"] for s in state["signins"] if s["message_id"] == p.card.activity_id] == ["button"]
        after = await snapshot(conn, admin, sandbox, p)
        assert after["approval"].status == "pending"
        assert (after["complete_calls"], after["validate_calls"]) == (before["complete_calls"],
                                                                      before["validate_calls"]) == (0, 0)


async def test_check_verifies_the_sso_registration_where_graph_lets_it(sandbox: Sandbox, workdir: Path,
                                                                        leak_registry: LeakRegistry) -> None:
    async with inproc_connector(sandbox, workdir, leak_registry, _approver) as (conn, admin):
        good = await asyncio.to_thread(run_cli, ["check"], conn)
        lines = [ln for ln in good.stdout.splitlines()]
        assert any("✓ registration: api://botid-" in ln for ln in lines), good.stdout
        assert any("✓ token keys:" in ln for ln in lines), good.stdout
        app_id = sandbox.state["teams"]["bot_app_id"]
        graph_admin = sandbox.state["graph"]["admin_url"]
        saved = (await admin.post(f"{graph_admin}/application", {"appId": app_id}))["api"]
        try:
            await admin.post(f"{graph_admin}/application", {"appId": app_id, "api": {
                **saved, "preAuthorizedApplications": []}})
            bad = await asyncio.to_thread(run_cli, ["check"], conn)
        finally:
            await admin.post(f"{graph_admin}/application", {"appId": app_id, "api": saved})
        assert bad.returncode == 1
        assert "✗ pre-authorized clients: not pre-authorized for access_as_user: Teams desktop/mobile" in bad.stdout
        assert "Add a client application" in bad.stdout
