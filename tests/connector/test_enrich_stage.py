"""The enrich stage against the F&O stand-in (real HTTP on loopback, the sandbox's OData rules): an environment
that lacks optional fields still gets its card, with the dropped fields in the event's history; a missing key
field or entity set parks the event with a reason that says which fetch of which plan to fix."""

from __future__ import annotations

import json
import time
from typing import Any, Mapping

import aiohttp
import pytest

from connector.pipeline import Park
from connector.stages import EnvironmentRuntime, make_enrich_stage
from connector.store import EventRecord, EventStatus
from dynamics import DEFAULT_PLANS, ODataClient
from sandbox.fno import FnoConfig, FnoService, create_fno_app
from sandbox.seed import SERVICE_USER_ID, seed_state

APP_ID = "11111111-2222-4333-8444-555555555555"
ENV = "contoso-test"
PO = "USMF-000001"


def _verify(token: str, audience: str) -> Mapping[str, Any]:
    if token != "test-token":  # the stand-in's own token check is handed in; this test is not about tokens
        raise ValueError("unknown token")
    return {"appid": APP_ID}


async def _tokens(*, force_refresh: bool = False) -> str:
    return "test-token"


@pytest.fixture
async def world(aiohttp_server: Any) -> Any:
    state = seed_state()
    state.register_app(APP_ID, SERVICE_USER_ID, "ml-connector")
    service = FnoService(state, _verify, config=FnoConfig())
    server = await aiohttp_server(create_fno_app(service))
    service.config.base_url = str(server.make_url("")).rstrip("/")
    async with aiohttp.ClientSession() as session:
        env = EnvironmentRuntime(ENV, service.config.base_url,
                                 ODataClient(session, service.config.base_url, _tokens))
        stage = make_enrich_stage({ENV: env}, list(DEFAULT_PLANS), next_stage="deliver")
        yield service, env, stage


def _record(n: int = 1) -> EventRecord:
    payload = {"BusinessEventId": "PurchaseOrderConfirmedBusinessEvent", "BusinessEventLegalEntity": "USMF",
               "ControlNumber": 5637985363 + n, "EventId": f"9C091AF1-5BAF-4CA9-B0A4-94D6E59A0D{n:02d}",
               "EventTime": "/Date(1697470966000)/", "LegalEntity": "usmf", "MajorVersion": 0, "MinorVersion": 0,
               "PurchaseOrderNumber": PO, "PurchaseType": "Purch", "TransactionCurrencyAmount": 1250.0,
               "TransactionCurrencyCode": "USD", "VendorAccount": "US-101"}
    now = time.time()
    return EventRecord(id=f"ev-{n}", environment=ENV, business_event_id=payload["BusinessEventId"],
                       control_number=payload["ControlNumber"], event_id=payload["EventId"], legal_entity="usmf",
                       payload=json.loads(json.dumps(payload)), status=EventStatus.PROCESSING, stage="enrich",
                       attempts=0, received_at=now, updated_at=now, next_attempt_at=now)


async def test_missing_optional_fields_degrade_the_card_and_show_in_the_history(world: Any) -> None:
    service, env, stage = world
    service.schema.apply({"remove_fields": {"PurchaseOrderHeadersV2": ["BuyerGroupId"],
                                            "PurchaseOrderLinesV2": ["CurrencyCode"]}},
                         service.state.types, service.actions())
    outcome = await stage(_record(1))
    assert outcome.next_stage == "deliver"
    assert "field BuyerGroupId dropped: not in this environment's PurchaseOrderHeadersV2" in outcome.detail
    assert "field CurrencyCode dropped: not in this environment's PurchaseOrderLinesV2" in outcome.detail
    enrichment = outcome.data["enrichment"]
    order, lines = enrichment["record"]["order"], enrichment["record"]["lines"]
    assert order["PurchaseOrderNumber"] == PO and "BuyerGroupId" not in order and order["PurchaseOrderName"]
    assert lines and all("CurrencyCode" not in row and row["ItemNumber"] for row in lines)
    assert enrichment["dropped"] == {"PurchaseOrderHeadersV2": ["BuyerGroupId"],
                                     "PurchaseOrderLinesV2": ["CurrencyCode"]}
    assert dict(env.dropped_fields.as_dict()) == {"PurchaseOrderHeadersV2": ("BuyerGroupId",),
                                                  "PurchaseOrderLinesV2": ("CurrencyCode",)}
    assert env.dropped_fields.environment == ENV
    assert service.stats.by_status[400] == 2

    second = await stage(_record(2))  # no failing request first: the environment's gaps are remembered
    assert service.stats.by_status[400] == 2
    assert "field BuyerGroupId dropped" in second.detail and second.next_stage == "deliver"


@pytest.mark.parametrize("removal, says", [
    ({"remove_fields": {"PurchaseOrderHeadersV2": ["PurchaseOrderNumber"]}},
     ["fetch 'order'", "field 'key.PurchaseOrderNumber'", "PurchaseOrderHeadersV2 has no key field"]),
    ({"remove_entity_sets": ["VendorsV2"]}, ["fetch 'vendor'", "field 'entity'", "no entity set VendorsV2"]),
])
async def test_a_missing_key_field_or_entity_set_parks_with_where_to_fix(world: Any, removal: dict,
                                                                         says: list[str]) -> None:
    service, env, stage = world
    service.schema.apply(removal, service.state.types, service.actions())
    with pytest.raises(Park) as info:
        await stage(_record())
    reason = info.value.reason
    for text in says + ["enrichment plan 'purchase_order_confirmed'", "[[enrichment]]", "events replay"]:
        assert text in reason, reason
    # A key field is never dropped; without VendorsV2 the header has no Vendor navigation either (remembered, so
    # the vendor is read on its own, which is what names the missing entity set).
    expected = {"PurchaseOrderHeadersV2": ("Vendor",)} if "remove_entity_sets" in removal else {}
    assert dict(env.dropped_fields.as_dict()) == expected


async def test_the_stage_enriches_from_the_stored_record_without_reparsing_it(
        world: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    """Perf goal 3: the stored record carries what enrichment reads of the event (payload and legal entity, as
    validated at the front door), so the stage neither re-serialises nor re-parses the payload per event, and the
    plan for an event type is chosen once."""
    import sys

    import connector.stages as stages

    service, env, stage = world
    reference = await stage(_record(1))

    def refuse(*args: Any, **kwargs: Any) -> Any:
        raise AssertionError("the stored payload was parsed again")

    monkeypatch.setattr(sys.modules["dynamics.events"], "_event", refuse)  # what parse_events builds events with
    chosen: list[str] = []
    real_plan_for = stages.plan_for
    monkeypatch.setattr(stages, "plan_for", lambda event_id, plans: chosen.append(event_id)
                        or real_plan_for(event_id, plans))
    for n in (2, 3):
        outcome = await stage(_record(n))
        assert outcome.next_stage == "deliver" and outcome.detail == reference.detail
        assert json.dumps(outcome.data) == json.dumps(reference.data)
    assert chosen == []  # chosen for this event type by the first event already
