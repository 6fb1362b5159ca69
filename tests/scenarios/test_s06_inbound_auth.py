"""Issue 4, scenario 6: inbound Bot Framework calls through the full app's /api/messages are authenticated: a token
that is missing, for another audience, for another serviceUrl, expired, or signed with a key not endorsed for
msteams is refused with 401, and nothing about installs is recorded or changed."""

from __future__ import annotations

from pathlib import Path

import pytest

from scenariokit import LeakRegistry, Sandbox, inproc_connector, wait_installed

DEFECTS = ["no_token", "wrong_audience", "wrong_serviceurl", "expired", "unendorsed_key", "unknown_kid",
           "bad_signature"]
OTHER_TEAM = "Finance Operations"


async def test_bad_inbound_tokens_are_refused_and_change_nothing(sandbox: Sandbox, workdir: Path,
                                                                 leak_registry: LeakRegistry) -> None:
    async with inproc_connector(sandbox, workdir, leak_registry) as (conn, admin):
        store = conn.services.store
        knobs = await admin.get(f"{sandbox.teams_admin}/knobs")
        assert set(DEFECTS) <= set(knobs["defects"]), knobs["defects"]
        before = await store.list_installs()
        assert [i.team_name for i in before] == ["Procurement"]
        try:
            refused = {}
            for defect in DEFECTS:
                # an install into a new team, and an uninstall of the team we are in, each with a bad token
                for kind, team in (("install", OTHER_TEAM), ("uninstall", "Procurement")):
                    out = await admin.post(f"{sandbox.teams_admin}/emit", {"kind": kind, "team": team,
                                                                           "defect": defect})
                    refused[(defect, kind)] = [d["status"] for d in out["deliveries"]]
            assert all(statuses and set(statuses) == {401} for statuses in refused.values()), refused
            assert await store.list_installs() == before  # nothing recorded, nothing changed (updated_at included)

            # The control: the same install with a good token is accepted and recorded, so the refusals above were
            # the bot's doing, not a broken path.
            out = await admin.post(f"{sandbox.teams_admin}/emit", {"kind": "install", "team": OTHER_TEAM})
            assert {d["status"] for d in out["deliveries"]} <= {200, 201}, out["deliveries"]
            await wait_installed(store, OTHER_TEAM)
        finally:
            # the Teams world flipped its own `installed` flag on each emit: put it back as it was
            await admin.post(f"{sandbox.teams_admin}/emit", {"kind": "uninstall", "team": OTHER_TEAM, "silent": True})
            await admin.post(f"{sandbox.teams_admin}/emit", {"kind": "install", "team": "Procurement", "silent": True})


@pytest.mark.parametrize("headers", [{}, {"Authorization": "Bearer not-a-jwt"},
                                     {"Authorization": "Basic Zm9vOmJhcg=="}])
async def test_hand_made_calls_without_a_channel_token_are_refused(sandbox: Sandbox, workdir: Path,
                                                                   leak_registry: LeakRegistry,
                                                                   headers: dict[str, str]) -> None:
    async with inproc_connector(sandbox, workdir, leak_registry) as (conn, admin):
        before = await conn.services.store.list_installs()
        activity = {"type": "conversationUpdate", "channelId": "msteams",
                    "serviceUrl": sandbox.state["teams"]["service_url"],
                    "conversation": {"id": "19:forged@thread.tacv2", "isGroup": True, "conversationType": "channel"},
                    "recipient": {"id": f"28:{sandbox.state['teams']['bot_app_id']}"},
                    "from": {"id": "29:attacker"},
                    "membersAdded": [{"id": f"28:{sandbox.state['teams']['bot_app_id']}"}],
                    "channelData": {"eventType": "teamMemberAdded", "team": {"id": "19:forged@thread.tacv2",
                                                                             "name": "Forged"},
                                    "tenant": {"id": sandbox.state["tenant_id"]}}}
        async with admin.http.post(conn.messages_url, json=activity, headers=headers) as r:
            assert r.status == 401, await r.text()
        assert await conn.services.store.list_installs() == before
