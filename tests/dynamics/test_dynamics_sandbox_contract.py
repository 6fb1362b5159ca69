"""The default plans and WorkflowActions against sandbox/fno's seeded data: the entity contract, both sides.

The stand-in in dynamics_fakes.py only checks our client; this checks that the default plans' entity sets, keys,
`$select` fields and enum rules agree with the sandbox (which follows DEVELOPERS.md "Entity contract").
"""

from __future__ import annotations

import json
from typing import Any

import aiohttp
import pytest

from dynamics import DEFAULT_PLANS, Enum, ODataClient, WorkflowActions, enrich, parse_events, plan_for

sandbox_fno = pytest.importorskip("sandbox.fno")
sandbox_entra = pytest.importorskip("sandbox.entra")
sandbox_people = pytest.importorskip("sandbox.people")
sandbox_seed = pytest.importorskip("sandbox.seed")

CONNECTOR = "11111111-2222-4333-8444-555555555555"


def envelope(**fields: Any) -> bytes:
    return json.dumps({"BusinessEventLegalEntity": "USMF", "ControlNumber": 5637144577,
                       "EventId": "9C091AF1-5BAF-4CA9-B0A4-94D6E59A0D1C", "EventTime": "/Date(1697470966000)/",
                       **fields}).encode()


@pytest.fixture
async def client(aiohttp_server: Any) -> Any:
    from cryptography.hazmat.primitives.asymmetric import rsa

    issuer = sandbox_entra.EntraIssuer(sandbox_people.TENANT_ID,
                                       signing_key=rsa.generate_private_key(public_exponent=65537, key_size=2048))
    issuer.register_app(CONNECTOR, secret="s")
    state = sandbox_seed.seed_state()
    state.register_app(CONNECTOR, sandbox_seed.SERVICE_USER_ID, "ml-connector")
    service = sandbox_fno.FnoService(state, issuer.verify, config=sandbox_fno.FnoConfig(base_url="", page_size=3))
    server = await aiohttp_server(sandbox_fno.create_fno_app(service))
    base = str(server.make_url("")).rstrip("/")
    service.config.base_url = base  # token audience and nextLink origin

    async def get_token(*, force_refresh: bool = False) -> str:
        return issuer.issue(CONNECTOR, base)[0]

    async with aiohttp.ClientSession() as session:
        yield ODataClient(session, base, get_token)


async def test_every_default_fetch_is_a_valid_query(client: ODataClient) -> None:
    for plan in DEFAULT_PLANS:
        for fetch in plan.fetches:
            await client.query(fetch.entity, company="usmf" if fetch.company else None, select=fetch.select,
                               orderby=fetch.orderby, top=1)


async def test_po_plan_with_paging(client: ODataClient) -> None:
    order = (await client.query("PurchaseOrderHeadersV2", company="usmf", top=1))[0]
    event = parse_events(envelope(BusinessEventId="PurchaseOrderConfirmedBusinessEvent",
                                  PurchaseOrderNumber=order["PurchaseOrderNumber"], VendorAccount="none"))[0]
    plan = plan_for(event.business_event_id, DEFAULT_PLANS)
    assert plan is not None
    result = await enrich(event, client, plan)
    assert result.missing == [] and result.failed == {} and result.skipped == []
    assert result.record["order"]["PurchaseOrderNumber"] == order["PurchaseOrderNumber"]
    assert result.record["vendor"]["VendorAccountNumber"] == order["OrderVendorAccountNumber"]
    numbers = [line["LineNumber"] for line in result.record["lines"]]
    assert numbers == sorted(numbers) and len(numbers) >= 1


async def test_work_item_plan_and_actions(client: ODataClient) -> None:
    pending = Enum("WorkflowWorkItemStatus", "Pending")
    item = (await client.query("WorkflowWorkItems", company=None, filter={"Status": pending}, top=1))[0]
    event = parse_events(envelope(BusinessEventId="Workflow_VendInvoiceReview_000123_Approval_WorkItem",
                                  WorkflowWorkItemInstanceId=item["Id"]))[0]
    plan = plan_for(event.business_event_id, DEFAULT_PLANS)
    assert plan is not None
    result = await enrich(event, client, plan)
    assert result.missing == [] and result.record["user"]["UserID"].lower() == item["UserId"].lower()

    actions = WorkflowActions(client)
    assert await actions.validate(item["Id"]) is True
    outcome = (item.get("Outcomes") or "Approve").split(",")[0].strip()
    await actions.complete(item["Id"], outcome, "Approved from Teams")
    assert await actions.validate(item["Id"]) is False
