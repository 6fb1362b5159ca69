"""The work item lifecycle in the F&O stand-in: Pending -> Completed / Delegated (+ new item) / Recalled, escalation,
the OData validate/complete rules, the complete_calls counter, the action latency knob and the events raised."""

from __future__ import annotations

import asyncio
import datetime as dt
import random

import pytest
from aiohttp import web

from sandbox import contracts
from sandbox.fno import FnoConfig, FnoService, add_fno_admin_routes, create_fno_app
from sandbox.people import by_fo_user
from sandbox.scenario import Scenario, add_scenario_routes
from sandbox.seed import SERVICE_USER_ID, seed_state
from sandbox.sender import EventSender

BASE = "https://contoso-sandbox.test"
NS = "Microsoft.Dynamics.DataEntities"
CONNECTOR = "11111111-2222-4333-8444-555555555555"
WORK_ITEM = "Workflow_VendInvoiceReview_000123_VendInvoiceApproval_WorkItem"
ELEMENT = "Workflow_VendInvoiceReview_000123_VendInvoiceApproval"
WORKFLOW = "Workflow_VendInvoiceReview_000123"
ENVELOPE = {"BusinessEventId", "BusinessEventLegalEntity", "ContextRecordSubject", "ControlNumber", "EventId",
            "EventTime", "EventTimeIso8601", "InitiatingUserAADObjectId", "MajorVersion", "MinorVersion",
            "ParentContextRecordSubjects"}
NOW = dt.datetime(2026, 11, 26, 10, 0, 0, tzinfo=dt.timezone.utc)


class Clock:
    def __init__(self) -> None:
        self.now = NOW

    def __call__(self) -> dt.datetime:
        return self.now


class Sleeps:
    """The F&O service's sleep: records the seconds and what the work item looked like meanwhile; `gate` (if set)
    holds every sleeper until the test opens it."""

    def __init__(self) -> None:
        self.calls: list[float] = []
        self.seen_status: list[str] = []
        self.watch: tuple | None = None  # (state, work item id)
        self.gate: asyncio.Event | None = None

    async def __call__(self, seconds: float) -> None:
        self.calls.append(seconds)
        if self.watch:
            state, item_id = self.watch
            self.seen_status.append(state.get("WorkflowWorkItems", {"Id": item_id})["Status"])
        if self.gate:
            await self.gate.wait()


def oid(user: str) -> str:
    return "{" + by_fo_user(user).object_id.upper() + "}"


def email(user: str) -> str:
    return by_fo_user(user).upn


def verify(token: str, audience: str) -> dict:
    """Tokens are names: "app" is the connector's app-only token, any other is that F&O user's delegated token."""
    assert audience == BASE
    if token == "app":
        return {"appid": CONNECTOR}
    return {"scp": "user_impersonation", "upn": email(token), "azp": CONNECTOR}


class World:
    def __init__(self, client, service: FnoService, scenario: Scenario, sender: EventSender, received: list,
                 sleeps: Sleeps, clock: Clock) -> None:
        self.client, self.service, self.scenario, self.sender = client, service, scenario, sender
        self.state, self.received, self.sleeps, self.clock = service.state, received, sleeps, clock

    async def op(self, name: str, status: int = 200, **args) -> dict:
        resp = await self.client.post(f"/_sandbox/scenario/{name}", json=args)
        body = await resp.json()
        assert resp.status == status, body
        return body

    async def action(self, item_id: str, action: str, token: str = "app", **params):
        resp = await self.client.post(f"/data/WorkflowWorkItems(Id='{item_id}')/{NS}.{action}", json=params,
                                      headers={"Authorization": f"Bearer {token}"})
        body = await resp.json() if resp.status != 204 else None
        return resp.status, body

    async def validate(self, item_id: str, token: str = "app") -> bool:
        status, body = await self.action(item_id, "validate", token)
        assert status == 200, body
        return body["value"]

    async def events(self) -> list[dict]:
        """Every event delivered to the connector's endpoint since the last call, in delivery order."""
        await asyncio.wait_for(self.sender.drain(), 10)
        out, self.received[:] = list(self.received), []
        return out

    def item(self, item_id: str) -> dict:
        return self.state.get("WorkflowWorkItems", {"Id": item_id})

    def invoice(self, item: dict) -> dict:
        return self.state.get("VendorInvoiceHeaders", {"dataAreaId": item["CompanyId"],
                                                       "HeaderReference": item["DocumentId"]})

    async def stats(self) -> dict:
        return await (await self.client.get("/_sandbox/fno/stats")).json()

    async def submit(self, **args) -> dict:
        """Submit an invoice; answers the new work item (and drops its event from `received`)."""
        [event] = (await self.op("submit_to_workflow", **args))["events"]
        assert [e["EventId"] for e in await self.events()] == [event["EventId"]]
        return self.item(event["WorkflowWorkItemInstanceId"])


