"""The Business Events sender behaves like F&O's HTTPS adapter: one object per POST, retries, error log, resend,
test message on activation, envelope format, and its fault knobs."""

from __future__ import annotations

import asyncio
import datetime as dt
import json
import random
import re

import pytest
from aiohttp import web

from sandbox import contracts
from sandbox.scenario import Scenario
from sandbox.seed import seed_state
from sandbox.sender import ActivationFailed, EventSender, add_sender_admin_routes

GUID = r"[0-9A-F]{8}-[0-9A-F]{4}-[0-9A-F]{4}-[0-9A-F]{4}-[0-9A-F]{12}"
FIELDS = {"LegalEntity": "usmf", "PurchaseOrderNumber": "USMF-000001"}


class Receiver:
    """The connector's endpoint, as far as the sender can tell: records every POST, answers from a script."""

    def __init__(self) -> None:
        self.requests: list[dict] = []
        self.statuses: list[int] = []  # consumed one per request; then `default`
        self.default = 202
        self.delay = 0.0
        self.in_flight = self.max_in_flight = 0

    async def handle(self, request: web.Request) -> web.Response:
        self.in_flight += 1
        self.max_in_flight = max(self.max_in_flight, self.in_flight)
        try:
            if self.delay:
                await asyncio.sleep(self.delay)  # server-side work, not a test sleep
            raw = await request.read()
            self.requests.append({"content_type": request.headers.get("Content-Type"), "raw": raw,
                                  "body": json.loads(raw), "path": request.path_qs})
            return web.Response(status=self.statuses.pop(0) if self.statuses else self.default)
        finally:
            self.in_flight -= 1

    def bodies(self) -> list[dict]:
        return [r["body"] for r in self.requests]


class Sleeps:
    def __init__(self) -> None:
        self.calls: list[float] = []

    async def __call__(self, seconds: float) -> None:
        self.calls.append(seconds)


@pytest.fixture
async def rig(aiohttp_server):
    receiver = Receiver()
    app = web.Application()
    app.router.add_post("/api/dynamics/events/{token}", receiver.handle)
    server = await aiohttp_server(app)
    sleeps = Sleeps()
    sender = EventSender(sleep=sleeps, rng=random.Random(1))
    await sender.start()
    endpoint = sender.add_endpoint(str(server.make_url("/api/dynamics/events/s3cret-token")), "connector")
    yield sender, receiver, endpoint, sleeps
    await sender.close()


async def test_each_event_is_one_post_of_one_json_object(rig):
    sender, receiver, endpoint, _ = rig
    await sender.activate(contracts.PO_CONFIRMED, endpoint.id)
    receiver.requests.clear()
    sent = [sender.raise_event(contracts.PO_CONFIRMED, {**FIELDS, "N": i}, legal_entity="usmf") for i in range(3)]
    await asyncio.wait_for(sender.drain(), 10)
    assert len(receiver.requests) == 3
    for req, payload in zip(receiver.requests, sent):
        assert req["content_type"] == "application/json"
        assert isinstance(req["body"], dict) and req["body"] == payload
        assert req["path"] == "/api/dynamics/events/s3cret-token"
    numbers = [b["ControlNumber"] for b in receiver.bodies()]
    assert numbers == sorted(numbers) and len(set(numbers)) == 3  # one thread: commit order


async def test_envelope_format(rig):
    sender, _, _, _ = rig
    sender._now = lambda: dt.datetime(2023, 10, 16, 15, 42, 46, 344065, tzinfo=dt.timezone.utc)
    payload = sender.raise_event(contracts.PO_CONFIRMED, FIELDS, legal_entity="usmf",
                                 initiating_user_oid="c600136f-6814-41d9-8642-40ca0ec4edd4")
    assert list(payload) == sorted(payload)
    assert payload["EventTime"] == "/Date(1697470966000)/"  # truncated to whole seconds
    assert payload["EventTimeIso8601"] == "2023-10-16T15:42:46.3440650Z"
    assert re.fullmatch(r"/Date\(\d+000\)/", payload["EventTime"])
    assert re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{7}Z", payload["EventTimeIso8601"])
    assert re.fullmatch(GUID, payload["EventId"])
    assert payload["InitiatingUserAADObjectId"] == "{C600136F-6814-41D9-8642-40CA0EC4EDD4}"
    assert payload["ControlNumber"] >= contracts.CONTROL_NUMBER_SEED
    assert (payload["BusinessEventLegalEntity"], payload["ContextRecordSubject"], payload["MajorVersion"],
            payload["MinorVersion"], payload["ParentContextRecordSubjects"]) == ("usmf", "", 0, 0, [])
    later = sender.raise_event(contracts.PO_CONFIRMED, FIELDS, legal_entity="usmf")
    assert later["ControlNumber"] > payload["ControlNumber"]
    sender.settings.legacy_envelope = True
    sender.settings.extra_fields = {"ZzContosoExtension": "x"}
    legacy = sender.raise_event(contracts.PO_CONFIRMED, FIELDS, legal_entity="usmf")
    assert not set(contracts.LEGACY_MISSING) & set(legacy)
    assert legacy["ZzContosoExtension"] == "x" and list(legacy) == sorted(legacy)


