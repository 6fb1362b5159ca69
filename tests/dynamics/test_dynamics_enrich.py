"""Enrichment plans: the defaults end to end against the OData stand-in, missing/skipped records, globs, config."""

from __future__ import annotations

import json
from typing import Any, Callable

import pytest

from dynamics import (
    DEFAULT_PLANS,
    BusinessEvent,
    EnrichmentPlan,
    EnrichmentPlanError,
    ODataBadRequest,
    ODataClient,
    ODataThrottled,
    enrich,
    load_plan,
    parse_events,
    plan_for,
    plans_from_config,
)
from dynamics_fakes import FakeFnO, Scripted

MakeClient = Callable[..., ODataClient]

PO_EVENT = {
    "BusinessEventId": "PurchaseOrderConfirmedBusinessEvent", "BusinessEventLegalEntity": "USMF",
    "ControlNumber": 5637985363, "EventId": "9C091AF1-5BAF-4CA9-B0A4-94D6E59A0D1C",
    "EventTime": "/Date(1697470966000)/", "LegalEntity": "usmf", "MajorVersion": 0, "MinorVersion": 0,
    "PurchaseOrderNumber": "00000123", "PurchaseType": "Purch", "TransactionCurrencyAmount": 1250.0,
    "TransactionCurrencyCode": "USD", "VendorAccount": "US-101",
}
ORDER = {"dataAreaId": "usmf", "PurchaseOrderNumber": "00000123", "PurchaseOrderName": "Office chairs",
         "OrderVendorAccountNumber": "US-104", "InvoiceVendorAccountNumber": "US-104",
         "PurchaseOrderStatus": "Backorder", "DocumentApprovalStatus": "Confirmed", "CurrencyCode": "USD",
         "AccountingDate": "2023-10-16T12:00:00Z", "RequestedDeliveryDate": "2023-10-30T12:00:00Z",
         "OrdererPersonnelNumber": "000123", "BuyerGroupId": "B01"}


def line(n: int, po: str = "00000123", area: str = "usmf") -> dict[str, Any]:
    return {"dataAreaId": area, "PurchaseOrderNumber": po, "LineNumber": n, "ItemNumber": f"I-{n}",
            "ProcurementCategoryName": "Chairs", "LineDescription": f"Chair {n}", "OrderedPurchaseQuantity": 2.0,
            "PurchaseUnitSymbol": "ea", "PurchasePrice": 100.0, "LineAmount": 200.0, "CurrencyCode": "USD",
            "RequestedDeliveryDate": "2023-10-30T12:00:00Z"}


def vendor(account: str, name: str, area: str = "usmf") -> dict[str, Any]:
    return {"dataAreaId": area, "VendorAccountNumber": account, "VendorOrganizationName": name,
            "VendorGroupId": "10", "PrimaryEmailAddress": "ap@example.com", "CurrencyCode": "USD",
            "DefaultPaymentTermsName": "Net30", "OnHoldStatus": "No", "InvoiceVendorAccountNumber": ""}


def event(payload: dict[str, Any]) -> BusinessEvent:
    return parse_events(json.dumps(payload))[0]


@pytest.fixture
def seeded(fno: FakeFnO) -> FakeFnO:
    fno.tables["PurchaseOrderHeadersV2"] = [ORDER, dict(ORDER, dataAreaId="demf")]
    fno.tables["PurchaseOrderLinesV2"] = [line(3), line(1), line(2), line(1, area="demf"), line(1, po="00000999")]
    fno.tables["VendorsV2"] = [vendor("US-104", "Contoso Chairs"), vendor("US-101", "Fabrikam"),
                               vendor("US-104", "Contoso DE", area="demf")]
    return fno


