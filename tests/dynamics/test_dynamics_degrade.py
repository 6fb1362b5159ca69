"""An environment that lacks a field degrades the card instead of stopping it: optional (select/orderby) fields
are dropped, remembered per environment and entity set, and logged once; a missing key/filter field or entity set
raises an EnrichmentPlanError that says which fetch and field to fix."""

from __future__ import annotations

import logging
from typing import Any, Callable

import pytest

from dynamics import DEFAULT_PLANS, DroppedFields, EnrichmentPlanError, ODataClient, enrich, load_plan, plan_for
from dynamics_fakes import FakeFnO
from test_dynamics_enrich import ORDER, PO_EVENT, event, line, vendor

MakeClient = Callable[..., ODataClient]
PO_PLAN = plan_for("PurchaseOrderConfirmedBusinessEvent", DEFAULT_PLANS)


def _strip(row: dict[str, Any], *names: str) -> dict[str, Any]:
    return {k: v for k, v in row.items() if k not in names}


@pytest.fixture
def lacking(fno: FakeFnO) -> FakeFnO:
    """An environment whose PO header has no BuyerGroupId and whose PO lines have no CurrencyCode."""
    fno.tables["PurchaseOrderHeadersV2"] = [_strip(ORDER, "BuyerGroupId")]
    fno.tables["PurchaseOrderLinesV2"] = [_strip(line(n), "CurrencyCode") for n in (2, 1)]
    fno.tables["VendorsV2"] = [vendor("US-104", "Contoso Chairs")]
    fno.missing_fields = {"PurchaseOrderHeadersV2": {"BuyerGroupId"}, "PurchaseOrderLinesV2": {"CurrencyCode"}}
    return fno


def _statuses(fno: FakeFnO) -> list[tuple[str, bool]]:
    """(entity set, did it select a field that set lacks) per request."""
    out = []
    for seen in fno.requests:
        name = seen.path.removeprefix("/data/")
        out.append((name, bool(fno.missing_fields.get(name, set()) & set(seen.query.get("$select", "").split(",")))))
    return out


def _per_set(fno: FakeFnO) -> dict[str, list[bool]]:
    out: dict[str, list[bool]] = {}
    for name, lacking_field in _statuses(fno):
        out.setdefault(name, []).append(lacking_field)
    return out


async def test_missing_optional_fields_are_dropped_and_the_rest_is_read(
        lacking: FakeFnO, make_client: MakeClient, caplog: pytest.LogCaptureFixture) -> None:
    assert PO_PLAN is not None
    caplog.set_level(logging.WARNING, logger="dynamics.enrich")
    dropped = DroppedFields("contoso-test")
    result = await enrich(event(PO_EVENT), make_client(), PO_PLAN, dropped=dropped)

    assert result.record["order"]["PurchaseOrderName"] == "Office chairs"
    assert "BuyerGroupId" not in result.record["order"]
    assert [row["LineNumber"] for row in result.record["lines"]] == [1, 2]
    assert result.record["vendor"]["VendorOrganizationName"] == "Contoso Chairs"
    assert result.missing == [] and result.failed == {}
    assert result.dropped == {"PurchaseOrderHeadersV2": ["BuyerGroupId"], "PurchaseOrderLinesV2": ["CurrencyCode"]}
    # one refused read per gap, then the same read without the field
    # (lines and vendor are read in parallel once the header is known: order within a set, not across sets)
    assert _per_set(lacking) == {"PurchaseOrderHeadersV2": [True, False], "PurchaseOrderLinesV2": [True, False],
                                 "VendorsV2": [False]}
    assert result.calls == 3  # fetches run, not HTTP exchanges
    assert dict(dropped.view().as_dict()) == {"PurchaseOrderHeadersV2": ("BuyerGroupId",),
                                              "PurchaseOrderLinesV2": ("CurrencyCode",)}
    warnings = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
    assert len(warnings) == 2
    assert "contoso-test" in warnings[0] and "PurchaseOrderHeadersV2 has no field BuyerGroupId" in warnings[0]

    # The next event of that type asks only for what exists, first time; nothing more is logged.
    lacking.requests.clear()
    again = await enrich(event(PO_EVENT), make_client(), PO_PLAN, dropped=dropped)
    assert _per_set(lacking) == {"PurchaseOrderHeadersV2": [False], "PurchaseOrderLinesV2": [False],
                                 "VendorsV2": [False]}
    assert again.dropped == result.dropped and again.record["order"]["PurchaseOrderName"] == "Office chairs"
    assert len([r for r in caplog.records if r.levelno == logging.WARNING]) == 2

    # Remembered per environment: another environment's registry starts empty.
    lacking.requests.clear()
    await enrich(event(PO_EVENT), make_client(), PO_PLAN, dropped=DroppedFields("other"))
    assert len(lacking.requests) == 5