async def test_activation_sends_the_test_message_and_fails_if_refused(rig):
    sender, receiver, endpoint, _ = rig
    receiver.statuses = [500]
    with pytest.raises(ActivationFailed):
        await sender.activate(contracts.PO_CONFIRMED, endpoint.id)
    assert sender.targets(contracts.PO_CONFIRMED, "usmf") == []
    await sender.activate(contracts.PO_CONFIRMED, endpoint.id)
    test = receiver.bodies()[-1]
    assert test["BusinessEventId"] == "BusinessEventsTestEndpointContract"
    assert test["ControlNumber"] == -9223372036854775808
    assert sender.targets(contracts.PO_CONFIRMED, "usmf") == [endpoint.id]


async def test_retries_three_times_then_error_log_then_resend(rig):
    sender, receiver, endpoint, sleeps = rig
    await sender.activate(contracts.PO_CONFIRMED, endpoint.id)
    receiver.requests.clear()
    receiver.default = 503
    payload = sender.raise_event(contracts.PO_CONFIRMED, FIELDS, legal_entity="usmf")
    await asyncio.wait_for(sender.drain(), 10)
    assert len(receiver.requests) == 4 and {b["EventId"] for b in receiver.bodies()} == {payload["EventId"]}
    assert sleeps.calls == [1.0, 1.0, 1.0]
    [entry] = sender.errors.values()
    assert entry.payload == payload and entry.attempts == 4 and "503" in entry.last_error
    receiver.default = 200
    delivery = await sender.resend(entry.id)
    assert delivery.delivered and sender.errors == {}
    assert receiver.bodies()[-1] == payload and len(receiver.requests) == 5


async def test_timeout_counts_as_failure(rig):
    sender, receiver, endpoint, _ = rig
    await sender.activate(contracts.PO_CONFIRMED, endpoint.id)
    sender.settings.timeout, sender.settings.retry_count = 0.2, 0
    receiver.delay = 5
    sender.raise_event(contracts.PO_CONFIRMED, FIELDS, legal_entity="usmf")
    await asyncio.wait_for(sender.drain(), 10)
    [entry] = sender.errors.values()
    assert "timeout" in entry.last_error


async def test_events_for_inactive_legal_entities_are_not_sent(rig):
    sender, receiver, endpoint, _ = rig
    await sender.activate(contracts.PO_CONFIRMED, endpoint.id, legal_entity="DEMF")
    receiver.requests.clear()
    sender.raise_event(contracts.PO_CONFIRMED, FIELDS, legal_entity="usmf")
    sender.raise_event(contracts.VENDOR_INVOICE_POSTED, FIELDS, legal_entity="demf")
    sent = sender.raise_event(contracts.PO_CONFIRMED, FIELDS, legal_entity="demf")
    await asyncio.wait_for(sender.drain(), 10)
    assert [b["EventId"] for b in receiver.bodies()] == [sent["EventId"]]


async def test_duplicate_knobs(rig):
    sender, receiver, endpoint, _ = rig
    await sender.activate(contracts.PO_CONFIRMED, endpoint.id)
    receiver.requests.clear()
    sender.settings.duplicate_next = 1
    first = sender.raise_event(contracts.PO_CONFIRMED, FIELDS, legal_entity="usmf")
    second = sender.raise_event(contracts.PO_CONFIRMED, FIELDS, legal_entity="usmf")
    await asyncio.wait_for(sender.drain(), 10)
    assert [b["EventId"] for b in receiver.bodies()] == [first["EventId"]] * 2 + [second["EventId"]]
    assert receiver.bodies()[0] == receiver.bodies()[1]
    receiver.requests.clear()
    sender.settings.duplicate_probability = 1.0
    for _ in range(3):
        sender.raise_event(contracts.PO_CONFIRMED, FIELDS, legal_entity="usmf")
    await asyncio.wait_for(sender.drain(), 10)
    assert len(receiver.requests) == 6 and len({b["EventId"] for b in receiver.bodies()}) == 3


async def test_out_of_order_knob_delivers_a_bundle_shuffled(rig):
    sender, receiver, endpoint, _ = rig
    await sender.activate(contracts.PO_CONFIRMED, endpoint.id)
    receiver.requests.clear()
    sender.settings.out_of_order = 4
    raised = [sender.raise_event(contracts.PO_CONFIRMED, FIELDS, legal_entity="usmf")["ControlNumber"]
              for _ in range(4)]
    await asyncio.wait_for(sender.drain(), 10)
    got = [b["ControlNumber"] for b in receiver.bodies()]
    assert sorted(got) == raised and got != raised


async def test_burst_respects_concurrency(rig):
    sender, receiver, endpoint, _ = rig
    await sender.activate(contracts.PO_CONFIRMED, endpoint.id)
    receiver.requests.clear()
    receiver.delay = 0.005
    payloads, deliveries = await sender.burst([(contracts.PO_CONFIRMED, FIELDS, "usmf", None)] * 20, concurrency=4)
    assert len(receiver.requests) == 20 and all(d.delivered for d in deliveries)
    assert sorted(b["EventId"] for b in receiver.bodies()) == sorted(p["EventId"] for p in payloads)
    assert 1 < receiver.max_in_flight <= 4


