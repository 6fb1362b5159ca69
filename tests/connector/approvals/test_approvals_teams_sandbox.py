"""End to end against the whole sandbox (Entra, F&O, the Teams channel + Connector, Graph), on loopback:
the real BotRuntime/TeamsPoster/GraphClient, the real ODataClient/WorkflowActions, the real SQLite store.

Button presses are emitted by the Teams stand-in as Teams would send them (signed activities into our bot);
the card copies are posted and updated through its Connector, whose lint checks versions and mentions.
"""

from __future__ import annotations

import asyncio
import ssl
import time
from functools import partial

import aiohttp
import pytest
from aiohttp import web

from approvals_fakes import Clock, text_of
from bot import BotRuntime, BotSettings, BotTrust, GraphClient, RetryPolicy, TeamsPoster
from cards import Catalog, render_card
from connector.approvals import ApprovalSettings, Approvals
from connector.carddata import build_card_data
from connector.installs import InstallRecorder
from connector.pipeline import Pipeline
from connector.store import NewEvent, PostedCard, open_store
from connector.teams_bot import ConnectorBotHandlers
from connector.tls import TrustAdapter, client_ssl_context
from dynamics import ODataClient

runner = pytest.importorskip("sandbox.runner")
people = pytest.importorskip("sandbox.people")
ENV = "contoso-sandbox"


@pytest.fixture
async def sandbox(tmp_path, aiohttp_server):
    running = await runner.start_sandbox(tmp_path / "sandbox")
    state = running.state
    issuer = running.services["entra"]
    tls = ssl.create_default_context(cafile=state["ca_cert"])
    session = aiohttp.ClientSession(connector=aiohttp.TCPConnector(ssl=tls))
    store = open_store(f"sqlite:///{tmp_path / 'c.db'}")
    await store.open()
    clock = Clock(time.time())
    bot_app_id = state["teams"]["bot_app_id"]

    def token_for(client_id: str, resource: str, tenant: str | None = None):
        async def get_token(*, force_refresh: bool = False) -> str:
            return issuer.issue(client_id, resource, tenant=tenant)[0]
        return get_token

    late: dict = {}  # the approvals exist only once the bot does: InstallRecorder's hook is bound late

    async def install_recorded(install) -> None:
        await late["approvals"].service.on_install_recorded(install)

    naps: list[float] = []

    async def nap(seconds: float) -> None:
        """The install wait's poll. Here the recorder's hook must wake the wait first (this is then cancelled);
        if it does not, the poll ends after 10 s of real time and the test fails on `naps`."""
        try:
            await asyncio.wait_for(asyncio.Event().wait(), timeout=10)
        except asyncio.TimeoutError:
            naps.append(seconds)
            clock.now += seconds

    handlers = ConnectorBotHandlers(InstallRecorder(store, clock, on_change=install_recorded))
    settings = BotSettings(app_id=bot_app_id, tenant_id=people.TENANT_ID,
                           to_bot_from_channel_openid_metadata_url=state["teams"]["openid_metadata_url"],
                           to_bot_from_channel_token_issuer=state["teams"]["token_issuer"], auth_timeout=10)
    bot = BotRuntime(settings, token_for(bot_app_id, "https://api.botframework.com", "botframework.com"), handlers,
                     trust=BotTrust(tls := client_ssl_context(state["ca_cert"]), partial(TrustAdapter, tls)))
    app = web.Application()
    app.router.add_post("/api/messages", bot.messages_handler())
    server = await aiohttp_server(app)
    teams_admin = state["teams"]["admin_url"]

    async def admin(endpoint: str, **args) -> dict:
        async with session.post(f"{teams_admin}/{endpoint}", json=args) as resp:
            assert resp.status == 200, await resp.text()
            return await resp.json()

    await admin("knobs", bot_endpoint=str(server.make_url("/api/messages")))
    poster = TeamsPoster(bot, policy=RetryPolicy(max_attempts=2, max_inline_wait=1))
    graph = GraphClient(session, state["graph"]["graph_url"],
                        token_for(bot_app_id, state["graph"]["resource"]), ssl=tls)
    fno_token = token_for(state["fno"]["client_id"], state["fno"]["base_url"])
    odata = ODataClient(session, state["fno"]["base_url"], fno_token, ssl=tls)
    approvals = Approvals.build(
        store=store, settings=ApprovalSettings(teams_app_external_id=state["graph"]["teams_app_external_id"]),
        poster=poster, graph=graph, catalog=Catalog.builtin(),
        environments={ENV: (state["fno"]["base_url"], odata)}, clock=clock, sleep=nap)
    late["approvals"] = approvals
    handlers.approvals = approvals.service  # connector.teams_bot.ApprovalHandlers
    pipeline = Pipeline(store, approvals.stages(), clock=clock, rng=lambda: 0.0)
    approvals.set_wake(pipeline.wake)
    try:
        yield {"state": state, "session": session, "store": store, "admin": admin, "poster": poster,
               "approvals": approvals, "pipeline": pipeline, "odata": odata, "clock": clock,
               "teams": running.services["teams"], "naps": naps}
    finally:
        await approvals.service.aclose()
        await bot.close()
        await session.close()
        await store.close()
        await running.close()


