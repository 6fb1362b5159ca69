"""One F&O request per PO event ($expand of lines and vendor), and the fallback to separate reads where an
environment lacks a navigation: both against sandbox/fno (real HTTP, real tokens), both giving the same card."""

from __future__ import annotations

import json
import logging
from typing import Any

import aiohttp
import pytest

from dynamics import DEFAULT_PLANS, DroppedFields, ODataClient, enrich, parse_events, plan_for, plans_from_config
from dynamics.errors import ODataBadRequest
from dynamics.metadata import parse_csdl
from dynamics.odata_query import Expansion

sandbox_fno = pytest.importorskip("sandbox.fno")
sandbox_entra = pytest.importorskip("sandbox.entra")
sandbox_people = pytest.importorskip("sandbox.people")
sandbox_seed = pytest.importorskip("sandbox.seed")

CONNECTOR = "11111111-2222-4333-8444-555555555555"
PO_PLAN = plan_for("PurchaseOrderConfirmedBusinessEvent", DEFAULT_PLANS)
SEPARATE = next(p for p in plans_from_config([{"name": "purchase_order_confirmed",
                                               "fetches": [{"name": "order", "expand": []}]}])
                if p.name == "purchase_order_confirmed")


class Env:
    def __init__(self, service: Any, client: ODataClient, session: aiohttp.ClientSession, token: str) -> None:
        self.service, self.client, self.session, self.token = service, client, session, token

    def paths(self) -> list[str]:
        return [r["path"] for r in self.service.stats.recent]

    def statuses(self) -> list[tuple[str, int]]:
        return [(r["path"], r["status"]) for r in self.service.stats.recent]

    def reset(self) -> None:
        self.service.stats.recent.clear()
        self.service.stats.total = 0


@pytest.fixture
async def env(aiohttp_server: Any) -> Any:
    from cryptography.hazmat.primitives.asymmetric import rsa

    issuer = sandbox_entra.EntraIssuer(sandbox_people.TENANT_ID,
                                       signing_key=rsa.generate_private_key(public_exponent=65537, key_size=2048))
    issuer.register_app(CONNECTOR, secret="s")
    state = sandbox_seed.seed_state()
    state.register_app(CONNECTOR, sandbox_seed.SERVICE_USER_ID, "ml-connector")
    service = sandbox_fno.FnoService(state, issuer.verify, config=sandbox_fno.FnoConfig(base_url=""))
    server = await aiohttp_server(sandbox_fno.create_fno_app(service))
    base = str(server.make_url("")).rstrip("/")
    service.config.base_url = base

    async def get_token(*, force_refresh: bool = False) -> str:
        return issuer.issue(CONNECTOR, base)[0]

    async with aiohttp.ClientSession() as session:
        yield Env(service, ODataClient(session, base, get_token), session, await get_token())


async def _po_event(env: Env) -> Any:
    order = (await env.client.query("PurchaseOrderHeadersV2", company="usmf", top=1))[0]
    env.reset()
    raw = json.dumps({"BusinessEventId": "PurchaseOrderConfirmedBusinessEvent", "BusinessEventLegalEntity": "USMF",
                      "ControlNumber": 5637144577, "EventId": "9C091AF1-5BAF-4CA9-B0A4-94D6E59A0D1C",
                      "EventTime": "/Date(1697470966000)/", "PurchaseOrderNumber": order["PurchaseOrderNumber"],
                      "VendorAccount": order["OrderVendorAccountNumber"]}).encode()
    return parse_events(raw)[0]


def _card(enriched: Any, event: Any) -> bytes:
    """The PO card as the service renders it from what the enrich stage stores."""
    from cards import Catalog, render_card
    from connector.carddata import build_card_data
    from connector.store import EventRecord, EventStatus

    rec = EventRecord(
        id="ev-1", environment="contoso", business_event_id=event.business_event_id, control_number=1,
        event_id="E-1", legal_entity="USMF", payload=event.payload, status=EventStatus.PROCESSING, stage="deliver",
        attempts=0, received_at=0.0, updated_at=0.0, next_attempt_at=0.0,
        data={"enrichment": {"record": enriched.record, "missing": enriched.missing, "openUrl": enriched.open_url,
                             "documentKey": enriched.document_key}})
    data = build_card_data(rec, environment_name="contoso", base_url="https://contoso.example")
    card = render_card("purchase-order-confirmed", data, catalog=Catalog.builtin()).card
    return json.dumps(card, sort_keys=False).encode()