async def test_admin_api_log_errors_payload_resend(rig, aiohttp_client):
    sender, receiver, endpoint, _ = rig
    app = web.Application()
    add_sender_admin_routes(app, sender)
    admin = await aiohttp_client(app)
    resp = await admin.post("/_sandbox/events/activate", json={"event_id": contracts.PO_CONFIRMED,
                                                                "endpoint": endpoint.id})
    assert resp.status == 200
    receiver.default = 500
    resp = await admin.post("/_sandbox/events/raise", json={"business_event_id": contracts.PO_CONFIRMED,
                                                             "legal_entity": "usmf", "fields": FIELDS})
    [payload] = (await resp.json())["events"]
    assert (await admin.post("/_sandbox/events/drain")).status == 200
    log = await (await admin.get("/_sandbox/events/log")).json()
    assert [e["kind"] for e in log] == ["test", "event"]
    assert log[1]["delivered"] is False and [a["status"] for a in log[1]["attempts"]] == [500] * 4
    [err] = await (await admin.get("/_sandbox/events/errors")).json()
    assert err["event_id"] == payload["EventId"]
    assert await (await admin.get(f"/_sandbox/events/errors/{err['id']}/payload")).json() == payload
    receiver.default = 200
    resent = await (await admin.post(f"/_sandbox/events/errors/{err['id']}/resend")).json()
    assert resent["delivered"] is True and await (await admin.get("/_sandbox/events/errors")).json() == []


async def test_scenario_operations_change_data_and_emit_events(rig):
    sender, receiver, endpoint, _ = rig
    state = seed_state()
    scenario = Scenario(state, sender)
    for event_id in (contracts.PO_CONFIRMED, contracts.VENDOR_INVOICE_POSTED, contracts.VENDOR_PAYMENT_POSTED,
                     scenario.work_item_event_id):
        await sender.activate(event_id, endpoint.id)
    receiver.requests.clear()
    pending_before = len(state.rows("VendorInvoiceHeaders"))
    events = scenario.month_end("usmf")
    await asyncio.wait_for(sender.drain(), 10)
    assert [e["BusinessEventId"] for e in events] == [contracts.PO_CONFIRMED] * 3 + [
        contracts.VENDOR_INVOICE_POSTED] * 2 + [contracts.VENDOR_PAYMENT_POSTED,
                                                 "Workflow_VendInvoiceReview_000123_VendInvoiceApproval_WorkItem"]
    assert receiver.bodies() == events
    assert len(state.rows("VendorInvoiceHeaders")) == pending_before - 2
    po = state.get("PurchaseOrderHeadersV2", {"dataAreaId": "usmf", "PurchaseOrderNumber":
                                              events[0]["PurchaseOrderNumber"]})
    assert po["DocumentApprovalStatus"] == "Confirmed"
    posted = state.get("PostedVendorInvoiceHeaders", {"dataAreaId": "usmf", "InvoiceNumber": events[3]["InvoiceId"],
                                                      "VendorAccount": events[3]["InvoiceAccount"]})
    assert posted is not None
    work = events[-1]
    item = state.get("WorkflowWorkItems", {"Id": work["WorkflowWorkItemInstanceId"]})
    invoice = state.get("VendorInvoiceHeaders", {"dataAreaId": "usmf", "HeaderReference": item["DocumentId"]})
    approver = "megan" if invoice["ImportedAmount"] > 10_000 else "adele"  # the CFO approves the big ones
    assert item["Status"] == "Pending" and work["WorkItemOwner"] == item["UserId"] == approver
    assert work["WorkflowWorkItemOutcomes"] == ["Approve", "Reject", "RequestChange"]
    [canceled] = scenario.recall_work_item(item["Id"])
    assert item["Status"] == "Recalled" and canceled["BusinessEventId"] == "Workflow_VendInvoiceReview_000123"


async def test_month_end_can_be_replayed_and_served_over_http(rig, aiohttp_client):
    from sandbox.scenario import add_scenario_routes
    sender, _, _, _ = rig
    state = seed_state()
    app = web.Application()
    add_scenario_routes(app, Scenario(state, sender))
    client = await aiohttp_client(app)
    for _ in range(8):  # more than the seed has candidates for: new POs and invoices are made
        resp = await client.post("/_sandbox/scenario/month_end", json={"legal_entity": "gbsi"})
        assert resp.status == 200 and len((await resp.json())["events"]) == 7
    resp = await client.post("/_sandbox/scenario/confirm_po", json={"po_number": "NOPE"})
    assert resp.status == 409
    resp = await client.post("/_sandbox/scenario/confirm_po", json={"bogus": 1})
    assert resp.status == 400
    resp = await client.post("/_sandbox/scenario/burst", json={"count": 3, "concurrency": 2})
    assert len((await resp.json())["events"]) == 3