async def test_a_work_item_from_card_to_f_and_o_and_back_through_teams(sandbox):
    s = sandbox
    store, admin, poster, approvals = s["store"], s["admin"], s["poster"], s["approvals"]
    world = s["teams"].world
    await admin("emit", kind="install", team="Finance Operations")
    team = next(i for i in await store.list_installs() if i.scope == "team" and i.team_name == "Finance Operations")
    channel_id = next(cid for cid, name in team.channels.items() if name == "Approvals")
    megan = people.by_fo_user("megan")
    alex = people.by_fo_user("alex")

    # F&O: an invoice goes into workflow; the connector's enrich read the work item and its user
    async with s["session"].post(s["state"]["fno"]["base_url"] + "/_sandbox/scenario/submit_to_workflow",
                                 json={"legal_entity": "usmf", "approver": "megan"}) as resp:
        [event] = (await resp.json())["events"]
    wid = event["WorkflowWorkItemInstanceId"]
    work_item = await s["odata"].get("WorkflowWorkItems", company=None, key={"Id": wid})
    user = await s["odata"].get("SystemUsers", company=None, key={"UserID": "megan"})
    _, eid = await store.enqueue(NewEvent(ENV, event["BusinessEventId"], event["ControlNumber"], event["EventId"],
                                          "usmf", event), first_stage="enrich", now=s["clock"]())
    claim = await store.claim("t", now=s["clock"](), lease_seconds=60)
    claim = await store.record_step(claim, step="enrich", outcome="ok", next_stage="", now=s["clock"](),
                                    data={"enrichment": {"record": {"workItem": work_item, "user": user},
                                                         "missing": []}})
    await store.complete(claim, now=s["clock"]())
    record = await store.get_event(eid)

    # deliver: the channel card (as delivery.py renders it), then the approvals hook sends the 1:1 copy,
    # installing the app for Megan through Graph first
    data = build_card_data(record, environment_name=ENV, base_url=s["state"]["fno"]["base_url"])
    data["mentions"] = {"approver": {"id": megan.object_id, "name": megan.name}}
    card = render_card("workflow-approval", data).card
    ref = await poster.create_channel_thread(team.service_url, team.tenant_id, channel_id, card)
    posted = PostedCard(event_id=eid, route="approvals", conversation_id=ref.conversation_id,
                        activity_id=ref.activity_id, service_url=ref.service_url, kind="thread",
                        channel_id=channel_id)
    await store.record_card(posted)
    notes = await approvals.service.on_work_item_posted(record, data, [posted], True)
    assert any("1:1 copy sent" in n for n in notes), notes
    personal = [c for c in await store.cards_for_event(eid) if c.kind == "personal"][0]
    assert megan.object_id in world.personal_installs and s["naps"] == []

    # Alex presses Approve (Action.Execute): refused with a card only he sees; nothing reaches F&O
    out = await admin("emit", kind="execute", user="alex", conversation=ref.conversation_id,
                      reply_to=ref.activity_id, verb="approve", data={"action": "approve", "workItemId": wid,
                                                                     "environment": ENV})
    assert out["status"] == 200 and out.get("replaced") is True
    assert "Only Megan Bowen can decide" in text_of(world.viewer_cards[(alex.object_id, ref.activity_id)])

    # Megan approves from the channel card (Action.Submit): the card says "sending" at once
    out = await admin("emit", kind="submit", user="megan", conversation=ref.conversation_id,
                      reply_to=ref.activity_id, value={"action": "approve", "workItemId": wid, "comment": "ok"})
    assert out["status"] in (200, 201)
    thread = world.threads[ref.conversation_id]
    assert "sending the decision to Dynamics" in text_of(thread.messages[0].cards())
    # ... and again from her 1:1 chat: already decided, F&O is called once
    await admin("emit", kind="submit", user="megan", conversation=personal.conversation_id,
                reply_to=personal.activity_id, value={"action": "reject", "workItemId": wid})

    while await s["pipeline"].run_once():
        pass
    row = await s["odata"].get("WorkflowWorkItems", company=None, key={"Id": wid})
    assert row["Status"] == "Completed" and row["Outcome"] == "Approve"
    assert row["Comment"] == f"Approved in Microsoft Teams by {megan.name} ({megan.upn}): ok"
    async with s["session"].get(s["state"]["fno"]["admin_url"] + "/fno/stats") as resp:
        assert (await resp.json())["complete_calls"] == {wid: 1}
    # every copy says so, with the mention still in place (the Connector's lint checks the entities)
    channel_card = thread.messages[0].cards()[0]
    chat_msg = world.message(personal.conversation_id, personal.activity_id)
    for shown in (channel_card, chat_msg.cards()[0]):
        assert '"Approved"' in text_of(shown) and "Megan Bowen in Microsoft Teams" in text_of(shown)
        assert megan.object_id in [e["mentioned"]["id"] for e in shown["msteams"]["entities"]]
    audit = [e.action for e in reversed(await store.list_audit(work_item_id=wid))]
    assert audit[:2] == ["tracked", "personal-copy"] and "refused" in audit and audit[-1] == "completed"