async def test_a_po_event_is_one_request_and_the_card_is_byte_identical_to_separate_reads(env: Env) -> None:
    assert PO_PLAN is not None and PO_PLAN.requests_per_event == 1 and SEPARATE.requests_per_event == 3
    event = await _po_event(env)

    expanded = await enrich(event, env.client, PO_PLAN)
    assert env.service.stats.total == 1 and "$expand" in env.paths()[0]
    env.reset()
    separate = await enrich(event, env.client, SEPARATE)
    assert env.service.stats.total == 3

    assert expanded.record["lines"] and expanded.record["vendor"]
    assert json.dumps(expanded.record) == json.dumps(separate.record)  # same keys, same order, same values
    assert (expanded.missing, expanded.skipped, expanded.failed) == ([], [], {})
    assert _card(expanded, event) == _card(separate, event)
    assert expanded.calls == 1 and separate.calls == 3


async def test_a_refused_navigation_is_remembered_and_read_separately_in_parallel(
        env: Env, caplog: pytest.LogCaptureFixture) -> None:
    assert PO_PLAN is not None
    caplog.set_level(logging.WARNING, logger="dynamics.enrich")
    event = await _po_event(env)
    reference = await enrich(event, env.client, SEPARATE)
    env.service.schema.apply({"remove_fields": {"PurchaseOrderHeadersV2": ["Vendor"]}}, env.service.state.types,
                             env.service.actions())
    env.reset()
    dropped = DroppedFields("contoso-test")

    first = await enrich(event, env.client, PO_PLAN, dropped=dropped)
    assert json.dumps(first.record) == json.dumps(reference.record)  # the card still goes out, the same
    statuses = env.statuses()
    assert statuses[0][1] == 400 and "Vendor" in statuses[0][0]  # the refused $expand
    assert "PurchaseOrderLines" in statuses[1][0] and "Vendor" not in statuses[1][0].split("$expand=")[1]
    assert statuses[2][0].startswith("/data/VendorsV2") and len(statuses) == 3
    assert dict(dropped.view().as_dict()) == {"PurchaseOrderHeadersV2": ("Vendor",)}
    assert any("refuses $expand=Vendor" in r.getMessage() for r in caplog.records)

    env.reset()  # remembered: no refused request again, header+lines in one, vendor on its own
    again = await enrich(event, env.client, PO_PLAN, dropped=dropped)
    assert [s for _, s in env.statuses()] == [200, 200] and json.dumps(again.record) == json.dumps(reference.record)


async def test_without_both_navigations_lines_are_read_in_parallel_with_the_header(env: Env) -> None:
    assert PO_PLAN is not None
    event = await _po_event(env)
    reference = await enrich(event, env.client, SEPARATE)
    env.service.schema.apply({"remove_fields": {"PurchaseOrderHeadersV2": ["Vendor", "PurchaseOrderLines"]}},
                             env.service.state.types, env.service.actions())
    dropped = DroppedFields("contoso-test")
    await enrich(event, env.client, PO_PLAN, dropped=dropped)
    assert set(dict(dropped.view().as_dict())["PurchaseOrderHeadersV2"]) == {"Vendor", "PurchaseOrderLines"}

    class Recording:
        """Which reads were in flight together (the client's calls, in order of start and end)."""

        def __init__(self, inner: ODataClient) -> None:
            self.inner, self.log = inner, []
            self.base_url = inner.base_url

        async def get(self, entity_set: str, **kw: Any) -> Any:
            self.log.append(("start", entity_set))
            try:
                return await self.inner.get(entity_set, **kw)
            finally:
                self.log.append(("end", entity_set))

        async def query(self, entity_set: str, **kw: Any) -> Any:
            self.log.append(("start", entity_set))
            try:
                return await self.inner.query(entity_set, **kw)
            finally:
                self.log.append(("end", entity_set))

    recording = Recording(env.client)
    result = await enrich(event, recording, PO_PLAN, dropped=dropped)  # type: ignore[arg-type]
    assert json.dumps(result.record) == json.dumps(reference.record)
    assert recording.log[:2] == [("start", "PurchaseOrderHeadersV2"), ("start", "PurchaseOrderLinesV2")]
    assert result.calls == 3