async def test_without_a_registry_one_call_still_degrades(lacking: FakeFnO, make_client: MakeClient) -> None:
    assert PO_PLAN is not None
    result = await enrich(event(PO_EVENT), make_client(), PO_PLAN)
    assert result.record["order"]["PurchaseOrderName"] == "Office chairs" and len(result.record["lines"]) == 2
    assert set(result.dropped) == {"PurchaseOrderHeadersV2", "PurchaseOrderLinesV2"}


async def test_a_missing_orderby_field_is_dropped_too(lacking: FakeFnO, make_client: MakeClient) -> None:
    lacking.missing_fields = {"PurchaseOrderLinesV2": {"ItemNumber"}}
    plan = load_plan({"name": "p", "events": ["E"], "fetches": [
        {"name": "lines", "entity": "PurchaseOrderLinesV2", "many": True, "orderby": ["ItemNumber desc", "LineNumber"],
         "filter": {"PurchaseOrderNumber": "{event.PurchaseOrderNumber}"},
         "select": ["LineNumber", "ItemNumber", "LineDescription"]}]})
    result = await enrich(event(PO_EVENT), make_client(), plan)
    assert [r["LineNumber"] for r in result.record["lines"]] == [1, 2]
    assert result.dropped == {"PurchaseOrderLinesV2": ["ItemNumber"]}
    last = lacking.requests[-1].query
    assert last["$orderby"] == "LineNumber" and last["$select"] == "LineNumber,LineDescription"


@pytest.mark.parametrize("entity, field, fetch, where", [
    ("PurchaseOrderHeadersV2", "PurchaseOrderNumber", "order", "key.PurchaseOrderNumber"),
    ("PurchaseOrderLinesV2", "PurchaseOrderNumber", "lines", "filter.PurchaseOrderNumber"),
    ("VendorsV2", "dataAreaId", "vendor", "company"),
])
async def test_a_missing_key_or_filter_field_names_the_fetch_to_fix(
        lacking: FakeFnO, make_client: MakeClient, entity: str, field: str, fetch: str, where: str) -> None:
    assert PO_PLAN is not None
    lacking.missing_fields = {entity: {field}}
    dropped = DroppedFields("contoso-test")
    with pytest.raises(EnrichmentPlanError) as info:
        await enrich(event(PO_EVENT), make_client(), PO_PLAN, dropped=dropped)
    error = info.value
    assert (error.plan, error.fetch, error.field) == ("purchase_order_confirmed", fetch, where)
    assert f"{entity} has no" in str(error) and field in str(error) and "[[enrichment]]" in str(error)
    assert not dropped.view()  # a key is never dropped


async def test_a_missing_entity_set_names_the_fetch_to_fix(lacking: FakeFnO, make_client: MakeClient) -> None:
    assert PO_PLAN is not None
    del lacking.tables["PurchaseOrderLinesV2"]
    with pytest.raises(EnrichmentPlanError) as info:
        await enrich(event(PO_EVENT), make_client(), PO_PLAN)
    error = info.value
    assert (error.fetch, error.field) == ("lines", "entity")
    assert "no entity set PurchaseOrderLinesV2" in str(error) and "[[enrichment]]" in str(error)


async def test_skip_fetches_still_only_record_unfixable_errors(lacking: FakeFnO, make_client: MakeClient) -> None:
    lacking.missing_fields = {"PurchaseOrderHeadersV2": {"BuyerGroupId", "PurchaseOrderNumber"}}
    plan = load_plan({"name": "p", "events": ["E"], "fetches": [
        {"name": "order", "entity": "PurchaseOrderHeadersV2", "on_error": "skip",
         "key": {"PurchaseOrderNumber": "{event.PurchaseOrderNumber}"},
         "select": ["PurchaseOrderName", "BuyerGroupId"]},
        {"name": "gone", "entity": "NoSuchSet", "on_error": "skip", "filter": {"X": "1"}}]})
    result = await enrich(event(PO_EVENT), make_client(), plan)
    assert set(result.failed) == {"order", "gone"} and result.record["order"] is None
    assert result.dropped == {}  # BuyerGroupId was dropped on the way, but the read never succeeded