async def test_po_confirmed_end_to_end(seeded: FakeFnO, make_client: MakeClient) -> None:
    plan = plan_for("PurchaseOrderConfirmedBusinessEvent", DEFAULT_PLANS)
    assert plan is not None and plan.name == "purchase_order_confirmed"
    result = await enrich(event(PO_EVENT), make_client(), plan)

    assert result.missing == [] and result.skipped == [] and result.failed == {} and result.calls == 3
    assert result.record["order"]["PurchaseOrderName"] == "Office chairs"
    assert [row["LineNumber"] for row in result.record["lines"]] == [1, 2, 3]
    assert result.record["vendor"]["VendorOrganizationName"] == "Contoso Chairs"  # via order.OrderVendorAccountNumber
    assert result.open_url == f"{seeded.base_url}/?cmp=usmf&mi=PurchTableListPage"
    assert result.document_key == "po:usmf:00000123"
    assert result.title == "Purchase order 00000123 confirmed"
    for seen in seeded.requests:
        assert seen.query["cross-company"] == "true"
        assert seen.query["$filter"].startswith("dataAreaId eq 'usmf' and ")


async def test_missing_order_is_reported_and_vendor_falls_back(seeded: FakeFnO, make_client: MakeClient) -> None:
    seeded.tables["PurchaseOrderHeadersV2"] = []
    seeded.tables["PurchaseOrderLinesV2"] = []
    plan = plan_for("PurchaseOrderConfirmedBusinessEvent", DEFAULT_PLANS)
    assert plan is not None
    result = await enrich(event(PO_EVENT), make_client(), plan)
    assert result.missing == ["order"]
    assert result.record["order"] is None and result.record["lines"] == []
    assert result.record["vendor"]["VendorOrganizationName"] == "Fabrikam"  # event.VendorAccount
    assert result.calls == 3


async def test_no_legal_entity_skips_company_fetches(seeded: FakeFnO, make_client: MakeClient) -> None:
    payload = {k: v for k, v in PO_EVENT.items() if k not in ("BusinessEventLegalEntity", "LegalEntity")}
    plan = plan_for("PurchaseOrderConfirmedBusinessEvent", DEFAULT_PLANS)
    assert plan is not None
    result = await enrich(event(payload), make_client(), plan)
    assert result.skipped == ["order", "lines", "vendor"] and result.calls == 0 and seeded.requests == []
    assert result.open_url is None and result.document_key is None


async def test_work_item_plan_uses_global_sets(fno: FakeFnO, make_client: MakeClient) -> None:
    fno.tables["WorkflowWorkItems"] = [{"Id": "5637146077", "Status": "Pending", "Subject": "Approve INV-10023",
                                        "UserId": "alexw", "CompanyId": "usmf", "DocumentId": "INV-10023"}]
    fno.tables["SystemUsers"] = [{"UserID": "alexw", "UserName": "Alex Wilber", "Alias": "alexw@contoso.com"}]
    payload = dict(PO_EVENT, BusinessEventId="Workflow_VendInvoiceReview_000123_VendInvoiceApproval_WorkItem",
                   WorkflowWorkItemInstanceId="5637146077")
    plan = plan_for(payload["BusinessEventId"], DEFAULT_PLANS)
    assert plan is not None and plan.name == "workflow_work_item"
    result = await enrich(event(payload), make_client(), plan)
    assert result.record["user"]["Alias"] == "alexw@contoso.com" and result.missing == []
    assert [r.query["$filter"] for r in fno.requests] == ["Id eq '5637146077'", "UserID eq 'alexw'"]
    assert result.title == "Approve INV-10023" and result.document_key == "wf:usmf:INV-10023"


async def test_unconfirmed_posted_invoice_entity_does_not_stop_the_card(fno: FakeFnO, make_client: MakeClient) -> None:
    fno.tables["VendorInvoiceHeaders"] = []
    fno.tables["VendorsV2"] = [vendor("US-101", "Fabrikam")]
    payload = dict(PO_EVENT, BusinessEventId="VendorInvoicePostedBusinessEvent", InvoiceId="INV-10023",
                   InvoiceAccount="US-101")
    plan = plan_for(payload["BusinessEventId"], DEFAULT_PLANS)
    assert plan is not None
    result = await enrich(event(payload), make_client(), plan)
    assert set(result.failed) == {"invoice", "lines"}  # the stand-in has no PostedVendorInvoice* sets: 404
    assert result.record["invoice"] is None and result.record["pendingInvoice"] is None
    assert result.record["vendor"]["VendorOrganizationName"] == "Fabrikam"
    assert result.document_key == "po:usmf:INV-10023"  # no PurchaseOrderId on the event: threads by invoice