async def test_the_sandbox_expands_one_level_with_nested_options_as_one_request(env: Env) -> None:
    order = (await env.client.query("PurchaseOrderHeadersV2", company="usmf", top=1))[0]
    env.reset()
    rows = await env.client.query(
        "PurchaseOrderHeadersV2", company="usmf", filter={"PurchaseOrderNumber": order["PurchaseOrderNumber"]},
        select=["PurchaseOrderNumber"],
        expand=[Expansion("PurchaseOrderLines", ("LineNumber", "ItemNumber"), ("LineNumber desc",)),
                Expansion("Vendor", ("VendorAccountNumber",))])
    assert env.service.stats.total == 1  # one request for service protection
    lines = rows[0]["PurchaseOrderLines"]
    assert [set(line) for line in lines] == [{"@odata.etag", "LineNumber", "ItemNumber"}] * len(lines)
    numbers = [line["LineNumber"] for line in lines]
    assert numbers == sorted(numbers, reverse=True)
    assert rows[0]["Vendor"]["VendorAccountNumber"] == order["OrderVendorAccountNumber"]

    # $filter and $top inside the expand options, as OData allows (raw URL: our client does not write them)
    url = (f"{env.client.base_url}/data/PurchaseOrderHeadersV2?cross-company=true&$filter=PurchaseOrderNumber eq "
           f"'{order['PurchaseOrderNumber']}'&$expand=PurchaseOrderLines($filter=LineNumber eq {numbers[-1]};"
           "$select=LineNumber;$top=5)")
    async with env.session.get(url, headers={"Authorization": f"Bearer {env.token}"}) as resp:
        assert resp.status == 200
        body = await resp.json()
    assert [line["LineNumber"] for line in body["value"][0]["PurchaseOrderLines"]] == [numbers[-1]]

    for bad, words in (("NoSuchNav", "Could not find a property named 'NoSuchNav'"),
                       ("PurchaseOrderLines($expand=Vendor)", "only one level"),
                       ("PurchaseOrderLines($select=NoSuchField)", "NoSuchField")):
        async with env.session.get(f"{env.client.base_url}/data/PurchaseOrderHeadersV2?$expand={bad}",
                                   headers={"Authorization": f"Bearer {env.token}"}) as resp:
            assert resp.status == 400, bad
            assert words in await resp.text()
    with pytest.raises(ODataBadRequest):
        await env.client.query("PurchaseOrderHeadersV2", company="usmf", expand=[Expansion("NoSuchNav")])


async def test_the_sandbox_metadata_declares_the_navigations(env: Env) -> None:
    async with env.session.get(f"{env.client.base_url}/data/$metadata",
                               headers={"Authorization": f"Bearer {env.token}"}) as resp:
        meta = parse_csdl(await resp.read())
    header = meta.entity_type("PurchaseOrderHeadersV2")
    assert header is not None and header.navigation == {"PurchaseOrderLines", "Vendor"}
    env.service.schema.apply({"remove_fields": {"PurchaseOrderHeadersV2": ["Vendor"]}}, env.service.state.types,
                             env.service.actions())
    async with env.session.get(f"{env.client.base_url}/data/$metadata",
                               headers={"Authorization": f"Bearer {env.token}"}) as resp:
        header = parse_csdl(await resp.read()).entity_type("PurchaseOrderHeadersV2")
    assert header is not None and header.navigation == {"PurchaseOrderLines"}


