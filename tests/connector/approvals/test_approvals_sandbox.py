"""The approvals against the real F&O stand-in (sandbox/, TLS, Entra tokens): real ODataClient + WorkflowActions.
Teams is the recording fake: the Teams stand-in's part (posting, presses) is covered by the bot's own tests."""

from __future__ import annotations

import ssl

import aiohttp
import pytest

from approvals_fakes import World, make_world, submit, text_of
from bot import GraphUser
from connector.approvals import FoEnvironment, workflow_actions
from connector.carddata import build_card_data
from connector.store import NewEvent, PostedCard
from dynamics import ODataClient

runner = pytest.importorskip("sandbox.runner")
people = pytest.importorskip("sandbox.people")


async def _token(session: aiohttp.ClientSession, state: dict) -> str:
    url = f"{state['entra']['authority_host']}/{state['tenant_id']}/oauth2/v2.0/token"
    form = {"grant_type": "client_credentials", "client_id": state["fno"]["client_id"],
            "client_secret": state["fno"]["client_secret"], "scope": state["fno"]["base_url"] + "/.default"}
    async with session.post(url, data=form) as resp:
        assert resp.status == 200, await resp.text()
        return (await resp.json())["access_token"]


@pytest.fixture
async def fno(tmp_path):
    running = await runner.start_sandbox(tmp_path / "sandbox")
    state = running.state
    tls = ssl.create_default_context(cafile=state["ca_cert"])
    session = aiohttp.ClientSession(connector=aiohttp.TCPConnector(ssl=tls))
    token = await _token(session, state)

    async def get_token(*, force_refresh: bool = False) -> str:
        return token

    odata = ODataClient(session, state["fno"]["base_url"], get_token, ssl=tls)
    try:
        yield state, session, odata
    finally:
        await session.close()
        await running.close()


async def _post(session, url: str, body: dict) -> dict:
    async with session.post(url, json=body) as resp:
        assert resp.status == 200, await resp.text()
        return await resp.json()


async def _tracked(world: World, odata: ODataClient, event: dict) -> str:
    """What enrich + deliver do for a `_WorkItem` event, against the real F&O: read the work item and its user."""
    wid = event["WorkflowWorkItemInstanceId"]
    work_item = await odata.get("WorkflowWorkItems", company=None, key={"Id": wid})
    user = await odata.get("SystemUsers", company=None, key={"UserID": work_item["UserId"]})
    env = "contoso-sandbox"
    _, eid = await world.store.enqueue(NewEvent(env, event["BusinessEventId"], event["ControlNumber"],
                                                event["EventId"], event["LegalEntity"], event),
                                       first_stage="enrich", now=world.clock())
    claim = await world.store.claim("test", now=world.clock(), lease_seconds=60)
    claim = await world.store.record_step(claim, step="enrich", outcome="ok", next_stage="", now=world.clock(),
                                          data={"enrichment": {"record": {"workItem": work_item, "user": user},
                                                               "missing": []}})
    await world.store.complete(claim, now=world.clock())
    record = await world.store.get_event(eid)
    card = PostedCard(event_id=eid, route="approvals", conversation_id=f"19:c@thread.tacv2;messageid={wid}",
                      activity_id=wid, service_url="https://smba.example/", kind="thread")
    await world.store.record_card(card)
    data = build_card_data(record, environment_name=env, base_url="https://fno.example")
    await world.service.on_work_item_posted(record, data, [card], False)
    return wid


async def test_approve_and_recall_against_the_f_and_o_sandbox(tmp_path, fno):
    state, session, odata = fno
    world = await make_world(str(tmp_path / "a.db"))
    world.approvals.deps.fo["contoso-sandbox"] = FoEnvironment("contoso-sandbox", odata,
                                                              workflow_actions(odata, world.settings))
    person = people.by_fo_user("megan")
    megan = GraphUser(person.object_id, person.name, person.upn, person.upn)

    async def get_user(key):  # Graph is faked; F&O's SystemUsers Alias is the UPN
        return megan if key.lower() == person.upn.lower() else None

    world.graph.get_user = get_user
    scenario = state["fno"]["base_url"] + "/_sandbox/scenario"
    try:
        [event] = (await _post(session, f"{scenario}/submit_to_workflow",
                               {"legal_entity": "usmf", "approver": "megan"}))["events"]
        wid = await _tracked(world, odata, event)
        approval = await world.store.get_approval("contoso-sandbox", wid)
        assert approval.assignee_object_id == person.object_id and approval.status == "pending"
        answer = await world.service.on_submit(submit(megan, wid=wid, comment="checked"))
        assert "sending the decision" in text_of(answer)
        await world.service.on_submit(submit(megan, wid=wid))  # pressed twice
        await world.run_pipeline()
        row = await odata.get("WorkflowWorkItems", company=None, key={"Id": wid})
        assert row["Status"] == "Completed" and row["Outcome"] == "Approve"
        assert row["Comment"] == f"Approved in Microsoft Teams by {person.name} ({person.upn}): checked"
        async with session.get(state["fno"]["admin_url"] + "/fno/stats") as resp:
            stats = await resp.json()
        assert stats["complete_calls"] == {wid: 1}
        assert (await world.store.get_approval("contoso-sandbox", wid)).status == "decided"
        assert '"Approved"' in text_of(world.poster.last_card(wid))

        # recalled in F&O before the press: no complete, the card says so
        [event] = (await _post(session, f"{scenario}/submit_to_workflow",
                               {"legal_entity": "usmf", "approver": "megan"}))["events"]
        wid2 = await _tracked(world, odata, event)
        await _post(session, f"{scenario}/recall_work_item", {"work_item_id": wid2})
        await world.service.on_submit(submit(megan, wid=wid2))
        await world.run_pipeline()
        approval = await world.store.get_approval("contoso-sandbox", wid2)
        assert approval.status == "closed" and approval.fo_status == "Recalled"
        assert "No longer pending in Dynamics (Recalled)" in text_of(world.poster.last_card(wid2))
        async with session.get(state["fno"]["admin_url"] + "/fno/stats") as resp:
            assert wid2 not in (await resp.json())["complete_calls"]
    finally:
        await world.store.close()