@pytest.fixture
async def world(aiohttp_client, aiohttp_server):
    received: list[dict] = []

    async def endpoint(request: web.Request) -> web.Response:
        received.append(await request.json())
        return web.Response(status=202)
    receiver = web.Application()
    receiver.router.add_post("/api/dynamics/events/{token}", endpoint)
    server = await aiohttp_server(receiver)
    clock, sleeps = Clock(), Sleeps()
    state = seed_state()
    state.register_app(CONNECTOR, SERVICE_USER_ID, "ml-connector")
    sender = EventSender(rng=random.Random(3), now=clock, sleep=Sleeps())
    await sender.start()
    service = FnoService(state, verify, config=FnoConfig(base_url=BASE), now=clock, sleep=sleeps)
    scenario = Scenario(state, sender, now=clock)
    scenario.senior_threshold = float("inf")  # tests say who approves; the amount rule has its own test
    service.on_complete.append(scenario.on_work_item_completed)

    def admin(app: web.Application) -> None:
        add_fno_admin_routes(app)
        add_scenario_routes(app, scenario)
    client = await aiohttp_client(create_fno_app(service, admin))
    target = sender.add_endpoint(str(server.make_url("/api/dynamics/events/s3cret")), "connector")
    for event_id in (scenario.work_item_event_id, scenario.element_event_id, scenario.workflow_event_id):
        await sender.activate(event_id, target.id)
    received.clear()  # the activation test messages
    yield World(client, service, scenario, sender, received, sleeps, clock)
    await sender.close()


def assert_fno_error(body: dict, *words: str) -> None:
    err = body["error"]
    assert err["code"] == "" and set(err["innererror"]) == {"message", "type", "stacktrace"}
    for word in words:
        assert word in err["message"], (word, err["message"])


# --- submit ----------------------------------------------------------------------------------------------------
def test_default_approver_is_the_cfo_above_10000_else_the_entitys_ap_approver():
    scenario = Scenario(seed_state(), EventSender())
    assert scenario.default_approver("usmf", 10_000.01) == scenario.default_approver("demf", 20_000) == "megan"
    assert scenario.default_approver("usmf", 10_000) == "adele" and scenario.default_approver("DEMF", 5) == "jurgen"
    assert all(by_fo_user(u) for u in ("megan", "adele", "jurgen", "isaiah", scenario.escalation_user))


