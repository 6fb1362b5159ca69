"""The Graph stand-in's change-notification subscriptions follow Graph's rules (teams.md §4.1–4.4), and the Teams
stand-in hands channel replies to the bot only with the RSC permission."""

from __future__ import annotations

import datetime as dt
import json

import aiohttp
import pytest
from aiohttp import web

from sandbox.entra import EntraIssuer
from sandbox.people import PEOPLE, TENANT_ID
from sandbox.teams import start_teams

APP_ID = "5f0c7f1e-8a7c-4b7e-9f5e-0d2a1c3b4e5f"
GRAPH = "https://graph.microsoft.com"


def iso(epoch: float) -> str:
    return dt.datetime.fromtimestamp(epoch, dt.timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")


@pytest.fixture
async def sb(aiohttp_server):
    issuer = EntraIssuer(TENANT_ID)
    issuer.register_app(APP_ID, secret="s", roles={GRAPH: ["ChannelMessage.Read.All"]})
    seen: dict[str, list] = {"notifications": [], "activities": [], "mode": ["decode"]}

    async def endpoint(request: web.Request) -> web.Response:
        if "validationToken" in request.query:
            mode = seen["mode"][-1]
            if mode == "raw":  # echoes the still-encoded token: Graph refuses the subscription
                raw = request.raw_path.split("validationToken=", 1)[1]
                return web.Response(text=raw, content_type="text/plain")
            return web.Response(text=request.query["validationToken"], content_type="text/plain")
        seen["notifications"].append(await request.json())
        return web.Response(status=500 if seen["mode"][-1] == "down" else 202)

    async def bot(request: web.Request) -> web.Response:
        seen["activities"].append(await request.json())
        return web.Response(status=200)

    app = web.Application()
    app.router.add_post("/notify", endpoint)
    app.router.add_post("/api/messages", bot)
    server = await aiohttp_server(app)
    base = str(server.make_url("")).rstrip("/")
    teams = await start_teams(verify_token=issuer.verify, bot_endpoint=base + "/api/messages", bot_app_id=APP_ID,
                              tenant_id=TENANT_ID, preinstalled=True)
    clock = {"now": 1_795_700_000.0}
    teams.graph.subscriptions.wall = lambda: clock["now"]
    team = teams.world.team("Finance Operations")
    channel = next(c.id for c in team.channels.values() if c.name == "Approvals")
    token = issuer.issue(APP_ID, GRAPH)[0]
    async with aiohttp.ClientSession() as http:
        async def call(method, path, body=None):
            async with http.request(method, teams.state["graph"]["graph_url"] + path, json=body,
                                    headers={"Authorization": f"Bearer {token}"}) as r:
                text = await r.text()
                return r.status, json.loads(text) if text else None

        def body(**kw):
            b = {"changeType": "created", "notificationUrl": base + "/notify", "lifecycleNotificationUrl":
                 base + "/notify", "resource": f"/teams/{team.aad_group_id}/channels/{channel}/messages",
                 "expirationDateTime": iso(clock["now"] + 4320 * 60), "clientState": "s" * 128}
            b.update(kw)
            return {k: v for k, v in b.items() if v is not None}
        yield dict(call=call, body=body, clock=clock, seen=seen, teams=teams, http=http, team=team,
                   channel=channel)
    await teams.close()


async def test_graphs_creation_rules(sb):
    call, body, now = sb["call"], sb["body"], sb["clock"]["now"]
    status, err = await call("POST", "/subscriptions", body(expirationDateTime=iso(now + 4321 * 60)))
    assert status == 400 and "4320 minutes" in err["error"]["message"]
    status, err = await call("POST", "/subscriptions", body(lifecycleNotificationUrl=None,
                                                            expirationDateTime=iso(now + 61 * 60)))
    assert status == 400 and "lifecycleNotificationUrl is a required property" in err["error"]["message"]
    status, err = await call("POST", "/subscriptions", body(clientState="s" * 129))
    assert status == 400 and "128" in err["error"]["message"]
    status, _ = await call("POST", "/subscriptions", body(resource="/teams/nope/channels/x/messages"))
    assert status == 404
    status, sub = await call("POST", "/subscriptions", body(lifecycleNotificationUrl=None,
                                                            expirationDateTime=iso(now + 10 * 60)))
    assert status == 201 and sub["expirationDateTime"].startswith(iso(now + 45 * 60)[:16])  # raised to 45 min
    status, sub = await call("POST", "/subscriptions", body())
    assert status == 201 and sub["clientState"] == "s" * 128
    status, err = await call("PATCH", f"/subscriptions/{sub['id']}", {"expirationDateTime": iso(now + 5000 * 60)})
    assert status == 400
    sb["clock"]["now"] += 4321 * 60  # expired: Graph forgets it
    assert (await call("PATCH", f"/subscriptions/{sub['id']}", {"expirationDateTime": iso(now)}))[0] == 404


async def test_the_handshake_token_needs_url_decoding(sb):
    sb["seen"]["mode"].append("raw")
    status, err = await sb["call"]("POST", "/subscriptions", sb["body"]())
    assert status == 400 and "validation request failed" in err["error"]["message"]
    sb["seen"]["mode"].append("decode")
    assert (await sb["call"]("POST", "/subscriptions", sb["body"]()))[0] == 201


async def test_undelivered_notifications_are_retried_then_dropped_after_4_hours(sb):
    await sb["call"]("POST", "/subscriptions", sb["body"]())
    sb["seen"]["mode"].append("down")
    thread = f"{sb['channel']};messageid=1"
    sb["teams"].world.threads[thread] = sb["teams"].world.new_channel_thread(
        sb["team"], sb["team"].channels[sb["channel"]], "1")
    async with sb["http"].post(sb["teams"].state["teams"]["admin_url"] + "/ui/reply",
                               json={"viewer": PEOPLE[0].upn, "conversation": thread, "text": "approve"}) as r:
        assert r.status == 201
    subs = sb["teams"].graph.subscriptions
    await subs.deliver_due()
    assert subs.counts["failed"] >= 1 and len(subs.pending) == 1
    sb["clock"]["now"] += 3 * 3600
    await subs.deliver_due()
    assert len(subs.pending) == 1
    sb["clock"]["now"] += 3600 + 60
    await subs.deliver_due()
    assert subs.pending == [] and subs.counts["dropped"] == 1
    assert sb["seen"]["notifications"][0]["value"][0]["clientState"] == "s" * 128


async def test_the_bot_gets_channel_replies_only_with_the_rsc_permission(sb):
    teams, world = sb["teams"], sb["teams"].world
    thread = world.new_channel_thread(sb["team"], sb["team"].channels[sb["channel"]], "2").id
    admin = teams.state["teams"]["admin_url"]
    reply = {"viewer": PEOPLE[0].upn, "conversation": thread, "text": "approve"}
    async with sb["http"].post(admin + "/ui/reply", json=reply) as r:
        assert r.status == 201
    assert sb["seen"]["activities"] == []
    async with sb["http"].post(admin + "/knobs", json={"rsc": True}) as r:
        assert (await r.json())["rsc"] is True
    async with sb["http"].post(admin + "/ui/reply", json=reply) as r:
        assert r.status == 201
    [activity] = sb["seen"]["activities"]
    assert activity["conversation"]["id"] == thread and activity["text"] == "approve"  # no @mention needed
    assert activity["replyToId"] == "2"