async def test_a_field_only_the_expanded_lines_lack_is_dropped_from_the_lines_not_the_header(env: Env) -> None:
    """CurrencyCode is selected on the header, the lines and the vendor; F&O's 400 names the type that lacks it."""
    assert PO_PLAN is not None
    event = await _po_event(env)
    env.service.schema.apply({"remove_fields": {"PurchaseOrderLinesV2": ["CurrencyCode"]}},
                             env.service.state.types, env.service.actions())
    env.reset()
    dropped = DroppedFields("contoso-test")
    result = await enrich(event, env.client, PO_PLAN, dropped=dropped)
    assert dict(dropped.view().as_dict()) == {"PurchaseOrderLinesV2": ("CurrencyCode",)}
    assert result.dropped == {"PurchaseOrderLinesV2": ["CurrencyCode"]}
    assert result.record["order"]["CurrencyCode"] and result.record["vendor"]["CurrencyCode"]
    assert result.record["lines"] and all("CurrencyCode" not in line for line in result.record["lines"])
    assert [s for _, s in env.statuses()] == [400, 200]  # still one request per event after the gap


async def test_a_missing_filter_field_of_the_expanded_lines_names_the_lines_fetch(env: Env) -> None:
    from dynamics import EnrichmentPlanError

    assert PO_PLAN is not None
    event = await _po_event(env)
    env.service.schema.apply({"remove_fields": {"PurchaseOrderLinesV2": ["PurchaseOrderNumber"]}},
                             env.service.state.types, env.service.actions())
    with pytest.raises(EnrichmentPlanError) as info:
        await enrich(event, env.client, PO_PLAN, dropped=DroppedFields("contoso-test"))
    assert (info.value.fetch, info.value.field) == ("lines", "filter.PurchaseOrderNumber")


async def test_a_plan_is_prepared_once_not_per_event(env: Env, monkeypatch: pytest.MonkeyPatch) -> None:
    """Perf goal 3: a plan's templates are parsed, its dependencies and expands worked out, and each fetch's request
    shaped once (per plan, and per environment's dropped fields), not for every event (main parsed 11 templates per
    PO event); the result is the same record."""
    from dynamics.templates import Template

    plan = plans_from_config([])[0]  # a fresh plan object: nothing prepared yet
    assert plan.name == "purchase_order_confirmed"
    event = await _po_event(env)
    dropped = DroppedFields("contoso-test")
    first = await enrich(event, env.client, plan, dropped=dropped)

    parses: list[str] = []
    real_parse = Template.parse.__func__  # type: ignore[attr-defined]
    monkeypatch.setattr(Template, "parse", classmethod(lambda cls, text: parses.append(text) or real_parse(cls, text)))
    expansions: list[str] = []
    real_expansion_init = Expansion.__post_init__
    monkeypatch.setattr(Expansion, "__post_init__", lambda self: expansions.append(self.navigation)
                        or real_expansion_init(self))
    for _ in range(3):
        again = await enrich(event, env.client, plan, dropped=dropped)
        assert json.dumps(again.record) == json.dumps(first.record) and again.title == first.title
        assert (again.open_url, again.document_key) == (first.open_url, first.document_key)
    assert parses == [] and expansions == []

    dropped.add("PurchaseOrderLinesV2", "ItemNumber")  # the environment learnt something: the shape follows it
    env.reset()
    await enrich(event, env.client, plan, dropped=dropped)
    assert "ItemNumber" not in env.paths()[0] and "LineNumber" in env.paths()[0]


async def test_an_expanded_po_event_starts_no_task(env: Env) -> None:
    """Perf goal 3: a wave with one read awaits it directly and a fetch served by its parent's $expand settles
    without a task: the one-request PO plan runs inside its caller's task (main started three per event)."""
    import asyncio

    assert PO_PLAN is not None
    event = await _po_event(env)
    await enrich(event, env.client, PO_PLAN)  # warm: the connection is open
    loop = asyncio.get_running_loop()
    started: list[str] = []
    previous = loop.get_task_factory()

    def counting(loop: asyncio.AbstractEventLoop, coro: Any, **kw: Any) -> asyncio.Task[Any]:
        started.append(getattr(coro, "__qualname__", repr(coro)))
        return asyncio.Task(coro, loop=loop, **kw)

    loop.set_task_factory(counting)
    try:
        result = await enrich(event, env.client, PO_PLAN)
    finally:
        loop.set_task_factory(previous)
    assert result.calls == 1 and result.record["lines"] and result.record["vendor"]
    assert [name for name in started if "enrich" in name or "_Run" in name] == []