async def test_submit_assigns_by_amount_and_raises_the_work_item_event(world):
    assert (await world.op("configure_workflow", senior_threshold=0))["record"]["senior_approver"] == "megan"
    [event] = (await world.op("submit_to_workflow", submitter="lynne"))["events"]
    assert event["BusinessEventId"] == WORK_ITEM
    assert set(event) - ENVELOPE == {"WorkflowWorkItemInstanceId", "WorkflowWorkItemSubject", "WorkflowUserEmail",
                                     "WorkItemOwner", "WorkflowDocument", "WorkflowDocumentId",
                                     "WorkflowStepInstruction", "WorkflowWorkItemOutcomes", "LegalEntity"}
    assert event["WorkItemOwner"] == "megan" and event["WorkflowUserEmail"] == email("megan")
    assert event["WorkflowWorkItemOutcomes"] == ["Approve", "Reject", "RequestChange"]
    assert event["InitiatingUserAADObjectId"] == oid("lynne") and event["WorkflowDocument"] == "Vendor invoice"
    assert await world.events() == [event]
    item = world.item(event["WorkflowWorkItemInstanceId"])
    assert (item["Status"], item["UserId"], item["CreatedDateTime"], item["DueDateTime"]) == (
        "Pending", "megan", NOW, NOW + dt.timedelta(days=3))
    assert world.invoice(item)["VendorInvoiceReviewStatus"] == "InReview"

    await world.op("configure_workflow", senior_threshold=1e12, outcomes=["Approve", "Reject"])
    small = await world.submit()
    assert small["UserId"] == "adele" and small["Outcomes"] == "Approve,Reject"
    explicit = await world.submit(legal_entity="demf", approver="johanna")
    assert explicit["UserId"] == "johanna" and explicit["CompanyId"] == "demf"
    body = await world.op("submit_to_workflow", 409, approver="nobody")
    assert "nobody" in body["error"]
    await world.op("submit_to_workflow", 409, header_reference=item["DocumentId"])  # already in workflow

    listed = await (await world.client.get("/_sandbox/fno/work-items", params={"status": "pending"})).json()
    ids = [w["Id"] for w in listed]
    assert {item["Id"], small["Id"], explicit["Id"]} <= set(ids) and ids[-1] == explicit["Id"]  # oldest first
    assert all(w["Status"] == "Pending" for w in listed) and listed[-1]["CreatedDateTime"] == "2026-11-26T10:00:00Z"
    mine = await (await world.client.get("/_sandbox/fno/work-items", params={"user": "JOHANNA"})).json()
    assert [w["Id"] for w in mine] == [explicit["Id"]]


# --- complete -----------------------------------------------------------------------------------------------
async def test_complete_through_odata_records_the_decision_and_raises_element_and_workflow_events(world):
    item = await world.submit()
    assert await world.validate(item["Id"]) is True
    world.clock.now = NOW + dt.timedelta(minutes=5, microseconds=123)
    status, _ = await world.action(item["Id"], "complete", outcome="Approve", comment="ok from Teams")
    assert status == 204
    assert (item["Status"], item["CompletedBy"], item["Outcome"], item["Comment"], item["CompletedDateTime"]) == (
        "Completed", SERVICE_USER_ID, "Approve", "ok from Teams", world.clock.now)
    invoice = world.invoice(item)
    assert (invoice["VendorInvoiceReviewStatus"], invoice["IsApproved"], invoice["ApprovedBy"]) == (
        "Approved", "Yes", SERVICE_USER_ID)
    element, done = await world.events()
    assert element["BusinessEventId"] == ELEMENT
    assert {k: v for k, v in element.items() if k not in ENVELOPE} == {
        "LegalEntity": "usmf", "WorkflowDocument": "Vendor invoice", "WorkflowDocumentId": item["DocumentId"],
        "WorkflowElementName": "VendInvoiceApproval", "WorkflowElementStatus": "Completed",
        "WorkflowWorkItemCompletedBy": SERVICE_USER_ID,
        "WorkflowWorkItemCompletedDateTime": contracts.ms_date(world.clock.now),
        "WorkflowWorkItemComment": "ok from Teams", "WorkflowWorkItemInstanceId": item["Id"],
        "WorkflowWorkItemOutcome": "Approve", "WorkItemOwner": item["UserId"]}
    assert element["InitiatingUserAADObjectId"] == "{00000000-0000-0000-0000-000000000000}"  # the service user
    assert done["BusinessEventId"] == WORKFLOW
    assert {k: v for k, v in done.items() if k not in ENVELOPE} == {
        "LegalEntity": "usmf", "WorkflowDocument": "Vendor invoice", "WorkflowDocumentId": item["DocumentId"],
        "WorkflowDocumentStatus": "Approved", "WorkflowStatus": "Completed", "WorkflowStatusChangedBy": SERVICE_USER_ID,
        "WorkflowWorkItemInstanceId": item["Id"]}
    assert done["ControlNumber"] > element["ControlNumber"]

    assert await world.validate(item["Id"]) is False
    status, body = await world.action(item["Id"], "complete", outcome="Approve")
    assert status == 400
    assert_fno_error(body, "not pending", "Completed", item["Id"])
    assert body["error"]["innererror"]["type"] == "Microsoft.Dynamics.Ax.Xpp.ErrorException"
    assert item["Comment"] == "ok from Teams" and await world.events() == []
    stats = await world.stats()
    assert stats["complete_calls"] == {item["Id"]: 2} and stats["validate_calls"] == {item["Id"]: 2}
    await world.client.post("/_sandbox/fno/stats/reset")
    assert (await world.stats())["complete_calls"] == {}