async def test_errors_propagate(seeded: FakeFnO, make_client: MakeClient) -> None:
    plan = plan_for("PurchaseOrderConfirmedBusinessEvent", DEFAULT_PLANS)
    assert plan is not None
    seeded.script.append(Scripted(429, "", {"Retry-After": "60"}))
    with pytest.raises(ODataThrottled):
        await enrich(event(PO_EVENT), make_client(), plan)
    seeded.script.append(Scripted(400, {"error": {"code": "", "message": "Could not find a property named 'X'."}}))
    with pytest.raises(ODataBadRequest):
        await enrich(event(PO_EVENT), make_client(), plan)


async def test_typed_references_and_enum_literals(fno: FakeFnO, make_client: MakeClient) -> None:
    fno.tables["VendorPaymentJournalLines"] = [
        {"dataAreaId": "usmf", "JournalBatchNumber": "00282", "LineNumber": 1, "IsPosted": "Yes"}]
    plan = load_plan({"name": "p", "events": ["E"], "fetches": [
        {"name": "line", "entity": "VendorPaymentJournalLines",
         "filter": {"LineNumber": "{event.Line}", "IsPosted": {"enum": "NoYes", "value": "Yes"},
                    "JournalBatchNumber": "{event.Batch}"}}]})
    result = await enrich(event(dict(PO_EVENT, BusinessEventId="E", Line=1, Batch="00282")), make_client(), plan)
    assert result.record["line"]["LineNumber"] == 1
    assert fno.requests[-1].query["$filter"] == ("dataAreaId eq 'usmf' and LineNumber eq 1 and IsPosted eq "
                                                 "Microsoft.Dynamics.DataEntities.NoYes'Yes' and "
                                                 "JournalBatchNumber eq '00282'")


def test_plan_for_prefers_exact_over_glob() -> None:
    glob = load_plan({"name": "any", "events": ["Workflow_*_WorkItem"]})
    exact = load_plan({"name": "mine", "events": ["Workflow_X_1_Y_WorkItem"]})
    assert plan_for("Workflow_X_1_Y_WorkItem", [glob, exact]) is exact
    assert plan_for("Workflow_Z_2_Y_WorkItem", [glob, exact]) is glob
    assert plan_for("Workflow_Z_2_Y_Started", [glob, exact]) is None
    assert plan_for("workflow_z_2_y_workitem", [glob]) is None  # event ids are case-sensitive


@pytest.mark.parametrize(
    "raw,plan,fetch,field,words",
    [
        ({"events": ["E"]}, "#0", None, "name", "required"),
        ({"name": "p", "events": []}, "p", None, "events", "at least 1"),
        ({"name": "p", "events": ["E"], "fetches": [{"name": "o", "key": {"A": "x"}}]}, "p", "o", "entity",
         "required"),
        ({"name": "p", "events": ["E"], "fetches": [{"name": "o", "entity": "Bad Name", "key": {"A": "x"}}]},
         "p", "o", "entity", "entity set"),
        ({"name": "p", "events": ["E"], "fetches": [{"name": "o", "entity": "E"}]}, "p", "o", None, "exactly one"),
        ({"name": "p", "events": ["E"], "fetches": [{"entity": "E", "key": {"A": "x"}}]},
         "p", "#0", "name", "required"),
        ({"name": "p", "events": ["E"], "fetches": [{"name": "o", "entity": "E", "key": {"A": "{event.X"}}]},
         "p", "o", "key.A", "unclosed"),
        ({"name": "p", "events": ["E"], "fetches": [{"name": "o", "entity": "E", "key": {"A": "{ordr.X}"}}]},
         "p", "o", "key.A", "ordr"),
        ({"name": "p", "events": ["E"], "fetches": [{"name": "o", "entity": "E", "key": {"A": "x"}, "many": True}]},
         "p", "o", None, "many"),
        ({"name": "p", "events": ["E"], "fetches": [{"name": "o", "entity": "E", "key": {"A": "x"}, "colour": 1}]},
         "p", "o", "colour", "Extra"),
        ({"name": "p", "events": ["E"], "fetches": [{"name": "o", "entity": "E", "key": {"dataAreaId": "x"}}]},
         "p", "o", None, "dataAreaId"),
        ({"name": "p", "events": ["E"], "fetches": [{"name": "event", "entity": "E", "key": {"A": "x"}}]},
         "p", "event", "name", "reserved"),
        ({"name": "p", "events": ["E"], "fetches": [{"name": "o", "entity": "E", "key": {"A": "x"}},
                                                    {"name": "o", "entity": "E", "key": {"A": "y"}}]},
         "p", "o", "name", "share"),
        ({"name": "p", "events": ["E"], "open_url": "{base_url}/?x={nothing.Y}"}, "p", None, "open_url", "nothing"),
        ({"name": "p", "events": ["E"], "fetches": [{"name": "o", "entity": "E", "filter": {"A": "x"},
                                                     "orderby": "A sideways"}]}, "p", "o", "orderby", "asc|desc"),
    ],
)
def test_plan_validation_errors_name_plan_fetch_and_field(raw: dict[str, Any], plan: str, fetch: str | None,
                                                          field: str | None, words: str) -> None:
    with pytest.raises(EnrichmentPlanError) as info:
        plans_from_config([raw]) if "name" in raw else load_plan(raw, position=0)
    error = info.value
    assert (error.plan, error.fetch, error.field) == (plan, fetch, field), str(error)
    assert words in error.reason, str(error)