async def test_reject_ends_the_workflow_request_change_does_not(world):
    rejected, changed = await world.submit(), await world.submit()
    assert (await world.action(rejected["Id"], "complete", outcome="Reject", comment="wrong price"))[0] == 204
    element, done = await world.events()
    assert element["WorkflowWorkItemOutcome"] == "Reject" and element["WorkflowWorkItemComment"] == "wrong price"
    assert (done["WorkflowStatus"], done["WorkflowDocumentStatus"]) == ("Completed", "Rejected")
    assert world.invoice(rejected)["VendorInvoiceReviewStatus"] == "Rejected"
    assert (await world.action(changed["Id"], "complete", outcome="RequestChange"))[0] == 204
    [element] = await world.events()  # the workflow goes on: back to the submitter
    assert element["BusinessEventId"] == ELEMENT and element["WorkflowWorkItemOutcome"] == "RequestChange"
    assert element["WorkflowWorkItemComment"] == "" and world.invoice(changed)["VendorInvoiceReviewStatus"] == "Draft"


@pytest.mark.parametrize("params", [{}, {"outcome": "Maybe"}, {"outcome": "Delegate"}, {"outcome": 1},
                                    {"outcome": "approve"}])
async def test_complete_needs_one_of_the_items_outcomes(world, params):
    item = await world.submit()
    status, body = await world.action(item["Id"], "complete", **params)
    assert status == 400
    assert_fno_error(body, "Outcome")
    assert item["Status"] == "Pending" and await world.events() == []
    assert (await world.stats())["complete_calls"] == {item["Id"]: 1}


async def test_unknown_work_item_is_404_and_counted(world):
    status, body = await world.action("NOPE", "complete", outcome="Approve")
    assert status == 404
    assert_fno_error(body, "WorkflowWorkItems")
    assert (await world.stats())["complete_calls"] == {"NOPE": 1}
    assert "NOPE" in (await world.op("complete_in_fno", 409, work_item_id="NOPE", outcome="Approve"))["error"]


async def test_complete_in_fno_is_the_same_transition_without_our_call(world):
    item = await world.submit()
    world.clock.now = NOW + dt.timedelta(hours=1)
    events = (await world.op("complete_in_fno", work_item_id=item["Id"], outcome="Reject",
                             comment="decided in F&O"))["events"]
    assert [e["BusinessEventId"] for e in events] == [ELEMENT, WORKFLOW]
    assert events[0]["WorkflowWorkItemCompletedBy"] == item["UserId"] == "adele"
    assert events[0]["InitiatingUserAADObjectId"] == oid("adele")
    assert await world.events() == events
    assert (item["Status"], item["CompletedBy"], item["Outcome"], item["CompletedDateTime"]) == (
        "Completed", "adele", "Reject", NOW + dt.timedelta(hours=1))
    assert (await world.stats())["complete_calls"] == {}  # the connector never called complete
    assert await world.validate(item["Id"]) is False  # what the connector's reconciler sees
    assert (await world.action(item["Id"], "complete", outcome="Approve"))[0] == 400
    assert "not pending" in (await world.op("complete_in_fno", 409, work_item_id=item["Id"], outcome="Approve"))[
        "error"]
    other = await world.submit()
    await world.op("complete_in_fno", work_item_id=other["Id"], outcome="Approve", by_user="megan")
    assert other["CompletedBy"] == "megan" and world.invoice(other)["ApprovedBy"] == "megan"
    assert [e["InitiatingUserAADObjectId"] for e in await world.events()] == [oid("megan")] * 2
    third = await world.submit()
    await world.op("complete_in_fno", 409, work_item_id=third["Id"], outcome="Nope")
    await world.op("complete_in_fno", 409, work_item_id=third["Id"], outcome="Approve", by_user="ghost")
    assert third["Status"] == "Pending"


# --- delegate / escalate ---------------------------------------------------------------------------------------
async def test_delegation_closes_the_old_item_and_opens_a_new_one(world):
    old = await world.submit()
    world.clock.now = NOW + dt.timedelta(hours=2)
    [event] = (await world.op("delegate_work_item", work_item_id=old["Id"], to_user="lidia",
                              comment="I am on leave"))["events"]
    assert await world.events() == [event]
    new = world.item(event["WorkflowWorkItemInstanceId"])
    assert new["Id"] != old["Id"] and event["BusinessEventId"] == WORK_ITEM
    assert (event["WorkItemOwner"], event["WorkflowUserEmail"], event["InitiatingUserAADObjectId"]) == (
        "lidia", email("lidia"), oid("adele"))
    assert event["WorkflowDocumentId"] == old["DocumentId"] and event["WorkflowWorkItemSubject"] == old["Subject"]
    assert (old["Status"], old["UserId"], old["ReassignedTo"], old["ReassignedWorkItemId"], old["CompletedBy"],
            old["CompletedDateTime"], old["Comment"], old["Outcome"], old["IsEscalated"]) == (
        "Delegated", "adele", "lidia", new["Id"], "adele", world.clock.now, "I am on leave", "", "No")
    assert (new["Status"], new["UserId"], new["PreviousWorkItemId"], new["CreatedDateTime"], new["DueDateTime"],
            new["Outcomes"], new["CompletedDateTime"], new["IsEscalated"]) == (
        "Pending", "lidia", old["Id"], world.clock.now, old["DueDateTime"], old["Outcomes"], None, "No")
    assert world.invoice(new)["VendorInvoiceReviewStatus"] == "InReview"

    assert await world.validate(old["Id"]) is False and await world.validate(new["Id"]) is True
    status, body = await world.action(old["Id"], "complete", outcome="Approve")
    assert status == 400
    assert_fno_error(body, "not pending", "Delegated")
    assert (await world.action(new["Id"], "complete", outcome="Approve"))[0] == 204
    assert [e["WorkflowWorkItemInstanceId"] for e in await world.events()] == [new["Id"]] * 2

    again = await world.submit()
    for args in ({"to_user": "adele"}, {"to_user": "ghost"}, {"to_user": "lidia", "work_item_id": old["Id"]}):
        await world.op("delegate_work_item", 409, **{"work_item_id": again["Id"], **args})
    assert again["Status"] == "Pending" and await world.events() == []
    odata = await (await world.client.get(f"/data/WorkflowWorkItems(Id='{old['Id']}')",
                                          headers={"Authorization": "Bearer app"})).json()
    assert (odata["Status"], odata["ReassignedWorkItemId"], odata["IsEscalated"]) == ("Delegated", new["Id"], "No")


async def test_escalation_on_demand(world):
    first = await world.submit()
    world.clock.now = NOW + dt.timedelta(hours=1)
    [event] = (await world.op("escalate_work_item", work_item_id=first["Id"]))["events"]
    new = world.item(event["WorkflowWorkItemInstanceId"])
    assert (first["Status"], first["IsEscalated"], first["ReassignedTo"], first["CompletedBy"]) == (
        "Delegated", "Yes", "megan", "Admin")  # done by the workflow execution account
    assert first["Comment"].startswith("Escalated")
    assert (new["Status"], new["UserId"], new["IsEscalated"], new["PreviousWorkItemId"], new["DueDateTime"]) == (
        "Pending", "megan", "Yes", first["Id"], world.clock.now + dt.timedelta(days=3))
    assert (event["BusinessEventId"], event["WorkItemOwner"], event["InitiatingUserAADObjectId"]) == (
        WORK_ITEM, "megan", "{00000000-0000-0000-0000-000000000000}")  # Admin is no Entra person here
    assert await world.events() == [event]
    assert await world.validate(first["Id"]) is False and await world.validate(new["Id"]) is True
    body = await world.op("escalate_work_item", 409, work_item_id=new["Id"])  # already with the escalation user
    assert "to_user" in body["error"]
    [to_patti] = (await world.op("escalate_work_item", work_item_id=new["Id"], to_user="patti",
                                 comment="CFO away"))["events"]
    assert to_patti["WorkItemOwner"] == "patti" and (new["Status"], new["Comment"]) == ("Delegated", "CFO away")
    await world.op("escalate_work_item", 409, work_item_id=first["Id"], to_user="patti")  # not pending
    await world.op("configure_workflow", 409, escalation_user="ghost")