def test_config_merges_over_defaults_by_name() -> None:
    plans = plans_from_config([
        {"name": "vendor_invoice_posted",
         "fetches": [{"name": "invoice", "entity": "BESer_VendInvoiceJours", "on_error": "raise"},
                     {"name": "pendingInvoice", "enabled": False},
                     {"name": "po", "entity": "PurchaseOrderHeadersV2",
                      "key": {"PurchaseOrderNumber": "{invoice.PurchaseOrderNumber|event.PurchaseOrderId}"}}]},
        {"name": "vendor_payment_posted", "enabled": False},
        {"name": "batch", "events": ["BatchJobStartedBusinessEvent"], "title": "Batch {event.JobId}"},
    ])
    names = [p.name for p in plans]
    assert names == ["vendor_invoice_posted", "batch", "purchase_order_confirmed", "workflow_work_item"]
    invoice = plans[0]
    assert [f.name for f in invoice.fetches] == ["invoice", "lines", "vendor", "po"]
    assert invoice.fetches[0].entity == "BESer_VendInvoiceJours"
    assert invoice.fetches[0].key == {"InvoiceNumber": "{event.InvoiceId}", "VendorAccount": "{event.InvoiceAccount}"}
    assert invoice.events == ["VendorInvoicePostedBusinessEvent"]  # kept from the default
    assert plans_from_config(None) == list(DEFAULT_PLANS)


def test_config_merge_filter_replaces_key_and_errors() -> None:
    plans = plans_from_config([{"name": "purchase_order_confirmed", "fetches": [
        {"name": "order", "filter": {"PurchaseOrderNumber": "{event.PurchaseOrderNumber}"}}]}])
    order = plans[0].fetches[0]
    assert order.key is None and order.filter == {"PurchaseOrderNumber": "{event.PurchaseOrderNumber}"}
    with pytest.raises(EnrichmentPlanError, match="configured twice"):
        plans_from_config([{"name": "a", "events": ["E"]}, {"name": "a", "events": ["E"]}])
    with pytest.raises(EnrichmentPlanError) as info:
        plans_from_config([{"name": "purchase_order_confirmed", "fetches": [{"name": "vendor", "entity": "x y"}]}])
    assert (info.value.plan, info.value.fetch, info.value.field) == ("purchase_order_confirmed", "vendor", "entity")


def test_defaults_follow_the_entity_contract() -> None:
    by_name = {p.name: p for p in DEFAULT_PLANS}
    po = {f.name: f for f in by_name["purchase_order_confirmed"].fetches}
    assert (po["order"].entity, po["lines"].entity, po["vendor"].entity) == (
        "PurchaseOrderHeadersV2", "PurchaseOrderLinesV2", "VendorsV2")
    wf = {f.name: f for f in by_name["workflow_work_item"].fetches}
    assert not wf["workItem"].company and not wf["user"].company
    assert isinstance(by_name["vendor_payment_posted"], EnrichmentPlan)