async def test_escalate_overdue_is_the_workflow_batch_run(world):
    late, soon = await world.submit(), await world.submit(legal_entity="demf")
    with_cfo = await world.submit(approver="megan")
    world.clock.now = late["DueDateTime"] + dt.timedelta(seconds=1)
    world.state.update("WorkflowWorkItems", soon, DueDateTime=world.clock.now + dt.timedelta(hours=1))
    expected = {w["Id"] for w in world.state.rows("WorkflowWorkItems") if w["Status"] == "Pending"
                and w["DueDateTime"] < world.clock.now and w["UserId"] != "megan"}
    assert late["Id"] in expected and soon["Id"] not in expected and with_cfo["Id"] not in expected
    events = (await world.op("escalate_overdue"))["events"]
    assert {world.item(e["WorkflowWorkItemInstanceId"])["PreviousWorkItemId"] for e in events} == expected
    assert len(events) == len(expected) and {e["WorkItemOwner"] for e in events} == {"megan"}
    assert (late["Status"], soon["Status"], with_cfo["Status"]) == ("Delegated", "Pending", "Pending")
    assert await world.events() == events
    assert (await world.op("escalate_overdue"))["events"] == []  # the new items are due in three days
    resp = await world.client.get("/data/WorkflowWorkItems", headers={"Authorization": "Bearer app"}, params={
        "$filter": f"IsEscalated eq {NS}.NoYes'Yes' and Status eq {NS}.WorkflowWorkItemStatus'Pending'"})
    assert {r["PreviousWorkItemId"] for r in (await resp.json())["value"]} == expected


# --- recall -----------------------------------------------------------------------------------------------------
async def test_recall_cancels_the_workflow(world):
    item = await world.submit()
    world.clock.now = NOW + dt.timedelta(minutes=30)
    [event] = (await world.op("recall_work_item", work_item_id=item["Id"]))["events"]
    assert {k: v for k, v in event.items() if k not in ENVELOPE} == {
        "LegalEntity": "usmf", "WorkflowDocument": "Vendor invoice", "WorkflowDocumentId": item["DocumentId"],
        "WorkflowDocumentStatus": "Draft", "WorkflowStatus": "Canceled", "WorkflowStatusChangedBy": "lynne",
        "WorkflowWorkItemInstanceId": item["Id"]}
    assert event["BusinessEventId"] == WORKFLOW and event["InitiatingUserAADObjectId"] == oid("lynne")
    assert await world.events() == [event]
    assert (item["Status"], item["CompletedBy"], item["CompletedDateTime"], item["Outcome"]) == (
        "Recalled", "lynne", world.clock.now, "")
    assert world.invoice(item)["VendorInvoiceReviewStatus"] == "Draft"
    assert await world.validate(item["Id"]) is False
    status, body = await world.action(item["Id"], "complete", outcome="Approve")
    assert status == 400
    assert_fno_error(body, "not pending", "Recalled")
    await world.op("recall_work_item", 409, work_item_id=item["Id"])
    assert await world.events() == []
    # the document can go through workflow again
    again = await world.submit(header_reference=item["DocumentId"])
    assert again["Status"] == "Pending" and again["Id"] != item["Id"]


# --- OData rules and knobs -------------------------------------------------------------------------------------
async def test_assignee_only(world):
    item = await world.submit()
    await world.client.post("/_sandbox/fno/config", json={"assignee_only": True})
    assert await world.validate(item["Id"]) is False  # the app-only caller runs as the service user
    assert await world.validate(item["Id"], token="adele") is True
    assert await world.validate(item["Id"], token="megan") is False
    for token in ("app", "megan"):
        status, body = await world.action(item["Id"], "complete", token, outcome="Approve")
        assert status == 403
        assert_fno_error(body, "not the assignee")
    assert item["Status"] == "Pending" and await world.events() == []
    status, _ = await world.action(item["Id"], "complete", "adele", outcome="Approve", comment="me")
    assert status == 204 and (item["CompletedBy"], item["Comment"]) == ("adele", "me")
    element, _ = await world.events()
    assert element["WorkflowWorkItemCompletedBy"] == "adele" and element["InitiatingUserAADObjectId"] == oid("adele")
    assert (await world.stats())["complete_calls"] == {item["Id"]: 3}
    status, body = await world.action(item["Id"], "complete", "megan", outcome="Approve")
    assert status == 400  # not pending is checked before who is asking
    await world.client.post("/_sandbox/fno/config", json={"assignee_only": False})
    other = await world.submit()
    assert (await world.action(other["Id"], "complete", "megan", outcome="Approve"))[0] == 204
    assert other["CompletedBy"] == "megan"


async def test_action_latency_waits_then_acts(world):
    item = await world.submit()
    world.sleeps.watch = (world.state, item["Id"])
    cfg = await (await world.client.post("/_sandbox/fno/config",
                                         json={"action_latency_ms": {"complete": 5000}})).json()
    assert cfg["action_latency_ms"] == {"complete": 5000} and cfg["action_latency_commit_first"] is False
    assert (await world.client.post("/_sandbox/fno/config", json={"action_latency_ms": 5})).status == 400
    assert await world.validate(item["Id"]) is True
    assert world.sleeps.calls == []  # validate has no latency
    assert (await world.action(item["Id"], "complete", outcome="Approve"))[0] == 204
    assert world.sleeps.calls == [5.0] and world.sleeps.seen_status == ["Pending"]
    assert item["Status"] == "Completed"


async def test_action_latency_can_act_first_and_answer_late(world):
    item = await world.submit()
    world.sleeps.watch = (world.state, item["Id"])
    await world.client.post("/_sandbox/fno/config", json={"action_latency_ms": {"complete": 5000, "validate": 10},
                                                          "action_latency_commit_first": True})
    assert await world.validate(item["Id"]) is True
    assert (await world.action(item["Id"], "complete", outcome="Approve"))[0] == 204
    assert world.sleeps.calls == [0.01, 5.0] and world.sleeps.seen_status == ["Pending", "Completed"]


async def test_two_slow_completes_at_once_one_wins(world):
    item = await world.submit()
    world.sleeps.gate = asyncio.Event()
    await world.client.post("/_sandbox/fno/config", json={"action_latency_ms": {"complete": 5000}})
    calls = [asyncio.ensure_future(world.action(item["Id"], "complete", outcome=o)) for o in ("Approve", "Reject")]
    for _ in range(1000):  # both requests reach F&O and wait there
        if len(world.sleeps.calls) == 2:
            break
        await asyncio.sleep(0)
    assert len(world.sleeps.calls) == 2 and item["Status"] == "Pending"
    world.sleeps.gate.set()
    results = await asyncio.gather(*calls)
    assert sorted(status for status, _ in results) == [204, 400]
    winner = "Approve" if results[0][0] == 204 else "Reject"
    assert item["Outcome"] == winner
    assert (await world.stats())["complete_calls"] == {item["Id"]: 2}
    assert [e["BusinessEventId"] for e in await world.events()] == [ELEMENT, WORKFLOW]


async def test_metadata_lists_the_new_work_item_fields(world):
    meta = await (await world.client.get("/data/$metadata", headers={"Authorization": "Bearer app"})).text()
    for name in ("ReassignedTo", "ReassignedWorkItemId", "PreviousWorkItemId"):
        assert f'<Property Name="{name}" Type="Edm.String"/>' in meta
    assert f'<Property Name="IsEscalated" Type="{NS}.NoYes"/>' in meta
